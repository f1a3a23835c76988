#
# Copyright (c) 2026, pipecat-cartesia-ctx contributors
#
# SPDX-License-Identifier: BSD 2-Clause License
#

"""`TurnIO`: the I/O side of one turn of the service (its contexts, tasks and audio stream).

Every fact about the turn is in its `TurnEngine`; this holds only what does
I/O for it: the Cartesia contexts open for it, the tasks that receive and
retry, and the converter and resampler its audio goes through.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from .audio import Pcm16Converter
from .client import CartesiaContext
from .turn import TurnEngine


@dataclass(eq=False)
class TurnIO:
    """The I/O side of one turn; every fact about it is in its engine."""

    engine: TurnEngine
    converter: Pcm16Converter
    resampler: Any
    contexts: dict[str, CartesiaContext] = field(default_factory=dict)
    # Contexts in the order they opened, for the receiver; None ends it.
    opened: asyncio.Queue[CartesiaContext | None] = field(default_factory=asyncio.Queue)
    receiver: asyncio.Task | None = None
    retry: asyncio.Task | None = None
    # Set as the turn's audio comes, and once the turn is over: the rest of a
    # long frame waits for it (see `PacedTextMixin._handle_aggregated_text`).
    progress: asyncio.Event = field(default_factory=asyncio.Event)
    # Held by whatever hands the engine text (pipecat's input, the timer, a
    # resume), so the actions of one call go out together and in order.
    sending: asyncio.Lock = field(default_factory=asyncio.Lock)
    # The engine's deadline (`TurnEngine.deadline`) and the timer set for it.
    timer: asyncio.TimerHandle | None = None
    timer_at: float | None = None
    ticking: asyncio.Task | None = None  # the tick the timer started, until it is done

    @property
    def context_id(self) -> str:
        """The turn's id (pipecat's audio context); also its first Cartesia context's id."""
        return self.engine.context_id
