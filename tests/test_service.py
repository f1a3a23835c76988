"""CartesiaContextTTSService in a real pipeline, against the emulator over loopback."""

from __future__ import annotations

import asyncio
import re

import numpy as np
import pytest
from helpers import VOICE
from pipecat.frames.frames import (
    ErrorFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    MetricsFrame,
    TTSAudioRawFrame,
    TTSSpeakFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
    TTSUpdateSettingsFrame,
)
from pipecat.metrics.metrics import TTFAMetricsData, TTFBMetricsData, TTSUsageMetricsData
from pipecat.pipeline.worker import PipelineParams
from pipecat.tests.utils import run_test
from pipecat.transcriptions.language import Language
from pipeline_harness import running_pipeline
from service_helpers import (
    audio,
    flush_dones,
    index_at,
    llm_turn,
    make_tts,
    segment_order,
    tokens,
    words,
)

from pipecat_cartesia_ctx import CartesiaContextTTSService, CartesiaSegmentMetricsData
from pipecat_cartesia_ctx.audio import encode_float, to_pcm16
from pipecat_cartesia_ctx.emulator import Behavior, InjectedError, Pacing, SyntheticVoice


def word_tokens(text: str) -> list[str]:
    """``text`` as an LLM streams it: each word with the space before it."""
    return re.findall(r" ?\S+", text)


THREE = "The first sentence is here. The second one is a bit longer, with a clause. Third!"
SEGMENTS = [
    "The first sentence is here. ",
    "The second one is a bit longer, with a clause. ",
    "Third!",
]
voice = SyntheticVoice()


async def test_a_streamed_turn_gives_flush_ids_1_2_3_and_flush_done_frames_with_exact_text(emu):
    down, _ = await run_test(make_tts(emu), frames_to_send=llm_turn(THREE, seed=7))

    assert segment_order(down) == [
        ("audio", 1),
        ("done", 1),
        ("audio", 2),
        ("done", 2),
        ("audio", 3),
        ("done", 3),
    ]
    assert [f.text for f in flush_dones(down)] == SEGMENTS
    assert words(down) == THREE.split()
    [record] = emu.record.contexts.values()
    assert record.transcript == THREE, "pushes concatenate to exactly the turn text"
    assert record.done
    # Pushes are cut at word boundaries only, and a flush follows each sentence.
    position = 0
    flush_positions = []
    for item in record.inputs:
        position += len(item.transcript)
        if item.kind == "push" and position < len(THREE):
            assert THREE[position - 1].isspace(), f"cut inside a word: {THREE[:position]!r}"
        if item.kind == "flush":
            flush_positions.append(position)
    assert flush_positions == [len(SEGMENTS[0]), len(SEGMENTS[0]) + len(SEGMENTS[1])]
    first = record.pushes[0]
    assert len(first.split()) >= 3 or first.rstrip().endswith((",", ".", ";", ":"))
    assert sum(len(f.audio) for f in audio(down)) == record.total_audio_bytes
    # All of it is one context, opened by its first push and closed by the turn's end.
    assert {f.context_id for f in audio(down)} == {record.context_id}
    assert [i.kind for i in record.inputs][-1] == "close"
    assert isinstance(
        next(f for f in down if isinstance(f, TTSStartedFrame | TTSAudioRawFrame)), TTSStartedFrame
    )
    assert isinstance([f for f in down if not isinstance(f, MetricsFrame)][-2], TTSStoppedFrame)


