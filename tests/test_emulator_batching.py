"""The emulator's cheap send path: frames spliced once, framed here, written once per pacer tick.

What each client receives must not change: the same bytes, chunk boundaries,
timestamps and order as the voice gives and as the generic encoder writes.
"""

from __future__ import annotations

import asyncio
import binascii
import json
import threading

import pytest
from helpers import collect, new_context
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.frames import Frame, Opcode
from wire_helpers import connect_raw, ends, read_until, wire

from pipecat_cartesia_ctx.audio import encode_float
from pipecat_cartesia_ctx.client import CartesiaConnection
from pipecat_cartesia_ctx.emulator import Pacing, SyntheticVoice
from pipecat_cartesia_ctx.emulator.context import _pieces
from pipecat_cartesia_ctx.emulator.outbox import text_header
from pipecat_cartesia_ctx.emulator.pacer import Pacer
from pipecat_cartesia_ctx.protocol import (
    Chunk,
    Done,
    FlushDone,
    PhonemeTimestamps,
    Timestamps,
    encode_event,
    event_to_wire,
    parse_event,
)
from pipecat_cartesia_ctx.protocol.events import chunk_prefix, chunk_suffix
from pipecat_cartesia_ctx.protocol.wire import dumps

VOICE_MODEL = SyntheticVoice()

# -- the wire: spliced text is the generic encoding, framed as websockets frames it ---------

_numbers = st.floats(allow_nan=True, allow_infinity=True) | st.integers(-(10**6), 10**6)


@settings(max_examples=200, deadline=None)
@given(
    kind=st.sampled_from([Timestamps, PhonemeTimestamps]),
    context_id=st.text(),
    timing=st.lists(st.tuples(st.text(), _numbers, _numbers), max_size=6),
    flush_id=st.none() | st.integers(min_value=0, max_value=2**40),
)
def test_the_spliced_timestamps_frame_is_the_generic_encoding(kind, context_id, timing, flush_id):
    labels, start, end = zip(*timing, strict=True) if timing else ((), (), ())
    event = kind(context_id, labels, start, end, flush_id)
    assert encode_event(event) == dumps(event_to_wire(event))


@settings(max_examples=200, deadline=None)
@given(context_id=st.text(), flush_id=st.integers(min_value=0, max_value=2**70))
def test_the_spliced_flush_done_and_done_frames_are_the_generic_encoding(context_id, flush_id):
    for event in (FlushDone(context_id, flush_id), Done(context_id)):
        assert encode_event(event) == dumps(event_to_wire(event))


@settings(max_examples=200, deadline=None)
@given(
    context_id=st.text(),
    audio=st.binary(max_size=64),
    flush_id=st.none() | st.integers(min_value=0, max_value=2**40),
    step_time=st.none() | _numbers,
)
def test_a_chunk_frame_is_its_prefix_its_base64_audio_and_its_suffix(
    context_id, audio, flush_id, step_time
):
    spliced = (
        chunk_prefix(context_id)
        + binascii.b2a_base64(audio, newline=False).decode()
        + chunk_suffix(flush_id, step_time)
    )
    assert spliced == dumps(event_to_wire(Chunk(context_id, audio, flush_id, step_time)))


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 2600, 65535, 65536, 70000])
def test_the_outbox_frames_a_text_payload_as_websockets_does(size):
    payload = b"x" * size
    expected = Frame(Opcode.TEXT, payload).serialize(mask=False, extensions=[])
    assert text_header(size) + payload == expected


# -- the pacer ------------------------------------------------------------------------


