"""The service's per-turn bookkeeping, without pipecat or sockets."""

from __future__ import annotations

import pytest

from pipecat_cartesia_ctx.protocol import Chunk
from pipecat_cartesia_ctx.turn import Link, strip_tags


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


class _Context:  # the bookkeeping never calls the context
    pass


def test_a_link_times_each_segment_from_first_text_to_first_audio():
    link = Link(context=_Context(), first_number=4)
    assert link.sent("One. ", now=10.0) is True, "the first input opens the context"
    assert link.sent("More ", now=10.5) is False
    link.ledger.flushed()
    link.sent("Two.", now=11.0)
    assert link.received(Chunk("c", b"\0" * 100, 1), now=10.2) == (1, [])
    assert link.received(Chunk("c", b"\0" * 50, 1), now=10.3) == (1, [])
    local, done = link.received(Chunk("c", b"\0" * 20, 2), now=11.4)
    assert local == 2
    assert [s.text for s in done] == ["One. More "]
    assert link.ttfb(1) == pytest.approx(0.2)
    assert link.ttfb(2) == pytest.approx(0.4)
    assert (link.segment_bytes(1), link.segment_bytes(2), link.audio_bytes) == (150, 20, 170)
    assert (link.number(1), link.number(2), link.next_number) == (4, 5, 5)
