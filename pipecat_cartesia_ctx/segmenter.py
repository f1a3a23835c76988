#
# Copyright (c) 2026, pipecat-cartesia-ctx contributors
#
# SPDX-License-Identifier: BSD 2-Clause License
#

"""Sans-I/O segmentation of streamed text into pushes and flush points.

An LLM's tokens arrive in arbitrary pieces. The `Segmenter` turns them into
what one Cartesia context needs:

- ``Push(text)``: text to send now as a continuation. Cut only at word
  boundaries (after whitespace, or after a CJK character), never inside a
  Cartesia tag (``<break time="1s"/>``, ``<spell>...</spell>``, ``<<...>>``
  phoneme blocks), so pronunciation dictionaries still see whole words. The
  concatenation of all pushes is exactly the turn's text (leading whitespace
  of the turn aside): spaces are kept and sentences are never glued.
- ``Flush()``: the end of a segment, at a sentence end (or clause end, or only
  at the end of the turn, as configured).

The first push of a context waits for ``first_push_words`` complete words or
for the end of a clause, whichever comes first, because Cartesia speaks very
short first inputs with odd prosody; it is never whitespace or punctuation only.

Its cost is linear in the text: where text may be cut is found once per
character (`CutFinder`), and each decision goes on from where the last one
stopped.

No I/O and no pipecat here: pure state, fed text, returning actions.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import StrEnum

from .cuts import SENTENCE, Cut, CutFinder


class FlushOn(StrEnum):
    """Where segments end."""

    SENTENCE = "sentence"
    """At each sentence end (``.`` ``!`` ``?``), the default."""
    CLAUSE = "clause"
    """Also at ``,`` ``;`` ``:`` and dashes: the lowest latency, shorter segments."""
    TURN = "turn"
    """Only at the end of the turn: one segment, the server's buffering decides pacing."""


@dataclass(frozen=True, slots=True)
class Push:
    """Text to send now on the context (``continue: true``)."""

    text: str


@dataclass(frozen=True, slots=True)
class Flush:
    """The segment made of everything pushed since the previous flush is complete."""


Action = Push | Flush

# More words than this before the first push is not a prosody rule but a stall.
MAX_FIRST_PUSH_WORDS = 50

# A first segment cut short after one of these would end hanging ("Your order of"):
# it takes the next word too, up to this many more.
_HANGING_WORDS = frozenset(
    {
        *("a", "an", "the", "of", "to", "in", "on", "at", "for", "with", "by", "from", "into"),
        *("and", "or", "but", "nor", "if", "as", "than", "that", "so", "because"),
        *("my", "your", "our", "their", "his", "her", "its", "this", "these", "those"),
        *("is", "are", "was", "were", "what", "which", "who"),
    }
)
_MORE_FOR_HANGING = 3


@dataclass(frozen=True, slots=True)
class Position:
    """Where the turn stands, as the turn engine knows it: the segmenter keeps none of it.

    Parameters:
        opening: The next push opens a Cartesia context (the first-push rule applies).
        first_segment: No segment of the turn has ended yet.
        switch: End the segment at the next sentence end, whatever ``flush_on``
            says (a new context follows it).
        early: The segment may end early (``first_segment_words``,
            ``flush_first_clause``): it is the first, or the one after a first
            too short to hide the wait for a sentence ("Sure! ").
        low: The audio queued ahead of the listener is running out: the
            segment ends at its next clause, not its sentence, whatever
            ``flush_on`` says (except ``"turn"``), so the next audio comes sooner.
    """

    opening: bool = True
    first_segment: bool = True
    switch: bool = False
    early: bool = True
    low: bool = False

    def after(self, action: Action) -> Position:
        """Where the turn stands once ``action`` is sent."""
        if isinstance(action, Push):
            return Position(False, self.first_segment, self.switch, self.early, self.low)
        # The flush a switch asked for ends the context: a new one follows. Audio
        # still running low stays so until the engine says otherwise.
        return Position(self.opening or self.switch, False, False, False, self.low)


