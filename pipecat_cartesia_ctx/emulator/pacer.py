#
# Copyright (c) 2026, pipecat-cartesia-ctx contributors
#
# SPDX-License-Identifier: BSD 2-Clause License
#

"""One timer that wakes every stream's chunks when they are due.

With one ``asyncio.sleep`` per chunk, 500 streams of 40 ms chunks are 12,500
event-loop timers a second, each compared in Python inside the loop's heap and
each its own turn of the loop. The pacer keeps the due times in one heap of
floats (what is due at each, in the order asked, beside it: a float compares
in a few nanoseconds, a tuple first tests its items for equality) and arms a
single loop timer for the earliest; when it fires, everything
due by then runs in the same turn: a context's chunk pump directly, with no
task switch, or a waiting task. Calls run a little late (at most ``window``
seconds, plus the loop's own lag) so that those due close together share a
wakeup, and never early. The loop timer is armed once per wakeup, after every
call due has run (arming it from each call would aim it at calls still to run
in this wakeup: one more, empty, turn of the loop each time), and what the
calls left to write goes out then too (`after_tick`).
"""

from __future__ import annotations

import asyncio
import functools
import heapq
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
        self._heap: list[float] = []  # each due time once
        self._due: dict[float, list[Callable[[], object]]] = {}  # in the order asked
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._firing = False
        self._after_tick: list[Callable[[], object]] = []
        # The loop's time when the running wakeup began: its calls may take it
        # for the time now (a little early: they do nothing early by it).
        self.now = 0.0

    def __len__(self) -> int:
        return sum(map(len, self._due.values()))

    def call_at(self, when: float, callback: Callable[[], object]) -> None:
        """Call ``callback()`` at loop time ``when``, or a little after.

        Args:
            when: A time of the running loop's clock (``loop.time()``).
            callback: What to call; it must not raise (nothing would see it).
        """
        if not self._firing:
            # Not from a call of this wakeup (those are on the pacer's loop: no need
            # to ask, a system call in Python 3.11, and its timer is armed once they
            # have run).
            loop = asyncio.get_running_loop()
            if loop is not self._loop:
                # An emulator started again on another loop: what waited on the old one is gone.
                self._heap.clear()
                self._due.clear()
                self._timer, self._loop = None, loop
        calls = self._due.get(when)
        if calls is None:
            self._due[when] = [callback]
            heapq.heappush(self._heap, when)
        else:
            calls.append(callback)
        if self._firing:
            return
        fire_at = self._heap[0] + self.window  # the earliest, this one or an older one
        if self._timer is None or fire_at < self._timer_at:
            self._arm(loop, fire_at)

    def after_tick(self, callback: Callable[[], object]) -> bool:
        """Call ``callback()`` once every call of the current wakeup has run.

        Args:
            callback: What to call; it must not raise.

        Returns:
            False, calling nothing, when no wakeup is running (the caller is not
            inside a call of the pacer).
        """
        if not self._firing:
            return False
        self._after_tick.append(callback)
        return True

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
        heap, due, now = self._heap, self._due, loop.time()
        self.now = now
        self._firing = True
        try:
            while heap and heap[0] <= now:
                for callback in due.pop(heapq.heappop(heap)):
                    callback()
        finally:
            self._firing = False
            after, self._after_tick = self._after_tick, []
            for callback in after:
                callback()
            if heap:
                self._arm(loop, heap[0] + self.window)


def _wake(waiter: asyncio.Future[None]) -> None:
    # A waiter whose task was cancelled is done already.
    if not waiter.done():
        waiter.set_result(None)
