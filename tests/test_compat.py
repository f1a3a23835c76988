"""Third-party clients, unmodified, against the emulator: the official SDK and pipecat's service.

If these work, the emulator speaks the protocol as those clients expect it.
"""

from __future__ import annotations

import asyncio

from cartesia import AsyncCartesia, Cartesia
from helpers import MODEL, VOICE
from pipecat.frames.frames import (
    InterruptionFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    TTSAudioRawFrame,
    TTSSpeakFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
    TTSTextFrame,
)
from pipecat.services.cartesia.tts import CartesiaTTSService
from pipecat.tests.utils import run_test
from pipeline_harness import running_pipeline
from service_helpers import llm_turn

from pipecat_cartesia_ctx.audio import encode_float
from pipecat_cartesia_ctx.emulator import Pacing, SyntheticVoice

F32_44K = {"container": "raw", "encoding": "pcm_f32le", "sample_rate": 44100}
voice = SyntheticVoice()


def expected_audio(text: str, fmt=F32_44K) -> bytes:
    return encode_float(voice.synthesize(text, fmt["sample_rate"]).samples, fmt["encoding"])


def summarize(events):
    """(types in order with flush ids, audio by flush id, words)."""
    types, audio, words = [], {}, []
    for e in events:
        if e.type == "chunk":
            audio[e.flush_id] = audio.get(e.flush_id, b"") + e.audio
        elif e.type == "timestamps":
            words += e.word_timestamps.words
        item = (e.type, getattr(e, "flush_id", None))
        if not types or types[-1] != item:
            types.append(item)
    return types, audio, words


def _sync_sdk_session(base_url: str) -> list:
    client = Cartesia(api_key="sdk-key", websocket_base_url=base_url)
    with client.tts.websocket_connect() as connection:
        ctx = connection.context(
            model_id=MODEL,
            voice={"mode": "id", "id": VOICE},
            output_format=F32_44K,
            add_timestamps=True,
        )
        ctx.push("Stay hungry, ")
        ctx.push("", flush=True)
        ctx.push("stay foolish.")
        ctx.no_more_inputs()
        return list(ctx.receive())


async def test_official_sync_sdk_runs_the_golden_trace(emu):
    events = await asyncio.to_thread(_sync_sdk_session, emu.base_url)
    types, audio, words = summarize(events)
    assert [t for t in types if t[0] not in ("chunk", "timestamps")] == [
        ("flush_done", 1),
        ("done", None),
    ]
    assert words == ["Stay", "hungry,", "stay", "foolish."]
    first = expected_audio("Stay hungry, ")
    assert audio[1] == first
    offset = len(first) // 4
    second = voice.synthesize("stay foolish.", 44100, offset_samples=offset).samples
    assert audio[2] == encode_float(second, "pcm_f32le")
    connection = emu.record.connections[-1]
    assert connection.auth == "bearer"
    assert connection.cartesia_version == "2026-08-14"


async def test_official_async_sdk_two_contexts_and_a_cancel(emu):
    client = AsyncCartesia(api_key="sdk-key", websocket_base_url=emu.base_url)
    async with client.tts.websocket_connect() as connection:
        contexts = [
            connection.context(
                model_id=MODEL, voice={"mode": "id", "id": VOICE}, output_format=F32_44K
            )
            for _ in range(3)
        ]
        texts = ["First context speaks.", "Second one too.", "Third is cancelled."]
        for ctx, text in zip(contexts, texts, strict=True):
            await ctx.push(text)
        await contexts[2].cancel()
        for ctx in contexts[:2]:
            await ctx.no_more_inputs()

        async def drain(ctx):
            return [event async for event in ctx.receive()]

        results = await asyncio.wait_for(asyncio.gather(*(drain(c) for c in contexts[:2])), 10)
    for text, events in zip(texts[:2], results, strict=True):
        _, audio, _ = summarize(events)
        assert audio == {1: expected_audio(text)}
        assert events[-1].type == "done"
    assert emu.record.context(contexts[2]._context_id).cancelled


async def test_official_sdk_sees_structured_errors(emu):
    client = AsyncCartesia(api_key="sdk-key", websocket_base_url=emu.base_url)
    async with client.tts.websocket_connect() as connection:
        ctx = connection.context(
            model_id="not-a-model", voice={"mode": "id", "id": VOICE}, output_format=F32_44K
        )
        await ctx.push("Hello.")
        events = await asyncio.wait_for(_drain(ctx), 5)
    [error] = events
    assert error.type == "error"
    assert (error.status_code, error.error_code) == (400, "model_not_found")
    assert error.error.startswith(error.title)


async def _drain(ctx):
    return [event async for event in ctx.receive()]


