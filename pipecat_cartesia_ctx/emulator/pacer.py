#
# Copyright (c) 2026, pipecat-cartesia-ctx contributors
#
# SPDX-License-Identifier: BSD 2-Clause License
#

"""One timer that wakes every stream's chunks when they are due.

With one ``asyncio.sleep`` per chunk, 500 streams of 40 ms chunks are 12,500
event-loop timers a second, each compared in Python inside the loop's heap and
each its own turn of the loop. The pacer keeps the due times in one heap of
tuples and arms a single loop timer for the earliest; when it fires, every
waiter due by then is woken in the same turn. Waiters are woken a little late
(at most ``window`` seconds, plus the loop's own lag) so that those due close
together share a wakeup, and never early.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools

# Half a millisecond: ~6 chunks share a wakeup at 500 streams of 40 ms chunks,
# and a chunk is late by at most 1/80 of its duration.
DEFAULT_WINDOW_S = 0.0005


class Pacer:
    """Wakes tasks at due times on the running event loop, from one timer.

    Parameters:
        window: Seconds a wakeup may be held back so later ones join it.
    """

    def __init__(self, window: float = DEFAULT_WINDOW_S):
        if window < 0:
            raise ValueError("window must be >= 0")
        self.window = window
        self._heap: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()  # ties wake in the order they were asked
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None

    def __len__(self) -> int:
        return len(self._heap)

    async def until(self, when: float) -> None:
        """Return at loop time ``when`` (at once if it has passed).

        Args:
            when: A time of the running loop's clock (``loop.time()``).
        """
        loop = asyncio.get_running_loop()
        if when <= loop.time():
            return
        if loop is not self._loop:
            # An emulator started again on another loop: what waited on the old one is gone.
            self._heap.clear()
            self._timer, self._loop = None, loop
        waiter = loop.create_future()
        heapq.heappush(self._heap, (when, next(self._order), waiter))
        fire_at = when + self.window
        if self._timer is None or fire_at < self._timer_at:
            self._arm(loop, fire_at)
        # A cancelled waiter stays in the heap until it is due, then is skipped.
        await waiter

    def _arm(self, loop: asyncio.AbstractEventLoop, fire_at: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = loop.call_at(fire_at, self._fire, loop)
        self._timer_at = fire_at

    def _fire(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        heap, now = self._heap, loop.time()
        while heap and heap[0][0] <= now:
            waiter = heapq.heappop(heap)[2]
            if not waiter.done():
                waiter.set_result(None)
        if heap:
            self._arm(loop, heap[0][0] + self.window)
