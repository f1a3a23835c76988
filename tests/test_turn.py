"""The turn engine against a fake server: every word voiced once, whatever fails and when.

`turn_sim.FakeCartesia` carries out the engine's actions and answers with
deterministic audio (each word its own byte value, a silence after each
segment), so what went downstream can be read back word by word.
"""

from __future__ import annotations

import dataclasses
import itertools
import random
import re
import tracemalloc
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from turn_sim import (
    BYTES_PER_SECOND,
    SILENCE,
    FakeCartesia,
    make_engine,
    play,
    segment_audio,
    silences,
    voice_of,
    voiced_runs,
    word_audio,
    word_offsets,
    word_runs,
)

from pipecat_cartesia_ctx.protocol import (
    AuthenticationError,
    CartesiaAPIError,
    CartesiaConnectionError,
    Chunk,
    ConcurrencyLimitError,
    ContextClosedError,
    EmptyTranscriptError,
    Error,
    InvalidRequestError,
    QuotaExceededError,
    RateLimitError,
    ServerError,
    Timestamps,
    api_error,
)
from pipecat_cartesia_ctx.segmenter import Flush, Position, Push, Segmenter
from pipecat_cartesia_ctx.turn import (
    TurnEngine,
    TurnPhase,
    TurnStateError,
    strip_tags,
)
from pipecat_cartesia_ctx.turn_actions import (
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

# -- text ----------------------------------------------------------------------------

VOCAB = [
    *("the", "a", "we", "you", "it", "is", "are", "was", "can", "will", "not", "and", "but"),
    *("today", "weather", "train", "station", "ticket", "price", "morning", "friend"),
    *("leaves", "arrives", "costs", "looks", "sunny", "late", "early", "here", "there"),
    *("Mr.", "Dr.", "3.14", "e.g.", "U.S.", "well-known", "it's", "42", "o'clock"),
]
ENDINGS = [".", ".", ".", "?", "!", "...", '."', "?)"]


GAPS = [" ", " ", " ", "  ", "\n", "\n\n"]


@st.composite
def turns(draw, max_sentences: int = 5) -> str:
    """A realistic answer: sentences of known words, commas, abbreviations, numbers.

    No token follows an identical one, so each word of the audio is one run of bytes.
    """
    tokens: list[str] = []
    for _ in range(draw(st.integers(1, max_sentences))):
        words = draw(st.lists(st.sampled_from(VOCAB), min_size=1, max_size=8))
        words[0] = words[0].capitalize()
        comma = draw(st.integers(0, 2 * len(words)))
        if comma < len(words) - 1:
            words[comma] += ","
        words[-1] += draw(st.sampled_from(ENDINGS))
        tokens += words
    tokens = [t for i, t in enumerate(tokens) if i == 0 or t != tokens[i - 1]]
    after = draw(st.lists(st.sampled_from(GAPS), min_size=len(tokens), max_size=len(tokens)))
    ending = draw(st.sampled_from(["", "", " ", "\n", "  ", " \n"]))
    return "".join(t + g for t, g in zip(tokens, after, strict=True)).rstrip() + ending


def tokenize(text: str, cuts: list[int]) -> list[str]:
    edges = sorted({min(c, len(text)) for c in cuts} | {0, len(text)})
    return [text[a:b] for a, b in itertools.pairwise(edges)]


cuts = st.lists(st.integers(0, 300), max_size=40)
pauses = st.lists(st.integers(0, 5), max_size=60)
drop_points = st.lists(st.integers(0, 80), max_size=3)
switch_points = st.lists(st.integers(0, 60), max_size=3)
context_errors = st.lists(
    st.tuples(st.integers(0, 80), st.integers(0, 3), st.integers(0, 6)), max_size=2
)

# Any turn, with settings switches at any inputs.
turns_and_switches = st.tuples(turns(), switch_points)

chunk_sizes = st.sampled_from([3, 4, 6, 7, 16, 64])
flush_modes = st.sampled_from(["sentence", "sentence", "clause", "turn"])
picks = st.sampled_from(["oldest", "newest", "random"])
# The service's timers: text held for its flush (released by `tick` after `hold`), a
# stalled first segment ended at its deadline. The sim's clock moves 10 ms a call.
timers = st.sampled_from(
    [
        {},
        {"hold": 0.03},
        {"hold": 0.25},
        {"first_segment_deadline": 0.02},
        {"hold": 0.03, "first_segment_deadline": 0.05},
        # The sim's audio is milliseconds long: the listener always runs low, so
        # audio goes down as it comes and drops replay from segments.
        {"hold_audio_above": 0.5},
        {"hold": 0.03, "hold_audio_above": 0.001},
    ]
)


def server(
    text: str, *, pick: str = "oldest", seed: int = 0, engine: TurnEngine | None = None, **kwargs
) -> FakeCartesia:
    order = {"oldest": None, "newest": "newest", "random": random.Random(seed)}[pick]
    return FakeCartesia(engine or make_engine(), voice_of(text), pick=order, **kwargs)


def segment_ends(done: list[SegmentDone]) -> list[int]:
    """Words spoken up to the end of each segment."""
    return list(itertools.accumulate(len(d.text.split()) for d in done))


# -- every word once, whatever drops ---------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    turn=turns_and_switches,
    cuts=cuts,
    pauses=pauses,
    drops=drop_points,
    errors=context_errors,
    chunk_size=chunk_sizes,
    flush_on=flush_modes,
    pick=picks,
    timer=timers,
    seed=st.integers(0, 2**16),
)
def test_with_timestamps_every_word_goes_downstream_once_and_whole(
    turn, cuts, pauses, drops, errors, chunk_size, flush_on, pick, timer, seed
):
    text, switches = turn
    sim = server(
        text,
        pick=pick,
        seed=seed,
        chunk_size=chunk_size,
        engine=make_engine(flush_on=flush_on, **timer),
    )
    play(sim, tokenize(text, cuts), pauses=pauses, drops=drops, switches=switches, errors=errors)

    assert sim.violations == []
    words = text.split()
    assert [w for w, _ in sim.words] == words, "each word once, in order"
    # The audio is each word's audio once, whole, in order; silence only after a
    # segment's last word (a segment's silence may be lost with its connection).
    assert voiced_runs(sim.audio) == word_runs(words, sim.voice)
    done = sim.segments_done
    assert {length for _, length in silences(sim.audio)} <= {SILENCE}
    assert {after for after, _ in silences(sim.audio)} <= set(segment_ends(done))
    # A word's time is where its audio starts downstream.
    assert [start for _, start in sim.words] == pytest.approx(
        [offset / BYTES_PER_SECOND for offset in word_offsets(sim.audio)], abs=1e-9
    )
    assert [d.flush_id for d in done] == list(range(1, len(done) + 1))
    assert "".join(d.text for d in done) == text
    for d in done:
        assert voiced_runs(sim.audio_of(d.flush_id)) == word_runs(d.text.split(), sim.voice)
        assert d.audio_bytes == len(sim.audio_of(d.flush_id))
    audio = sim.of(Audio)
    assert [a.flush_id for a in audio] == sorted(a.flush_id for a in audio)
    assert [a.first for a in audio] == [True] + [False] * (len(audio) - 1)
    assert sim.of(StartAudio) == [StartAudio()]
    assert sim.of(Ended) == [Ended(silent=False)]
    assert sim.actions[-1] == Ended(silent=False)
    assert sim.engine.phase is TurnPhase.ENDED


