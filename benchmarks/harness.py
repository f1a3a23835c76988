"""What every benchmark here shares: the emulator in its own process, a pipeline, an LLM, a player.

- `start_emulator`: the emulator as a separate process (its work is not in
  the measured loop), with the pacing given.
- `Bot`: one pipeline (a stamp before the TTS, the TTS, a sink after it) that
  speaks streamed answers turn by turn and records, per turn, when the first
  token went into the TTS and when each audio frame came out.
- `stream`: an LLM answer as tokens (as a tokenizer cuts text: words with their
  leading space, digits in threes, punctuation apart) at a given rate.
- `playback`: what a player starting at the first audio would do with the
  frames as they arrived: stalls (buffer underruns) and the real-time factor.
"""

from __future__ import annotations

import asyncio
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pipecat.frames.frames import (
    CancelFrame,
    Frame,
    InterruptionFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    TTSAudioRawFrame,
    TTSStoppedFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.workers.runner import WorkerRunner

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
VOICE = "a0e99841-438c-4a64-b679-ae501e7d6091"
SAMPLE_RATE = 24000
BYTES_PER_SECOND = SAMPLE_RATE * 2

# The pacing: first chunk 90 ms after text is ready, 6x real time, 40 ms chunks.
PACING = {"first_chunk_ms": 90.0, "speed": 6.0, "chunk_ms": 40.0}

# Realistic answers: numbers, lists, abbreviations, questions, short and long sentences.
ANSWERS = [
    "Sure! Dr. Smith can see you on Tuesday at 3:30 p.m. Shall I book it?",
    "Your order of 3 items ships today. It should arrive by Friday, Jan. 5, before noon.",
    "To reset the router, do this: 1. unplug it, 2. wait ten seconds, 3. plug it back in. "
    "If the light stays red, call us again.",
    "The total comes to $1,234.56, including tax. Would you like to pay by card or by bank "
    "transfer?",
    "I checked the schedule. The next train to Boston leaves at 6:15, and the one after that "
    "at 7:40. Both have seats left.",
    "Yes. The U.S. office opens at 9 a.m. Eastern time, e.g. 3 p.m. in Paris.",
    "Great question. Our premium plan includes unlimited calls, 50 GB of data, and free "
    "roaming in 30 countries. It costs 45 dollars a month.",
    "I'm sorry, I didn't catch that. Could you repeat the account number, one digit at a time?",
    "Here is what I found: the meeting with Prof. Lee moved to room 204. It starts in twenty "
    "minutes, so you still have time for coffee.",
    "No problem! I've cancelled the reservation for two at 8 p.m. You will get a confirmation "
    "email shortly.",
]

_TOKEN = re.compile(r" ?[A-Za-z']+| ?\d{1,3}| ?[^\w\s]|\s+")


def tokens(text: str) -> list[str]:
    """``text`` as an LLM streams it: words with their leading space, digits in threes."""
    out = _TOKEN.findall(text)
    assert "".join(out) == text
    return out


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) by nearest rank; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def start_emulator(pacing: dict[str, float] | None = None) -> tuple[subprocess.Popen, str]:
    """The emulator in its own process, so its work is not in the measured loop.

    Args:
        pacing: ``first_chunk_ms``, ``speed`` and ``chunk_ms``; None: the emulator's defaults.

    Returns:
        The process and its URL.
    """
    args = [sys.executable, "-m", "pipecat_cartesia_ctx.emulator", "--port", "0"]
    args += ["--log-level", "WARNING"]
    if pacing is not None:
        args += ["--first-chunk-ms", str(pacing["first_chunk_ms"])]
        args += ["--speed", str(pacing["speed"]), "--chunk-ms", str(pacing["chunk_ms"])]
    args += ["--max-concurrent-contexts", "100000", "--max-connections", "100000"]
    proc = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT
    )
    assert proc.stdout is not None
    for _ in range(20):
        line = proc.stdout.readline()
        if "listening on" in line:
            return proc, line.split("listening on", 1)[1].strip()
    proc.kill()
    raise RuntimeError("the emulator did not start")


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Turn:
    """What one turn did, as seen around the TTS."""

    text: str
    first_token_at: float | None = None
    interrupt_sent_at: float | None = None  # the interruption was queued
    interrupted_at: float | None = None  # it came out of the TTS
    context_id: str | None = None
    audio: list[tuple[float, int]] = field(default_factory=list)  # (arrival, bytes)
    stale_frames: int = 0  # audio of the turn after the interruption passed the TTS
    heard: asyncio.Event = field(default_factory=asyncio.Event)  # its first audio came
    ended: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def first_audio_s(self) -> float | None:
        if not self.audio or self.first_token_at is None:
            return None
        return self.audio[0][0] - self.first_token_at

    @property
    def audio_seconds(self) -> float:
        return sum(n for _, n in self.audio) / BYTES_PER_SECOND


