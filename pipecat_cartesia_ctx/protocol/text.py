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
