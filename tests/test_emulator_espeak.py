"""The espeak voice (the [voice] extra): real words, timed by espeak's own events, over sockets.

Skipped where the extra is not installed, except under CI (``CI`` set), where
a missing extra fails: CI installs it and must test it. The tests of the
missing extra itself run everywhere.
"""

from __future__ import annotations

import asyncio
import importlib
import itertools
import os
import re
import subprocess
import sys
import threading

import numpy as np
import pytest
from helpers import MODEL, VOICE, collect, new_context

from pipecat_cartesia_ctx.audio import encode_float, to_pcm16
from pipecat_cartesia_ctx.client import CartesiaConnection
from pipecat_cartesia_ctx.emulator import (
    CartesiaEmulator,
    EspeakVoice,
    VoiceUnavailableError,
    espeak_available,
    espeak_lib,
    pump,
)
from pipecat_cartesia_ctx.emulator.espeak_lib import Event
from pipecat_cartesia_ctx.emulator.espeak_words import spans, unmarked, word_tokens
from pipecat_cartesia_ctx.protocol import Chunk, Done, FlushDone, PhonemeTimestamps, Timestamps

INSTALL = "pip install 'pipecat-cartesia-ctx[voice]'"
ON_CI = os.environ.get("CI", "").lower() not in ("", "0", "false")
# Per word: the quietest word of these texts is ~0.035 RMS at any rate; a pause is ~1e-5.
VOICED_RMS = 0.02
SILENT_RMS = 0.002
SENTENCES = [
    "Hello there, my friend. ",
    "How are you doing today? I am fine, thanks for asking! ",
    "The weather in Paris is sunny, with a high of twenty four degrees.",
]


@pytest.fixture
def espeak() -> None:
    """Skip without the [voice] extra, but never on CI, which installs it."""
    if ON_CI:
        importlib.import_module("espeakng_loader")  # missing on CI: an error, not a skip
    else:
        pytest.importorskip("espeakng_loader", reason=f"needs the [voice] extra: {INSTALL}")


def audio_of(events) -> bytes:
    return b"".join(e.audio for e in events if isinstance(e, Chunk))


def words_of(events, kind=Timestamps) -> list[tuple[str, float, float]]:
    return [
        (word, start, end)
        for e in events
        if isinstance(e, kind)
        for word, start, end in zip(
            e.words if kind is Timestamps else e.phonemes, e.start, e.end, strict=True
        )
    ]


def rms(pcm: np.ndarray, rate: int, start: float, end: float) -> float:
    span = pcm[round(start * rate) : round(end * rate)]
    assert len(span), f"an empty span {start}..{end}"
    return float(np.sqrt(np.mean(span**2)))


async def speak(url: str, parts: list[str], fmt: dict, **kwargs) -> list:
    """Each part pushed and flushed on one context, then closed; every event."""
    async with await CartesiaConnection.connect(api_key="k", url=url) as conn:
        ctx = new_context(conn, output_format=fmt, **kwargs)
        for part in parts:
            await ctx.push(part)
            await ctx.flush()
        await ctx.no_more_inputs()
        return await collect(ctx, timeout=60)


def fmt(encoding: str, rate: int) -> dict:
    return {"container": "raw", "encoding": encoding, "sample_rate": rate}


# -- timestamps against the audio ------------------------------------------------------


