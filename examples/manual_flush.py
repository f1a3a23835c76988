#
# Copyright (c) 2026, pipecat-cartesia-ctx contributors
#
# SPDX-License-Identifier: BSD 2-Clause License
#

"""Manual flushing: one context, three flushed segments, audio separated by flush_id.

``flush()`` makes the server generate everything sent so far and returns the
flush id that segment's audio carries; the server ends the segment with a
``flush_done`` event. Each segment goes to its own WAV file.

    python examples/manual_flush.py [--out out]
"""

import asyncio

from _shared import MODEL_ID, OUTPUT_FORMAT, VOICE_ID, open_connection, parse_args, write_wav

from pipecat_cartesia_ctx.protocol import Chunk, Done, FlushDone, Timestamps

SENTENCES = [
    "Welcome back to the show. ",
    "Today we talk about context flushing. ",
    "Each flush closes one segment of audio.",
]


async def main():
    """Run the example."""
    args = parse_args(__doc__)
    async with open_connection(fast=args.fast) as conn:
        ctx = conn.context(
            model_id=MODEL_ID, voice=VOICE_ID, output_format=OUTPUT_FORMAT, add_timestamps=True
        )
        texts = {}
        for sentence in SENTENCES:
            await ctx.push(sentence)
            flush_id = await ctx.flush()
            texts[flush_id] = sentence.strip()
            print(
                f"pushed {sentence.strip()!r} and flushed: its audio will carry flush_id {flush_id}"
            )
        await ctx.no_more_inputs()

        audio: dict[int, bytearray] = {}
        words: dict[int, list[str]] = {}
        async for event in ctx.receive(timeout=30):
            if isinstance(event, Chunk):
                audio.setdefault(event.flush_id, bytearray()).extend(event.audio)
            elif isinstance(event, Timestamps):
                words.setdefault(event.flush_id, []).extend(event.words)
            elif isinstance(event, FlushDone):
                size = len(audio.get(event.flush_id, b""))
                print(
                    f"flush_done flush_id={event.flush_id}: {size} bytes, "
                    f"words {words.get(event.flush_id, [])}"
                )
            elif isinstance(event, Done):
                print("done")

    for flush_id, data in sorted(audio.items()):
        print(f"segment {flush_id}: {texts.get(flush_id, '?')!r}")
        write_wav(args.out / f"segment_{flush_id}.wav", bytes(data))


if __name__ == "__main__":
    asyncio.run(main())
