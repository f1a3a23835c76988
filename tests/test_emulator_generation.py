"""The emulator's generation semantics, over real loopback sockets with our client."""

from __future__ import annotations

import asyncio
import itertools
import time

import numpy as np
import pytest
from helpers import MODEL, S16_24K, VOICE, collect, new_context
from wire_helpers import connect_raw, ends, read_until, wire

from pipecat_cartesia_ctx.audio import encode_float, to_pcm16
from pipecat_cartesia_ctx.client import CartesiaConnection
from pipecat_cartesia_ctx.emulator import Behavior, Pacing, SyntheticVoice
from pipecat_cartesia_ctx.emulator.context import _PIECE_WORDS, _pieces
from pipecat_cartesia_ctx.protocol import (
    ENCODINGS,
    SAMPLE_RATES,
    Chunk,
    Done,
    FlushDone,
    PhonemeTimestamps,
    Timestamps,
)

VOICE_MODEL = SyntheticVoice()


def audio_of(events, flush_id=None) -> bytes:
    return b"".join(
        e.audio
        for e in events
        if isinstance(e, Chunk) and (flush_id is None or e.flush_id == flush_id)
    )


def words_of(events) -> list[str]:
    return [w for e in events if isinstance(e, Timestamps) for w in e.words]


def shape(events) -> list[tuple[str, int | None]]:
    """Event types with flush ids, consecutive duplicates collapsed."""
    out: list[tuple[str, int | None]] = []
    for e in events:
        item = (e.type, getattr(e, "flush_id", None))
        if not out or out[-1] != item:
            out.append(item)
    return out


async def until_word(ctx, word: str, timeout: float = 5.0) -> list:
    """The context's events up to the timestamps that report ``word``."""
    events = []
    async for event in ctx.receive(timeout=timeout):
        events.append(event)
        if isinstance(event, Timestamps) and word in event.words:
            return events
    raise AssertionError(f"the context ended before {word!r} was spoken")


async def test_golden_trace(conn, emu):
    ctx = new_context(conn, language="en")
    await ctx.push("Stay hungry, ")
    assert await ctx.flush() == 1
    await ctx.push("stay foolish.")
    await ctx.no_more_inputs()
    events = await collect(ctx)

    assert shape(events) == [
        ("chunk", 1),
        ("timestamps", 1),
        ("chunk", 1),
        ("timestamps", 1),
        ("chunk", 1),
        ("flush_done", 1),
        ("chunk", 2),
        ("timestamps", 2),
        ("chunk", 2),
        ("timestamps", 2),
        ("chunk", 2),
        ("done", None),
    ]
    assert words_of(events) == ["Stay", "hungry,", "stay", "foolish."]
    ts = [e for e in events if isinstance(e, Timestamps)]
    # Timestamps run on across the flush, from the start of the context's audio.
    assert ts[2].start[0] > ts[1].end[-1]
    assert ts[2].start[0] == pytest.approx(len(audio_of(events, 1)) / 2 / 24000)
    record = emu.record.context(ctx.context_id)
    assert [(i.kind, i.transcript) for i in record.inputs] == [
        ("push", "Stay hungry, "),
        ("flush", ""),
        ("push", "stay foolish."),
        ("close", ""),
    ]
    assert record.flush_done_ids == [1]
    assert record.done
    assert record.audio_bytes == {
        1: len(audio_of(events, 1)),
        2: len(audio_of(events, 2)),
    }


async def test_the_record_stamps_each_input_and_the_cancel_with_when_it_arrived(conn, emu):
    """On the program's own monotonic clock, between the send and the record having it."""
    ctx = new_context(conn)

    def inputs(record) -> int:
        context = record.contexts.get(ctx.context_id)
        return len(context.inputs) if context else 0

    stamps = [time.monotonic()]
    await ctx.push("Stay hungry, ")
    await emu.record.wait_for(lambda r: inputs(r) == 1)
    stamps.append(time.monotonic())
    await ctx.flush()
    await emu.record.wait_for(lambda r: inputs(r) == 2)
    stamps.append(time.monotonic())
    assert emu.record.context(ctx.context_id).cancelled_at is None
    await ctx.cancel()
    await emu.record.wait_for(lambda r: r.context(ctx.context_id).cancelled)
    stamps.append(time.monotonic())

    record = emu.record.context(ctx.context_id)
    assert [i.kind for i in record.inputs] == ["push", "flush"]
    arrivals = [i.received_at for i in record.inputs] + [record.cancelled_at]
    for before, arrived, after in zip(stamps[:-1], arrivals, stamps[1:], strict=True):
        assert before <= arrived <= after


