#
# Copyright (c) 2026, pipecat-cartesia-ctx contributors
#
# SPDX-License-Identifier: BSD 2-Clause License
#

"""The turn engine: every fact about one turn, no pipecat, no I/O.

A turn is one pipecat audio context: an LLM answer, or one `TTSSpeakFrame`.
`TurnEngine` takes what happens to it (text, the end of its text, server
events, a lost connection, an interruption) and returns what to do
(`Open`, `Send`, `SendFlush`, `Close`, `Cancel`, `StartAudio`, `Audio`,
`Words`, `SegmentDone`, `Skipped`, `Retry`, `Failed`, `Ended`). The service
only carries those out.

The turn's text lives here once, cut into segments (turn-level ``flush_id``
1, 2, 3...). It goes out on one Cartesia context at a time, an *attempt*; a
new attempt follows a settings change at a sentence end, or replaces one that
was lost (dropped connection, 429, a server error). A replacement replays the
text from the first word whose audio never went downstream: past a segment's
first timestamps, audio is held back past the end of the last word the server
has timed, so what went downstream ends at a word boundary, and a replay never
repeats or cuts a word. A segment's first audio is not held for its
timestamps (its first word would wait on them, every turn): lost then, or
without timestamps, the replay starts at the first unfinished segment and
drops the replayed audio already played.

The phase changes only through `_TRANSITIONS`; anything else is a
`TurnStateError`, and the phase is left as it was.
"""

from __future__ import annotations

import itertools
import re
from collections import deque
from dataclasses import dataclass, field
from enum import Enum

from .ledger import Segment, SegmentLedger
from .protocol import CartesiaError, Chunk, Done, Error, FlushDone, ServerEvent, Timestamps
from .protocol.text import is_speakable
from .segmenter import Flush, FlushOn, Position, Push, Segmenter
from .textbuffer import TextBuffer
from .turn_actions import (
    Action,
    Audio,
    Cancel,
    Close,
    Ended,
    Failed,
    FaultKind,
    Open,
    Retry,
    SegmentDone,
    Send,
    SendFlush,
    Skipped,
    StartAudio,
    Words,
    classify,
)

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

# Text of an open segment waits this long for more before it goes out: the server
# speaks a segment at its flush, so pushing it word by word only costs a message
# per word on both ends. A segment that has waited this long, or grown this
# long, goes out anyway (the server's own buffering then covers a stalled LLM).
HOLD_S = 0.25
HOLD_CHARACTERS = 256
# Less audio than this queued ahead of the listener (a real-time player since the
# turn's first audio) and the segment under way ends at its next clause: the
# wait for a whole sentence would be heard as a gap (a slow LLM, a long sentence).
LOW_AUDIO_S = 0.5

_CARTESIA_TAG = re.compile(r"</?(?:spell|emotion|break|volume|speed)\b[^>]*>", re.IGNORECASE)
_TOKEN = re.compile(r"\S+")


class TurnStateError(CartesiaError):
    """The turn engine was given an input its phase does not allow (our misuse, not the server's).

    The phase is left as it was.
    """


class TurnPhase(Enum):
    """Where a turn is in its life."""

    IDLE = "idle"
    """Nothing speakable yet: no Cartesia context, no audio."""
    STREAMING = "streaming"
    """Text goes out on the current attempt as it comes."""
    SWITCHING = "switching"
    """Streaming; a locked setting changed, so the next sentence end starts a new attempt."""
    RESUMING = "resuming"
    """An attempt was lost; text is kept until `TurnEngine.resume`."""
    ENDED = "ended"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


_P = TurnPhase
_LIVE = frozenset({_P.IDLE, _P.STREAMING, _P.SWITCHING, _P.RESUMING})
_FINAL = frozenset({_P.ENDED, _P.FAILED, _P.INTERRUPTED})
_TEXT_PHASES = frozenset({_P.IDLE, _P.STREAMING, _P.SWITCHING})  # text goes out as it comes
# The whole table of a turn's life: the phases each phase may move to.
_TRANSITIONS: dict[TurnPhase, frozenset[TurnPhase]] = {
    _P.IDLE: frozenset({_P.STREAMING}) | _FINAL,
    _P.STREAMING: frozenset({_P.SWITCHING, _P.RESUMING}) | _FINAL,
    _P.SWITCHING: frozenset({_P.STREAMING, _P.RESUMING}) | _FINAL,
    _P.RESUMING: frozenset({_P.STREAMING}) | _FINAL,
    _P.ENDED: frozenset(),
    _P.FAILED: frozenset(),
    _P.INTERRUPTED: frozenset(),
}


