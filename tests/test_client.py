"""The asyncio client: routing, drops, errors, timeouts and misuse, over real loopback sockets.

Most tests run against the emulator; routing edge cases the emulator never
produces (events for contexts nobody opened, stray late events, context-less
errors, unknown types) come from a small scripted server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket

import pytest
from helpers import S16_24K, VOICE, collect, new_context
from websockets.asyncio.server import serve

from pipecat_cartesia_ctx.audio import encode_float
from pipecat_cartesia_ctx.client import CartesiaConnection
from pipecat_cartesia_ctx.emulator import Pacing, SyntheticVoice
from pipecat_cartesia_ctx.protocol import (
    CartesiaConnectionError,
    CartesiaTimeoutError,
    Chunk,
    ContextClosedError,
    ContextPhase,
    Done,
    Error,
    FlushDone,
    InvalidRequestError,
    encode_event,
)


@contextlib.asynccontextmanager
async def scripted_server(script):
    """A WebSocket server whose handler is ``script(ws, first_request)``."""

    async def handler(ws):
        first = json.loads(await ws.recv())
        await script(ws, first)
        with contextlib.suppress(Exception):
            await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        yield f"ws://127.0.0.1:{port}/tts/websocket"


async def send_events(ws, *events):
    for event in events:
        await ws.send(event if isinstance(event, str) else encode_event(event))


# -- routing and drops ----------------------------------------------------------


async def test_events_of_unknown_contexts_are_dropped_and_counted_never_rerouted():
    async def script(ws, first):
        mine = first["context_id"]
        await send_events(
            ws,
            Chunk("stranger", b"\x01\x00"),
            Done("stranger"),
            Chunk(mine, b"\x02\x00", 1),
            Done(mine),
        )

    async with scripted_server(script) as url, await CartesiaConnection.connect("k", url) as conn:
        ctx = new_context(conn)
        await ctx.push("Hi.")
        events = await collect(ctx)
        assert events == [Chunk(ctx.context_id, b"\x02\x00", 1), Done(ctx.context_id)]
        assert conn.dropped["unknown_context"] == 2


async def test_a_stray_done_after_cancel_does_not_end_another_context():
    """The official sync SDK hands this to the current reader; we drop it."""
    released = asyncio.Event()

    async def script(ws, first):
        victim = first["context_id"]
        cancel = json.loads(await ws.recv())
        assert cancel == {"context_id": victim, "cancel": True}
        other = json.loads(await ws.recv())["context_id"]
        # The cancelled context's audio keeps coming, then its done.
        await send_events(ws, Chunk(victim, b"\x00\x00", 1), Done(victim))
        await released.wait()
        await send_events(ws, Chunk(other, b"\x05\x00", 1), Done(other))

    async with scripted_server(script) as url, await CartesiaConnection.connect("k", url) as conn:
        victim = new_context(conn)
        await victim.push("Interrupted.")
        await victim.cancel()
        other = new_context(conn)
        await other.push("Next turn.")
        released.set()
        first = await anext(aiter(other.receive(timeout=5)))
        assert first == Chunk(other.context_id, b"\x05\x00", 1)
        assert conn.dropped["cancelled_context"] == 2
        assert victim.phase is ContextPhase.CANCELLED
        assert [e async for e in victim.receive(timeout=1)] == []


async def test_late_events_after_done_are_counted_as_finished():
    async def script(ws, first):
        cid = first["context_id"]
        await send_events(ws, Done(cid), Chunk(cid, b"\x00\x00"), FlushDone(cid, 1))
        probe = json.loads(await ws.recv())["context_id"]
        await send_events(ws, Done(probe))

    async with scripted_server(script) as url, await CartesiaConnection.connect("k", url) as conn:
        ctx = new_context(conn)
        await ctx.push("Hi.")
        assert await collect(ctx) == [Done(ctx.context_id)]
        # The reader handles frames in order: once the probe is done, the strays were seen.
        probe = new_context(conn)
        await probe.push("Probe.")
        assert await collect(probe) == [Done(probe.context_id)]
        assert conn.dropped == {"finished_context": 2}


@pytest.mark.parametrize("waiting", [1, 2])
async def test_an_error_naming_no_context_goes_to_the_only_waiting_context(waiting):
    error = Error(status_code=402, error_code="quota_exceeded", message="no credits")

    async def script(ws, first):
        ids = [first["context_id"]]
        for _ in range(waiting - 1):
            ids.append(json.loads(await ws.recv())["context_id"])
        await send_events(ws, error, *(Done(cid) for cid in ids))

    async with scripted_server(script) as url, await CartesiaConnection.connect("k", url) as conn:
        contexts = [new_context(conn) for _ in range(waiting)]
        for ctx in contexts:
            await ctx.push("Hi.")
        results = [await collect(ctx) for ctx in contexts]
        if waiting == 1:
            assert results == [[error]], "unambiguous: it is that context's error"
            assert list(conn.errors) == []
        else:
            # Ambiguous: no innocent context is killed; the error is kept on the connection.
            assert results == [[Done(c.context_id)] for c in contexts]
            assert list(conn.errors) == [error]


async def test_unknown_types_and_malformed_frames_are_skipped():
    async def script(ws, first):
        cid = first["context_id"]
        await send_events(
            ws,
            json.dumps({"type": "future_event", "context_id": cid}),
            "{broken",
            json.dumps({"type": "chunk", "context_id": cid}),
            Chunk(cid, b"\x07\x00", 1),
            Done(cid),
        )

    async with scripted_server(script) as url, await CartesiaConnection.connect("k", url) as conn:
        ctx = new_context(conn)
        await ctx.push("Hi.")
        assert await collect(ctx) == [Chunk(ctx.context_id, b"\x07\x00", 1), Done(ctx.context_id)]
        assert conn.dropped == {"unknown_type": 1, "malformed": 2}


async def test_many_contexts_on_one_connection_each_get_exactly_their_audio(make_emulator):
    emu = await make_emulator(pacing=Pacing(first_chunk_ms=0, speed=50.0, chunk_ms=20))
    voice = SyntheticVoice()
    texts = [f"Context number {i} says {'hello ' * (i % 4 + 1)}." for i in range(16)]
    async with await CartesiaConnection.connect("k", emu.url) as conn:
        contexts = [new_context(conn, context_id=f"c{i}") for i in range(len(texts))]
        for ctx, text in zip(contexts, texts, strict=True):
            await ctx.push(text)
            await ctx.no_more_inputs()
        results = await asyncio.gather(*(collect(ctx) for ctx in contexts))
        assert sum(conn.dropped.values()) == 0
    for text, events in zip(texts, results, strict=True):
        audio = b"".join(e.audio for e in events if isinstance(e, Chunk))
        assert audio == encode_float(voice.synthesize(text, 24000).samples, "pcm_s16le")


# -- misuse gets clear, typed errors --------------------------------------------


async def test_push_after_no_more_inputs_raises_and_sends_nothing(emu, conn):
    ctx = new_context(conn)
    await ctx.push("Hello.")
    await ctx.no_more_inputs()
    await ctx.no_more_inputs()  # a second call is a no-op
    with pytest.raises(ContextClosedError, match="closing") as info:
        await ctx.push("Too late.")
    assert info.value.context_id == ctx.context_id
    with pytest.raises(ContextClosedError):
        await ctx.flush()
    assert isinstance((await collect(ctx))[-1], Done)
    assert [i.kind for i in emu.record.context(ctx.context_id).inputs] == ["push", "close"]


async def test_push_after_cancel_raises(conn):
    ctx = new_context(conn)
    await ctx.push("Hello.")
    await ctx.cancel()
    await ctx.cancel()  # idempotent
    with pytest.raises(ContextClosedError, match="cancelled"):
        await ctx.push("More.")


async def test_invalid_arguments_are_refused_before_anything_is_sent(emu, conn):
    with pytest.raises(InvalidRequestError, match="encoding"):
        conn.context(
            model_id="sonic-3", voice=VOICE, output_format={"encoding": "mp3", "sample_rate": 24000}
        )
    with pytest.raises(InvalidRequestError, match="max_buffer_delay_ms"):
        new_context(conn, max_buffer_delay_ms=9000)
    ctx = new_context(conn, context_id="dup")
    with pytest.raises(InvalidRequestError, match="already used"):
        new_context(conn, context_id="dup")
    with pytest.raises(TypeError):
        await ctx.push(b"bytes")
    with pytest.raises(InvalidRequestError, match="speed"):
        await ctx.push("x", generation_config={"speed": 9})
    assert emu.record.contexts == {}


async def test_receive_times_out_with_a_typed_error_and_can_resume(emu, conn):
    ctx = new_context(conn, max_buffer_delay_ms=5000)
    await ctx.push("no sentence end yet")
    with pytest.raises(CartesiaTimeoutError) as info:
        await collect(ctx, timeout=0.2)
    assert info.value.context_id == ctx.context_id
    await ctx.flush()
    await ctx.no_more_inputs()
    events = await collect(ctx)
    assert isinstance(events[-1], Done)


async def test_cancel_ends_a_waiting_receive_promptly(conn):
    ctx = new_context(conn, max_buffer_delay_ms=5000)
    await ctx.push("never ready")
    waiter = asyncio.create_task(collect(ctx, timeout=10))
    await asyncio.sleep(0)  # let it start waiting
    await ctx.cancel()
    assert await asyncio.wait_for(waiter, 1.0) == []


async def test_receive_after_the_end_returns_at_once(conn):
    ctx = new_context(conn)
    await ctx.push("Short.")
    await ctx.no_more_inputs()
    assert isinstance((await collect(ctx))[-1], Done)
    assert await asyncio.wait_for(collect(ctx), 1.0) == []
    assert ctx.phase is ContextPhase.DONE


async def test_a_closed_connection_refuses_new_work(conn):
    ctx = new_context(conn)
    await conn.close()
    assert conn.closed
    assert conn.close_code == 1000
    with pytest.raises(CartesiaConnectionError):
        new_context(conn)
    with pytest.raises(CartesiaConnectionError):
        await ctx.push("Hi.")
    await ctx.cancel()  # safe


async def test_an_unreachable_server_is_a_connection_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(CartesiaConnectionError, match="cannot connect"):
        await CartesiaConnection.connect(
            "k", f"ws://127.0.0.1:{port}/tts/websocket", open_timeout=2
        )


async def test_the_key_never_shows_in_repr_urls_or_errors(emu):
    url = emu.url + "?api_key=leaky-key"
    async with await CartesiaConnection.connect("header-key-1", url) as conn:
        assert "leaky-key" not in conn.url
        assert "leaky-key" not in repr(conn)
        assert "header-key-1" not in repr(conn)
        assert "header-key-1" not in repr(conn.__dict__)
    with pytest.raises(CartesiaConnectionError) as info:
        await CartesiaConnection.connect("k", "ws://127.0.0.1:1/tts/websocket?api_key=leaky-key")
    assert "leaky-key" not in str(info.value)
    with pytest.raises(CartesiaConnectionError) as info:
        await CartesiaConnection.connect("k", "http://127.0.0.1/tts/websocket?api_key=leaky-key")
    assert "InvalidURI" in str(info.value)
    assert "leaky-key" not in str(info.value)


async def test_generation_config_can_change_per_push(emu, conn):
    ctx = conn.context(
        model_id="sonic-3", voice=VOICE, output_format=S16_24K, generation_config={"speed": 1.0}
    )
    await ctx.push("One. ")
    await ctx.push("Two.", generation_config={"speed": 1.2, "emotion": "excited"})
    await ctx.no_more_inputs()
    await collect(ctx)
    sent = [r.get("generation_config") for r in emu.record.context(ctx.context_id).requests]
    assert sent == [{"speed": 1.0}, {"speed": 1.2, "emotion": "excited"}, {"speed": 1.0}]
