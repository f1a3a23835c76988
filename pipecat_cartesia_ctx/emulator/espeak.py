#
# Copyright (c) 2026, pipecat-cartesia-ctx contributors
#
# SPDX-License-Identifier: BSD 2-Clause License
#

"""A voice that speaks real words, offline: espeak-ng (the ``[voice]`` extra, GPL-3.0).

Text between ``<break .../>`` tags is rendered by espeak in one go, so it keeps
its sentence melody and pauses; a break is silence of its exact length, and
other tags are not spoken. Word timestamps come from espeak's own events: a
word starts at its first phoneme and ends at the next word's event or at the
pause that follows it. Words espeak runs together (``"of the"`` has one word
event) share that span by their letters. espeak renders at 22050 Hz; other
rates are resampled with numpy (FFT, band-limited). The same text gives the
same samples (`espeak_lib.VARIANT`), so renderings are cached, bounded in bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..audio import encode_float
from . import espeak_lib
from .espeak_words import parts, spans, unmarked, word_tokens
from .layout import Layout, Span, Speech
from .soundcache import DEFAULT_CACHE_BYTES, SoundCache
from .voice import (
    _ANY_TAG,
    _CLAUSE_END,
    _CLOSING_QUOTES,
    _SENTENCE_END,
    _silence,
)

# The top of the band rolls off over this fraction of the new Nyquist frequency:
# a brick-wall cut would ring around every consonant.
_ROLL_OFF = 0.1


@dataclass(frozen=True, slots=True)
class EspeakLayout(Layout):
    """A `Layout` whose ``sounds`` are the pieces of text espeak renders whole.

    Parameters:
        speed: The speaking rate the pieces were rendered at.
    """

    speed: float


@dataclass(frozen=True, slots=True)
class _Rendering:
    """One piece of text as espeak said it; times in samples at espeak's rate."""

    samples: np.ndarray
    words: list[tuple[str, int, int]]
    phonemes: list[tuple[str, int, int]]

    def __len__(self) -> int:
        # What the cache counts against its budget (the spans are small beside it).
        return self.samples.nbytes + 64 * (len(self.words) + len(self.phonemes))


