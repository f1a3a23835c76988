"""Faults in a running pipeline: drops, closes, 401, 429, a refused input, silent turns.

Every test runs the service against the emulator over loopback sockets and
checks what a listener gets: the words voiced (each once, in order), the
segments' flush-done texts and ids, the audio bytes, and the error frames.
"""

from __future__ import annotations

import asyncio

import pytest
from helpers import new_context
from pipecat.frames.frames import (
    ErrorFrame,
    InterruptionFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    MetricsFrame,
    TTSSpeakFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
)
from pipecat.pipeline.task import PipelineParams
from pipecat.tests.utils import run_test
from pipeline_harness import running_pipeline
from service_helpers import (
    audio,
    flush_dones,
    llm_turn,
    make_tts,
    segment_order,
    tokens,
    words,
)

from pipecat_cartesia_ctx import CartesiaResumeMetricsData
from pipecat_cartesia_ctx.client import CartesiaConnection
from pipecat_cartesia_ctx.emulator import Behavior, Pacing, SyntheticVoice
from pipecat_cartesia_ctx.reconnect import RetryPolicy

# Fast, but paced: chunks come one by one, so faults counted in chunks land mid-turn.
FAST = Pacing(first_chunk_ms=0, speed=50.0, chunk_ms=40)

THREE = "The first sentence is here. The second one is a bit longer, with a clause. Third!"
SEGMENTS = [
    "The first sentence is here. ",
    "The second one is a bit longer, with a clause. ",
    "Third!",
]
# At 40 ms a chunk THREE is about 53 + 89 + 17 chunks: chunk 80 is mid-word in sentence 2.
MID_SENTENCE_TWO = 80
NEXT = "Sure, here is the next answer."


def stopped(frames) -> int:
    return sum(isinstance(f, TTSStoppedFrame) for f in frames)


def started(frames) -> int:
    return sum(isinstance(f, TTSStartedFrame) for f in frames)


def error_frames_in(frames) -> list[ErrorFrame]:
    return [f for f in frames if isinstance(f, ErrorFrame)]


def error_frames(pipeline) -> list[ErrorFrame]:
    return error_frames_in([*pipeline.up.frames, *pipeline.down.frames])


def audio_bytes(frames) -> int:
    return sum(len(f.audio) for f in audio(frames))


def assert_whole_turn(frames, text=THREE, segments=SEGMENTS):
    """Every word once, in order; each segment's exact text; flush ids 1..n in order."""
    assert words(frames) == text.split()
    dones = flush_dones(frames)
    assert [f.text for f in dones] == segments
    assert [f.flush_id for f in dones] == list(range(1, len(segments) + 1))
    n = len(segments)
    assert segment_order(frames) == [
        item for i in range(1, n + 1) for item in (("audio", i), ("done", i))
    ]


async def clean_audio_bytes(make_emulator, text: str, **behavior) -> int:
    """Downstream audio bytes of ``text`` on a fault-free emulator (deterministic voice)."""
    emu = await make_emulator(pacing=FAST, behavior=Behavior(**behavior))
    down, _ = await run_test(make_tts(emu), frames_to_send=llm_turn(text, seed=7))
    assert [f.text for f in flush_dones(down)] == SEGMENTS
    return audio_bytes(down)


async def play_turn(pipeline, text: str, seed: int = 0) -> list:
    """Send one turn and return its downstream frames once its TTSStoppedFrame is out."""
    mark, before = len(pipeline.down.frames), stopped(pipeline.down.frames)
    await pipeline.send(*llm_turn(text, seed=seed))
    await pipeline.down.wait_for(lambda frames: stopped(frames) > before)
    return pipeline.down.frames[mark:]


# 1 -------------------------------------------------------------------------------


