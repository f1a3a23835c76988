#
# Copyright (c) 2026, pipecat-cartesia-ctx contributors
#
# SPDX-License-Identifier: BSD 2-Clause License
#

"""Constants and JSON framing shared by both directions of the protocol."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Literal

DEFAULT_URL = "wss://api.cartesia.ai/tts/websocket"
WEBSOCKET_PATH = "/tts/websocket"
# The version pipecat 1.14 pins; the first one with structured error events.
DEFAULT_CARTESIA_VERSION = "2026-03-01"
STRUCTURED_ERRORS_SINCE = "2026-03-01"

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