class EspeakVoice:
    """Real words from espeak-ng, with word timestamps from espeak's own events.

    Parameters:
        language: An espeak-ng voice: ``"en-us"``, ``"en"`` (British), ``"fr"``,
            ``"de"``, ... (``espeak-ng --voices`` lists them).
        level: Scale of espeak's output at ``volume`` 1. espeak peaks near 0.8
            of full scale: 0.5 keeps ``volume`` 2.0 (Cartesia's most) unclipped.
        cache_bytes: Bytes kept for reuse, least recently used dropped first:
            this much of encoded audio, and as much of espeak's own renderings.

    Raises:
        VoiceUnavailableError: The ``[voice]`` extra is not installed.
        ValueError: espeak-ng has no voice ``language``.
    """

    def __init__(
        self,
        *,
        language: str = "en-us",
        level: float = 0.5,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ):
        self._espeak = espeak_lib.load()
        self.language = language
        self._voice = f"{language}+{espeak_lib.VARIANT}"
        self._espeak.select(self._voice)  # a bad name fails here, not in a render
        self.level = level
        self.cache: SoundCache[bytes] = SoundCache(cache_bytes)
        self.renderings: SoundCache[_Rendering] = SoundCache(cache_bytes)

    def layout(
        self,
        text: str,
        sample_rate: int,
        *,
        offset_samples: int = 0,
        generation_config: Mapping[str, Any] | None = None,
        render: bool = True,
    ) -> EspeakLayout | None:
        """Lay ``text`` out in samples: where each piece sounds, and the timestamps.

        Args:
            text: The text, possibly with Cartesia tags.
            sample_rate: Output sample rate.
            offset_samples: Samples of this context already produced, so the
                timestamps run on from earlier audio.
            generation_config: ``speed`` sets espeak's rate, ``volume`` the gain.
            render: Render what is not cached; False returns None instead, so a
                caller on the event loop can ask again in a thread.

        Returns:
            The layout, or None (``render`` False and a piece not rendered yet).
        """
        config = generation_config or {}
        speed = float(config.get("speed") or 1.0)
        gain = self.level * float(config.get("volume") or 1.0)
        sounds: list[tuple[str, int, int]] = []
        words: list[Span] = []
        phonemes: list[Span] = []
        at = 0
        for part in parts(text):
            if isinstance(part, float):
                at += round(part * sample_rate)
                continue
            rendering = self._rendering(part, speed, render)
            if rendering is None:
                return None
            start = offset_samples + at

            def seconds(sample: int, start: int = start) -> float:
                return (start + self._scale(sample, sample_rate)) / sample_rate

            words += [Span(w, seconds(a), seconds(b)) for w, a, b in rendering.words]
            phonemes += [Span(p, seconds(a), seconds(b)) for p, a, b in rendering.phonemes]
            n = self._scale(len(rendering.samples), sample_rate)
            if n:
                sounds.append((part, at, at + n))
            at += n
        return EspeakLayout(sample_rate, at, gain, sounds, words, phonemes, speed)

    def synthesize(
        self,
        text: str,
        sample_rate: int,
        *,
        offset_samples: int = 0,
        generation_config: Mapping[str, Any] | None = None,
    ) -> Speech:
        """Speak ``text``: what the emulator sends for it, samples and timestamps.

        Args:
            text: The text.
            sample_rate: Output sample rate.
            offset_samples: Samples of this context already produced.
            generation_config: ``speed`` and ``volume``.
        """
        layout = self.layout(
            text, sample_rate, offset_samples=offset_samples, generation_config=generation_config
        )
        assert layout is not None  # rendering on: never None
        samples = np.zeros(layout.samples, dtype=np.float32)
        for part, start, end in layout.sounds:
            samples[start:end] = self._samples(part, layout, end - start)
        return Speech(samples=samples, words=layout.words, phonemes=layout.phonemes)

    def encode(self, layout: EspeakLayout, encoding: str, *, render: bool = True) -> bytes | None:
        """The audio of a layout as raw bytes of ``encoding``, exactly `synthesize`'s samples.

        Args:
            layout: What `layout` returned.
            encoding: A Cartesia encoding.
            render: Render what the cache lacks; False returns None instead.

        Returns:
            The bytes, or None when ``render`` is False and a piece is not cached.
        """
        silence = _silence(encoding)
        parts: list[bytes] = []
        at = 0
        for part, start, end in layout.sounds:
            key = _key(part, end - start, layout, encoding)
            if render:
                sound = self.cache.get_or_make(
                    key,
                    lambda part=part, n=end - start: encode_float(
                        self._samples(part, layout, n), encoding
                    ),
                )
            elif (sound := self.cache.get(key)) is None:
                return None
            parts += (silence * (start - at), sound)
            at = end
        parts.append(silence * (layout.samples - at))
        return b"".join(parts)

    def cached(self, layout: EspeakLayout, encoding: str) -> bool:
        """Whether every piece of a layout is in the cache (`encode` would render none)."""
        return all(
            _key(part, end - start, layout, encoding) in self.cache
            for part, start, end in layout.sounds
        )

    def _scale(self, sample: int, sample_rate: int) -> int:
        """A sample index at espeak's rate, at ``sample_rate``."""
        return round(sample * sample_rate / self._espeak.sample_rate)

    def _samples(self, part: str, layout: EspeakLayout, n: int) -> np.ndarray:
        rendering = self._rendering(part, layout.speed, render=True)
        assert rendering is not None
        samples = _resample(rendering.samples.astype(np.float64) / 32768.0, n) * layout.gain
        return np.clip(samples, -1.0, 1.0).astype(np.float32)

    def _rendering(self, part: str, speed: float, render: bool) -> _Rendering | None:
        key = (part, speed)
        if not render:
            return self.renderings.get(key)
        return self.renderings.get_or_make(key, lambda: self._render(part, speed))

    def _render(self, part: str, speed: float) -> _Rendering:
        words = word_tokens(part)
        plain = unmarked(part)
        if not plain.strip():
            return _Rendering(np.zeros(0, dtype=np.int16), [(w, 0, 0) for w, _, _ in words], [])
        last = _ANY_TAG.sub("", words[-1][0]).rstrip(_CLOSING_QUOTES) if words else ""
        utterance = self._espeak.synthesize(
            plain,
            voice=self._voice,
            rate=round(espeak_lib.NORMAL_RATE * speed),
            # The pause after a sentence or clause at the end, as espeak makes it
            # inside the text; none mid-sentence (a long text cut in pieces).
            end_pause=last.endswith(_SENTENCE_END + _CLAUSE_END),
        )
        timed, phonemes = spans(words, utterance.events, len(utterance.samples))
        return _Rendering(utterance.samples, timed, phonemes)


def _resample(samples: np.ndarray, n: int) -> np.ndarray:
    """``samples`` at ``n`` samples in all, band-limited (FFT; exact length, no delay)."""
    if not len(samples):
        return np.zeros(n)
    if n == len(samples):
        return samples
    spectrum = np.fft.rfft(samples)
    keep = min(len(spectrum), n // 2 + 1)
    spectrum = spectrum[:keep].copy()
    if n < len(samples):  # downsampling: roll the top of the new band off smoothly
        edge = max(1, int(keep * _ROLL_OFF))
        spectrum[keep - edge :] *= 0.5 * (1 + np.cos(np.linspace(0, np.pi, edge)))
    return np.fft.irfft(spectrum, n) * (n / len(samples))


def _key(part: str, n: int, layout: EspeakLayout, encoding: str) -> tuple:
    return (part, layout.speed, n, layout.sample_rate, layout.gain, encoding)
