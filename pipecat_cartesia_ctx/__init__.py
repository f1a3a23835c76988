#
# Copyright (c) 2026, pipecat-cartesia-ctx contributors
#
# SPDX-License-Identifier: BSD 2-Clause License
#

"""Cartesia streaming TTS over WebSocket contexts, for Pipecat, with a local Cartesia emulator.

Layers, bottom up: `protocol` (sans-I/O wire format), `audio` (encoding
conversion), `segmenter` and `ledger` (sans-I/O text segmentation and segment
bookkeeping), `client` (asyncio connection and contexts), `service` (the
Pipecat TTS service), and `emulator` (a local Cartesia server built on the
same protocol module).
"""

from typing import TYPE_CHECKING, Any

from .protocol import CartesiaError
from .segmenter import FlushOn

if TYPE_CHECKING:
    from .client import CartesiaConnection, CartesiaContext
    from .frames import (
        CartesiaFlushDoneFrame,
        CartesiaResumeMetricsData,
        CartesiaSegmentMetricsData,
        CartesiaTTSAudioRawFrame,
    )
    from .service import CartesiaContextTTSService, CartesiaServiceStats

# Names are loaded on first use: importing the sans-I/O layers (protocol,
# segmenter, ledger) loads no websockets, loguru or pipecat, and the client and
# the emulator start without importing pipecat.
_LAZY = {
    "CartesiaConnection": "client",
    "CartesiaContext": "client",
    "CartesiaContextTTSService": "service",
    "CartesiaServiceStats": "service",
    "CartesiaFlushDoneFrame": "frames",
    "CartesiaResumeMetricsData": "frames",
    "CartesiaSegmentMetricsData": "frames",
    "CartesiaTTSAudioRawFrame": "frames",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__version__ = "0.1.0.dev0"

__all__ = [
    "CartesiaConnection",
    "CartesiaContext",
    "CartesiaContextTTSService",
    "CartesiaError",
    "CartesiaFlushDoneFrame",
    "CartesiaResumeMetricsData",
    "CartesiaSegmentMetricsData",
    "CartesiaServiceStats",
    "CartesiaTTSAudioRawFrame",
    "FlushOn",
    "__version__",
]
