"""Errors, auth, limits, idle timeout, cancel and faults of the emulator, over real sockets."""

from __future__ import annotations

import asyncio
import itertools
import json
import time

import pytest
from helpers import S16_24K, VOICE, collect, new_context
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from wire_helpers import connect_raw, ends, read_until, wire

from pipecat_cartesia_ctx.client import CartesiaConnection
from pipecat_cartesia_ctx.emulator import Behavior, CancelBehavior, InjectedError, Pacing
from pipecat_cartesia_ctx.protocol import (
    AuthenticationError,
    CartesiaConnectionError,
    Chunk,
    ConcurrencyLimitError,
    ContextClosedError,
    ContextFieldChangedError,
    Done,
    Error,
    ModelNotFoundError,
    RateLimitError,
    ServerError,
    parse_event,
)

LONG_TEXT = (
    "This is a long answer that keeps the voice busy for a while, "
    "so that there is time to interrupt it in the middle of a sentence. "
)
SLOW = Pacing(first_chunk_ms=0, speed=1.0, chunk_ms=100)


# -- error events: they end the context, not the socket ----------------------


async def test_input_to_a_closed_or_finished_context_is_an_error_event(emu):
    async with connect_raw(emu) as ws:
        await ws.send(wire("done-ctx", "Hello.", cont=False))
        await read_until(ws, ends("done-ctx"))
        await ws.send(wire("done-ctx", "More."))
        [error] = await read_until(ws, ends("done-ctx"))
        assert (error.status_code, error.error_code, error.context_id) == (
            400,
            "context_closed",
            "done-ctx",
        )
        assert isinstance(error.exception(), ContextClosedError)

        await ws.send(wire("closing", LONG_TEXT, cont=False))
        await ws.send(wire("closing", "Too late."))
        events = await read_until(ws, ends("closing"))
        assert isinstance(events[-1], Error)
        assert events[-1].error_code == "context_closed"

        # The socket is fine: another context runs to done on it.
        await ws.send(wire("after", "Still here.", cont=False))
        assert isinstance((await read_until(ws, ends("after")))[-1], Done)
    assert emu.record.context("closing").errors[0]["error_code"] == "context_closed"


async def test_changing_a_locked_field_is_an_error_event_for_that_context_only(emu):
    async with connect_raw(emu) as ws:
        await ws.send(wire("other", LONG_TEXT))
        await ws.send(wire("locked", "Hi "))
        changed = {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 8000}
        await ws.send(wire("locked", "there.", output_format=changed, language="fr"))
        events = await read_until(ws, ends("locked"))
        error = events[-1]
        assert isinstance(error.exception(), ContextFieldChangedError)
        assert "output_format" in error.message
        assert "language" in error.message
        await ws.send(wire("other", "", cont=False))
        rest = await read_until(ws, ends("other"))
        assert isinstance(rest[-1], Done), "the other context on the socket is untouched"
    other = emu.record.context("other")
    assert other.done
    assert other.errors == []


async def test_an_unknown_model_is_model_not_found_and_the_connection_goes_on(conn):
    bad = conn.context(model_id="whisper-1", voice=VOICE, output_format=S16_24K)
    await bad.push("Hello.")
    [event] = await collect(bad)
    assert isinstance(event, Error)
    assert isinstance(event.exception(), ModelNotFoundError)
    assert event.exception().status_code == 400
    good = new_context(conn)
    await good.push("Fine.")
    await good.no_more_inputs()
    assert isinstance((await collect(good))[-1], Done)


async def test_invalid_json_gets_an_error_without_context_and_the_socket_survives(emu):
    async with connect_raw(emu) as ws:
        await ws.send("{not json")
        error = parse_event(await ws.recv())
        assert isinstance(error, Error)
        assert (error.status_code, error.context_id) == (400, None)
        assert error.request_id == emu.record.connections[-1].request_id
        await ws.send(wire("ok", "Works.", cont=False))
        assert isinstance((await read_until(ws, ends("ok")))[-1], Done)


