"""The cheap emulator: cached words sound as a fresh render does, in bounded memory."""

from __future__ import annotations

import asyncio
import itertools
import threading

import pytest
from helpers import collect, new_context
from hypothesis import given, settings
from hypothesis import strategies as st

from pipecat_cartesia_ctx.audio import encode_float
from pipecat_cartesia_ctx.client import CartesiaConnection
from pipecat_cartesia_ctx.emulator import Faults, Pacing, SyntheticVoice, pump
from pipecat_cartesia_ctx.emulator import context as context_module
from pipecat_cartesia_ctx.emulator.pacer import Pacer
from pipecat_cartesia_ctx.emulator.soundcache import SoundCache
from pipecat_cartesia_ctx.protocol import (
    BYTES_PER_SAMPLE,
    ENCODINGS,
    SAMPLE_RATES,
    Chunk,
    PhonemeTimestamps,
    Timestamps,
    encode_event,
    event_to_wire,
)
from pipecat_cartesia_ctx.protocol.wire import dumps

TEXTS = [
    "Stay hungry, stay foolish. ",
    "Hello hello HELLO, hello. The the THE!",
    'İstanbul straße — naïve café «quoted»? 你好\uff0c世界。 <break time="300ms"/> Dr. Smith.',
    "<spell>ABC</spell> 12 345 - a , <emotion value='calm'/> end",
]
CONFIGS = [None, {"speed": 0.6, "volume": 2.0}, {"speed": 1.5, "volume": 0.5}]


def uncached(text: str, rate: int, encoding: str, config=None, offset: int = 0) -> bytes:
    """The reference: every sample rendered afresh, then encoded whole."""
    speech = SyntheticVoice(cache_bytes=0).synthesize(
        text, rate, offset_samples=offset, generation_config=config
    )
    return encode_float(speech.samples, encoding)


# -- the voice ------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("rate", SAMPLE_RATES)
def test_cached_words_give_the_bytes_of_a_fresh_render(rate, encoding):
    voice = SyntheticVoice()
    for text, config in itertools.product(TEXTS, CONFIGS):
        expected = uncached(text, rate, encoding, config, offset=123)
        for _ in range(2):  # the second time every word comes from the cache
            layout = voice.layout(text, rate, offset_samples=123, generation_config=config)
            assert voice.encode(layout, encoding) == expected
        assert voice.encode(layout, encoding, render=False) == expected
    assert voice.cache.hits > 0


def test_the_layout_gives_the_timestamps_of_synthesize():
    voice = SyntheticVoice()
    for text, config in itertools.product(TEXTS, CONFIGS):
        speech = voice.synthesize(text, 22050, offset_samples=77, generation_config=config)
        layout = voice.layout(text, 22050, offset_samples=77, generation_config=config)
        assert (layout.words, layout.phonemes) == (speech.words, speech.phonemes)
        assert layout.samples == len(speech.samples)


@settings(max_examples=40, deadline=None)
@given(
    words=st.lists(
        st.sampled_from(["a", "The", "the", "dog,", "DOG.", "İi", "ok?", "-", "x1", "你好"]),
        min_size=1,
        max_size=12,
    ),
    rate=st.sampled_from(SAMPLE_RATES),
    encoding=st.sampled_from(ENCODINGS),
    speed=st.sampled_from([0.6, 1.0, 1.5]),
)
def test_any_text_encodes_the_same_from_the_cache(words, rate, encoding, speed):
    text = " ".join(words)
    config = {"speed": speed}
    voice = SyntheticVoice(cache_bytes=64 * 1024)  # small: words are evicted as it goes
    layout = voice.layout(text, rate, generation_config=config)
    assert voice.encode(layout, encoding) == uncached(text, rate, encoding, config)
    assert voice.encode(layout, encoding) == uncached(text, rate, encoding, config)


def test_a_voice_with_no_gap_still_encodes_what_it_synthesizes():
    voice = SyntheticVoice(gap_s=0.0, clause_pause_s=0.0, sentence_pause_s=0.0)
    text = "one two, three. four"
    speech = voice.synthesize(text, 16000)
    assert voice.encode(voice.layout(text, 16000), "pcm_mulaw") == encode_float(
        speech.samples, "pcm_mulaw"
    )


