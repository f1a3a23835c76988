#
# Copyright (c) 2026, pipecat-cartesia-ctx contributors
#
# SPDX-License-Identifier: BSD 2-Clause License
#

"""Cartesia streaming TTS over WebSocket contexts, for Pipecat, with a local Cartesia emulator.

Layers, bottom up: `protocol` (sans-I/O wire format), `audio` (encoding
conversion), `client` (asyncio connection and contexts), `emulator` (a local
Cartesia server built on the same protocol module).
"""

from .client import CartesiaConnection, CartesiaContext
from .protocol import CartesiaError

__version__ = "0.1.0.dev0"

__all__ = ["CartesiaConnection", "CartesiaContext", "CartesiaError", "__version__"]
