#
# Copyright (c) 2026, pipecat-cartesia-ctx contributors
#
# SPDX-License-Identifier: BSD 2-Clause License
#

"""Server -> client events: chunk, timestamps, phoneme timestamps, flush_done, done, error.

Built and encoded by the emulator (`encode_event`) and parsed by the client
(`parse_event`), so each is defined once. No I/O.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from json.encoder import encode_basestring
from typing import Any, ClassVar

from .errors import CartesiaAPIError, ProtocolError, api_error
from .fields import FieldReader
from .text import is_utf8
from .wire import STATUS_PARTIAL, STRUCTURED_ERRORS_SINCE, dumps, json_object


@dataclass(frozen=True, slots=True)
class Chunk:
    """Audio: raw samples in the context's encoding, mono, not sample-aligned by contract.

    Parameters:
        context_id: The context.
        audio: The decoded bytes.
        flush_id: The segment the audio belongs to; None when the server omits it.
        step_time: Server-side processing time of the chunk, in milliseconds.
    """

    type: ClassVar[str] = "chunk"
    context_id: str
    audio: bytes
    flush_id: int | None = None
    step_time: float | None = None


@dataclass(frozen=True, slots=True)
class Timestamps:
    """Word timestamps, in seconds from the start of the context's audio.

    Parameters:
        context_id: The context.
        words: Whitespace tokens of the text as sent, punctuation attached.
        start: Start of each word.
        end: End of each word.
        flush_id: The segment the words belong to, when given.
    """

    type: ClassVar[str] = "timestamps"
    context_id: str
    words: tuple[str, ...]
    start: tuple[float, ...]
    end: tuple[float, ...]
    flush_id: int | None = None

    def __post_init__(self):
        if not len(self.words) == len(self.start) == len(self.end):
            raise ValueError("words, start and end must have the same length")


@dataclass(frozen=True, slots=True)
class PhonemeTimestamps:
    """Phoneme timestamps, in seconds from the start of the context's audio.

    Parameters:
        context_id: The context.
        phonemes: The phonemes.
        start: Start of each phoneme.
        end: End of each phoneme.
        flush_id: The segment the phonemes belong to, when given.
    """

    type: ClassVar[str] = "phoneme_timestamps"
    context_id: str
    phonemes: tuple[str, ...]
    start: tuple[float, ...]
    end: tuple[float, ...]
    flush_id: int | None = None

    def __post_init__(self):
        if not len(self.phonemes) == len(self.start) == len(self.end):
            raise ValueError("phonemes, start and end must have the same length")


@dataclass(frozen=True, slots=True)
class FlushDone:
    """All output of segment ``flush_id`` has been sent."""

    type: ClassVar[str] = "flush_done"
    context_id: str
    flush_id: int


@dataclass(frozen=True, slots=True)
class Done:
    """All output of the context has been sent; the context is finished."""

    type: ClassVar[str] = "done"
    context_id: str


@dataclass(frozen=True, slots=True)
class Error:
    """An error; it ends its context (not the socket).

    Parameters:
        context_id: The context, when the server names one.
        status_code: HTTP-style status.
        error_code: Machine-readable code; None in the legacy shape.
        title: Short title; None in the legacy shape.
        message: Human-readable message (``error`` in the legacy shape).
        request_id: The server's id of the connection.
        doc_url: Link to documentation.
    """

    type: ClassVar[str] = "error"
    context_id: str | None = None
    status_code: int | None = None
    error_code: str | None = None
    title: str | None = None
    message: str | None = None
    request_id: str | None = None
    doc_url: str | None = None

    def exception(self) -> CartesiaAPIError:
        """The typed exception this error event stands for."""
        return api_error(
            self.message or self.title or "unknown error",
            status_code=self.status_code,
            error_code=self.error_code,
            title=self.title,
            request_id=self.request_id,
            context_id=self.context_id,
        )

    @classmethod
    def from_exception(cls, exc: CartesiaAPIError, *, request_id: str | None = None) -> Error:
        """The error event that reports ``exc`` to a client.

        Args:
            exc: The error.
            request_id: The connection's id, if the exception has none.

        Returns:
            The event.
        """
        return cls(
            context_id=exc.context_id,
            status_code=exc.status_code,
            error_code=exc.error_code,
            title=exc.title or type(exc).__name__,
            message=exc.message,
            request_id=exc.request_id or request_id,
        )


@dataclass(frozen=True, slots=True)
class UnknownEvent:
    """A message of a type this version does not know; clients ignore it."""

    type: str
    context_id: str | None
    data: Mapping[str, Any] = field(default_factory=dict)


ServerEvent = Chunk | Timestamps | PhonemeTimestamps | FlushDone | Done | Error | UnknownEvent


def _timing_lists(f: FieldReader, key: str, label: str) -> tuple[tuple, tuple, tuple]:
    obj = f.object(key) or {}
    inner = FieldReader(obj, ProtocolError, key)
    inner.context_id = f.context_id
    labels = inner.list(label, str)
    start = inner.list("start", (int, float))
    end = inner.list("end", (int, float))
    if not len(labels) == len(start) == len(end):
        inner.fail(f"{label}, start and end have different lengths")
    return tuple(labels), tuple(map(float, start)), tuple(map(float, end))


def _b64decode(data: str) -> bytes:
    # What ``base64.b64decode(validate=True)`` does, without its copy of the text to bytes.
    return binascii.a2b_base64(data, strict_mode=True)


def _well_formed_chunk(obj: Mapping[str, Any]) -> Chunk | None:
    """A chunk whose fields all have their types (nearly every message): read without `FieldReader`.

    Returns None for anything else, which the general path reads again and
    refuses with the field named: this accepts a subset of what it accepts.
    """
    context_id, data = obj.get("context_id"), obj.get("data")
    flush_id, step_time = obj.get("flush_id"), obj.get("step_time")
    if (
        type(context_id) is not str
        or type(data) is not str
        or (flush_id is not None and type(flush_id) is not int)
        or (step_time is not None and type(step_time) is not float and type(step_time) is not int)
        or not is_utf8(context_id)
    ):
        return None
    try:
        audio = _b64decode(data)
    except (binascii.Error, ValueError):
        return None
    return Chunk(context_id, audio, flush_id, None if step_time is None else float(step_time))


def parse_event(raw: str | bytes) -> ServerEvent:
    """Parse one server text frame.

    Args:
        raw: The frame's payload.

    Returns:
        The typed event; `UnknownEvent` for a type this version does not know.

    Raises:
        ProtocolError: If the frame is not JSON, has no ``type``, or lacks a
            field its type requires.
    """
    obj = json_object(raw, ProtocolError, "server message")
    kind = obj.get("type")
    if kind == "chunk" and (chunk := _well_formed_chunk(obj)) is not None:
        return chunk
    if not isinstance(kind, str):
        raise ProtocolError("server message has no string 'type'")
    f = FieldReader(obj, ProtocolError, kind)
    if kind == "chunk":
        data = f.str("data", required=True)
        try:
            audio = _b64decode(data)
        except (binascii.Error, ValueError):
            f.fail("field 'data' is not valid base64")
        return Chunk(
            context_id=f.str("context_id", required=True),
            audio=audio,
            flush_id=f.int("flush_id"),
            step_time=f.number("step_time"),
        )
    if kind == "timestamps":
        words, start, end = _timing_lists(f, "word_timestamps", "words")
        return Timestamps(f.str("context_id", required=True), words, start, end, f.int("flush_id"))
    if kind == "phoneme_timestamps":
        phonemes, start, end = _timing_lists(f, "phoneme_timestamps", "phonemes")
        return PhonemeTimestamps(
            f.str("context_id", required=True), phonemes, start, end, f.int("flush_id")
        )
    if kind == "flush_done":
        return FlushDone(f.str("context_id", required=True), f.int("flush_id", required=True))
    if kind == "done":
        return Done(f.str("context_id", required=True))
    if kind == "error":
        return Error(
            context_id=f.str("context_id"),
            status_code=f.int("status_code"),
            error_code=f.str("error_code"),
            title=f.str("title"),
            # Before 2026-03-01 the text came in "error" and there was no title.
            message=f.str("message") or f.str("error"),
            request_id=f.str("request_id"),
            doc_url=f.str("doc_url"),
        )
    return UnknownEvent(type=kind, context_id=f.context_id, data=obj)


def event_to_wire(event: ServerEvent, *, legacy_errors: bool = False) -> dict[str, Any]:
    """Return the JSON object the server sends for an event.

    Args:
        event: The event.
        legacy_errors: Use the error shape of versions before 2026-03-01.

    Returns:
        The wire object.
    """
    if isinstance(event, Chunk):
        msg: dict[str, Any] = {
            "type": "chunk",
            "context_id": event.context_id,
            "data": base64.b64encode(event.audio).decode("ascii"),
            "done": False,
            "status_code": STATUS_PARTIAL,
        }
        if event.step_time is not None:
            msg["step_time"] = event.step_time
        if event.flush_id is not None:
            msg["flush_id"] = event.flush_id
        return msg
    if isinstance(event, Timestamps | PhonemeTimestamps):
        key, label, labels = (
            ("word_timestamps", "words", event.words)
            if isinstance(event, Timestamps)
            else ("phoneme_timestamps", "phonemes", event.phonemes)
        )
        msg = {
            "type": event.type,
            "context_id": event.context_id,
            "done": False,
            "status_code": STATUS_PARTIAL,
            key: {label: list(labels), "start": list(event.start), "end": list(event.end)},
        }
        if event.flush_id is not None:
            msg["flush_id"] = event.flush_id
        return msg
    if isinstance(event, FlushDone):
        return {
            "type": "flush_done",
            "context_id": event.context_id,
            # Real frames carry an empty "data" (quoted in a LiveKit PR): a client
            # must not take it for audio.
            "data": "",
            "done": False,
            "flush_done": True,
            "flush_id": event.flush_id,
            "status_code": STATUS_PARTIAL,
        }
    if isinstance(event, Done):
        return {
            "type": "done",
            "context_id": event.context_id,
            "done": True,
            "status_code": STATUS_PARTIAL,
        }
    if isinstance(event, Error):
        if legacy_errors:
            msg = {"type": "error", "done": True, "error": event.message or event.title or ""}
            msg["status_code"] = event.status_code
        else:
            msg = {
                "type": "error",
                "done": True,
                "status_code": event.status_code,
                "error_code": event.error_code,
                "title": event.title,
                "message": event.message,
                "request_id": event.request_id,
            }
            if event.doc_url is not None:
                msg["doc_url"] = event.doc_url
        if event.context_id is not None:
            msg["context_id"] = event.context_id
        return msg
    return {**event.data, "type": event.type}


def encode_event(event: ServerEvent, *, legacy_errors: bool = False) -> str:
    """Return the text frame the server sends for an event.

    Args:
        event: The event.
        legacy_errors: Use the error shape of versions before 2026-03-01.

    Returns:
        The compact JSON text.
    """
    if isinstance(event, Chunk):
        return encode_chunk(event.context_id, event.audio, event.flush_id, event.step_time)
    if isinstance(event, _TIMESTAMPS):
        return encode_timestamps(event)
    if isinstance(event, FlushDone):
        return (
            '{"type":"flush_done","context_id":'
            + _json_value(event.context_id)
            + ',"data":"","done":false,"flush_done":true,"flush_id":'
            + _json_value(event.flush_id)
            + f',"status_code":{STATUS_PARTIAL}}}'
        )
    if isinstance(event, Done):
        done = f',"done":true,"status_code":{STATUS_PARTIAL}}}'
        return '{"type":"done","context_id":' + _json_value(event.context_id) + done
    return dumps(event_to_wire(event, legacy_errors=legacy_errors))


# A tuple, not ``Timestamps | PhonemeTimestamps``: that makes a union object at each call.
_TIMESTAMPS = (Timestamps, PhonemeTimestamps)


def encode_chunk(
    context_id: str, audio: bytes, flush_id: int | None = None, step_time: float | None = None
) -> str:
    """Return the text frame of a `Chunk`: exactly ``dumps(event_to_wire(chunk))``.

    The emulator sends ~25 chunks per second of audio of every stream, so this
    one message is spliced from its parts instead of going through a dict and
    the generic JSON encoder; the keys, their order and every value's spelling
    are those of `event_to_wire` (a test holds the two equal). The emulator
    splices the same parts as bytes (`chunk_prefix`, `chunk_suffix`), each
    made once per context or per piece of audio.

    Args:
        context_id: The context.
        audio: The raw audio bytes.
        flush_id: The segment, or None to leave the field out.
        step_time: Milliseconds, or None to leave the field out.

    Returns:
        The compact JSON text.
    """
    return (
        chunk_prefix(context_id)
        + binascii.b2a_base64(audio, newline=False).decode("ascii")
        + chunk_suffix(flush_id, step_time)
    )


def chunk_prefix(context_id: str) -> str:
    """The text of a chunk frame before its base64 audio (see `encode_chunk`)."""
    return '{"type":"chunk","context_id":' + _json_value(context_id) + ',"data":"'


def chunk_suffix(flush_id: int | None = None, step_time: float | None = None) -> str:
    """The text of a chunk frame after its base64 audio (see `encode_chunk`)."""
    text = f'","done":false,"status_code":{STATUS_PARTIAL}'
    if step_time is not None:
        text += ',"step_time":' + _json_value(step_time)
    if flush_id is not None:
        text += ',"flush_id":' + _json_value(flush_id)
    return text + "}"


def encode_timestamps(event: Timestamps | PhonemeTimestamps) -> str:
    """Return the text frame of a timestamps event: exactly ``dumps(event_to_wire(event))``.

    Spliced as `encode_chunk` is: with word timestamps on, the emulator sends
    one for about every ten chunks, and the generic encoder walks a nested
    dict of lists for each (a test holds the two equal).

    Args:
        event: Word or phoneme timestamps.

    Returns:
        The compact JSON text.
    """
    if isinstance(event, Timestamps):
        head, labels = '"word_timestamps":{"words":[', event.words
    else:
        head, labels = '"phoneme_timestamps":{"phonemes":[', event.phonemes
    text = (
        '{"type":"'
        + event.type
        + '","context_id":'
        + _json_value(event.context_id)
        + f',"done":false,"status_code":{STATUS_PARTIAL},'
        + head
        + ",".join(map(_json_value, labels))
        + '],"start":['
        + ",".join(map(_json_value, event.start))
        + '],"end":['
        + ",".join(map(_json_value, event.end))
        + "]}"
    )
    if event.flush_id is not None:
        text += ',"flush_id":' + _json_value(event.flush_id)
    return text + "}"


def _json_value(value: Any) -> str:
    """One value as `dumps` writes it; finite floats and plain ints without its overhead."""
    kind = type(value)
    if kind is str:
        return encode_basestring(value)  # what dumps uses with ensure_ascii=False
    if kind is float and math.isfinite(value):
        return float.__repr__(value)
    if kind is int:
        return int.__repr__(value)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)  # as dumps, nested too


def uses_structured_errors(cartesia_version: str | None) -> bool:
    """Whether a ``Cartesia-Version`` gets structured error events.

    Args:
        cartesia_version: The version string; dates are ``YYYY-MM-DD``. A
            missing or non-date version counts as current.

    Returns:
        True from 2026-03-01 on.
    """
    if not cartesia_version or len(cartesia_version) != 10 or cartesia_version[4] != "-":
        return True
    return cartesia_version >= STRUCTURED_ERRORS_SINCE