@pytest.mark.parametrize(
    ("flush_on", "expected", "delay"),
    [
        (
            "clause",
            [
                "The first sentence is here. ",
                "The second one is a bit longer, ",
                "with a clause. ",
                "Third!",
            ],
            500,
        ),
        ("turn", [THREE], None),
        ("sentence", SEGMENTS, 1000),
    ],
)
async def test_flush_policies_give_the_segments_they_promise(emu, flush_on, expected, delay):
    tts = make_tts(emu, flush_on=flush_on)
    down, _ = await run_test(tts, frames_to_send=llm_turn(THREE, seed=3))
    assert [f.text for f in flush_dones(down)] == expected
    ids = [f.flush_id for f in audio(down)]
    assert ids == sorted(ids)
    assert set(ids) == set(range(1, len(expected) + 1))
    [record] = emu.record.contexts.values()
    assert record.flushes == len(expected) - 1
    # The buffering policy is explicit: it fits the flush policy.
    assert tts.max_buffer_delay_ms == delay
    assert {r.get("max_buffer_delay_ms") for r in record.requests} == {delay}


async def test_the_first_clause_can_be_flushed_early(emu):
    text = "Well, here is the answer you wanted. It has two sentences, and a clause."
    down, _ = await run_test(make_tts(emu, flush_first_clause=True), frames_to_send=llm_turn(text))
    assert [f.text for f in flush_dones(down)] == [
        "Well, ",
        "here is the answer you wanted. ",
        "It has two sentences, and a clause.",
    ]


async def test_a_tts_speak_frame_is_a_context_of_its_own(emu):
    down, _ = await run_test(
        make_tts(emu),
        frames_to_send=[TTSSpeakFrame("Hello there. Second one."), TTSSpeakFrame("Next.")],
    )
    contexts = list(emu.record.contexts.values())
    assert [c.transcript for c in contexts] == ["Hello there. Second one.", "Next."]
    assert [(f.context_id, f.flush_id, f.text) for f in flush_dones(down)] == [
        (contexts[0].context_id, 1, "Hello there. "),
        (contexts[0].context_id, 2, "Second one."),
        (contexts[1].context_id, 1, "Next."),
    ]
    assert len(emu.record.connections) == 1, "one long-lived connection"


@pytest.mark.parametrize("text", ["...", "  ", "?!"])
async def test_a_turn_without_words_never_opens_a_context(emu, text):
    down, _ = await run_test(make_tts(emu), frames_to_send=llm_turn(text))
    assert emu.record.contexts == {}
    assert audio(down) == []


def expected_pcm(segments: list[str], encoding: str, rate: int) -> bytes:
    """What the emulator sends for these segments, converted to 16-bit PCM."""
    out, offset = b"", 0
    for text in segments:
        speech = voice.synthesize(text, rate, offset_samples=offset)
        offset += len(speech.samples)
        out += to_pcm16(encode_float(speech.samples, encoding), encoding)
    return out


@pytest.mark.parametrize("rate", [8000, 16000, 24000, 48000])
@pytest.mark.parametrize("encoding", ["pcm_s16le", "pcm_f32le", "pcm_mulaw", "pcm_alaw"])
async def test_every_encoding_and_rate_gives_exact_16_bit_frames(make_emulator, encoding, rate):
    emu = await make_emulator(
        pacing=Pacing(first_chunk_ms=0, speed=float("inf"), unaligned_chunks=True)
    )
    tts = make_tts(emu, encoding=encoding, sample_rate=rate)
    down, _ = await run_test(tts, frames_to_send=[TTSSpeakFrame("Hello there. Testing formats.")])
    frames = audio(down)
    assert frames
    assert all(f.sample_rate == rate and f.num_channels == 1 for f in frames)
    assert all(len(f.audio) % 2 == 0 for f in frames), "whole 16-bit samples, odd cuts carried over"
    pcm = b"".join(f.audio for f in frames)
    assert pcm == expected_pcm(["Hello there. ", "Testing formats."], encoding, rate)
    [record] = emu.record.contexts.values()
    assert record.requests[0]["output_format"] == {
        "container": "raw",
        "encoding": encoding,
        "sample_rate": rate,
    }


