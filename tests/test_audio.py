"""Audio conversion: G.711 against the reference tables, float scaling, streams cut anywhere."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipecat_cartesia_ctx.audio import (
    Pcm16Converter,
    bytes_per_sample,
    encode_float,
    float_to_pcm16,
    to_pcm16,
)
from pipecat_cartesia_ctx.protocol import ENCODINGS, InvalidRequestError

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        import audioop  # Python <= 3.12: the classic g711 tables, as a reference
    except ImportError:  # pragma: no cover - Python 3.13 removed it
        audioop = None

ALL_INT16 = np.arange(-32768, 32768, dtype="<i2")

# Spot values of ITU-T G.711 (Sun g711.c): code -> linear.
# mu-law 0x0F: inverted 0xF0, negative, exponent 7, mantissa 0 -> (132 << 7) - 132 = 16764.
MULAW_KNOWN = {0x00: -32124, 0x7F: 0, 0x80: 32124, 0xFF: 0, 0x0F: -16764, 0x70: -120}
# A-law 0x80: xor 0x55 -> 0xD5, positive, segment 5 -> (80 + 264) << 4 = 5504.
ALAW_KNOWN = {0xD5: 8, 0x55: -8, 0x80: 5504, 0x00: -5504, 0x2A: -32256, 0xAA: 32256}


@pytest.mark.parametrize(
    ("encoding", "known"), [("pcm_mulaw", MULAW_KNOWN), ("pcm_alaw", ALAW_KNOWN)]
)
def test_g711_decodes_known_codes(encoding, known):
    codes = bytes(known)
    decoded = np.frombuffer(to_pcm16(codes, encoding), dtype="<i2")
    assert decoded.tolist() == list(known.values())


@pytest.mark.skipif(audioop is None, reason="audioop is not available on this Python")
@pytest.mark.parametrize("encoding", ["pcm_mulaw", "pcm_alaw"])
def test_g711_matches_the_reference_implementation_for_every_value(encoding):
    lin2, tolin = (
        (audioop.lin2ulaw, audioop.ulaw2lin)
        if encoding == "pcm_mulaw"
        else (audioop.lin2alaw, audioop.alaw2lin)
    )
    every_code = bytes(range(256))
    assert to_pcm16(every_code, encoding) == tolin(every_code, 2)
    floats = ALL_INT16.astype(np.float64) / 32768.0
    assert encode_float(floats, encoding) == lin2(ALL_INT16.tobytes(), 2)


@pytest.mark.parametrize("encoding", ["pcm_mulaw", "pcm_alaw"])
def test_g711_round_trip_error_is_within_the_companding_step(encoding):
    decoded = np.frombuffer(
        to_pcm16(encode_float(ALL_INT16 / 32768.0, encoding), encoding), dtype="<i2"
    ).astype(np.int32)
    error = np.abs(decoded - ALL_INT16.astype(np.int32))
    # G.711 keeps ~13 bits: the step is at most 1/16 of the magnitude, plus the smallest step.
    assert np.all(error <= np.abs(ALL_INT16.astype(np.int32)) // 16 + 16)


def test_f32_converts_to_s16_with_clipping():
    floats = np.array([0.0, 0.5, -0.5, 1.0, -1.0, 1.7, -3.0, np.nan], dtype="<f4")
    pcm = np.frombuffer(to_pcm16(floats.tobytes(), "pcm_f32le"), dtype="<i2")
    assert pcm.tolist() == [0, 16384, -16384, 32767, -32768, 32767, -32768, 0]


def test_s16_passes_through_untouched():
    data = ALL_INT16.tobytes()
    assert to_pcm16(data, "pcm_s16le") is data


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_encode_then_decode_keeps_a_tone(encoding):
    t = np.arange(2400) / 24000
    tone = 0.5 * np.sin(2 * np.pi * 440 * t)
    data = encode_float(tone, encoding)
    assert len(data) == 2400 * bytes_per_sample(encoding)
    back = np.frombuffer(to_pcm16(data, encoding), dtype="<i2") / 32768.0
    assert np.max(np.abs(back - tone)) < 0.02


def test_partial_samples_are_refused_by_the_whole_sample_api():
    with pytest.raises(ValueError, match="whole number"):
        to_pcm16(b"\x00\x00\x00", "pcm_s16le")


def test_unknown_encoding_is_a_typed_error():
    with pytest.raises(InvalidRequestError):
        Pcm16Converter("mp3")


@given(
    encoding=st.sampled_from(ENCODINGS),
    samples=st.lists(st.floats(-1, 1, allow_nan=False), min_size=1, max_size=300),
    cuts=st.lists(st.integers(0, 1200), max_size=12),
)
def test_converter_carries_partial_samples_across_arbitrary_cuts(encoding, samples, cuts):
    data = encode_float(np.array(samples), encoding)
    whole = to_pcm16(data, encoding)
    edges = sorted({min(c, len(data)) for c in cuts} | {0, len(data)})
    converter = Pcm16Converter(encoding)
    pieces = [converter.convert(data[a:b]) for a, b in itertools.pairwise(edges)]
    assert b"".join(pieces) == whole
    assert converter.pending == 0


def test_converter_reports_and_forgets_a_dangling_partial_sample():
    converter = Pcm16Converter("pcm_f32le")
    assert converter.convert(b"\x00" * 6) == b"\x00\x00"
    assert converter.pending == 2
    assert converter.reset() == 2
    assert converter.pending == 0


def test_float_to_pcm16_is_little_endian_int16():
    out = float_to_pcm16(np.array([0.25]))
    assert out.dtype == np.dtype("<i2")
    assert out.tobytes() == (8192).to_bytes(2, "little")