async def test_the_pacer_wakes_once_per_batch_of_due_calls():
    # Calls due together that each ask for a later call: one wakeup for the first
    # batch, one for the second, none in between (the timer is armed once the
    # batch has run, not at calls of the same batch still waiting to run).
    pacer = Pacer(window=0.001)
    loop = asyncio.get_running_loop()
    fire, fires = pacer._fire, []
    pacer._fire = lambda loop: (fires.append(loop.time()), fire(loop))
    first, second = loop.time() + 0.01, loop.time() + 0.05
    done = asyncio.Event()
    later: list[int] = []

    def again(i: int) -> None:
        later.append(i)
        if len(later) == 5:
            done.set()

    for i in range(5):
        pacer.call_at(first, lambda i=i: pacer.call_at(second, lambda: again(i)))
    await done.wait()
    assert later == [0, 1, 2, 3, 4]
    assert len(fires) == 2
    assert fires[0] >= first
    assert fires[1] >= second


async def test_after_tick_runs_once_the_wakeups_calls_have_run():
    pacer = Pacer()
    loop = asyncio.get_running_loop()
    order: list[str] = []
    done = asyncio.Event()
    due = loop.time() + 0.005
    assert not pacer.after_tick(lambda: None)  # not inside a wakeup: nothing is kept
    pacer.call_at(due, lambda: (order.append("a"), pacer.after_tick(done.set)))
    pacer.call_at(due, lambda: order.append("b"))
    pacer.call_at(due, lambda: pacer.after_tick(lambda: order.append("after")))
    await done.wait()
    assert order == ["a", "b", "after"]


# -- over a real socket: what is written, and what the client reads ---------------------


class Writes(list):
    """The writes of the emulator's sockets: each the payloads of the text frames in it."""

    def __init__(self, raw: list[bytes]):
        super().__init__()
        for data in raw:
            if data.startswith(b"HTTP/"):
                continue  # the handshake's response
            payloads, at = [], 0
            while at < len(data):
                opcode, size, at = data[at] & 0x0F, data[at + 1] & 0x7F, at + 2
                assert data[at - 2] & 0x80, "no fragments"
                if size == 126:
                    size, at = int.from_bytes(data[at : at + 2], "big"), at + 2
                elif size == 127:
                    size, at = int.from_bytes(data[at : at + 8], "big"), at + 8
                if opcode == 1:
                    payloads.append(data[at : at + size])
                at += size
            if payloads:
                self.append(payloads)


@pytest.fixture
async def server_writes(monkeypatch, make_emulator):
    """An emulator, and a function that returns what its sockets wrote so far (`Writes`)."""
    emu = await make_emulator(pacing=Pacing(first_chunk_ms=5, speed=10.0, chunk_ms=20))
    raw: list[bytes] = []
    async with connect_raw(emu) as probe:
        transport_type = type(probe.transport)
    write = transport_type.write

    def recording(transport, data):
        if transport.get_extra_info("sockname")[1] == emu.port:
            raw.append(bytes(data))
        return write(transport, data)

    monkeypatch.setattr(transport_type, "write", recording)
    return emu, lambda: Writes(raw)


def kind(payload: bytes) -> tuple[str, str]:
    message = json.loads(payload)
    return message["type"], message.get("context_id")


async def test_a_chunk_and_the_timestamps_it_completes_go_out_in_one_write(server_writes):
    emu, written = server_writes
    text = "Stay hungry, stay foolish. The rest follows, word by word, in order!"
    async with connect_raw(emu) as ws:
        await ws.send(
            wire("c1", text, cont=False, add_timestamps=True, add_phoneme_timestamps=True)
        )
        received = []
        async with asyncio.timeout(10):
            while not received or kind(received[-1])[0] != "done":
                received.append((await ws.recv()).encode())
    # Exactly the frames written, in order: what the client read is what went out.
    writes = written()
    assert [payload for write in writes for payload in write] == received
    events = [json.loads(p) for p in received]
    audio = b"".join(binascii.a2b_base64(e["data"]) for e in events if e["type"] == "chunk")
    speech = VOICE_MODEL.synthesize(text, 24000)
    assert audio == encode_float(speech.samples, "pcm_s16le")
    for key, label, spans in (
        ("word_timestamps", "words", speech.words),
        ("phoneme_timestamps", "phonemes", speech.phonemes),
    ):
        timed = [t for e in events if key in e for t in zip(*e[key].values(), strict=True)]
        assert next(e[key].keys() for e in events if key in e) == {label, "start", "end"}
        assert timed == [(span.text, span.start, span.end) for span in spans]
    # Timestamps never cost a write of their own: each follows its chunk in that write.
    for write in writes:
        kinds = [kind(p)[0] for p in write]
        assert kinds[0] not in ("timestamps", "phoneme_timestamps"), kinds
    assert len(writes) < len(received)
    assert any(len(write) > 1 for write in writes)


