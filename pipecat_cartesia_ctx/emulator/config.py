#
# Copyright (c) 2026, pipecat-cartesia-ctx contributors
#
# SPDX-License-Identifier: BSD 2-Clause License
#

"""Knobs of the emulator: pacing, protocol choices the real server leaves open, and faults.

All three are plain mutable dataclasses, read by the emulator at the moment
they matter, so a test may change them while the emulator runs (e.g. arm a
fault after the first turn).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum


@dataclass
class Pacing:
    """How fast the emulator produces audio.

    Parameters:
        first_chunk_ms: Time from text becoming ready to its first chunk
            (time to first byte of a generation).
        speed: Audio seconds generated per wall-clock second; ``math.inf``
            sends as fast as the socket takes it.
        chunk_ms: Audio duration of one chunk.
        unaligned_chunks: Cut chunks at byte offsets that are not sample
            boundaries (allowed by Cartesia's contract) to exercise clients.
    """

    first_chunk_ms: float = 90.0
    speed: float = 6.0
    chunk_ms: float = 80.0
    unaligned_chunks: bool = False

    def __post_init__(self):
        if self.first_chunk_ms < 0 or self.chunk_ms <= 0 or not self.speed > 0:
            raise ValueError("first_chunk_ms >= 0, chunk_ms > 0 and speed > 0 are required")

    @classmethod
    def instant(cls) -> Pacing:
        """No waiting at all: for tests that only check content."""
        return cls(first_chunk_ms=0.0, speed=math.inf)

    @classmethod
    def realtime(cls) -> Pacing:
        """Audio at exactly playback speed, after a realistic first-chunk latency."""
        return cls(first_chunk_ms=90.0, speed=1.0)


class CancelBehavior(StrEnum):
    """What the emulator still sends for a context after its cancel.

    Cartesia documents that a cancel "only halts requests that have not begun
    generating a response yet": the generation under way goes on to its end.
    That is the default; the others are kinder servers a client may also meet.
    """

    FINISH_SEGMENT = "segment"
    """The rest of the segment being generated: its chunks, timestamps and flush_done (default)."""
    CHUNK_IN_FLIGHT = "chunk"
    """At most the one chunk being generated when the cancel arrived."""
    IMMEDIATE = "immediate"
    """Nothing of the generation under way."""


@dataclass
class Behavior:
    """Protocol choices, Cartesia's observed behaviour by default (protocol doc, 4.3 and 4.4).

    Parameters:
        cancel: What is still sent of the generation under way after a cancel.
        done_after_cancel: Send ``done`` for a cancelled context once its last
            event is out (Cartesia's 2025-04-16 API spec shows one).
        implicit_flush: With ``max_buffer_delay_ms: 0``, treat every input as
            flushed: a ``flush_done`` after each input's audio, the flush id
            going up without a manual flush (seen on the real server).
        flush_done_at_close: Send a ``flush_done`` for the last segment before
            ``done`` when the context is closed (unknown for the real server).
        timestamps: Send word (and phoneme) timestamps when asked; off, the
            emulator is a server or model that has none.
    """

    cancel: CancelBehavior = CancelBehavior.FINISH_SEGMENT
    done_after_cancel: bool = True
    implicit_flush: bool = True
    flush_done_at_close: bool = False
    timestamps: bool = True


@dataclass
class InjectedError:
    """The error event a fault sends.

    Parameters:
        status_code: HTTP-style status.
        error_code: Machine-readable code.
        title: Short title.
        message: Human-readable text.
    """

    status_code: int = 500
    error_code: str = "internal_error"
    title: str = "Internal Server Error"
    message: str = "injected by the emulator"


# The faults that fire after a number of chunks: while one is armed, chunks go
# through the context's task, which counts them.
_AFTER_CHUNKS = (
    "drop_after_chunks",
    "close_after_chunks",
    "error_after_chunks",
    "malformed_after_chunks",
    "stall_after_chunks",
)


@dataclass
class Faults:
    """Faults to inject; each fires once (counted per connection) and then disarms itself.

    Parameters:
        drop_after_chunks: Abort the TCP connection, with no close frame,
            right after this many chunks on a connection.
        close_after_chunks: Close the socket cleanly (code ``close_code``)
            right after this many chunks on a connection.
        close_code: Close code used by ``close_after_chunks``.
        error_after_chunks: After this many chunks, end the context that sent
            the last one with ``error``.
        error: The error event for ``error_after_chunks``.
        malformed_after_chunks: After this many chunks, send one frame that is
            not valid JSON.
        stall_after_chunks: After this many chunks, send nothing on the
            connection for ``stall_ms``.
        stall_ms: Length of the stall.
        refuse_transcripts_containing: Refuse every input whose transcript
            contains this text with a 400 error event (which ends its context,
            as every error does); unlike the others, this fault stays armed.
    """

    drop_after_chunks: int | None = None
    close_after_chunks: int | None = None
    close_code: int = 1011
    error_after_chunks: int | None = None
    error: InjectedError | None = None
    malformed_after_chunks: int | None = None
    stall_after_chunks: int | None = None
    stall_ms: float = 500.0
    refuse_transcripts_containing: str | None = None

    # Kept up to date as those fields are set: read for every chunk sent.
    armed: bool = field(default=False, init=False, repr=False, compare=False)

    def __setattr__(self, name: str, value: object) -> None:
        object.__setattr__(self, name, value)
        if name in _AFTER_CHUNKS:
            armed = any(getattr(self, f, None) is not None for f in _AFTER_CHUNKS)
            object.__setattr__(self, "armed", armed)

    def armed_after_chunks(self) -> bool:
        """Whether a fault that fires after a number of chunks is armed (also ``armed``)."""
        return self.armed

    def take(self, name: str, chunks: int) -> bool:
        """Fire fault ``name`` if it is armed for ``chunks`` chunks, disarming it.

        Args:
            name: The field name, e.g. ``"drop_after_chunks"``.
            chunks: Chunks sent so far on the connection.

        Returns:
            True if the fault fires now.
        """
        limit = getattr(self, name)
        if limit is None or chunks < limit:
            return False
        setattr(self, name, None)
        return True