def playback(audio: list[tuple[float, int]]) -> tuple[float, float]:
    """Stall seconds and real-time factor of a player that starts at the first frame.

    A stall is time the player had nothing left to play before the next frame
    came; the real-time factor is audio seconds over the seconds it took to
    arrive (below 1, no buffer can keep the player fed).
    """
    if not audio:
        return 0.0, float("nan")
    stalled, until = 0.0, audio[0][0]
    for arrival, size in audio:
        if arrival > until:
            stalled += arrival - until
            until = arrival
        until += size / BYTES_PER_SECOND
    seconds = sum(n for _, n in audio) / BYTES_PER_SECOND
    span = audio[-1][0] - audio[0][0]
    return stalled, (seconds / span if span > 0 else float("inf"))


class _Stamp(FrameProcessor):
    """Before the TTS: notes when the turn's first token goes in."""

    def __init__(self, bot: Bot):
        super().__init__()
        self._bot = bot

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        turn = self._bot.turn
        if isinstance(frame, LLMTextFrame) and turn is not None and turn.first_token_at is None:
            turn.first_token_at = time.monotonic()
        await self.push_frame(frame, direction)


class _Sink(FrameProcessor):
    """After the TTS: notes each audio frame of the turn, and its end."""

    def __init__(self, bot: Bot):
        super().__init__()
        self._bot = bot

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        turn = self._bot.turn
        if turn is not None and direction is FrameDirection.DOWNSTREAM:
            if isinstance(frame, TTSAudioRawFrame):
                if turn.context_id is None:
                    turn.context_id = frame.context_id
                if frame.context_id == turn.context_id:
                    if turn.interrupted_at is not None:
                        turn.stale_frames += 1
                    else:
                        turn.audio.append((time.monotonic(), len(frame.audio)))
                        turn.heard.set()
            elif isinstance(frame, TTSStoppedFrame) and frame.context_id == turn.context_id:
                turn.ended.set()
            elif isinstance(frame, InterruptionFrame):
                turn.interrupted_at = time.monotonic()
                turn.ended.set()
        await self.push_frame(frame, direction)


class Bot:
    """One pipeline around a TTS service, speaking one streamed answer at a time.

    Parameters:
        tts: The service under test.
    """

    def __init__(self, tts: FrameProcessor):
        self.tts = tts
        self.turn: Turn | None = None
        self._worker = PipelineWorker(
            Pipeline([_Stamp(self), tts, _Sink(self)]),
            params=PipelineParams(audio_out_sample_rate=SAMPLE_RATE),
        )
        self._runner = WorkerRunner(handle_sigint=False)
        self._running: asyncio.Task | None = None

    async def start(self):
        await self._runner.add_workers(self._worker)
        self._running = asyncio.create_task(self._runner.run())

    async def stop(self):
        await self._worker.queue_frame(CancelFrame())
        if self._running is not None:
            await asyncio.wait_for(self._running, 30)

    async def speak(
        self,
        text: str,
        tokens_per_second: float,
        *,
        interrupt_after_s: float | None = None,
        timeout: float = 60.0,
    ) -> Turn:
        """Stream ``text`` at ``tokens_per_second`` and wait for its audio to end.

        Args:
            text: The answer.
            tokens_per_second: The LLM's rate.
            interrupt_after_s: Barge in this long after the first audio.
            timeout: Give the turn up after this long.
        """
        turn = self.turn = Turn(text)
        await self._worker.queue_frame(LLMFullResponseStartFrame())
        start = time.monotonic()
        for n, token in enumerate(tokens(text)):
            # Paced on the clock, not per sleep, so the rate holds under load.
            delay = start + n / tokens_per_second - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await self._worker.queue_frame(LLMTextFrame(token))
        await self._worker.queue_frame(LLMFullResponseEndFrame())
        if interrupt_after_s is not None:
            await asyncio.wait_for(turn.heard.wait(), timeout)
            await asyncio.sleep(interrupt_after_s)
            turn.interrupt_sent_at = time.monotonic()
            await self._worker.queue_frame(InterruptionFrame())
            # What still comes for the turn is stale: give it time to show.
            await asyncio.sleep(0.5)
        await asyncio.wait_for(turn.ended.wait(), timeout)
        self.turn = None
        return turn


def builtin_service(url: str, **kwargs) -> FrameProcessor:
    """Pipecat's own `CartesiaTTSService`, as a user sets it up (its defaults)."""
    from pipecat.services.cartesia.tts import CartesiaTTSService

    return CartesiaTTSService(
        api_key="bench",
        url=url,
        settings=CartesiaTTSService.Settings(voice=VOICE),
        sample_rate=SAMPLE_RATE,
        **kwargs,
    )


def our_service(url: str, **kwargs) -> FrameProcessor:
    """Our `CartesiaContextTTSService` with its defaults."""
    from pipecat_cartesia_ctx import CartesiaContextTTSService

    return CartesiaContextTTSService(
        api_key="bench",
        url=url,
        settings=CartesiaContextTTSService.Settings(voice=VOICE),
        sample_rate=SAMPLE_RATE,
        **kwargs,
    )


SERVICES: dict[str, Callable[..., FrameProcessor]] = {
    "ours": our_service,
    "builtin": builtin_service,
}
