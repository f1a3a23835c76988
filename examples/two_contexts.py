#
# Copyright (c) 2026, pipecat-cartesia-ctx contributors
#
# SPDX-License-Identifier: BSD 2-Clause License
#

"""Two contexts on one connection: their audio interleaves on the wire and stays apart.

Both contexts generate at the same time over a single WebSocket. Each event
carries its ``context_id``, and the client routes it to its own context, so
each context's audio goes to its own WAV file.

    python examples/two_contexts.py [--out out]
"""

import asyncio
import itertools

from _shared import MODEL_ID, OUTPUT_FORMAT, VOICE_ID, open_connection, parse_args, write_wav

from pipecat_cartesia_ctx.emulator import Pacing
from pipecat_cartesia_ctx.protocol import Chunk

TEXTS = {
    "left": "This is the first context, speaking about the weather today.",
    "right": "And this is the second one, reading out the news headlines.",
}


async def main():
    """Run the example."""
    args = parse_args(__doc__)
    # Paced like a real server, so the two contexts really overlap.
    async with open_connection(
        Pacing(first_chunk_ms=90, speed=4.0, chunk_ms=80), fast=args.fast
    ) as conn:
        contexts = {
            name: conn.context(
                model_id=MODEL_ID,
                voice=VOICE_ID,
                output_format=OUTPUT_FORMAT,
                context_id=f"demo-{name}",
            )
            for name in TEXTS
        }
        for name, ctx in contexts.items():
            await ctx.push(TEXTS[name])
            await ctx.no_more_inputs()

        arrivals: list[str] = []

        async def receive(name: str) -> bytes:
            audio = bytearray()
            async for event in contexts[name].receive(timeout=30):
                if isinstance(event, Chunk):
                    audio += event.audio
                    arrivals.append(name[0].upper())
            return bytes(audio)

        results = await asyncio.gather(*(receive(name) for name in TEXTS))

    print("Chunk arrival order on the shared socket (L = left, R = right):")
    print("  " + "".join(arrivals))
    switches = sum(a != b for a, b in itertools.pairwise(arrivals))
    print(f"  {len(arrivals)} chunks, the socket switched context {switches} times")
    for name, audio in zip(TEXTS, results, strict=False):
        print(f"Context {contexts[name].context_id!r}: {len(audio)} bytes of audio")
        write_wav(args.out / f"context_{name}.wav", audio)


if __name__ == "__main__":
    asyncio.run(main())
