"""The service's timers, over the emulator: a segment's text goes out with its flush, text
held while the LLM stalls goes out on time, and a stalled first segment ends at its deadline."""

from __future__ import annotations

from helpers import VOICE
from pipecat.frames.frames import (
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    TTSStoppedFrame,
    TTSUpdateSettingsFrame,
)
from pipecat.tests.utils import run_test
from pipeline_harness import running_pipeline
from service_helpers import audio, flush_dones, llm_turn, make_tts, words

from pipecat_cartesia_ctx import CartesiaContextTTSService, service, turn
from pipecat_cartesia_ctx.client import CartesiaContext
from pipecat_cartesia_ctx.protocol import CartesiaConnectionError


def inputs(emu) -> list[tuple[str, str]]:
    """What the emulator received on its one context: (kind, transcript)."""
    [record] = emu.record.contexts.values()
    return [(i.kind, i.transcript) for i in record.inputs]


def pushed(record) -> bool:
    return any(c.inputs for c in record.contexts.values())


def flushed(record) -> bool:
    return any(i.kind == "flush" for c in record.contexts.values() for i in c.inputs)


async def test_a_segment_goes_out_in_one_push_with_its_flush(emu, monkeypatch):
    # Held as long as it takes, and never "running low" (which ends segments at
    # clauses): a slow machine does not change what goes out.
    monkeypatch.setattr(service, "HOLD_S", 60.0)
    monkeypatch.setattr(turn, "LOW_AUDIO_S", float("-inf"))
    text = "One two three four. Five six seven eight, nine ten. Eleven twelve."
    down, _ = await run_test(make_tts(emu), frames_to_send=llm_turn(text, seed=3))
    # Token by token (1 to 4 characters each), this was 28 pushes.
    assert inputs(emu) == [
        ("push", "One two three four. "),
        ("flush", ""),
        ("push", "Five six seven eight, nine ten. "),
        ("flush", ""),
        ("push", "Eleven twelve."),
        ("close", ""),
    ]
    assert [f.text for f in flush_dones(down)] == [
        "One two three four. ",
        "Five six seven eight, nine ten. ",
        "Eleven twelve.",
    ]


async def test_text_held_while_the_llm_stalls_mid_sentence_goes_out_on_time(emu, monkeypatch):
    monkeypatch.setattr(service, "HOLD_S", 0.05)
    async with running_pipeline(make_tts(emu)) as pipeline:
        await pipeline.send(
            LLMFullResponseStartFrame(), *map(LLMTextFrame, ["Well", " this", " is", " taking"])
        )
        # No more tokens, no flush: the timer sends what waited (the server's
        # buffering takes it from there), not the word still arriving.
        await emu.record.wait_for(pushed)
        assert inputs(emu) == [("push", "Well this is ")]
        await pipeline.send(LLMTextFrame(" a while."), LLMFullResponseEndFrame())
        await pipeline.down.wait_for(lambda f: any(isinstance(x, TTSStoppedFrame) for x in f))
        down = pipeline.down.frames
    assert inputs(emu) == [("push", "Well this is "), ("push", "taking a while."), ("close", "")]
    assert [f.text for f in flush_dones(down)] == ["Well this is taking a while."]


async def test_a_first_segment_stalled_past_its_deadline_is_spoken_at_once(emu):
    tts = make_tts(emu, first_segment_deadline_ms=100)
    async with running_pipeline(tts) as pipeline:
        await pipeline.send(
            LLMFullResponseStartFrame(), *map(LLMTextFrame, ["So", " I", " think", " we"])
        )
        # The LLM stalls mid-sentence: its whole words are flushed, and play.
        await emu.record.wait_for(flushed)
        assert inputs(emu) == [("push", "So I think "), ("flush", "")]
        await pipeline.down.wait_for(lambda frames: bool(audio(frames)))
        await pipeline.send(LLMTextFrame(" can do it."), LLMFullResponseEndFrame())
        await pipeline.down.wait_for(lambda f: any(isinstance(x, TTSStoppedFrame) for x in f))
        down = pipeline.down.frames
    assert [f.text for f in flush_dones(down)] == ["So I think ", "we can do it."]
    assert "".join(f.text for f in flush_dones(down)) == "So I think we can do it."


async def test_by_default_a_stalled_first_word_or_two_is_spoken(emu):
    tts = CartesiaContextTTSService(
        api_key="k", url=emu.url, settings=CartesiaContextTTSService.Settings(voice=VOICE)
    )
    async with running_pipeline(tts) as pipeline:
        await pipeline.send(LLMFullResponseStartFrame(), *map(LLMTextFrame, ["Well", " I"]))
        # Two words: no rule ends the segment; the default deadline (250 ms) does.
        await emu.record.wait_for(flushed)
        assert inputs(emu) == [("push", "Well "), ("flush", "")]
        await pipeline.send(LLMTextFrame(" see."), LLMFullResponseEndFrame())
        await pipeline.down.wait_for(lambda f: any(isinstance(x, TTSStoppedFrame) for x in f))
        down = pipeline.down.frames
    assert [f.text for f in flush_dones(down)] == ["Well ", "I see."]


async def test_a_flush_refused_at_a_voice_switch_loses_no_word_and_leaves_no_context_open(
    emu, monkeypatch
):
    # The sentence end after a voice change goes out as: its text, flush, close, the
    # next context. The flush fails: the engine gives the contexts up and retries;
    # what was left of that list must not leave a context open or a word unsaid.
    failed = []
    real_flush = CartesiaContext.flush

    async def flush_failing_once(self):
        if not failed:
            failed.append(self.context_id)
            raise CartesiaConnectionError("send failed")
        return await real_flush(self)

    monkeypatch.setattr(CartesiaContext, "flush", flush_failing_once)
    monkeypatch.setattr(turn, "LOW_AUDIO_S", float("-inf"))
    text = "First sentence goes here. Second one is here. Third one ends it."
    # The sentence end and the next sentence's first words in one token: one action list.
    tokens = [
        "First",
        " sentence",
        " goes",
        " here. Second one is",
        " here.",
        " Third one ends it.",
    ]
    frames = [
        LLMFullResponseStartFrame(),
        *map(LLMTextFrame, tokens[:3]),
        TTSUpdateSettingsFrame(delta=CartesiaContextTTSService.Settings(voice="voice-2")),
        *map(LLMTextFrame, tokens[3:]),
        LLMFullResponseEndFrame(),
    ]
    down, _ = await run_test(make_tts(emu), frames_to_send=frames)
    assert failed, "the flush failed once"
    assert words(down) == text.split(), "every word once, in order"
    for record in emu.record.contexts.values():
        assert record.cancelled or record.done, f"{record.context_id} left open"