def _pipecat_service(emu) -> CartesiaTTSService:
    return CartesiaTTSService(
        api_key="pipecat-key",
        url=emu.url,
        settings=CartesiaTTSService.Settings(voice=VOICE, model=MODEL),
        sample_rate=24000,
    )


async def test_pipecat_builtin_service_speaks_a_tts_speak_frame(emu):
    text = "Hello there. How are you today?"
    down, _ = await run_test(_pipecat_service(emu), frames_to_send=[TTSSpeakFrame(text)])
    audio = b"".join(f.audio for f in down if isinstance(f, TTSAudioRawFrame))
    [record] = emu.record.contexts.values()
    assert audio == encode_float(voice.synthesize(record.transcript, 24000).samples, "pcm_s16le")
    assert [f.text for f in down if isinstance(f, TTSTextFrame)] == text.split()
    assert isinstance(
        next(f for f in down if isinstance(f, TTSStartedFrame | TTSAudioRawFrame)), TTSStartedFrame
    )
    assert isinstance([f for f in down if isinstance(f, TTSStoppedFrame)][-1], TTSStoppedFrame)
    connection = emu.record.connections[-1]
    assert connection.auth == "x-api-key"
    assert connection.cartesia_version == "2026-03-01"
    assert record.requests[0]["max_buffer_delay_ms"] == 0
    assert record.done


async def test_pipecat_builtin_service_speaks_a_streamed_llm_turn(emu):
    tokens = ["The ", "quick ", "brown ", "fox. ", "It ", "jumps ", "high!"]
    frames = [
        LLMFullResponseStartFrame(),
        *(LLMTextFrame(t) for t in tokens),
        LLMFullResponseEndFrame(),
    ]
    down, _ = await run_test(_pipecat_service(emu), frames_to_send=frames)
    [record] = emu.record.contexts.values()
    assert record.closed
    assert record.done
    # Pipecat sends each sentence as an input, then closes. Pipecat 1.14 drops the space
    # between sentences, which Cartesia reads as "fox.It" (protocol doc, section 5).
    assert record.pushes == ["The quick brown fox.", "It jumps high!"]
    assert record.transcript in (
        "The quick brown fox.It jumps high!",
        "The quick brown fox. It jumps high!",
    )
    audio = b"".join(f.audio for f in down if isinstance(f, TTSAudioRawFrame))
    assert len(audio) == record.total_audio_bytes > 0
    assert [f.text for f in down if isinstance(f, TTSTextFrame)] == record.words


LONG = (
    "This answer goes on for a while, so that it can be interrupted in the middle. "
    "It has a second sentence that should never be heard. And a third one too."
)
NEXT = "Sure, here is the next answer."


async def test_pipecat_builtin_service_drops_the_late_audio_of_a_barge_in(make_emulator):
    # Cartesia goes on with the generation under way after a cancel, then sends `done`:
    # pipecat's service must drop all of it itself.
    emu = await make_emulator(pacing=Pacing(first_chunk_ms=20, speed=4.0, chunk_ms=40))
    async with running_pipeline(_pipecat_service(emu)) as pipeline:
        await pipeline.send(*llm_turn(LONG, seed=4))
        await pipeline.down.wait_for(lambda frames: len(_audio(frames)) >= 3)
        [interrupted] = emu.record.contexts
        await pipeline.send(InterruptionFrame())
        await pipeline.down.wait_for(lambda fs: any(isinstance(f, InterruptionFrame) for f in fs))
        cut = next(
            i for i, f in enumerate(pipeline.down.frames) if isinstance(f, InterruptionFrame)
        )
        await emu.record.wait_for(lambda r: r.context(interrupted).done)
        await pipeline.send(*llm_turn(NEXT, seed=5))
        await emu.record.wait_for(
            lambda r: len(r.contexts) == 2 and all(c.done for c in r.contexts.values())
        )
        [following] = [c for c in emu.record.contexts.values() if c.context_id != interrupted]
        await pipeline.down.wait_for(
            lambda fs: sum(len(f.audio) for f in _audio(fs[cut:])) >= following.total_audio_bytes
        )
        down = pipeline.down.frames
    record = emu.record.context(interrupted)
    assert record.cancelled
    assert "chunk" in record.events_after_cancel, "the server really sent late audio"
    assert record.events_after_cancel[-1] == "done"
    after = down[cut + 1 :]
    assert sum(len(f.audio) for f in _audio(after)) == following.total_audio_bytes
    assert [f.text for f in after if isinstance(f, TTSTextFrame)] == following.words


def _audio(frames) -> list[TTSAudioRawFrame]:
    return [f for f in frames if isinstance(f, TTSAudioRawFrame)]
