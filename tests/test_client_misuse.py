"""Two receivers on one context: the second fails at once, the first keeps every event.

A reported defect: two concurrent ``receive()`` on one context let one of them
take every event while the other waited forever. Now the second one raises
`ConcurrentReceiveError` at its first step, and a receiver that stops (breaks
out, is closed, is cancelled, times out) frees the context for the next one,
which goes on from the next event. Real loopback sockets, the emulator.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
from helpers import collect, new_context

from pipecat_cartesia_ctx.client import CartesiaConnection, EventStream
from pipecat_cartesia_ctx.protocol import (
    CartesiaAPIError,
    CartesiaError,
    Chunk,
    ConcurrentReceiveError,
    ContextPhase,
    Done,
    FlushDone,
)

FIRST, SECOND = "Stay hungry, ", "stay foolish."


def audio(events) -> bytes:
    return b"".join(e.audio for e in events if isinstance(e, Chunk))


def same_as(events, reference) -> bool:
    """The same events (bytes, words, flush ids, order), whatever the context id and timing."""

    def normal(event):
        timing = {"step_time": None} if isinstance(event, Chunk) else {}
        return replace(event, context_id="-", **timing)

    return [normal(e) for e in events] == [normal(e) for e in reference]


def step_at_once(stream: EventStream):
    """Run a stream's first step without letting the event loop run: it must not wait."""
    return anext(stream).send(None)


async def send_two_segments(ctx) -> None:
    """Both segments and the close, at once."""
    await ctx.push(FIRST)
    await ctx.flush()
    await ctx.push(SECOND)
    await ctx.no_more_inputs()


async def two_segments(conn: CartesiaConnection, **kwargs):
    """A context given both segments at once, and every event of it, read by a lone receiver."""
    ctx = new_context(conn, **kwargs)
    await send_two_segments(ctx)
    return await collect(ctx)


async def test_the_second_of_two_concurrent_receives_fails_and_the_first_gets_everything(conn):
    reference = await two_segments(conn)
    ctx = new_context(conn)
    first, second = ctx.receive(timeout=10), ctx.receive(timeout=10)
    # Both iterate before any event exists: the user's report, two tasks reading one context.
    results = asyncio.gather(collect_stream(first), collect_stream(second), return_exceptions=True)
    await send_two_segments(ctx)
    got, refused = await results

    assert isinstance(refused, ConcurrentReceiveError)
    assert refused.context_id == ctx.context_id
    assert same_as(got, reference)
    assert len(audio(got)) > 0
    assert isinstance(got[-1], Done)
    assert sum(isinstance(e, FlushDone) for e in got) == 1


async def collect_stream(stream: EventStream) -> list:
    return [event async for event in stream]


async def test_the_second_receive_fails_at_its_first_step_without_waiting(conn):
    ctx = new_context(conn, max_buffer_delay_ms=5000)
    await ctx.push(FIRST)
    await ctx.flush()
    events: list = []
    segment_done = asyncio.Event()

    async def first_receiver():
        async for event in ctx.receive(timeout=10):
            events.append(event)
            if isinstance(event, FlushDone):
                segment_done.set()  # and goes on waiting for the next event

    task = asyncio.create_task(first_receiver())
    await segment_done.wait()
    late = ctx.receive(timeout=10)
    with pytest.raises(ConcurrentReceiveError, match="already iterating") as info:
        step_at_once(late)  # raises before any await: no event loop turn needed
    with pytest.raises(StopAsyncIteration):
        await anext(late)  # a refused stream stays ended, like a failed generator
    await ctx.push(SECOND)
    await ctx.no_more_inputs()
    await task

    reference = await two_segments(conn, max_buffer_delay_ms=5000)
    assert same_as(events, reference)
    assert isinstance(events[-1], Done)
    assert info.value.status_code is None
    assert info.value.error_code == "concurrent_receive"


def test_the_error_is_a_local_misuse_error_of_our_hierarchy():
    error = ConcurrentReceiveError("busy", context_id="c")
    assert isinstance(error, CartesiaError)
    assert isinstance(error, RuntimeError)  # what an async generator raises when re-entered
    assert not isinstance(error, CartesiaAPIError)  # nothing the server said
    assert (error.status_code, error.error_code) == (None, "concurrent_receive")