async def test_flush_ids_count_1_2_3_and_each_flush_done_follows_its_audio(conn):
    ctx = new_context(conn)
    sentences = ["First one. ", "Second sentence here. ", "Third and last."]
    for i, sentence in enumerate(sentences, start=1):
        await ctx.push(sentence)
        assert await ctx.flush() == i
    await ctx.no_more_inputs()
    events = await collect(ctx)

    assert [(e.type, e.flush_id) for e in events if isinstance(e, FlushDone)] == [
        ("flush_done", 1),
        ("flush_done", 2),
        ("flush_done", 3),
    ]
    order = [(e.type, getattr(e, "flush_id", None)) for e in events if e.type != "timestamps"]
    for fid in (1, 2, 3):
        done_at = order.index(("flush_done", fid))
        chunk_positions = [i for i, item in enumerate(order) if item == ("chunk", fid)]
        assert chunk_positions, f"segment {fid} has audio"
        assert max(chunk_positions) < done_at, "flush_done comes after the segment's last chunk"
        assert all(item[1] != fid + 1 for item in order[:done_at]), "no later audio before it"
    assert isinstance(events[-1], Done)
    # Each segment is exactly the voice's rendering of its sentence.
    offset = 0
    for fid, sentence in enumerate(sentences, start=1):
        speech = VOICE_MODEL.synthesize(sentence, 24000, offset_samples=offset)
        offset += len(speech.samples)
        assert audio_of(events, fid) == encode_float(speech.samples, "pcm_s16le")


async def test_flush_with_nothing_pending_still_gets_flush_done(conn):
    ctx = new_context(conn)
    await ctx.push("Some text.")
    assert await ctx.flush() == 1
    assert await ctx.flush() == 2
    await ctx.no_more_inputs()
    events = await collect(ctx)
    assert [e.flush_id for e in events if isinstance(e, FlushDone)] == [1, 2]
    assert shape(events)[-3:] == [("flush_done", 1), ("flush_done", 2), ("done", None)]
    assert audio_of(events, 1)
    assert audio_of(events, 2) == b""


async def test_inputs_are_concatenated_verbatim(conn, emu):
    glued = new_context(conn)  # managed buffering: text waits for a sentence end
    await glued.push("Stay hungry,")
    await glued.push("stay foolish.")
    await glued.no_more_inputs()
    spaced = new_context(conn)
    await spaced.push("Stay hungry, ")
    await spaced.push("stay foolish.")
    await spaced.no_more_inputs()

    assert words_of(await collect(glued)) == ["Stay", "hungry,stay", "foolish."]
    assert words_of(await collect(spaced)) == ["Stay", "hungry,", "stay", "foolish."]
    assert emu.record.context(glued.context_id).transcript == "Stay hungry,stay foolish."


async def test_cartesias_documented_concatenation_example(conn, emu):
    ctx = new_context(conn)
    await ctx.push("Hello, world!")
    await ctx.push("How are you?")
    await ctx.no_more_inputs()
    # A chunk ending with terminal punctuation is complete and spoken at once...
    assert words_of(await collect(ctx)) == ["Hello,", "world!", "How", "are", "you?"]
    # ...but the context's transcript is the verbatim concatenation.
    assert emu.record.context(ctx.context_id).transcript == "Hello, world!How are you?"


async def test_a_complete_sentence_is_spoken_without_waiting_for_more(conn):
    ctx = new_context(conn, max_buffer_delay_ms=5000)
    await ctx.push("Hello, my name is Sonic.")
    # Within 2 s: far less than the 5 s buffer delay.
    events = await until_word(ctx, "Sonic.", timeout=2)
    assert words_of(events) == ["Hello,", "my", "name", "is", "Sonic."]
    await ctx.cancel()


async def test_managed_buffering_generates_complete_sentences_and_holds_the_rest(conn, emu):
    ctx = new_context(conn, max_buffer_delay_ms=5000)
    await ctx.push("One two. Three")
    events = await until_word(ctx, "two.", timeout=5)
    # "Three" has no sentence end after it: it waits (up to 5 s) for more text.
    assert words_of(events) == ["One", "two."]
    assert emu.record.context(ctx.context_id).words == ["One", "two."]
    await ctx.push(" four.")
    await ctx.no_more_inputs()
    rest = await collect(ctx)
    assert words_of(rest) == ["Three", "four."]


