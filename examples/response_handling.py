#
# Copyright (c) 2026, pipecat-cartesia-ctx contributors
#
# SPDX-License-Identifier: BSD 2-Clause License
#

"""Response handling: every server event type, typed, and an error that ends only its context.

``receive()`` yields typed events: `Chunk` (audio), `Timestamps` (words),
`PhonemeTimestamps`, `FlushDone`, and finally `Done` or `Error`. An error
names its context and becomes a typed exception; the connection goes on.

    python examples/response_handling.py [--out out]
"""

import asyncio

from _shared import MODEL_ID, OUTPUT_FORMAT, VOICE_ID, open_connection, parse_args, write_wav

from pipecat_cartesia_ctx.protocol import (
    Chunk,
    Done,
    Error,
    FlushDone,
    PhonemeTimestamps,
    Timestamps,
)


async def main():
    """Run the example."""
    args = parse_args(__doc__)
    async with open_connection(fast=args.fast) as conn:
        ctx = conn.context(
            model_id=MODEL_ID,
            voice=VOICE_ID,
            output_format=OUTPUT_FORMAT,
            add_timestamps=True,
            add_phoneme_timestamps=True,
        )
        await ctx.push("Responses arrive as typed events. ")
        await ctx.flush()
        await ctx.push("Here is the second part.")
        await ctx.no_more_inputs()

        audio = bytearray()
        counts: dict[str, int] = {}
        async for event in ctx.receive(timeout=30):
            counts[event.type] = counts.get(event.type, 0) + 1
            if isinstance(event, Chunk):
                audio += event.audio
            elif isinstance(event, Timestamps):
                for word, start, end in zip(event.words, event.start, event.end, strict=False):
                    print(
                        f"  word     {word:<12} {start:6.3f}-{end:6.3f} s  (flush {event.flush_id})"
                    )
            elif isinstance(event, PhonemeTimestamps):
                pass  # counted; one line per phoneme would drown the output
            elif isinstance(event, FlushDone):
                print(f"  flush_done flush_id={event.flush_id}")
            elif isinstance(event, Done):
                print("  done")
        print("event counts:", ", ".join(f"{k}={v}" for k, v in counts.items()))
        write_wav(args.out / "response.wav", bytes(audio))

        # An error ends its own context only; it arrives as an event with a typed exception.
        bad = conn.context(model_id="no-such-model", voice=VOICE_ID, output_format=OUTPUT_FORMAT)
        await bad.push("This will fail.")
        async for event in bad.receive(timeout=30):
            if isinstance(event, Error):
                error = event.exception()
                print(f"error event -> {type(error).__name__}: {error}")

        again = conn.context(model_id=MODEL_ID, voice=VOICE_ID, output_format=OUTPUT_FORMAT)
        await again.push("The connection still works.")
        await again.no_more_inputs()
        last = [event async for event in again.receive(timeout=30)][-1]
        print(f"after the error, a new context on the same connection ends with: {last.type}")


if __name__ == "__main__":
    asyncio.run(main())
