#
# Copyright (c) 2026, pipecat-cartesia-ctx contributors
#
# SPDX-License-Identifier: BSD 2-Clause License
#

"""What every example shares: where to connect, and writing WAV files.

Offline by default: an emulator is started in-process and the example talks to
it over a real loopback WebSocket. With ``CARTESIA_API_KEY`` set, the same code
talks to Cartesia instead (``CARTESIA_VOICE_ID`` and ``CARTESIA_MODEL_ID``
choose the voice and model).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import wave
from collections.abc import AsyncIterator
from pathlib import Path

from loguru import logger

from pipecat_cartesia_ctx.audio import to_pcm16
from pipecat_cartesia_ctx.client import CartesiaConnection
from pipecat_cartesia_ctx.emulator import CartesiaEmulator, Pacing

# "Barbershop Man", one of Cartesia's public voices; any id works offline.
VOICE_ID = os.environ.get("CARTESIA_VOICE_ID", "a0e99841-438c-4a64-b679-ae501e7d6091")
MODEL_ID = os.environ.get("CARTESIA_MODEL_ID", "sonic-3")
SAMPLE_RATE = 24000
OUTPUT_FORMAT = {"container": "raw", "encoding": "pcm_s16le", "sample_rate": SAMPLE_RATE}


def parse_args(description: str) -> argparse.Namespace:
    """Common options: ``--out`` (folder for WAV files), ``--no-play``, ``--fast``."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("out"), help="folder for WAV files")
    parser.add_argument("--no-play", action="store_true", help="never play audio live")
    parser.add_argument(
        "--fast", action="store_true", help="offline: no pacing and no typing delay (for tests)"
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    # The package logs its wire-level events at DEBUG; examples show warnings and up.
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    return args


@contextlib.asynccontextmanager
async def open_connection(
    pacing: Pacing | None = None, *, fast: bool = False
) -> AsyncIterator[CartesiaConnection]:
    """A connection to Cartesia if ``CARTESIA_API_KEY`` is set, else to a local emulator.

    Args:
        pacing: The emulator's pacing (default: realistic).
        fast: Offline, send audio as fast as possible instead.
    """
    api_key = os.environ.get("CARTESIA_API_KEY")
    if api_key:
        print("Using the Cartesia API (CARTESIA_API_KEY is set)")
        async with await CartesiaConnection.connect(api_key=api_key) as conn:
            yield conn
        return
    async with CartesiaEmulator(pacing=Pacing.instant() if fast else pacing) as emu:
        print(f"Offline: using the local Cartesia emulator at {emu.url}")
        async with await CartesiaConnection.connect(api_key="offline", url=emu.url) as conn:
            yield conn


def write_wav(path: Path, audio: bytes, encoding: str = "pcm_s16le", rate: int = SAMPLE_RATE):
    """Write mono audio of any Cartesia encoding as a 16-bit PCM WAV file."""
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(to_pcm16(audio, encoding))
    seconds = len(audio) / (rate * {"pcm_f32le": 4, "pcm_s16le": 2}.get(encoding, 1))
    print(f"  wrote {path} ({seconds:.2f} s)")