@settings(max_examples=100, deadline=None)
@given(
    turn=turns_and_switches,
    cuts=cuts,
    pauses=pauses,
    chunk_size=chunk_sizes,
    pick=picks,
    seed=st.integers(0, 2**16),
)
def test_without_faults_the_audio_is_every_segment_whole_silences_included(
    turn, cuts, pauses, chunk_size, pick, seed
):
    text, switches = turn
    sim = server(text, pick=pick, seed=seed, chunk_size=chunk_size)
    play(sim, tokenize(text, cuts), pauses=pauses, switches=switches)
    done = sim.segments_done
    assert "".join(d.text for d in done) == text
    assert sim.audio == b"".join(segment_audio(d.text, sim.voice) for d in done)
    assert sim.of(Retry) == []
    assert sim.actions[-1] == Ended(silent=False)


@settings(max_examples=200, deadline=None)
@given(
    turn=turns_and_switches,
    cuts=cuts,
    pauses=pauses,
    drops=drop_points,
    chunk_size=chunk_sizes,
    expect_timestamps=st.booleans(),
    pick=picks,
    seed=st.integers(0, 2**16),
)
def test_without_timestamps_the_replayed_audio_lines_up_and_plays_once(
    turn, cuts, pauses, drops, chunk_size, expect_timestamps, pick, seed
):
    text, switches = turn
    sim = server(
        text,
        pick=pick,
        seed=seed,
        chunk_size=chunk_size,
        timestamps=False,
        engine=make_engine(expect_timestamps=expect_timestamps),
    )
    play(sim, tokenize(text, cuts), pauses=pauses, drops=drops, switches=switches)

    assert sim.violations == []
    done = sim.segments_done
    assert [d.flush_id for d in done] == list(range(1, len(done) + 1))
    assert "".join(d.text for d in done) == text
    assert sim.audio == b"".join(segment_audio(d.text, sim.voice) for d in done)
    for d in done:
        assert sim.audio_of(d.flush_id) == segment_audio(d.text, sim.voice)
        assert d.audio_bytes == len(segment_audio(d.text, sim.voice))
    assert sim.words == []
    assert sim.actions[-1] == Ended(silent=False)
    assert sim.engine.phase is TurnPhase.ENDED


DROPPED = "Hello there my friend. How are you today? I am fine!"
DROPPED_SEGMENTS = ("Hello there my friend. ", "How are you today? ", "I am fine!")


def drop_when(sim: FakeCartesia, played: Callable[[FakeCartesia], bool]) -> list[Action]:
    """Stream `DROPPED` but its last word, deliver events until ``played``, drop; the resume."""
    assert sim.feed(DROPPED.removesuffix("fine!")) == [
        StartAudio(),
        Open("t"),
        Send("t", "Hello there my friend. "),
        SendFlush("t"),
        Send("t", "How are you today? "),
        SendFlush("t"),
        Send("t", "I am "),
    ]
    while not played(sim):
        assert sim.step()
    lost = sim.drop()
    assert lost == [Cancel("t"), Retry(lost[-1].error, FaultKind.CONNECTION, 1)]
    assert sim.engine.phase is TurnPhase.RESUMING
    assert sim.feed("fine!") == [], "text waits for the resume"
    return sim.resume()


def assert_played_once(sim: FakeCartesia):
    sim.run()
    assert [w for w, _ in sim.words] == DROPPED.split()
    assert [(d.flush_id, d.text) for d in sim.segments_done] == list(enumerate(DROPPED_SEGMENTS, 1))
    assert sim.audio == b"".join(segment_audio(s, sim.voice) for s in DROPPED_SEGMENTS)
    assert sim.actions[-1] == Ended()


def test_a_drop_where_the_audio_ends_at_a_timed_word_replays_from_the_next_word():
    sim = server(DROPPED, chunk_size=10, auto_resume=False)
    # Past a segment's first word, audio goes down only up to the last word timed.
    resumed = drop_when(sim, lambda sim: "you" in [w for w, _ in sim.words])
    assert voiced_runs(sim.audio) == word_runs(DROPPED.split()[:7], sim.voice)
    assert resumed == [Open("t-2"), Send("t-2", "today? "), SendFlush("t-2"), Send("t-2", "I am ")]
    assert sim.end_input() == [Send("t-2", "fine!"), Close("t-2")]
    assert_played_once(sim)


def test_a_drop_in_a_segments_untimed_first_audio_replays_the_segment_without_what_played():
    sim = server(DROPPED, chunk_size=10, auto_resume=False)

    def how_and_more(sim: FakeCartesia) -> bool:
        return len(sim.audio) > len(segment_audio(DROPPED_SEGMENTS[0], sim.voice)) + 6

    # A segment's first audio goes down before its first timestamps: here "How"
    # and part of "are" (a chunk of 10 bytes), when the connection drops.
    resumed = drop_when(sim, how_and_more)
    assert "How" not in [w for w, _ in sim.words]
    assert resumed == [
        Open("t-2"),
        Send("t-2", "How are you today? "),
        SendFlush("t-2"),
        Send("t-2", "I am "),
    ]
    assert sim.end_input() == [Send("t-2", "fine!"), Close("t-2")]
    assert_played_once(sim)


