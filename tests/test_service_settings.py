"""Bad settings are refused where they enter, once, and never cost a turn.

At construction a bad option or setting raises `InvalidRequestError` (a
`ValueError`) naming it, its value and what is allowed. A bad
``TTSUpdateSettingsFrame`` is one `ErrorFrame`, nothing of its delta applied,
and the turns around it play with the old settings (checked on the wire, in the
emulator's record). A context that still cannot open fails its turn once.
"""

from __future__ import annotations

import math
import warnings

import pytest
from helpers import VOICE
from loguru import logger
from pipecat.frames.frames import (
    ErrorFrame,
    TTSSpeakFrame,
    TTSStoppedFrame,
    TTSUpdateSettingsFrame,
)
from pipecat.services.cartesia.tts import GenerationConfig
from pipecat.tests.utils import run_test
from pipecat.transcriptions.language import Language
from pipeline_harness import running_pipeline
from service_helpers import audio, flush_dones, index_at, llm_turn, make_tts, words

from pipecat_cartesia_ctx import CartesiaContextTTSService
from pipecat_cartesia_ctx.client import CartesiaConnection
from pipecat_cartesia_ctx.protocol import ENCODINGS, InvalidRequestError
from pipecat_cartesia_ctx.reconnect import RetryPolicy

Settings = CartesiaContextTTSService.Settings

FIRST = "The first answer has two sentences. It ends right here."
SECOND = "The second answer is short."


def build(**kwargs) -> CartesiaContextTTSService:
    kwargs.setdefault("settings", Settings(voice=VOICE))
    # pipecat warns of voice_id= and params= under its own "always" filter.
    with warnings.catch_warnings(record=True):
        return CartesiaContextTTSService(api_key="k", **kwargs)


def errors(*directions) -> list[ErrorFrame]:
    return [f for frames in directions for f in frames if isinstance(f, ErrorFrame)]


def pushes(record) -> list[dict]:
    """The requests of a context that carry text."""
    return [r for r in record.requests if r["transcript"]]


@pytest.fixture
def warnings_logged():
    messages: list[str] = []
    handler = logger.add(lambda m: messages.append(str(m)), level="WARNING")
    yield messages
    logger.remove(handler)


# -- construction ---------------------------------------------------------------------

