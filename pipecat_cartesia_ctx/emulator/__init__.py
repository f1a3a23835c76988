#
# Copyright (c) 2026, pipecat-cartesia-ctx contributors
#
# SPDX-License-Identifier: BSD 2-Clause License
#

"""A local Cartesia TTS WebSocket server, for demos, tests and benchmarks with no API key.

``python -m pipecat_cartesia_ctx.emulator`` (or ``cartesia-emulator``) runs it
from the command line; `CartesiaEmulator` runs it inside a program or a test.
``CartesiaEmulator(voice="espeak")`` speaks real words (the ``[voice]`` extra;
`espeak_available` says whether it is installed).
"""

from .config import Behavior, CancelBehavior, Faults, InjectedError, Pacing
from .espeak import EspeakVoice
from .layout import Speech
from .record import ConnectionRecord, ContextRecord, EmulatorRecord, InputRecord
from .server import CartesiaEmulator
from .voice import SyntheticVoice
from .voices import Voice, VoiceUnavailableError, espeak_available

__all__ = [
    "Behavior",
    "CancelBehavior",
    "CartesiaEmulator",
    "ConnectionRecord",
    "ContextRecord",
    "EmulatorRecord",
    "EspeakVoice",
    "Faults",
    "InjectedError",
    "InputRecord",
    "Pacing",
    "Speech",
    "SyntheticVoice",
    "Voice",
    "VoiceUnavailableError",
    "espeak_available",
]