async def test_chunks_of_two_contexts_of_one_socket_due_together_share_a_write(server_writes):
    emu, written = server_writes
    # A wide window: both contexts' chunks are due in the same wakeups even on a
    # slow machine, so what they share is certain.
    emu.pacer = Pacer(window=0.05)
    texts = {"a": "Alpha speaks at the same time as bravo.", "b": "Bravo answers, just as fast."}
    events, ended = [], set()
    async with connect_raw(emu) as ws:
        for context_id, text in texts.items():
            await ws.send(wire(context_id, text, cont=False, add_timestamps=True))
        async with asyncio.timeout(10):
            while ended != set(texts):
                events.append(event := parse_event(await ws.recv()))
                if isinstance(event, Done):
                    ended.add(event.context_id)
    for context_id, text in texts.items():
        own = [e for e in events if e.context_id == context_id]
        audio = b"".join(e.audio for e in own if isinstance(e, Chunk))
        assert audio == encode_float(VOICE_MODEL.synthesize(text, 24000).samples, "pcm_s16le")
        assert [w for e in own if isinstance(e, Timestamps) for w in e.words] == text.split()
        assert own[-1].type == "done"
    chunks_by_write = [{kind(p)[1] for p in w if kind(p)[0] == "chunk"} for w in written()]
    assert {"a", "b"} in chunks_by_write, "some write carries chunks of both contexts"


# -- laid out once: the next piece's layout is made ahead and used -----------------------


class CountingVoice(SyntheticVoice):
    """The synthetic voice, counting the layouts it makes."""

    def __init__(self):
        super().__init__()
        self.layouts: list[str] = []

    def layout(self, text, sample_rate, **kwargs):
        self.layouts.append(text)
        return super().layout(text, sample_rate, **kwargs)


async def test_each_piece_is_laid_out_once_and_sounds_as_the_voice_says(make_emulator):
    voice = CountingVoice()
    emu = await make_emulator(voice=voice, pacing=Pacing(first_chunk_ms=0, speed=50.0))
    long_answer = " ".join(f"word{i % 37}," if i % 9 == 8 else f"w{i % 23}" for i in range(300))
    generations = [long_answer + ". ", "And a short one after it."]
    conn = await CartesiaConnection.connect(api_key="k", url=emu.url)
    fmt = {"container": "raw", "encoding": "pcm_f32le", "sample_rate": 16000}
    ctx = new_context(conn, output_format=fmt, add_phoneme_timestamps=True)
    for text in generations:
        await ctx.push(text)
        await ctx.flush()
    await ctx.no_more_inputs()
    events = await collect(ctx)
    await conn.close()
    spoken = emu.record.context(ctx.context_id).generations
    assert [text.strip() for text in spoken] == [text.strip() for text in generations]
    pieces = [piece for text in spoken for piece in _pieces(text)]
    assert len(pieces) >= 4
    # Each piece is rendered on its own, from where the one before ended.
    audio, words, phonemes, offset = b"", [], [], 0
    for piece in pieces:
        speech = voice.synthesize(piece, 16000, offset_samples=offset)
        offset += len(speech.samples)
        audio += encode_float(speech.samples, "pcm_f32le")
        words += [(s.text, s.start, s.end) for s in speech.words]
        phonemes += [(s.text, s.start, s.end) for s in speech.phonemes]
    assert b"".join(e.audio for e in events if isinstance(e, Chunk)) == audio
    assert [
        t
        for e in events
        if isinstance(e, Timestamps)
        for t in zip(e.words, e.start, e.end, strict=True)
    ] == words
    assert [
        t
        for e in events
        if isinstance(e, PhonemeTimestamps)
        for t in zip(e.phonemes, e.start, e.end, strict=True)
    ] == phonemes
    # One layout per piece: by the piece before, ahead of time, or (the first) when due;
    # the synthesize calls above come after.
    assert voice.layouts[: len(pieces)] == pieces


