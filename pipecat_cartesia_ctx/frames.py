#
# Copyright (c) 2026, pipecat-cartesia-ctx contributors
#
# SPDX-License-Identifier: BSD 2-Clause License
#

"""Frames and metrics data that `CartesiaContextTTSService` sends downstream."""

from __future__ import annotations

from dataclasses import dataclass

from pipecat.frames.frames import DataFrame, TTSAudioRawFrame
from pipecat.metrics.metrics import MetricsData


@dataclass
class CartesiaTTSAudioRawFrame(TTSAudioRawFrame):
    """Audio of one Cartesia segment, as 16-bit PCM whatever the encoding on the wire.

    Parameters:
        flush_id: The segment the audio belongs to: 1 for the first segment of
            the context, then one more after each flush. It is the chunk's
            ``flush_id`` whenever the server numbers segments by manual flushes
            (Cartesia's documented behaviour). None only if it could not be known.
    """

    flush_id: int | None = None


@dataclass
class CartesiaFlushDoneFrame(DataFrame):
    """A segment of a context is complete: it follows the segment's last audio frame.

    Parameters:
        context_id: The context (the turn's audio context id).
        flush_id: The segment, as on its `CartesiaTTSAudioRawFrame` s.
        text: Exactly the text of the segment, as sent to Cartesia.
    """

    context_id: str
    flush_id: int
    text: str

    def __str__(self):
        return (
            f"{self.name}(context_id: {self.context_id}, flush_id: {self.flush_id}, "
            f"text: [{self.text}])"
        )


class CartesiaSegmentMetricsData(MetricsData):
    """Per-segment timing, measured on the wire.

    Parameters:
        context_id: The context.
        flush_id: The segment.
        ttfb: Seconds from the segment's first text sent to its first audio
            received; None if the segment had no audio.
        audio_seconds: Seconds of audio received for the segment.
        characters: Characters of text sent in the segment.
    """

    context_id: str
    flush_id: int
    ttfb: float | None
    audio_seconds: float
    characters: int


class CartesiaResumeMetricsData(MetricsData):
    """A turn went on, on a new Cartesia context, after losing one.

    Parameters:
        context_id: The turn.
        resumed_on: The new Cartesia context; None if nothing was left to say.
        reason: Why the last one was lost: ``"connection"``, ``"retry"`` (429,
            5xx, context closed) or ``"skip"`` (a 400 on one input).
        attempt: Consecutive losses without audio in between, from 1.
        waited_seconds: From the loss to the resume (backoff, reconnect).
        replayed_characters: Characters of the turn's text sent again.
        reconnects: Connections opened after the first, so far.
        connect_seconds: How long the last connection took to open.
    """

    context_id: str
    resumed_on: str | None
    reason: str
    attempt: int
    waited_seconds: float
    replayed_characters: int
    reconnects: int
    connect_seconds: float