@pytest.mark.parametrize(
    ("encoding", "rate"),
    [
        ("pcm_s16le", 24000),
        ("pcm_f32le", 44100),
        ("pcm_mulaw", 8000),
        ("pcm_alaw", 16000),
        ("pcm_s16le", 22050),
        ("pcm_f32le", 48000),
    ],
)
async def test_each_word_span_is_voiced_and_the_pauses_between_sentences_are_silent(
    espeak, make_emulator, encoding, rate
):
    emu = await make_emulator(voice="espeak")
    events = await speak(emu.url, SENTENCES, fmt(encoding, rate))

    assert isinstance(events[-1], Done)
    assert [e.flush_id for e in events if isinstance(e, FlushDone)] == [1, 2, 3]
    words = words_of(events)
    # The sent text's whitespace tokens, punctuation attached, in order.
    assert [w for w, _, _ in words] == "".join(SENTENCES).split()
    data = audio_of(events)
    pcm = np.frombuffer(to_pcm16(data, encoding), dtype="<i2").astype(np.float64) / 32768
    for word, start, end in words:
        assert end - start > 0.05, word
        assert rms(pcm, rate, start, end) > VOICED_RMS, f"{word!r} is voiced"
    pauses = [(a, b) for a, b in itertools.pairwise(words) if a[0].endswith((".", "?", "!"))]
    assert len(pauses) == 3  # "friend." | "today?" | "asking!": across flushes and within one
    for (word, _, end), (_, start, _) in pauses:
        assert start - end > 0.15, f"a pause after {word!r}"
        assert rms(pcm, rate, end, start) < SILENT_RMS, f"silence after {word!r}"
    # Cumulative over the context, in order, within its audio.
    starts = [start for _, start, _ in words]
    assert starts == sorted(starts)
    assert words[-1][2] <= len(pcm) / rate
    # The wire carries exactly the voice's rendering of each generation (a sentence
    # each: managed buffering releases text at every sentence end).
    [record] = emu.record.contexts.values()
    assert len(record.generations) == 4
    offset, expected = 0, []
    for generation in record.generations:
        speech = EspeakVoice().synthesize(generation, rate, offset_samples=offset)
        offset += len(speech.samples)
        expected.append(speech.samples)
    assert data == encode_float(np.concatenate(expected), encoding)


async def test_timestamps_are_espeaks_own_word_and_phoneme_events(espeak, make_emulator):
    text = "Of the people, by the people, for the people."
    emu = await make_emulator(voice="espeak")
    events = await speak(emu.url, [text], fmt("pcm_s16le", 22050), add_phoneme_timestamps=True)

    # At espeak's own rate the times are its events' samples, unscaled.
    utterance = espeak_lib.load().synthesize(
        text, f"en-us+{espeak_lib.VARIANT}", espeak_lib.NORMAL_RATE, end_pause=True
    )
    starts = {e.sample for e in utterance.events if e.kind == espeak_lib.PHONEME and e.name}
    boundaries = {e.sample for e in utterance.events}
    word_events = [e for e in utterance.events if e.kind == espeak_lib.WORD]
    words = words_of(events)
    timed = {text.count(" ", 0, e.char) for e in word_events}  # tokens with a word event
    assert len(timed) < len(words), "espeak runs some words together ('by the')"
    for i, (word, start, end) in enumerate(words):
        if i in timed:  # a word begins at its first phoneme
            assert round(start * 22050) in starts, word
        if i in timed and (i + 1 in timed or i + 1 == len(words)):
            assert round(end * 22050) in boundaries, word  # ... ends at the next word or pause
    phonemes = words_of(events, PhonemeTimestamps)
    assert {round(start * 22050) for _, start, _ in phonemes} == starts
    assert "\u02c8" not in "".join(p for p, _, _ in phonemes)  # IPA, stress marks dropped
    assert {p for p, _, _ in phonemes} >= {"p", "b", "f"}


async def test_a_long_generation_is_spoken_in_pieces_every_word_timed_and_voiced(
    espeak, make_emulator
):
    text = " ".join(f"Sentence number {i} has a few more words in it." for i in range(30))
    emu = await make_emulator(voice="espeak")
    # No buffering: the whole input is one generation, rendered in pieces of 120 words.
    events = await speak(emu.url, [text], fmt("pcm_s16le", 16000), max_buffer_delay_ms=0)
    [record] = emu.record.contexts.values()
    assert record.generations == [text]
    assert len(pump.pieces(text)) == 3

    words = words_of(events)
    assert [w for w, _, _ in words] == text.split()
    pcm = np.frombuffer(audio_of(events), dtype="<i2").astype(np.float64) / 32768
    for word, start, end in words:
        assert rms(pcm, 16000, start, end) > VOICED_RMS, word
    for (word, _, end), (_, start, _) in itertools.pairwise(words):
        if word.endswith("."):
            assert rms(pcm, 16000, end, start) < SILENT_RMS, f"silence after {word!r}"


