#
# Copyright (c) 2026, pipecat-cartesia-ctx contributors
#
# SPDX-License-Identifier: BSD 2-Clause License
#

"""What a context needs from the connection it lives on (`Session` provides it)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Protocol

from ..protocol import ServerEvent
from .config import Behavior, Pacing
from .pacer import Pacer
from .voices import Voice

if TYPE_CHECKING:
    from .context import EmulatedContext


class ContextHost(Protocol):
    """What a context needs from the connection it lives on."""

    pacing: Pacing
    behavior: Behavior
    voice: Voice
    pacer: Pacer

    async def send(self, event: ServerEvent, context: EmulatedContext) -> None:
        """Send one event of ``context``."""
        ...

    def send_chunk_now(
        self,
        context: EmulatedContext,
        head: bytes,
        body: bytes,
        tail: bytes,
        flush_id: int | None,
        size: int,
        now: float,
    ) -> bool:
        """Send a chunk of ``context`` (its frame's payload in three parts) from a timer.

        Returns False, sending nothing, when there is something to wait for.
        """
        ...

    def send_now(self, event: ServerEvent, context: EmulatedContext) -> None:
        """Send one event of ``context`` at once, after a chunk `send_chunk_now` sent."""
        ...

    def flush(self) -> None:
        """Write what `send_chunk_now` and `send_now` queued."""
        ...

    def release(self, context: EmulatedContext) -> None:
        """The context is done, cancelled or failed: free its concurrency slot."""
        ...

    def ended(self, context: EmulatedContext) -> None:
        """The context's output task has ended: nothing more will be sent for it."""
        ...

    def start_task(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task:
        """Run a context's output task; it ends no later than the connection."""
        ...