async def test_a_rate_cartesia_lacks_is_resampled_from_the_next_one_up(emu):
    down, _ = await run_test(
        make_tts(emu, sample_rate=32000), frames_to_send=[TTSSpeakFrame("Resample me.")]
    )
    [record] = emu.record.contexts.values()
    assert record.requests[0]["output_format"]["sample_rate"] == 44100
    frames = audio(down)
    assert all(f.sample_rate == 32000 for f in frames)
    received = sum(len(f.audio) for f in frames) / 2 / 32000
    sent = record.total_audio_bytes / 2 / 44100
    assert received == pytest.approx(sent, rel=0.02)
    pcm = np.frombuffer(b"".join(f.audio for f in frames), dtype="<i2")
    assert np.sqrt(np.mean((pcm / 32768.0) ** 2)) > 0.01


async def test_a_voice_change_mid_turn_switches_context_at_the_next_sentence_and_loses_nothing(emu):
    text = "First sentence goes here. Second sentence is spoken, then it ends. Final words now."
    frames = llm_turn(text, seed=5)
    # Mid second sentence: the change takes effect once that sentence is done.
    cut = index_at(frames, text, "spoken")
    frames.insert(
        cut, TTSUpdateSettingsFrame(delta=CartesiaContextTTSService.Settings(voice="voice-2"))
    )
    down, _ = await run_test(make_tts(emu), frames_to_send=frames)

    first, second = emu.record.contexts.values()
    # The switch falls between two sentences: after the one under way, or before
    # it when none of it has gone out yet (its text waits for its flush).
    assert first.transcript in (
        "First sentence goes here. ",
        "First sentence goes here. Second sentence is spoken, then it ends. ",
    )
    assert second.transcript.endswith("Final words now.")
    assert {r["voice"]["id"] for r in first.requests} == {VOICE}
    assert {r["voice"]["id"] for r in second.requests} == {"voice-2"}
    assert first.transcript + second.transcript == text
    # Numbering and words run on across the two contexts of the turn.
    assert [(f.flush_id, f.text) for f in flush_dones(down)] == [
        (1, "First sentence goes here. "),
        (2, "Second sentence is spoken, then it ends. "),
        (3, "Final words now."),
    ]
    assert segment_order(down) == [(k, n) for n in (1, 2, 3) for k in ("audio", "done")]
    assert words(down) == text.split()
    frames_ctx = {f.context_id for f in audio(down)}
    assert len(frames_ctx) == 1, "one audio context for the turn"


async def test_generation_config_applies_to_the_next_push(emu):
    text = "One two three four. Five six seven eight."
    frames = llm_turn(text)
    cut = index_at(frames, text, "Five")
    frames.insert(
        cut,
        TTSUpdateSettingsFrame(
            delta=CartesiaContextTTSService.Settings(generation_config={"speed": 1.2})
        ),
    )
    await run_test(make_tts(emu), frames_to_send=frames)
    [record] = emu.record.contexts.values()
    configs = [(r["transcript"], r.get("generation_config")) for r in record.requests]
    before = [c for t, c in configs if t and "Fi" not in t and text.index(t) < text.index("Five")]
    after = [c for t, c in configs if t and text.find(t) >= text.index("Five")]
    assert set(map(str, before)) == {"None"}
    assert after
    assert all(c == {"speed": 1.2} for c in after)


async def test_a_server_error_mid_turn_resumes_on_a_new_context_without_losing_a_word(
    make_emulator,
):
    emu = await make_emulator(pacing=Pacing(first_chunk_ms=0, speed=50.0, chunk_ms=40))
    emu.faults.error_after_chunks = 2
    emu.faults.error = InjectedError(status_code=503, title="Overloaded", message="try later")
    tts = make_tts(emu)
    down, up = await run_test(tts, frames_to_send=llm_turn(THREE, seed=1))

    failed, resumed = emu.record.contexts.values()
    assert failed.errors[0]["status_code"] == 503
    assert resumed.context_id == f"{failed.context_id}-2"
    assert THREE.endswith(resumed.transcript), "the replay is the rest of the turn"
    played = THREE[: len(THREE) - len(resumed.transcript)]
    assert played == "" or played[-1] == " ", "from the start of a word"
    assert [f.text for f in flush_dones(down)] == SEGMENTS
    assert [f.flush_id for f in flush_dones(down)] == [1, 2, 3]
    assert words(down) == THREE.split()
    assert not [f for f in up if isinstance(f, ErrorFrame)], "a transient fault is no error frame"
    assert tts.stats.replayed_characters > 0
    assert len(emu.record.connections) == 1, "the connection survives"