async def test_a_period_alone_at_the_end_of_the_buffer_is_spoken_at_once(conn, emu):
    # Cartesia cannot wait to see whether "Dr. " ends a sentence: it speaks it.
    ctx = new_context(conn, max_buffer_delay_ms=5000)
    await ctx.push("Ask Dr. ")
    events = await until_word(ctx, "Dr.", timeout=4)
    assert words_of(events) == ["Ask", "Dr."]
    await ctx.push("Smith now.")
    await ctx.no_more_inputs()
    await collect(ctx)
    assert emu.record.context(ctx.context_id).generations == ["Ask Dr.", " Smith now."]


async def test_a_period_the_next_word_shows_ends_no_sentence_is_not_a_cut(conn, emu):
    ctx = new_context(conn, max_buffer_delay_ms=5000)
    await ctx.push("Ask Dr. Smith, e.g. now. Do this: 1. unplug it, 2. wait. ")
    await ctx.push("Meet on Jan. 5 at noon. Prices rose etc. The end.")
    await ctx.no_more_inputs()
    await collect(ctx)
    assert emu.record.context(ctx.context_id).generations == [
        "Ask Dr. Smith, e.g. now.",
        " Do this: 1. unplug it, 2. wait.",
        " Meet on Jan. 5 at noon.",
        " Prices rose etc.",
        " The end.",
    ]


async def test_managed_buffering_releases_unfinished_text_after_the_delay(conn):
    ctx = new_context(conn, max_buffer_delay_ms=300)
    sent = time.monotonic()
    await ctx.push("no sentence end here")
    first = await anext(aiter(ctx.receive(timeout=5)))
    waited = time.monotonic() - sent
    assert isinstance(first, Chunk)
    assert waited >= 0.29, "text without a sentence end waits for max_buffer_delay_ms"
    await ctx.cancel()


async def test_zero_buffer_delay_generates_each_input_at_once(conn):
    ctx = new_context(conn, max_buffer_delay_ms=0)
    await ctx.push("no sentence end")
    events = await until_word(ctx, "end", timeout=2)
    assert words_of(events) == ["no", "sentence", "end"]
    await ctx.no_more_inputs()
    assert isinstance((await collect(ctx))[-1], Done)


async def test_two_contexts_interleave_on_one_socket_and_stay_apart(make_emulator):
    emu = await make_emulator(pacing=Pacing(first_chunk_ms=0, speed=20.0, chunk_ms=20))
    texts = {"a": "Alpha speaks first, quite a long line.", "b": "Bravo answers at once."}
    async with await CartesiaConnection.connect(api_key="k", url=emu.url) as conn:
        contexts = {k: new_context(conn, context_id=f"ctx-{k}") for k in texts}
        for key, ctx in contexts.items():
            await ctx.push(texts[key])
            await ctx.no_more_inputs()
        arrivals: list[str] = []

        async def drain(key):
            events = []
            async for event in contexts[key].receive(timeout=5):
                events.append(event)
                if isinstance(event, Chunk):
                    arrivals.append(key)
            return events

        results = dict(zip(texts, await asyncio.gather(*(drain(k) for k in texts)), strict=True))

    switches = sum(1 for x, y in itertools.pairwise(arrivals) if x != y)
    assert switches >= 3, f"chunks of the two contexts interleave: {''.join(arrivals)}"
    for key, text in texts.items():
        expected = encode_float(VOICE_MODEL.synthesize(text, 24000).samples, "pcm_s16le")
        assert audio_of(results[key]) == expected
        assert all(e.context_id == f"ctx-{key}" for e in results[key])
        assert emu.record.context(f"ctx-{key}").total_audio_bytes == len(expected)