def test_spans_from_events_share_run_together_words_and_skip_the_lead_in():
    # No espeak needed: events as espeak gives them for "by the way — 👋 ok".
    words = word_tokens("by the way \u2014 \U0001f44b ok")
    word, phoneme, end = espeak_lib.WORD, espeak_lib.PHONEME, espeak_lib.END
    events = [
        Event(word, 0, 100, ""),  # "by the": one word event
        Event(phoneme, 0, 120, "b"),
        Event(phoneme, 0, 300, "a\u026a"),
        Event(word, 7, 1000, ""),  # "way", its lead-in 1000..1050 silent
        Event(phoneme, 7, 1050, "w"),
        Event(phoneme, 7, 1500, ""),  # a pause: "way" ends here; "—" has no event
        Event(word, 13, 2000, ""),  # the emoji is read as two words ("waving hand"),
        Event(phoneme, 13, 2100, "\u02c8we\u026a"),
        Event(word, 14, 2600, ""),  # the second one placed just past it
        Event(phoneme, 14, 2650, "h"),
        Event(word, 15, 3000, ""),
        Event(phoneme, 15, 3100, "o\u028a"),
        Event(end, 16, 3500, ""),
    ]
    timed, phonemes = spans(words, events, 4000)
    assert timed == [
        ("by", 120, 472),  # 2 letters of 5 of the span espeak gave "by the"
        ("the", 472, 1000),
        ("way", 1050, 1500),
        ("\u2014", 1500, 1500),
        ("\U0001f44b", 2100, 3000),
        ("ok", 3100, 3500),
    ]
    assert phonemes[:3] == [("b", 120, 300), ("a\u026a", 300, 1000), ("w", 1050, 1500)]
    assert ("we\u026a", 2100, 2600) in phonemes  # stress marks dropped
    # Tags are blanked to spaces (espeak's positions stay the text's); "<" alone is text.
    emotion = '<emotion value="x"/>'
    assert unmarked(f"3 < 4 <spell>AB</spell> {emotion}") == (
        "3 < 4 " + " " * len("<spell>") + "AB" + " " * len("</spell> ") + " " * len(emotion)
    )


# -- what a request asks for ---------------------------------------------------------------


async def test_speed_sets_the_rate_and_volume_the_level(espeak, make_emulator):
    emu = await make_emulator(voice="espeak")
    text = ["Speak at the speed you are asked to."]
    f32 = fmt("pcm_f32le", 24000)

    async def run(**config) -> tuple[np.ndarray, list]:
        events = await speak(emu.url, text, f32, generation_config=config)
        return np.frombuffer(audio_of(events), dtype="<f4"), words_of(events)

    normal, normal_words = await run(speed=1.0)
    fast, fast_words = await run(speed=1.5)
    slow, slow_words = await run(speed=0.6)
    loud, loud_words = await run(volume=2.0)
    assert [w for w, _, _ in fast_words] == [w for w, _, _ in slow_words] == text[0].split()
    assert len(slow) > len(normal) * 1.4
    assert len(fast) < len(normal) * 0.8
    assert slow_words[-1][2] > normal_words[-1][2] > fast_words[-1][2]
    # Volume scales the same samples: twice the level, same timing.
    assert loud_words == normal_words
    assert np.max(np.abs(loud)) <= 1.0
    np.testing.assert_allclose(loud, 2 * normal, atol=1e-6)


async def test_a_break_is_silence_of_its_length_and_other_tags_are_not_spoken(
    espeak, make_emulator
):
    emu = await make_emulator(voice="espeak")
    s16 = fmt("pcm_s16le", 24000)
    events = await speak(emu.url, ['Wait <break time="700ms"/>for it.'], s16)
    words = words_of(events)
    assert [w for w, _, _ in words] == ["Wait", "for", "it."]
    pcm = np.frombuffer(audio_of(events), dtype="<i2").astype(np.float64) / 32768
    (_, _, wait_end), (_, for_start, _) = words[0], words[1]
    assert for_start - wait_end >= 0.7
    assert rms(pcm, 24000, wait_end, for_start) < SILENT_RMS

    tagged = await speak(emu.url, ['<emotion value="excited"/>Great news!'], s16)
    plain = await speak(emu.url, ["Great news!"], s16)
    assert audio_of(tagged) == audio_of(plain)
    assert words_of(tagged) == words_of(plain)
    spelled = await speak(emu.url, ["<spell>ABC</spell> is spelled."], s16)
    assert [w for w, _, _ in words_of(spelled)] == ["<spell>ABC</spell>", "is", "spelled."]
    assert audio_of(spelled) == audio_of(await speak(emu.url, ["ABC is spelled."], s16))