BAD_OPTIONS = [
    # (keyword arguments, the parameter named, the bad value as the message shows it)
    ({"encoding": "pcm_s24le"}, "encoding", "'pcm_s24le'"),
    ({"encoding": "s16le"}, "encoding", "'s16le'"),
    ({"container": "wav"}, "container", "'wav'"),
    ({"sample_rate": 0}, "sample_rate", "0"),
    ({"sample_rate": -8000}, "sample_rate", "-8000"),
    ({"sample_rate": 16000.5}, "sample_rate", "16000.5"),
    ({"sample_rate": "24000"}, "sample_rate", "'24000'"),
    ({"max_buffer_delay_ms": -1}, "max_buffer_delay_ms", "-1"),
    ({"max_buffer_delay_ms": 5001}, "max_buffer_delay_ms", "5001"),
    ({"max_buffer_delay_ms": 2.5}, "max_buffer_delay_ms", "2.5"),
    ({"max_buffer_delay_ms": True}, "max_buffer_delay_ms", "True"),
    ({"flush_on": "word"}, "flush_on", "'word'"),
    ({"first_push_words": -1}, "first_push_words", "-1"),
    ({"first_push_words": "3"}, "first_push_words", "'3'"),
    ({"flush_first_clause": "yes"}, "flush_first_clause", "'yes'"),
    ({"first_segment_deadline_ms": 0}, "first_segment_deadline_ms", "0"),
    ({"first_segment_deadline_ms": 0.5}, "first_segment_deadline_ms", "0.5"),
    ({"first_segment_deadline_ms": 60_000}, "first_segment_deadline_ms", "60000"),
    ({"max_concurrent_contexts": 0}, "max_concurrent_contexts", "0"),
    ({"max_concurrent_contexts": 2.0}, "max_concurrent_contexts", "2.0"),
    ({"reconnect_give_up_s": -1}, "reconnect_give_up_s", "-1"),
    ({"reconnect_give_up_s": math.nan}, "reconnect_give_up_s", "nan"),
    ({"reconnect_give_up_s": "30"}, "reconnect_give_up_s", "'30'"),
    ({"retry": {"max_attempts": 3}}, "retry", "{'max_attempts': 3}"),
    ({"cartesia_version": "latest"}, "cartesia_version", "'latest'"),
    ({"cartesia_version": None}, "cartesia_version", "None"),
    ({"url": "https://api.cartesia.ai/tts/websocket"}, "url", "'https://api"),
    ({"url": "localhost:8080"}, "url", "'localhost:8080'"),
    ({"settings": Settings(voice="")}, "voice", "''"),
    ({"settings": Settings(voice="   ")}, "voice", "'   '"),
    ({"settings": Settings(voice=42)}, "voice", "42"),
    ({"voice_id": "", "settings": None}, "voice", "''"),
    ({"settings": Settings(voice=VOICE, model="")}, "model", "''"),
    ({"settings": Settings(voice=VOICE, model=None)}, "model", "None"),
    ({"settings": Settings(voice=VOICE, model=3)}, "model", "3"),
    ({"settings": Settings(voice=VOICE, language="english")}, "language", "'english'"),
    ({"settings": Settings(voice=VOICE, language="en_US")}, "language", "'en_US'"),
    ({"settings": Settings(voice=VOICE, language="")}, "language", "''"),
    ({"settings": Settings(voice=VOICE, language=42)}, "language", "42"),
    ({"settings": Settings(voice=VOICE, generation_config={"speed": 9})}, "speed", "9.0"),
    (
        {"settings": Settings(voice=VOICE, generation_config=GenerationConfig(speed=9))},
        "speed",
        "9.0",
    ),
    ({"settings": Settings(voice=VOICE, generation_config={"speed": 0.5})}, "speed", "0.5"),
    ({"settings": Settings(voice=VOICE, generation_config={"volume": 2.5})}, "volume", "2.5"),
    ({"settings": Settings(voice=VOICE, generation_config={"speed": "fast"})}, "speed", "str"),
    ({"settings": Settings(voice=VOICE, generation_config={"emotion": 5})}, "emotion", "int"),
    ({"settings": Settings(voice=VOICE, generation_config="fast")}, "generation_config", "'fast'"),
    (
        {
            "settings": None,
            "voice_id": VOICE,
            "params": CartesiaContextTTSService.InputParams(
                generation_config=GenerationConfig(volume=0.1)
            ),
        },
        "volume",
        "0.1",
    ),
    ({"settings": Settings(voice=VOICE, pronunciation_dict_id="")}, "pronunciation_dict_id", "''"),
    ({"settings": Settings(voice=VOICE, pronunciation_dict_id=7)}, "pronunciation_dict_id", "7"),
]


@pytest.mark.parametrize(("kwargs", "name", "shown"), BAD_OPTIONS)
def test_a_bad_option_or_setting_raises_at_construction_naming_it(kwargs, name, shown):
    with pytest.raises(InvalidRequestError) as caught:
        build(**kwargs)
    assert isinstance(caught.value, ValueError), "also a ValueError, for pipecat-style handling"
    message = str(caught.value)
    assert name in message
    assert f"got {shown}" in message, message
    if name == "generation_config" or name in ("speed", "volume", "emotion"):
        assert "generation_config" in message