@pytest.mark.parametrize("rate", SAMPLE_RATES)
@pytest.mark.parametrize("encoding", ENCODINGS)
async def test_every_encoding_and_rate_has_the_right_byte_layout(conn, encoding, rate):
    text = "Testing one, two."
    ctx = new_context(
        conn, output_format={"container": "raw", "encoding": encoding, "sample_rate": rate}
    )
    await ctx.push(text)
    await ctx.no_more_inputs()
    events = await collect(ctx)
    data = audio_of(events)
    speech = VOICE_MODEL.synthesize(text, rate)
    width = {"pcm_f32le": 4, "pcm_s16le": 2, "pcm_mulaw": 1, "pcm_alaw": 1}[encoding]
    assert len(data) == len(speech.samples) * width
    assert data == encode_float(speech.samples, encoding)
    pcm = np.frombuffer(to_pcm16(data, encoding), dtype="<i2").astype(np.float64) / 32768
    # Decoded, it is the voice's signal again (within G.711's companding error).
    assert np.max(np.abs(pcm - speech.samples)) < 0.02
    last = [e for e in events if isinstance(e, Timestamps)][-1]
    assert last.end[-1] <= len(speech.samples) / rate


async def test_timestamps_mark_where_the_audio_sounds(conn):
    text = "Hello there, general Kenobi. You are a bold one."
    ctx = new_context(conn, add_phoneme_timestamps=True)
    await ctx.push(text)
    await ctx.no_more_inputs()
    events = await collect(ctx)
    pcm = np.frombuffer(audio_of(events), dtype="<i2").astype(np.float64) / 32768
    ts = [e for e in events if isinstance(e, Timestamps)]
    assert words_of(events) == text.split()
    spans = [(s, e) for t in ts for s, e in zip(t.start, t.end, strict=True)]

    def rms(a, b):
        seg = pcm[int(a * 24000) : int(b * 24000)]
        return float(np.sqrt(np.mean(seg**2))) if len(seg) else 0.0

    for start, end in spans:
        assert rms(start, end) > 0.05, "a word is audible"
    for (_, end), (next_start, _) in itertools.pairwise(spans):
        assert rms(end + 0.002, next_start - 0.002) < 1e-3, "between words is silence"
    phonemes = [
        (p, s, e)
        for t in events
        if isinstance(t, PhonemeTimestamps)
        for p, s, e in zip(t.phonemes, t.start, t.end, strict=True)
    ]
    assert "".join(p for p, _, _ in phonemes) == "".join(ch.lower() for ch in text if ch.isalnum())
    assert phonemes[0][1] == spans[0][0]
    for _, start, end in phonemes:
        assert any(a - 1e-9 <= start and end <= b + 1e-9 for a, b in spans), "inside a word"


async def test_timestamps_are_sent_as_their_words_audio_is_sent(conn):
    ctx = new_context(conn)
    await ctx.push("A fairly long sentence made of many words for streaming.")
    await ctx.no_more_inputs()
    heard = 0.0
    async for event in ctx.receive(timeout=5):
        if isinstance(event, Chunk):
            heard += len(event.audio) / 2 / 24000
        elif isinstance(event, Timestamps):
            assert max(event.end) <= heard + 1e-6, "never reported before its audio"
    assert heard > 0


async def test_break_tags_are_silence_and_not_words(conn):
    ctx = new_context(conn)
    await ctx.push('Wait <break time="500ms"/> now.')
    await ctx.no_more_inputs()
    events = await collect(ctx)
    ts = [e for e in events if isinstance(e, Timestamps)]
    assert words_of(events) == ["Wait", "now."]
    gap = ts[-1].start[-1] - ts[0].end[0]
    assert gap == pytest.approx(0.5 + VOICE_MODEL.gap_s, abs=1e-3)


async def test_generation_config_speed_changes_the_next_input(conn):
    ctx = new_context(conn)
    await ctx.push("Same words here.")
    assert await ctx.flush() == 1
    await ctx.push("Same words here.", generation_config={"speed": 1.5, "volume": 0.5})
    await ctx.no_more_inputs()
    events = await collect(ctx)
    normal, fast = len(audio_of(events, 1)), len(audio_of(events, 2))
    assert fast / normal == pytest.approx(1 / 1.5, rel=0.01)


async def test_at_delay_0_every_input_is_its_own_flush_by_default(conn):
    ctx = new_context(conn, max_buffer_delay_ms=0)
    await ctx.push("First. ")
    await ctx.push("Second. ")
    await ctx.no_more_inputs()
    events = await collect(ctx)
    assert shape([e for e in events if not isinstance(e, Timestamps)]) == [
        ("chunk", 1),
        ("flush_done", 1),
        ("chunk", 2),
        ("flush_done", 2),
        ("done", None),
    ]
    assert audio_of(events, 1) == encode_float(
        VOICE_MODEL.synthesize("First. ", 24000).samples, "pcm_s16le"
    )
    assert audio_of(events, 2)


