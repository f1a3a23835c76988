#
# Copyright (c) 2026, pipecat-cartesia-ctx contributors
#
# SPDX-License-Identifier: BSD 2-Clause License
#

"""espeak-ng through ctypes, from the ``espeakng-loader`` wheel (the ``[voice]`` extra).

The wheel bundles the library and its data, so nothing is downloaded at run
time. espeak-ng keeps its whole state in globals and is not thread-safe: the
library is started once per process and every call holds one process-wide
lock. It renders synchronously, handing audio and events (word starts with
their place in the text, phonemes, pauses) to a callback.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass

import numpy as np

INSTALL_HINT = "pip install 'pipecat-cartesia-ctx[voice]'"

# Event types (speak_lib.h, espeak_EVENT_TYPE).
WORD, END, PHONEME = 1, 5, 7
NORMAL_RATE = 175  # words per minute: espeakRATE_NORMAL
MIN_RATE, MAX_RATE = 80, 450
_SYNCHRONOUS = 2  # AUDIO_OUTPUT_SYNCHRONOUS: espeak_Synth returns once all is rendered
_PHONEME_EVENTS, _PHONEME_IPA, _DONT_EXIT = 0x1, 0x2, 0x8000
_CHARS_UTF8, _END_PAUSE = 1, 0x1000
_RATE = 1  # espeakRATE
_STATUS_OK = 0
# espeak's voices drift: pitch flutter and roughness follow counters that run on
# from one utterance to the next (a static in wavegen.c), so the same text came
# out a few samples different each time. This variant turns both off (roughness
# 8 is past espeak's table: no modulation at all); all else is the language's.
VARIANT = "cartesia-emulator"
_VARIANT_FILE = "language variant\nname cartesia-emulator\nflutter 0\nroughness 8\n"


class VoiceUnavailableError(ImportError):
    """A voice asked for cannot run here (the ``espeak`` voice without its extra)."""


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),  # 1-based, in characters
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),  # ms
        ("sample", ctypes.c_int),  # from the start of this utterance
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_Callback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event)
)


@dataclass(frozen=True, slots=True)
class Event:
    """One of espeak's events.

    Parameters:
        kind: `WORD`, `END` or `PHONEME`.
        char: Where in the text it is, 0-based, in characters.
        sample: Where in the audio it is, in samples.
        name: A phoneme's IPA name; "" for a pause and for other events.
    """

    kind: int
    char: int
    sample: int
    name: str


@dataclass(frozen=True)
class Utterance:
    """What espeak rendered: 16-bit mono samples at `Espeak.sample_rate`, and its events."""

    samples: np.ndarray
    events: list[Event]


class Espeak:
    """The started library (one per process, from `load`)."""

    def __init__(self, library_path: str, data_path: str):
        self._lib = ctypes.CDLL(library_path)
        self._lib.espeak_Initialize.argtypes = [
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_char_p,
            ctypes.c_int,
        ]
        self._lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self._lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        self._lib.espeak_Synth.argtypes = [
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        options = _DONT_EXIT | _PHONEME_EVENTS | _PHONEME_IPA
        rate = self._lib.espeak_Initialize(_SYNCHRONOUS, 0, _with_variant(data_path), options)
        if rate <= 0:
            raise VoiceUnavailableError(f"espeak-ng did not start (data in {data_path})")
        self.sample_rate: int = rate
        self._voice: str | None = None
        self._chunks: list[np.ndarray] = []
        self._events: list[Event] = []
        self._callback = _Callback(self._collect)  # kept: espeak holds only a pointer
        self._lib.espeak_SetSynthCallback(self._callback)

    def select(self, voice: str) -> None:
        """Make ``voice`` espeak's current voice.

        Raises:
            ValueError: espeak has no such voice.
        """
        with _LOCK:
            self._select(voice)

    def synthesize(self, text: str, voice: str, rate: int, end_pause: bool) -> Utterance:
        """Render ``text``.

        Args:
            text: Plain text (no markup: tags must be gone).
            voice: An espeak voice name (``"en-us+cartesia-emulator"``).
            rate: Words per minute, clamped to espeak's range.
            end_pause: End with the pause of the last clause's punctuation.

        Raises:
            ValueError: espeak has no such voice.
            RuntimeError: espeak failed to render.
        """
        data = text.encode("utf-8")
        flags = _CHARS_UTF8 | (_END_PAUSE if end_pause else 0)
        with _LOCK:
            self._select(voice)
            self._lib.espeak_SetParameter(_RATE, min(max(rate, MIN_RATE), MAX_RATE), 0)
            self._chunks, self._events = [], []
            status = self._lib.espeak_Synth(data, len(data) + 1, 0, 1, 0, flags, None, None)
            chunks, events = self._chunks, self._events
        if status != _STATUS_OK:
            raise RuntimeError(f"espeak-ng failed to render (status {status})")
        samples = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)
        return Utterance(samples, events)

    def _select(self, voice: str) -> None:
        if voice != self._voice:  # loading a voice reads its dictionary: only on a change
            if self._lib.espeak_SetVoiceByName(voice.encode()) != _STATUS_OK:
                self._voice = None  # espeak may be left between voices
                raise ValueError(f"espeak-ng has no voice {voice!r}")
            self._voice = voice

    def _collect(self, wav, count: int, events) -> int:
        if wav and count > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(count,)).copy())
        i = 0
        while (event := events[i]).type != 0:  # the list ends with LIST_TERMINATED
            if event.type in (WORD, END, PHONEME):
                name = event.id.string.decode("utf-8", "ignore") if event.type == PHONEME else ""
                self._events.append(Event(event.type, event.text_position - 1, event.sample, name))
            i += 1
        return 0  # go on


_LOCK = threading.Lock()
_started: Espeak | None = None


def load() -> Espeak:
    """The library, started on first use.

    Raises:
        VoiceUnavailableError: The ``[voice]`` extra is missing, or espeak-ng
            cannot start here.
    """
    global _started
    try:
        import espeakng_loader  # imported here: the extra is optional
    except ImportError as e:
        raise VoiceUnavailableError(
            f"the espeak voice needs the [voice] extra (espeak-ng): {INSTALL_HINT}"
        ) from e
    with _LOCK:
        if _started is None:
            try:
                library, data = espeakng_loader.get_library_path(), espeakng_loader.get_data_path()
                _started = Espeak(library, data)
            except (OSError, RuntimeError) as e:
                raise VoiceUnavailableError(f"espeak-ng cannot start here: {e}") from e
        return _started


def _with_variant(data_path: str) -> bytes:
    """A data directory like ``data_path`` with `VARIANT` added.

    The installed one stays untouched: a temporary directory links to its
    entries (or copies them, where links need a privilege) beside the variant.
    """
    home = tempfile.mkdtemp(prefix="cartesia-emulator-espeak-")
    atexit.register(shutil.rmtree, home, ignore_errors=True)
    data = os.path.join(home, "espeak-ng-data")
    variants = os.path.join(data, "voices", "!v")
    os.makedirs(variants)
    for name in os.listdir(data_path):
        if name == "voices":
            continue  # only its variants, which this voice does not use
        source, target = os.path.join(data_path, name), os.path.join(data, name)
        try:
            os.symlink(source, target, target_is_directory=os.path.isdir(source))
        except OSError:
            (shutil.copytree if os.path.isdir(source) else shutil.copy2)(source, target)
    with open(os.path.join(variants, VARIANT), "w", encoding="utf-8") as f:
        f.write(_VARIANT_FILE)
    return data.encode()
