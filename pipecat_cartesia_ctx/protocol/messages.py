#
# Copyright (c) 2026, pipecat-cartesia-ctx contributors
#
# SPDX-License-Identifier: BSD 2-Clause License
#

"""Cartesia TTS WebSocket messages, each defined once for the client and the emulator.

Client -> server: `GenerationRequest` (push, flush and close are all generation
requests) and `CancelRequest`, built here and parsed here (`parse_request`).

Server -> client: `Chunk`, `Timestamps`, `PhonemeTimestamps`, `FlushDone`,
`Done`, `Error` (and `UnknownEvent` for types this version does not know),
built and encoded here (`encode_event`) and parsed here (`parse_event`).

Nothing in this module does I/O.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Literal

from .errors import (
    CartesiaAPIError,
    InvalidRequestError,
    ProtocolError,
    api_error,
)
from .fields import FieldReader

DEFAULT_URL = "wss://api.cartesia.ai/tts/websocket"
WEBSOCKET_PATH = "/tts/websocket"
# The version pipecat 1.14 pins; the first one with structured error events.
DEFAULT_CARTESIA_VERSION = "2026-03-01"
STRUCTURED_ERRORS_SINCE = "2026-03-01"

DEFAULT_MAX_BUFFER_DELAY_MS = 3000
MAX_BUFFER_DELAY_MS = 5000

BYTES_PER_SAMPLE: dict[str, int] = {
    "pcm_f32le": 4,
    "pcm_s16le": 2,
    "pcm_mulaw": 1,
    "pcm_alaw": 1,
}
ENCODINGS: tuple[str, ...] = tuple(BYTES_PER_SAMPLE)
SAMPLE_RATES: tuple[int, ...] = (8000, 16000, 22050, 24000, 44100, 48000)

Encoding = Literal["pcm_f32le", "pcm_s16le", "pcm_mulaw", "pcm_alaw"]

# Every non-final server message carries this HTTP-style status.
STATUS_PARTIAL = 206

# Documented ranges of generation_config (sonic-3 and later).
GENERATION_CONFIG_RANGES: dict[str, tuple[float, float]] = {
    "volume": (0.5, 2.0),
    "speed": (0.6, 1.5),
}


def _json_object(
    raw: str | bytes | Mapping[str, Any], error: type[Exception], what: str
) -> Mapping[str, Any]:
    if isinstance(raw, Mapping):
        return raw
    try:
        obj = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise error(f"{what} is not valid JSON: {e}") from None
    if not isinstance(obj, dict):
        raise error(f"{what} must be a JSON object, got {type(obj).__name__}")
    return obj


def _dumps(obj: Mapping[str, Any]) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


# ---------------------------------------------------------------------------
# Client -> server
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OutputFormat:
    """Raw audio output format of a context.

    Parameters:
        encoding: One of `ENCODINGS`.
        sample_rate: One of `SAMPLE_RATES`.
        container: Always ``"raw"`` on the WebSocket.
    """

    encoding: str = "pcm_s16le"
    sample_rate: int = 24000
    container: str = "raw"

    def __post_init__(self):
        if self.container != "raw":
            raise InvalidRequestError(
                f"output_format.container must be 'raw' on the WebSocket, got {self.container!r}"
            )
        if self.encoding not in BYTES_PER_SAMPLE:
            raise InvalidRequestError(
                f"output_format.encoding must be one of {', '.join(ENCODINGS)}, "
                f"got {self.encoding!r}"
            )
        if isinstance(self.sample_rate, bool) or self.sample_rate not in SAMPLE_RATES:
            raise InvalidRequestError(
                f"output_format.sample_rate must be one of {SAMPLE_RATES}, got {self.sample_rate!r}"
            )

    @property
    def bytes_per_sample(self) -> int:
        """Bytes per mono sample of this encoding."""
        return BYTES_PER_SAMPLE[self.encoding]

    def to_wire(self) -> dict[str, Any]:
        """Return the JSON object sent on the wire."""
        return {
            "container": self.container,
            "encoding": self.encoding,
            "sample_rate": self.sample_rate,
        }

    @classmethod
    def coerce(cls, value: OutputFormat | Mapping[str, Any]) -> OutputFormat:
        """Build an `OutputFormat` from itself or from its wire object.

        Args:
            value: An `OutputFormat`, or a mapping with ``encoding``,
                ``sample_rate`` and optionally ``container``.

        Returns:
            The validated output format.

        Raises:
            InvalidRequestError: If a field is missing or not allowed.
        """
        if isinstance(value, OutputFormat):
            return value
        if not isinstance(value, Mapping):
            raise InvalidRequestError("output_format must be an object")
        f = FieldReader(value, InvalidRequestError, "output_format")
        return cls(
            encoding=f.str("encoding", required=True),
            sample_rate=f.int("sample_rate", required=True),
            container=f.str("container") or "raw",
        )


def normalize_voice(voice: str | Mapping[str, Any]) -> dict[str, str]:
    """Normalize any accepted voice specifier to ``{"mode": "id", "id": ID}``.

    Version 2026-08-14 accepts a bare id string and ``{"id": ID}`` besides the
    classic ``{"mode": "id", "id": ID}``; all three mean the same voice.

    Args:
        voice: The voice specifier.

    Returns:
        The canonical wire form.

    Raises:
        InvalidRequestError: If the specifier is not one of the accepted shapes.
    """
    if isinstance(voice, str):
        voice_id = voice
    elif isinstance(voice, Mapping):
        mode = voice.get("mode", "id")
        voice_id = voice.get("id")
        if mode != "id":
            raise InvalidRequestError(f"voice.mode must be 'id', got {mode!r}")
    else:
        raise InvalidRequestError(f"voice must be an id string or an object, got {voice!r}")
    if not isinstance(voice_id, str) or not voice_id.strip():
        raise InvalidRequestError("voice id must be a non-empty string")
    return {"mode": "id", "id": voice_id}


def validate_generation_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Check a ``generation_config`` object against the documented ranges.

    Args:
        config: The object; unknown keys are kept, as the server ignores them.

    Returns:
        A plain dict copy.

    Raises:
        InvalidRequestError: If ``volume`` or ``speed`` is out of range, or
            ``emotion`` is not a string.
    """
    if not isinstance(config, Mapping):
        raise InvalidRequestError("generation_config must be an object")
    f = FieldReader(config, InvalidRequestError, "generation_config")
    for key, (low, high) in GENERATION_CONFIG_RANGES.items():
        value = f.number(key)
        if value is not None and not low <= value <= high:
            f.fail(f"{key} must be within [{low}, {high}], got {value}")
    f.str("emotion")
    return dict(config)


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """A generation request: a push, a flush or a close, told apart by its flags.

    Parameters:
        context_id: The context the input belongs to.
        model_id: E.g. ``"sonic-3"``.
        voice: Canonical voice specifier (see `normalize_voice`).
        output_format: The audio format of the context.
        transcript: Text, concatenated verbatim to the context's earlier inputs.
        continue_: True when more input follows (``continue`` on the wire).
        flush: True for a manual flush.
        language: Language code, e.g. ``"en"`` or ``"es-MX"``.
        max_buffer_delay_ms: 0..5000; None leaves the server default (3000).
        add_timestamps: Ask for word timestamps.
        add_phoneme_timestamps: Ask for phoneme timestamps.
        use_normalized_timestamps: Normalized (True) or as-sent (False) words.
        generation_config: ``{"volume", "speed", "emotion"}``; may change per input.
        pronunciation_dict_id: Pronunciation dictionary to apply.
    """

    context_id: str
    model_id: str
    voice: Mapping[str, str]
    output_format: OutputFormat
    transcript: str = ""
    continue_: bool = False
    flush: bool = False
    language: str | None = None
    max_buffer_delay_ms: int | None = None
    add_timestamps: bool = False
    add_phoneme_timestamps: bool = False
    use_normalized_timestamps: bool | None = None
    generation_config: Mapping[str, Any] | None = None
    pronunciation_dict_id: str | None = None

    # Fields that must not change within a context (protocol doc, 2.1).
    LOCKED_FIELDS: ClassVar[tuple[str, ...]] = (
        "model_id",
        "voice",
        "output_format",
        "language",
        "max_buffer_delay_ms",
        "add_timestamps",
        "add_phoneme_timestamps",
        "use_normalized_timestamps",
        "pronunciation_dict_id",
    )

    def __post_init__(self):
        if not isinstance(self.context_id, str) or not self.context_id:
            raise InvalidRequestError("context_id must be a non-empty string")
        if not isinstance(self.model_id, str) or not self.model_id:
            raise InvalidRequestError(
                "model_id must be a non-empty string", context_id=self.context_id
            )
        if not isinstance(self.transcript, str):
            raise InvalidRequestError(
                f"transcript must be a string, got {type(self.transcript).__name__}",
                context_id=self.context_id,
            )
        delay = self.max_buffer_delay_ms
        if delay is not None and (
            isinstance(delay, bool)
            or not isinstance(delay, int)
            or not 0 <= delay <= MAX_BUFFER_DELAY_MS
        ):
            raise InvalidRequestError(
                f"max_buffer_delay_ms must be an integer in [0, {MAX_BUFFER_DELAY_MS}], "
                f"got {delay!r}",
                context_id=self.context_id,
            )

    @property
    def kind(self) -> Literal["push", "flush", "close"]:
        """What the request does to its context."""
        if not self.continue_:
            return "close"
        return "flush" if self.flush else "push"

    def locked(self) -> tuple[Any, ...]:
        """The values of the locked fields, for comparison between inputs."""
        return tuple(getattr(self, name) for name in self.LOCKED_FIELDS)

    def to_wire(self) -> dict[str, Any]:
        """Return the JSON object sent on the wire."""
        msg: dict[str, Any] = {
            "context_id": self.context_id,
            "model_id": self.model_id,
            "transcript": self.transcript,
            "voice": dict(self.voice),
            "output_format": self.output_format.to_wire(),
            "continue": self.continue_,
        }
        if self.flush:
            msg["flush"] = True
        if self.language is not None:
            msg["language"] = self.language
        if self.max_buffer_delay_ms is not None:
            msg["max_buffer_delay_ms"] = self.max_buffer_delay_ms
        if self.add_timestamps:
            msg["add_timestamps"] = True
        if self.add_phoneme_timestamps:
            msg["add_phoneme_timestamps"] = True
        if self.use_normalized_timestamps is not None:
            msg["use_normalized_timestamps"] = self.use_normalized_timestamps
        if self.generation_config is not None:
            msg["generation_config"] = dict(self.generation_config)
        if self.pronunciation_dict_id is not None:
            msg["pronunciation_dict_id"] = self.pronunciation_dict_id
        return msg

    def encode(self) -> str:
        """Return the text frame to send."""
        return _dumps(self.to_wire())

    def push(self, transcript: str, **changes: Any) -> GenerationRequest:
        """A continuation of this context carrying ``transcript``.

        Args:
            transcript: The text.
            **changes: Other per-input fields to change (``generation_config``).

        Returns:
            The new request.
        """
        return replace(self, transcript=transcript, continue_=True, flush=False, **changes)

    def flushed(self) -> GenerationRequest:
        """A manual flush of this context (``""``, ``continue: true``, ``flush: true``)."""
        return replace(self, transcript="", continue_=True, flush=True)

    def closed(self) -> GenerationRequest:
        """The end of this context's input (``""``, ``continue: false``)."""
        return replace(self, transcript="", continue_=False, flush=False)


