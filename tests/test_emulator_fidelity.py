"""The emulator behaves like Cartesia by default: the rows of the README's fidelity table.

Each test speaks the wire protocol over a real loopback socket, as a third-party
client would, and checks what Cartesia documents or was seen doing (protocol
doc, sections 1 to 4). Cancel rows are in test_emulator_errors.py, buffering and
flush numbering in test_emulator_generation.py.
"""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from helpers import MODEL, S16_24K, VOICE, collect, new_context
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from wire_helpers import connect_raw, ends, read_until, wire

from pipecat_cartesia_ctx.audio import encode_float
from pipecat_cartesia_ctx.emulator import CartesiaEmulator, Pacing, SyntheticVoice
from pipecat_cartesia_ctx.protocol import (
    Chunk,
    Done,
    EmptyTranscriptError,
    Error,
    FlushDone,
    InvalidRequestError,
    ModelNotFoundError,
    Timestamps,
    parse_event,
)

VOICE_MODEL = SyntheticVoice()
F32_44K = {"container": "raw", "encoding": "pcm_f32le", "sample_rate": 44100}
SDK_DEFAULT_VOICE = "6ccbfb76-1fc6-48f7-b71d-91ac6298247b"
LONG_TEXT = (
    "This is a long answer that keeps the voice busy for a while, "
    "so that there is time to do something in the middle of it. "
)
SLOW = Pacing(first_chunk_ms=0, speed=2.0, chunk_ms=50)


def spoken(*texts: str, rate: int = 24000, encoding: str = "pcm_s16le") -> bytes:
    """The audio of consecutive generations of one context."""
    out, offset = b"", 0
    for text in texts:
        samples = VOICE_MODEL.synthesize(text, rate, offset_samples=offset).samples
        offset += len(samples)
        out += encode_float(samples, encoding)
    return out


def audio(events) -> bytes:
    return b"".join(e.audio for e in events if isinstance(e, Chunk))


async def probe(ws, context_id: str = "probe") -> list:
    """Run a whole context on the socket: anything still pending for others arrives first."""
    await ws.send(wire(context_id, "Probe.", cont=False))
    return await read_until(ws, ends(context_id))


# -- fields: inherited, empty inputs unchecked, Cartesia's model ids ----------------------


async def test_later_inputs_inherit_every_field_they_leave_out(emu):
    mulaw_8k = {"container": "raw", "encoding": "pcm_mulaw", "sample_rate": 8000}
    async with connect_raw(emu) as ws:
        await ws.send(wire("inherit", "Stay hungry, ", output_format=mulaw_8k, add_timestamps=True))
        # Only what changes per input: no model, voice, format or options.
        for rest in (
            {"transcript": "", "continue": True, "flush": True},
            {"transcript": "stay foolish.", "continue": True},
            {"transcript": "", "continue": False},
        ):
            await ws.send(json.dumps({"context_id": "inherit", **rest}))
        events = await read_until(ws, ends("inherit"))
    assert isinstance(events[-1], Done)
    assert audio(events) == spoken(
        "Stay hungry, ", "stay foolish.", rate=8000, encoding="pcm_mulaw"
    )
    assert [w for e in events if isinstance(e, Timestamps) for w in e.words] == [
        "Stay",
        "hungry,",
        "stay",
        "foolish.",
    ]
    assert [e.flush_id for e in events if isinstance(e, FlushDone)] == [1]


async def test_an_empty_input_is_not_checked_against_the_locks(emu):
    # Cartesia's async SDK closes a context with its own defaults, whatever it was opened with.
    sdk_close = {
        "context_id": "sdk",
        "model_id": "sonic-latest",
        "voice": SDK_DEFAULT_VOICE,
        "output_format": F32_44K,
        "transcript": "",
        "continue": False,
    }
    async with connect_raw(emu) as ws:
        await ws.send(wire("sdk", "Hello there. "))
        await ws.send(wire("sdk", "", flush=True, model_id="sonic-2", language="fr"))
        await ws.send(wire("sdk", "And more."))
        await ws.send(json.dumps(sdk_close))
        events = await read_until(ws, ends("sdk"))
    assert isinstance(events[-1], Done)
    assert audio(events) == spoken("Hello there. ", "And more."), "still the opening format"
    assert emu.record.context("sdk").errors == []


async def test_a_change_carried_with_text_is_still_refused(emu):
    async with connect_raw(emu) as ws:
        await ws.send(wire("locked", "Hello there. "))
        await ws.send(wire("locked", "In French.", language="fr"))
        events = await read_until(ws, ends("locked"))
    assert events[-1].error_code == "context_field_changed"