@pytest.mark.parametrize("how", ["query", "header", "query-wins"])
async def test_versions_before_2026_03_01_get_legacy_errors(emu, how):
    url, headers = emu.url, {}
    if how in ("query", "query-wins"):
        url += "?cartesia_version=2024-06-10"
    if how == "header":
        headers["Cartesia-Version"] = "2024-11-13"
    if how == "query-wins":
        headers["Cartesia-Version"] = "2026-03-01"
    async with connect_raw(emu, url, headers) as ws:
        await ws.send(wire("old", "Hi.", model_id="nonexistent"))
        raw = json.loads(await ws.recv())
    assert raw["type"] == "error"
    assert raw["status_code"] == 400
    assert raw["context_id"] == "old"
    assert "Invalid model" in raw["error"]
    assert "title" not in raw
    assert "error_code" not in raw


async def test_structured_errors_carry_every_field(emu):
    async with connect_raw(emu, headers={"Cartesia-Version": "2026-03-01"}) as ws:
        await ws.send(wire("new", "Hi.", model_id="nonexistent"))
        raw = json.loads(await ws.recv())
    assert raw["error_code"] == "model_not_found"
    assert raw["done"] is True
    assert raw["title"]
    assert "nonexistent" in raw["message"]
    assert raw["request_id"].startswith("emu-")


# -- auth ---------------------------------------------------------------------


async def test_wrong_or_missing_key_is_401_on_the_upgrade(make_emulator):
    emu = await make_emulator(api_key="secret-key")
    with pytest.raises(AuthenticationError) as info:
        await CartesiaConnection.connect(api_key="wrong-key-123", url=emu.url)
    assert info.value.status_code == 401
    assert "wrong-key-123" not in str(info.value)
    assert "secret-key" not in str(info.value)
    with pytest.raises(InvalidStatus) as raw:
        await connect(emu.url, additional_headers={"X-API-Key": ""})
    assert raw.value.response.status_code == 401
    assert emu.record.rejected_connections == [(401, "unauthorized"), (401, "unauthorized")]
    assert emu.record.connections == []


async def test_every_documented_way_of_authenticating_is_accepted(make_emulator):
    emu = await make_emulator(api_key="secret-key", access_tokens={"short-lived-token"})
    async with await CartesiaConnection.connect(api_key="secret-key", url=emu.url):
        pass
    for url, headers in [
        (emu.url, {"Authorization": "Bearer secret-key"}),
        (emu.url + "?api_key=secret-key", {}),
        (emu.url + "?access_token=short-lived-token", {}),
        (emu.url, {"Authorization": "Bearer short-lived-token"}),
    ]:
        async with connect(url, additional_headers=headers) as ws:
            await ws.send(wire("c", "Hi.", cont=False))
            assert isinstance((await read_until(ws, ends("c")))[-1], Done)
    await emu.record.wait_for(lambda r: all(c.closed for c in r.connections))
    assert [c.auth for c in emu.record.connections] == [
        "x-api-key",
        "bearer",
        "api_key",
        "access_token",
        "bearer",
    ]


async def test_the_client_sends_its_key_in_a_header_never_in_the_url(make_emulator):
    emu = await make_emulator(api_key="secret-key")
    async with await CartesiaConnection.connect(api_key="secret-key", url=emu.url) as conn:
        assert "secret-key" not in repr(conn)
    record = emu.record.connections[-1]
    assert "secret-key" not in record.path
    assert record.auth == "x-api-key"
    assert record.cartesia_version == "2026-03-01"


# -- limits -------------------------------------------------------------------