async def test_the_same_text_gives_the_same_audio_and_timestamps(espeak, make_emulator):
    first = await make_emulator(voice=EspeakVoice(cache_bytes=0))
    other = await make_emulator(voice=EspeakVoice(cache_bytes=0))
    s16 = fmt("pcm_s16le", 24000)
    a = await speak(first.url, SENTENCES, s16)
    await speak(first.url, ["Something else in between, to move espeak's state on."], s16)
    b = await speak(other.url, SENTENCES, s16)
    assert audio_of(a) == audio_of(b)
    assert words_of(a) == words_of(b)


async def test_a_voice_object_is_used_as_given(espeak, make_emulator):
    with pytest.raises(ValueError, match="espeak-ng has no voice 'xx-nowhere"):
        EspeakVoice(language="xx-nowhere")
    british = EspeakVoice(language="en")
    emu = await make_emulator(voice=british)
    assert emu.voice is british
    events = await speak(emu.url, ["Tomato, potato."], fmt("pcm_s16le", 16000))
    assert audio_of(events) == encode_float(
        british.synthesize("Tomato, potato.", 16000).samples, "pcm_s16le"
    )
    assert audio_of(events) != encode_float(
        EspeakVoice().synthesize("Tomato, potato.", 16000).samples, "pcm_s16le"
    )


@pytest.mark.cartesia_emulator(voice="espeak")
async def test_the_pytest_plugins_marker_takes_the_voice(espeak, cartesia_emulator):
    assert isinstance(cartesia_emulator.voice, EspeakVoice)
    events = await speak(cartesia_emulator.url, ["Plugged in."], fmt("pcm_s16le", 24000))
    assert [w for w, _, _ in words_of(events)] == ["Plugged", "in."]


# -- rendering: off the event loop, cached within bounds -------------------------------------


@pytest.fixture
def rendered_on(monkeypatch) -> list[str]:
    """The thread of each espeak rendering, in order."""
    library = espeak_lib.load()
    threads: list[str] = []
    synthesize = library.synthesize

    def spy(text, *args, **kwargs):
        threads.append(threading.current_thread().name)
        return synthesize(text, *args, **kwargs)

    monkeypatch.setattr(library, "synthesize", spy)
    return threads


async def test_espeak_renders_in_worker_threads_never_on_the_event_loop(
    espeak, rendered_on, make_emulator
):
    emu = await make_emulator(voice="espeak")
    loop_thread = threading.current_thread().name
    async with await CartesiaConnection.connect(api_key="k", url=emu.url) as conn:
        ctx = new_context(conn)  # managed buffering: one generation per sentence
        await ctx.push("First it renders this. Then that, ahead of time.")
        await ctx.no_more_inputs()
        events = await collect(ctx)
    assert isinstance(events[-1], Done)
    assert emu.record.context(ctx.context_id).generations == [
        "First it renders this.",
        " Then that, ahead of time.",
    ]
    assert len(rendered_on) == 2
    assert loop_thread not in rendered_on


async def test_rendering_ahead_lays_out_and_encodes_the_next_piece(espeak, rendered_on):
    voice = EspeakVoice()
    text = "Rendered ahead, while another piece plays."
    config = {"speed": 1.2}
    assert voice.layout(text, 16000, generation_config=config, render=False) is None
    pump.prefetch(voice, text, 16000, "pcm_alaw", config)
    # The render-ahead thread takes one job at a time: once this one runs, it is done.
    await asyncio.get_running_loop().run_in_executor(pump._AHEAD, lambda: None)
    assert rendered_on == ["emulator-render-ahead_0"]
    layout = voice.layout(text, 16000, generation_config=config, render=False)
    assert layout is not None
    assert voice.cached(layout, "pcm_alaw")
    speech = EspeakVoice(cache_bytes=0).synthesize(text, 16000, generation_config=config)
    assert voice.encode(layout, "pcm_alaw", render=False) == encode_float(
        speech.samples, "pcm_alaw"
    )