async def test_cartesia_model_ids_are_accepted_and_others_are_model_not_found(conn):
    accepted = [
        "sonic-3.6",
        "sonic-3.5",
        "sonic-3",
        "sonic-2",
        "sonic-turbo",
        "sonic",
        "sonic-latest",
        "sonic-3-latest",
        "sonic-2-2025-06-11",
        "sonic-3-2025-10-27",
        "sonic-english",
        "sonic-multilingual",
    ]
    for model in accepted:
        ctx = conn.context(model_id=model, voice=VOICE, output_format=S16_24K)
        await ctx.push("Hi.")
        await ctx.no_more_inputs()
        assert isinstance((await collect(ctx))[-1], Done), model
    for model in ("sonic-9", "sonic-3-preview", "gpt-4o-mini-tts", "eleven_turbo_v2"):
        ctx = conn.context(model_id=model, voice=VOICE, output_format=S16_24K)
        await ctx.push("Hi.")
        [error] = await collect(ctx)
        assert isinstance(error.exception(), ModelNotFoundError), model
        assert model in error.message


async def test_a_request_without_context_id_is_a_context_of_its_own(emu):
    # Cartesia's "basic" example sends one request with no context_id and no continue.
    request = {
        "model_id": MODEL,
        "transcript": "Hello, world!",
        "voice": {"mode": "id", "id": VOICE},
        "output_format": S16_24K,
    }
    async with connect_raw(emu) as ws:
        await ws.send(json.dumps(request))
        events = await read_until(ws, lambda e: isinstance(e, Done | Error))
    assert isinstance(events[-1], Done)
    assert len({e.context_id for e in events}) == 1
    assert audio(events) == spoken("Hello, world!")


# -- a context that starts with nothing to say -------------------------------------------


@pytest.mark.parametrize("transcript", ["", " ", "\n", "...", "?!", " - ", "\u2026", "\u3002"])
async def test_an_empty_or_punctuation_only_first_transcript_is_a_400_that_ends_it(emu, transcript):
    async with connect_raw(emu) as ws:
        await ws.send(wire("empty", transcript))
        raw = json.loads(await ws.recv())
        # The rest of the turn is ignored: the context is over.
        await ws.send(wire("empty", "Now with words.", cont=False))
        rest = await probe(ws)
    assert raw["type"] == "error"
    assert raw["done"] is True
    assert (raw["status_code"], raw["context_id"]) == (400, "empty")
    assert raw["message"] == "transcript empty or contains only punctuation"
    assert isinstance(parse_event(json.dumps(raw)).exception(), EmptyTranscriptError)
    assert {e.context_id for e in rest} == {"probe"}
    record = emu.record.context("empty")
    assert record.events == ["error"]
    assert record.inputs == []
    assert emu.active_contexts == 0


async def test_a_close_with_nothing_sent_is_refused_too(emu):
    # Pipecat's built-in closes a turn that had only a tool call this way.
    async with connect_raw(emu) as ws:
        await ws.send(wire("tool-call-turn", "", cont=False))
        [error] = await read_until(ws, ends("tool-call-turn"))
    assert (error.status_code, error.message) == (
        400,
        "transcript empty or contains only punctuation",
    )


async def test_punctuation_later_in_a_context_is_fine(emu):
    async with connect_raw(emu) as ws:
        await ws.send(wire("later", "Well "))
        await ws.send(wire("later", "... "))
        await ws.send(wire("later", "okay.", cont=False))
        events = await read_until(ws, ends("later"))
    assert isinstance(events[-1], Done)
    assert audio(events) == spoken("Well ... okay.")


async def test_our_client_refuses_it_before_sending(conn, emu):
    ctx = new_context(conn)
    with pytest.raises(EmptyTranscriptError):
        await ctx.push("...")
    with pytest.raises(EmptyTranscriptError):
        await ctx.flush()
    await ctx.push("Words first.")
    await ctx.push("...")
    await ctx.no_more_inputs()
    assert isinstance((await collect(ctx))[-1], Done)
    assert [r["transcript"] for r in emu.record.context(ctx.context_id).requests] == [
        "Words first.",
        "...",
        "",
    ]


# -- an error event is the last thing a context gets -------------------------------------