@pytest.mark.parametrize(
    ("kwargs", "allowed"),
    [
        ({"encoding": "pcm_s24le"}, ENCODINGS),
        ({"settings": Settings(voice=VOICE, generation_config={"speed": 9})}, ("[0.6, 1.5]",)),
        ({"settings": Settings(voice=VOICE, generation_config={"volume": 9})}, ("[0.5, 2.0]",)),
        ({"max_buffer_delay_ms": 9000}, ("[0, 5000]",)),
        ({"flush_on": "word"}, ("'sentence'", "'clause'", "'turn'")),
    ],
)
def test_the_message_says_what_is_allowed(kwargs, allowed):
    with pytest.raises(InvalidRequestError) as caught:
        build(**kwargs)
    assert all(a in str(caught.value) for a in allowed), str(caught.value)


def test_a_key_in_the_url_query_stays_out_of_the_message():
    with pytest.raises(InvalidRequestError) as caught:
        build(url="https://api.cartesia.ai/tts/websocket?api_key=sk-secret")
    assert "sk-secret" not in str(caught.value)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"settings": Settings(voice=VOICE, generation_config={"speed": 0.6, "volume": 0.5})},
        {"settings": Settings(voice=VOICE, generation_config={"speed": 1.5, "volume": 2.0})},
        {"settings": Settings(voice=VOICE, generation_config=GenerationConfig(emotion="calm"))},
        {"max_buffer_delay_ms": 0},
        {"max_buffer_delay_ms": 5000},
        *({"encoding": e} for e in ENCODINGS),
        {"sample_rate": 8000},
        {"sample_rate": 11025},
        {"sample_rate": 96000},
        {"settings": Settings(voice=VOICE, language=Language.ES_MX)},
        {"settings": Settings(voice=VOICE, language="de-DE")},
        {"settings": Settings(voice=VOICE, language="yue")},
        {"settings": Settings(voice=VOICE, language=None)},
        {"settings": Settings(voice={"mode": "id", "id": VOICE})},
        {"settings": Settings(voice=VOICE, model="sonic-2-2025-06-11")},
        {"reconnect_give_up_s": 0},
        {"reconnect_give_up_s": math.inf},
        {"max_concurrent_contexts": 1, "retry": RetryPolicy(max_attempts=2)},
        {"flush_on": "clause", "first_push_words": 0, "flush_first_clause": True},
        {"url": "ws://127.0.0.1:8080/tts/websocket", "cartesia_version": "2024-06-10"},
    ],
    ids=lambda kwargs: ",".join(f"{k}={v}" for k, v in kwargs.items()),
)
def test_valid_edge_values_are_accepted(kwargs):
    tts = build(**kwargs)
    assert isinstance(tts, CartesiaContextTTSService)


def test_no_voice_is_allowed_at_construction_as_in_pipecat_with_a_warning(warnings_logged):
    tts = CartesiaContextTTSService(api_key="k")
    assert tts._settings.voice is None
    assert any("no voice" in m for m in warnings_logged)


@pytest.mark.parametrize(
    ("setting", "value", "said"),
    [("model", "sonic-9", "not one this package knows"), ("emotion", "wry", "CartesiaEmotion")],
)
def test_an_unknown_model_or_emotion_is_a_warning_not_an_error(
    warnings_logged, setting, value, said
):
    settings = (
        Settings(voice=VOICE, model=value)
        if setting == "model"
        else Settings(voice=VOICE, generation_config={"emotion": value})
    )
    build(settings=settings)
    [warning] = [m for m in warnings_logged if said in m]
    assert repr(value) in warning


async def test_edge_values_go_on_the_wire_as_given(emu):
    config = {"speed": 0.6, "volume": 2.0, "emotion": "calm"}
    tts = make_tts(
        emu,
        settings=Settings(voice=VOICE, generation_config=config, language=Language.ES_MX),
        max_buffer_delay_ms=5000,
        sample_rate=11025,
    )
    down, up = await run_test(tts, frames_to_send=[TTSSpeakFrame("Hola. Una prueba.")])
    [record] = emu.record.contexts.values()
    assert {r["max_buffer_delay_ms"] for r in record.requests} == {5000}
    assert [r["generation_config"] for r in pushes(record)] == [config] * len(pushes(record))
    assert record.requests[0]["language"] == "es-MX"
    assert record.requests[0]["output_format"]["sample_rate"] == 16000, "the next rate up"
    assert {f.sample_rate for f in audio(down)} == {11025}
    assert [f.text for f in flush_dones(down)] == ["Hola. ", "Una prueba."]
    assert errors(up, down) == []


