#
# Copyright (c) 2026, pipecat-cartesia-ctx contributors
#
# SPDX-License-Identifier: BSD 2-Clause License
#

"""Client -> server messages: generation requests (push, flush, close) and cancel.

Built by the client (`GenerationRequest.encode`) and parsed by the emulator
(`parse_request`), so each is defined once. No I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Literal

from .errors import InvalidRequestError
from .fields import FieldReader
from .text import is_utf8
from .wire import (
    BYTES_PER_SAMPLE,
    GENERATION_CONFIG_RANGES,
    check_container,
    check_encoding,
    check_max_buffer_delay_ms,
    check_model_id,
    check_sample_rate,
    dumps,
    is_text,
    json_object,
    refuse,
)


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
        check_container(self.container)
        check_encoding(self.encoding)
        check_sample_rate(self.sample_rate)

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
    if not is_text(voice_id):
        refuse("voice id", "a non-empty string", voice_id)
    return {"mode": "id", "id": voice_id}


def validate_generation_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Check a ``generation_config`` object against the documented ranges.

    Args:
        config: The object; unknown keys are kept, as the server ignores them.

    Returns:
        A plain dict copy.

    Raises:
        InvalidRequestError: If ``volume`` or ``speed`` is out of range, or
            ``emotion`` is not a string, or a value cannot go into JSON.
    """
    if not isinstance(config, Mapping):
        refuse("generation_config", "an object", config)
    f = FieldReader(config, InvalidRequestError, "generation_config")
    for key, (low, high) in GENERATION_CONFIG_RANGES.items():
        value = f.number(key)
        if value is not None and not low <= value <= high:
            f.fail(f"{key} must be within [{low}, {high}], got {value}")
    f.str("emotion")
    try:
        dumps(config)
    except (TypeError, ValueError) as e:
        f.fail(f"not JSON: {e}")
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
        check_model_id(self.model_id, context_id=self.context_id)
        if not isinstance(self.transcript, str):
            raise InvalidRequestError(
                f"transcript must be a string, got {type(self.transcript).__name__}",
                context_id=self.context_id,
            )
        check_max_buffer_delay_ms(self.max_buffer_delay_ms, context_id=self.context_id)

    @property
    def kind(self) -> Literal["push", "flush", "close"]:
        """What the request does to its context."""
        if not self.continue_:
            return "close"
        return "flush" if self.flush else "push"

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
        """Return the text frame to send.

        Raises:
            InvalidRequestError: If the request cannot go on the wire: a value that
                is not JSON (in ``generation_config``), or text with a lone
                surrogate, which no WebSocket text frame can carry.
        """
        try:
            text = dumps(self.to_wire())
        except (TypeError, ValueError) as e:
            raise InvalidRequestError(
                f"request is not JSON: {e}", context_id=self.context_id
            ) from None
        if not is_utf8(text):
            raise InvalidRequestError(
                "request is not valid UTF-8 (a lone surrogate in its text or fields)",
                context_id=self.context_id,
            )
        return text

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
        return dumps(self.to_wire())


ClientMessage = GenerationRequest | CancelRequest


def parse_request(
    raw: str | bytes | Mapping[str, Any], defaults: GenerationRequest | None = None
) -> ClientMessage:
    """Parse one client text frame, tolerantly (whitespace, unknown fields).

    Args:
        raw: The frame's payload, or its already decoded JSON object.
        defaults: The request that opened the frame's context, if it is open:
            every field the frame leaves out keeps that request's value, as
            Cartesia does for later inputs of a context. Only ``transcript``,
            ``continue``, ``flush`` and ``generation_config`` are per input.

    Returns:
        The parsed request.

    Raises:
        InvalidRequestError: If the frame is not a valid request; the error
            names the context when the frame does.
    """
    obj = json_object(raw, InvalidRequestError, "request")
    f = FieldReader(obj, InvalidRequestError, "request")
    context_id = f.str("context_id", required=True)
    if f.bool("cancel"):
        return CancelRequest(context_id=context_id)
    base = defaults if defaults is not None and defaults.context_id == context_id else None
    try:
        locked: dict[str, Any] = {}
        if (model_id := f.str("model_id", required=base is None)) is not None:
            locked["model_id"] = model_id
        if (voice := f.raw("voice", required=base is None)) is not None:
            locked["voice"] = normalize_voice(voice)
        if (output_format := f.object("output_format", required=base is None)) is not None:
            locked["output_format"] = OutputFormat.coerce(output_format)
        if (language := f.str("language")) is not None:
            locked["language"] = language
        if (delay := f.int("max_buffer_delay_ms")) is not None:
            locked["max_buffer_delay_ms"] = delay
        if (pronunciation_dict_id := f.str("pronunciation_dict_id")) is not None:
            locked["pronunciation_dict_id"] = pronunciation_dict_id
        # Absent and false differ here: absent keeps the context's (or the server's) value.
        for key in ("add_timestamps", "add_phoneme_timestamps", "use_normalized_timestamps"):
            if f.raw(key) is not None:
                locked[key] = f.bool(key)
        generation_config = f.object("generation_config")
        per_input = {
            "transcript": f.str("transcript", required=True),
            "continue_": f.bool("continue"),
            "flush": f.bool("flush"),
            "generation_config": None
            if generation_config is None
            else validate_generation_config(generation_config),
        }
        if base is not None:
            return replace(base, **locked, **per_input)
        return GenerationRequest(context_id=context_id, **locked, **per_input)
    except InvalidRequestError as e:
        # Errors raised by nested validators do not know the context yet.
        e.context_id = e.context_id or context_id
        raise
