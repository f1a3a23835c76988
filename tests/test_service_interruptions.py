"""Interruptions and dropped connections, in a running pipeline, driven by what comes out."""

from __future__ import annotations

import pytest
from pipecat.frames.frames import (
    ErrorFrame,
    InterruptionFrame,
    TTSSpeakFrame,
    TTSStoppedFrame,
    TTSTextFrame,
)
from pipeline_harness import running_pipeline
from service_helpers import audio, flush_dones, llm_turn, make_tts, words

from pipecat_cartesia_ctx.emulator import Behavior, CancelBehavior, Pacing

LONG = (
    "This answer goes on for a while, so that it can be interrupted in the middle. "
    "It has a second sentence that should never be heard. And a third one too."
)
NEXT = "Sure, here is the next answer."
# Slow enough that the interruption lands mid-segment, fast enough for a test.
PACING = Pacing(first_chunk_ms=20, speed=4.0, chunk_ms=40)


def frames_of(context_id: str, frames) -> list:
    return [f for f in frames if getattr(f, "context_id", None) == context_id]


# How many chunks of the segment in progress the server still sends after the cancel.
@pytest.mark.parametrize(
    ("cancel", "late_chunks"),
    [
        (CancelBehavior.FINISH_SEGMENT, range(1, 1000)),
        (CancelBehavior.CHUNK_IN_FLIGHT, range(2)),
        (CancelBehavior.IMMEDIATE, range(1)),
    ],
    ids=lambda v: v.value if isinstance(v, CancelBehavior) else None,
)
async def test_an_interruption_cancels_the_context_and_nothing_of_it_plays_after(
    make_emulator, cancel, late_chunks
):
    emu = await make_emulator(pacing=PACING, behavior=Behavior(cancel=cancel))
    tts = make_tts(emu)
    async with running_pipeline(tts) as pipeline:
        await pipeline.send(*llm_turn(LONG, seed=4))
        await pipeline.down.wait_for(lambda frames: len(audio(frames)) >= 3)
        [interrupted] = emu.record.contexts
        await pipeline.send(InterruptionFrame())
        await pipeline.down.wait_for(
            lambda frames: any(isinstance(f, InterruptionFrame) for f in frames)
        )
        cut = next(
            i for i, f in enumerate(pipeline.down.frames) if isinstance(f, InterruptionFrame)
        )
        # The cancel is on the wire, on the same socket.
        await emu.record.wait_for(lambda r: r.context(interrupted).cancelled)
        if cancel is CancelBehavior.FINISH_SEGMENT:
            # The server goes on with the segment in progress; the service drops it all.
            await emu.record.wait_for(
                lambda r: "flush_done" in r.context(interrupted).events_after_cancel
            )
        await pipeline.send(*llm_turn(NEXT, seed=5))
        await pipeline.down.wait_for(lambda frames: len(flush_dones(frames[cut:])) == 1)
        down = pipeline.down.frames

    after = down[cut + 1 :]
    assert frames_of(interrupted, after) == [], "no audio, words or flush-done after the cut"
    record = emu.record.context(interrupted)
    # Cartesia ends a cancelled context with a stale `done`; it reaches no frame either.
    await emu.record.wait_for(lambda r: r.context(interrupted).done)
    assert record.events_after_cancel[-1] == "done"
    assert [i.kind for i in record.inputs][-1] != "close" or record.cancelled
    # The next turn plays normally, on the same connection, as a new context.
    assert len(emu.record.connections) == 1
    following = [c for c in emu.record.contexts if c != interrupted]
    assert len(following) == 1
    assert [f.text for f in flush_dones(after)] == [NEXT]
    assert words(after) == NEXT.split()
    assert (
        sum(len(f.audio) for f in audio(after))
        == emu.record.context(following[0]).total_audio_bytes
    )
    stats = tts.stats
    assert stats.contexts_cancelled == 1
    assert record.events_after_cancel.count("chunk") in late_chunks
    assert stats.stale_events_dropped >= len(record.events_after_cancel)


async def test_words_spoken_before_the_interruption_are_all_that_reach_the_context(make_emulator):
    emu = await make_emulator(pacing=PACING)
    async with running_pipeline(make_tts(emu)) as pipeline:
        await pipeline.send(*llm_turn(LONG, seed=4))
        await pipeline.down.wait_for(
            lambda frames: sum(isinstance(f, TTSTextFrame) for f in frames) >= 3
        )
        await pipeline.send(InterruptionFrame())
        await pipeline.down.wait_for(
            lambda frames: any(isinstance(f, InterruptionFrame) for f in frames)
        )
        [interrupted] = emu.record.contexts
        await emu.record.wait_for(lambda r: r.context(interrupted).cancelled)
    spoken = words(pipeline.down.frames)
    assert 3 <= len(spoken) < len(LONG.split())
    assert spoken == LONG.split()[: len(spoken)], "a prefix of the answer, in order"


async def test_an_uninterruptible_speak_frame_survives_an_interruption(make_emulator):
    emu = await make_emulator(pacing=PACING)
    text = "Please hold while I check that for you."
    speak = TTSSpeakFrame(text)
    speak.interruptible = False
    async with running_pipeline(make_tts(emu)) as pipeline:
        await pipeline.send(speak)
        await pipeline.down.wait_for(lambda frames: len(audio(frames)) >= 2)
        await pipeline.send(InterruptionFrame())
        await pipeline.down.wait_for(lambda frames: len(flush_dones(frames)) == 1)
    [record] = emu.record.contexts.values()
    assert not record.cancelled
    assert record.done
    assert [f.text for f in flush_dones(pipeline.down.frames)] == [text]
    assert words(pipeline.down.frames) == text.split()


async def test_a_dropped_connection_resumes_the_turn_on_a_new_connection(make_emulator):
    emu = await make_emulator(pacing=PACING)
    emu.faults.drop_after_chunks = 3
    async with running_pipeline(make_tts(emu)) as pipeline:
        await pipeline.send(*llm_turn(LONG, seed=4))
        await pipeline.down.wait_for(
            lambda frames: any(isinstance(f, TTSStoppedFrame) for f in frames)
        )
        mark = len(pipeline.down.frames)
        await pipeline.send(*llm_turn(NEXT, seed=5))
        await pipeline.down.wait_for(lambda frames: len(flush_dones(frames[mark:])) == 1)
    errors = [f.error for f in pipeline.up.frames if isinstance(f, ErrorFrame)]
    assert errors == [], "a drop is a transient fault: no error frame"
    assert words(pipeline.down.frames[:mark]) == LONG.split(), "every word once, in order"
    assert "".join(f.text for f in flush_dones(pipeline.down.frames[:mark])) == LONG
    assert [f.text for f in flush_dones(pipeline.down.frames[mark:])] == [NEXT]
    first, second = emu.record.connections
    lost, resumed, nxt = emu.record.contexts.values()
    assert (lost.connection, resumed.connection, nxt.connection) == (first.number,) + (
        second.number,
    ) * 2
    # The replay starts at a word: the rest of the turn, from the first word not played.
    assert LONG.endswith(resumed.transcript)
    played = LONG[: len(LONG) - len(resumed.transcript)]
    assert played == "" or played[-1] == " ", "from the start of a word"