async def test_an_error_that_ends_a_turn_is_a_readable_error_frame_and_the_next_turn_works(
    make_emulator,
):
    emu = await make_emulator(pacing=Pacing(first_chunk_ms=0, speed=50.0, chunk_ms=40))
    emu.faults.error_after_chunks = 2
    emu.faults.error = InjectedError(
        status_code=402, error_code="quota_exceeded", title="Quota", message="out of credits"
    )
    async with running_pipeline(make_tts(emu)) as pipeline:
        await pipeline.send(*llm_turn(THREE, seed=1))
        await pipeline.up.wait_for(lambda frames: any(isinstance(f, ErrorFrame) for f in frames))
        await pipeline.down.wait_for(
            lambda frames: any(isinstance(f, TTSStoppedFrame) for f in frames)
        )
        failed_until = len(pipeline.down.frames)
        await pipeline.send(*llm_turn("The next turn works fine.", seed=2))
        await pipeline.down.wait_for(lambda frames: len(flush_dones(frames[failed_until:])) == 1)
    down, up = pipeline.down.frames, pipeline.up.frames

    # pipecat adds its own "completed with no audio" error: the words before the
    # error were never complete, so none of their audio was played.
    [error] = [f for f in up if isinstance(f, ErrorFrame) and "Cartesia" in f.error]
    assert "402 quota_exceeded" in error.error
    assert "Quota: out of credits" in error.error
    assert error.exception.status_code == 402
    failed, good = emu.record.contexts.values()
    assert failed.errors[0]["status_code"] == 402
    assert flush_dones(down, failed.context_id) == []
    assert words(down[:failed_until]) == failed.spoken, "only the words voiced are recorded"
    assert [f.text for f in flush_dones(down, good.context_id)] == ["The next turn works fine."]
    assert good.done
    assert len(emu.record.connections) == 1, "the connection survives"


async def test_a_failed_turns_text_after_a_long_llm_pause_is_never_voiced(make_emulator):
    # The turn fails mid-answer; the LLM then pauses (a tool call) past the audio
    # context's timeout, which ends it, and goes on. Its later text must not open
    # the turn's audio again, nor come out as words, nor fail a second time.
    emu = await make_emulator(pacing=Pacing(first_chunk_ms=0, speed=50.0, chunk_ms=40))
    emu.faults.error_after_chunks = 2
    emu.faults.error = InjectedError(
        status_code=402, error_code="quota_exceeded", title="Quota", message="out of credits"
    )
    tts = make_tts(emu, stop_frame_timeout_s=0.3)
    ended = asyncio.Event()
    completed = tts.on_audio_context_completed

    async def on_completed(context_id: str):
        await completed(context_id)
        ended.set()

    tts.on_audio_context_completed = on_completed
    first = tokens("Hello there, this sentence fails soon. ", seed=1)
    later = tokens("Never voiced words here. ", seed=2)
    async with running_pipeline(tts) as pipeline:
        await pipeline.send(LLMFullResponseStartFrame(), *(LLMTextFrame(t) for t in first))
        await pipeline.up.wait_for(lambda frames: any(isinstance(f, ErrorFrame) for f in frames))
        await ended.wait()  # the pause outlasted the audio context
        await pipeline.send(*(LLMTextFrame(t) for t in later), LLMFullResponseEndFrame())
        mark = len(pipeline.down.frames)
        await pipeline.send(*llm_turn("The next turn works fine.", seed=3))
        await pipeline.down.wait_for(lambda frames: len(flush_dones(frames[mark:])) == 1)
    down, up = pipeline.down.frames, pipeline.up.frames
    failed, good = emu.record.contexts.values()
    errors = [f for f in up if isinstance(f, ErrorFrame)]
    assert ["402 quota_exceeded" in e.error for e in errors] == [True]
    started = [f.context_id for f in down if isinstance(f, TTSStartedFrame)]
    assert started == [failed.context_id, good.context_id]
    assert words(down[:mark]) == failed.spoken, "no word of the failed turn but those voiced"
    assert words(down[mark:]) == ["The", "next", "turn", "works", "fine."]