async def test_a_drop_mid_word_resumes_from_the_first_unplayed_word(make_emulator):
    expected_bytes = await clean_audio_bytes(make_emulator, THREE)
    emu = await make_emulator(pacing=FAST)
    emu.faults.drop_after_chunks = MID_SENTENCE_TWO
    tts = make_tts(emu)
    async with running_pipeline(tts) as pipeline:
        turn = await play_turn(pipeline, THREE, seed=7)
        assert tts.is_usable
    assert error_frames(pipeline) == [], "a drop is transient: no error frame"
    assert_whole_turn(turn)
    first, second = emu.record.connections
    lost, resumed = emu.record.contexts.values()
    # Audio is released up to word ends: the silence after the last word heard on the
    # lost context may be lost with it (the replay starts with the next word's sound),
    # but nothing is sent twice and no word is cut.
    played = THREE[: len(THREE) - len(resumed.transcript)]
    gap = 2 * round(SyntheticVoice().pause_after(played.split()[-1]) * 24000)
    assert expected_bytes - audio_bytes(turn) in (0, gap), "no audio twice, no fragment"
    assert (lost.connection, resumed.connection) == (first.number, second.number)
    assert resumed.context_id == f"{lost.context_id}-2"
    # The drop landed in sentence 2: sentence 1 was heard on the lost context.
    assert lost.spoken[: len(SEGMENTS[0].split())] == SEGMENTS[0].split()
    assert THREE.endswith(resumed.transcript)
    assert resumed.transcript != THREE
    assert played.startswith(SEGMENTS[0])
    assert played[-1] == " ", "replay starts at a word"
    assert tts.stats.reconnects == 1
    assert tts.stats.replayed_characters == len(resumed.transcript)


async def test_a_resume_reports_its_metrics(make_emulator):
    emu = await make_emulator(pacing=FAST)
    emu.faults.drop_after_chunks = MID_SENTENCE_TWO
    tts = make_tts(emu)
    async with running_pipeline(tts, PipelineParams(enable_metrics=True)) as pipeline:
        turn = await play_turn(pipeline, THREE, seed=7)
    lost, resumed = emu.record.contexts.values()
    [resume] = [
        d
        for f in turn
        if isinstance(f, MetricsFrame)
        for d in f.data
        if isinstance(d, CartesiaResumeMetricsData)
    ]
    assert (resume.context_id, resume.resumed_on) == (lost.context_id, resumed.context_id)
    assert (resume.reason, resume.attempt, resume.reconnects) == ("connection", 1, 1)
    assert resume.replayed_characters == len(resumed.transcript)
    assert resume.replayed_characters == tts.stats.replayed_characters
    assert resume.connect_seconds > 0
    assert resume.waited_seconds > 0


# 2 -------------------------------------------------------------------------------


async def test_a_drop_without_timestamps_sends_the_turns_audio_exactly_once(make_emulator):
    expected_bytes = await clean_audio_bytes(make_emulator, THREE, timestamps=False)
    emu = await make_emulator(pacing=FAST, behavior=Behavior(timestamps=False))
    emu.faults.drop_after_chunks = MID_SENTENCE_TWO
    tts = make_tts(emu)
    async with running_pipeline(tts) as pipeline:
        turn = await play_turn(pipeline, THREE, seed=7)
        assert tts.is_usable
    assert error_frames(pipeline) == []
    dones = flush_dones(turn)
    assert [f.text for f in dones] == SEGMENTS
    assert [f.flush_id for f in dones] == [1, 2, 3]
    assert segment_order(turn) == [
        ("audio", 1),
        ("done", 1),
        ("audio", 2),
        ("done", 2),
        ("audio", 3),
        ("done", 3),
    ]
    assert audio_bytes(turn) == expected_bytes, "the turn's audio once: no repeat, no gap"
    assert len(emu.record.connections) == 2
    _lost, resumed = emu.record.contexts.values()
    assert THREE.endswith(resumed.transcript)
    assert resumed.transcript != THREE
    played = THREE[: len(THREE) - len(resumed.transcript)]
    assert played == "" or played[-1] == " ", "replay starts at a word"


# 3 -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "abort"), [(1001, False), (1011, False), (1006, True)], ids=["1001", "1011", "drop"]
)
async def test_a_close_between_turns_leaves_the_next_turn_whole(make_emulator, code, abort):
    emu = await make_emulator(pacing=FAST)
    tts = make_tts(emu)
    async with running_pipeline(tts) as pipeline:
        first = await play_turn(pipeline, THREE, seed=7)
        emu.close_connections(code, "going away", abort=abort)
        # The keeper reopens in the background, before the next turn needs it.
        await emu.record.wait_for(lambda r: len(r.connections) == 2 and r.connections[0].closed)
        second = await play_turn(pipeline, THREE, seed=8)
        assert tts.is_usable
    assert error_frames(pipeline) == []
    assert_whole_turn(first)
    assert_whole_turn(second)
    one, two = emu.record.contexts.values()
    assert (one.connection, two.connection) == (0, 1)
    assert (one.transcript, two.transcript) == (THREE, THREE)
    assert tts.stats.reconnects == 1