async def test_a_receive_after_breaking_out_goes_on_from_the_next_event(conn):
    reference = await two_segments(conn)
    ctx = new_context(conn)
    await send_two_segments(ctx)
    heads = []
    async for event in ctx.receive(timeout=10):
        heads.append(event)
        break  # drops the stream unclosed: the context must be free at once
    rest = await collect(ctx)
    assert [type(e) for e in heads] == [Chunk]
    assert same_as(heads + rest, reference)


async def test_a_closed_stream_frees_the_context_and_an_open_one_holds_it(conn):
    reference = await two_segments(conn)
    ctx = new_context(conn)
    await send_two_segments(ctx)
    held = ctx.receive(timeout=10)
    head = await anext(held)
    with pytest.raises(ConcurrentReceiveError):
        step_at_once(ctx.receive())  # `held` may still go on: it owns the context
    await held.aclose()
    with pytest.raises(StopAsyncIteration):
        await anext(held)
    rest = await collect(ctx)
    assert same_as([head, *rest], reference)
    assert isinstance(rest[-1], Done)


async def test_a_stream_never_iterated_does_not_hold_the_context(conn):
    ctx = new_context(conn)
    await ctx.push(FIRST + SECOND)
    await ctx.no_more_inputs()
    idle = ctx.receive(timeout=10)  # created, never advanced
    events = await collect(ctx)
    assert isinstance(events[-1], Done)
    assert len(audio(events)) > 0
    assert [e async for e in idle] == []  # the context has ended meanwhile


@pytest.mark.parametrize("how", ["task.cancel", "asyncio.timeout"])
async def test_a_receiver_cancelled_while_waiting_frees_the_context_and_loses_nothing(conn, how):
    reference = await two_segments(conn, max_buffer_delay_ms=5000)
    ctx = new_context(conn, max_buffer_delay_ms=5000)
    await ctx.push(FIRST)
    await ctx.flush()
    before: list = []

    async def receiver(segment_done):
        async for event in ctx.receive():
            before.append(event)
            if isinstance(event, FlushDone):
                segment_done()  # then waits: nothing more is ready

    if how == "task.cancel":
        segment_done = asyncio.Event()
        task = asyncio.create_task(receiver(segment_done.set))
        await segment_done.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    else:

        async def receiver_in_timeout():
            async with asyncio.timeout(None) as deadline:
                # Due now: it fires at the receiver's next wait, whatever the machine's speed.
                now = asyncio.get_running_loop().time
                await receiver(lambda: deadline.reschedule(now()))

        with pytest.raises(TimeoutError):
            await receiver_in_timeout()
    await ctx.push(SECOND)
    await ctx.no_more_inputs()
    after = await collect(ctx)

    assert isinstance(before[-1], FlushDone)
    assert same_as(before + after, reference)
    assert {e.flush_id for e in after if isinstance(e, Chunk)} == {2}


async def test_one_stream_shared_by_two_tasks_refuses_the_second(conn):
    reference = await two_segments(conn, max_buffer_delay_ms=5000)
    ctx = new_context(conn, max_buffer_delay_ms=5000)
    await ctx.push(FIRST)  # nothing ready: the first task will wait
    stream = ctx.receive(timeout=10)
    started = asyncio.Event()

    async def first_step():
        started.set()
        return await anext(stream)  # runs on, with no await between, into the wait

    waiting = asyncio.create_task(first_step())
    await started.wait()
    with pytest.raises(ConcurrentReceiveError, match="another task"):
        step_at_once(stream)
    await ctx.flush()
    await ctx.push(SECOND)
    await ctx.no_more_inputs()
    head = await waiting
    rest = await collect_stream(stream)  # the stream itself is unharmed
    assert same_as([head, *rest], reference)


async def test_receive_after_done_and_after_cancel_ends_at_once(conn):
    done = new_context(conn)
    await done.push(FIRST + SECOND)
    await done.no_more_inputs()
    assert isinstance((await collect(done))[-1], Done)
    assert await collect(done) == []
    assert await collect(done) == []  # and again: nothing holds the context

    cancelled = new_context(conn, max_buffer_delay_ms=5000)
    await cancelled.push("never ready")
    waiting = asyncio.create_task(collect(cancelled))
    await cancelled.cancel()
    assert await waiting == []
    assert await collect(cancelled) == []
    assert cancelled.phase is ContextPhase.CANCELLED
