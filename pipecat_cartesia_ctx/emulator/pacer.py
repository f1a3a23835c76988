#
# Copyright (c) 2026, pipecat-cartesia-ctx contributors
#
# SPDX-License-Identifier: BSD 2-Clause License
#

"""One timer that wakes every stream's chunks when they are due.

With one ``asyncio.sleep`` per chunk, 500 streams of 40 ms chunks are 12,500
event-loop timers a second, each compared in Python inside the loop's heap and
each its own turn of the loop. The pacer keeps the due times in one heap of
tuples and arms a single loop timer for the earliest; when it fires, everything
due by then runs in the same turn: a context's chunk pump directly, with no
task switch, or a waiting task. Calls run a little late (at most ``window``
seconds, plus the loop's own lag) so that those due close together share a
wakeup, and never early.
"""

from __future__ import annotations

import asyncio
import functools
import heapq
import itertools
from collections.abc import Callable

# Half a millisecond: ~6 chunks share a wakeup at 500 streams of 40 ms chunks,
# and a chunk is late by at most 1/80 of its duration.
DEFAULT_WINDOW_S = 0.0005


class Pacer:
    """Calls functions at due times on the running event loop, from one timer.

    Parameters:
        window: Seconds a call may be held back so later ones join its wakeup.
    """

    def __init__(self, window: float = DEFAULT_WINDOW_S):
        if window < 0:
            raise ValueError("window must be >= 0")
        self.window = window
        self._heap: list[tuple[float, int, Callable[[], object]]] = []
        self._order = itertools.count()  # ties are called in the order they were asked
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None

    def __len__(self) -> int:
        return len(self._heap)

    def call_at(self, when: float, callback: Callable[[], object]) -> None:
        """Call ``callback()`` at loop time ``when``, or a little after.

        Args:
            when: A time of the running loop's clock (``loop.time()``).
            callback: What to call; it must not raise (nothing would see it).
        """
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            # An emulator started again on another loop: what waited on the old one is gone.
            self._heap.clear()
            self._timer, self._loop = None, loop
        heapq.heappush(self._heap, (when, next(self._order), callback))
        fire_at = self._heap[0][0] + self.window  # the earliest, this one or an older one
        if self._timer is None or fire_at < self._timer_at:
            self._arm(loop, fire_at)

    async def until(self, when: float) -> None:
        """Return at loop time ``when`` (at once if it has passed).

        Args:
            when: A time of the running loop's clock (``loop.time()``).
        """
        loop = asyncio.get_running_loop()
        if when <= loop.time():
            return
        waiter = loop.create_future()
        self.call_at(when, functools.partial(_wake, waiter))
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
            heapq.heappop(heap)[2]()
        if heap and self._timer is None:
            self._arm(loop, heap[0][0] + self.window)


def _wake(waiter: asyncio.Future[None]) -> None:
    # A waiter whose task was cancelled is done already.
    if not waiter.done():
        waiter.set_result(None)