# 4 -------------------------------------------------------------------------------


async def test_an_idle_close_before_a_turn_is_not_an_error(make_emulator):
    emu = await make_emulator(pacing=FAST)
    tts = make_tts(emu)
    async with running_pipeline(tts) as pipeline:
        await play_turn(pipeline, NEXT, seed=1)
        # What Cartesia does after 5 idle minutes (the emulator's idle watchdog says the same).
        emu.close_connections(1000, "connection idle timeout")
        await emu.record.wait_for(lambda r: r.connections[0].closed)
        assert emu.record.connections[0].close_code == 1000
        # Sent at once: the keeper may still be reopening; the turn waits for it.
        turn = await play_turn(pipeline, THREE, seed=7)
        assert tts.is_usable
    assert error_frames(pipeline) == []
    assert_whole_turn(turn)
    assert flush_dones(turn)[0].text == SEGMENTS[0]
    assert len(emu.record.connections) == 2


# 5 -------------------------------------------------------------------------------


async def test_a_close_racing_the_first_push_still_plays_the_whole_turn(make_emulator):
    # No fault fires before a chunk (they count chunks sent), so the test closes the
    # socket itself the moment the emulator has the turn's first input. A 200 ms
    # time to first chunk makes it (nearly always) a close before any audio;
    # the assertions hold whichever way the race goes.
    emu = await make_emulator(pacing=Pacing(first_chunk_ms=200, speed=50.0, chunk_ms=40))
    tts = make_tts(emu)
    async with running_pipeline(tts) as pipeline:
        await emu.record.wait_for(lambda r: len(r.connections) == 1)
        mark = len(pipeline.down.frames)
        await pipeline.send(*llm_turn(THREE, seed=7))
        await emu.record.wait_for(lambda r: any(c.inputs for c in r.contexts.values()))
        emu.close_connections(1011, "internal error")
        await pipeline.down.wait_for(lambda frames: stopped(frames[mark:]) == 1)
        turn = pipeline.down.frames[mark:]
        assert tts.is_usable
    assert error_frames(pipeline) == []
    assert_whole_turn(turn)
    assert started(turn) == 1
    contexts = list(emu.record.contexts.values())
    assert contexts[0].connection == 0
    assert contexts[-1].connection >= 1
    assert THREE.endswith(contexts[-1].transcript)


# 6 -------------------------------------------------------------------------------


async def test_a_refused_key_is_one_fatal_error_after_one_attempt(make_emulator):
    emu = await make_emulator(pacing=FAST, api_key="the-right-key")
    tts = make_tts(emu)  # presents "test-key"
    async with running_pipeline(tts) as pipeline:
        await pipeline.up.wait_for(lambda frames: any(isinstance(f, ErrorFrame) for f in frames))
        assert not tts.is_usable
    # The pipeline has ended (EndFrame, keeper stopped): no attempt can come after this,
    # so the count below is final, not a snapshot that a retry storm could still grow.
    [error] = error_frames(pipeline)
    assert error.fatal
    assert "401" in str(error.error) or "nvalid" in str(error.error)
    assert emu.record.rejected_connections == [(401, "unauthorized")]
    assert emu.record.connections == []
    assert tts.stats.errors == 1


# 7 -------------------------------------------------------------------------------