async def test_the_concurrency_limit_gives_429_concurrency_limited(make_emulator):
    emu = await make_emulator(max_concurrent_contexts=2, pacing=SLOW)
    async with await CartesiaConnection.connect(api_key="k", url=emu.url) as conn:
        first, second, third = (new_context(conn) for _ in range(3))
        for ctx in (first, second):
            await ctx.push("Hello there.")
        await third.push("One too many.")
        [event] = await collect(third)
        exc = event.exception()
        assert isinstance(exc, ConcurrencyLimitError)
        assert (exc.status_code, exc.error_code, exc.context_id) == (
            429,
            "concurrency_limited",
            third.context_id,
        )
        assert emu.active_contexts == 2
        # A slot frees when a context finishes or is cancelled.
        await first.cancel()
        fourth = new_context(conn)
        await fourth.push("Now there is room.")
        await fourth.no_more_inputs()
        await second.no_more_inputs()
        assert isinstance((await collect(fourth))[-1], Done)
        assert isinstance((await collect(second))[-1], Done)
    assert emu.active_contexts == 0


async def test_the_socket_limit_gives_http_429(make_emulator):
    emu = await make_emulator(max_connections=1)
    async with await CartesiaConnection.connect(api_key="k", url=emu.url):
        with pytest.raises(RateLimitError) as info:
            await CartesiaConnection.connect(api_key="k", url=emu.url)
        assert info.value.status_code == 429
        assert info.value.error_code == "too_many_connections"
    await emu.record.wait_for(lambda r: emu.connections == 0)
    async with await CartesiaConnection.connect(api_key="k", url=emu.url) as conn:
        assert not conn.closed


async def test_sockets_are_capped_at_ten_times_the_concurrency(make_emulator):
    emu = await make_emulator(max_concurrent_contexts=3)
    assert emu.max_connections == 30


async def test_an_idle_socket_is_closed_with_1000_connection_idle_timeout(make_emulator):
    emu = await make_emulator(idle_timeout=0.3)
    conn = await CartesiaConnection.connect(api_key="k", url=emu.url)
    ctx = new_context(conn, max_buffer_delay_ms=5000)
    await ctx.push("waiting for a sentence end that never comes")
    with pytest.raises(CartesiaConnectionError) as info:
        await collect(ctx, timeout=5)
    assert (info.value.close_code, info.value.close_reason) == (1000, "connection idle timeout")
    assert conn.closed
    await emu.record.wait_for(lambda r: r.connections[-1].closed)
    assert emu.record.connections[-1].close_reason == "connection idle timeout"


async def test_a_generation_keeps_the_socket_alive(make_emulator):
    emu = await make_emulator(
        idle_timeout=0.3, pacing=Pacing(first_chunk_ms=0, speed=1.0, chunk_ms=50)
    )
    async with await CartesiaConnection.connect(api_key="k", url=emu.url) as conn:
        ctx = new_context(conn)
        await ctx.push("This sentence takes longer to speak than the idle timeout.")
        await ctx.no_more_inputs()
        events = await collect(ctx)
        assert isinstance(events[-1], Done)
        assert not conn.closed


# -- cancel -------------------------------------------------------------------


async def _cancel_after_chunks(conn, n: int):
    ctx = new_context(conn)
    await ctx.push(LONG_TEXT)
    await ctx.flush()
    await ctx.push("A second segment that must never be spoken.")
    await ctx.no_more_inputs()
    seen = 0
    async for event in ctx.receive(timeout=5):
        assert isinstance(event, Chunk | Error | Done) or event.type == "timestamps"
        if isinstance(event, Chunk):
            seen += 1
            if seen == n:
                await ctx.cancel()
    return ctx, seen


async def _settle(conn):
    """Run a whole context after the cancel: the server has sent all it will for the other."""
    after = new_context(conn)
    await after.push("After.")
    await after.no_more_inputs()
    assert isinstance((await collect(after))[-1], Done)


