#
# Copyright (c) 2026, pipecat-cartesia-ctx contributors
#
# SPDX-License-Identifier: BSD 2-Clause License
#

"""The life of one Cartesia context as an explicit state machine.

The client feeds it what it sends; the emulator feeds it what it receives.
Both therefore agree on what is legal: input after a close is refused with the
same typed error on both sides, and flush ids are counted the same way.

```
NEW --push/flush--> OPEN --close--> CLOSING --done--> DONE
 |                   |                 |
 +----- cancel ------+-----------------+--> CANCELLED
 |                   |                 |        |
 +----- error -------+-----------------+--------+--> FAILED
```

(A cancelled context can still fail: the server may go on with the generation
under way, and an error event ends that.)
"""

from __future__ import annotations

from enum import Enum

from .errors import ContextClosedError, ContextFieldChangedError, EmptyTranscriptError
from .requests import GenerationRequest
from .text import EMPTY_TRANSCRIPT_MESSAGE, is_speakable


class ContextPhase(Enum):
    """Where a context is in its life."""

    NEW = "new"
    OPEN = "open"
    CLOSING = "closing"
    DONE = "done"
    CANCELLED = "cancelled"
    FAILED = "failed"


_FINISHED = frozenset({ContextPhase.DONE, ContextPhase.CANCELLED, ContextPhase.FAILED})
_RUNNING = frozenset({ContextPhase.NEW, ContextPhase.OPEN, ContextPhase.CLOSING})

# The phases each ending may leave: the whole table of how a context ends.
_ENDINGS: dict[ContextPhase, frozenset[ContextPhase]] = {
    ContextPhase.DONE: _RUNNING,
    ContextPhase.CANCELLED: _RUNNING,
    # The server may go on with a cancelled context's generation; an error ends that too.
    ContextPhase.FAILED: _RUNNING | {ContextPhase.CANCELLED},
}


class ContextState:
    """Per-context protocol state: phase, the opening request, and the manual flush count.

    Parameters:
        context_id: The context's id.
    """

    def __init__(self, context_id: str):
        self.context_id = context_id
        self.phase = ContextPhase.NEW
        self.flushes = 0
        self.inputs = 0
        self.opening: GenerationRequest | None = None

    def __repr__(self) -> str:
        return f"ContextState({self.context_id!r}, {self.phase.value}, flushes={self.flushes})"

    @property
    def accepts_input(self) -> bool:
        """True while generation requests are legal."""
        return self.phase in (ContextPhase.NEW, ContextPhase.OPEN)

    @property
    def finished(self) -> bool:
        """True once done, cancelled or failed: nothing more comes for this context."""
        return self.phase in _FINISHED

    @property
    def current_flush_id(self) -> int:
        """The flush id that audio of text sent now will carry (starts at 1)."""
        return self.flushes + 1

    def input(self, request: GenerationRequest) -> int | None:
        """Apply one generation request; nothing changes if it is refused.

        The first request opens the context and fixes its locked fields. A later
        request that carries text must repeat them; one with an empty transcript
        (a flush, the close) is not checked, because Cartesia's own async SDK
        closes a context with its defaults whatever the context was opened with.

        Args:
            request: The request, sent (client) or received (emulator).

        Returns:
            For a flush, the flush id of the segment it closes; else None.

        Raises:
            ContextClosedError: The context no longer accepts input.
            EmptyTranscriptError: The first transcript has no letter or digit.
            ContextFieldChangedError: A locked field differs from the first input's.
        """
        if not self.accepts_input:
            raise ContextClosedError(
                f"context is {self.phase.value}; it accepts no more input",
                context_id=self.context_id,
            )
        if self.opening is None:
            if not is_speakable(request.transcript):
                raise EmptyTranscriptError(EMPTY_TRANSCRIPT_MESSAGE, context_id=self.context_id)
            self.opening = request
        elif request.transcript:
            self._check_locks(request)
        self.inputs += 1
        closed_flush = None
        if request.flush:
            self.flushes += 1
            closed_flush = self.flushes
        self.phase = ContextPhase.OPEN if request.continue_ else ContextPhase.CLOSING
        return closed_flush

    def _check_locks(self, request: GenerationRequest) -> None:
        opening = self.opening
        changed = [
            name
            for name in request.LOCKED_FIELDS
            if getattr(request, name) != getattr(opening, name)
        ]
        if changed:
            raise ContextFieldChangedError(
                f"{', '.join(changed)} cannot change within a context; open a new context",
                context_id=self.context_id,
            )

    def cancel(self) -> bool:
        """Cancel the context.

        Returns:
            False if it had already finished (the cancel changes nothing).
        """
        return self._finish(ContextPhase.CANCELLED)

    def done(self) -> bool:
        """Mark all output sent or received.

        Returns:
            False if it had already finished.
        """
        return self._finish(ContextPhase.DONE)

    def fail(self) -> bool:
        """Mark the context ended by an error.

        A cancelled context may still fail: the server may still be sending the
        generation that was under way, and an error event ends that too.

        Returns:
            False if it had already finished otherwise (done or failed).
        """
        return self._finish(ContextPhase.FAILED)

    def _finish(self, phase: ContextPhase) -> bool:
        # An ending that comes too late (a stale done after a cancel, a second
        # cancel) changes nothing: the caller learns it from the False.
        if self.phase not in _ENDINGS[phase]:
            return False
        self.phase = phase
        return True