async def test_a_429_waits_and_retries_until_the_turn_plays(make_emulator):
    emu = await make_emulator(pacing=FAST, max_concurrent_contexts=1)
    tts = make_tts(emu, retry=RetryPolicy(max_attempts=100, initial_delay=0.01, max_delay=0.02))
    async with await CartesiaConnection.connect(api_key="k", url=emu.url) as other:
        holder = new_context(other)
        await holder.push("I hold the only slot.")
        await emu.record.wait_for(lambda r: emu.active_contexts == 1)
        async with running_pipeline(tts) as pipeline:
            mark = len(pipeline.down.frames)
            await pipeline.send(*llm_turn(THREE, seed=7))
            await emu.record.wait_for(
                lambda r: any(
                    e.get("status_code") == 429 for c in r.contexts.values() for e in c.errors
                )
            )
            await holder.cancel()
            await pipeline.down.wait_for(lambda frames: stopped(frames[mark:]) == 1)
            turn = pipeline.down.frames[mark:]
            assert tts.is_usable
    assert error_frames(pipeline) == [], "a 429 that clears is not an error"
    assert_whole_turn(turn)
    played = [c for c in emu.record.contexts.values() if c.outcome == "done"]
    assert [c.transcript for c in played] == [THREE]


@pytest.mark.parametrize("budget", [None, 1])
async def test_overlapping_messages_with_a_limit_of_one_both_play(make_emulator, budget):
    # Generation at real time: the first message's context is still live when the second starts.
    emu = await make_emulator(
        pacing=Pacing(first_chunk_ms=10, speed=1.0), max_concurrent_contexts=1
    )
    tts = make_tts(
        emu,
        max_concurrent_contexts=budget,
        retry=RetryPolicy(max_attempts=100, initial_delay=0.01, max_delay=0.05),
    )
    first, second = "The first message is here.", "And the second one follows it."
    down, up = await run_test(tts, frames_to_send=[TTSSpeakFrame(first), TTSSpeakFrame(second)])
    contexts = list(emu.record.contexts.values())
    refused = [c for c in contexts if c.errors]
    assert [c.transcript for c in contexts if not c.errors] == [first, second]
    assert words(down) == f"{first} {second}".split()
    assert [f.text for f in flush_dones(down)] == [first, second]
    assert error_frames_in([*down, *up]) == []
    if budget is None:
        # The server refused the second: it waited and retried.
        assert {e["status_code"] for c in refused for e in c.errors} == {429}
    else:
        assert refused == [], "the second waited on our side; the server never refused it"


async def test_a_cancelled_context_frees_its_slot_without_waiting_for_the_server(make_emulator):
    # A server that never sends done after a cancel: a slot freed only by its done never frees.
    emu = await make_emulator(
        pacing=Pacing(first_chunk_ms=10, speed=1.0), behavior=Behavior(done_after_cancel=False)
    )
    tts = make_tts(emu, max_concurrent_contexts=1)
    async with running_pipeline(tts) as pipeline:
        await pipeline.send(*llm_turn(THREE, seed=7))
        await pipeline.down.wait_for(lambda frames: len(audio(frames)) >= 3)
        await pipeline.send(InterruptionFrame())
        await emu.record.wait_for(lambda r: any(c.cancelled for c in r.contexts.values()))
        turn = await play_turn(pipeline, NEXT, seed=5)
    interrupted, following = emu.record.contexts.values()
    assert interrupted.cancelled
    assert not interrupted.done
    assert following.transcript == NEXT
    assert words(turn) == NEXT.split()


# 8 -------------------------------------------------------------------------------


async def test_a_429_that_persists_gives_up_with_one_non_fatal_error(make_emulator):
    emu = await make_emulator(pacing=FAST, max_concurrent_contexts=1)
    policy = RetryPolicy(max_attempts=2, initial_delay=0.01, max_delay=0.02)
    tts = make_tts(emu, retry=policy)
    async with await CartesiaConnection.connect(api_key="k", url=emu.url) as other:
        holder = new_context(other)
        await holder.push("I hold the only slot.")
        await emu.record.wait_for(lambda r: emu.active_contexts == 1)
        async with running_pipeline(tts) as pipeline:
            await pipeline.send(*llm_turn(THREE, seed=7))
            await pipeline.up.wait_for(
                lambda frames: any(isinstance(f, ErrorFrame) for f in frames)
            )
            # The failed turn's TTSStoppedFrame may follow its ErrorFrame: wait for it, or
            # play_turn below would take it for the next turn's.
            await pipeline.down.wait_for(lambda frames: stopped(frames) == 1)
            refused = [
                c
                for c in emu.record.contexts.values()
                if [e.get("status_code") for e in c.errors] == [429]
            ]
            assert tts.is_usable
            await holder.cancel()
            await emu.record.wait_for(lambda r: emu.active_contexts == 0)
            turn = await play_turn(pipeline, NEXT, seed=5)
            assert tts.is_usable
    assert words(turn) == NEXT.split()
    assert [f.text for f in flush_dones(turn)] == [NEXT]
    [error] = error_frames(pipeline)  # one clear error (no "completed with no audio" beside it)
    assert not error.fatal
    assert "429 concurrency_limited" in str(error.error)
    # "Given up after retry.max_attempts losses in a row": that many contexts refused.
    assert len(refused) == policy.max_attempts
    assert tts.stats.errors == len(refused), "each 429 once, the give-up adds none"


