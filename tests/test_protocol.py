"""The sans-I/O protocol core: build -> encode -> parse round trips, typed errors, state machine."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipecat_cartesia_ctx.protocol import (
    ENCODINGS,
    SAMPLE_RATES,
    AuthenticationError,
    CancelRequest,
    CartesiaAPIError,
    Chunk,
    ConcurrencyLimitError,
    ContextClosedError,
    ContextFieldChangedError,
    ContextPhase,
    ContextState,
    Done,
    Error,
    FlushDone,
    GenerationRequest,
    InvalidRequestError,
    ModelNotFoundError,
    OutputFormat,
    PhonemeTimestamps,
    ProtocolError,
    QuotaExceededError,
    RateLimitError,
    ServerError,
    Timestamps,
    UnknownEvent,
    api_error,
    encode_event,
    normalize_voice,
    parse_event,
    parse_request,
    uses_structured_errors,
)

ids = st.text(min_size=1, max_size=40)
# A voice id may be any string with something other than whitespace in it.
voice_ids = ids.filter(str.strip)
times = st.floats(min_value=0, max_value=1e4, allow_nan=False, allow_infinity=False)
maybe_flush_id = st.none() | st.integers(min_value=1, max_value=10**6)
formats = st.builds(OutputFormat, st.sampled_from(ENCODINGS), st.sampled_from(SAMPLE_RATES))
generation_configs = st.none() | st.fixed_dictionaries(
    {},
    optional={
        "volume": st.floats(0.5, 2.0),
        "speed": st.floats(0.6, 1.5),
        "emotion": st.sampled_from(["neutral", "excited", "sad"]),
    },
)

requests = st.builds(
    GenerationRequest,
    context_id=ids,
    model_id=st.sampled_from(["sonic-3", "sonic-3.5", "sonic-latest"]),
    voice=voice_ids.map(normalize_voice),
    output_format=formats,
    transcript=st.text(max_size=200),
    continue_=st.booleans(),
    flush=st.booleans(),
    language=st.none() | st.sampled_from(["en", "fr", "es-MX", "ja"]),
    max_buffer_delay_ms=st.none() | st.integers(0, 5000),
    add_timestamps=st.booleans(),
    add_phoneme_timestamps=st.booleans(),
    use_normalized_timestamps=st.none() | st.booleans(),
    generation_config=generation_configs,
    pronunciation_dict_id=st.none() | ids,
)


def _timing(label_strategy):
    return st.lists(st.tuples(label_strategy, times, times), max_size=20).map(
        lambda rows: (
            tuple(r[0] for r in rows),
            tuple(r[1] for r in rows),
            tuple(r[2] for r in rows),
        )
    )


error_events = st.builds(
    Error,
    context_id=st.none() | ids,
    status_code=st.sampled_from([400, 401, 402, 429, 500]),
    error_code=st.none() | st.sampled_from(["model_not_found", "concurrency_limited"]),
    title=st.none() | st.text(max_size=30),
    message=st.text(min_size=1, max_size=80),
    request_id=st.none() | ids,
    doc_url=st.none() | st.just("https://docs.cartesia.ai/"),
)

events = st.one_of(
    st.builds(Chunk, ids, st.binary(max_size=2000), maybe_flush_id, st.none() | times),
    st.builds(
        lambda cid, t, fid: Timestamps(cid, *t, flush_id=fid),
        ids,
        _timing(st.text(min_size=1, max_size=12)),
        maybe_flush_id,
    ),
    st.builds(
        lambda cid, t, fid: PhonemeTimestamps(cid, *t, flush_id=fid),
        ids,
        _timing(st.text(min_size=1, max_size=3)),
        maybe_flush_id,
    ),
    st.builds(FlushDone, ids, st.integers(1, 10**6)),
    st.builds(Done, ids),
    error_events,
)


# -- round trips ------------------------------------------------------------


@given(requests)
def test_generation_request_round_trips(request):
    assert parse_request(request.encode()) == request


@given(voice_ids)
def test_a_blank_voice_id_is_refused_and_any_other_is_kept(voice_id):
    assert normalize_voice(voice_id)["id"] == voice_id
    with pytest.raises(InvalidRequestError, match="voice id"):
        normalize_voice(" " * len(voice_id))


@given(ids)
def test_cancel_round_trips(context_id):
    encoded = CancelRequest(context_id).encode()
    assert json.loads(encoded) == {"context_id": context_id, "cancel": True}
    assert parse_request(encoded) == CancelRequest(context_id)


@given(events)
def test_server_event_round_trips(event):
    assert parse_event(encode_event(event)) == event


@given(error_events)
def test_legacy_error_shape_keeps_status_message_and_context(event):
    wire = json.loads(encode_event(event, legacy_errors=True))
    assert wire["error"] == event.message
    assert "title" not in wire
    assert "error_code" not in wire
    parsed = parse_event(json.dumps(wire))
    assert (parsed.status_code, parsed.message, parsed.context_id) == (
        event.status_code,
        event.message,
        event.context_id,
    )


def test_wire_shapes_match_the_golden_trace():
    chunk = json.loads(encode_event(Chunk("t1", b"\x00\x01", 1, 41.2)))
    assert chunk == {
        "type": "chunk",
        "context_id": "t1",
        "data": "AAE=",
        "done": False,
        "status_code": 206,
        "step_time": 41.2,
        "flush_id": 1,
    }
    assert json.loads(encode_event(FlushDone("t1", 1))) == {
        "type": "flush_done",
        "context_id": "t1",
        "data": "",
        "done": False,
        "flush_done": True,
        "flush_id": 1,
        "status_code": 206,
    }
    assert json.loads(encode_event(Done("t1"))) == {
        "type": "done",
        "context_id": "t1",
        "done": True,
        "status_code": 206,
    }
    ts = json.loads(encode_event(Timestamps("t1", ("Stay",), (0.0,), (0.29,), 1)))
    assert ts["word_timestamps"] == {"words": ["Stay"], "start": [0.0], "end": [0.29]}
    base = GenerationRequest("t1", "sonic-3", normalize_voice("V"), OutputFormat(), continue_=True)
    assert base.flushed().to_wire() == {
        "context_id": "t1",
        "model_id": "sonic-3",
        "transcript": "",
        "voice": {"mode": "id", "id": "V"},
        "output_format": {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 24000},
        "continue": True,
        "flush": True,
    }
    assert base.closed().to_wire()["continue"] is False
    assert (base.push("x").kind, base.flushed().kind, base.closed().kind) == (
        "push",
        "flush",
        "close",
    )


# -- tolerant parsing ---------------------------------------------------------


def test_pretty_printed_request_with_unknown_fields_is_accepted():
    raw = json.dumps(
        {
            "context_id": "c",
            "model_id": "sonic-3",
            "voice": {"mode": "id", "id": "V", "__experimental_controls": {}},
            "output_format": {"container": "raw", "encoding": "pcm_mulaw", "sample_rate": 8000},
            "transcript": "Hi",
            "continue": True,
            "some_future_field": [1, 2],
        },
        indent=4,
    )
    request = parse_request(raw)
    assert request.transcript == "Hi"
    assert request.output_format == OutputFormat("pcm_mulaw", 8000)
    assert request.voice == {"mode": "id", "id": "V"}


@pytest.mark.parametrize("voice", ["V", {"id": "V"}, {"mode": "id", "id": "V"}])
def test_three_voice_shapes_mean_the_same_voice(voice):
    assert normalize_voice(voice) == {"mode": "id", "id": "V"}


def test_unknown_event_type_and_fields_are_tolerated():
    event = parse_event('{"type": "future_thing", "context_id": "c", "x": 1}')
    assert isinstance(event, UnknownEvent)
    assert (event.type, event.context_id) == ("future_thing", "c")
    chunk = parse_event('{"type":"chunk","context_id":"c","data":"","extra":{"a":1}}')
    assert chunk == Chunk("c", b"")


def test_flush_done_with_empty_data_is_not_audio():
    event = parse_event(
        '{"type":"flush_done","context_id":"c","data":"","flush_done":true,"flush_id":2,'
        '"done":false,"status_code":206}'
    )
    assert event == FlushDone("c", 2)


def test_chunk_without_flush_id_is_unknown_not_zero():
    assert parse_event('{"type":"chunk","context_id":"c","data":"AAA="}').flush_id is None


# -- typed errors, never KeyError -------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "not json",
        "[1, 2]",
        '{"context_id": "c"}',
        '{"type": 3}',
        '{"type": "chunk", "context_id": "c"}',
        '{"type": "chunk", "data": "AAA="}',
        '{"type": "chunk", "context_id": "c", "data": "%%%"}',
        '{"type": "chunk", "context_id": "c", "data": "AAA=", "flush_id": "1"}',
        '{"type": "flush_done", "context_id": "c"}',
        '{"type": "flush_done", "context_id": "c", "flush_id": true}',
        '{"type": "done"}',
        '{"type": "timestamps", "context_id": "c", "word_timestamps": {"words": ["a"]}}',
        '{"type": "timestamps", "context_id": "c", "word_timestamps": []}',
        '{"type": "phoneme_timestamps", "context_id": "c",'
        ' "phoneme_timestamps": {"phonemes": ["a"], "start": ["x"], "end": [1]}}',
        '{"type": "error", "status_code": "400"}',
    ],
)
def test_malformed_server_messages_raise_protocol_error(raw):
    with pytest.raises(ProtocolError):
        parse_event(raw)


def test_protocol_error_names_the_context_when_it_can():
    with pytest.raises(ProtocolError) as info:
        parse_event('{"type": "flush_done", "context_id": "ctx-9"}')
    assert info.value.context_id == "ctx-9"
    assert "flush_id" in str(info.value)


@given(st.text(max_size=300))
def test_any_text_parses_or_raises_protocol_error(raw):
    with contextlib.suppress(ProtocolError):
        parse_event(raw)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)


@given(
    st.fixed_dictionaries(
        {"type": st.sampled_from(["chunk", "timestamps", "phoneme_timestamps", "flush_done"])},
        optional={
            k: json_values
            for k in ("context_id", "data", "flush_id", "word_timestamps", "phoneme_timestamps")
        },
    )
)
def test_any_shaped_known_event_parses_or_raises_protocol_error(obj):
    with contextlib.suppress(ProtocolError):
        parse_event(json.dumps(obj))


@given(
    st.dictionaries(
        st.sampled_from(
            [
                "context_id",
                "model_id",
                "voice",
                "output_format",
                "transcript",
                "continue",
                "flush",
                "cancel",
                "max_buffer_delay_ms",
                "generation_config",
                "language",
            ]
        ),
        json_values,
    )
)
def test_any_shaped_request_parses_or_raises_invalid_request(obj):
    with contextlib.suppress(InvalidRequestError):
        parse_request(json.dumps(obj))


def _format(container="raw", encoding="pcm_s16le", sample_rate=8000):
    return {
        "output_format": {"container": container, "encoding": encoding, "sample_rate": sample_rate}
    }


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (_format(container="mp3"), "container"),
        (_format(encoding="opus"), "encoding"),
        (_format(sample_rate=11025), "sample_rate"),
        ({"max_buffer_delay_ms": 6000}, "max_buffer_delay_ms"),
        ({"generation_config": {"speed": 3.0}}, "speed"),
        ({"generation_config": {"volume": 0.1}}, "volume"),
        ({"voice": {"mode": "embedding", "embedding": [0.1]}}, "voice"),
        ({"transcript": 5}, "transcript"),
        ({"model_id": None}, "model_id"),
    ],
)
def test_invalid_requests_name_the_field_and_the_context(change, field):
    obj = {
        "context_id": "ctx-1",
        "model_id": "sonic-3",
        "voice": "V",
        "output_format": {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 8000},
        "transcript": "x",
        **change,
    }
    with pytest.raises(InvalidRequestError) as info:
        parse_request(json.dumps(obj))
    assert field in str(info.value)
    assert info.value.context_id == "ctx-1"
    assert info.value.status_code == 400


# -- error hierarchy ----------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [
        (400, "model_not_found", ModelNotFoundError),
        (429, "concurrency_limited", ConcurrencyLimitError),
        (402, "quota_exceeded", QuotaExceededError),
        (400, "context_closed", ContextClosedError),
        (400, None, InvalidRequestError),
        (401, None, AuthenticationError),
        (429, None, RateLimitError),
        (503, None, ServerError),
        (418, None, CartesiaAPIError),
    ],
)
def test_api_error_picks_the_most_specific_class(status, code, cls):
    err = api_error("boom", status_code=status, error_code=code, title="T", context_id="c")
    assert type(err) is cls
    # Exactly what the server said: no class default is invented.
    assert (err.status_code, err.error_code, err.title, err.context_id) == (status, code, "T", "c")


def test_error_event_becomes_a_readable_typed_exception():
    event = parse_event(
        json.dumps(
            {
                "type": "error",
                "done": True,
                "status_code": 429,
                "error_code": "concurrency_limited",
                "title": "Concurrency limited",
                "message": "Too many concurrent requests",
                "request_id": "req-1",
                "context_id": "ctx-1",
            }
        )
    )
    exc = event.exception()
    assert isinstance(exc, ConcurrencyLimitError)
    text = str(exc)
    for part in ("429", "concurrency_limited", "Concurrency limited", "Too many", "ctx-1", "req-1"):
        assert part in text
    assert Error.from_exception(exc) == event


def test_versions_before_2026_03_01_get_legacy_errors():
    assert not uses_structured_errors("2024-06-10")
    assert not uses_structured_errors("2025-04-16")
    assert uses_structured_errors("2026-03-01")
    assert uses_structured_errors("2026-08-14")
    assert uses_structured_errors(None)
    assert uses_structured_errors("latest")


# -- the per-context state machine -------------------------------------------


def _request(**changes):
    base = GenerationRequest("c", "sonic-3", normalize_voice("V"), OutputFormat(), continue_=True)
    return base.push("text", **changes) if changes else base.push("text")


def test_state_counts_flushes_from_one_and_closes():
    state = ContextState("c")
    assert state.phase is ContextPhase.NEW
    assert state.current_flush_id == 1
    assert state.input(_request()) is None
    assert state.phase is ContextPhase.OPEN
    assert state.input(_request().flushed()) == 1
    assert state.input(_request().flushed()) == 2
    assert state.current_flush_id == 3
    state.input(_request().closed())
    assert state.phase is ContextPhase.CLOSING
    assert not state.accepts_input
    assert state.done()
    assert state.phase is ContextPhase.DONE
    assert not state.cancel(), "cancelling a finished context changes nothing"


@pytest.mark.parametrize("end", ["close", "cancel", "fail", "done"])
def test_input_after_the_end_is_refused_without_changing_state(end):
    state = ContextState("c")
    state.input(_request())
    if end == "close":
        state.input(_request().closed())
    else:
        getattr(state, end)()
    phase, flushes = state.phase, state.flushes
    with pytest.raises(ContextClosedError) as info:
        state.input(_request().flushed())
    assert info.value.context_id == "c"
    assert info.value.error_code == "context_closed"
    assert (state.phase, state.flushes) == (phase, flushes)


def test_locked_fields_cannot_change_but_generation_config_can():
    state = ContextState("c")
    state.input(_request(generation_config={"speed": 1.0}))
    state.input(_request(generation_config={"speed": 1.2, "emotion": "excited"}))
    with pytest.raises(ContextFieldChangedError) as info:
        state.input(_request(output_format=OutputFormat("pcm_s16le", 8000), language="fr"))
    assert "output_format" in str(info.value)
    assert "language" in str(info.value)
    assert state.inputs == 2
