"""`coalesce`: the engine's actions with each run of a segment's audio as one `Audio`."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pipecat_cartesia_ctx.protocol import InvalidRequestError
from pipecat_cartesia_ctx.turn_actions import (
    Audio,
    Ended,
    Failed,
    SegmentDone,
    Send,
    Words,
    coalesce,
)


def audio_bytes(actions) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    for a in actions:
        if isinstance(a, Audio):
            out[a.flush_id] = out.get(a.flush_id, b"") + a.data
    return out


def test_a_run_of_one_segment_becomes_one_frame_with_its_words_after_it():
    actions = [
        Audio(b"aa", 1, first=True),
        Words((("Hello", 0.0),)),
        Audio(b"bb", 1),
        Audio(b"cc", 1),
        Words((("there.", 0.4),)),
        SegmentDone(1, "Hello there. ", 0.1, 6),
        Audio(b"dd", 2),
        Audio(b"ee", 2),
    ]
    assert coalesce(actions, max_bytes=100) == [
        Audio(b"aabbcc", 1, first=True),
        Words((("Hello", 0.0), ("there.", 0.4))),
        SegmentDone(1, "Hello there. ", 0.1, 6),
        Audio(b"ddee", 2),
    ]


def test_segments_never_share_a_frame_and_a_frame_stays_under_the_limit():
    actions = [Audio(b"x" * 4, 1), Audio(b"y" * 4, 1), Audio(b"z" * 4, 1), Audio(b"w" * 4, 2)]
    assert coalesce(actions, max_bytes=8) == [
        Audio(b"xxxxyyyy", 1),
        Audio(b"zzzz", 1),
        Audio(b"wwww", 2),
    ]


def test_actions_that_are_not_audio_keep_their_place():
    error = InvalidRequestError("no")
    actions = [Send("c", "Hi. "), Audio(b"a", 1), Failed(error), Audio(b"b", 1), Ended()]
    assert coalesce(actions, max_bytes=100) == actions


_action = st.one_of(
    st.builds(Audio, st.binary(min_size=1, max_size=6), st.integers(1, 3), st.booleans()),
    st.builds(
        Words,
        st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.floats(0, 9)), max_size=3).map(
            tuple
        ),
    ),
    st.builds(Ended),
    st.builds(SegmentDone, st.integers(1, 3), st.just("x. "), st.none(), st.integers(0, 9)),
)


@given(st.lists(_action, max_size=30), st.integers(1, 12))
def test_coalescing_keeps_every_byte_word_and_action_in_order(actions, max_bytes):
    out = coalesce(actions, max_bytes)
    # Every byte, in the same order, each under its segment; every word, in order.
    assert audio_bytes(out) == audio_bytes(actions)
    assert b"".join(a.data for a in out if isinstance(a, Audio)) == b"".join(
        a.data for a in actions if isinstance(a, Audio)
    )
    assert [w for a in out if isinstance(a, Words) for w in a.words] == [
        w for a in actions if isinstance(a, Words) for w in a.words
    ]

    # Every other action, in order, each after the same audio as before.
    def others(seq):
        seen, out_ = 0, []
        for a in seq:
            if isinstance(a, Audio):
                seen += len(a.data)
            elif not isinstance(a, Words):
                out_.append((a, seen))
        return out_

    assert others(out) == others(actions)

    # A word never goes before the audio it followed; a frame is bounded (a
    # single chunk over the limit goes as it came); nothing is merged away
    # from the turn's first audio.
    def words_after(seq):
        seen, out_ = 0, []
        for a in seq:
            if isinstance(a, Audio):
                seen += len(a.data)
            elif isinstance(a, Words):
                out_ += [seen] * len(a.words)
        return out_

    assert all(b >= a for a, b in zip(words_after(actions), words_after(out), strict=True))
    assert all(len(a.data) <= max(max_bytes, 6) for a in out if isinstance(a, Audio))

    def has_first(seq):
        return any(isinstance(a, Audio) and a.first for a in seq)

    assert has_first(out) == has_first(actions)
    assert len([a for a in out if isinstance(a, Audio)]) <= len(
        [a for a in actions if isinstance(a, Audio)]
    )