async def test_an_unknown_model_fails_the_turn_and_a_settings_update_recovers(emu):
    tts = make_tts(
        emu, settings=CartesiaContextTTSService.Settings(voice=VOICE, model="no-such-model")
    )
    frames = [
        TTSSpeakFrame("This fails."),
        TTSUpdateSettingsFrame(delta=CartesiaContextTTSService.Settings(model="sonic-3")),
        TTSSpeakFrame("This works."),
    ]
    down, up = await run_test(tts, frames_to_send=frames)
    [error] = [f for f in up if isinstance(f, ErrorFrame) and "model_not_found" in f.error]
    assert "no-such-model" in error.error
    assert [f.text for f in flush_dones(down)] == ["This works."]
    assert tts.stats.errors == 1


async def test_no_voice_is_a_clear_error(emu):
    tts = CartesiaContextTTSService(api_key="k", url=emu.url, sample_rate=24000)
    down, up = await run_test(tts, frames_to_send=[TTSSpeakFrame("Who speaks?")])
    assert any("no voice" in f.error for f in up if isinstance(f, ErrorFrame))
    assert emu.record.contexts == {}
    assert audio(down) == []


# The service sends push, flush, push, flush, push, close. Implicit numbering gives
# each push and each flush an id; manual numbering only each flush.
@pytest.mark.parametrize(
    ("implicit", "at_close", "server_ids"),
    [
        (True, False, [1, 2, 3, 4, 5]),
        (True, True, [1, 2, 3, 4, 5, 6]),
        (False, False, [1, 2]),
        (False, True, [1, 2, 3]),
    ],
    ids=["implicit", "implicit-flush-done-at-close", "manual", "manual-flush-done-at-close"],
)
async def test_delay_0_flush_numberings_both_give_1_2_3_and_exact_texts(
    make_emulator, implicit, at_close, server_ids
):
    emu = await make_emulator(
        behavior=Behavior(implicit_flush=implicit, flush_done_at_close=at_close)
    )
    tts = make_tts(emu, max_buffer_delay_ms=0)
    down, _ = await run_test(tts, frames_to_send=llm_turn(THREE, seed=11))
    [record] = emu.record.contexts.values()
    # Custom buffering: each segment goes out whole, as one input.
    assert record.pushes == SEGMENTS
    assert [i.kind for i in record.inputs] == ["push", "flush"] * 2 + ["push", "close"]
    assert record.flush_done_ids == server_ids
    assert segment_order(down) == [(k, n) for n in (1, 2, 3) for k in ("audio", "done")]
    assert [f.text for f in flush_dones(down)] == SEGMENTS


