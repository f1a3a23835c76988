#
# Copyright (c) 2026, pipecat-cartesia-ctx contributors
#
# SPDX-License-Identifier: BSD 2-Clause License
#

"""A deterministic synthetic voice: audible, speech-like, and predictable from the text.

Each word becomes a voiced sound (a pitched harmonic tone shaped by two
formants, with one amplitude bump per syllable and a short noise onset) whose
length follows the word's length; words are separated by short silences,
longer after commas and sentence ends. The same text at the same sample rate
always gives the same samples, so tests can predict audio length and word
timestamps from the text alone, and ``<break time="..."/>`` tags become silence.
"""

from __future__ import annotations

import functools
import re
import zlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..audio import encode_float
from .layout import Layout, LazySpans, Span, Speech
from .soundcache import DEFAULT_CACHE_BYTES, SoundCache

# Self-closing Cartesia tags (<break .../>, <emotion .../>, <speed .../>, <volume .../>):
# they are instructions, not words.
_SELF_CLOSING_TAG = re.compile(r"<\s*(\w+)\b[^<>]*/\s*>")
_BREAK_TIME = re.compile(r"""time\s*=\s*["']?\s*([\d.]+)\s*(ms|s)?""", re.IGNORECASE)
_ANY_TAG = re.compile(r"<[^<>]*>")
_CJK = re.compile(
    r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3000-\u303f\uff00-\uffef]"
)
_VOWELS = re.compile(r"[aeiouy]+", re.IGNORECASE)
# ASCII and CJK sentence ends; clause marks include em and en dashes and CJK commas.
_SENTENCE_END = (".", "!", "?", "\u3002", "\uff01", "\uff1f")
_CLAUSE_END = (",", ";", ":", "\u2014", "\u2013", "\u3001", "\uff0c")
_CLOSING_QUOTES = "\"')]}\u00bb\u201d\u2019"

# First and second formant (Hz) by the word's first vowel.
_FORMANTS = {
    "a": (730, 1090),
    "e": (530, 1840),
    "i": (270, 2290),
    "o": (570, 840),
    "u": (300, 870),
    "y": (300, 2000),
}


