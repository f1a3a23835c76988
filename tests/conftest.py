"""Shared fixtures: an emulator on loopback and a connection to it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable

import pytest
from hypothesis import settings
from loguru import logger

from pipecat_cartesia_ctx.client import CartesiaConnection
from pipecat_cartesia_ctx.emulator import CartesiaEmulator, Pacing

# `pytest --hypothesis-profile=thorough` for a long property-testing run.
settings.register_profile("thorough", max_examples=3000, deadline=None)


@pytest.fixture(autouse=True)
def _quiet_logs():
    # The package logs at DEBUG; keep test output readable but show warnings.
    logger.remove()
    handler = logger.add(lambda m: print(m, end=""), level="WARNING")
    yield
    logger.remove(handler)


@pytest.fixture
async def make_emulator() -> AsyncIterator[Callable[..., CartesiaEmulator]]:
    """Start emulators (instant pacing unless told otherwise); all stop at the end."""
    started: list[CartesiaEmulator] = []

    async def make(**kwargs) -> CartesiaEmulator:
        kwargs.setdefault("pacing", Pacing.instant())
        emu = CartesiaEmulator(**kwargs)
        await emu.start()
        started.append(emu)
        return emu

    yield make
    for emu in started:
        await emu.stop()


@pytest.fixture
async def emu(make_emulator) -> CartesiaEmulator:
    return await make_emulator()


@pytest.fixture
async def conn(emu) -> AsyncIterator[CartesiaConnection]:
    connection = await CartesiaConnection.connect(api_key="test-key", url=emu.url)
    yield connection
    with contextlib.suppress(Exception):
        await connection.close()
