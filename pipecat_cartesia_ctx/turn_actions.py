#
# Copyright (c) 2026, pipecat-cartesia-ctx contributors
#
# SPDX-License-Identifier: BSD 2-Clause License
#

"""What the turn engine asks the service to do, and the failure policy.

`TurnEngine` returns these actions; the service carries them out in order and
keeps no state of its own. `classify` is the failure policy: what an error
that ends a Cartesia context means for the turn (resume, skip one input, fail).
Pure: no pipecat, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from .protocol import (
    AuthenticationError,
    CartesiaAPIError,
    CartesiaConnectionError,
    CartesiaError,
    ContextClosedError,
    ContextFieldChangedError,
    InvalidRequestError,
    ModelNotFoundError,
    QuotaExceededError,
    RateLimitError,
    ServerError,
)


class FaultKind(Enum):
    """What a failed attempt means for the turn (the service's failure policy)."""

    CONNECTION = "connection"
    """The connection went away: resume once it is back."""
    RETRY = "retry"
    """A transient refusal (429, 5xx, context closed): resume after a backoff."""
    SKIP = "skip"
    """One input was refused (400): resume without it."""
    FAIL = "fail"
    """The turn cannot be spoken (quota): end it with the error."""
    FATAL = "fatal"
    """The key was refused (401/403): no turn can be spoken."""


def classify(error: Exception) -> FaultKind:
    """The failure policy: what an error ending an attempt means.

    Args:
        error: The error event's exception, or a connection error.

    Returns:
        The kind of fault.
    """
    if isinstance(error, CartesiaConnectionError):
        return FaultKind.CONNECTION
    if isinstance(error, AuthenticationError) or getattr(error, "status_code", None) == 403:
        return FaultKind.FATAL
    if isinstance(error, QuotaExceededError | ModelNotFoundError | ContextFieldChangedError):
        return FaultKind.FAIL  # the turn's settings, not one input
    if isinstance(error, RateLimitError | ServerError | ContextClosedError):
        return FaultKind.RETRY
    if isinstance(error, InvalidRequestError):
        return FaultKind.SKIP
    if isinstance(error, CartesiaAPIError) and (error.status_code or 500) >= 500:
        return FaultKind.RETRY
    return FaultKind.FAIL


# -- actions: what the service does for the engine ---------------------------------


@dataclass(frozen=True, slots=True)
class Open:
    """Create Cartesia context ``context_id`` with the current settings (nothing is sent yet)."""

    context_id: str


@dataclass(frozen=True, slots=True)
class Send:
    """Push ``text`` on the context (``continue: true``)."""

    context_id: str
    text: str


@dataclass(frozen=True, slots=True)
class SendFlush:
    """Send a manual flush on the context."""

    context_id: str


@dataclass(frozen=True, slots=True)
class Close:
    """End the context's input (``continue: false``)."""

    context_id: str


@dataclass(frozen=True, slots=True)
class Cancel:
    """Cancel the context; nothing more of it is wanted."""

    context_id: str


@dataclass(frozen=True, slots=True)
class StartAudio:
    """The turn has something to say: open its audio (the first text is going out)."""


@dataclass(frozen=True, slots=True)
class Audio:
    """Audio to play, in the wire encoding.

    Parameters:
        data: The bytes.
        flush_id: The turn-level segment it belongs to.
        first: The turn's first audio.
    """

    data: bytes
    flush_id: int
    first: bool = False


@dataclass(frozen=True, slots=True)
class Words:
    """Words whose audio has gone downstream, with their start in seconds of the turn's audio."""

    words: tuple[tuple[str, float], ...]


@dataclass(frozen=True, slots=True)
class SegmentDone:
    """A segment's audio has all gone downstream.

    Parameters:
        flush_id: The turn-level segment number.
        text: Exactly the segment's text.
        ttfb: Seconds from its first text sent to its first audio received.
        audio_bytes: Bytes of its audio that went downstream.
    """

    flush_id: int
    text: str
    ttfb: float | None
    audio_bytes: int


@dataclass(frozen=True, slots=True)
class Skipped:
    """The server refused one segment; it is not spoken and the turn goes on.

    It comes where the segment's audio would have been: after the audio and
    words of the segments before it, before those of the segments after it.
    """

    flush_id: int
    text: str
    error: CartesiaError


@dataclass(frozen=True, slots=True)
class Retry:
    """The current attempt was lost: call `TurnEngine.resume` when it may go on.

    Parameters:
        error: Why.
        kind: `FaultKind.CONNECTION` (wait for the connection) or
            `FaultKind.RETRY` / `FaultKind.SKIP` (wait a backoff).
        attempt: Consecutive losses without progress, from 1.
    """

    error: CartesiaError
    kind: FaultKind
    attempt: int


@dataclass(frozen=True, slots=True)
class Failed:
    """The turn failed: report ``error`` and stop its audio."""

    error: CartesiaError
    fatal: bool = False


@dataclass(frozen=True, slots=True)
class Ended:
    """All the turn's audio has gone downstream.

    Parameters:
        silent: Nothing speakable was ever sent: no audio was opened.
    """

    silent: bool = False


Action = (
    Open
    | Send
    | SendFlush
    | Close
    | Cancel
    | StartAudio
    | Audio
    | Words
    | SegmentDone
    | Skipped
    | Retry
    | Failed
    | Ended
)


def coalesce(actions: list[Action], max_bytes: int) -> list[Action]:
    """The same actions with each run of audio of one segment as one `Audio`.

    Under load the events of a context arrive in batches; one frame per batch
    instead of one per chunk spares pipecat a trip of the whole pipeline per
    chunk, and costs no latency: all of it is here already. The words timed
    within a run follow it (they were voiced in it); every other action keeps
    its place.

    Args:
        actions: Actions in the order the engine gave them.
        max_bytes: The most audio merged into one `Audio`.

    Returns:
        The actions to carry out, in order.
    """
    if len(actions) < 2:
        return actions
    out: list[Action] = []
    run: list[Audio] = []
    words: list[tuple[str, float]] = []

    def end_run() -> None:
        if run:
            first = run[0]
            data = first.data if len(run) == 1 else b"".join(a.data for a in run)
            out.append(Audio(data, first.flush_id, any(a.first for a in run)))
            run.clear()
        if words:
            out.append(Words(tuple(words)))
            words.clear()

    size = 0
    for action in actions:
        if isinstance(action, Audio):
            if run and (action.flush_id != run[0].flush_id or size + len(action.data) > max_bytes):
                end_run()
            if not run:
                size = 0
            run.append(action)
            size += len(action.data)
        elif isinstance(action, Words) and run:
            words.extend(action.words)
        else:
            end_run()
            out.append(action)
    end_run()
    return out