class SyntheticVoice:
    """Deterministic speech-like synthesis with predictable timing.

    Parameters:
        word_base_s: Duration of a word before its letters are counted.
        letter_s: Added duration per letter or digit.
        gap_s: Silence after every word.
        clause_pause_s: Extra silence after ``,`` ``;`` ``:`` and dashes.
        sentence_pause_s: Extra silence after ``.`` ``!`` ``?``.
        amplitude: Peak amplitude of a word.
        cache_bytes: Bytes of encoded word sounds kept for reuse (least
            recently used dropped first), and as much again of whole pieces
            of text as encoded (a fleet of bots says the same sentences); 0
            renders every word every time.
    """

    def __init__(
        self,
        *,
        word_base_s: float = 0.08,
        letter_s: float = 0.055,
        gap_s: float = 0.04,
        clause_pause_s: float = 0.15,
        sentence_pause_s: float = 0.3,
        amplitude: float = 0.4,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ):
        self.word_base_s = word_base_s
        self.letter_s = letter_s
        self.gap_s = gap_s
        self.clause_pause_s = clause_pause_s
        self.sentence_pause_s = sentence_pause_s
        self.amplitude = amplitude
        self.cache = SoundCache(cache_bytes)
        # Whole pieces by the sounds that make them (`encode`): the same bytes
        # object each time, so what keys on it downstream hashes it once.
        self.pieces: SoundCache[bytes] = SoundCache(cache_bytes)
        # A fleet of bots says the same sentences over and over: where their words
        # fall is worked out once per text, rate and speed (`layout`).
        self._positions = functools.lru_cache(maxsize=_POSITIONS_CACHED)(self._place)

    def word_duration(self, word: str, speed: float = 1.0) -> float:
        """Seconds of sound for one word (tags excluded), before the gap after it."""
        letters = sum(ch.isalnum() for ch in _ANY_TAG.sub("", word))
        if not letters:
            return 0.0
        return (self.word_base_s + self.letter_s * letters) / speed

    def pause_after(self, word: str, speed: float = 1.0) -> float:
        """Seconds of silence after a word, by its final punctuation."""
        stripped = _ANY_TAG.sub("", word).rstrip(_CLOSING_QUOTES)
        pause = self.gap_s
        if stripped.endswith(_SENTENCE_END):
            pause += self.sentence_pause_s
        elif stripped.endswith(_CLAUSE_END):
            pause += self.clause_pause_s
        return pause / speed

    def plan(self, text: str, speed: float = 1.0) -> list[tuple[str | None, float, float]]:
        """Lay the text out in time: ``(word or None for silence, sound, pause)`` items.

        Args:
            text: The text, possibly with Cartesia tags.
            speed: Speaking rate multiplier (``generation_config.speed``).

        Returns:
            The plan, in order.
        """
        items: list[tuple[str | None, float, float]] = []
        pos = 0
        for tag in _SELF_CLOSING_TAG.finditer(text):
            items += self._plan_words(text[pos : tag.start()], speed)
            if tag.group(1).lower() == "break":
                seconds = _break_seconds(tag.group(0))
                if seconds:
                    items.append((None, 0.0, seconds))
            pos = tag.end()
        return items + self._plan_words(text[pos:], speed)

    def _plan_words(self, text: str, speed: float) -> list[tuple[str | None, float, float]]:
        items: list[tuple[str | None, float, float]] = []
        for token in text.split():
            # Chinese and Japanese come back one character per token, punctuation included.
            for part in list(token) if _CJK.search(token) else [token]:
                # A token with no letters (a lone dash) is still a word of the
                # timestamps, with no sound of its own.
                items.append((part, self.word_duration(part, speed), self.pause_after(part, speed)))
        return items

    def layout(
        self,
        text: str,
        sample_rate: int,
        *,
        offset_samples: int = 0,
        generation_config: Mapping[str, Any] | None = None,
        render: bool = True,
    ) -> Layout:
        """Lay ``text`` out in samples: where each word sounds, and its timestamps.

        Cheap (no sample is computed): `synthesize` and `encode` fill the layout in.

        Args:
            text: The text.
            sample_rate: Output sample rate.
            offset_samples: Samples of this context already produced, so the
                timestamps run on from earlier audio.
            generation_config: ``speed`` scales durations, ``volume`` the amplitude.
            render: Unused: this voice never renders to lay text out. A voice that
                must (`EspeakVoice`) returns None when it is False and the
                rendering is not cached, so the emulator asks again in a thread.

        Returns:
            The layout, exact to the sample.
        """
        config = generation_config or {}
        speed = float(config.get("speed") or 1.0)
        gain = min(self.amplitude * float(config.get("volume") or 1.0), 1.0)
        # The key holds every knob the plan reads, so a voice changed later is not
        # served the old one.
        samples, sounds, marks = self._positions(
            text,
            sample_rate,
            speed,
            (
                self.word_base_s,
                self.letter_s,
                self.gap_s,
                self.clause_pause_s,
                self.sentence_pause_s,
            ),
        )
        words = [
            Span(word, (offset_samples + start) / sample_rate, (offset_samples + end) / sample_rate)
            for word, start, end, _ in marks
        ]
        # Made only if read: most requests ask for no phoneme timestamps.
        phonemes = LazySpans(functools.partial(_phonemes, marks, offset_samples, sample_rate))
        return Layout(sample_rate, samples, gain, sounds, words, phonemes)

    def _place(
        self, text: str, sample_rate: int, speed: float, knobs: tuple[float, ...]
    ) -> tuple[int, tuple[tuple[str, int, int], ...], tuple[tuple[str, int, int, tuple], ...]]:
        """Samples of the text; its sounds; each word's sample range and letters (`layout`).

        ``knobs`` is only part of the cache's key (the plan reads them itself).
        """
        sounds: list[tuple[str, int, int]] = []
        marks: list[tuple[str, int, int, tuple[str, ...]]] = []
        t = 0.0
        for word, sound, pause in self.plan(text, speed):
            start = round(t * sample_rate)
            end = round((t + sound) * sample_rate)
            t += sound + pause
            if word is None:
                continue
            if end > start:
                sounds.append((word, start, end))
            letters = tuple(ch.lower() for ch in _ANY_TAG.sub("", word) if ch.isalnum())
            marks.append((word, start, end, letters))
        return round(t * sample_rate), tuple(sounds), tuple(marks)

    def synthesize(
        self,
        text: str,
        sample_rate: int,
        *,
        offset_samples: int = 0,
        generation_config: Mapping[str, Any] | None = None,
    ) -> Speech:
        """Speak ``text``.

        Args:
            text: The text.
            sample_rate: Output sample rate.
            offset_samples: Samples of this context already produced, so the
                timestamps run on from earlier audio.
            generation_config: ``speed`` scales durations, ``volume`` the amplitude.

        Returns:
            Samples and word and phoneme timestamps, exact to the sample.
        """
        layout = self.layout(
            text, sample_rate, offset_samples=offset_samples, generation_config=generation_config
        )
        return Speech(
            samples=self._samples(layout), words=layout.words, phonemes=list(layout.phonemes)
        )

    def encode(self, layout: Layout, encoding: str, *, render: bool = True) -> bytes | None:
        """The audio of a layout as raw bytes of ``encoding``, each word's sound from the cache.

        Encoding works sample by sample, so each word's sound and the silences
        around it encoded apart are exactly the bytes of `synthesize`'s samples
        encoded whole; a word rendered once is not rendered again (`cache`),
        and a piece encoded once comes back whole, the same bytes object (`pieces`).

        Args:
            layout: What `layout` returned.
            encoding: A Cartesia encoding.
            render: Render the words the cache lacks; False returns None instead,
                so a caller on the event loop can render them in a thread.

        Returns:
            The bytes, or None when ``render`` is False and a word is not cached.

        Raises:
            InvalidRequestError: For an unknown encoding.
        """
        key = _piece_key(layout, encoding)
        data = self.pieces.get(key)
        if data is None:
            data = self._encode(layout, encoding, render)
            if data is not None:
                self.pieces.put(key, data)
        return data

    def _encode(self, layout: Layout, encoding: str, render: bool) -> bytes | None:
        silence = _silence(encoding)
        parts: list[bytes] = []
        at = 0
        for word, start, end in layout.sounds:
            if start < at:
                # Sounds that overlap (a voice configured with no gap at all)
                # add up sample by sample: only the whole can be encoded.
                return encode_float(self._samples(layout), encoding)
            sound = self._encoded_word(word, end - start, layout, encoding, render)
            if sound is None:
                return None
            parts += (silence * (start - at), sound)
            at = end
        parts.append(silence * (layout.samples - at))
        return b"".join(parts)

    def cached(self, layout: Layout, encoding: str) -> bool:
        """Whether every word of a layout is in the cache (`encode` would render none)."""
        return _piece_key(layout, encoding) in self.pieces or all(
            _key(word, end - start, layout, encoding) in self.cache
            for word, start, end in layout.sounds
        )

    def _encoded_word(
        self, word: str, n: int, layout: Layout, encoding: str, render: bool
    ) -> bytes | None:
        key = _key(word, n, layout, encoding)
        if not render:
            return self.cache.get(key)

        def make() -> bytes:
            samples = self._word_sound(word, n, layout.sample_rate) * layout.gain
            return encode_float(np.asarray(samples, dtype=np.float32), encoding)

        return self.cache.get_or_make(key, make)

    def _samples(self, layout: Layout) -> np.ndarray:
        samples = np.zeros(layout.samples, dtype=np.float32)
        for word, start, end in layout.sounds:
            samples[start:end] = (
                self._word_sound(word, end - start, layout.sample_rate) * layout.gain
            )
        return samples

    @staticmethod
    def _word_sound(word: str, n: int, sample_rate: int) -> np.ndarray:
        seed = zlib.crc32(word.lower().encode("utf-8"))
        rng = np.random.default_rng(seed)
        t = np.arange(n, dtype=np.float64) / sample_rate
        duration = n / sample_rate
        # Pitch between 100 and 180 Hz, falling a little over the word, as speech does.
        f0 = 100.0 + seed % 80
        freq = f0 * (1.08 - 0.16 * t / max(duration, 1e-9))
        phase = 2 * np.pi * np.cumsum(freq) / sample_rate
        vowel = _VOWELS.search(word)
        f1, f2 = _FORMANTS.get(vowel.group(0)[0].lower() if vowel else "a", _FORMANTS["a"])
        nyquist = sample_rate / 2
        tone = np.zeros(n)
        for k in range(1, 16):
            fk = k * f0
            if fk >= nyquist * 0.9:
                break
            gain = np.exp(-(((fk - f1) / 250.0) ** 2)) + 0.6 * np.exp(-(((fk - f2) / 350.0) ** 2))
            tone += (gain + 0.05 / k) * np.sin(k * phase)
        syllables = max(1, len(_VOWELS.findall(word)))
        envelope = np.abs(np.sin(np.pi * syllables * t / max(duration, 1e-9))) ** 0.7
        edge = min(n, max(1, int(0.01 * sample_rate)))
        ramp = np.linspace(0.0, 1.0, edge)
        envelope[:edge] *= ramp
        envelope[n - edge :] *= ramp[::-1]
        onset = np.zeros(n)
        burst = min(n, int(0.025 * sample_rate))
        onset[:burst] = rng.standard_normal(burst) * np.linspace(0.5, 0.0, burst)
        sound = tone * envelope + onset
        peak = float(np.max(np.abs(sound))) or 1.0
        return (sound / peak).astype(np.float32)