async def test_metrics_ttfb_on_the_wire_per_turn_and_per_segment_and_usage(make_emulator):
    emu = await make_emulator(pacing=Pacing(first_chunk_ms=30, speed=20.0))
    params = PipelineParams(enable_metrics=True, enable_usage_metrics=True)
    down, _ = await run_test(make_tts(emu), frames_to_send=llm_turn(THREE), pipeline_params=params)
    data = [d for f in down if isinstance(f, MetricsFrame) for d in f.data]
    # (The first TTFB entry is pipecat's all-zero report at start.)
    [ttfb] = [d for d in data if isinstance(d, TTFBMetricsData) and d.value > 0]
    assert ttfb.value >= 0.03, "at least the emulator's time to first chunk"
    segments = [d for d in data if isinstance(d, CartesiaSegmentMetricsData)]
    assert [s.flush_id for s in segments] == [1, 2, 3]
    assert [s.characters for s in segments] == [len(t) for t in SEGMENTS]
    assert all(s.ttfb is not None and s.ttfb >= 0.0 for s in segments)
    [record] = emu.record.contexts.values()
    assert sum(s.audio_seconds for s in segments) == pytest.approx(
        record.total_audio_bytes / 2 / 24000
    )
    [usage] = [d for d in data if isinstance(d, TTSUsageMetricsData)]
    assert usage.value == len(THREE)
    [ttfa] = [d for d in data if isinstance(d, TTFAMetricsData)]
    assert ttfa.ttfb == ttfb.value, "pipecat's TTFA builds on the wire TTFB"


async def test_drop_in_arguments_of_pipecats_builtin_service_are_accepted(emu):
    tts = CartesiaContextTTSService(
        api_key="k",
        url=emu.url,
        voice_id=VOICE,
        model="sonic-3",
        params=CartesiaContextTTSService.InputParams(
            language=Language.ES_MX, generation_config={"volume": 1.5}
        ),
        sample_rate=16000,
        encoding="pcm_s16le",
        container="raw",
        extra_headers={"X-Trace": "1"},
    )
    await run_test(tts, frames_to_send=[TTSSpeakFrame("Hola a todos.")])
    [record] = emu.record.contexts.values()
    first = record.requests[0]
    assert first["voice"] == {"mode": "id", "id": VOICE}
    assert first["model_id"] == "sonic-3"
    assert first["language"] == "es-MX"
    assert first["generation_config"] == {"volume": 1.5}
    assert first["output_format"]["sample_rate"] == 16000


def test_every_public_name_imports():
    import pipecat_cartesia_ctx
    from pipecat_cartesia_ctx import service

    for name in pipecat_cartesia_ctx.__all__:
        assert getattr(pipecat_cartesia_ctx, name) is not None, name
    # The package's names are the service module's own (stats lives in its own module).
    assert pipecat_cartesia_ctx.CartesiaServiceStats is service.CartesiaServiceStats
    assert pipecat_cartesia_ctx.CartesiaContextTTSService is service.CartesiaContextTTSService
    assert service.CartesiaServiceStats.__module__ == "pipecat_cartesia_ctx.stats"


async def test_by_default_the_first_audio_does_not_wait_for_the_first_sentence(emu):
    # The defaults (no make_tts): the first segment ends at three words (one
    # more after "of"), later ones at sentences.
    tts = CartesiaContextTTSService(
        api_key="k", url=emu.url, settings=CartesiaContextTTSService.Settings(voice=VOICE)
    )
    head, rest = "Your order of 3 items", " ships today. It should arrive by Friday, before noon."
    async with running_pipeline(tts) as pipeline:
        await pipeline.send(LLMFullResponseStartFrame(), *map(LLMTextFrame, word_tokens(head)))
        # Its first words are spoken while the LLM has not finished the sentence.
        await pipeline.down.wait_for(lambda frames: bool(audio(frames)))
        await pipeline.send(*map(LLMTextFrame, word_tokens(rest)), LLMFullResponseEndFrame())
        await pipeline.down.wait_for(
            lambda frames: any(f.text.endswith("noon.") for f in flush_dones(frames))
        )
        down = pipeline.down.frames
    assert [f.text for f in flush_dones(down)] == [
        "Your order of 3 ",
        "items ships today. ",
        "It should arrive by Friday, before noon.",
    ]
    [record] = emu.record.contexts.values()
    assert record.transcript == head + rest
    assert record.generations[0] == "Your order of 3 "
