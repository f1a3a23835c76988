"""Helpers shared by the tests."""

from __future__ import annotations

from pipecat_cartesia_ctx.client import CartesiaConnection

VOICE = "a0e99841-438c-4a64-b679-ae501e7d6091"
MODEL = "sonic-3"
S16_24K = {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 24000}


def new_context(conn: CartesiaConnection, **kwargs):
    """A context with the test defaults (sonic-3, 24 kHz s16le, word timestamps)."""
    kwargs.setdefault("model_id", MODEL)
    kwargs.setdefault("voice", VOICE)
    kwargs.setdefault("output_format", S16_24K)
    kwargs.setdefault("add_timestamps", True)
    return conn.context(**kwargs)


async def collect(ctx, timeout: float = 10.0) -> list:
    """Every event of a context until it ends."""
    return [event async for event in ctx.receive(timeout=timeout)]
