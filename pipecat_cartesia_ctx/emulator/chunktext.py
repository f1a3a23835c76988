#
# Copyright (c) 2026, pipecat-cartesia-ctx contributors
#
# SPDX-License-Identifier: BSD 2-Clause License
#

"""The base64 text of a piece's chunks, made once per distinct piece of audio.

Base64 was the largest single cost of a chunk sent from the pacer's timer (a
sixth of it). A fleet of bots says the same sentences over and over, and the
same text always gives the same audio, cut into the same chunks: the chunks'
text is made once, kept in a cache bounded in bytes, and shared by every
context that speaks that piece. The key is the audio itself (and how it is
cut), so any voice gets it, and what is sent cannot differ from encoding each
chunk as it goes.
"""

from __future__ import annotations

import binascii
from collections.abc import Sequence

from .soundcache import SoundCache

# About 1,200 seconds of distinct 24 kHz 16-bit audio (a few hundred sentences),
# its text and the audio that keys it.
DEFAULT_CHUNK_TEXT_BYTES = 128 * 1024 * 1024


class ChunkTexts:
    """One piece's audio and the base64 text of each of its chunks, made as first sent.

    The text of a chunk is made when a context first sends it, not all at once:
    hundreds of contexts starting together would otherwise hold the event loop
    while each encodes a whole piece.

    Parameters:
        data: The piece's audio.
        bounds: Byte ranges of its chunks.
    """

    __slots__ = ("bounds", "data", "nbytes", "texts", "view")

    def __init__(self, data: bytes, bounds: Sequence[tuple[int, int]]):
        self.data = data
        self.view = memoryview(data)
        self.bounds = bounds
        # Filled in as sent: ``text(i)`` is the one way to read an entry.
        self.texts: list[bytes | None] = [None] * len(bounds)
        # What the cache holds once every text is made: the audio (its key) and the text.
        self.nbytes = len(data) + sum(4 * ((b - a + 2) // 3) for a, b in bounds)

    def __len__(self) -> int:
        return self.nbytes

    def text(self, i: int) -> bytes:
        """Chunk ``i``'s base64 text, exactly ``binascii.b2a_base64(chunk, newline=False)``."""
        text = self.texts[i]
        if text is None:
            begin, end = self.bounds[i]
            text = self.texts[i] = binascii.b2a_base64(self.view[begin:end], newline=False)
        return text


class ChunkTextCache:
    """Pieces' chunk texts by the audio they cut and where they cut it.

    Parameters:
        max_bytes: Bytes kept at most, audio and text (least recently used
            dropped first); 0 keeps nothing.
    """

    def __init__(self, max_bytes: int = DEFAULT_CHUNK_TEXT_BYTES):
        self.cache: SoundCache[ChunkTexts] = SoundCache(max_bytes)

    def get(self, data: bytes, bounds: Sequence[tuple[int, int]]) -> ChunkTexts:
        """The chunk texts of ``data`` cut at ``bounds``: those of an equal piece if kept.

        Args:
            data: A piece's audio.
            bounds: Byte ranges of its chunks.

        Returns:
            Its `ChunkTexts`, shared with every other context sending the same piece.
        """
        # Hashing the audio costs a fifth of encoding it; equal keys are then
        # compared byte for byte, so a piece never gets another's text.
        key = (data, tuple(bounds))
        found = self.cache.get(key)
        if found is None:
            found = ChunkTexts(data, bounds)
            self.cache.put(key, found)
        return found


# Shared by every emulator in the process: the text is a function of the audio alone.
CHUNK_TEXTS = ChunkTextCache()