async def test_cancel_chunk_in_flight_stops_after_at_most_one_chunk(make_emulator):
    emu = await make_emulator(pacing=SLOW, behavior=Behavior(cancel=CancelBehavior.CHUNK_IN_FLIGHT))
    async with await CartesiaConnection.connect(api_key="k", url=emu.url) as conn:
        ctx, seen = await _cancel_after_chunks(conn, 3)
        assert seen == 3, "receive() yields nothing after cancel()"
        await _settle(conn)
        await emu.record.wait_for(lambda r: r.context(ctx.context_id).done)
        record = emu.record.context(ctx.context_id)
        assert record.cancelled
        assert record.events_after_cancel in (["done"], ["chunk", "done"])
        assert set(record.audio_bytes) == {1}
        assert record.total_audio_bytes < 24000 * 2 * 2, "stopped long before the segment's end"
        assert conn.dropped["cancelled_context"] >= len(record.events_after_cancel)
        assert emu.active_contexts == 0


async def test_cancel_immediate_sends_nothing_more_and_no_done_when_switched_off(make_emulator):
    emu = await make_emulator(
        pacing=SLOW,
        behavior=Behavior(cancel=CancelBehavior.IMMEDIATE, done_after_cancel=False),
    )
    async with await CartesiaConnection.connect(api_key="k", url=emu.url) as conn:
        ctx, _ = await _cancel_after_chunks(conn, 2)
        await _settle(conn)
    record = emu.record.context(ctx.context_id)
    assert record.events_after_cancel == []
    assert not record.done


async def test_cancel_by_default_finishes_the_segment_then_done_all_dropped_by_the_client(
    make_emulator,
):
    emu = await make_emulator(pacing=Pacing(first_chunk_ms=0, speed=8.0, chunk_ms=100))
    async with await CartesiaConnection.connect(api_key="k", url=emu.url) as conn:
        ctx, seen = await _cancel_after_chunks(conn, 2)
        assert seen == 2
        await emu.record.wait_for(lambda r: r.context(ctx.context_id).done)
        await _settle(conn)
        record = emu.record.context(ctx.context_id)
        after = record.events_after_cancel
        assert "chunk" in after
        assert "timestamps" in after
        assert after[-2:] == ["flush_done", "done"]
        assert record.flush_done_ids == [1]
        assert set(record.audio_bytes) == {1}, "the next segment is never generated"
        assert conn.dropped["cancelled_context"] >= len(after)


async def test_cancel_drops_every_generation_not_begun_even_of_the_same_flush(make_emulator):
    emu = await make_emulator(pacing=SLOW)
    first, second = "The first sentence is being spoken. ", "The second one never begins. "
    async with connect_raw(emu) as ws:
        # Managed buffering: each sentence is ready on its own, both before any flush.
        await ws.send(wire("two", first + second, add_timestamps=True))
        await read_until(ws, lambda e: isinstance(e, Chunk))
        await ws.send(json.dumps({"context_id": "two", "cancel": True}))
        await read_until(ws, ends("two"))
    record = emu.record.context("two")
    assert record.spoken == first.split()
    assert record.words == first.split()
    assert record.flush_done_ids == [], "no flush was sent: nothing to report done"
    assert record.events[-1] == "done"


async def test_cancelling_unknown_or_finished_contexts_is_ignored(emu):
    async with connect_raw(emu) as ws:
        await ws.send(json.dumps({"context_id": "never-seen", "cancel": True}))
        await ws.send(wire("fin", "Done already.", cont=False))
        await read_until(ws, ends("fin"))
        await ws.send(json.dumps({"context_id": "fin", "cancel": True}))
        await ws.send(wire("next", "Next.", cont=False))
        events = await read_until(ws, ends("next"))
        assert all(e.context_id == "next" for e in events)
        assert isinstance(events[-1], Done)


# -- faults and closed sockets --------------------------------------------------


async def test_a_dropped_socket_ends_receive_with_a_typed_error(make_emulator):
    emu = await make_emulator(pacing=SLOW)
    emu.faults.drop_after_chunks = 3
    async with await CartesiaConnection.connect(api_key="k", url=emu.url) as conn:
        ctx = new_context(conn)
        await ctx.push(LONG_TEXT)
        await ctx.no_more_inputs()
        chunks = 0

        async def consume():
            nonlocal chunks
            # The drop ends it, not the timeout (that would be a CartesiaTimeoutError).
            async for event in ctx.receive(timeout=5):
                chunks += isinstance(event, Chunk)

        with pytest.raises(CartesiaConnectionError) as info:
            await consume()
        assert chunks == 3
        assert info.value.close_code == 1006
        assert conn.closed
        with pytest.raises(CartesiaConnectionError):
            await ctx.push("more")
    assert emu.faults.drop_after_chunks is None, "a fault fires once"