def test_repeated_words_are_replayed_from_the_right_one():
    text = "No, no, no. No, no! Yes, yes, yes."
    sim = server(text, chunk_size=4, auto_resume=True)
    play(sim, [text], drops=[3, 9, 14])
    assert len(sim.of(Retry)) == 3
    assert [w for w, _ in sim.words] == text.split()
    assert sim.audio.replace(b"\0", b"") == b"".join(word_audio(t, sim.voice) for t in text.split())


def test_without_timestamps_a_drop_drops_the_replayed_bytes_already_played():
    text = "Hello there my friend. How are you today?"
    sim = server(text, chunk_size=5, timestamps=False, engine=make_engine(expect_timestamps=False))
    sim.feed(text)
    sim.end_input()
    for _ in range(3):  # three chunks of "Hello there my friend. "
        assert sim.step()
    assert sim.audio == segment_audio("Hello there my friend. ", sim.voice)[:15]
    sim.drop()
    assert sim.of(Open) == [Open("t"), Open("t-2")]
    assert sim.contexts["t-2"].inputs == ["Hello there my friend. ", "How are you today?"]
    sim.run()
    assert sim.audio == segment_audio("Hello there my friend. ", sim.voice) + segment_audio(
        "How are you today?", sim.voice
    )


def switched_twice(sim: FakeCartesia) -> None:
    sim.feed("One two three. Four")
    sim.switch_settings()
    sim.feed(" five six. Seven eight nine.")
    sim.switch_settings()  # the last sentence has no end after it: no third context
    sim.end_input()
    assert sim.of(Open) == [Open("t"), Open("t-2")]
    sim.run()


SWITCHED = ("One two three. ", "Four five six. ", "Seven eight nine.")


@pytest.mark.parametrize("seed", range(5))
def test_events_of_an_earlier_and_a_later_context_interleaved_play_in_order(seed):
    sim = server("".join(SWITCHED), pick="random", seed=seed, chunk_size=4)
    switched_twice(sim)
    assert sim.audio == b"".join(segment_audio(s, sim.voice) for s in SWITCHED)
    assert [w for w, _ in sim.words] == "".join(SWITCHED).split()
    assert [d.flush_id for d in sim.segments_done] == [1, 2, 3]
    assert sim.actions[-1] == Ended()


def test_a_later_context_that_finishes_first_still_plays_after_the_earlier_one():
    sim = server("".join(SWITCHED), pick="newest", chunk_size=4)
    switched_twice(sim)
    assert [w for w, _ in sim.words] == "".join(SWITCHED).split()
    assert sim.audio == b"".join(segment_audio(s, sim.voice) for s in SWITCHED)


def test_without_timestamps_two_drops_in_a_row_play_nothing_twice():
    text = "The."
    sim = server(text, chunk_size=3, timestamps=False, engine=make_engine(expect_timestamps=False))
    sim.feed(text)
    sim.end_input()
    sim.step()  # 3 bytes of "The." play
    sim.drop()  # t-2 replays "The." and must drop its first 3 bytes
    sim.drop()  # lost before any of its audio came
    sim.run()
    assert sim.of(Open) == [Open("t"), Open("t-2"), Open("t-3")]
    assert sim.audio == segment_audio(text, sim.voice)


# -- interruption ----------------------------------------------------------------------


def interrupted(text, cuts, pauses, drops, errors, switches, chunk_size, timestamps, at, seed):
    """Play the turn with an interruption before input ``at`` (modulo the turn's inputs)."""
    tokens = tokenize(text, cuts)

    def run(interrupt_before: int | None) -> tuple[FakeCartesia, int]:
        sim = server(
            text,
            pick="random",
            seed=seed,
            chunk_size=chunk_size,
            timestamps=timestamps,
        )
        inputs = play(
            sim,
            tokens,
            pauses=pauses,
            drops=drops,
            errors=errors,
            switches=switches,
            interrupt_before=interrupt_before,
        )
        return sim, inputs

    _, inputs = run(None)
    # Any input of the turn may come after it, the last context's done included.
    sim, _ = run(at % inputs)
    index = [c.name for c in sim.calls].index("interrupt")
    assert sim.calls[index].actions == [Cancel(c) for c in sim.live_at_interrupt]
    assert [a for call in sim.calls[index + 1 :] for a in call.actions] == []
    assert sim.engine.phase is TurnPhase.INTERRUPTED
    assert sim.violations == []
    return sim


interruptions = {
    "text": turns(),
    "cuts": cuts,
    "pauses": pauses,
    "drops": drop_points,
    "errors": context_errors,
    "switches": switch_points,
    "chunk_size": chunk_sizes,
    "at": st.integers(0, 10_000),
    "seed": st.integers(0, 2**16),
}


@settings(max_examples=200, deadline=None)
@given(**interruptions)
def test_after_an_interruption_nothing_more_goes_downstream(**kwargs):
    sim = interrupted(**kwargs, timestamps=True)
    # What went out before it is a beginning of the turn's audio, once (a
    # segment's first word may be cut: it goes out before its timestamps), and
    # its words are words whose audio went out whole, in order. (A segment's
    # silence may be lost with its connection.)
    full = b"".join(segment_audio(s, sim.voice) for s in sim.engine.segments)
    assert full.replace(b"\0", b"").startswith(sim.audio.replace(b"\0", b""))
    played = voiced_runs(sim.audio)
    expected = word_runs(kwargs["text"].split(), sim.voice)
    whole = len(played) - (bool(played) and played[-1] != expected[len(played) - 1])
    words = [w for w, _ in sim.words]
    assert words == kwargs["text"].split()[: len(words)]
    assert len(words) <= whole


@settings(max_examples=100, deadline=None)
@given(**{**interruptions, "drops": drop_points, "errors": st.just([])})
def test_after_an_interruption_nothing_more_goes_downstream_without_timestamps(**kwargs):
    sim = interrupted(**kwargs, timestamps=False)
    full = b"".join(segment_audio(s, sim.voice) for s in sim.engine.segments)
    assert full.startswith(sim.audio), "what played is a beginning of the turn's audio, once"