async def test_nothing_follows_an_error_not_even_for_a_context_still_generating(make_emulator):
    emu = await make_emulator(pacing=SLOW)
    async with connect_raw(emu) as ws:
        await ws.send(wire("busy", LONG_TEXT))
        await ws.send(wire("busy", "", cont=False))
        await read_until(ws, lambda e: isinstance(e, Chunk))
        # Input after its close, while it is still generating: it ends right there.
        await ws.send(wire("busy", "Too late.", model_id="sonic-2"))
        before_error = await read_until(ws, ends("busy"))
        await ws.send(wire("busy", "Still talking to a dead context."))
        await ws.send(json.dumps({"context_id": "busy", "cancel": True}))
        after_error = await probe(ws)
    assert isinstance(before_error[-1], Error)
    assert before_error[-1].error_code == "context_closed"
    assert {e.context_id for e in after_error} == {"probe"}, "no chunk, error or done after it"
    record = emu.record.context("busy")
    assert record.events.count("error") == 1
    assert record.events[-1] == "error"
    assert "done" not in record.events


async def test_an_injected_error_is_the_last_event_of_its_context(make_emulator):
    emu = await make_emulator(pacing=SLOW)
    emu.faults.error_after_chunks = 2
    async with connect_raw(emu) as ws:
        await ws.send(wire("victim", LONG_TEXT, cont=False, add_timestamps=True))
        events = await read_until(ws, ends("victim"))
        after = await probe(ws)
    assert [e.type for e in events if not isinstance(e, Timestamps)] == ["chunk", "chunk", "error"]
    assert {e.context_id for e in after} == {"probe"}
    assert emu.record.context("victim").events[-1] == "error"


# -- frames as Cartesia sends them --------------------------------------------------------


async def test_flush_done_carries_an_empty_data_field(emu):
    async with connect_raw(emu) as ws:
        await ws.send(wire("fd", "Hello. "))
        await ws.send(wire("fd", "", flush=True))
        frames = []
        while not frames or frames[-1]["type"] != "flush_done":
            frames.append(json.loads(await ws.recv()))
    assert frames[-1] == {
        "type": "flush_done",
        "context_id": "fd",
        "data": "",
        "done": False,
        "flush_done": True,
        "flush_id": 1,
        "status_code": 206,
    }
    assert parse_event(json.dumps(frames[-1])) == FlushDone("fd", 1)


# -- credentials ----------------------------------------------------------------------------


async def test_no_credentials_at_all_is_401_even_with_no_key_configured(emu):
    for headers in ({}, {"X-API-Key": ""}, {"Authorization": "Bearer "}):
        with pytest.raises(InvalidStatus) as info:
            await connect(emu.url, additional_headers=headers)
        assert info.value.response.status_code == 401
        assert b"No API key" in info.value.response.body
    assert [status for status, _ in emu.record.rejected_connections] == [401, 401, 401]
    assert emu.record.connections == []


async def test_any_non_empty_key_or_token_is_accepted_when_none_is_configured(emu):
    ways = [
        (emu.url, {"X-API-Key": "whatever"}),
        (emu.url, {"Authorization": "Bearer some-token"}),
        (emu.url + "?api_key=abc", {}),
        (emu.url + "?access_token=t0k3n", {}),
    ]
    for url, headers in ways:
        async with connect(url, additional_headers=headers) as ws:
            await ws.send(wire("c", "Hi.", cont=False))
            assert isinstance((await read_until(ws, ends("c")))[-1], Done)
    await emu.record.wait_for(lambda r: len(r.connections) == 4)
    assert [c.auth for c in emu.record.connections] == [
        "x-api-key",
        "bearer",
        "api_key",
        "access_token",
    ]


async def test_configured_access_tokens_alone_refuse_any_other_credential(make_emulator):
    emu = await make_emulator(access_tokens={"tok-1"})
    async with connect(emu.url + "?access_token=tok-1"):
        pass
    async with connect(emu.url, additional_headers={"Authorization": "Bearer tok-1"}):
        pass
    for url, headers in [
        (emu.url, {"X-API-Key": "tok-2"}),
        (emu.url + "?access_token=tok-2", {}),
    ]:
        with pytest.raises(InvalidStatus) as info:
            await connect(url, additional_headers=headers)
        assert info.value.response.status_code == 401
        assert b"Invalid API key" in info.value.response.body


# -- frames that are not requests ------------------------------------------------------------

