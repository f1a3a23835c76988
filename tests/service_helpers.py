"""Helpers for the service tests: turns as LLM token frames, frame filters, the service."""

from __future__ import annotations

import random

from helpers import VOICE
from pipecat.frames.frames import (
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    TTSTextFrame,
)

from pipecat_cartesia_ctx import (
    CartesiaContextTTSService,
    CartesiaFlushDoneFrame,
    CartesiaTTSAudioRawFrame,
)


def tokens(text: str, seed: int = 0) -> list[str]:
    """``text`` cut into LLM-like tokens of 1 to 4 characters."""
    rnd, out, i = random.Random(seed), [], 0
    while i < len(text):
        n = rnd.randint(1, 4)
        out.append(text[i : i + n])
        i += n
    return out


def llm_turn(text: str, seed: int = 0) -> list:
    """The frames of one streamed LLM answer."""
    return [
        LLMFullResponseStartFrame(),
        *(LLMTextFrame(t) for t in tokens(text, seed)),
        LLMFullResponseEndFrame(),
    ]


def index_at(frames: list, text: str, marker: str) -> int:
    """The index of the first token frame at or after where ``marker`` starts in ``text``."""
    target, position = text.index(marker), 0
    for i, frame in enumerate(frames):
        if position >= target and hasattr(frame, "text"):
            return i
        position += len(getattr(frame, "text", ""))
    raise ValueError(marker)


def make_tts(emu, **kwargs) -> CartesiaContextTTSService:
    """The service on ``emu``, its segments whole sentences unless ``kwargs`` say otherwise.

    Most tests assert segment texts; the default first segment (cut at its first
    clause, at three words, or when the LLM stalls, for the first audio) has
    tests of its own.
    """
    kwargs.setdefault("settings", CartesiaContextTTSService.Settings(voice=VOICE))
    kwargs.setdefault("sample_rate", 24000)
    kwargs.setdefault("flush_first_clause", False)
    kwargs.setdefault("first_segment_words", 0)
    kwargs.setdefault("first_segment_deadline_ms", None)
    return CartesiaContextTTSService(api_key="test-key", url=emu.url, **kwargs)


def audio(frames, context_id: str | None = None) -> list[CartesiaTTSAudioRawFrame]:
    return [
        f
        for f in frames
        if isinstance(f, CartesiaTTSAudioRawFrame) and context_id in (None, f.context_id)
    ]


def flush_dones(frames, context_id: str | None = None) -> list[CartesiaFlushDoneFrame]:
    return [
        f
        for f in frames
        if isinstance(f, CartesiaFlushDoneFrame) and context_id in (None, f.context_id)
    ]


def words(frames) -> list[str]:
    return [f.text for f in frames if isinstance(f, TTSTextFrame)]


def segment_order(frames) -> list[tuple[str, int]]:
    """("audio", flush_id) runs and ("done", flush_id) marks, in order."""
    out: list[tuple[str, int]] = []
    for f in frames:
        if isinstance(f, CartesiaTTSAudioRawFrame):
            item = ("audio", f.flush_id)
        elif isinstance(f, CartesiaFlushDoneFrame):
            item = ("done", f.flush_id)
        else:
            continue
        if not out or out[-1] != item:
            out.append(item)
    return out