# -- refusals and the failure policy ------------------------------------------------------


@st.composite
def refused_turns(draw) -> tuple[str, set[str]]:
    """A turn, and one to three of its words the server refuses (a 400 for any input with one)."""
    text = draw(turns())
    words = sorted(set(text.split()))
    bad = draw(st.sets(st.sampled_from(words), min_size=1, max_size=3))
    return text, bad


@settings(max_examples=200, deadline=None)
@given(
    turn=refused_turns(),
    cuts=cuts,
    pauses=pauses,
    drops=drop_points,
    switches=switch_points,
    chunk_size=chunk_sizes,
    pick=picks,
    seed=st.integers(0, 2**16),
)
def test_refused_inputs_are_skipped_whole_and_everything_else_is_voiced_once(
    turn, cuts, pauses, drops, switches, chunk_size, pick, seed
):
    text, bad = turn

    def refuse(pushed: str) -> CartesiaAPIError | None:
        refused = any(word in pushed.split() for word in bad)
        return InvalidRequestError("invalid transcript") if refused else None

    sim = server(text, pick=pick, seed=seed, chunk_size=chunk_size, refuse=refuse)
    play(sim, tokenize(text, cuts), pauses=pauses, drops=drops, switches=switches)
    assert sim.violations == []
    spoken = [w for w, _ in sim.words]
    assert not set(spoken) & bad, "no refused word is voiced"
    skipped = sim.of(Skipped)
    assert len({s.flush_id for s in skipped}) == len(skipped), "each segment skipped once"
    assert all(set(s.text.split()) & bad for s in skipped), "only a segment with a refused word"
    # Words voiced and text skipped, in the order they come: the turn's words, once each.
    stream = []
    for action in sim.actions:
        if isinstance(action, Words):
            stream += [w for w, _ in action.words]
        elif isinstance(action, Skipped):
            stream += action.text.split()
    order = [a.flush_id for a in sim.actions if isinstance(a, SegmentDone | Skipped)]
    assert order == sorted(order)
    if sim.engine.phase is TurnPhase.ENDED:
        assert stream == text.split()
        assert sim.actions[-1] == Ended()
    else:
        # Given up (two contexts in a row refused at their first input, or
        # max_attempts losses without audio): what came out is a beginning.
        assert sim.engine.phase is TurnPhase.FAILED
        assert stream == text.split()[: len(stream)]
        assert sim.of(Failed) == [sim.actions[-1]]


def test_a_429_is_retried_and_the_attempt_count_resets_once_audio_played():
    text = "Hello there my friend. How are you today?"
    sim = server(text, chunk_size=10, auto_resume=False)
    sim.feed(text)
    sim.end_input()
    attempts = []
    for context_id in ("t", "t-2"):
        sim.fail(context_id, ConcurrencyLimitError("too many contexts"))
        sim.step()
        retry = sim.calls[-1].actions[-1]
        assert sim.calls[-1].actions == [Cancel(context_id), retry]
        assert (type(retry.error), retry.error.status_code, retry.kind) == (
            ConcurrencyLimitError,
            429,
            FaultKind.RETRY,
        )
        attempts.append(retry.attempt)
        assert sim.engine.phase is TurnPhase.RESUMING
        sim.resume()
    assert sim.audio == b""
    sim.step()  # "Hello" in one chunk, then its timestamp
    sim.step()
    assert voiced_runs(sim.audio) == word_runs(["Hello"], sim.voice)
    sim.fail("t-3", api_error("overloaded", status_code=503))
    sim.step()
    retry = sim.calls[-1].actions[-1]
    attempts.append(retry.attempt)
    assert (type(retry.error), retry.kind) == (ServerError, FaultKind.RETRY)
    assert attempts == [1, 2, 1], "consecutive losses without audio, then reset by audio"
    sim.resume()
    assert sim.contexts["t-4"].text == "there my friend. How are you today?"
    sim.run()
    assert [w for w, _ in sim.words] == text.split()
    assert sim.actions[-1] == Ended()


def refuse_forbidden(pushed: str) -> CartesiaAPIError | None:
    """A server that refuses any input with "forbidden" in it (a 400)."""
    return InvalidRequestError("invalid transcript") if "forbidden" in pushed else None


def test_a_refused_input_is_found_one_segment_at_a_time_and_skipped_alone():
    sentences = [
        "Hello there my friend. ",
        "Say the forbidden word now. ",
        "How are you today? ",
        "I am fine!",
    ]
    text = "".join(sentences)

    sim = server(text, chunk_size=8, refuse=refuse_forbidden, auto_resume=False)
    sim.feed(text)
    sim.end_input()
    sim.run()  # sentence 1 plays, then the 400
    first = sim.calls[-1].actions
    assert first == [Cancel("t"), Retry(first[-1].error, FaultKind.SKIP, 1)]
    assert isinstance(first[-1].error, InvalidRequestError)
    assert [w for w, _ in sim.words] == sentences[0].split()
    # Careful: one segment, and the next only once the one before it is heard.
    assert sim.resume() == [Open("t-2"), Send("t-2", sentences[1]), SendFlush("t-2")]
    sim.run()
    second = sim.calls[-1].actions
    assert second == [Cancel("t-2"), Retry(second[-1].error, FaultKind.SKIP, 1)]
    assert sim.resume() == [Open("t-3"), Send("t-3", sentences[2]), SendFlush("t-3")]
    sim.step()  # the first chunk of sentence 3 lets sentence 4 go, and sentence 2 is over
    skipped = Skipped(2, sentences[1], second[-1].error)
    first_chunk = segment_audio(sentences[2], sim.voice)[:8]
    assert sim.calls[-1].actions == [
        skipped,
        Send("t-3", sentences[3]),
        Close("t-3"),
        Audio(first_chunk, 3, first=False),  # a segment's first audio is not held
    ]
    sim.run()
    assert sim.violations == []
    # In order with the audio: after sentence 1's words, before sentence 3's.
    assert sim.of(Skipped) == [skipped]
    at = next(i for i, a in enumerate(sim.actions) if isinstance(a, Skipped))
    before = [w for a in sim.actions[:at] if isinstance(a, Words) for w, _ in a.words]
    assert before == sentences[0].split()
    assert [w for w, _ in sim.words] == [
        w for s in sentences if s != sentences[1] for w in s.split()
    ]
    assert sim.audio == b"".join(
        segment_audio(s, sim.voice) for s in sentences if s != sentences[1]
    )
    assert [(d.flush_id, d.text) for d in sim.segments_done] == [
        (1, sentences[0]),
        (3, sentences[2]),
        (4, sentences[3]),
    ]
    assert sim.actions[-1] == Ended()