# -- the engine ---------------------------------------------------------------------

TextPos = tuple[int, int]  # (turn segment number, offset into its text)


@dataclass(eq=False, slots=True)
class _Held:
    """Audio of one local segment received and not yet gone downstream."""

    local: int
    data: bytearray
    complete: bool = False  # the segment's audio is all in


@dataclass(eq=False)
class _Attempt:
    """One Cartesia context of the turn: what went out on it and what came back.

    Local segment ``k`` of its ledger is turn segment ``first_segment + k - 1``;
    its text starts ``offset`` characters into its first segment.
    """

    context_id: str
    first_segment: int
    offset: int
    sent_to: TextPos  # how far into the turn's text its input has gone
    skip: int = 0  # replayed audio bytes still to drop (they were played already)
    ledger: SegmentLedger = field(default_factory=SegmentLedger)
    heard: set[int] = field(default_factory=set)  # local segments with audio
    held: deque[_Held] = field(default_factory=deque)
    released: int = 0  # audio bytes gone downstream (or dropped as already played)
    played: dict[int, int] = field(default_factory=dict)  # released bytes per local segment
    timed: bool = False  # word timestamps came for it
    placeable: bool = True  # every timed word was found in its text
    cursor: tuple[int, int] = (1, 0)  # (local segment, offset): where word search resumes
    words: deque[tuple[str, float, int, TextPos]] = field(default_factory=deque)
    timed_to: int = 0  # audio bytes covered by timed words
    words_end: int = 0  # audio bytes through the end of the last word gone downstream
    voiced: TextPos | None = None  # just after the last word (or segment) gone downstream
    base: float | None = None  # turn seconds at which its audio starts downstream
    finished: bool = False  # the server's done came: it plays out what it holds, then leaves

    def turn_segment(self, local: int) -> int:
        return self.first_segment + local - 1

    def position(self, local: int, offset: int = 0) -> TextPos:
        """The turn position of ``offset`` in local segment ``local``."""
        return (self.turn_segment(local), (self.offset if local == 1 else 0) + offset)

    @property
    def done_through(self) -> int:
        """Local segments complete, in order.

        An empty segment it flushed (a skipped one) counts; the empty one after
        its last flush does not: the next attempt carries that segment.
        """
        ledger = self.ledger
        carried = ledger.open_segment - (not ledger.has_text(ledger.open_segment))
        return min(ledger.reported, carried)

    @property
    def start(self) -> TextPos:
        return (self.first_segment, self.offset)

    @property
    def has_input(self) -> bool:
        return self.ledger.open_segment > 1 or self.ledger.has_text(1)