class Segmenter:
    """Cuts one turn's streamed text into pushes and flush points.

    It holds only the text not pushed yet (and a little of what was pushed, to
    judge punctuation); where the turn stands comes in with each call.

    Parameters:
        flush_on: Where segments end (sentence, clause or turn).
        first_push_words: Complete words the first push waits for, unless a
            clause or sentence ends first. 0 or 1 pushes the first complete word.
        flush_first_clause: End the first segment at the first clause end, for
            a faster first audio; later segments end at sentences.
        first_segment_words: End the first segment after this many words if
            no clause or sentence has ended it sooner (0: no limit), for a first
            audio that does not wait for a long first sentence. Later segments
            follow ``flush_on``; with ``"turn"`` it does not apply.
        whole_segments: Push each segment in one piece when it is complete
            (for ``max_buffer_delay_ms: 0``, where the server speaks each input
            at once and expects whole phrases), instead of word by word.

    Raises:
        ValueError: ``flush_on``, ``first_push_words`` or ``first_segment_words``
            is not allowed.
    """

    def __init__(
        self,
        flush_on: FlushOn | str = FlushOn.SENTENCE,
        *,
        first_push_words: int = 3,
        flush_first_clause: bool = False,
        first_segment_words: int = 0,
        whole_segments: bool = False,
    ):
        try:
            self.flush_on = FlushOn(flush_on)
        except ValueError:
            choices = ", ".join(repr(f.value) for f in FlushOn)
            raise ValueError(f"flush_on must be one of {choices}, got {flush_on!r}") from None
        for name, value in (
            ("first_push_words", first_push_words),
            ("first_segment_words", first_segment_words),
        ):
            if (
                isinstance(value, bool)
                or not isinstance(value, int)
                or not 0 <= value <= MAX_FIRST_PUSH_WORDS
            ):
                raise ValueError(
                    f"{name} must be an integer from 0 to {MAX_FIRST_PUSH_WORDS}, got {value!r}"
                )
        self.first_push_words = first_push_words
        self.first_segment_words = first_segment_words
        self.flush_first_clause = flush_first_clause
        self.whole_segments = whole_segments
        self._cuts = CutFinder()
        # The text not pushed yet, as it came: the pieces from `_start` on.
        self._pieces: deque[str] = deque()
        self._head = 0  # characters of the first piece already pushed
        self._start = 0  # characters of the turn's text pushed (or skipped)
        self._start_words = 0  # words begun before `_start`
        self._finished = False
        # How far the search for the next cut went, for a search that goes on
        # with the same position: (position, final), cuts looked at, last allowed cut.
        self._looked: tuple[Position, bool] | None = None
        self._seen = 0
        self._best: Cut | None = None

    @property
    def pending(self) -> str:
        """Text received but not pushed yet."""
        pending = "".join(self._pieces)
        return pending[self._head :]

    @property
    def finished(self) -> bool:
        """Whether the turn's text has ended (`finish` was called)."""
        return self._finished

    def feed(self, text: str, at: Position) -> list[Action]:
        """Take the next piece of text.

        Args:
            text: Any piece: a token, a word, several sentences.
            at: Where the turn stands.

        Returns:
            What to send now, in order.

        Raises:
            ValueError: The turn's text has already ended.
        """
        if self._finished:
            raise ValueError("the turn's text has ended; feed() after finish()")
        if text:
            self._pieces.append(text)
            self._cuts.add(text)
        return self._emit(at, final=False)

    def finish(self, at: Position) -> list[Action]:
        """End of the turn: push whatever is left (the close follows, no flush needed).

        Args:
            at: Where the turn stands.

        Returns:
            The last push, if there is anything to say.
        """
        if self._finished:
            return []
        self._finished = True
        return self._emit(at, final=True)

    def end_segment(self, at: Position) -> list[Action]:
        """End the segment now, at the last word boundary received (the LLM has stalled).

        The text up to the last cut with a word in it goes out and is flushed,
        whatever the first-push and first-segment rules would wait for: the turn
        has waited long enough. A word still arriving (no whitespace after it
        yet) stays, so no word is cut in two.

        Args:
            at: Where the turn stands.

        Returns:
            A push and a flush, or nothing when no whole word is waiting.
        """
        if self._finished:
            return []
        if at.opening and at.first_segment:
            self._skip_whitespace()
        self._cuts.scan(False)
        cuts = self._cuts.cuts
        if len(cuts) <= self._cuts.first:
            return []
        cut = cuts[-1]  # the furthest: every cut listed may end a push
        if cut.run_start <= self._start or cut.words <= self._start_words:
            return []  # only whitespace, or no word, before it
        return [Push(self._take(cut)), Flush()]

    # -- internals ------------------------------------------------------------

    def _emit(self, at: Position, final: bool) -> list[Action]:
        actions: list[Action] = []
        if at.opening and at.first_segment:
            # A turn never starts with whitespace. Later, whitespace before a
            # new context is the turn's text; the engine does not send it.
            self._skip_whitespace()
        self._cuts.scan(final)
        while self._start < self._cuts.end:
            cut, flush = self._next_cut(at, final)
            if cut is None:
                break
            text = self._take(cut)
            if actions and isinstance(actions[-1], Push):
                actions[-1] = Push(actions[-1].text + text)
            else:
                actions.append(Push(text))
            at = at.after(actions[-1])
            if flush:
                actions.append(Flush())
                at = at.after(actions[-1])
        return actions

    def _next_cut(self, at: Position, final: bool) -> tuple[Cut | None, bool]:
        """Where to cut next, and whether a flush follows the cut.

        Returns the furthest allowed cut, or the first boundary that flushes;
        None means: wait for more text. Cuts already looked at with the same
        position are not looked at again.
        """
        if self._looked != (at, final):
            self._looked, self._seen, self._best = (at, final), self._cuts.first, None
        cuts = self._cuts.cuts
        while self._seen < len(cuts):
            cut = cuts[self._seen]
            self._seen += 1
            only_space = cut.run_start <= self._start
            if only_space and not final:
                # Whitespace waits for the word it leads to: a server that numbers
                # every input as a segment would count a whitespace-only input.
                continue
            if at.opening and not self._may_open(cut):
                continue
            # What ended before whitespace that was pushed ended its segment then.
            if not only_space and cut.boundary and self._flushes_at(cut.boundary, at):
                return cut, True
            if not only_space and self._first_segment_full(cut, at):
                return cut, True
            self._best = cut
        end = self._cuts.end
        # The end pushes what is left; only a turn with nothing speakable at all
        # pushes nothing (it opens no context). Later leftovers are the turn's
        # text even where no context will speak them.
        opening_turn = at.opening and at.first_segment
        speakable = self._cuts.words > self._start_words
        best = self._best.position if self._best else self._start
        if final and best < end and (not opening_turn or speakable):
            return Cut(end, None, end, self._cuts.words), False
        if self.whole_segments and not final:
            return None, False  # the segment goes out whole, at its flush or at the end
        return self._best, False

    def _may_open(self, cut: Cut) -> bool:
        """Whether the text up to ``cut`` may be the first push of a context."""
        words = cut.words - self._start_words
        if words < 1:
            return False  # whitespace or punctuation only: Cartesia refuses it
        ends = cut.boundary is not None and cut.run_start > self._start
        return ends or words >= max(self.first_push_words, 1)

    def _first_segment_full(self, cut: Cut, at: Position) -> bool:
        """Whether the first segment ends at ``cut``: it has ``first_segment_words`` words."""
        # Counted from the turn's start: after a first segment of one or two words
        # ("Sure! "), the next ends once the turn has twice as many.
        limit = self.first_segment_words * (1 if at.first_segment else 2)
        if (
            not at.early
            or not self.first_segment_words
            or cut.words < limit
            or self.flush_on is FlushOn.TURN
            or at.switch
        ):
            return False
        if cut.words >= limit + _MORE_FOR_HANGING:
            return True
        last = self._text(self._start, cut.run_start).rsplit(None, 1)[-1:]
        return not last or last[0].lower() not in _HANGING_WORDS

    def _text(self, start: int, end: int) -> str:
        """The turn's text from ``start`` to ``end``, not pushed yet (costs that much)."""
        taken, at = [], self._start
        for n, piece in enumerate(self._pieces):
            piece = piece[self._head :] if n == 0 else piece
            if at + len(piece) > start:
                taken.append(piece[max(0, start - at) : end - at])
            at += len(piece)
            if at >= end:
                break
        return "".join(taken)

    def _flushes_at(self, boundary: str, at: Position) -> bool:
        if at.switch and boundary == SENTENCE:
            return True
        if self.flush_on is FlushOn.TURN:
            return False
        if boundary == SENTENCE or self.flush_on is FlushOn.CLAUSE:
            return True
        return (self.flush_first_clause and at.early) or at.low

    def _take(self, cut: Cut) -> str:
        """The text from the start up to ``cut``, which is now pushed."""
        need = cut.position - self._start
        taken = []
        while need:
            piece = self._pieces[0]
            stop = min(len(piece), self._head + need)
            taken.append(piece[self._head : stop])
            need -= stop - self._head
            if stop == len(piece):
                self._pieces.popleft()
                self._head = 0
            else:
                self._head = stop
        self._moved_to(cut.position, cut.words)
        return "".join(taken)

    def _skip_whitespace(self) -> None:
        start = self._start
        while self._pieces:
            piece = self._pieces[0]
            if not piece[self._head].isspace():
                break
            rest = len(piece) - self._head
            kept = len(piece[self._head :].lstrip())
            start += rest - kept
            if kept:
                self._head = len(piece) - kept
                break
            self._pieces.popleft()
            self._head = 0
        if start != self._start:
            self._cuts.skip_to(start)
            self._moved_to(start, self._start_words)  # whitespace begins no word

    def _moved_to(self, start: int, words: int) -> None:
        """Everything before ``start`` is pushed; ``words`` words began before it."""
        self._start, self._start_words = start, words
        self._cuts.drop_through(start)
        self._looked = None