def test_a_turn_whose_every_sentence_is_refused_fails_with_that_error():
    text = "Say the forbidden word now."

    sim = server(text, refuse=refuse_forbidden)
    sim.feed(text)
    sim.end_input()
    sim.run()
    assert sim.audio == b""
    assert sim.words == []
    [skipped] = sim.of(Skipped)
    [failed] = sim.of(Failed)
    assert skipped.text == text
    assert failed.error is skipped.error
    assert sim.actions[-1] == failed
    assert sim.of(Ended) == []
    assert sim.engine.phase is TurnPhase.FAILED


def test_a_400_cutting_the_segment_before_it_short_replays_that_segment_from_its_last_word():
    sentences = ["One two three. ", "Four five six. ", "Bad seven eight. ", "Nine ten."]
    text = "".join(sentences)
    sim = server(text, chunk_size=6, auto_resume=False)
    sim.feed(text)
    sim.end_input()
    sim.fail("t", InvalidRequestError("invalid transcript"))
    sim.step()
    sim.resume()
    while Send("t-2", sentences[2]) not in sim.actions:
        assert sim.step()  # careful: sentence 3 goes once sentence 2 is heard
    sim.fail("t-2", InvalidRequestError("invalid transcript"))  # before the rest of sentence 2
    sim.step()
    sim.resume()
    sim.run()
    assert [s.text for s in sim.of(Skipped)] == [sentences[2]]
    spoken = [sentences[0], sentences[1], sentences[3]]
    assert [w for w, _ in sim.words] == " ".join(spoken).split()
    assert sim.audio == b"".join(segment_audio(s, sim.voice) for s in spoken)
    assert sim.actions[-1] == Ended()


def test_a_send_refused_on_our_side_is_retried_on_a_new_context():
    text = "Hello there my friend. How are you today?"
    sim = server(text, auto_resume=False)
    sim.feed(text)
    refused = sim.refuse_send("t", CartesiaConnectionError("socket closed while sending"))
    assert refused == [Cancel("t"), Retry(refused[-1].error, FaultKind.CONNECTION, 1)]
    assert sim.resume() == [
        Open("t-2"),
        Send("t-2", "Hello there my friend. "),
        SendFlush("t-2"),
        Send("t-2", "How are you "),
    ]
    sim.end_input()
    sim.run()
    assert [w for w, _ in sim.words] == text.split()
    assert sim.actions[-1] == Ended()


@pytest.mark.parametrize(
    ("error", "fatal"),
    [
        (QuotaExceededError("no credits left"), False),
        (AuthenticationError("bad key"), True),
        (api_error("forbidden", status_code=403), True),
    ],
)
def test_a_turn_that_cannot_be_spoken_fails_and_cancels_what_is_live(error, fatal):
    text = "Hello there my friend. How are you today? And then we go more"
    sim = server(text, pick="newest", chunk_size=64)
    sim.feed("Hello there my friend. How")
    sim.switch_settings()
    sim.feed(" are you today? And then we go")
    assert sim.of(Open) == [Open("t"), Open("t-2")]
    sim.fail("t-2", error)
    sim.step()
    failed = sim.calls[-1].actions[-1]
    assert sim.calls[-1].actions == [Cancel("t"), Cancel("t-2"), failed]
    assert (type(failed), type(failed.error), failed.fatal) == (Failed, type(error), fatal)
    assert sim.engine.phase is TurnPhase.FAILED
    calls = len(sim.calls)
    assert sim.feed(" more") == []
    assert sim.end_input() == []
    sim.run()
    assert [a for call in sim.calls[calls:] for a in call.actions] == []


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (CartesiaConnectionError("closed"), FaultKind.CONNECTION),
        (ConcurrencyLimitError("busy"), FaultKind.RETRY),
        (RateLimitError("slow down"), FaultKind.RETRY),
        (ServerError("oops"), FaultKind.RETRY),
        (api_error("bad gateway", status_code=502), FaultKind.RETRY),
        (ContextClosedError("closed"), FaultKind.RETRY),
        (InvalidRequestError("bad"), FaultKind.SKIP),
        (EmptyTranscriptError("transcript empty or contains only punctuation"), FaultKind.SKIP),
        (QuotaExceededError("no credits"), FaultKind.FAIL),
        (AuthenticationError("who are you"), FaultKind.FATAL),
        (api_error("forbidden", status_code=403), FaultKind.FATAL),
        (Error(status_code=429, error_code="concurrency_limited").exception(), FaultKind.RETRY),
        (Error(status_code=400, message="bad").exception(), FaultKind.SKIP),
    ],
)
def test_the_failure_policy(error, kind):
    assert classify(error) is kind


# -- turns with nothing to say, settings, misuse ----------------------------------------------


@pytest.mark.parametrize("tokens", [["..."], ["?!"], ["  "], [" ", "...", "\n", "!"], []])
def test_a_turn_with_nothing_speakable_ends_silent_and_opens_nothing(tokens):
    sim = server("")
    play(sim, tokens)
    assert sim.actions == [Ended(silent=True)]
    assert sim.engine.phase is TurnPhase.ENDED
    assert sim.engine.opened == 0


