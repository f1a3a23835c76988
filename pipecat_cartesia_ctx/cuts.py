#
# Copyright (c) 2026, pipecat-cartesia-ctx contributors
#
# SPDX-License-Identifier: BSD 2-Clause License
#

"""Sans-I/O: where a turn's streamed text may be cut, and what ends at each cut.

The `CutFinder` reads the text as it arrives and lists the places a push may
end: after whitespace or after a CJK character, never inside a Cartesia tag
(``<break time="1s"/>``, ``<spell>...</spell>``, ``<<...>>`` phoneme blocks),
each with what ends right before it (a sentence, a clause, or nothing).

Each character is examined once: the finder carries its state from one piece
of text to the next and keeps only a short window of text behind it, so a
200 KB frame costs what 200 KB of tokens cost, not its square. A cut it cannot
judge yet (an open tag, ``"etc. "`` before the next word) waits at the front.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .protocol.text import ends_sentence, period_context, tag_end

# Each of these characters is a word of its own (Chinese, Japanese, fullwidth forms).
_CJK_CHARS = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3000-\u303f\uff00-\uffef"
_CJK = re.compile(f"[{_CJK_CHARS}]")
_CJK_SENTENCE_END = "\u3002\uff01\uff1f"  # ideographic full stop, fullwidth ! and ?
_CJK_CLAUSE_END = "\u3001\uff0c\uff1b\uff1a"  # ideographic comma, fullwidth , ; :
_CLAUSE_PUNCT = ",;:"
_DASHES = ("\u2014", "\u2013", "-")  # em dash, en dash, hyphen (only when spaced)
_CLOSERS = "\"')]}\u00bb\u201d\u2019"
# Text kept behind the front to judge punctuation (the word before a period).
_LOOKBACK = 64

# Where the finder has something to do: whitespace, a possible tag, a CJK character.
_NEXT = re.compile(f"[\\s<{_CJK_CHARS}]")
_SPACES = re.compile(r"\s*")
_ALNUM = re.compile(r"[^\W_]")  # exactly str.isalnum

SENTENCE = "sentence"
CLAUSE = "clause"
_PERIOD = "period"  # a period: `ends_sentence` decides
_NO_CUT = "no cut"  # a period that ends no sentence: no push may end after it


@dataclass(frozen=True, slots=True)
class Cut:
    """A place where a push may end.

    Parameters:
        position: Characters of the turn's text before the cut.
        boundary: ``"sentence"``, ``"clause"`` or None: what ends right before it.
        run_start: Where the whitespace the cut follows begins (the cut itself
            after a CJK character): text from there on up to the cut is only
            whitespace.
        words: Words (tokens with a letter or digit) that began before the cut,
            counted from the start of the turn.
    """

    position: int
    boundary: str | None
    run_start: int
    words: int


@dataclass(slots=True)
class _Run:
    """Whitespace still arriving at the front, its cuts not all known yet."""

    start: int
    boundary: str | None
    # The period before it, when only the next word can tell whether it ends a
    # sentence: (word, character before the word).
    held: tuple[str, str] | None = None
    cut: bool = False  # the cut right after its first character is listed


class CutFinder:
    """Finds the cuts of one turn's text as it streams in, each character once."""

    def __init__(self):
        # The text from absolute position `_base` on: a short window behind the
        # front, and what is not examined yet. The "\n" before the turn makes
        # its start a line start ("1. " opening a turn numbers a list item).
        self._text = "\n"
        self._base = -1
        self._front = 0  # absolute: everything before it has been examined
        self._words = 0  # words begun before the front
        self._in_word = False  # the front is inside a token already counted
        self._run: _Run | None = None
        self.cuts: list[Cut] = []
        self.first = 0  # cuts before this index are pushed and forgotten

    @property
    def end(self) -> int:
        """Characters received."""
        return self._base + len(self._text)

    @property
    def words(self) -> int:
        """Words begun in the text examined so far."""
        return self._words

    def add(self, text: str) -> None:
        """Take the next piece of the turn's text (`scan` examines it)."""
        self._text += text

    def scan(self, final: bool) -> None:
        """Examine what arrived; ``final``: nothing more will (decide what waits).

        Args:
            final: The turn's text has ended.
        """
        text, base = self._text, self._base
        end = base + len(text)
        i = self._front
        if self._run is not None:
            i = self._extend_run(i, final)
        while i < end and self._run is None:
            m = _NEXT.search(text, i - base)
            j = end if m is None else m.start() + base
            self._count(i, j)
            if m is None:
                i = end
                break
            ch = text[j - base]
            if ch == "<":
                tag_end = self._tag_end(j)
                if tag_end is None:  # literal text
                    self._count(j, j + 1)
                    i = j + 1
                    continue
                if tag_end < 0:  # may still become a tag: wait for it
                    if final:
                        self._count(j, end)  # its words count; no cut inside it
                        i = end
                    else:
                        i = j
                    break
                self._count(j, tag_end)
                i = tag_end
            elif ch.isspace():
                self._in_word = False
                self._run = _Run(j, *self._judge(j))
                i = self._extend_run(j, final)
            else:  # a CJK character: a word of its own, a cut after it
                self._count(j, j + 1)
                self.cuts.append(Cut(j + 1, self._classify(j + 1), j + 1, self._words))
                i = j + 1
        self._front = i
        self._trim()

    def drop_through(self, position: int) -> None:
        """Forget the cuts up to ``position`` (the text before it was pushed).

        Indices into `cuts` held by a caller are good until the next call.
        """
        cuts, k = self.cuts, self.first
        while k < len(cuts) and cuts[k].position <= position:
            k += 1
        self.first = k
        if k > 1024 and 2 * k > len(cuts):
            # Now and then, not at every push: deleting from the front moves the rest.
            del cuts[:k]
            self.first = 0

    def skip_to(self, position: int) -> None:
        """Nothing before ``position`` will be pushed (the turn's leading whitespace)."""
        self.drop_through(position)
        if position > self._front:
            # Only whitespace was skipped: it is no run of the turn's, and ends no word.
            self._front = position
            self._run = None
            self._in_word = False

    # -- internals ------------------------------------------------------------

    def _count(self, start: int, stop: int) -> None:
        """Count the word begun in ``[start, stop)``, text without whitespace."""
        if start < stop and not self._in_word:
            base = self._base
            if _ALNUM.search(self._text, start - base, stop - base):
                self._words += 1
                self._in_word = True

    def _extend_run(self, i: int, final: bool) -> int:
        """Go on with the whitespace run at the front; its cuts once they are known."""
        run = self._run
        assert run is not None
        base = self._base
        stop = _SPACES.match(self._text, i - base).end() + base
        ended = stop < self.end or final
        if run.held is not None:
            if not ended:
                return stop
            following = self._text[stop - base] if stop < self.end else ""
            word, before = run.held
            run.held = None
            run.boundary = SENTENCE if ends_sentence(word, before, following) else _NO_CUT
        if run.boundary == _NO_CUT:
            pass  # "Dr. ": a push ending here would have the server speak "Dr." alone
        elif not run.cut:
            # Right after the first whitespace character: a flush never waits for more.
            self.cuts.append(Cut(run.start + 1, run.boundary, run.start, self._words))
            run.cut = True
        if ended:
            if run.boundary != _NO_CUT and stop > run.start + 1:
                self.cuts.append(Cut(stop, run.boundary, run.start, self._words))
            self._run = None
        return stop

    def _judge(self, run_start: int) -> tuple[str | None, tuple[str, str] | None]:
        """What ends before the whitespace at ``run_start``, or what to hold it for."""
        boundary = self._classify(run_start)
        if boundary != _PERIOD:
            return boundary, None
        dot = self._period_before(run_start)
        word, before = period_context(self._text, dot - self._base)
        verdict = ends_sentence(word, before, None)
        if verdict is None:
            return None, (word, before)  # the next word tells: hold the cut for it
        return (SENTENCE if verdict else _NO_CUT), None

    def _period_before(self, end: int) -> int:
        i = end - self._base
        while i > 0 and self._text[i - 1] in _CLOSERS:
            i -= 1
        return i - 1 + self._base

    def _classify(self, end: int) -> str | None:
        """What the punctuation right before ``end`` (absolute) ends.

        Punctuation ends something only when whitespace follows it ("3.14" is
        no sentence end), except CJK punctuation, which needs no space.
        """
        text = self._text
        i = end - self._base
        while i > 0 and text[i - 1] in _CLOSERS:
            i -= 1
        if i <= 0:
            return None
        last = text[i - 1]
        if last in _CJK_SENTENCE_END or last in "!?":
            return SENTENCE
        if last in _CJK_CLAUSE_END:
            return CLAUSE
        if last == "\u2026" or text[max(0, i - 3) : i] == "...":
            return CLAUSE  # an ellipsis trails off more often than it ends
        if last == ".":
            return _PERIOD
        if last in _CLAUSE_PUNCT:
            return CLAUSE
        if last in _DASHES:
            # A dash is a clause mark when it stands alone ("word - word") or is
            # an em or en dash ("word\u2014 word"); not a hyphen ending a word.
            start = i - 1
            while start > 0 and text[start - 1] in _DASHES:
                start -= 1
            return CLAUSE if last != "-" or start == 0 or text[start - 1].isspace() else None
        return None

    def _tag_end(self, at: int) -> int | None:
        """Where the tag starting at ``at`` ends: None if it is text, -1 if not known yet."""
        end = tag_end(self._text, at - self._base, complete=False)
        return end + self._base if end is not None and end >= 0 else end

    def _trim(self) -> None:
        """Keep only a short window behind the front (and what waits at it)."""
        keep = self._front - _LOOKBACK
        if keep - self._base > 4 * _LOOKBACK:
            self._text = self._text[keep - self._base :]
            self._base = keep
