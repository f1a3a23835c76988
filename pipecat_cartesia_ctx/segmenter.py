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

No I/O and no pipecat here: pure state, fed text, returning actions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from .protocol.text import is_speakable


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

# Each of these characters is a word of its own (Chinese, Japanese, fullwidth forms).
_CJK = re.compile(
    r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3000-\u303f\uff00-\uffef]"
)
_CJK_SENTENCE_END = "\u3002\uff01\uff1f"  # ideographic full stop, fullwidth ! and ?
_CJK_CLAUSE_END = "\u3001\uff0c\uff1b\uff1a"  # ideographic comma, fullwidth , ; :
_SENTENCE_PUNCT = ".!?"
_CLAUSE_PUNCT = ",;:"
_DASHES = ("\u2014", "\u2013", "-")  # em dash, en dash, hyphen (only when spaced)
_CLOSERS = "\"')]}\u00bb\u201d\u2019"
# Words after which a period does not end a sentence.
_ABBREVIATIONS = frozenset(
    {
        *("mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "mt", "vs", "etc", "cf"),
        *("e.g", "i.e", "approx", "dept", "est", "fig", "inc", "ltd", "co", "corp", "no"),
        *("vol", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct"),
        *("nov", "dec", "mon", "tue", "wed", "thu", "fri", "sat", "sun"),
        *("a.m", "p.m", "u.s", "u.k"),
    }
)
# Tags whose content is atomic too: never cut between <spell> and </spell>.
_PAIRED_TAGS = frozenset({"spell"})
# A "tag" left open for this long is taken for literal text (an LLM writing "a < b").
_MAX_OPEN_TAG = 256
# Pushed characters kept to judge punctuation at the start of the buffer.
_LOOKBACK = 64

_TAG = re.compile(r"<<[^<>]*>>|<(/?)([A-Za-z][\w-]*)\b[^<>]*?(/?)>")
_TAG_START = re.compile(r"<(?:<|/?[A-Za-z])")


def _word_count(text: str) -> int:
    return sum(1 for token in text.split() if any(ch.isalnum() for ch in token))


@dataclass(frozen=True, slots=True)
class Position:
    """Where the turn stands, as the turn engine knows it: the segmenter keeps none of it.

    Parameters:
        opening: The next push opens a Cartesia context (the first-push rule applies).
        first_segment: No segment of the turn has ended yet.
        switch: End the segment at the next sentence end, whatever ``flush_on``
            says (a new context follows it).
    """

    opening: bool = True
    first_segment: bool = True
    switch: bool = False

    def after(self, action: Action) -> Position:
        """Where the turn stands once ``action`` is sent."""
        if isinstance(action, Push):
            return Position(False, self.first_segment, self.switch)
        # The flush a switch asked for ends the context: a new one follows.
        return Position(self.opening or self.switch, False, False)


class Segmenter:
    """Cuts one turn's streamed text into pushes and flush points.

    It holds only the text not pushed yet (and the end of what was pushed, to
    judge punctuation); where the turn stands comes in with each call.

    Parameters:
        flush_on: Where segments end (sentence, clause or turn).
        first_push_words: Complete words the first push waits for, unless a
            clause or sentence ends first. 0 or 1 pushes the first complete word.
        flush_first_clause: End the first segment at the first clause end, for
            a faster first audio; later segments end at sentences.
        whole_segments: Push each segment in one piece when it is complete
            (for ``max_buffer_delay_ms: 0``, where the server speaks each input
            at once and expects whole phrases), instead of word by word.

    Raises:
        ValueError: ``flush_on`` or ``first_push_words`` is not allowed.
    """

    def __init__(
        self,
        flush_on: FlushOn | str = FlushOn.SENTENCE,
        *,
        first_push_words: int = 3,
        flush_first_clause: bool = False,
        whole_segments: bool = False,
    ):
        try:
            self.flush_on = FlushOn(flush_on)
        except ValueError:
            choices = ", ".join(repr(f.value) for f in FlushOn)
            raise ValueError(f"flush_on must be one of {choices}, got {flush_on!r}") from None
        if (
            isinstance(first_push_words, bool)
            or not isinstance(first_push_words, int)
            or not 0 <= first_push_words <= MAX_FIRST_PUSH_WORDS
        ):
            raise ValueError(
                f"first_push_words must be an integer from 0 to {MAX_FIRST_PUSH_WORDS}, "
                f"got {first_push_words!r}"
            )
        self.first_push_words = first_push_words
        self.flush_first_clause = flush_first_clause
        self.whole_segments = whole_segments
        self._buffer = ""
        self._finished = False
        # The end of what was pushed: punctuation is judged by the word before it,
        # which a cut after a CJK character can leave on the pushed side.
        self._tail = "\n"

    @property
    def pending(self) -> str:
        """Text received but not pushed yet."""
        return self._buffer

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
        self._buffer += text
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

    # -- internals ------------------------------------------------------------

    def _emit(self, at: Position, final: bool) -> list[Action]:
        actions: list[Action] = []
        if at.opening and at.first_segment:
            # A turn never starts with whitespace. Later, whitespace before a
            # new context is the turn's text; the engine does not send it.
            self._buffer = self._buffer.lstrip()
        while self._buffer:
            cut, flush = self._next_cut(at, final)
            if cut == 0:
                break
            text, self._buffer = self._buffer[:cut], self._buffer[cut:]
            if actions and isinstance(actions[-1], Push):
                actions[-1] = Push(actions[-1].text + text)
            else:
                actions.append(Push(text))
            at = at.after(actions[-1])
            self._tail = (self._tail + text)[-_LOOKBACK:]
            if flush:
                actions.append(Flush())
                at = at.after(actions[-1])
        return actions

    def _next_cut(self, at: Position, final: bool) -> tuple[int, bool]:
        """Where to cut the buffer next, and whether a flush follows the cut.

        Returns the furthest allowed cut, or the first boundary that flushes.
        ``(0, False)`` means: wait for more text.
        """
        buffer = self._buffer
        safe = self._safe_cuts(buffer, final)
        best = 0
        for cut in safe:
            if not final and buffer[:cut].isspace():
                # Whitespace waits for the word it leads to: a server that numbers
                # every input as a segment would count a whitespace-only input.
                continue
            boundary = self._boundary_before(buffer, cut)
            if at.opening and not self._may_open(buffer[:cut], boundary):
                continue
            if boundary is not None and self._flushes_at(boundary, at):
                return cut, True
            best = cut
        # The end pushes what is left; only a turn with nothing speakable at all
        # pushes nothing (it opens no context). Later leftovers are the turn's
        # text even where no context will speak them.
        opening_turn = at.opening and at.first_segment
        if final and best < len(buffer) and (not opening_turn or is_speakable(buffer)):
            return len(buffer), False
        if self.whole_segments and not final:
            return 0, False  # the segment goes out whole, at its flush or at the end
        return best, False

    def _may_open(self, text: str, boundary: str | None) -> bool:
        """Whether ``text`` may be the first push of a context."""
        if not is_speakable(text):
            return False
        return boundary is not None or _word_count(text) >= max(self.first_push_words, 1)

    def _flushes_at(self, boundary: str, at: Position) -> bool:
        if at.switch and boundary == "sentence":
            return True
        if self.flush_on is FlushOn.TURN:
            return False
        if boundary == "sentence" or self.flush_on is FlushOn.CLAUSE:
            return True
        return self.flush_first_clause and at.first_segment

    def _safe_cuts(self, buffer: str, final: bool) -> list[int]:
        """Positions where the buffer may be cut: after a word, outside any tag."""
        unsafe = _unsafe_spans(buffer)
        cuts = []
        span = 0
        for i in range(1, len(buffer) + 1):
            while span < len(unsafe) and unsafe[span][1] < i:
                span += 1
            if span < len(unsafe) and unsafe[span][0] < i <= unsafe[span][1] - 1:
                continue  # inside a tag (a cut right after its end is fine)
            prev = buffer[i - 1]
            if prev.isspace() or _CJK.match(prev) or (final and i == len(buffer)):
                cuts.append(i)
        return cuts

    def _boundary_before(self, buffer: str, cut: int) -> str | None:
        """``"sentence"``, ``"clause"`` or None: what ends right before the cut.

        Punctuation ends something only when whitespace follows it ("3.14" is
        no sentence end), except CJK punctuation, which needs no space. At the
        end of the turn, the close ends the last segment: no boundary is needed.
        """
        end = cut
        while end > 0 and buffer[end - 1].isspace():
            end -= 1
        if end == 0 or (end == cut and not _CJK.match(buffer[end - 1])):
            return None
        return self._classify(buffer, end)

    def _classify(self, buffer: str, end: int) -> str | None:
        """Classify the punctuation ending at ``end`` (exclusive) in the buffer."""
        # Judge it with the pushed text before the buffer in view.
        text, end = self._tail + buffer, end + len(self._tail)
        i = end
        while i > 0 and text[i - 1] in _CLOSERS:
            i -= 1
        last = text[i - 1]
        if last in _CJK_SENTENCE_END:
            return "sentence"
        if last in _CJK_CLAUSE_END:
            return "clause"
        if last in "!?":
            return "sentence"
        if last == "\u2026" or text[i - 3 : i] == "...":
            return "clause"  # an ellipsis trails off more often than it ends
        if last == ".":
            return "sentence" if _period_ends_sentence(text, i - 1) else None
        if last in _CLAUSE_PUNCT:
            return "clause"
        if last in _DASHES:
            # A dash is a clause mark when it stands alone ("word - word") or is
            # an em or en dash ("word\u2014 word"); not a hyphen ending a word.
            start = i - 1
            while start > 0 and text[start - 1] in _DASHES:
                start -= 1
            return "clause" if last != "-" or text[start - 1].isspace() else None
        return None


def _period_ends_sentence(text: str, dot: int) -> bool:
    """Whether the period at ``text[dot]`` ends a sentence (whitespace follows it)."""
    start = dot
    while start > 0 and not text[start - 1].isspace():
        start -= 1
    word = text[start:dot].lstrip("\"'([{\u00ab\u201c\u2018")
    if not word:
        return True  # a period standing alone still ends what came before it
    if word.lower() in _ABBREVIATIONS:
        return False
    if len(word) == 1 and word.isalpha() and word.isupper():
        return False  # an initial: "J. R. R. Tolkien"
    # "1." opening a line numbers a list item.
    return not (word.isdigit() and (start == 0 or text[start - 1] == "\n"))


def _unsafe_spans(buffer: str) -> list[tuple[int, int]]:
    """Spans ``[start, end)`` that must not be cut: tags, phoneme blocks, spelled words.

    A tag still open at the end of the buffer makes everything from it unsafe,
    unless it has been open for longer than any real tag.
    """
    spans: list[tuple[int, int]] = []
    open_pair: tuple[str, int] | None = None
    pos = 0
    for match in _TAG.finditer(buffer):
        start, end = match.span()
        closing, name, self_closing = match.group(1), (match.group(2) or "").lower(), match.group(3)
        if open_pair is not None:
            if closing and name == open_pair[0]:
                spans.append((open_pair[1], end))
                open_pair = None
            pos = end
            continue
        if name in _PAIRED_TAGS and not closing and not self_closing:
            open_pair = (name, start)
        else:
            spans.append((start, end))
        pos = end
    if open_pair is not None:
        if len(buffer) - open_pair[1] <= _MAX_OPEN_TAG:
            spans.append((open_pair[1], len(buffer) + 1))
        return spans
    # An incomplete tag at the end: "<break ti" or "<<m|".
    tail = _TAG_START.search(buffer, pos)
    while tail is not None:
        if ">" not in buffer[tail.start() :] and len(buffer) - tail.start() <= _MAX_OPEN_TAG:
            spans.append((tail.start(), len(buffer) + 1))
            break
        tail = _TAG_START.search(buffer, tail.start() + 1)
    return spans