def test_a_settings_switch_sends_the_next_sentence_on_a_new_context():
    text = "Hello there my friend. How are you today? I am fine!"
    sim = server(text, pick="random", chunk_size=6)
    assert sim.feed("Hello there my friend. How are") == [
        StartAudio(),
        Open("t"),
        Send("t", "Hello there my friend. "),
        SendFlush("t"),
        Send("t", "How "),
    ]
    sim.switch_settings()
    assert sim.engine.phase is TurnPhase.SWITCHING
    assert sim.feed(" you today? I am fine!") == [
        Send("t", "are you today? "),
        SendFlush("t"),
        Close("t"),
    ], "the new context waits for three words"
    assert sim.engine.phase is TurnPhase.STREAMING
    assert sim.end_input() == [Open("t-2"), Send("t-2", "I am fine!"), Close("t-2")]
    sim.run()
    assert sim.audio_of(3) == segment_audio("I am fine!", sim.voice)
    assert [d.flush_id for d in sim.segments_done] == [1, 2, 3]
    assert [w for w, _ in sim.words] == text.split()
    assert sim.audio == b"".join(
        segment_audio(s, sim.voice)
        for s in ("Hello there my friend. ", "How are you today? ", "I am fine!")
    )


def test_a_switch_keeps_the_whitespace_between_sentences():
    text = "One two three. Four five six.  Seven eight nine."
    sim = server(text)
    play(sim, ["One two three. Four", " five six.  ", "Seven eight nine."], switches=[1])
    assert sim.of(Open) == [Open("t"), Open("t-2")]
    assert "".join(d.text for d in sim.segments_done) == text


def test_a_settings_switch_between_sentences_applies_to_the_next_sentence():
    text = "Hello there my friend. How are you today?"
    sim = server(text)
    sim.feed("Hello there my friend. ")
    sim.switch_settings()
    play(sim, ["How are you today?"])
    assert [c.text for c in sim.contexts.values()] == [
        "Hello there my friend. ",
        "How are you today?",
    ]


def test_the_context_after_a_switch_waits_for_three_words_too():
    text = "One two three. Four five six. Seven eight nine."
    sim = server(text)
    sim.feed("One two three. Four five ")
    sim.switch_settings()
    assert sim.feed("six. Seven eight nine.") == [
        Send("t", "six. "),
        SendFlush("t"),
        Close("t"),
    ]
    assert sim.end_input() == [Open("t-2"), Send("t-2", "Seven eight nine."), Close("t-2")]
    sim.run()
    assert [w for w, _ in sim.words] == text.split()


def test_a_switch_before_anything_is_sent_needs_no_new_context():
    sim = server("Hello there my friend.")
    sim.switch_settings()
    sim.feed("Hello")
    sim.switch_settings()
    assert sim.engine.phase is TurnPhase.IDLE
    play(sim, [" there my friend."])
    assert sim.of(Open) == [Open("t")]


def test_resume_is_refused_unless_the_turn_waits_for_it():
    text = "Hello there my friend."
    sim = server(text, auto_resume=False)
    engine = sim.engine
    with pytest.raises(TurnStateError):
        engine.resume(1.0)
    assert engine.phase is TurnPhase.IDLE
    sim.feed(text)
    with pytest.raises(TurnStateError):
        engine.resume(1.0)
    assert engine.phase is TurnPhase.STREAMING
    sim.drop()
    assert engine.phase is TurnPhase.RESUMING
    sim.resume()
    with pytest.raises(TurnStateError):
        engine.resume(2.0)
    assert engine.phase is TurnPhase.STREAMING
    sim.end_input()
    sim.run()
    assert engine.phase is TurnPhase.ENDED
    with pytest.raises(TurnStateError):
        engine.resume(3.0)
    assert engine.phase is TurnPhase.ENDED
    assert [w for w, _ in sim.words] == text.split()


def test_text_after_the_end_of_the_text_is_refused():
    sim = server("Hello there my friend.")
    sim.feed("Hello there my friend.")
    sim.end_input()
    with pytest.raises(TurnStateError):
        sim.engine.feed(" More.", 1.0)
    assert sim.engine.phase is TurnPhase.STREAMING
    sim.run()
    assert sim.engine.phase is TurnPhase.ENDED
    with pytest.raises(TurnStateError):
        sim.engine.feed(" More.", 2.0)
    assert sim.engine.phase is TurnPhase.ENDED
    assert sim.end_input() == [], "the end is said once"


def test_a_lost_connection_with_nothing_live_changes_nothing():
    sim = server("Hi")
    assert sim.engine.lost(CartesiaConnectionError("closed")) == []
    assert sim.engine.phase is TurnPhase.IDLE


def test_events_of_an_unknown_context_change_nothing():
    sim = server("Hello there my friend.")
    sim.feed("Hello there my friend.")
    assert sim.engine.event("other", Error(status_code=500, context_id="other"), 1.0) == []
    assert sim.engine.phase is TurnPhase.STREAMING


# -- word timestamps ------------------------------------------------------------------------


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


def test_a_word_end_that_is_not_exact_in_floating_point_still_ends_the_word():
    # "here" ends at byte 54; at 48000 bytes/s that is 0.001125 s, and
    # 0.001125 * 48000 == 53.99999999999999.
    text = "Hello wonderful everybody here today."
    engine = TurnEngine("t", make_engine().segmenter, bytes_per_second=48000, sample_width=2)
    sim = server(text, engine=engine, chunk_size=2, bytes_per_second=48000)
    sim.feed(text)
    sim.end_input()
    while "here" not in [w for w, _ in sim.words]:
        assert sim.step()
    sim.drop()
    sim.run()
    assert [w for w, _ in sim.words] == text.split()
    assert sim.audio.replace(b"\0", b"") == b"".join(word_audio(t, sim.voice) for t in text.split())


# -- how far the text runs ahead of its audio (what paces a huge frame) ---------------------


def test_the_text_ahead_of_the_audio_is_what_was_sent_past_the_last_word_played():
    text = "One two three four. Five six seven eight."
    sim = server(text, chunk_size=4, engine=make_engine(flush_on="turn"))
    sim.feed(text)
    sim.end_input()
    assert "".join(a.text for a in sim.of(Send)) == text
    assert sim.engine.unheard == len(text)  # one segment, no audio yet
    while [w for w, _ in sim.words][-1:] != ["two"]:
        assert sim.step()
    assert sim.engine.unheard == len(text) - len("One two")
    sim.run()
    assert sim.engine.unheard == 0


def test_without_timestamps_a_segment_whose_audio_began_is_heard():
    sentences = ["One two three four. ", "Five six seven eight."]
    text = "".join(sentences)
    sim = server(text, chunk_size=4, timestamps=False, engine=make_engine(expect_timestamps=False))
    sim.feed(text)
    sim.end_input()
    assert sim.engine.unheard == len(text)
    while not sim.of(Audio):
        assert sim.step()
    assert sim.engine.unheard == len(sentences[1])