NOT_REQUESTS = [
    "[]",
    '[{"context_id": "a", "transcript": "hi"}]',
    '"a string"',
    "42",
    "null",
    "true",
    "{not json",
    "",
    "[" * 100_000 + "]" * 100_000,
    '{"context_id": ' * 50_000,
    '{"a": ' * 20_000 + "1" + "}" * 20_000,
    "9" * 5000,
    '{"context_id": 7, "transcript": "hi"}',
    '{"context_id": "x", "transcript": ["hi"], "model_id": "sonic-3"}',
    '{"context_id": "y", "transcript": "hi", "model_id": "sonic-3", "voice": 3}',
    b"\xff\xfe not utf-8",
    # JSON escapes of lone surrogates decode to strings no text frame can carry.
    '{"context_id": "s", "model_id": "sonic-3", "voice": "v", "transcript": "Hi \\ud83d.",'
    ' "output_format": {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 24000}}',
    '{"context_id": "\\ud800", "transcript": "hi"}',
    '{"context_id": "g", "transcript": "hi", "generation_config": {"emotion": "\\udfff"}}',
    b'{"context_id": "bytes", "cancel": "yes"}',
]


@pytest.mark.parametrize("frame", NOT_REQUESTS, ids=range(len(NOT_REQUESTS)))
async def test_a_frame_that_is_not_a_request_gets_an_error_and_spares_every_connection(
    make_emulator, frame
):
    # Paced, so the bystander is generating while the bad frame is handled.
    emu = await make_emulator(pacing=Pacing(first_chunk_ms=0, speed=20.0, chunk_ms=40))
    async with connect_raw(emu) as bystander, connect_raw(emu) as ws:
        await bystander.send(wire("bystander", "Unaffected by the others.", cont=False))
        await ws.send(frame)
        error = parse_event(await ws.recv())
        events = await probe(ws)
        others = await read_until(bystander, ends("bystander"))
        assert not any(c.closed for c in emu.record.connections)
    assert isinstance(error, Error)
    assert error.status_code == 400
    assert error.request_id == emu.record.connections[-1].request_id
    assert isinstance(events[-1], Done), "the connection goes on"
    assert audio(others) == spoken("Unaffected by the others."), "and so does every other"


# Any code point, lone surrogates included: JSON can carry them.
TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=20)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | TEXT,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(TEXT, children, max_size=4),
    max_leaves=12,
)
REQUEST_KEYS = (
    "transcript",
    "model_id",
    "voice",
    "output_format",
    "continue",
    "flush",
    "cancel",
    "language",
    "max_buffer_delay_ms",
    "add_timestamps",
    "generation_config",
)
REQUEST_LIKE = st.fixed_dictionaries(
    {}, optional={"context_id": TEXT | JSON, **dict.fromkeys(REQUEST_KEYS, JSON)}
)


class _Errors(logging.Handler):
    def __init__(self):
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames=st.lists(JSON | REQUEST_LIKE, min_size=1, max_size=6))
def test_no_json_value_breaks_the_handler(frames):
    async def scenario():
        async with CartesiaEmulator(pacing=Pacing.instant()) as emu:
            async with connect_raw(emu) as ws:
                for frame in frames:
                    await ws.send(json.dumps(frame))  # ASCII: surrogates go as escapes
                events = await probe(ws)
            await emu.record.wait_for(lambda r: r.connections[0].closed)
            return [e for e in events if e.context_id == "probe"], emu.record.connections[0]

    # websockets logs a failing connection handler at ERROR ("connection handler failed").
    errors = _Errors()
    logging.getLogger("websockets").addHandler(errors)
    try:
        events, connection = asyncio.run(scenario())
    finally:
        logging.getLogger("websockets").removeHandler(errors)
    assert isinstance(events[-1], Done)
    assert audio(events) == spoken("Probe.")
    assert connection.close_code == 1000, "closed by the client, not by a failing handler"
    assert errors.records == []


async def test_input_for_a_cancelled_context_still_finishing_ends_it_with_the_error(
    make_emulator,
):
    emu = await make_emulator(pacing=SLOW)
    async with connect_raw(emu) as ws:
        await ws.send(wire("cancelled", LONG_TEXT))
        await read_until(ws, lambda e: isinstance(e, Chunk))
        await ws.send(json.dumps({"context_id": "cancelled", "cancel": True}))
        # The server is still finishing the generation under way when this arrives.
        await ws.send(wire("cancelled", "Input after the cancel."))
        events = await read_until(ws, ends("cancelled"))
        after = await probe(ws)
    assert isinstance(events[-1], Error)
    assert events[-1].error_code == "context_closed"
    assert {e.context_id for e in after} == {"probe"}, "nothing of the generation after the error"
    record = emu.record.context("cancelled")
    assert record.events[-1] == "error"
    assert "done" not in record.events
    assert emu.active_contexts == 0


