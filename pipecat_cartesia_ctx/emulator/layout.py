#
# Copyright (c) 2026, pipecat-cartesia-ctx contributors
#
# SPDX-License-Identifier: BSD 2-Clause License
#

"""What a voice gives the emulator for a piece of text: where its sounds and words fall.

Shared by every voice (`SyntheticVoice`, `EspeakVoice`, a user's own); the
emulator reads nothing else of them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import overload

import numpy as np


@dataclass(frozen=True, slots=True)
class Span:
    """A word or phoneme and where it sounds, in seconds from the start of the context."""

    text: str
    start: float
    end: float


class LazySpans(Sequence[Span]):
    """Spans made the first time they are read.

    Phoneme timestamps come one per letter, five or six times as many spans as
    words, and few requests ask for them: a voice lays them out only when a
    context reads them, as it would have laid them out before.

    Parameters:
        make: Makes the spans (called once, at the first read).
    """

    __slots__ = ("_make", "_spans")

    def __init__(self, make: Callable[[], list[Span]]):
        self._make: Callable[[], list[Span]] | None = make
        self._spans: list[Span] | None = None

    @property
    def made(self) -> bool:
        """Whether the spans have been made (something read them)."""
        return self._spans is not None

    def _list(self) -> list[Span]:
        if self._spans is None:
            assert self._make is not None
            self._spans, self._make = self._make(), None
        return self._spans

    def __len__(self) -> int:
        return len(self._list())

    @overload
    def __getitem__(self, index: int) -> Span: ...

    @overload
    def __getitem__(self, index: slice) -> list[Span]: ...

    def __getitem__(self, index: int | slice) -> Span | list[Span]:
        return self._list()[index]

    def __iter__(self) -> Iterator[Span]:
        return iter(self._list())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, LazySpans):
            other = other._list()
        return isinstance(other, list) and self._list() == other

    __hash__ = None  # type: ignore[assignment]  # as a list's

    def __repr__(self) -> str:
        return f"LazySpans({self._list()!r})"


@dataclass(frozen=True)
class Speech:
    """The voice's output for one piece of text.

    Parameters:
        samples: Mono float32 samples in [-1, 1].
        words: Each spoken word, as sent (whitespace tokens, punctuation attached).
        phonemes: One pseudo-phoneme per letter of each word.
    """

    samples: np.ndarray
    words: list[Span]
    phonemes: list[Span]


@dataclass(frozen=True, slots=True)
class Layout:
    """Where the sounds of a piece of text go, before any sample is computed.

    Parameters:
        sample_rate: The sample rate.
        samples: Length of the piece, in samples.
        gain: Amplitude of every word's sound.
        sounds: ``(word, start, end)`` sample ranges of the words that sound, in order.
        words: Word timestamps, from the start of the context.
        phonemes: Phoneme timestamps, from the start of the context (a list, or
            `LazySpans` made when first read).
    """

    sample_rate: int
    samples: int
    gain: float
    sounds: Sequence[tuple[str, int, int]]
    words: list[Span]
    phonemes: Sequence[Span]