class TurnEngine:
    """All the state of one turn, and the rules that change it.

    Parameters:
        context_id: The turn's id (pipecat's audio context); also its first
            Cartesia context's id.
        segmenter: Cuts the turn's text into pushes and flushes.
        bytes_per_second: Audio bytes per second in the wire format.
        sample_width: Bytes per sample in the wire format.
        expect_timestamps: The server sends word timestamps, so audio is held
            to word boundaries. Learned false at the first segment that ends
            with audio and no timestamps.
        hold: Seconds the text of an open segment may wait to go out with more
            (at the latest with its flush); None sends each push at once.
        first_segment_deadline: Seconds after the turn's first word at which
            its first segment ends at the last word received, if it has not
            ended by then (an LLM that stalls); None waits for the segmenter.
        hold_audio_above: Hold audio back to word ends only while at least
            this many seconds are queued ahead of the listener; below, it goes
            down as it comes (a gap would be heard), and a drop then replays
            from the segment's start, dropping what played. None always holds.
    """

    def __init__(
        self,
        context_id: str,
        segmenter: Segmenter,
        *,
        bytes_per_second: int,
        sample_width: int,
        expect_timestamps: bool = True,
        hold: float | None = None,
        first_segment_deadline: float | None = None,
        hold_audio_above: float | None = None,
    ):
        self.context_id = context_id
        self.segmenter = segmenter
        self.expect_timestamps = expect_timestamps
        self._bytes_per_second = bytes_per_second
        self._width = sample_width
        self._phase = TurnPhase.IDLE
        self._segments: list[TextBuffer] = [TextBuffer()]  # segment n's text at index n - 1
        self._reported = 0  # segments reported done (or skipped), in order
        self._skipped: dict[int, Skipped] = {}  # reported in order, with the audio
        self._attempts: list[_Attempt] = []  # live ones, in order: the first one plays
        self._opened = 0  # attempts ever opened
        # Where the next attempt's text starts, and the replayed audio it drops.
        self._next: tuple[TextPos, int] = ((1, 0), 0)
        # After a 400: one segment at a time, each once the one before it is
        # heard, so the next 400 names its segment (the first one not heard).
        self._careful = False
        self._sent_high: TextPos = (1, 0)  # the furthest any attempt's input has gone
        self._released = 0  # audio bytes gone downstream, every attempt
        self._words_through: TextPos = (1, 0)  # the end of the last word gone downstream
        self._segment_bytes: dict[int, int] = {}
        self._sent_at: dict[int, float] = {}
        self._heard_at: dict[int, float] = {}
        self._losses = 0  # consecutive losses without progress
        self._refused_opening = False  # the last skip was a context's first segment
        self.replayed_characters = 0
        self._hold = hold
        self._held_since: float | None = None  # the open segment's text waits since
        self._first_deadline = first_segment_deadline
        self._first_word_at: float | None = None
        self._first_deadline_passed = False  # and the first segment waits for a whole word
        self._audio_started_at: float | None = None  # when the turn's first audio went down
        self._hold_audio_above = hold_audio_above
        self._now = 0.0  # the time of the event being handled

    def __repr__(self) -> str:
        return (
            f"TurnEngine({self.context_id!r}, {self._phase.value}, segments={len(self._segments)})"
        )

    # -- what the turn knows --------------------------------------------------------

    @property
    def phase(self) -> TurnPhase:
        """Where the turn is."""
        return self._phase

    @property
    def segments(self) -> list[str]:
        """The text of each segment so far (segment n at index n - 1)."""
        return [str(text) for text in self._segments]

    @property
    def skipped(self) -> bool:
        """Whether a segment of the turn was refused and not spoken."""
        return bool(self._skipped)

    @property
    def opened(self) -> int:
        """Cartesia contexts opened for the turn."""
        return self._opened

    @property
    def unheard(self) -> int:
        """Characters sent and not yet heard: how far the text runs ahead of the audio.

        Heard: up to the last word played, through the last segment reported
        (done or skipped), and a refused one (it will have no audio: nothing
        is waited for it). Without word timestamps, a segment whose audio has
        begun (its words cannot be told apart).
        """
        heard = (self._reported + 1, 0)
        if self._heard_at and not self.expect_timestamps:
            heard = max(heard, (max(self._heard_at) + 1, 0))
        for attempt in self._attempts:
            heard = max(heard, attempt.voiced or heard)
        while heard[0] in self._skipped:
            heard = (heard[0] + 1, 0)
        return self._characters(heard, self._sent_high)

    # -- inputs from the pipeline -----------------------------------------------------

    def feed(self, text: str, now: float) -> list[Action]:
        """The next piece of the turn's text (an LLM token, a sentence).

        Args:
            text: The text.
            now: Monotonic seconds (for per-segment metrics).

        Returns:
            What to do.

        Raises:
            TurnStateError: The turn has ended, or its text has.
        """
        if self._phase in (TurnPhase.FAILED, TurnPhase.INTERRUPTED):
            return []  # the rest of a failed or interrupted turn is dropped
        self._require(_LIVE, "text")
        if self.segmenter.finished:
            raise TurnStateError(
                "text after the end of the turn's text", context_id=self.context_id
            )
        if self._first_word_at is None and is_speakable(text):
            self._first_word_at = now
        actions = self._take(self.segmenter.feed(text, self._position(now)), now)
        if self._first_deadline_passed:
            actions += self._end_first_segment(now)  # a whole word may be here now
        return actions

    @property
    def deadline(self) -> float | None:
        """When to call `tick` if no other input comes first (on the clock of ``now``).

        Held text is due then, or the first segment's deadline passes; None when
        nothing waits on time.
        """
        if self._phase not in _TEXT_PHASES or self.segmenter.finished:
            return None
        times = []
        if self._held_since is not None and self._hold is not None:
            times.append(self._held_since + self._hold)
        if self._first_deadline_due is not None:
            times.append(self._first_deadline_due)
        return min(times, default=None)

    def tick(self, now: float) -> list[Action]:
        """Time has passed without input: send text that waited long enough.

        Text held for a flush goes out after `hold`; a first segment still open
        `first_segment_deadline` after the turn's first word ends at the last
        word received.

        Args:
            now: Monotonic seconds.

        Returns:
            What to do.
        """
        if self._phase not in _TEXT_PHASES or self.segmenter.finished:
            return []
        due = self._first_deadline_due
        if due is not None and now >= due:
            self._first_deadline_passed = True
            return self._end_first_segment(now)
        return self._take([], now)

    def _end_first_segment(self, now: float) -> list[Action]:
        """Past its deadline, the first segment ends at its last whole word, once there is one."""
        if len(self._segments) > 1 or self._phase not in _TEXT_PHASES:
            self._first_deadline_passed = False
            return []
        cut = self.segmenter.end_segment(self._position(now))
        if not cut and is_speakable(str(self._segments[-1])):
            cut = [Flush()]  # its words are all pushed already (and held, or sent)
        if cut:
            self._first_deadline_passed = False  # once: later stalls have audio playing
        return self._take(cut, now)

    @property
    def _first_deadline_due(self) -> float | None:
        """When the first segment's deadline passes; None once it has, or when none applies."""
        if (
            self._first_deadline is None
            or self._first_word_at is None
            or self._first_deadline_passed
            or len(self._segments) > 1
            or self.segmenter.flush_on is FlushOn.TURN  # no flushes but the turn's end
        ):
            return None
        return self._first_word_at + self._first_deadline

    def end_input(self, now: float) -> list[Action]:
        """The turn's text has ended: push what is left and close the context."""
        if self._phase in _FINAL:
            return []
        actions = self._take(self.segmenter.finish(self._position(now)), now)
        if self._phase is TurnPhase.SWITCHING:
            self._move(TurnPhase.STREAMING)  # no sentence follows to switch at
        return actions + self._close_if_complete() + self._maybe_end()

    def switch_settings(self) -> list[Action]:
        """A locked setting changed: the next sentence goes to a new context.

        The sentence under way ends on the context it started on, so no locked
        field changes within a context and no text is lost. Between two
        sentences (or, on a context that has had input, before any of the
        sentence under way has gone out: its text waits for its flush) the
        context closes now; before anything is sent, the next context simply
        opens with the new settings.
        """
        attempt = self._current
        if self._phase is not TurnPhase.STREAMING or attempt is None:
            return []
        if attempt.has_input and attempt.sent_to == (len(self._segments), 0):
            attempt.ledger.closed()
            self._next = (attempt.sent_to, 0)
            return [Close(attempt.context_id)]
        self._move(TurnPhase.SWITCHING)
        return []

    def interrupt(self) -> list[Action]:
        """The user interrupted: cancel everything live; nothing more goes downstream."""
        if self._phase in _FINAL:
            return []
        self._move(TurnPhase.INTERRUPTED)
        return self._drop_attempts(0)

    def fail(self, error: CartesiaError, *, fatal: bool = False) -> list[Action]:
        """Give the turn up (a retry bound reached, the service unusable)."""
        if self._phase in _FINAL:
            return []
        self._move(TurnPhase.FAILED)
        return [*self._drop_attempts(0), Failed(error, fatal)]

    # -- inputs from the connection -----------------------------------------------------

    def event(self, context_id: str, event: ServerEvent, now: float) -> list[Action]:
        """A server event for one of the turn's contexts.

        Events of a context the turn has given up (cancelled, lost, replaced)
        change nothing: the server may go on sending them.
        """
        attempt = self._attempt(context_id)
        if attempt is None or self._phase in _FINAL:
            return []
        self._now = now
        if isinstance(event, Chunk):
            return self._chunk(attempt, event, now)
        if isinstance(event, Timestamps):
            self._timestamps(attempt, event)
            return self._release(attempt)
        if isinstance(event, FlushDone):
            return self._segments_done(attempt, attempt.ledger.flush_done(event.flush_id), now)
        if isinstance(event, Done):
            attempt.finished = True
            actions = self._segments_done(attempt, attempt.ledger.done(), now)
            return actions + self._release(attempt) + self._maybe_end()
        if isinstance(event, Error):
            return self._lose(attempt, event.exception())
        return []

    def lost(self, error: CartesiaError) -> list[Action]:
        """The connection carrying the turn's contexts went away."""
        if self._phase in _FINAL or not self._attempts:
            return []
        return self._lose(self._attempts[0], error)

    def refused(self, context_id: str, error: CartesiaError) -> list[Action]:
        """Sending on one of the turn's contexts failed."""
        attempt = self._attempt(context_id)
        if attempt is None or self._phase in _FINAL:
            return []
        return self._lose(attempt, error)

    def resume(self, now: float) -> list[Action]:
        """Go on after a `Retry`: the unvoiced text goes out on a new context.

        Raises:
            TurnStateError: The turn is not waiting to resume.
        """
        self._require({TurnPhase.RESUMING}, "resume")
        self._move(TurnPhase.STREAMING)
        return self._catch_up(now) + self._close_if_complete() + self._maybe_end()

    # -- text going out -----------------------------------------------------------------

    @property
    def _current(self) -> _Attempt | None:
        """The attempt new text goes to, if one is open for input."""
        last = self._attempts[-1] if self._attempts else None
        if last is None or last.ledger.input_closed or self._phase is TurnPhase.RESUMING:
            return None
        return last

    def _position(self, now: float) -> Position:
        current = self._current
        segments = len(self._segments)
        # A first segment of a word or two ("Sure! ") plays too briefly to hide
        # the wait for the next sentence: the next one ends early too.
        words = self.segmenter.first_segment_words
        # Per token: count no further than the limit, not the whole first segment.
        short_first = segments == 2 and (
            sum(1 for _ in itertools.islice(_TOKEN.finditer(str(self._segments[0])), words)) < words
        )
        return Position(
            # An attempt opens only with speakable text, sent or held for its flush:
            # it has had its first push.
            opening=self._phase is not TurnPhase.RESUMING and current is None,
            first_segment=segments == 1,
            switch=self._phase is TurnPhase.SWITCHING,
            early=segments == 1 or short_first,
            low=self._audio_ahead(now) < LOW_AUDIO_S,
        )

    def _audio_ahead(self, now: float) -> float:
        """Seconds of audio gone downstream that a real-time player has not played yet.

        Counted from the turn's first audio, as if playback never paused; before
        any audio, infinite (the first segment has rules of its own).
        """
        if self._audio_started_at is None:
            return float("inf")
        return self._released / self._bytes_per_second - (now - self._audio_started_at)

    def _take(self, cut: list[Push | Flush], now: float) -> list[Action]:
        """Add the segmenter's output to the turn's text, then send what may go."""
        for action in cut:
            if isinstance(action, Push):
                self._segments[-1].append(action.text)
            else:
                self._segments.append(TextBuffer())
        if self._phase is TurnPhase.IDLE and cut:
            self._move(TurnPhase.STREAMING)
        return self._catch_up(now)

    def _end(self) -> TextPos:
        return (len(self._segments), len(self._segments[-1]))

    def _catch_up(self, now: float) -> list[Action]:
        """Send the turn's text the current attempt has not had yet."""
        # Text holds only while this pass holds it (a careful wait or a switch is no hold).
        since, self._held_since = self._held_since, None
        if self._phase not in (TurnPhase.STREAMING, TurnPhase.SWITCHING):
            return []
        actions: list[Action] = []
        attempt = self._current
        if attempt is None:
            attempt = self._open()
            if attempt is None:
                return actions
            if self._opened == 1:
                actions.append(StartAudio())
            actions.append(Open(attempt.context_id))
        last = len(self._segments)
        while True:
            segment, offset = attempt.sent_to
            if self._waits(attempt, segment):
                break
            piece = "" if segment in self._skipped else self._segments[segment - 1].tail(offset)
            if segment == last and self._hold_piece(piece, now, since):
                break
            if piece:
                self._sent_at.setdefault(segment, now)
                attempt.ledger.pushed(piece)
                actions.append(Send(attempt.context_id, piece))
                attempt.sent_to = (segment, offset + len(piece))
                self._sent_high = max(self._sent_high, attempt.sent_to)
            if segment == last:
                break
            attempt.ledger.flushed()
            actions.append(SendFlush(attempt.context_id))
            attempt.sent_to = (segment + 1, 0)
            since = None  # a new segment's text waits from now
            if self._phase is TurnPhase.SWITCHING:
                # The sentence ended: the next one opens a context with the new settings.
                attempt.ledger.closed()
                actions.append(Close(attempt.context_id))
                self._next = (attempt.sent_to, 0)
                self._move(TurnPhase.STREAMING)
                return actions + self._catch_up(now)
        return actions

    def _hold_piece(self, piece: str, now: float, since: float | None) -> bool:
        """Hold the open segment's unsent ``piece`` (waiting since ``since``) for more, or not.

        Returns:
            Whether it waits; then `deadline` says until when.
        """
        if not piece or self._hold is None or self.segmenter.finished:
            return False
        since = now if since is None else since
        if now < since + self._hold and len(piece) < HOLD_CHARACTERS:
            self._held_since = since
            return True
        return False

    def _open(self) -> _Attempt | None:
        """A new attempt from where the next one starts, if anything speakable is there."""
        (segment, offset), skip = self._next
        last = len(self._segments)
        while True:
            piece = "" if segment in self._skipped else self._segments[segment - 1].tail(offset)
            stripped = piece.lstrip()
            if is_speakable(stripped):
                offset += len(piece) - len(stripped)
                break
            if segment == last:
                return None  # wait for more text: a context cannot open on this
            # Nothing to say in the rest of this segment: it is voiced as far as it goes.
            segment, offset, skip = segment + 1, 0, 0
        self._next = ((segment, offset), skip)
        self._opened += 1
        context_id = self.context_id if self._opened == 1 else f"{self.context_id}-{self._opened}"
        self.replayed_characters += self._characters((segment, offset), self._sent_high)
        attempt = _Attempt(context_id, segment, offset, (segment, offset), skip)
        self._attempts.append(attempt)
        return attempt

    def _characters(self, start: TextPos, end: TextPos) -> int:
        """Characters of the turn's text from ``start`` up to ``end``."""
        if end <= start:
            return 0
        (s, so), (e, eo) = start, end
        if s == e:
            return eo - so
        return len(self._segments[s - 1]) - so + sum(map(len, self._segments[s : e - 1])) + eo

    def _close_if_complete(self) -> list[Action]:
        attempt = self._current
        if (
            attempt is None
            or not self.segmenter.finished
            or not attempt.has_input
            or attempt.sent_to != self._end()
        ):
            return []
        attempt.ledger.closed()
        self._next = (attempt.sent_to, 0)
        return [Close(attempt.context_id)]

    def _waits(self, attempt: _Attempt, segment: int) -> bool:
        """After a 400, a segment waits until the one before it (skipped ones aside) is heard."""
        if not self._careful:
            return False
        # The nearest segment before it that was not skipped (looked for backwards:
        # a long turn has thousands of segments).
        before = next(
            (
                n
                for n in range(segment - 1, attempt.first_segment - 1, -1)
                if n not in self._skipped
            ),
            None,
        )
        return before is not None and not self._acked(attempt, before)

    def _acked(self, attempt: _Attempt, segment: int) -> bool:
        local = segment - attempt.first_segment + 1
        # Heard, or reported done (a skipped segment's empty flush has no audio).
        return local in attempt.heard or local <= attempt.ledger.reported

    # -- audio coming back ----------------------------------------------------------------

    def _chunk(self, attempt: _Attempt, chunk: Chunk, now: float) -> list[Action]:
        local, done = attempt.ledger.chunk(chunk.flush_id)
        actions = self._segments_done(attempt, done, now)
        data = chunk.audio
        if attempt.skip:
            # Replayed audio that was played before the connection dropped. (A
            # replay that drops bytes plays at once: its audio starts where they did.)
            if attempt.base is None:
                played = self._released - attempt.released - attempt.skip
                attempt.base = played / self._bytes_per_second
            dropped = min(attempt.skip, len(data))
            attempt.skip -= dropped
            attempt.released += dropped
            attempt.played[local] = attempt.played.get(local, 0) + dropped
            data = data[dropped:]
        if local not in attempt.heard:
            attempt.heard.add(local)
            self._heard_at.setdefault(attempt.turn_segment(local), now)
            if self._careful:
                actions += self._catch_up(now) + self._close_if_complete()
        if data:
            if attempt.held and attempt.held[-1].local == local:
                attempt.held[-1].data += data
            else:
                attempt.held.append(_Held(local, bytearray(data)))
        return actions + self._release(attempt)

    def _timestamps(self, attempt: _Attempt, event: Timestamps) -> None:
        attempt.timed = True
        for word, start, end in zip(event.words, event.start, event.end, strict=True):
            position = self._place(attempt, word)
            # round, not int: 0.001125 * 48000 is 53.99999999999999.
            end_bytes = round(end * self._bytes_per_second) // self._width * self._width
            attempt.timed_to = max(attempt.timed_to, end_bytes)
            attempt.words.append((strip_tags(word), float(start), end_bytes, position))

    def _place(self, attempt: _Attempt, word: str) -> TextPos:
        """Where a timed word ends in the turn's text.

        The server times the words as sent, so each is found verbatim, in order.
        """
        local, offset = attempt.cursor
        while local <= attempt.ledger.open_segment:
            found = attempt.ledger.find(local, word, offset)
            if found >= 0:
                attempt.cursor = (local, found + len(word))
                return attempt.position(local, found + len(word))
            local, offset = local + 1, 0
        attempt.placeable = False  # normalized words: a replay falls back to segments
        return attempt.start

    def _segments_done(
        self, attempt: _Attempt, segments: list[Segment], now: float
    ) -> list[Action]:
        if not segments and not attempt.finished and not self._careful:
            return []  # most chunks: nothing ended, nothing to release twice
        for segment in segments:
            if segment.number in attempt.heard and not attempt.timed:
                self.expect_timestamps = False  # a server without timestamps: hold nothing
            attempt.heard.add(segment.number)
        for held in attempt.held:
            # After done, audio the ledger filed past its segments (numbering it
            # cannot place) is complete too, or the attempt would never leave.
            held.complete = held.local <= attempt.done_through or attempt.finished
        actions = self._release(attempt)
        if self._careful:
            actions += self._catch_up(now) + self._close_if_complete()
        return actions

    def _release(self, attempt: _Attempt) -> list[Action]:
        """Send downstream what the playing attempt may: whole segments, or up to a word end.

        An attempt that has finished and played everything leaves, and the next
        one plays what it holds (a later context can finish first).
        """
        if self._phase in _FINAL or not self._attempts or attempt is not self._attempts[0]:
            return []
        actions = self._release_head(attempt)
        if attempt.finished and not attempt.held:
            self._attempts.pop(0)
            if self._attempts:
                actions += self._release(self._attempts[0])
        return actions

    def _release_head(self, attempt: _Attempt) -> list[Action]:
        # What came before the playing attempt's text is over (voiced, or skipped).
        actions = self._report_through(attempt.first_segment - 1)
        # Run by run: a segment's audio, then its words, then its end.
        while attempt.held:
            held = attempt.held[0]
            limit = len(held.data)
            if self.expect_timestamps and not held.complete and self._holds_audio(attempt, held):
                limit = max(0, min(limit, attempt.timed_to - attempt.released))
            if limit:
                actions.append(self._emit(attempt, held.local, bytes(held.data[:limit])))
                del held.data[:limit]
            if held.data or not held.complete:
                break
            attempt.held.popleft()
            actions += self._played_out(attempt)
        return actions + self._played_out(attempt)

    def _holds_audio(self, attempt: _Attempt, held: _Held) -> bool:
        """Whether audio past the last timed word waits for the next word's timestamps."""
        if not self._timing(attempt, held.local):
            return False
        floor = self._hold_audio_above
        return floor is None or self._audio_ahead(self._now) >= floor

    @staticmethod
    def _timing(attempt: _Attempt, local: int) -> bool:
        """Whether a word of local segment ``local`` has been timed.

        Until then its audio is not held: the first audio of a segment does
        not wait for the server's timestamps of its first word (nor for all of
        them, from a server that sends them late). A replay then starts at the
        segment and drops the bytes played, as without timestamps.
        """
        return attempt.timed_to > attempt.released - attempt.played.get(local, 0)

    def _played_out(self, attempt: _Attempt) -> list[Action]:
        """The words, then the segments, whose audio has all gone downstream."""
        actions: list[Action] = []
        words = []
        while attempt.words and attempt.words[0][2] <= attempt.released:
            word, start, end_bytes, position = attempt.words.popleft()
            attempt.words_end = max(attempt.words_end, end_bytes)
            attempt.voiced = max(attempt.voiced or position, position)
            # A replay from a segment's start times its words again: each goes once.
            if word and position > self._words_through:
                words.append((word, (attempt.base or 0.0) + start))
                self._words_through = position
        if words:
            actions.append(Words(tuple(words)))
        through = attempt.done_through
        if attempt.held:
            through = min(through, attempt.held[0].local - 1)
        if through:
            attempt.voiced = max(
                attempt.voiced or attempt.start, (attempt.turn_segment(through) + 1, 0)
            )
            actions += self._report_through(attempt.turn_segment(through))
        return actions

    def _emit(self, attempt: _Attempt, local: int, data: bytes) -> Audio:
        if attempt.base is None:
            attempt.base = (self._released - attempt.released) / self._bytes_per_second
        segment = attempt.turn_segment(local)
        audio = Audio(data, segment, first=self._released == 0)
        if self._audio_started_at is None:
            self._audio_started_at = self._now
        attempt.released += len(data)
        attempt.played[local] = attempt.played.get(local, 0) + len(data)
        self._released += len(data)
        self._segment_bytes[segment] = self._segment_bytes.get(segment, 0) + len(data)
        self._losses = 0
        self._refused_opening = False
        return audio

    def _report_through(self, number: int) -> list[Action]:
        actions: list[Action] = []
        while self._reported < min(number, len(self._segments)):
            self._reported += 1
            n = self._reported
            text = str(self._segments[n - 1])
            if n in self._skipped:
                actions.append(self._skipped[n])
            elif text:
                sent, heard = self._sent_at.get(n), self._heard_at.get(n)
                ttfb = heard - sent if sent is not None and heard is not None else None
                actions.append(SegmentDone(n, text, ttfb, self._segment_bytes.get(n, 0)))
        return actions

    # -- losing an attempt ------------------------------------------------------------------

    def _lose(self, attempt: _Attempt, error: CartesiaError) -> list[Action]:
        kind = classify(error)
        if kind in (FaultKind.FAIL, FaultKind.FATAL):
            return self.fail(error, fatal=kind is FaultKind.FATAL)
        index = self._attempts.index(attempt)
        start, skip = attempt.start, 0
        if index == 0:
            # Replay from the first word whose audio did not go downstream, or,
            # untimed, from the first unfinished segment, dropping what was played.
            start = attempt.voiced or attempt.start
            local = attempt.done_through + 1
            # Played past the end of the last word gone downstream (a segment's first
            # audio goes untimed; a listener running low gets audio as it comes;
            # timestamps may come before their audio), or replayed bytes still to
            # drop: they are counted from a segment's start.
            ahead = attempt.skip > 0 or (
                attempt.played.get(local, 0) > 0 and attempt.released > attempt.words_end
            )
            if not (self.expect_timestamps and attempt.placeable) or ahead:
                # Replayed bytes it had still to drop were played before, too.
                start, skip = attempt.position(local), attempt.played.get(local, 0) + attempt.skip
        actions: list[Action] = []
        if kind is FaultKind.SKIP:
            culprit = self._unacked(attempt) if self._careful else None
            if culprit is None:
                self._careful = True  # find it: one segment at a time from now on
            elif culprit == attempt.first_segment and not attempt.heard and self._refused_opening:
                # Two contexts in a row refused at their first input: it is the
                # settings (voice, format) that are refused, not one input.
                return self.fail(error)
            else:
                # The refused input is in the one segment not heard yet: skip it.
                self._refused_opening = culprit == attempt.first_segment and not attempt.heard
                # The replay goes on from the last word played, without it.
                text_from = start[1] if start[0] == culprit else 0
                text = self._segments[culprit - 1].tail(text_from)
                self._skipped[culprit] = Skipped(culprit, text, error)
                if culprit == len(self._segments):
                    self._segments.append(TextBuffer())  # what follows is a new segment
                if start[0] >= culprit:
                    start, skip = (culprit + 1, 0), 0
                self._losses = 0  # progress: each skip removes a segment for good
        actions += self._drop_attempts(index)
        self._next = (start, skip)
        self._losses += 1
        self._move(TurnPhase.RESUMING)
        actions.append(Retry(error, kind, self._losses))
        return actions

    def _unacked(self, attempt: _Attempt) -> int | None:
        """The first turn segment sent on ``attempt`` and not heard yet, if there is one."""
        segment, offset = attempt.sent_to
        last = segment - 1 if offset == 0 and segment > attempt.first_segment else segment
        for n in range(attempt.first_segment, last + 1):
            if n not in self._skipped and not self._acked(attempt, n):
                return n
        return None

    def _drop_attempts(self, index: int) -> list[Action]:
        """Give up the attempts from ``index`` on: cancel them, forget their audio."""
        dropped, self._attempts = self._attempts[index:], self._attempts[:index]
        # A finished context is over on the server: there is nothing to cancel.
        return [Cancel(a.context_id) for a in dropped if not a.finished]

    def _maybe_end(self) -> list[Action]:
        """End the turn once its text has ended and every attempt is done."""
        if (
            self._phase not in (TurnPhase.IDLE, TurnPhase.STREAMING)
            or not self.segmenter.finished
            or self._attempts
        ):
            return []
        if self._opened == 0:
            self._move(TurnPhase.ENDED)
            return [Ended(silent=True)]
        actions = self._report_through(len(self._segments))
        if self._released == 0 and self._skipped:
            # Every sentence was refused: the turn said nothing, and that is its error.
            *_, last = self._skipped.values()
            return actions + self.fail(last.error)
        self._move(TurnPhase.ENDED)
        return [*actions, Ended()]

    # -- the phase ------------------------------------------------------------------------

    def _attempt(self, context_id: str) -> _Attempt | None:
        for attempt in self._attempts:  # one or two: a loop, not a generator, per event
            if attempt.context_id == context_id:
                return attempt
        return None

    def _require(self, phases: frozenset[TurnPhase] | set[TurnPhase], what: str) -> None:
        if self._phase not in phases:
            raise TurnStateError(
                f"{what} is not allowed in phase {self._phase.value}", context_id=self.context_id
            )

    def _move(self, phase: TurnPhase) -> None:
        if phase not in _TRANSITIONS[self._phase]:
            raise TurnStateError(
                f"a turn cannot go from {self._phase.value} to {phase.value}",
                context_id=self.context_id,
            )
        self._phase = phase


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
