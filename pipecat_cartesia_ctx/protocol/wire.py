#
# Copyright (c) 2026, pipecat-cartesia-ctx contributors
#
# SPDX-License-Identifier: BSD 2-Clause License
#

"""Constants, the checks of single values against them, and JSON framing.

Shared by both directions of the protocol, and by the service where its
settings enter: each limit is defined, and checked, once.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Literal, NoReturn
from urllib.parse import urlsplit

from .errors import InvalidRequestError
from .text import is_utf8

DEFAULT_URL = "wss://api.cartesia.ai/tts/websocket"
WEBSOCKET_PATH = "/tts/websocket"
# The version pipecat 1.14 pins; the first one with structured error events.
DEFAULT_CARTESIA_VERSION = "2026-03-01"
STRUCTURED_ERRORS_SINCE = "2026-03-01"
# Every API version is a date (protocol doc, 1).
VERSION_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")

# Model families in Cartesia's documentation and SDKs (protocol doc, 2.1). Each is
# accepted as its base name (routed to its latest stable snapshot), as a dated
# snapshot ("sonic-2-2025-06-11") and as "-latest" (a preview); "sonic-latest" is
# the alias of the newest family.
MODEL_FAMILIES: tuple[str, ...] = (
    "sonic",
    "sonic-2",
    "sonic-3",
    "sonic-3.5",
    "sonic-3.6",
    "sonic-turbo",
    "sonic-english",
    "sonic-multilingual",
)
_MODEL_ID = re.compile(
    "(?:" + "|".join(map(re.escape, MODEL_FAMILIES)) + r")(?:-latest|-\d{4}-\d{2}-\d{2})?"
)

# A language code's shape: "en", "yue", "es-MX", "zh-Hans-CN". The set of languages
# Cartesia speaks grows, so only the shape is ours to check; the server says
# whether it speaks the language.
LANGUAGE_CODE = re.compile(r"[A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8})*")

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


def is_known_model(model_id: str) -> bool:
    """Whether ``model_id`` names one of Cartesia's TTS models.

    Args:
        model_id: E.g. ``"sonic-3"``, ``"sonic-2-2025-06-11"`` or ``"sonic-latest"``.

    Returns:
        True for a known family, its dated snapshots and its ``-latest`` alias.
    """
    return _MODEL_ID.fullmatch(model_id) is not None


def is_language_code(code: str) -> bool:
    """Whether ``code`` has the shape of a language code (``"en"``, ``"es-MX"``).

    Args:
        code: The code.

    Returns:
        True for a two- or three-letter language, optionally followed by
        ``-``-separated subtags (region, script); False for ``"english"``,
        ``"en_US"`` or ``""``.
    """
    return LANGUAGE_CODE.fullmatch(code) is not None


# -- single values, checked where they enter (client, emulator and service share these) --


def refuse(name: str, allowed: str, value: Any, context_id: str | None = None) -> NoReturn:
    """Raise the `InvalidRequestError` for a value: its name, what is allowed, what came."""
    raise InvalidRequestError(f"{name} must be {allowed}, got {value!r}", context_id=context_id)


def is_text(value: Any) -> bool:
    """A string with something other than whitespace, that can go on the wire."""
    return isinstance(value, str) and bool(value.strip()) and is_utf8(value)


def check_container(container: Any, name: str = "output_format.container") -> str:
    """Check an output container: only ``"raw"`` exists on the WebSocket.

    Raises:
        InvalidRequestError: Anything else, the message naming ``name``.
    """
    if container != "raw":
        refuse(name, "'raw' on the WebSocket", container)
    return container


def check_encoding(encoding: Any, name: str = "output_format.encoding") -> str:
    """Check an encoding against `ENCODINGS`.

    Raises:
        InvalidRequestError: An encoding Cartesia does not offer.
    """
    if not isinstance(encoding, str) or encoding not in BYTES_PER_SAMPLE:
        refuse(name, f"one of {', '.join(ENCODINGS)}", encoding)
    return encoding


def check_sample_rate(rate: Any, name: str = "output_format.sample_rate") -> int:
    """Check a wire sample rate against `SAMPLE_RATES`.

    Raises:
        InvalidRequestError: A rate Cartesia does not offer (or not an integer).
    """
    if isinstance(rate, bool) or not isinstance(rate, int) or rate not in SAMPLE_RATES:
        refuse(name, f"one of {SAMPLE_RATES}", rate)
    return rate


def check_max_buffer_delay_ms(
    delay: Any, name: str = "max_buffer_delay_ms", context_id: str | None = None
) -> int | None:
    """Check a buffering delay: None (the server default) or 0..`MAX_BUFFER_DELAY_MS`.

    Raises:
        InvalidRequestError: Out of range, or not an integer.
    """
    if delay is not None and (
        isinstance(delay, bool)
        or not isinstance(delay, int)
        or not 0 <= delay <= MAX_BUFFER_DELAY_MS
    ):
        refuse(name, f"an integer in [0, {MAX_BUFFER_DELAY_MS}]", delay, context_id)
    return delay


def check_model_id(model_id: Any, name: str = "model_id", context_id: str | None = None) -> str:
    """Check that a model id is a non-empty string.

    Whether the model exists is the server's to say (`is_known_model` tells the
    families this package knows; Cartesia adds new ones).

    Raises:
        InvalidRequestError: Not a string, empty or whitespace.
    """
    if not is_text(model_id):
        refuse(name, "a model id such as 'sonic-3'", model_id, context_id)
    return model_id


def check_language(language: Any, name: str = "language") -> str | None:
    """Check a language: None (not sent) or a code such as ``"en"`` or ``"es-MX"``.

    Raises:
        InvalidRequestError: Anything that cannot be a language code.
    """
    if language is not None and not (isinstance(language, str) and is_language_code(language)):
        refuse(name, "a language code such as 'en' or 'es-MX' (or None)", language)
    return language


def check_pronunciation_dict_id(value: Any, name: str = "pronunciation_dict_id") -> str | None:
    """Check a pronunciation dictionary id: None or a non-empty string.

    Raises:
        InvalidRequestError: Anything else.
    """
    if value is not None and not is_text(value):
        refuse(name, "a dictionary id string (or None)", value)
    return value


def check_cartesia_version(version: Any, name: str = "cartesia_version") -> str:
    """Check an API version: a date such as ``"2026-03-01"``.

    Raises:
        InvalidRequestError: Anything else (it goes into a header as given).
    """
    if not isinstance(version, str) or VERSION_DATE.fullmatch(version) is None:
        refuse(name, "a date such as '2026-03-01'", version)
    return version


def check_url(url: Any, name: str = "url") -> str:
    """Check a WebSocket URL: ``ws://`` or ``wss://`` and a host.

    Raises:
        InvalidRequestError: Anything else; the message leaves out the query
            (where a key may be).
    """
    if not isinstance(url, str):
        refuse(name, "a ws:// or wss:// URL", url)
    try:
        parts = urlsplit(url)
        valid = parts.scheme in ("ws", "wss") and bool(parts.hostname)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        valid = False
    if not valid:
        refuse(name, "a ws:// or wss:// URL with a host", url.split("?")[0].split("#")[0])
    return url


def json_object(
    raw: str | bytes | Mapping[str, Any], error: type[Exception], what: str
) -> Mapping[str, Any]:
    """Decode one JSON object, raising ``error`` (a typed error) for anything else."""
    if isinstance(raw, Mapping):
        return raw
    try:
        obj = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise error(f"{what} is not valid JSON: {e}") from None
    except RecursionError:
        raise error(f"{what} is nested too deeply") from None
    if not isinstance(obj, dict):
        raise error(f"{what} must be a JSON object, got {type(obj).__name__}")
    return obj


def dumps(obj: Mapping[str, Any]) -> str:
    """Compact JSON text, as sent on the wire."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
