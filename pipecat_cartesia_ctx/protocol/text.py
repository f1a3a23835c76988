#
# Copyright (c) 2026, pipecat-cartesia-ctx contributors
#
# SPDX-License-Identifier: BSD 2-Clause License
#

"""Text rules both sides of the protocol must agree on.

Defined once: the client refuses locally what the emulator refuses on the wire,
and the service's segmenter never produces what either would refuse.
"""

from __future__ import annotations

import re

# Cartesia's own wording for a context whose first transcript it refuses (real
# frames quoted in pipecat #1703 and LiveKit #3080/#3084; protocol doc, 4.1).
EMPTY_TRANSCRIPT_MESSAGE = "transcript empty or contains only punctuation"


def is_speakable(text: str) -> bool:
    """Whether ``text`` may open a context: it holds at least one letter or digit.

    Cartesia refuses a context whose first transcript is empty, whitespace or
    punctuation only (``""``, ``" "``, ``"..."``, ``"?!"``). Letters and digits of
    any script count (``str.isalnum``), so CJK text is speakable.

    Args:
        text: A transcript.

    Returns:
        True if a context may start with it.
    """
    return any(ch.isalnum() for ch in text)


def is_utf8(text: str) -> bool:
    """Whether ``text`` can go on the wire: it has no lone surrogate.

    JSON may carry an escaped lone surrogate and Python decodes it to a string that no
    WebSocket text frame can hold; echoing such a string back would close the
    whole connection. Both sides refuse it where it enters.

    Args:
        text: Any string.

    Returns:
        True if it encodes as UTF-8.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# -- where a period ends a sentence --------------------------------------------------
#
# A server that buffers text (Cartesia's managed buffering) starts speaking at a
# sentence end, so it must not take "Dr. " or the "1." of an inline list for one;
# and a client must not flush there. Both sides use this one rule.

# After these a period never ends a sentence: a name, a number or an example follows.
_NEVER_ENDS = frozenset(
    {
        *("mr", "mrs", "ms", "mx", "dr", "prof", "st", "mt", "rev", "fr", "hon", "messrs"),
        *("gen", "sen", "rep", "gov", "capt", "lt", "col", "sgt", "pres", "supt"),
        *("e.g", "i.e", "vs", "cf", "viz", "approx", "ca", "fig", "figs", "vol", "vols", "pp"),
    }
)
# These end a sentence unless a number follows: "etc. The", "I said no. Then"; not
# "Jan. 5", "No. 3".
_MAY_END = frozenset(
    {
        *("no", "nos"),
        *("etc", "inc", "ltd", "co", "corp", "llc", "jr", "sr", "esq", "al", "dept", "est"),
        *("a.m", "p.m", "u.s", "u.k", "u.n", "e.u", "ave", "blvd", "rd"),
        *("jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec"),
        *("mon", "tue", "tues", "wed", "thu", "thur", "thurs", "fri", "sat", "sun"),
    }
)
# A number right after one of these (or at a line start) numbers a list item; not
# after a period, which may be an abbreviation's ("No. 4711.").
_LIST_MARKS = frozenset(":;,(\n")
_OPENERS = "\"'([{\u00ab\u201c\u2018"


def period_context(text: str, dot: int) -> tuple[str, str]:
    r"""What `ends_sentence` needs to know about the period at ``text[dot]``.

    Args:
        text: Text around the period (enough of what precedes it).
        dot: The index of the period.

    Returns:
        The word before the period (opening quotes and brackets removed), and
        the last character before that word other than a space or tab
        (``"\n"`` at a line start, ``""`` when ``text`` starts with the word: unknown).
    """
    start = dot
    while start > 0 and not text[start - 1].isspace():
        start -= 1
    word = text[start:dot].lstrip(_OPENERS)
    before = start - 1
    while before >= 0 and text[before] in " \t":
        before -= 1
    return word, text[before] if before >= 0 else ""


def ends_sentence(word: str, before: str, following: str | None) -> bool | None:
    """Whether a period followed by whitespace ends a sentence.

    Args:
        word: The word before the period (see `period_context`).
        before: The character before that word (see `period_context`).
        following: The first character after the whitespace; ``""`` when
            nothing follows (the end of the text); None when it is not known yet.

    Returns:
        True or False; None when only the next word can tell (``"etc. "`` ends
        a sentence before ``"The"``, not before ``"5"``).
    """
    if not word:
        return True  # a period standing alone still ends what came before it
    if following and following.islower():
        return False  # "e.g. the", "3. unplug it": a sentence starts with a capital
    key = word.lower()
    if key in _NEVER_ENDS:
        return False
    if len(word) == 1 and word.isupper() and word != "I":
        return False  # an initial: "J. R. R. Tolkien" ("So did I." ends)
    if word.isdigit() and before in _LIST_MARKS:
        return False  # a list number: "Steps:\n1. Open it", "do this: 1. unplug it, 2. wait"
    if key in _MAY_END:
        if following is None:
            return None
        return not (following.isdigit() or following == "#")
    return True


# -- Cartesia's markup ------------------------------------------------------------------
#
# ``<break time="1s"/>``, ``<emotion value="..."/>``, ``<spell>...</spell>`` and
# ``<<phoneme>>`` blocks are spoken as a whole: no push (client) and no
# generation (emulator) may end inside one.

# A "tag" left open for this long is taken for literal text (an LLM writing "a < b").
MAX_OPEN_TAG = 256
_TAG = re.compile(r"<<[^<>]*>>|<(/?)([A-Za-z][\w-]*)\b[^<>]*?(/?)>")
# What may still grow into a tag: "<", "</", "<br", "<break ti", "<<m|", "<<m|x>".
_TAG_PREFIX = re.compile(r"</?|<<[^<>]*>?|</?[A-Za-z][^<>]*")
# Tags whose content is atomic too: never cut between <spell> and </spell>.
_PAIRED_TAGS = frozenset({"spell"})


def tag_end(text: str, at: int, *, complete: bool = True) -> int | None:
    """Where the tag that starts at ``text[at]`` (a ``"<"``) ends.

    Costs at most `MAX_OPEN_TAG` characters of ``text``, however long it is.

    Args:
        text: The text.
        at: The index of a ``"<"``.
        complete: Nothing will be added to ``text``. False for streamed text:
            then a tag cut short may still close.

    Returns:
        The index just after the tag (after ``</spell>`` for a ``<spell>`` that
        closes); None when the ``"<"`` is literal text; -1 when only more text
        can tell (never when ``complete``).
    """
    match = _TAG.match(text, at, at + MAX_OPEN_TAG)
    unsettled = not complete and len(text) - at <= MAX_OPEN_TAG
    if match is None:
        return -1 if unsettled and _TAG_PREFIX.fullmatch(text, at) else None
    closing, name, self_closing = match.group(1), (match.group(2) or "").lower(), match.group(3)
    if name not in _PAIRED_TAGS or closing or self_closing:
        return match.end()
    # <spell>...</spell> is atomic as a whole, if it closes soon enough.
    close = re.compile(rf"</{name}\b[^<>]*>", re.IGNORECASE)
    found = close.search(text, match.end(), at + MAX_OPEN_TAG + len(name) + 3)
    if found is not None:
        return found.end()
    return -1 if unsettled else match.end()  # never closed: the tag alone is atomic
