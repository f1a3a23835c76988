"""Raw-socket helpers: speak the wire protocol to the emulator without our client."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping

from helpers import MODEL, S16_24K, VOICE
from websockets.asyncio.client import ClientConnection, connect

from pipecat_cartesia_ctx.emulator import CartesiaEmulator
from pipecat_cartesia_ctx.protocol import Done, Error, parse_event

KEY = "raw-socket-key"


def connect_raw(
    emu: CartesiaEmulator, url: str | None = None, headers: Mapping[str, str] | None = None
) -> connect:
    """A plain websockets connection to the emulator, with a key unless headers say otherwise."""
    return connect(url or emu.url, additional_headers={"X-API-Key": KEY, **(headers or {})})


def wire(context_id: str, transcript: str = "", *, cont: bool = True, **extra) -> str:
    """A generation request with the test defaults; ``extra`` adds or overrides fields."""
    msg = {
        "context_id": context_id,
        "model_id": MODEL,
        "voice": {"mode": "id", "id": VOICE},
        "output_format": S16_24K,
        "transcript": transcript,
        "continue": cont,
    }
    msg.update(extra)
    return json.dumps(msg)


async def read_until(ws: ClientConnection, predicate, timeout: float = 5.0) -> list:
    """Every event until one satisfies ``predicate`` (included)."""
    events = []
    async with asyncio.timeout(timeout):
        while True:
            event = parse_event(await ws.recv())
            events.append(event)
            if predicate(event):
                return events


def ends(context_id: str):
    """A predicate: the event ends ``context_id`` (its done or error)."""
    return lambda e: isinstance(e, Done | Error) and e.context_id == context_id