# -- TTSUpdateSettingsFrame -----------------------------------------------------------

OLD_CONFIG = {"speed": 1.2}

BAD_DELTAS = [
    (Settings(generation_config={"speed": 9}), "speed"),
    (Settings(generation_config=GenerationConfig(speed=9)), "speed"),
    (Settings(generation_config={"volume": 0.1}), "volume"),
    (Settings(generation_config={"emotion": 7}), "emotion"),
    (Settings(voice=""), "voice"),
    (Settings(voice=None), "voice"),
    (Settings(language="klingon!"), "language"),
    (Settings(model=""), "model"),
    (Settings(pronunciation_dict_id=""), "pronunciation_dict_id"),
    # One good field and one bad one: nothing of it applies, not even the voice.
    (Settings(voice="voice-2", generation_config={"speed": 9}), "speed"),
    (Settings(language="fr", model=None), "model"),
]


@pytest.mark.parametrize(("delta", "name"), BAD_DELTAS)
async def test_a_bad_update_mid_turn_is_one_error_and_both_turns_play_with_the_old_settings(
    emu, delta, name
):
    tts = make_tts(emu, settings=Settings(voice=VOICE, language="en", generation_config=OLD_CONFIG))
    frames = llm_turn(FIRST, seed=3)
    frames.insert(index_at(frames, FIRST, "It ends"), TTSUpdateSettingsFrame(delta=delta))
    down, up = await run_test(tts, frames_to_send=[*frames, *llm_turn(SECOND, seed=4)])

    [error] = errors(up, down)
    assert "settings update refused" in error.error
    assert name in error.error
    assert isinstance(error.exception, InvalidRequestError)
    assert tts.is_usable, "a refused update is not a broken service"
    # Both turns played whole, each on one context: no switch, the old settings.
    first, second = emu.record.contexts.values()
    assert [first.transcript, second.transcript] == [FIRST, SECOND]
    assert words(down) == FIRST.split() + SECOND.split()
    assert [f.text for f in flush_dones(down)] == [
        "The first answer has two sentences. ",
        "It ends right here.",
        SECOND,
    ]
    for record in (first, second):
        assert record.done
        assert {r["voice"]["id"] for r in record.requests} == {VOICE}
        assert {r["language"] for r in record.requests} == {"en"}
        assert {r["model_id"] for r in record.requests} == {"sonic-3.6"}
        assert all(r["generation_config"] == OLD_CONFIG for r in pushes(record))
    assert tts._settings.voice == VOICE
    assert tts._settings.generation_config == OLD_CONFIG


async def test_a_good_update_after_a_refused_one_applies(emu):
    tts = make_tts(emu, settings=Settings(voice=VOICE, generation_config=OLD_CONFIG))
    text = "One two three four. Five six seven eight. Nine ten eleven twelve."
    frames = llm_turn(text)
    frames.insert(
        index_at(frames, text, "Five"),
        TTSUpdateSettingsFrame(delta=Settings(generation_config={"speed": 9})),
    )
    frames.insert(
        index_at(frames, text, "Nine"),
        TTSUpdateSettingsFrame(delta=Settings(generation_config=GenerationConfig(speed=1.4))),
    )
    down, up = await run_test(tts, frames_to_send=frames)
    assert len(errors(up, down)) == 1
    [record] = emu.record.contexts.values()
    sent = [(r["transcript"], r.get("generation_config")) for r in pushes(record)]
    nine = text.index("Nine")
    position = 0
    for transcript, config in sent:
        # A push that starts before "Nine" went out with the old speed, after it the new one.
        assert config == (OLD_CONFIG if position < nine else {"speed": 1.4}), sent
        position += len(transcript)
    assert sent[-1][1] == {"speed": 1.4}
    assert words(down) == text.split()