# 9 -------------------------------------------------------------------------------

PURPLE = "The first sentence is here. The sky turned purple at dusk. The third one ends it."
PURPLE_SEGMENTS = [
    "The first sentence is here. ",
    "The sky turned purple at dusk. ",
    "The third one ends it.",
]


async def test_a_refused_input_skips_its_segment_and_the_turn_goes_on(make_emulator):
    emu = await make_emulator(pacing=FAST)
    emu.faults.refuse_transcripts_containing = "purple"
    tts = make_tts(emu)
    async with running_pipeline(tts) as pipeline:
        await pipeline.send(*llm_turn(PURPLE, seed=3))
        # Wait for the turn's end, or for a storm of contexts (which ends the wait early).
        waits = [
            asyncio.create_task(pipeline.down.wait_for(lambda frames: stopped(frames) == 1)),
            asyncio.create_task(emu.record.wait_for(lambda r: len(r.contexts) > 10, timeout=10)),
        ]
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for wait in waits:
            wait.cancel()
        await asyncio.gather(*waits, return_exceptions=True)
        assert len(emu.record.contexts) <= 3, "one context per attempt, no retry storm"
        turn = list(pipeline.down.frames)
        assert stopped(turn) == 1
        following = await play_turn(pipeline, NEXT, seed=5)
        assert tts.is_usable
    first, _, third = PURPLE_SEGMENTS
    *ours, _next = emu.record.contexts.values()
    spoken = [w for c in ours for w in c.spoken]
    assert spoken == first.split() + third.split(), "the refused sentence is never voiced"
    assert words(turn) == first.split() + third.split(), "no word of the refused sentence"
    assert [f.text for f in flush_dones(turn)] == [first, third]
    ids = [f.flush_id for f in flush_dones(turn)]
    assert ids == sorted(set(ids))
    assert [f for f in error_frames(pipeline) if f.fatal] == []
    refusals = [e for c in emu.record.contexts.values() for e in c.errors]
    assert {e.get("status_code") for e in refusals} == {400}
    assert tts.stats.errors == len(refusals), "each error event once"
    assert words(following) == NEXT.split()
    assert [f.text for f in flush_dones(following)] == [NEXT]


# 10 ------------------------------------------------------------------------------


async def test_refused_sentences_arriving_during_the_search_are_each_skipped_once(make_emulator):
    sentences = [
        "The purple sky is here. ",
        "Then it rained a lot. ",
        "A purple rain it was. ",
        "And the last one ends it.",
    ]
    emu = await make_emulator(pacing=FAST)
    emu.faults.refuse_transcripts_containing = "purple"
    tts = make_tts(emu)
    async with running_pipeline(tts) as pipeline:
        await pipeline.send(
            LLMFullResponseStartFrame(), *map(LLMTextFrame, tokens(sentences[0], 1))
        )
        # The rest of the answer comes while the service looks for the refused input.
        await emu.record.wait_for(lambda r: any(c.errors for c in r.contexts.values()))
        rest = "".join(sentences[1:])
        await pipeline.send(*map(LLMTextFrame, tokens(rest, 2)), LLMFullResponseEndFrame())
        await pipeline.down.wait_for(lambda frames: stopped(frames) == 1)
        turn = list(pipeline.down.frames)
    # Each refused sentence costs at most two contexts: the one refused, and its search.
    assert len(emu.record.contexts) <= 1 + 2 * 2
    kept = [sentences[1], sentences[3]]
    assert [w for c in emu.record.contexts.values() for w in c.spoken] == "".join(kept).split()
    assert words(turn) == "".join(kept).split()
    assert [f.text for f in flush_dones(turn)] == kept
    assert error_frames(pipeline) == []


