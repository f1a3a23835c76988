"""Swapping pipecat's `CartesiaTTSService` for ours keeps what a bot relies on.

The same frames in the same order (ours adding only its own frame types), the
same default model, the same deprecation warnings for the same old arguments,
and pipecat's metrics API working as on any pipecat service.
"""

from __future__ import annotations

import warnings

import pytest
from pipecat.frames.frames import (
    MetricsFrame,
    TTSAudioRawFrame,
    TTSSpeakFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
    TTSTextFrame,
)
from pipecat.metrics.metrics import TTFBMetricsData
from pipecat.pipeline.task import PipelineParams
from pipecat.services.cartesia.tts import CartesiaTTSService
from pipecat.services.tts_service import TextAggregationMode
from pipecat.tests.utils import run_test
from pipecat.transcriptions.language import Language
from pipecat.utils import deprecation
from pipeline_harness import running_pipeline
from service_helpers import VOICE, llm_turn, make_tts

from pipecat_cartesia_ctx import CartesiaContextTTSService, CartesiaFlushDoneFrame
from pipecat_cartesia_ctx.emulator import Pacing

OURS_ONLY = (CartesiaFlushDoneFrame,)


def build(cls, **kwargs):
    """An instance of ``cls`` and the deprecation warnings its construction gave."""
    deprecation._warned_sites.clear()  # pipecat warns once per call site and process
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        service = cls(api_key="k", **kwargs)
    messages = [str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)]
    return service, messages


def test_the_default_model_is_pipecats():
    ours, _ = build(
        CartesiaContextTTSService, settings=CartesiaContextTTSService.Settings(voice=VOICE)
    )
    theirs, _ = build(CartesiaTTSService, settings=CartesiaTTSService.Settings(voice=VOICE))
    assert ours._settings.model == theirs._settings.model == "sonic-3.6"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"voice_id": VOICE},
        {"voice_id": VOICE, "model": "sonic-3"},
        {
            "voice_id": VOICE,
            "params": CartesiaTTSService.InputParams(language=Language.ES),
        },
        {
            "voice_id": VOICE,
            "params": CartesiaTTSService.InputParams(language=Language.ES),
            "settings": CartesiaTTSService.Settings(language=Language.FR),
        },
    ],
    ids=["voice_id", "model", "params", "params-and-settings"],
)
def test_deprecated_arguments_warn_and_apply_as_in_pipecat(kwargs):
    ours, our_warnings = build(CartesiaContextTTSService, **kwargs)
    theirs, their_warnings = build(CartesiaTTSService, **kwargs)
    # One warning per old argument, naming it and its replacement, as pipecat words it.
    assert len(our_warnings) == len(their_warnings) >= 1
    for mine, pipecats in zip(our_warnings, their_warnings, strict=True):
        assert mine.replace(type(ours).__name__, "X") == pipecats.replace(
            type(theirs).__name__, "X"
        )
    for field in ("voice", "model", "language", "generation_config", "pronunciation_dict_id"):
        assert getattr(ours._settings, field) == getattr(theirs._settings, field), field


async def test_pipecats_metrics_api_works_without_times(make_emulator):
    emu = await make_emulator()
    tts = make_tts(emu)
    async with running_pipeline(tts, PipelineParams(enable_metrics=True)) as pipeline:
        mark = len(pipeline.down.frames)
        await tts.start_ttfb_metrics()
        await tts.stop_all_metrics()

        def ttfb(frames):
            return [
                d
                for f in frames[mark:]
                if isinstance(f, MetricsFrame)
                for d in f.data
                if isinstance(d, TTFBMetricsData)
            ]

        await pipeline.down.wait_for(lambda frames: ttfb(frames))
        [measured] = ttfb(pipeline.down.frames)
    assert measured.value > 0, "stop_all_metrics() ends the TTFB a plain start began"


def _frames_a_bot_sees(down: list) -> tuple[list[str], list[str]]:
    """The types of the non-audio frames in order, and the words, our own frame types left out."""
    types = [type(f).__name__ for f in down if not isinstance(f, (TTSAudioRawFrame, *OURS_ONLY))]
    return types, [f.text for f in down if isinstance(f, TTSTextFrame)]


def _audio_inside_started_and_stopped(down: list) -> bool:
    marks = {TTSStartedFrame: "start", TTSAudioRawFrame: "audio", TTSStoppedFrame: "stop"}
    kinds = [name for f in down for kind, name in marks.items() if isinstance(f, kind)]
    return kinds[0] == "start" and kinds[-1] == "stop" and "audio" in kinds


@pytest.mark.parametrize("mode", [TextAggregationMode.TOKEN, TextAggregationMode.SENTENCE])
@pytest.mark.parametrize("bot", ["llm", "speak"])
async def test_the_same_bot_gets_the_same_frames_from_both_services(make_emulator, mode, bot):
    text = "Hello there, my friend. How are you today? I am fine, thanks."
    frames = llm_turn(text, seed=1) if bot == "llm" else [TTSSpeakFrame(text)]
    emu = await make_emulator(pacing=Pacing(first_chunk_ms=5, speed=20.0))
    theirs = CartesiaTTSService(
        api_key="k",
        url=emu.url,
        settings=CartesiaTTSService.Settings(voice=VOICE),
        sample_rate=24000,
        text_aggregation_mode=mode,
    )
    their_down, their_up = await run_test(theirs, frames_to_send=frames)
    our_down, our_up = await run_test(
        make_tts(emu, text_aggregation_mode=mode), frames_to_send=frames
    )
    assert _frames_a_bot_sees(our_down) == _frames_a_bot_sees(their_down)
    assert [type(f).__name__ for f in our_up] == [type(f).__name__ for f in their_up]
    assert _audio_inside_started_and_stopped(our_down)
    assert _audio_inside_started_and_stopped(their_down)
    assert any(isinstance(f, CartesiaFlushDoneFrame) for f in our_down), "ours adds its own"