async def test_input_for_an_ended_context_is_context_closed_whatever_fields_it_leaves_out(emu):
    async with connect_raw(emu) as ws:
        await ws.send(wire("ended", "Hello.", cont=False))
        await read_until(ws, ends("ended"))
        await ws.send(json.dumps({"context_id": "ended", "transcript": "More.", "continue": True}))
        [error] = await read_until(ws, ends("ended"))
        await ws.send(json.dumps({"context_id": "ended", "cancel": True}))  # ignored
        after = await probe(ws)
    assert error.error_code == "context_closed"
    assert {e.context_id for e in after} == {"probe"}


async def test_nothing_follows_an_error_even_when_output_was_held_by_a_stall(make_emulator):
    emu = await make_emulator(pacing=Pacing(first_chunk_ms=0, speed=20.0, chunk_ms=40))
    emu.faults.stall_after_chunks = 1
    emu.faults.stall_ms = 300
    async with connect_raw(emu) as ws:
        await ws.send(wire("held", LONG_TEXT))
        await read_until(ws, lambda e: isinstance(e, Chunk))
        # During the stall the context's next chunk waits to be sent; the error overtakes it.
        await ws.send(wire("held", "Changed.", voice={"mode": "id", "id": "another-voice"}))
        events = await read_until(ws, ends("held"))
        after = await probe(ws)
    assert events[-1].error_code == "context_field_changed"
    assert {e.context_id for e in after} == {"probe"}
    assert emu.record.context("held").events[-1] == "error"


# -- text no WebSocket frame can carry ---------------------------------------------------


async def test_a_lone_surrogate_is_refused_and_the_connection_lives(emu, conn):
    other = new_context(conn)
    await other.push("A bystander on the same connection. ")
    ctx = new_context(conn)
    with pytest.raises(InvalidRequestError, match="UTF-8"):
        await ctx.push("Half an emoji \ud83d")
    with pytest.raises(InvalidRequestError, match="UTF-8"):
        await ctx.push("Hello.", generation_config={"emotion": "\udfff"})
    with pytest.raises(InvalidRequestError, match="JSON"):
        await ctx.push("Hello.", generation_config={"speed": 1.0, "extra": {1, 2}})
    await ctx.push("Whole text.")
    await ctx.no_more_inputs()
    await other.no_more_inputs()
    assert audio(await collect(ctx)) == spoken("Whole text.")
    assert isinstance((await collect(other))[-1], Done)
    assert not conn.closed


async def test_a_frame_over_the_size_limit_closes_with_1009_and_spares_the_others(emu):
    async with connect_raw(emu) as bystander:
        async with connect_raw(emu) as ws:
            await ws.send(wire("big", "x " * 600_000))
            with pytest.raises(ConnectionClosed) as info:
                await ws.recv()
        assert info.value.rcvd.code == 1009
        rest = await probe(bystander)
    assert isinstance(rest[-1], Done)


# -- the record -----------------------------------------------------------------------------


async def test_an_id_reused_on_another_connection_is_another_context(emu):
    async with connect_raw(emu) as first:
        await first.send(wire("same-id", "First connection.", cont=False))
        await read_until(first, ends("same-id"))
    async with connect_raw(emu) as second:
        await second.send(wire("same-id", "Second connection.", cont=False))
        await read_until(second, ends("same-id"))
        await emu.record.settled(contexts=1)
    record = emu.record.context("same-id")
    assert record.connection == 1
    assert (record.transcript, record.outcome) == ("Second connection.", "done")
    assert emu.record.spoken() == ["Second connection."]


async def test_settled_waits_for_the_contexts_it_is_told_to_expect(make_emulator):
    emu = await make_emulator(pacing=Pacing(first_chunk_ms=0, speed=20.0, chunk_ms=40))
    async with connect_raw(emu) as ws:
        waiting = asyncio.create_task(emu.record.settled(contexts=2))
        for name in ("a", "b"):
            await ws.send(wire(name, f"Context {name} speaks.", cont=False))
        await waiting
        assert [c.outcome for c in emu.record.contexts.values()] == ["done", "done"]
        assert emu.record.spoken() == ["Context a speaks.", "Context b speaks."]
        # Read what was sent, or the unread frames hold up the closing handshake.
        ended: set[str] = set()

        def both_done(event) -> bool:
            if isinstance(event, Done):
                ended.add(event.context_id)
            return len(ended) == 2

        await read_until(ws, both_done)
