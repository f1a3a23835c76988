#
# Copyright (c) 2026, pipecat-cartesia-ctx contributors
#
# SPDX-License-Identifier: BSD 2-Clause License
#

"""Where the espeak voice's words are: the text espeak is given, and spans from its events.

Pure functions, no espeak: what of a text is spoken (tags blanked, breaks cut
out), its words as Cartesia reports them (whitespace tokens), and each word's
and phoneme's span in samples from espeak's word and phoneme events.
"""

from __future__ import annotations

import re
from bisect import bisect_right

from ..protocol.text import tag_end
from .espeak_lib import END, PHONEME, WORD, Event
from .voice import _ANY_TAG, _CJK, _SELF_CLOSING_TAG, _break_seconds

_TOKEN = re.compile(r"\S+")
_STRESS = str.maketrans("", "", "\u02c8\u02cc")  # IPA primary and secondary stress


def parts(text: str) -> list[str | float]:
    """``text`` as the pieces espeak renders (str) and breaks (seconds), in order."""
    parts: list[str | float] = []
    pos = 0
    for tag in _SELF_CLOSING_TAG.finditer(text):
        parts.append(text[pos : tag.start()])
        if tag.group(1).lower() == "break" and (seconds := _break_seconds(tag.group(0))):
            parts.append(seconds)
        pos = tag.end()
    parts.append(text[pos:])
    return [p for p in parts if not isinstance(p, str) or p.strip()]


def unmarked(text: str) -> str:
    """``text`` with its tags blanked out, by the protocol's rule of what a tag is.

    Blanked, not removed: espeak's character positions stay those of the text.
    A ``"<"`` that starts no tag (``"3 < 4"``) stays; ``<spell>ABC</spell>``
    keeps ``ABC``.
    """
    chars = list(text)
    at = text.find("<")
    while at != -1:
        end = tag_end(text, at)
        if end is not None:
            # A paired tag's end is past its closing tag: blank the opening tag
            # alone, the closing one is found next.
            if not text.startswith("<<", at):
                end = min(end, text.index(">", at) + 1)
            chars[at:end] = " " * (end - at)
        at = text.find("<", at + 1 if end is None else end)
    return "".join(chars)


def word_tokens(text: str) -> list[tuple[str, int, int]]:
    """The words of the timestamps, with where each is in ``text``.

    Whitespace tokens as sent, punctuation attached; Chinese and Japanese one
    character per token, as `SyntheticVoice` and Cartesia give them.
    """
    tokens: list[tuple[str, int, int]] = []
    for match in _TOKEN.finditer(text):
        if _CJK.search(match.group()):
            tokens += [
                (ch, match.start() + i, match.start() + i + 1) for i, ch in enumerate(match.group())
            ]
        else:
            tokens.append((match.group(), match.start(), match.end()))
    return tokens


def spans(
    tokens: list[tuple[str, int, int]], events: list[Event], total: int
) -> tuple[list[tuple[str, int, int]], list[tuple[str, int, int]]]:
    """Each token's span and each phoneme's, in samples, from espeak's events."""
    starts = [start for _, start, _ in tokens]
    timed: dict[int, list[int]] = {}  # token -> [start, end]: tokens with a word event
    phonemes: list[tuple[str, int, int]] = []
    word: int | None = None  # the token being spoken
    word_at = 0  # its word event
    started: int | None = None  # its first phoneme
    phoneme: tuple[str, int] | None = None

    def close_word(sample: int) -> None:
        nonlocal word
        if word is not None:
            start = word_at if started is None else started
            span = timed.setdefault(word, [start, sample])
            span[0], span[1] = min(span[0], start), max(span[1], sample)
            word = None

    for event in [*events, Event(END, 0, total, "")]:
        if phoneme is not None:  # any event ends the phoneme before it
            phonemes.append((phoneme[0], phoneme[1], event.sample))
            phoneme = None
        if event.kind == WORD:
            close_word(event.sample)  # a word ends where the next begins (its lead-in excluded)
            # The token the event falls in, or the one before it: espeak places the
            # second word of what it reads out ("👋" is "waving hand") past the token.
            word = max(bisect_right(starts, event.char) - 1, 0) if tokens else None
            word_at, started = event.sample, None
        elif event.kind == PHONEME and event.name:
            phoneme = (event.name.translate(_STRESS), event.sample)
            if word is not None and started is None:
                started = event.sample
        else:  # a pause (a phoneme with no name), a clause's end, the end
            close_word(event.sample)
    return _share(tokens, timed), phonemes


def _share(
    tokens: list[tuple[str, int, int]], timed: dict[int, list[int]]
) -> list[tuple[str, int, int]]:
    """Every token's span: a token with no word event of its own shares the one before.

    Tokens before the first timed one share its span too. Shares follow the
    letters; a token with none (a dash) gets an empty span where it falls.
    """
    spans = [(text, 0, 0) for text, _, _ in tokens]
    anchors = sorted(timed)
    for k, anchor in enumerate(anchors):
        group = range(
            0 if k == 0 else anchor, anchors[k + 1] if k + 1 < len(anchors) else len(tokens)
        )
        start, end = timed[anchor]
        weights = [
            max(sum(ch.isalnum() for ch in _ANY_TAG.sub("", tokens[i][0])), int(i == anchor))
            for i in group
        ]
        total, done = sum(weights), 0
        for i, weight in zip(group, weights, strict=True):
            a = start + (end - start) * done // total
            done += weight
            spans[i] = (tokens[i][0], a, start + (end - start) * done // total)
    return spans
