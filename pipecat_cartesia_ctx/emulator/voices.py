#
# Copyright (c) 2026, pipecat-cartesia-ctx contributors
#
# SPDX-License-Identifier: BSD 2-Clause License
#

"""What the emulator needs from a voice, and choosing one by name.

``"synthetic"`` (`SyntheticVoice`, the default) is deterministic and predictable
from the text alone, for tests. ``"espeak"`` (`EspeakVoice`) speaks real words
through espeak-ng, offline, with the ``[voice]`` extra installed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from .espeak import EspeakVoice
from .espeak_lib import VoiceUnavailableError, load
from .layout import Layout, Speech
from .voice import SyntheticVoice

VOICE_NAMES = ("synthetic", "espeak")


class Voice(Protocol):
    """What the emulator asks of a voice: where words fall, and the encoded audio.

    The emulator calls `layout` and `encode` with ``render=False`` on its event
    loop, and again with ``render=True`` in a worker thread when either returns
    None, so a voice may take its time to render but must be thread-safe.
    """

    def layout(
        self,
        text: str,
        sample_rate: int,
        *,
        offset_samples: int = 0,
        generation_config: Mapping[str, Any] | None = None,
        render: bool = True,
    ) -> Layout | None:
        """Where the words fall, in samples; None if that needs rendering, and not ``render``."""
        ...

    def encode(self, layout: Layout, encoding: str, *, render: bool = True) -> bytes | None:
        """The layout's audio in ``encoding``; None if that needs rendering, and not ``render``."""
        ...

    def cached(self, layout: Layout, encoding: str) -> bool:
        """Whether `encode` would render nothing."""
        ...

    def synthesize(
        self,
        text: str,
        sample_rate: int,
        *,
        offset_samples: int = 0,
        generation_config: Mapping[str, Any] | None = None,
    ) -> Speech:
        """Samples and word and phoneme timestamps of ``text``, as the emulator sends them."""
        ...


def make_voice(voice: Voice | str | None) -> Voice:
    """The voice named ``voice`` (`VOICE_NAMES`), `SyntheticVoice` for None, or ``voice`` itself.

    Raises:
        VoiceUnavailableError: ``"espeak"`` without the ``[voice]`` extra.
        ValueError: An unknown name.
    """
    if voice is None or voice == "synthetic":
        return SyntheticVoice()
    if voice == "espeak":
        return EspeakVoice()
    if isinstance(voice, str):
        raise ValueError(f"unknown voice {voice!r}: use one of {', '.join(VOICE_NAMES)}")
    return voice


def espeak_available() -> bool:
    """Whether ``voice="espeak"`` works: the ``[voice]`` extra is installed, espeak-ng starts."""
    try:
        load()
    except VoiceUnavailableError:
        return False
    return True
