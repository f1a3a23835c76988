#
# Copyright (c) 2026, pipecat-cartesia-ctx contributors
#
# SPDX-License-Identifier: BSD 2-Clause License
#

"""Pytest plugin: a local Cartesia emulator for your own bot's tests, no API key, no network.

Installed with the package and registered through the ``pytest11`` entry point,
so its fixtures are there in every test session:

- ``cartesia_emulator``: a running `CartesiaEmulator` with instant pacing, on
  127.0.0.1 and a free port; ``.url`` for pipecat's and our services,
  ``.base_url`` for the official SDK, ``.record`` for what it received and spoke.
  ``@pytest.mark.cartesia_emulator(pacing=..., behavior=..., ...)`` passes any
  `CartesiaEmulator` argument to it.
- ``cartesia_emulator_factory``: an async callable that starts more emulators
  (instant pacing unless told otherwise); every one stops after the test.

Both are async fixtures run by pytest-asyncio, in the test's own event loop,
under its strict and auto modes alike::

    @pytest.mark.asyncio  # not needed in auto mode
    async def test_my_bot_says_hello(cartesia_emulator):
        tts = CartesiaContextTTSService(api_key="test", url=cartesia_emulator.url, ...)
        await run_test(tts, frames_to_send=[TTSSpeakFrame("Hello there!")])
        assert cartesia_emulator.record.spoken() == ["Hello there!"]

Loading the plugin imports the package (its client: websockets and loguru),
never pipecat; the emulator is imported when a fixture is first used.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .emulator import CartesiaEmulator

try:
    import pytest_asyncio
except ImportError:  # pragma: no cover - exercised only without the extra
    pytest_asyncio = None

MARKER = "cartesia_emulator"

EmulatorFactory = Callable[..., Awaitable["CartesiaEmulator"]]


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker that configures the ``cartesia_emulator`` fixture."""
    config.addinivalue_line(
        "markers",
        f"{MARKER}(**kwargs): CartesiaEmulator arguments for the cartesia_emulator fixture "
        "(pacing, behavior, faults, api_key, max_concurrent_contexts, ...)",
    )


def _async_fixture(func: Callable[..., Any]) -> Any:
    """Declare an async fixture with pytest-asyncio, or one that says it is missing."""
    if pytest_asyncio is not None:
        return pytest_asyncio.fixture(func)

    @pytest.fixture(name=func.__name__)
    def missing() -> None:
        pytest.fail(
            f"the {func.__name__} fixture needs pytest-asyncio: "
            "pip install 'pipecat-cartesia-ctx[testing]'",
            pytrace=False,
        )

    missing.__doc__ = func.__doc__
    return missing


@_async_fixture
async def cartesia_emulator_factory() -> AsyncIterator[EmulatorFactory]:
    """Start Cartesia emulators on loopback; all of them stop after the test.

    Call it with any `CartesiaEmulator` argument; ``pacing`` defaults to
    ``Pacing.instant()``. Returns the running emulator.
    """
    from .emulator import CartesiaEmulator, Pacing

    started: list[CartesiaEmulator] = []

    async def make(**kwargs: Any) -> CartesiaEmulator:
        kwargs.setdefault("pacing", Pacing.instant())
        emulator = CartesiaEmulator(**kwargs)
        started.append(emulator)
        return await emulator.start()

    yield make
    for emulator in reversed(started):
        await emulator.stop()


@_async_fixture
async def cartesia_emulator(
    request: pytest.FixtureRequest, cartesia_emulator_factory: EmulatorFactory
) -> CartesiaEmulator:
    """A running Cartesia emulator with instant pacing (``.url``, ``.base_url``, ``.record``).

    ``@pytest.mark.cartesia_emulator(**kwargs)`` on the test (or its class or
    module) passes ``kwargs`` to `CartesiaEmulator`, the closest marker winning.
    """
    marker = request.node.get_closest_marker(MARKER)
    return await cartesia_emulator_factory(**(marker.kwargs if marker else {}))
