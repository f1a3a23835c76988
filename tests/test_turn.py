"""The service's per-turn bookkeeping, without pipecat or sockets."""

from __future__ import annotations

import pytest

from pipecat_cartesia_ctx.turn import strip_tags


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("<spell>1234</spell>.", "1234."),
        ("to<spell>1234</spell>", "to 1234"),
        ('<break time="1s"/>', ""),
        ('Hi<emotion value="excited"/>!', "Hi!"),
        ("plain", "plain"),
        ("a<speed ratio='1.2'/>b", "a b"),
    ],
)
def test_timestamp_words_lose_their_tags_but_keep_punctuation(word, expected):
    assert strip_tags(word) == expected