async def test_a_skipped_clause_stays_out_of_the_context_while_the_llm_is_mid_sentence(
    make_emulator,
):
    # pipecat holds timed words until the LLM has written their whole sentence;
    # here the clause after the refused one plays before the sentence is complete.
    head = "The first part is here, the purple part follows, and then the last "
    tail = "part ends it."
    emu = await make_emulator(pacing=FAST)
    emu.faults.refuse_transcripts_containing = "purple"
    tts = make_tts(emu, flush_on="clause")
    async with running_pipeline(tts) as pipeline:
        await pipeline.send(LLMFullResponseStartFrame(), *map(LLMTextFrame, tokens(head, 3)))
        await pipeline.down.wait_for(lambda frames: any(a.flush_id == 3 for a in audio(frames)))
        await pipeline.send(*map(LLMTextFrame, tokens(tail, 4)), LLMFullResponseEndFrame())
        await pipeline.down.wait_for(lambda frames: stopped(frames) == 1)
        turn = list(pipeline.down.frames)
    spoken = [w for c in emu.record.contexts.values() for w in c.spoken]
    kept = "The first part is here, and then the last part ends it."
    assert spoken == kept.split()
    assert words(turn) == kept.split(), "the skipped clause is not in the context"


async def test_a_turn_refused_in_full_is_one_clear_error_and_the_next_turn_plays(make_emulator):
    emu = await make_emulator(pacing=FAST)
    emu.faults.refuse_transcripts_containing = "purple"
    tts = make_tts(emu)
    async with running_pipeline(tts) as pipeline:
        refused = await play_turn(pipeline, "The sky turned purple at dusk.", seed=3)
        emu.faults.refuse_transcripts_containing = None
        following = await play_turn(pipeline, NEXT, seed=5)
        assert tts.is_usable
    assert audio(refused) == []
    assert words(refused) == [], "nothing voiced, nothing in the context"
    [error] = error_frames(pipeline)  # ours; not pipecat's "completed with no audio" too
    assert not error.fatal
    assert "400" in str(error.error)
    assert words(following) == NEXT.split()


async def test_ten_silent_turns_open_nothing_and_fail_nothing(make_emulator):
    emu = await make_emulator(pacing=FAST)
    tts = make_tts(emu)
    async with running_pipeline(tts) as pipeline:
        for seed in range(10):
            await pipeline.send(*llm_turn("...", seed=seed))
        await pipeline.send(*llm_turn(NEXT, seed=5))
        await pipeline.down.wait_for(lambda frames: stopped(frames) == 1)
        assert tts.is_usable
    down = pipeline.down.frames
    assert error_frames(pipeline) == []
    [context] = emu.record.contexts.values()
    assert context.transcript == NEXT
    assert started(down) == 1, "no audio context for a silent turn"
    assert words(down) == NEXT.split()
    assert [f.text for f in flush_dones(down)] == [NEXT]
    assert tts.stats.errors == 0


# 11 ------------------------------------------------------------------------------


async def test_three_drops_in_a_row_leave_the_service_usable(make_emulator):
    emu = await make_emulator(pacing=FAST)
    tts = make_tts(emu)
    turns = []
    async with running_pipeline(tts) as pipeline:
        for seed in range(3):
            await emu.record.wait_for(lambda r: r.connections and not r.connections[-1].closed)
            # Counted per connection: arm it 20 chunks into this turn on the current one.
            emu.faults.drop_after_chunks = emu.record.connections[-1].chunks_sent + 20
            turns.append(await play_turn(pipeline, THREE, seed=seed))
            assert emu.faults.drop_after_chunks is None, "the drop fired"
        final = await play_turn(pipeline, THREE, seed=9)
        assert tts.is_usable
    assert error_frames(pipeline) == []
    for turn in [*turns, final]:
        assert_whole_turn(turn)
    assert tts.stats.reconnects >= 3
    assert len(emu.record.connections) == 4
