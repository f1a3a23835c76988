#
# Copyright (c) 2026, pipecat-cartesia-ctx contributors
#
# SPDX-License-Identifier: BSD 2-Clause License
#

"""Continuations: inputs on one context are joined verbatim, so the sender owns the spaces.

Two sentences are sent in four parts on one context; Cartesia reads them with
continuous prosody. The same parts without their spaces are read glued
together wherever the server was still buffering ("Hello,my", "Ihelp"): the
word timestamps show exactly what the server read.

    python examples/continuations.py [--out out]
"""

import asyncio

from _shared import MODEL_ID, OUTPUT_FORMAT, VOICE_ID, open_connection, parse_args, write_wav

from pipecat_cartesia_ctx.protocol import Chunk, Timestamps

PARTS = ["Hello, ", "my name is Sonic. ", "How can I ", "help you today?"]


async def speak(conn, parts: list[str]) -> tuple[bytes, list[str]]:
    """Send ``parts`` as continuations of one context; return its audio and the words read."""
    ctx = conn.context(
        model_id=MODEL_ID, voice=VOICE_ID, output_format=OUTPUT_FORMAT, add_timestamps=True
    )
    for part in parts:
        await ctx.push(part)  # continue: true, the server keeps listening
    await ctx.no_more_inputs()  # "" with continue: false
    audio, words = bytearray(), []
    async for event in ctx.receive(timeout=30):
        if isinstance(event, Chunk):
            audio += event.audio
        elif isinstance(event, Timestamps):
            words += event.words
    return bytes(audio), words


async def main():
    """Run the example."""
    args = parse_args(__doc__)
    async with open_connection(fast=args.fast) as conn:
        audio, words = await speak(conn, PARTS)
        print(f"sent with spaces: {PARTS}")
        print(f"  the server read: {words}")
        write_wav(args.out / "continuation.wav", audio)

        glued_parts = [p.strip() for p in PARTS]
        glued_audio, glued_words = await speak(conn, glued_parts)
        print(f"sent without spaces: {glued_parts}")
        print(f"  the server read: {glued_words}")
        write_wav(args.out / "continuation_glued.wav", glued_audio)


if __name__ == "__main__":
    asyncio.run(main())