async def test_at_delay_0_one_flush_id_per_input_with_text_and_none_for_the_close(emu):
    async with connect_raw(emu) as ws:
        await ws.send(wire("d0", "One. ", max_buffer_delay_ms=0))
        await ws.send(wire("d0", " "))  # no text: no generation, no flush
        await ws.send(wire("d0", "Two. ", flush=True))  # its own flush is its only id
        await ws.send(wire("d0", "Three.", cont=False))  # the close: done, no flush_done
        events = await read_until(ws, ends("d0"))
    assert shape([e for e in events if not isinstance(e, Timestamps)]) == [
        ("chunk", 1),
        ("flush_done", 1),
        ("chunk", 2),
        ("flush_done", 2),
        ("chunk", 3),
        ("done", None),
    ]


async def test_implicit_flushes_can_be_switched_off(make_emulator):
    emu = await make_emulator(behavior=Behavior(implicit_flush=False))
    async with await CartesiaConnection.connect(api_key="k", url=emu.url) as conn:
        ctx = new_context(conn, max_buffer_delay_ms=0)
        await ctx.push("First. ")
        await ctx.push("Second. ")
        await ctx.no_more_inputs()
        events = await collect(ctx)
    assert [e for e in events if isinstance(e, FlushDone)] == []
    assert {e.flush_id for e in events if isinstance(e, Chunk)} == {1}
    assert shape(events)[-1] == ("done", None)


async def test_flush_done_before_done_when_switched_on(make_emulator):
    emu = await make_emulator(behavior=Behavior(flush_done_at_close=True))
    async with await CartesiaConnection.connect(api_key="k", url=emu.url) as conn:
        ctx = new_context(conn)
        await ctx.push("Only segment.")
        await ctx.no_more_inputs()
        events = await collect(ctx)
    assert [e.type for e in events if not isinstance(e, Chunk | Timestamps)] == [
        "flush_done",
        "done",
    ]


async def test_unaligned_chunks_still_add_up_to_whole_samples(make_emulator):
    emu = await make_emulator(
        pacing=Pacing(first_chunk_ms=0, speed=float("inf"), unaligned_chunks=True)
    )
    async with await CartesiaConnection.connect(api_key="k", url=emu.url) as conn:
        ctx = new_context(conn)
        await ctx.push("Odd byte counts please.")
        await ctx.no_more_inputs()
        events = await collect(ctx)
    sizes = [len(e.audio) for e in events if isinstance(e, Chunk)]
    assert any(s % 2 for s in sizes), "some chunks end inside a sample"
    assert sum(sizes) % 2 == 0
    expected = VOICE_MODEL.synthesize("Odd byte counts please.", 24000).samples
    assert audio_of(events) == encode_float(expected, "pcm_s16le")


async def test_voice_shapes_and_model_ids_are_accepted(conn):
    for voice in (VOICE, {"id": VOICE}, {"mode": "id", "id": VOICE}):
        ctx = conn.context(model_id=MODEL, voice=voice, output_format=S16_24K)
        await ctx.push("Hi.")
        await ctx.no_more_inputs()
        assert isinstance((await collect(ctx))[-1], Done)


# -- long generations are rendered piece by piece (first audio comes early) ----------


def test_a_long_generation_is_cut_into_pieces_at_whitespace_outside_tags():
    spelled = "<spell>A B C D E F G H</spell>"
    pause = '<break time="300ms"/>'
    words = [f"w{n}" for n in range(1000)]
    words[0] = "a < b"  # a literal "<": later spaces are not inside a tag
    for n in range(_PIECE_WORDS - 4, 1000, _PIECE_WORDS):
        words[n] = spelled  # straddles where a piece would end
    words[_PIECE_WORDS * 3 - 1] = pause
    text = " ".join(words) + "."
    pieces = _pieces(text)
    assert "".join(pieces) == text
    assert len(pieces) >= 1000 // (_PIECE_WORDS + 8)
    for piece in pieces:
        assert piece.count("<spell>") == piece.count("</spell>"), piece
        assert piece.count("<break") == piece.count("/>"), piece
        assert len(piece.split()) <= _PIECE_WORDS + 8


def test_a_tag_never_closed_does_not_stop_the_cutting():
    text = "Spell <spell>" + " ".join(["word"] * (4 * _PIECE_WORDS)) + "."
    pieces = _pieces(text)
    assert "".join(pieces) == text
    assert len(pieces) >= 3