def test_a_refused_segment_is_not_waited_for():
    sentences = ["Hello there my friend. ", "Say the forbidden word now. ", "How are you today?"]
    text = "".join(sentences)

    sim = server(text, chunk_size=8, refuse=refuse_forbidden, auto_resume=False)
    sim.feed(text)
    sim.end_input()
    sim.run()  # sentence 1 plays, then the 400
    sim.resume()  # sentence 2 alone
    sim.run()  # refused again: it is skipped
    assert sim.resume() == [Open("t-3"), Send("t-3", sentences[2]), Close("t-3")]
    # Sentence 2 will never have audio: only sentence 3 is ahead of it.
    assert sim.engine.unheard == len(sentences[2])


@settings(max_examples=100, deadline=None)
@given(
    turn=turns(),
    chunk_size=chunk_sizes,
    flush_on=flush_modes,
    timestamps=st.booleans(),
)
def test_the_text_ahead_of_the_audio_only_shrinks_as_it_plays_and_ends_at_zero(
    turn, chunk_size, flush_on, timestamps
):
    engine = make_engine(expect_timestamps=timestamps, flush_on=flush_on)
    sim = server(turn, engine=engine, chunk_size=chunk_size, timestamps=timestamps)
    sim.feed(turn)
    sim.end_input()
    ahead = [engine.unheard]
    while sim.step():
        ahead.append(engine.unheard)
    assert ahead[0] == sum(len(a.text) for a in sim.of(Send))
    assert ahead == sorted(ahead, reverse=True)
    assert ahead[-1] == 0


@pytest.mark.parametrize("flush_on", ["turn", "sentence"])
def test_a_token_added_to_a_long_segment_costs_the_token_not_the_segment(flush_on):
    # One segment of 400 KB (a run-on sentence, or any turn with "turn"):
    # copying it per token would make the turn cost the square of its length.
    # Memory allocated is counted, not time: it does not vary with load.
    engine = make_engine(flush_on=flush_on)
    for n in range(80_000):
        engine.feed("word " if n % 50 else "end, ", now=0.0)
    tracemalloc.start()
    try:
        for _ in range(100):
            engine.feed("word ", now=0.0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    [segment] = engine.segments
    assert len(segment) > 400_000
    assert peak < 100_000


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # A first segment of one word plays too briefly to hide the wait for the
        # next sentence: the next one ends early too (the turn's sixth word).
        (
            "Sure! Dr. Smith can see you on Tuesday at noon. Shall I book it?",
            ["Sure! ", "Dr. Smith can see you ", "on Tuesday at noon. ", "Shall I book it?"],
        ),
        # A first segment of three words is enough: sentences from then on.
        (
            "Your order ships today and arrives on Friday. Thanks!",
            ["Your order ships ", "today and arrives on Friday. ", "Thanks!"],
        ),
    ],
)
def test_the_segments_after_a_very_short_first_one_end_early_too(text, expected):
    engine = make_engine(first_segment_words=3, flush_first_clause=True)
    sim = server(text, engine=engine)
    for token in re.findall(r" ?\S+", text):
        sim.feed(token)
    sim.end_input()
    sim.run()
    assert [d.text for d in sim.segments_done] == expected


# -- timers: text held for its flush, a stalled first segment -----------------------------


def wire(actions: list[Action]) -> list[tuple[str, str]]:
    """What goes on the wire: ("push", text), ("flush", ""), ("close", "")."""
    kinds = {Send: "push", SendFlush: "flush", Close: "close"}
    return [
        (kinds[type(a)], a.text if isinstance(a, Send) else "") for a in actions if type(a) in kinds
    ]


def test_a_segments_text_waits_for_its_flush_and_goes_out_in_one_push():
    engine = make_engine(hold=0.25)
    sent = []
    for n, token in enumerate(["One", " two", " three", " four.", " Five", " six", " seven"]):
        sent += engine.feed(token, n * 0.01)
    # Word by word, this was seven pushes; the server speaks at the flush either way.
    assert wire(sent) == [("push", "One two three four. "), ("flush", "")]
    # " Five six " waits since it came (t = 0.05 s), for its flush or `hold`.
    assert engine.deadline == pytest.approx(0.05 + 0.25)
    assert engine.tick(0.29) == []
    assert wire(engine.tick(0.30)) == [("push", "Five six ")]
    assert engine.deadline is None, "nothing waits"
    assert wire(engine.end_input(0.4)) == [("push", "seven"), ("close", "")]


def test_text_waiting_for_its_flush_goes_out_once_it_is_long():
    engine = make_engine(hold=0.25)
    actions = [a for n in range(200) for a in engine.feed("word ", n * 0.001)]
    # No flush came and no time passed: the length let it go, a push per 256 characters.
    assert [kind for kind, _ in wire(actions)] == ["push"] * 3
    assert [len(text) for _, text in wire(actions)] == [260, 260, 260]
    assert wire(engine.end_input(0.3)) == [("push", "word " * 44), ("close", "")]


def test_a_first_segment_stalled_past_its_deadline_ends_at_the_last_whole_word():
    engine = make_engine(first_segment_deadline=0.25, first_segment_words=5, hold=1.0)
    actions = []
    for at, token in [(0.0, "So"), (0.05, " I"), (0.1, " think"), (0.12, " we")]:
        actions += engine.feed(token, at)
    assert wire(actions) == [], "five words or a sentence end the first segment"
    assert engine.deadline == pytest.approx(0.25), "counted from the first word"
    # "we" may go on ("were"): the push ends at the last whitespace.
    assert wire(engine.tick(0.25)) == [("push", "So I think "), ("flush", "")]
    assert engine.deadline is None, "once per turn: later segments have audio playing"
    actions = engine.feed(" can. Then", 0.5) + engine.end_input(0.6)
    assert wire(actions) == [("push", "we can. "), ("flush", ""), ("push", "Then"), ("close", "")]
    assert engine.segments == ["So I think ", "we can. ", "Then"]


