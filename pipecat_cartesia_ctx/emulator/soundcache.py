#
# Copyright (c) 2026, pipecat-cartesia-ctx contributors
#
# SPDX-License-Identifier: BSD 2-Clause License
#

"""A bounded least-recently-used cache of encoded sounds, shared by every context.

The synthetic voice is deterministic, so a word rendered once at a length, rate,
gain and encoding sounds the same every time: rendering it again is wasted CPU.
The cache holds at most ``max_bytes`` of audio, so a long soak with an open
vocabulary cannot grow the emulator's memory without bound. Values are encoded
bytes, or anything whose ``len()`` is its size in bytes (the espeak voice keeps
its own renderings so).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sized
from typing import Generic, TypeVar

# About 1,000 words at 48 kHz float32, 10,000 at 24 kHz 16-bit.
DEFAULT_CACHE_BYTES = 64 * 1024 * 1024

T = TypeVar("T", bound=Sized)


class SoundCache(Generic[T]):
    """Encoded sounds by key, the least recently used dropped beyond a byte budget.

    Thread-safe: a context may render a missing word in a worker thread while
    others read the cache on the event loop.

    Parameters:
        max_bytes: Bytes of audio kept at most; 0 keeps nothing.
    """

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES):
        if max_bytes < 0:
            raise ValueError("max_bytes must be >= 0")
        self.max_bytes = max_bytes
        self.hits = 0
        self.misses = 0
        self.evictions = 0
        self._sounds: OrderedDict[Hashable, T] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        # Keys being made now, each with the lock its maker holds.
        self._making: dict[Hashable, threading.Lock] = {}

    def __len__(self) -> int:
        return len(self._sounds)

    def __contains__(self, key: Hashable) -> bool:
        # A look that is no use: not counted, and the order of use unchanged.
        return key in self._sounds

    @property
    def nbytes(self) -> int:
        """Bytes of audio held now."""
        return self._bytes

    def get(self, key: Hashable) -> T | None:
        """The sound stored under ``key``, now the most recently used; None if absent."""
        with self._lock:
            sound = self._sounds.get(key)
            if sound is None:
                self.misses += 1
                return None
            self._sounds.move_to_end(key)
            self.hits += 1
            return sound

    def get_or_make(self, key: Hashable, make: Callable[[], T]) -> T:
        """The sound stored under ``key``, made with ``make()`` and stored if absent.

        Made once when many threads ask at the same time (200 bots starting
        with the same greeting): the others wait for it instead of each
        rendering it again.
        """
        sound = self.get(key)
        if sound is not None:
            return sound
        with self._lock:
            maker = self._making.setdefault(key, threading.Lock())
        try:
            with maker:
                with self._lock:
                    sound = self._sounds.get(key)
                if sound is None:
                    sound = make()
                    self.put(key, sound)
                return sound
        finally:
            with self._lock:
                if self._making.get(key) is maker:
                    del self._making[key]

    def put(self, key: Hashable, sound: T) -> None:
        """Store ``sound``, dropping the least recently used ones beyond the budget.

        A sound larger than the whole budget is not stored.
        """
        if len(sound) > self.max_bytes:
            return
        with self._lock:
            old = self._sounds.pop(key, None)
            if old is not None:
                self._bytes -= len(old)
            self._sounds[key] = sound
            self._bytes += len(sound)
            while self._bytes > self.max_bytes:
                _, dropped = self._sounds.popitem(last=False)
                self._bytes -= len(dropped)
                self.evictions += 1

    def clear(self) -> None:
        """Forget every sound (the counters stay)."""
        with self._lock:
            self._sounds.clear()
            self._bytes = 0