def test_the_caches_stay_within_their_budget_and_change_nothing_heard(espeak):
    budget = 1024 * 1024  # a few sentences: each fits, all do not
    voice, uncached = EspeakVoice(cache_bytes=budget), EspeakVoice(cache_bytes=0)
    for i in range(12):
        text = f"Sentence {i} of a long soak, with words that come and go."
        layout = voice.layout(text, 24000, offset_samples=i)
        assert voice.layout(text, 24000, offset_samples=i, render=False) == layout
        assert voice.encode(layout, "pcm_f32le", render=False) is None  # not encoded yet
        data = voice.encode(layout, "pcm_f32le")
        assert voice.cached(layout, "pcm_f32le")
        assert voice.encode(layout, "pcm_f32le", render=False) == data
        assert data == encode_float(uncached.synthesize(text, 24000).samples, "pcm_f32le")
        assert voice.cache.nbytes <= budget
        assert voice.renderings.nbytes <= budget
    assert voice.cache.evictions > 0
    assert voice.renderings.evictions > 0
    assert len(uncached.cache) == len(uncached.renderings) == 0


# -- the command line ----------------------------------------------------------------------


async def test_the_cli_speaks_with_espeak(espeak):
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "pipecat_cartesia_ctx.emulator", "--voice", "espeak", "--port", "0"),
        *("--speed", "0", "--first-chunk-ms", "0"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        lines = []
        async with asyncio.timeout(60):
            while not (lines and lines[-1].startswith("  voice:")):
                line = (await proc.stdout.readline()).decode()
                assert line, "the emulator exited before listening"
                lines.append(line)
        assert lines[-1].strip() == "voice: espeak"
        url = re.search(r"ws://127\.0\.0\.1:\d+/tts/websocket", "".join(lines)).group()
        events = await speak(url, ["From the command line."], fmt("pcm_s16le", 24000))
    finally:
        proc.terminate()
        await proc.wait()
    # Another process, the same samples: espeak is deterministic here.
    expected = EspeakVoice().synthesize("From the command line.", 24000).samples
    assert audio_of(events) == encode_float(expected, "pcm_s16le")
    assert [w for w, _, _ in words_of(events)] == ["From", "the", "command", "line."]


# -- without the extra ---------------------------------------------------------------------


@pytest.fixture
def no_extra(monkeypatch):
    """As if the [voice] extra were not installed: importing its wheel fails."""
    monkeypatch.setitem(sys.modules, "espeakng_loader", None)


async def test_without_the_extra_asking_for_espeak_names_the_install_line(no_extra, make_emulator):
    assert espeak_available() is False
    with pytest.raises(VoiceUnavailableError, match=re.escape(INSTALL)) as raised:
        CartesiaEmulator(voice="espeak")
    assert isinstance(raised.value, ImportError)
    with pytest.raises(VoiceUnavailableError, match=re.escape(INSTALL)):
        EspeakVoice()
    # The default voice needs nothing.
    emu = await make_emulator()
    async with await CartesiaConnection.connect(api_key="k", url=emu.url) as conn:
        ctx = conn.context(model_id=MODEL, voice=VOICE, output_format=fmt("pcm_s16le", 8000))
        await ctx.push("Still here.")
        await ctx.no_more_inputs()
        assert isinstance((await collect(ctx))[-1], Done)


def test_an_unknown_voice_name_is_refused():
    with pytest.raises(ValueError, match="unknown voice 'festival': use one of synthetic, espeak"):
        CartesiaEmulator(voice="festival")


def test_without_the_extra_the_cli_says_what_to_install():
    code = (
        "import sys; sys.modules['espeakng_loader'] = None\n"
        "from pipecat_cartesia_ctx.emulator.cli import main\n"
        "raise SystemExit(main(['--voice', 'espeak', '--port', '0']))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert (
        f"cartesia-emulator: the espeak voice needs the [voice] extra (espeak-ng): {INSTALL}"
        in (result.stderr)
    )
    assert "listening" not in result.stdout


def test_with_the_extra_espeak_is_available(espeak):
    assert espeak_available() is True
