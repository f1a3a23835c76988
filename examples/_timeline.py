#
# Copyright (c) 2026, pipecat-cartesia-ctx contributors
#
# SPDX-License-Identifier: BSD 2-Clause License
#

"""The voice bot demo's timeline: one clock, the audio as it played, and the picture.

Everything the demo shows is put on one `Clock` that starts with the player:
LLM tokens as they leave the LLM, what Cartesia received on the wire (pushes,
flushes, the close, the cancel), audio as it reaches the output, audio as it
plays, the barge-in and the cut. `PlayedAudio` places each played frame at
its time on that clock, silence in between, so ``bot.wav`` is what a listener
heard, when they heard it. `draw_timeline` turns it all into a PNG with
matplotlib (the package's ``[plot]`` extra, imported only when drawing, in
``_timeline_plot.py``).

The wire is read from the embedded emulator's record (`InputRecord.received_at`,
`ContextRecord.cancelled_at`); against the real API the demo cannot see it.
"""

from __future__ import annotations

import time
import wave
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pipecat.frames.frames import (
    Frame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    TTSStartedFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from pipecat_cartesia_ctx import CartesiaTTSAudioRawFrame
from pipecat_cartesia_ctx.emulator.record import EmulatorRecord

PLOT_HINT = "pip install 'pipecat-cartesia-ctx[plot]'"


class Clock:
    """Seconds since the demo started, on the time axis of the WAV.

    With a speedup of N the demo runs N times faster than real time, and this
    clock runs N times faster than the wall clock: every time it gives reads
    as in the real-time run, and a frame of one second of audio takes one
    second of it to play. Delays that do not scale (the event loop's, the
    socket's) look N times longer.

    Parameters:
        speedup: How many times faster than real time the demo runs.
    """

    def __init__(self, speedup: float = 1.0):
        self.speedup = speedup
        self.started = time.monotonic()

    def now(self) -> float:
        """The time now."""
        return self.at(time.monotonic())

    def at(self, monotonic: float) -> float:
        """The time of a ``time.monotonic()`` reading."""
        return (monotonic - self.started) * self.speedup

    def wall(self, seconds: float) -> float:
        """Wall-clock seconds that ``seconds`` of this clock take."""
        return max(0.0, seconds / self.speedup)


@dataclass
class PlayedSpan:
    """Contiguous audio of one segment, as played, in samples on the clock."""

    context_id: str
    flush_id: int | None
    start: int
    end: int


class PlayedAudio:
    """16-bit mono audio placed on the clock where it played; silence elsewhere.

    Works like a sound card: a frame starts where the previous one ends, or
    now if the card ran dry; a cut (the transport clearing its buffer on an
    interruption) silences everything from that moment on.

    Parameters:
        sample_rate: Samples per second of the audio and of the WAV.
    """

    def __init__(self, sample_rate: int):
        self.sample_rate = sample_rate
        self.pcm = bytearray()
        self.spans: list[PlayedSpan] = []

    @property
    def end(self) -> float:
        """When the last audio played ends (the WAV's length), in seconds."""
        return len(self.pcm) / 2 / self.sample_rate

    @property
    def seconds(self) -> float:
        """Seconds of audio played, silence between frames not counted."""
        return sum(s.end - s.start for s in self.spans) / self.sample_rate

    def play(self, now: float, audio: bytes, context_id: str, flush_id: int | None) -> float:
        """Place one frame; returns when it ends.

        Args:
            now: The clock's time now.
            audio: 16-bit mono PCM at `sample_rate`.
            context_id: Its context.
            flush_id: Its segment.
        """
        # Samples, not seconds, so that back-to-back frames never drift apart.
        start = max(round(now * self.sample_rate), len(self.pcm) // 2)
        self.pcm.extend(bytes(2 * start - len(self.pcm)))
        self.pcm.extend(audio)
        end = len(self.pcm) // 2
        last = self.spans[-1] if self.spans else None
        if last and (last.context_id, last.flush_id, last.end) == (context_id, flush_id, start):
            last.end = end
        else:
            self.spans.append(PlayedSpan(context_id, flush_id, start, end))
        return end / self.sample_rate

    def cut(self, now: float) -> None:
        """Stop playing at ``now``: what was queued to play after it never sounds."""
        sample = round(now * self.sample_rate)
        del self.pcm[2 * sample :]
        for span in self.spans:
            span.end = min(span.end, sample)
        self.spans = [s for s in self.spans if s.end > s.start]

    def played(self, context_id: str, flush_id: int | None) -> tuple[float, float, float] | None:
        """When a segment played: its first start, last end and seconds of audio; None if never."""
        spans = [s for s in self.spans if (s.context_id, s.flush_id) == (context_id, flush_id)]
        if not spans:
            return None
        rate = self.sample_rate
        seconds = sum(s.end - s.start for s in spans) / rate
        return spans[0].start / rate, spans[-1].end / rate, seconds

    def write_wav(self, path: Path) -> None:
        """Write the audio, silence included, as a mono 16-bit WAV."""
        with wave.open(str(path), "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(self.sample_rate)
            wav.writeframes(bytes(self.pcm))


@dataclass(frozen=True)
class Token:
    """An LLM token as it left the LLM."""

    turn: int
    at: float
    text: str


@dataclass(frozen=True)
class Received:
    """An audio frame as it came out of the TTS service."""

    context_id: str
    flush_id: int | None
    at: float
    seconds: float


@dataclass(frozen=True)
class WireEvent:
    """A request as Cartesia (the emulator) received it."""

    context_id: str
    kind: Literal["push", "flush", "close", "cancel"]
    at: float


@dataclass
class Timeline:
    """What happened, on one clock: filled while the demo runs, drawn at the end.

    Parameters:
        clock: The clock everything is on.
        played: The audio as it played (the WAV).
        turns: Turn of each context, numbered as first seen.
        tokens: LLM tokens as they left the LLM.
        received: Audio frames as they came out of the TTS service.
        wire: Requests as the emulator received them; None if not seen.
        barge_in: When the user barged in.
        cut: When the player stopped the interrupted answer.
        user_stops: When the user stopped talking after the barge-in.
        late_events_dropped: Events of cancelled contexts the service dropped.
    """

    clock: Clock
    played: PlayedAudio
    turns: dict[str, int] = field(default_factory=dict)
    tokens: list[Token] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    wire: list[WireEvent] | None = None
    barge_in: float | None = None
    cut: float | None = None
    user_stops: float | None = None
    late_events_dropped: int = 0

    def turn(self, context_id: str) -> int:
        """The turn of a context: contexts are numbered 1, 2, 3... as first seen."""
        return self.turns.setdefault(context_id, len(self.turns) + 1)

    def tokens_tap(self) -> FrameProcessor:
        """A processor to put after the LLM: stamps each token."""
        turn = 0

        def stamp(frame: Frame) -> None:
            nonlocal turn
            if isinstance(frame, LLMFullResponseStartFrame):
                turn += 1
            elif isinstance(frame, LLMTextFrame):
                self.tokens.append(Token(turn, self.clock.now(), frame.text))

        return _Tap(stamp)

    def audio_tap(self) -> FrameProcessor:
        """A processor to put after the TTS: stamps each audio frame as it comes out."""

        def stamp(frame: Frame) -> None:
            if isinstance(frame, TTSStartedFrame) and frame.context_id:
                self.turn(frame.context_id)
            elif isinstance(frame, CartesiaTTSAudioRawFrame):
                seconds = len(frame.audio) / 2 / frame.sample_rate
                received = Received(frame.context_id, frame.flush_id, self.clock.now(), seconds)
                self.received.append(received)

        return _Tap(stamp)

    def read_wire(self, record: EmulatorRecord) -> None:
        """Take the requests and cancels the emulator received, on this clock."""
        self.wire = []
        for context in record.contexts.values():
            for request in context.inputs:
                at = self.clock.at(request.received_at)
                self.wire.append(WireEvent(context.context_id, request.kind, at))
            if context.cancelled_at is not None:
                at = self.clock.at(context.cancelled_at)
                self.wire.append(WireEvent(context.context_id, "cancel", at))
        self.wire.sort(key=lambda e: e.at)


class _Tap(FrameProcessor):
    """Passes every frame on at once, showing it to a callback first."""

    def __init__(self, stamp: Callable[[Frame], None]):
        super().__init__()
        self._stamp = stamp

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        """Stamp the frame, then pass it on."""
        await super().process_frame(frame, direction)
        self._stamp(frame)
        await self.push_frame(frame, direction)


def can_draw() -> bool:
    """Whether matplotlib can be imported (the ``[plot]`` extra)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def draw_timeline(timeline: Timeline, path: Path, *, source: str) -> None:
    """Draw the timeline as a PNG: one time axis, a lane per stage, a band per turn.

    Args:
        timeline: What happened.
        path: Where to write the PNG.
        source: Where the audio came from, for the subtitle.
    """
    import _timeline_plot  # imports matplotlib: only when drawing

    _timeline_plot.draw(timeline, path, source=source)
