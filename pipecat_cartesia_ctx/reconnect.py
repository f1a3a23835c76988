#
# Copyright (c) 2026, pipecat-cartesia-ctx contributors
#
# SPDX-License-Identifier: BSD 2-Clause License
#

"""Keeping one Cartesia connection open, and the backoff policy for everything that retries.

`ConnectionKeeper` opens the connection, and opens it again in the
background whenever it closes (a drop, Cartesia's 5-minute idle close, a
server restart), so the next sentence never waits on a failure it could have
seen coming. Only two things end its efforts: a refused key (401/403), at
once, or a server unreachable for ``give_up_after`` seconds in a row.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from loguru import logger

from .client import CartesiaConnection
from .protocol import AuthenticationError, CartesiaError


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff with jitter.

    Parameters:
        max_attempts: Consecutive failures of one turn (without any audio in
            between) after which it is given up.
        initial_delay: Seconds before the first retry.
        max_delay: The longest wait between two retries.
        jitter: Fraction of each delay drawn at random, so that many bots
            refused together do not come back together.
    """

    max_attempts: int = 8
    initial_delay: float = 0.1
    max_delay: float = 2.0
    jitter: float = 0.25

    def __post_init__(self):
        if self.max_attempts < 1 or self.initial_delay < 0 or self.max_delay < self.initial_delay:
            raise ValueError("max_attempts >= 1 and 0 <= initial_delay <= max_delay are required")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter must be between 0 and 1")

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry number ``attempt`` (from 1)."""
        base = min(self.max_delay, self.initial_delay * 2 ** (attempt - 1))
        draw = (rng or random).random()
        return base * (1 - self.jitter * draw)


def is_refused_key(error: Exception) -> bool:
    """A refused key (401/403): retrying cannot help."""
    return isinstance(error, AuthenticationError) or getattr(error, "status_code", None) == 403


class ConnectionKeeper:
    """Keeps a `CartesiaConnection` open, reconnecting in the background.

    Parameters:
        connect: Opens a new connection.
        policy: Backoff between connection attempts.
        give_up_after: Seconds of failed attempts in a row after which the
            server is taken for unreachable (fatal).
        on_fatal: Called once with the error when the keeper gives up.
    """

    def __init__(
        self,
        connect: Callable[[], Awaitable[CartesiaConnection]],
        *,
        policy: RetryPolicy,
        give_up_after: float = 30.0,
        on_fatal: Callable[[CartesiaError], Awaitable[None]],
    ):
        self._connect = connect
        self._policy = policy
        self._give_up_after = give_up_after
        self._on_fatal = on_fatal
        self._connection: CartesiaConnection | None = None
        self._changed = asyncio.Event()
        self._fatal: CartesiaError | None = None
        self._task: asyncio.Task | None = None
        self._closed_connections: list[CartesiaConnection] = []
        self.connects = 0
        self.connect_seconds = 0.0

    @property
    def current(self) -> CartesiaConnection | None:
        """The open connection, if there is one now."""
        connection = self._connection
        return connection if connection is not None and not connection.closed else None

    @property
    def fatal(self) -> CartesiaError | None:
        """Why the keeper gave up, if it did."""
        return self._fatal

    @property
    def reconnects(self) -> int:
        """Connections opened after the first."""
        return max(0, self.connects - 1)

    @property
    def retired(self) -> list[CartesiaConnection]:
        """Connections that have closed (their counters still count)."""
        return self._closed_connections

    def start(self) -> None:
        """Start keeping the connection open."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._keep(), name="cartesia-connection-keeper"
            )

    async def stop(self) -> None:
        """Stop, and close the connection."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.close()
            self._closed_connections.append(connection)

    async def connection(self) -> CartesiaConnection:
        """The open connection, waiting for one if it is being reopened.

        Raises:
            CartesiaError: The keeper gave up (the fatal error).
        """
        while True:
            if self._fatal is not None:
                raise self._fatal
            current = self.current
            if current is not None:
                return current
            self._changed.clear()
            await self._changed.wait()

    def _signal(self) -> None:
        self._changed.set()

    async def _keep(self) -> None:
        while True:
            connection = await self._open()
            if connection is None:
                return
            self._connection = connection
            self._signal()
            await connection.wait_closed()
            self._closed_connections.append(connection)
            logger.info(f"Cartesia connection closed (code {connection.close_code}); reopening it")

    async def _open(self) -> CartesiaConnection | None:
        failing_since: float | None = None
        attempt = 0
        while True:
            started = time.monotonic()
            try:
                connection = await self._connect()
            except CartesiaError as e:
                now = time.monotonic()
                failing_since = failing_since or started
                if is_refused_key(e) or now - failing_since >= self._give_up_after:
                    self._fatal = e
                    self._signal()
                    await self._on_fatal(e)
                    return None
                attempt += 1
                delay = self._policy.delay(attempt)
                logger.warning(f"Cannot connect to Cartesia ({e}); retrying in {delay:.2f} s")
                await asyncio.sleep(delay)
                continue
            self.connects += 1
            self.connect_seconds = time.monotonic() - started
            return connection
