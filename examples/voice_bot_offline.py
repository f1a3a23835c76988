#
# Copyright (c) 2026, pipecat-cartesia-ctx contributors
#
# SPDX-License-Identifier: BSD 2-Clause License
#

"""A Pipecat voice bot, offline: scripted LLM -> CartesiaContextTTSService -> a real-time player.

A scripted "LLM" streams three answers token by token at an LLM's pace. The
TTS service pushes them to Cartesia as continuations, one context per answer,
flushing at each sentence. A player stands in for the output transport: it
plays audio in real time into ``bot.wav`` and prints a table of every segment
(turn, flush_id, text, time to first byte, audio length).

In the second answer the user barges in mid-sentence: an ``InterruptionFrame``
cancels the context on the server, and the table shows where the answer was
cut and that not one frame of it played afterwards.

Offline on an embedded Cartesia emulator by default; against the real API
when ``CARTESIA_API_KEY`` is set.

    python examples/voice_bot_offline.py [--out out] [--speedup N]
"""

import argparse
import asyncio
import os
import re
import sys
import time
import wave
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path

from loguru import logger
from pipecat.frames.frames import (
    EndFrame,
    InterruptionFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    MetricsFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
    TTSTextFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.frame_processor import FrameProcessor
from pipecat.workers.runner import WorkerRunner

from pipecat_cartesia_ctx import (
    CartesiaContextTTSService,
    CartesiaFlushDoneFrame,
    CartesiaSegmentMetricsData,
    CartesiaTTSAudioRawFrame,
)
from pipecat_cartesia_ctx.emulator import CartesiaEmulator, Pacing

SAMPLE_RATE = 24000
VOICE_ID = os.environ.get("CARTESIA_VOICE_ID", "a0e99841-438c-4a64-b679-ae501e7d6091")


@dataclass
class Answer:
    """One scripted answer; ``barge_in_after_words``: the user interrupts after that many words."""

    text: str
    barge_in_after_words: int | None = None


SCRIPT = [
    Answer(
        "Hi! I'm your offline voice bot. Every word you hear comes from a local Cartesia emulator."
    ),
    Answer(
        "Let me explain how streaming works. Each token is pushed as soon as it completes a word, "
        "and every sentence is flushed on its own, so audio starts while the answer is still "
        "being written. This answer is long on purpose, so that you can interrupt me in the "
        "middle of it. Everything after that point is cancelled on the server. None of it "
        "reaches your ears, not a single frame, even if the server was still sending it.",
        barge_in_after_words=14,
    ),
    Answer("Sorry, go ahead. The interrupted context was cancelled, and this answer is a new one."),
]


class ScriptedLLM(FrameProcessor):
    """Stands in for an LLM: streams an answer as tokens; an interruption stops the stream."""

    def __init__(self, tokens_per_second: float):
        super().__init__()
        self._delay = 1.0 / tokens_per_second
        self._interrupted = asyncio.Event()

    async def process_frame(self, frame, direction):
        """Pass frames on, noting interruptions."""
        await super().process_frame(frame, direction)
        if isinstance(frame, InterruptionFrame):
            self._interrupted.set()
        await self.push_frame(frame, direction)

    async def stream(self, text: str):
        """Push one answer: start, a token at a time (a word with its leading space), end."""
        self._interrupted.clear()
        await self.push_frame(LLMFullResponseStartFrame())
        for token in re.findall(r"\s*\S+", text):
            if self._interrupted.is_set():
                return  # an interrupted LLM stops generating
            await self.push_frame(LLMTextFrame(token))
            await asyncio.sleep(self._delay)
        await self.push_frame(LLMFullResponseEndFrame())


@dataclass
class Segment:
    """What the player saw of one segment: its text, timing and played audio."""

    turn: int
    flush_id: int
    text: str = ""
    ttfb: float | None = None
    audio_seconds: float = 0.0
    words: list[str] = field(default_factory=list)
    complete: bool = False


class Player(FrameProcessor):
    """Plays audio in real time (like an output transport) and records what was played.

    Frames wait in this processor's queue until played, so an interruption
    drops the audio not played yet, exactly as a transport does.
    """

    def __init__(self, speedup: float):
        super().__init__()
        self.speedup = speedup
        self.audio = bytearray()
        self.segments: dict[tuple[str, int], Segment] = {}
        self.turns: dict[str, int] = {}
        self.words_played: dict[int, int] = {}
        self.ended: set[int] = set()
        self.cut: tuple[int, str, float] | None = None  # turn, context, when
        self.after_cut: dict[str, int] = {}  # frames of the cut context seen after the cut
        self.started = time.monotonic()
        self._changed = asyncio.Event()

    async def process_frame(self, frame, direction):
        """Play audio in real time; record words, segments, metrics and the cut."""
        await super().process_frame(frame, direction)
        context_id = getattr(frame, "context_id", None)
        if self.cut and context_id == self.cut[1] and not isinstance(frame, MetricsFrame):
            self.after_cut[type(frame).__name__] = self.after_cut.get(type(frame).__name__, 0) + 1
        if isinstance(frame, TTSStartedFrame):
            self.turns.setdefault(frame.context_id, len(self.turns) + 1)
        elif isinstance(frame, CartesiaTTSAudioRawFrame):
            seconds = len(frame.audio) / 2 / frame.sample_rate
            await asyncio.sleep(seconds / self.speedup)  # playing
            self.audio += frame.audio
            self._segment(frame.context_id, frame.flush_id).audio_seconds += seconds
        elif isinstance(frame, TTSTextFrame) and frame.context_id in self.turns:
            turn = self.turns[frame.context_id]
            self.words_played[turn] = self.words_played.get(turn, 0) + 1
            self._last_segment(frame.context_id).words.append(frame.text)
        elif isinstance(frame, CartesiaFlushDoneFrame):
            segment = self._segment(frame.context_id, frame.flush_id)
            segment.text, segment.complete = frame.text, True
        elif isinstance(frame, MetricsFrame):
            for data in frame.data:
                if isinstance(data, CartesiaSegmentMetricsData):
                    self._segment(data.context_id, data.flush_id).ttfb = data.ttfb
        elif isinstance(frame, TTSStoppedFrame) and frame.context_id in self.turns:
            self.ended.add(self.turns[frame.context_id])
        elif isinstance(frame, InterruptionFrame):
            playing = next(reversed(self.turns), None)
            if playing is not None:
                turn = self.turns[playing]
                self.cut = (turn, playing, time.monotonic() - self.started)
                self.ended.add(turn)
        self._changed.set()
        await self.push_frame(frame, direction)

    def _segment(self, context_id: str, flush_id: int) -> Segment:
        key = (context_id, flush_id)
        if key not in self.segments:
            self.segments[key] = Segment(self.turns.get(context_id, 0), flush_id)
        return self.segments[key]

    def _last_segment(self, context_id: str) -> Segment:
        keys = [k for k in self.segments if k[0] == context_id and not self.segments[k].complete]
        return self.segments[keys[0]] if keys else self._segment(context_id, 1)

    async def wait_until(self, predicate, timeout: float = 120.0):
        """Wait until ``predicate()`` holds, checking after every frame."""
        async with asyncio.timeout(timeout):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()


async def converse(llm: ScriptedLLM, player: Player, worker: PipelineWorker):
    """Play the script: each answer streams; on cue, the user barges in."""
    for number, answer in enumerate(SCRIPT, start=1):
        print(f"[{time.monotonic() - player.started:5.1f}s] bot answers (turn {number})")
        streaming = asyncio.create_task(llm.stream(answer.text))
        if answer.barge_in_after_words:
            await player.wait_until(
                lambda n=number, w=answer.barge_in_after_words: player.words_played.get(n, 0) >= w
            )
            print(f"[{time.monotonic() - player.started:5.1f}s] user barges in: InterruptionFrame")
            await worker.queue_frame(InterruptionFrame())
        await streaming
        await player.wait_until(lambda n=number: n in player.ended)
    await worker.queue_frame(EndFrame())


def print_table(player: Player):
    """Print one row per segment, and what happened at the barge-in."""
    print()
    print(f"{'turn':>4}  {'flush_id':>8}  {'TTFB ms':>7}  {'audio ms':>8}  text")
    for segment in sorted(player.segments.values(), key=lambda s: (s.turn, s.flush_id)):
        ttfb = f"{segment.ttfb * 1000:7.0f}" if segment.ttfb is not None else "      -"
        if segment.complete:
            text = segment.text.strip()
        elif segment.audio_seconds:
            text = f"[CUT after: {' '.join(segment.words)!r}]"
        else:
            text = "[generated, never played]"
        audio_ms = f"{segment.audio_seconds * 1000:8.0f}"
        print(f"{segment.turn:>4}  {segment.flush_id:>8}  {ttfb}  {audio_ms}  {text}")
    if player.cut:
        turn, context_id, when = player.cut
        after = sum(player.after_cut.values())
        print(
            f"\nBarge-in at {when:.1f} s cut turn {turn} (context {context_id}); "
            f"frames of that context played afterwards: {after}"
        )
        whole = sum(s.turn == turn and s.complete for s in player.segments.values())
        print(f"Segments of turn {turn} played whole: {whole}")


async def main():
    """Run the bot on the script and report."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("out"), help="folder for bot.wav")
    parser.add_argument(
        "--speedup", type=float, default=1.0, help="play and stream N times faster than real time"
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    logger.remove()
    logger.add(sys.stderr, level="WARNING")

    async with AsyncExitStack() as stack:
        api_key = os.environ.get("CARTESIA_API_KEY")
        if api_key:
            print("Using the Cartesia API (CARTESIA_API_KEY is set)")
            url_kwargs = {}
        else:
            # ~90 ms to first audio, then a little faster than real time: the long answer
            # is still being generated when the user barges in, as with a busy server.
            pacing = Pacing(first_chunk_ms=90 / args.speedup, speed=1.5 * args.speedup, chunk_ms=40)
            emulator = await stack.enter_async_context(CartesiaEmulator(pacing=pacing))
            print(f"Offline: using the local Cartesia emulator at {emulator.url}")
            api_key, url_kwargs = "offline", {"url": emulator.url}

        tts = CartesiaContextTTSService(
            api_key=api_key,
            settings=CartesiaContextTTSService.Settings(voice=VOICE_ID),
            sample_rate=SAMPLE_RATE,
            **url_kwargs,
        )
        llm = ScriptedLLM(tokens_per_second=25 * args.speedup)
        player = Player(speedup=args.speedup)
        worker = PipelineWorker(
            Pipeline([llm, tts, player]),
            params=PipelineParams(audio_out_sample_rate=SAMPLE_RATE, enable_metrics=True),
            cancel_on_idle_timeout=False,
        )
        runner = WorkerRunner(handle_sigint=False)
        await runner.add_workers(worker)

        @worker.event_handler("on_pipeline_started")
        async def on_started(worker, frame):
            worker.create_task(converse(llm, player, worker), "converse")

        await runner.run()

    print_table(player)
    path = args.out / "bot.wav"
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(SAMPLE_RATE)
        wav.writeframes(bytes(player.audio))
    print(f"\nWrote {path} ({len(player.audio) / 2 / SAMPLE_RATE:.1f} s played)")
    stats = tts.stats
    print(
        f"Cartesia contexts opened: {stats.contexts_opened}, cancelled on the server: "
        f"{stats.contexts_cancelled}, late events of cancelled contexts dropped: "
        f"{stats.stale_events_dropped}"
    )


if __name__ == "__main__":
    asyncio.run(main())