def test_an_open_vocabulary_keeps_the_cache_within_its_budget():
    budget = 200_000
    voice = SyntheticVoice(cache_bytes=budget)
    for i in range(300):
        text = f"word{i} other{i}, again{i}."
        layout = voice.layout(text, 24000)
        assert voice.encode(layout, "pcm_s16le") == uncached(text, 24000, "pcm_s16le")
        assert voice.cache.nbytes <= budget
    assert voice.cache.evictions > 0
    assert len(voice.cache) < 600  # far fewer than the 900 words spoken


# -- the cache ----------------------------------------------------------------------


def test_the_cache_drops_the_least_recently_used_beyond_its_budget():
    cache = SoundCache(max_bytes=30)
    for key in "abc":
        cache.put(key, b"x" * 10)
    assert cache.get("a") == b"x" * 10  # now the most recent
    cache.put("d", b"y" * 10)
    assert (cache.get("b"), len(cache), cache.nbytes, cache.evictions) == (None, 3, 30, 1)
    assert cache.get("a") is not None
    assert cache.get("c") is not None
    cache.put("huge", b"z" * 31)  # larger than the whole budget: not kept
    assert cache.get("huge") is None
    assert cache.nbytes == 30
    cache.put("a", b"w" * 5)  # replacing counts the new size only
    assert cache.nbytes == 25
    cache.clear()
    assert (len(cache), cache.nbytes) == (0, 0)


def test_a_cache_of_nothing_keeps_nothing():
    cache = SoundCache(max_bytes=0)
    cache.put("a", b"x")
    assert (cache.get("a"), len(cache)) == (None, 0)
    assert cache.get_or_make("a", lambda: b"x") == b"x"
    with pytest.raises(ValueError, match="max_bytes"):
        SoundCache(max_bytes=-1)


def test_concurrent_misses_of_one_sound_make_it_once():
    cache = SoundCache()
    made = []
    entered = threading.Barrier(8)

    def make():
        made.append(1)
        return b"sound"

    def ask():
        entered.wait()
        assert cache.get_or_make("w", make) == b"sound"

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(made) == 1


# -- the wire ---------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    context_id=st.text(),
    audio=st.binary(max_size=64),
    flush_id=st.none() | st.integers(min_value=0, max_value=2**40),
    step_time=st.none() | st.floats(allow_nan=True, allow_infinity=True) | st.integers(0, 10**6),
)
def test_the_spliced_chunk_frame_is_the_generic_encoding(context_id, audio, flush_id, step_time):
    chunk = Chunk(context_id, audio, flush_id, step_time)
    assert encode_event(chunk) == dumps(event_to_wire(chunk))


# -- the pacer ------------------------------------------------------------------------


async def test_the_pacer_calls_in_due_order_and_never_early():
    pacer = Pacer(window=0.002)
    loop = asyncio.get_running_loop()
    now = loop.time()
    dues = [now + d for d in (0.03, 0.01, 0.02, 0.01, 0.0, 0.025)]
    calls: list[tuple[int, float]] = []
    done = asyncio.Event()
    for i, due in enumerate(dues):
        pacer.call_at(
            due, lambda i=i: (calls.append((i, loop.time())), len(calls) == 6 and done.set())
        )
    await done.wait()
    assert [i for i, _ in calls] == [4, 1, 3, 2, 5, 0]  # by due time, ties in order asked
    assert all(at >= dues[i] for i, at in calls)
    assert len(pacer) == 0


async def test_a_waiter_of_the_pacer_returns_when_due_and_a_cancelled_one_is_skipped():
    pacer = Pacer()
    loop = asyncio.get_running_loop()
    due = loop.time() + 0.02
    cancelled = asyncio.create_task(pacer.until(due))
    await asyncio.sleep(0)
    cancelled.cancel()
    await pacer.until(due)
    assert loop.time() >= due
    assert cancelled.cancelled()
    await pacer.until(loop.time() - 1)  # past: at once


# -- the emulator ---------------------------------------------------------------------


async def spoken(conn: CartesiaConnection, text: str, fmt: dict, config=None):
    """The audio and timestamps of one context speaking ``text``."""
    ctx = new_context(
        conn, output_format=fmt, add_phoneme_timestamps=True, generation_config=config
    )
    await ctx.push(text)
    await ctx.no_more_inputs()
    events = await collect(ctx)
    audio = b"".join(e.audio for e in events if isinstance(e, Chunk))
    timing = [
        (type(e).__name__, e.words if isinstance(e, Timestamps) else e.phonemes, e.start, e.end)
        for e in events
        if isinstance(e, Timestamps | PhonemeTimestamps)
    ]
    return audio, timing