@dataclass(frozen=True, slots=True)
class CancelRequest:
    """Cancel a context: ``{"context_id": ..., "cancel": true}``."""

    context_id: str

    def to_wire(self) -> dict[str, Any]:
        """Return the JSON object sent on the wire."""
        return {"context_id": self.context_id, "cancel": True}

    def encode(self) -> str:
        """Return the text frame to send."""
        return _dumps(self.to_wire())


ClientMessage = GenerationRequest | CancelRequest


def parse_request(raw: str | bytes | Mapping[str, Any]) -> ClientMessage:
    """Parse one client text frame, tolerantly (whitespace, unknown fields).

    Args:
        raw: The frame's payload, or its already decoded JSON object.

    Returns:
        The parsed request.

    Raises:
        InvalidRequestError: If the frame is not a valid request; the error
            names the context when the frame does.
    """
    obj = _json_object(raw, InvalidRequestError, "request")
    f = FieldReader(obj, InvalidRequestError, "request")
    context_id = f.str("context_id", required=True)
    if f.bool("cancel"):
        return CancelRequest(context_id=context_id)
    try:
        generation_config = f.object("generation_config")
        return GenerationRequest(
            context_id=context_id,
            model_id=f.str("model_id", required=True),
            voice=normalize_voice(f.raw("voice", required=True)),
            output_format=OutputFormat.coerce(f.object("output_format", required=True)),
            transcript=f.str("transcript", required=True),
            continue_=f.bool("continue"),
            flush=f.bool("flush"),
            language=f.str("language"),
            max_buffer_delay_ms=f.int("max_buffer_delay_ms"),
            add_timestamps=f.bool("add_timestamps"),
            add_phoneme_timestamps=f.bool("add_phoneme_timestamps"),
            # Absent and false differ here: absent leaves the server's default.
            use_normalized_timestamps=None
            if f.raw("use_normalized_timestamps") is None
            else f.bool("use_normalized_timestamps"),
            generation_config=None
            if generation_config is None
            else validate_generation_config(generation_config),
            pronunciation_dict_id=f.str("pronunciation_dict_id"),
        )
    except InvalidRequestError as e:
        # Errors raised by nested validators do not know the context yet.
        e.context_id = e.context_id or context_id
        raise


# ---------------------------------------------------------------------------
# Server -> client
# ---------------------------------------------------------------------------


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
    obj = _json_object(raw, ProtocolError, "server message")
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise ProtocolError("server message has no string 'type'")
    f = FieldReader(obj, ProtocolError, kind)
    if kind == "chunk":
        data = f.str("data", required=True)
        try:
            audio = base64.b64decode(data, validate=True)
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
    return _dumps(event_to_wire(event, legacy_errors=legacy_errors))


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
