#
# Copyright (c) 2026, pipecat-cartesia-ctx contributors
#
# SPDX-License-Identifier: BSD 2-Clause License
#

"""Realtime streaming: text arrives in small pieces, as from an LLM, and audio streams back.

Every piece is pushed on one context as a continuation (``continue: true``)
the moment it arrives; the server buffers until it has a sentence, then
speaks. Audio plays live through ``ffplay`` when it is installed, and is
always written to ``realtime.wav``.

    python examples/realtime_streaming.py [--out out] [--no-play] [--fast]
"""

import asyncio
import re
import shutil
import time

from _shared import (
    MODEL_ID,
    OUTPUT_FORMAT,
    SAMPLE_RATE,
    VOICE_ID,
    open_connection,
    parse_args,
    write_wav,
)

from pipecat_cartesia_ctx.emulator import Pacing
from pipecat_cartesia_ctx.protocol import Chunk, Done, Timestamps

ANSWER = (
    "Sure! Streaming speech starts playing long before the whole answer is written. "
    "Each sentence is spoken as soon as it is complete, "
    "while the next one is still being generated. "
    "That is what makes a voice agent feel responsive."
)


async def llm_tokens(text: str, per_second: float):
    """Yield the text in LLM-like pieces (a word with its leading space) at a steady rate."""
    for token in re.findall(r"\s*\S+", text):
        yield token
        if per_second:
            await asyncio.sleep(1 / per_second)


async def start_player():
    """Ffplay reading raw 16-bit mono PCM from stdin, or None when it is not installed."""
    if not shutil.which("ffplay"):
        return None
    return await asyncio.create_subprocess_exec(
        "ffplay", "-autoexit", "-nodisp", "-loglevel", "error",
        "-f", "s16le", "-ar", str(SAMPLE_RATE), "-i", "pipe:0",
        stdin=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def play(player, audio: bytes) -> bool:
    """Feed audio to ffplay; False once it has gone away."""
    try:
        player.stdin.write(audio)
        await player.stdin.drain()
    except (BrokenPipeError, ConnectionResetError):
        return False
    return True


async def main():
    """Run the example."""
    args = parse_args(__doc__)
    player = None if args.no_play else await start_player()
    print("Playing live through ffplay" if player else "ffplay not used: writing a WAV only")
    async with open_connection(Pacing(first_chunk_ms=90, speed=2.0), fast=args.fast) as conn:
        ctx = conn.context(
            model_id=MODEL_ID, voice=VOICE_ID, output_format=OUTPUT_FORMAT, add_timestamps=True
        )
        started = time.monotonic()

        async def send():
            pieces = 0
            async for token in llm_tokens(ANSWER, 0 if args.fast else 30):
                await ctx.push(token)
                pieces += 1
            await ctx.no_more_inputs()
            print(f"[{time.monotonic() - started:5.2f}s] sent {pieces} pieces, then no_more_inputs")

        sender = asyncio.create_task(send())
        audio = bytearray()
        first_audio = None
        async for event in ctx.receive(timeout=30):
            now = time.monotonic() - started
            if isinstance(event, Chunk):
                if first_audio is None:
                    first_audio = now
                    print(f"[{now:5.2f}s] first audio")
                audio += event.audio
                if player and not await play(player, event.audio):
                    print("ffplay stopped (no audio device?): going on with the WAV only")
                    player = None
            elif isinstance(event, Timestamps):
                print(f"[{now:5.2f}s] spoken: {' '.join(event.words)}")
            elif isinstance(event, Done):
                print(f"[{now:5.2f}s] done")
        await sender

    seconds = len(audio) / 2 / SAMPLE_RATE
    print(f"{seconds:.2f} s of audio; first audio after {first_audio:.2f} s")
    write_wav(args.out / "realtime.wav", bytes(audio))
    if player:
        player.stdin.close()
        await player.wait()
        print(f"ffplay finished with exit code {player.returncode}")


if __name__ == "__main__":
    asyncio.run(main())