@pytest.mark.parametrize(
    ("encoding", "rate", "config"),
    [
        ("pcm_s16le", 24000, None),
        ("pcm_f32le", 44100, {"speed": 1.5}),
        ("pcm_mulaw", 8000, {"volume": 2.0}),
        ("pcm_alaw", 16000, {"speed": 0.6, "volume": 0.5}),
    ],
)
async def test_the_emulator_speaks_the_same_bytes_and_timestamps_cached_or_not(
    make_emulator, encoding, rate, config
):
    fmt = {"container": "raw", "encoding": encoding, "sample_rate": rate}
    text = "Hello there, friend. Hello there, friend! 你好。 <break time='200ms'/> The end."
    cold = await make_emulator(voice=SyntheticVoice(cache_bytes=0))
    warm = await make_emulator()
    results = []
    for emu in (cold, warm, warm):  # the warm emulator's second context is all cache hits
        conn = await CartesiaConnection.connect(api_key="k", url=emu.url)
        results.append(await spoken(conn, text, fmt, config))
        await conn.close()
    # Each generation (a sentence, here) is rendered on its own, from where the last ended.
    expected, offset = b"", 0
    for generation in cold.record.contexts[next(iter(cold.record.contexts))].generations:
        expected += uncached(generation, rate, encoding, config, offset)
        offset = len(expected) // BYTES_PER_SAMPLE[encoding]
    assert results[0][0] == expected
    assert results[0] == results[1] == results[2]
    assert warm.voice.cache.hits > 0
    assert len(cold.voice.cache) == 0


@pytest.mark.parametrize("unaligned", [True, False])
async def test_chunks_sent_from_the_timer_and_from_the_task_are_the_same(make_emulator, unaligned):
    # A fault armed for later keeps every chunk on the task's path; none fires.
    pacing = Pacing(first_chunk_ms=5, speed=40.0, chunk_ms=20, unaligned_chunks=unaligned)
    fast = await make_emulator(pacing=pacing)
    slow = await make_emulator(pacing=pacing, faults=Faults(stall_after_chunks=10**9))
    fmt = {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 24000}
    text = "One sentence here. And a second, longer one to follow it!"
    runs = []
    for emu in (fast, slow):
        conn = await CartesiaConnection.connect(api_key="k", url=emu.url)
        runs.append(await spoken(conn, text, fmt))
        await conn.close()
        record = emu.record.contexts[next(iter(emu.record.contexts))]
        runs.append((record.events, record.spoken, record.audio_bytes))
    assert runs[0] == runs[2]
    assert runs[1] == runs[3]
    assert slow.faults.stall_after_chunks == 10**9


# -- rendering ahead ---------------------------------------------------------------------


async def test_prefetch_renders_a_pieces_new_words_ahead():
    voice = SyntheticVoice()
    text = "Words rendered ahead, while another piece plays."
    layout = voice.layout(text, 16000)
    assert not voice.cached(layout, "pcm_alaw")
    pump.prefetch(voice, text, 16000, "pcm_alaw", None)
    # The render-ahead thread takes one job at a time: once this one runs, it is done.
    await asyncio.get_running_loop().run_in_executor(pump._AHEAD, lambda: None)
    assert voice.cached(layout, "pcm_alaw")
    assert voice.encode(layout, "pcm_alaw", render=False) == uncached(text, 16000, "pcm_alaw")


async def test_each_piece_renders_the_next_one_ahead(make_emulator, monkeypatch):
    asked: list[str] = []
    monkeypatch.setattr(context_module, "prefetch", lambda voice, text, *a: asked.append(text))
    # The first chunk waits long enough for the close (sent with the push) to arrive.
    emu = await make_emulator(pacing=Pacing(first_chunk_ms=200, speed=float("inf")))
    conn = await CartesiaConnection.connect(api_key="k", url=emu.url)
    ctx = new_context(conn)
    await ctx.push("One. Two three. Four")
    await ctx.no_more_inputs()
    await collect(ctx)
    await conn.close()
    # Three generations: each of the first two rendered the next one's words ahead.
    assert emu.record.contexts[ctx.context_id].generations == ["One.", " Two three.", " Four"]
    assert asked == [" Two three.", " Four"]