async def test_an_update_of_something_that_is_not_a_setting_is_a_warning(emu, warnings_logged):
    tts = make_tts(emu)
    update = TTSUpdateSettingsFrame(delta=Settings(extra={"encoding": "pcm_s24le"}))
    down, up = await run_test(tts, frames_to_send=[update, TTSSpeakFrame("Still fine.")])
    assert errors(up, down) == []
    assert any("encoding" in m and "not currently supported" in m for m in warnings_logged)
    [record] = emu.record.contexts.values()
    assert record.requests[0]["output_format"]["encoding"] == "pcm_s16le"
    assert [f.text for f in flush_dones(down)] == ["Still fine."]


# -- a turn that cannot open fails once -----------------------------------------------


async def test_a_turn_without_a_voice_is_one_error_per_turn_until_an_update_sets_one(emu):
    tts = CartesiaContextTTSService(api_key="k", url=emu.url, sample_rate=24000)
    frames = [
        *llm_turn(FIRST, seed=1),  # a turn of many tokens
        TTSSpeakFrame("Who speaks?"),
        TTSUpdateSettingsFrame(delta=Settings(voice=None)),  # refused: no voice is no update
        TTSUpdateSettingsFrame(delta=Settings(voice=VOICE)),
        *llm_turn(SECOND, seed=2),
    ]
    down, up = await run_test(tts, frames_to_send=frames)
    found = errors(up, down)
    assert [("no voice" in e.error, "update refused" in e.error) for e in found] == [
        (True, False),
        (True, False),
        (False, True),
    ]
    [record] = emu.record.contexts.values()
    assert record.transcript == SECOND
    assert words(down) == SECOND.split()
    assert tts._settling == {}  # every audio context ended: no engine kept


async def play(pipeline, text: str, seed: int = 0) -> list:
    """Send a turn and return what came down until its TTSStoppedFrame."""
    mark = len(pipeline.down.frames)

    def stopped(frames):
        return any(isinstance(f, TTSStoppedFrame) for f in frames[mark:])

    await pipeline.send(*llm_turn(text, seed=seed))
    await pipeline.down.wait_for(stopped)
    return pipeline.down.frames[mark:]


@pytest.mark.parametrize("how", ["voice-changed-in-place", "config-changed-in-place", "raises"])
async def test_a_context_that_cannot_open_fails_its_turn_once_and_the_next_turn_plays(
    emu, monkeypatch, warnings_logged, how
):
    config = GenerationConfig(speed=1.0)
    tts = make_tts(emu, settings=Settings(voice=VOICE, generation_config=config))
    with monkeypatch.context() as patch:
        if how == "voice-changed-in-place":
            tts._settings.voice = "   "  # past every check: only opening a context finds it
        elif how == "config-changed-in-place":
            config.speed = 9.0  # the caller's object, shared with the service's settings
        else:

            def refuse(self, **kwargs):
                raise TypeError("unexpected keyword")

            patch.setattr(CartesiaConnection, "context", refuse)
        async with running_pipeline(tts) as pipeline:
            failed = await play(pipeline, FIRST, seed=5)
            [error] = errors(pipeline.up.frames, pipeline.down.frames)
            assert {
                "voice-changed-in-place": "voice id",
                "config-changed-in-place": "speed",
                "raises": "cannot open a context",
            }[how] in error.error
            assert emu.record.contexts == {}, "nothing was sent"
            assert audio(failed) == []
            # Failed where the context opens: not retried, not skipped segment by segment.
            assert not [m for m in warnings_logged if "new context" in m or "skipped" in m]
            patch.undo()
            tts._settings.voice = VOICE
            config.speed = 1.0
            played = await play(pipeline, SECOND, seed=6)
    assert len(errors(pipeline.up.frames, pipeline.down.frames)) == 1
    assert words(played) == SECOND.split()
    [record] = emu.record.contexts.values()
    assert record.transcript == SECOND
