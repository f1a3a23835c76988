#
# Copyright (c) 2026, pipecat-cartesia-ctx contributors
#
# SPDX-License-Identifier: BSD 2-Clause License
#

"""Per-turn bookkeeping of `CartesiaContextTTSService`: no pipecat, no I/O.

A turn (one pipecat audio context) owns a segmenter and a chain of Cartesia
contexts, its *links*: one, or more after a voice, model or language change
mid-turn. Each link keeps its segment ledger and the timings that become
per-segment metrics.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from typing import Any

from .audio import Pcm16Converter
from .client import CartesiaContext
from .ledger import Segment, SegmentLedger
from .protocol import Chunk
from .segmenter import FlushOn, Segmenter

# Server-side buffering for each flush policy (protocol doc, 4.2). The service
# flushes at every boundary itself, so the server never waits past one: its
# buffer only matters while an LLM stalls mid-segment, and is kept short where
# segments are short. With "turn" there are no flushes until the end, so the
# server's own managed buffering (its 3000 ms default) decides the pacing.
BUFFER_DELAY_MS: dict[FlushOn, int | None] = {
    FlushOn.CLAUSE: 500,
    FlushOn.SENTENCE: 1000,
    FlushOn.TURN: None,
}

# Settings that cannot change within a Cartesia context.
LOCKED_SETTINGS = frozenset({"voice", "model", "language", "pronunciation_dict_id"})

_CARTESIA_TAG = re.compile(r"</?(?:spell|emotion|break|volume|speed)\b[^>]*>", re.IGNORECASE)


@dataclass
class CartesiaServiceStats:
    """Counters of a `CartesiaContextTTSService` since it started.

    Parameters:
        contexts_opened: Cartesia contexts that received input.
        contexts_cancelled: Contexts cancelled by an interruption.
        stale_events_dropped: Server events that arrived for cancelled,
            finished or unknown contexts and were dropped.
        characters_sent: Characters of text sent to Cartesia.
        errors: Error events received.
    """

    contexts_opened: int = 0
    contexts_cancelled: int = 0
    stale_events_dropped: int = 0
    characters_sent: int = 0
    errors: int = 0


@dataclass
class Link:
    """One Cartesia context of a turn, with its segments and their timings.

    Parameters:
        context: The Cartesia context.
        first_number: The turn-level number of the context's first segment.
    """

    context: CartesiaContext
    first_number: int
    ledger: SegmentLedger = field(default_factory=SegmentLedger)
    active: bool = False  # input sent
    closed: bool = False  # no_more_inputs sent
    done: bool = False  # all its events received
    audio_bytes: int = 0
    _sent_at: dict[int, float] = field(default_factory=dict)
    _first_audio_at: dict[int, float] = field(default_factory=dict)
    _segment_bytes: dict[int, int] = field(default_factory=dict)

    def number(self, local: int) -> int:
        """The turn-level number of the context's segment ``local``."""
        return self.first_number + local - 1

    @property
    def next_number(self) -> int:
        """The turn-level number the next context's first segment gets."""
        return self.number(self.ledger.open_segment)

    def sent(self, text: str, now: float) -> bool:
        """Record a push of ``text`` at ``now`` (monotonic seconds).

        Returns:
            True if it is the context's first input.
        """
        self._sent_at.setdefault(self.ledger.open_segment, now)
        self.ledger.pushed(text)
        opened, self.active = not self.active, True
        return opened

    def received(self, chunk: Chunk, now: float) -> tuple[int, list[Segment]]:
        """Record a chunk received at ``now``.

        Returns:
            The chunk's segment (the context's numbering) and the segments now complete.
        """
        local, done = self.ledger.chunk(chunk.flush_id)
        self._first_audio_at.setdefault(local, now)
        self.audio_bytes += len(chunk.audio)
        self._segment_bytes[local] = self._segment_bytes.get(local, 0) + len(chunk.audio)
        return local, done

    def ttfb(self, local: int) -> float | None:
        """Seconds from the segment's first text sent to its first audio, if it had audio."""
        sent, heard = self._sent_at.get(local), self._first_audio_at.get(local)
        return heard - sent if sent is not None and heard is not None else None

    def segment_bytes(self, local: int) -> int:
        """Bytes of audio received for the segment."""
        return self._segment_bytes.get(local, 0)


@dataclass
class Turn:
    """One audio context: its segmentation, its chain of Cartesia contexts, its audio.

    Parameters:
        context_id: The pipecat audio context (and the first Cartesia context's id).
        segmenter: Cuts the turn's text into pushes and flushes.
        converter: Brings the wire encoding to 16-bit PCM.
        resampler: Brings the wire rate to the pipeline's, when they differ.
    """

    context_id: str
    segmenter: Segmenter
    converter: Pcm16Converter
    resampler: Any
    link: Link | None = None  # the context new text goes to
    every_link: list[Link] = field(default_factory=list)
    # Links with input, in order, for the receiver; None once the turn's input ended.
    ready: asyncio.Queue[Link | None] = field(default_factory=asyncio.Queue)
    receiver: asyncio.Task | None = None
    switch_pending: bool = False
    input_ended: bool = False
    failed: bool = False
    first_sent: bool = False
    heard: bool = False
    audio_offset: float = 0.0  # seconds of audio of the turn's earlier contexts

    @property
    def next_context_id(self) -> str:
        """The id for the turn's next Cartesia context."""
        number = len(self.every_link) + 1
        return self.context_id if number == 1 else f"{self.context_id}-{number}"


def strip_tags(word: str) -> str:
    """A timestamp word without Cartesia tags (``"<spell>1234</spell>."`` is ``"1234."``).

    A tag between two letters or digits stands for a space; anywhere else it
    is removed, so a word keeps its punctuation.
    """

    def replace(match: re.Match) -> str:
        before = word[match.start() - 1] if match.start() else ""
        after = word[match.end()] if match.end() < len(word) else ""
        return " " if before.isalnum() and after.isalnum() else ""

    return re.sub(r"\s+", " ", _CARTESIA_TAG.sub(replace, word)).strip()