def test_a_first_segment_past_its_deadline_ends_at_its_first_whole_word():
    engine = make_engine(first_segment_deadline=0.25)
    assert engine.feed("Hel", 0.0) == []
    assert engine.tick(0.3) == [], "half a word is not said"
    assert engine.deadline is None, "no timer: the next text decides"
    # The stall is over: the segment ends at the first whole word there is.
    assert wire(engine.feed("lo there, friend.", 0.4) + engine.end_input(0.5)) == [
        ("push", "Hello there, "),
        ("flush", ""),
        ("push", "friend."),
        ("close", ""),
    ]


def test_the_first_segment_deadline_does_not_apply_with_flush_on_turn():
    engine = make_engine(first_segment_deadline=0.25, flush_on="turn", hold=1.0)
    engine.feed("So I think we", 0.0)
    assert engine.deadline == pytest.approx(1.0), "only the hold's"
    assert wire(engine.tick(1.0)) == [("push", "So I think ")], "no flush before the end"


def test_a_first_segment_deadline_flushes_words_already_pushed():
    engine = make_engine(first_segment_deadline=0.25, first_segment_words=5, first_push_words=1)
    actions = [
        a for at, t in [(0.0, "So"), (0.05, " I"), (0.1, " think")] for a in engine.feed(t, at)
    ]
    assert wire(actions) == [("push", "So "), ("push", "I ")], "pushed at once (no hold)"
    assert wire(engine.tick(0.25)) == [("flush", "")]
    assert engine.segments == ["So I ", ""]


# -- running low: a later segment ends at a clause when the audio queued runs out ----------


def clause_turn(bytes_per_second: int) -> FakeCartesia:
    """A first sentence played, then a sentence of clauses, the LLM slower than the audio."""
    text = "Hi there friend. So, as I said, it works."
    engine = TurnEngine("t", Segmenter(), bytes_per_second=bytes_per_second, sample_width=2)
    sim = FakeCartesia(engine, voice_of(text), bytes_per_second=bytes_per_second)
    for token in re.findall(r" ?\S+", text):
        sim.feed(token)
        sim.run()  # the audio comes as fast as the text: the listener waits on the LLM
    sim.end_input()
    sim.run()
    return sim


def test_a_later_segment_ends_at_a_clause_when_the_audio_queued_runs_low():
    # 32 bytes of audio a sentence at 16000 bytes/s: 2 ms queued, the player runs dry.
    sim = clause_turn(BYTES_PER_SECOND)
    assert [d.text for d in sim.segments_done] == [
        "Hi there friend. ",
        "So, ",
        "as I said, ",
        "it works.",
    ]


def test_a_later_segment_ends_at_its_sentence_while_audio_is_queued():
    # The same audio at 16 bytes/s: seconds of it queued, the sentence can wait for its end.
    sim = clause_turn(16)
    assert [d.text for d in sim.segments_done] == ["Hi there friend. ", "So, as I said, it works."]


def test_the_segmenter_ends_a_running_low_segment_at_a_clause():
    later = Position(opening=False, first_segment=False, early=False)
    text = "so, as I said, it works. "
    assert Segmenter().feed(text, later) == [Push(text), Flush()]
    assert Segmenter().feed(text, dataclasses.replace(later, low=True)) == [
        Push("so, "),
        Flush(),
        Push("as I said, "),
        Flush(),
        Push("it works. "),
        Flush(),
    ]
    # With "turn", the server's buffering paces speech: no flush before the end.
    assert Segmenter("turn").feed(text, dataclasses.replace(later, low=True)) == [Push(text)]


@pytest.mark.parametrize(("hold_audio_above", "second_chunk_out"), [(None, 8), (0.5, 100)])
def test_audio_past_the_last_timed_word_waits_only_while_the_listener_has_enough(
    hold_audio_above, second_chunk_out
):
    engine = make_engine(hold_audio_above=hold_audio_above)
    engine.feed("Hello there friend. ", 0.0)
    engine.end_input(0.0)

    def audio_out(event, now):
        return sum(len(a.data) for a in engine.event("t", event, now) if isinstance(a, Audio))

    assert audio_out(Chunk("t", bytes(100), 1), 0.01) == 100, "a segment's first audio goes at once"
    # "Hello" ends at byte 108: what follows waits for "there" to be timed...
    assert audio_out(Timestamps("t", ("Hello",), (0.0,), (108 / BYTES_PER_SECOND,), 1), 0.02) == 0
    # ...unless the listener, 100 bytes (6 ms) of audio and 20 ms later, has run dry.
    assert audio_out(Chunk("t", bytes(100), 1), 0.03) == second_chunk_out


def test_no_deadline_is_left_behind_once_held_text_has_gone_another_way():
    # Held text closed by a settings switch before it went out: nothing is held any
    # more, so no timer may be asked for (a past deadline would fire over and over).
    engine = make_engine(hold=0.25)
    engine.feed("Hello there my friend ", 0.0)
    assert engine.deadline == pytest.approx(0.25)
    engine.switch_settings()
    engine.feed("is here. ", 0.1)
    for now in (0.3, 0.31, 5.0):
        assert engine.tick(now) == []
        assert engine.deadline is None


def test_a_drop_after_timestamps_that_came_before_their_audio_repeats_nothing():
    # "Hello" ends at byte 108 and "there" at 200, timed before 130 bytes have played:
    # the replay must not start after "Hello" (bytes 108-130 would play twice).
    engine = make_engine()
    engine.feed("Hello there friend. ", 0.0)
    engine.end_input(0.0)
    engine.event("t", Chunk("t", bytes(100), 1), 0.01)
    engine.event(
        "t", Timestamps("t", ("Hello", "there"), (0.0, 0.007), (108 / 16000, 200 / 16000), 1), 0.02
    )
    engine.event("t", Chunk("t", bytes(30), 1), 0.03)
    actions = engine.lost(CartesiaConnectionError("dropped"))
    assert any(isinstance(a, Retry) for a in actions)
    resumed = engine.resume(0.1)
    # From the segment's start, dropping the 130 bytes played when they come again.
    assert wire(resumed) == [("push", "Hello there friend. "), ("flush", ""), ("close", "")]
    out = engine.event("t-2", Chunk("t-2", bytes(200), 1), 0.2)
    assert sum(len(a.data) for a in out if isinstance(a, Audio)) == 200 - 130