@pytest.mark.parametrize("how", ["close", "stop"])
async def test_a_server_side_close_ends_every_waiting_context(make_emulator, how):
    emu = await make_emulator(pacing=SLOW)
    conn = await CartesiaConnection.connect(api_key="k", url=emu.url)
    contexts = [new_context(conn) for _ in range(2)]
    for ctx in contexts:
        await ctx.push(LONG_TEXT)

    async def wait_end(ctx):
        with pytest.raises(CartesiaConnectionError) as info:
            await collect(ctx, timeout=5)
        return info.value

    waiting = [asyncio.create_task(wait_end(ctx)) for ctx in contexts]
    await emu.record.wait_for(lambda r: r.connections[-1].chunks_sent >= 2)
    if how == "close":
        emu.close_connections(code=1011, reason="maintenance")
    else:
        await emu.stop()
    # Each ends with the close, not with its own timeout (a CartesiaTimeoutError).
    errors = await asyncio.gather(*waiting)
    assert {e.close_code for e in errors} == {1011 if how == "close" else 1001}


async def test_a_malformed_frame_is_counted_and_skipped(emu, conn):
    emu.faults.malformed_after_chunks = 2
    ctx = new_context(conn)
    await ctx.push("Some text to speak.")
    await ctx.no_more_inputs()
    events = await collect(ctx)
    assert isinstance(events[-1], Done)
    assert conn.dropped["malformed"] == 1
    assert sum(len(e.audio) for e in events if isinstance(e, Chunk)) == (
        emu.record.context(ctx.context_id).total_audio_bytes
    )


async def test_an_injected_error_ends_one_context_and_spares_the_other(make_emulator):
    emu = await make_emulator(pacing=Pacing(first_chunk_ms=0, speed=20.0, chunk_ms=50))
    emu.faults.error_after_chunks = 1
    emu.faults.error = InjectedError(status_code=503, title="Overloaded", message="try later")
    async with await CartesiaConnection.connect(api_key="k", url=emu.url) as conn:
        victim = new_context(conn)
        await victim.push(LONG_TEXT)
        await victim.no_more_inputs()
        events = await collect(victim)
        assert isinstance(events[-1], Error)
        exc = events[-1].exception()
        assert isinstance(exc, ServerError)
        assert (exc.status_code, exc.title, exc.message) == (503, "Overloaded", "try later")
        survivor = new_context(conn)
        await survivor.push("I am fine.")
        await survivor.no_more_inputs()
        assert isinstance((await collect(survivor))[-1], Done)


async def test_a_stall_holds_the_next_message(emu, conn):
    emu.faults.stall_after_chunks = 1
    emu.faults.stall_ms = 300
    ctx = new_context(conn)
    await ctx.push("Stall after the first chunk please.")
    await ctx.no_more_inputs()
    times = [time.monotonic() async for event in ctx.receive(timeout=5)]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert max(gaps) >= 0.29


async def test_the_record_keeps_requests_and_connections(emu, conn):
    ctx = new_context(conn)
    await ctx.push("Recorded.")
    await ctx.no_more_inputs()
    await collect(ctx)
    record = emu.record.context(ctx.context_id)
    assert [r["transcript"] for r in record.requests] == ["Recorded.", ""]
    assert record.requests[0]["voice"] == {"mode": "id", "id": VOICE}
    assert record.words == ["Recorded."]
    connection = emu.record.connections[-1]
    assert connection.messages_received == 2
    assert connection.chunks_sent == record.events.count("chunk")
