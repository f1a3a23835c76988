#
# Copyright (c) 2026, pipecat-cartesia-ctx contributors
#
# SPDX-License-Identifier: BSD 2-Clause License
#

"""Sans-I/O bookkeeping of one context's segments against the server's flush ids.

The service numbers its segments 1, 2, 3... by its own manual flushes, and
knows each segment's exact text. The server numbers what it generates with
``flush_id``. Cartesia documents one numbering, and one more is seen in real
traffic (protocol doc, 4.3):

- **manual**: the id goes up at each manual flush, so server id *f* is the
  service's segment *f*;
- **implicit**: with ``max_buffer_delay_ms: 0`` the server may treat every
  input as flushed: each non-empty input, and each manual flush, gets an id of
  its own, with a ``flush_done`` after it.

The `SegmentLedger` starts from the documented numbering and switches to the
implicit one at the first event the documented one cannot explain. The two can
only be told apart by the events, so implicit numbering is followed exactly
when each segment is sent as one push (the service does so whenever it sets
``max_buffer_delay_ms: 0``, the only case where servers number implicitly);
the documented numbering is followed exactly whatever the pushes. Either way
it labels every chunk with the service's segment, and says when a segment is
complete: at its ``flush_done``, when audio of a later segment starts (the
server sends audio in input order), or at ``done`` (the last segment usually
gets no ``flush_done``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .protocol.text import is_speakable
from .textbuffer import TextBuffer


@dataclass(frozen=True, slots=True)
class Segment:
    """A complete segment of the service's.

    Parameters:
        number: 1 for the first segment of the context, then 2, 3...
        text: Exactly the text pushed in it.
    """

    number: int
    text: str


@dataclass(frozen=True, slots=True)
class _Input:
    kind: Literal["push", "flush"]
    segment: int


class SegmentLedger:
    """What the service sent on one context, and which segment each server event belongs to."""

    def __init__(self):
        self._texts: list[TextBuffer] = [TextBuffer()]  # segment n's text at index n - 1
        self._inputs: list[_Input] = []  # the inputs that get an id of their own when implicit
        self._flushes = 0
        self._closed = False
        self._implicit = False
        self._reported = 0
        self._audio_ids: set[int] = set()
        self._last_segment: int | None = None

    @property
    def implicit(self) -> bool:
        """Whether the server has been seen numbering every input."""
        return self._implicit

    @property
    def reported(self) -> int:
        """Segments known complete, in order (those without text included)."""
        return self._reported

    @property
    def input_closed(self) -> bool:
        """Whether the context's input has ended (``continue: false`` sent)."""
        return self._closed

    @property
    def open_segment(self) -> int:
        """The number of the segment new text goes to."""
        return len(self._texts)

    def text(self, number: int) -> str:
        """The text of segment ``number`` so far."""
        return str(self._texts[number - 1])

    def has_text(self, number: int) -> bool:
        """Whether segment ``number`` has text yet."""
        return bool(self._texts[number - 1])

    def find(self, number: int, sub: str, start: int = 0) -> int:
        """Where ``sub`` first is in segment ``number``'s text from ``start`` on (-1: nowhere).

        Costs the text from ``start`` on: word search resumes where it stopped.
        """
        return self._texts[number - 1].find(sub, start)

    # -- what the service sends -------------------------------------------------

    def pushed(self, text: str) -> None:
        """Record a push of ``text`` into the open segment."""
        self._texts[-1].append(text)
        if text:
            self._inputs.append(_Input("push", self.open_segment))

    def flushed(self) -> int:
        """Record a manual flush.

        Returns:
            The number of the segment it closes.
        """
        closed = self.open_segment
        self._inputs.append(_Input("flush", closed))
        self._flushes += 1
        self._texts.append(TextBuffer())
        return closed

    def closed(self) -> None:
        """Record the end of the context's input (``continue: false``)."""
        self._closed = True

    # -- what the server sends --------------------------------------------------

    def chunk(self, flush_id: int | None) -> tuple[int, list[Segment]]:
        """A chunk of audio arrived.

        Args:
            flush_id: Its server flush id; None when the server omitted it.

        Returns:
            The segment the audio belongs to, and the segments now known to be
            complete (earlier ones: audio comes in input order).
        """
        if flush_id is None:
            segment = self._last_segment or self._reported + 1
        else:
            if not self._implicit and (
                flush_id > self._flushes + 1 or not self._texts[flush_id - 1]
            ):
                self._implicit = True  # documented: audio only for a segment with text
            self._audio_ids.add(flush_id)
            segment = self._segment_of(flush_id)
        self._last_segment = segment
        return segment, self._report_through(segment - 1)

    def flush_done(self, flush_id: int) -> list[Segment]:
        """The server finished segment ``flush_id`` (its numbering).

        Returns:
            The segments now complete.
        """
        if not self._implicit and self._contradicts_manual(flush_id):
            self._implicit = True
        if not self._implicit:
            return self._report_through(flush_id)
        unit = self._unit(flush_id)
        if unit is None:
            return []
        # A flush's id ends its segment; a push's id only proves the ones before it done.
        return self._report_through(unit.segment if unit.kind == "flush" else unit.segment - 1)

    def done(self) -> list[Segment]:
        """All output of the context was sent: every segment with text is complete."""
        return self._report_through(len(self._texts))

    # -- internals ----------------------------------------------------------------

    def _contradicts_manual(self, flush_id: int) -> bool:
        """Whether a ``flush_done`` cannot come from the documented numbering."""
        # Documented: one flush_done per manual flush, plus perhaps one for the
        # last segment at the close.
        if flush_id > self._flushes + (1 if self._closed else 0):
            return True
        # Documented: a segment with words has audio before its flush_done. A
        # flush_done with none, for words, acknowledges an input numbered apart.
        return (
            flush_id not in self._audio_ids
            and flush_id <= len(self._texts)
            and is_speakable(str(self._texts[flush_id - 1]))
        )

    def _unit(self, flush_id: int) -> _Input | None:
        return self._inputs[flush_id - 1] if 0 < flush_id <= len(self._inputs) else None

    def _segment_of(self, flush_id: int) -> int:
        if not self._implicit:
            return flush_id
        unit = self._unit(flush_id)
        return unit.segment if unit is not None else self.open_segment

    def _report_through(self, number: int) -> list[Segment]:
        done = []
        while self._reported < min(number, len(self._texts)):
            self._reported += 1
            text = self._texts[self._reported - 1]
            if text:
                done.append(Segment(self._reported, str(text)))
        return done
