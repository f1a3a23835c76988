#
# Copyright (c) 2026, pipecat-cartesia-ctx contributors
#
# SPDX-License-Identifier: BSD 2-Clause License
#

"""Conversion between Cartesia's raw encodings and 16-bit PCM, with numpy.

Pipecat's audio frames carry 16-bit signed little-endian PCM, so audio in any
other encoding must be converted before it becomes a frame. The emulator uses
the encoders here to produce each encoding from its float synthesis.

G.711 (mu-law, A-law) follows ITU-T G.711 as implemented in the classic Sun
``g711.c``, the same tables Python's former ``audioop`` module used; each
direction is a lookup table built once.
"""

from __future__ import annotations

import numpy as np

from .protocol import BYTES_PER_SAMPLE, InvalidRequestError

_MULAW_BIAS = 0x84
_MULAW_CLIP = 8159  # in 14-bit units
_MULAW_SEG_END = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])
_ALAW_SEG_END = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF])


def _mulaw_decode_table() -> np.ndarray:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent = (u >> 4) & 0x07
    mantissa = u & 0x0F
    magnitude = (((mantissa << 3) + _MULAW_BIAS) << exponent) - _MULAW_BIAS
    return np.where(u & 0x80, -magnitude, magnitude).astype("<i2")


def _alaw_decode_table() -> np.ndarray:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    t = (a & 0x0F) << 4
    seg = (a & 0x70) >> 4
    t = np.where(seg == 0, t + 8, t + 0x108)
    t = np.where(seg > 1, t << np.maximum(seg - 1, 0), t)
    return np.where(a & 0x80, t, -t).astype("<i2")


def _mulaw_encode_table() -> np.ndarray:
    pcm = np.arange(-32768, 32768, dtype=np.int32) >> 2
    mask = np.where(pcm < 0, 0x7F, 0xFF)
    pcm = np.minimum(np.abs(pcm), _MULAW_CLIP) + (_MULAW_BIAS >> 2)
    seg = np.searchsorted(_MULAW_SEG_END, pcm)
    uval = (seg << 4) | ((pcm >> (seg + 1)) & 0x0F)
    out = np.where(seg >= 8, 0x7F, uval) ^ mask
    # Index by the unsigned view of the int16 sample: 0..32767, then -32768..-1.
    return np.roll(out.astype(np.uint8), -32768)


def _alaw_encode_table() -> np.ndarray:
    pcm = np.arange(-32768, 32768, dtype=np.int32) >> 3
    mask = np.where(pcm >= 0, 0xD5, 0x55)
    pcm = np.where(pcm >= 0, pcm, -pcm - 1)
    seg = np.searchsorted(_ALAW_SEG_END, pcm)
    shift = np.where(seg < 2, 1, seg)
    aval = (seg << 4) | ((pcm >> shift) & 0x0F)
    out = np.where(seg >= 8, 0x7F, aval) ^ mask
    return np.roll(out.astype(np.uint8), -32768)


_DECODE = {"pcm_mulaw": _mulaw_decode_table(), "pcm_alaw": _alaw_decode_table()}
_ENCODE = {"pcm_mulaw": _mulaw_encode_table(), "pcm_alaw": _alaw_encode_table()}


def bytes_per_sample(encoding: str) -> int:
    """Bytes per mono sample of a Cartesia encoding.

    Args:
        encoding: ``pcm_f32le``, ``pcm_s16le``, ``pcm_mulaw`` or ``pcm_alaw``.

    Returns:
        4, 2, 1 or 1.

    Raises:
        InvalidRequestError: For any other encoding.
    """
    try:
        return BYTES_PER_SAMPLE[encoding]
    except KeyError:
        raise InvalidRequestError(f"unknown encoding {encoding!r}") from None


def to_pcm16(data: bytes, encoding: str) -> bytes:
    """Convert whole samples of ``encoding`` to 16-bit signed little-endian PCM.

    Args:
        data: Raw audio; its length must be a multiple of the sample width
            (use `Pcm16Converter` for a stream cut anywhere).
        encoding: The encoding of ``data``.

    Returns:
        The 16-bit PCM bytes (``data`` itself for ``pcm_s16le``).

    Raises:
        ValueError: If ``data`` does not hold whole samples.
        InvalidRequestError: For an unknown encoding.
    """
    width = bytes_per_sample(encoding)
    if len(data) % width:
        raise ValueError(f"{len(data)} bytes is not a whole number of {encoding} samples")
    if encoding == "pcm_s16le":
        return data
    if encoding == "pcm_f32le":
        samples = np.frombuffer(data, dtype="<f4")
        return float_to_pcm16(samples).tobytes()
    return _DECODE[encoding][np.frombuffer(data, dtype=np.uint8)].tobytes()


def float_to_pcm16(samples: np.ndarray) -> np.ndarray:
    """Scale float samples in [-1, 1] to int16, clipping out-of-range values.

    Args:
        samples: Float samples.

    Returns:
        Little-endian int16 samples.
    """
    scaled = np.clip(np.nan_to_num(samples) * 32768.0, -32768.0, 32767.0)
    return np.rint(scaled).astype("<i2")


def encode_float(samples: np.ndarray, encoding: str) -> bytes:
    """Encode float samples in [-1, 1] as raw bytes of a Cartesia encoding.

    Args:
        samples: Mono float samples.
        encoding: The target encoding.

    Returns:
        The raw bytes.

    Raises:
        InvalidRequestError: For an unknown encoding.
    """
    bytes_per_sample(encoding)
    if encoding == "pcm_f32le":
        return np.clip(samples, -1.0, 1.0).astype("<f4").tobytes()
    pcm = float_to_pcm16(samples)
    if encoding == "pcm_s16le":
        return pcm.tobytes()
    return _ENCODE[encoding][pcm.view(np.uint16)].tobytes()


class Pcm16Converter:
    """Streaming conversion to 16-bit PCM of audio cut at arbitrary byte offsets.

    Cartesia's chunk boundaries are not sample-aligned by contract, so a chunk
    may end inside a sample; the partial sample is carried over to the next
    chunk, never dropped and never misread.

    Parameters:
        encoding: The encoding of the incoming bytes.
    """

    def __init__(self, encoding: str):
        self.encoding = encoding
        self._width = bytes_per_sample(encoding)
        self._carry = b""

    @property
    def pending(self) -> int:
        """Bytes of an incomplete sample held back."""
        return len(self._carry)

    def convert(self, data: bytes) -> bytes:
        """Convert the next piece of the stream.

        Args:
            data: The next bytes, cut anywhere.

        Returns:
            16-bit PCM for every sample completed so far (may be empty).
        """
        if self._carry:
            data = self._carry + data
        whole = len(data) - len(data) % self._width
        self._carry = data[whole:]
        return to_pcm16(data[:whole], self.encoding) if whole else b""

    def reset(self) -> int:
        """Forget any incomplete sample (at the end of a stream).

        Returns:
            How many bytes were discarded.
        """
        dropped, self._carry = len(self._carry), b""
        return dropped