def _phonemes(
    marks: tuple[tuple[str, int, int, tuple[str, ...]], ...], offset_samples: int, sample_rate: int
) -> list[Span]:
    """One span per letter of each word, sharing the word's time equally (`layout`)."""
    phonemes: list[Span] = []
    for _, start, end, letters in marks:
        if not letters:
            continue
        t0 = (offset_samples + start) / sample_rate
        t1 = (offset_samples + end) / sample_rate
        step = (t1 - t0) / len(letters)
        phonemes += [Span(p, t0 + i * step, t0 + (i + 1) * step) for i, p in enumerate(letters)]
    return phonemes


def _piece_key(layout: Layout, encoding: str) -> tuple:
    # Everything a piece's bytes depend on: its sounds (words as sent, where they
    # fall), its length, the rate, the gain and the encoding.
    return (tuple(layout.sounds), layout.samples, layout.sample_rate, layout.gain, encoding)


def _key(word: str, n: int, layout: Layout, encoding: str) -> tuple:
    # The sound depends on the word's letters regardless of case (the seed is its
    # lowercase form, vowels are matched ignoring case), its length in samples, the
    # rate and the gain; not on where it sits in the text. Non-ASCII lowercasing
    # can change the letters (U+0130), so those key as sent.
    lowered = word.lower() if word.isascii() else word
    return (lowered, n, layout.sample_rate, layout.gain, encoding)


# Texts (at a rate and speed) whose word positions are kept: a few hundred
# bytes each.
_POSITIONS_CACHED = 4096


@functools.cache
def _silence(encoding: str) -> bytes:
    """One silent sample in ``encoding`` (not all zero bytes: G.711 codes 0 as 0xFF, 0xD5)."""
    return encode_float(np.zeros(1, dtype=np.float32), encoding)


def _break_seconds(tag: str) -> float:
    match = _BREAK_TIME.search(tag)
    if not match:
        return 0.0
    try:
        value = float(match.group(1))
    except ValueError:
        return 0.0
    return value / 1000.0 if (match.group(2) or "s").lower() == "ms" else value