def test_a_voice_changed_after_use_lays_text_out_with_its_new_timing():
    voice = SyntheticVoice()
    text = "Timing follows the knobs."
    before = voice.layout(text, 24000)
    voice.letter_s *= 2
    after = voice.layout(text, 24000)
    assert after.samples > before.samples
    assert after == SyntheticVoice(letter_s=voice.letter_s).layout(text, 24000)


async def test_a_client_that_stops_reading_gets_every_frame_in_order_once_it_reads(
    make_emulator,
):
    # The pump stops at a full socket and the task waits for the client; nothing
    # waiting in the outbox is lost or overtaken on the way.
    emu = await make_emulator(pacing=Pacing(first_chunk_ms=0, speed=float("inf"), chunk_ms=20))
    # ~10 MB of frames: more than the sockets' buffers hold, so the emulator waits.
    text = " ".join(["Many words fill the socket before anyone reads them."] * 40)
    async with connect_raw(emu) as ws:
        ws.transport.pause_reading()
        await ws.send(wire("slow", text, cont=False, add_timestamps=True))
        await emu.record.wait_for(lambda r: "slow" in r.contexts and r.context("slow").events)
        ws.transport.resume_reading()
        events = await read_until(ws, ends("slow"), timeout=30)
    audio = b"".join(e.audio for e in events if isinstance(e, Chunk))
    assert audio == encode_float(VOICE_MODEL.synthesize(text, 24000).samples, "pcm_s16le")
    assert [w for e in events if isinstance(e, Timestamps) for w in e.words] == text.split()
    assert emu.record.context("slow").events == [e.type for e in events]


# -- rendering: off the loop, one render at a time ---------------------------------------


class WatchedVoice(SyntheticVoice):
    """The synthetic voice, noting where and how many at once it renders words."""

    def __init__(self):
        super().__init__()
        self._lock = threading.Lock()
        self.running = 0
        self.most = 0
        self.threads: set[str] = set()

    def encode(self, layout, encoding, *, render=True):
        if not render:
            return super().encode(layout, encoding, render=False)
        with self._lock:
            self.running += 1
            self.most = max(self.most, self.running)
            self.threads.add(threading.current_thread().name)
        try:
            return super().encode(layout, encoding)
        finally:
            with self._lock:
                self.running -= 1


async def test_words_never_heard_are_rendered_off_the_loop_one_render_at_a_time(make_emulator):
    # More render threads would not render faster, only take the GIL from the
    # loop that sends every stream's chunks.
    voice = WatchedVoice()
    emu = await make_emulator(voice=voice)
    texts = [f"Stream {i} says words never said before: zork{i} quib{i} flam{i}." for i in range(6)]
    conns = [await CartesiaConnection.connect(api_key="k", url=emu.url) for _ in texts]
    contexts = [new_context(conn) for conn in conns]
    for ctx, text in zip(contexts, texts, strict=True):
        await ctx.push(text)
        await ctx.no_more_inputs()
    results = await asyncio.gather(*(collect(ctx) for ctx in contexts))
    for conn in conns:
        await conn.close()
    for events, text in zip(results, texts, strict=True):
        audio = b"".join(e.audio for e in events if isinstance(e, Chunk))
        assert audio == encode_float(VOICE_MODEL.synthesize(text, 24000).samples, "pcm_s16le")
    assert voice.most == 1
    assert voice.threads == {"emulator-render_0"}
