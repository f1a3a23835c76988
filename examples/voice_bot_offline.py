#
# Copyright (c) 2026, pipecat-cartesia-ctx contributors
#
# SPDX-License-Identifier: BSD 2-Clause License
#

"""A Pipecat voice bot, offline: scripted LLM -> CartesiaContextTTSService -> a real-time player.

A scripted "LLM" streams three answers token by token at an LLM's pace. The
TTS service pushes them to Cartesia as continuations, one context per answer,
flushing at each sentence. A player stands in for the output transport: it
plays audio in real time and prints a table of every segment (turn, flush_id,
time to first byte, when it played, audio length, text).

In the second answer the user barges in mid-sentence and talks for a second:
an ``InterruptionFrame`` cancels the context on the server, and the table
shows where the answer was cut and that not one frame of it played afterwards.

It writes, in ``--out``:

- ``bot.wav``: what the listener heard, when they heard it: each frame at the
  time it played, silence in between, so the cut sounds where it happened.
- ``bot_timeline.png`` (with matplotlib, the ``[plot]`` extra): LLM tokens,
  pushes and flushes on the wire, audio out of the service and audio played,
  per flush_id, the barge-in and the cancel, on the WAV's time axis.

All times (printed, drawn, in the WAV) are seconds from the player's start.
With ``--speedup N`` the run is N times faster and its times are scaled back
by N, so they read, and the WAV sounds, as in the real-time run.

Offline on an embedded Cartesia emulator by default; against the real API
when ``CARTESIA_API_KEY`` is set (the picture then has no wire lane).

    python examples/voice_bot_offline.py [--out out] [--speedup N]
"""

import argparse
import asyncio
import os
import re
import sys
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path

from _timeline import PLOT_HINT, Clock, PlayedAudio, Timeline, can_draw, draw_timeline
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
from pipecat_cartesia_ctx.emulator import CartesiaEmulator, Pacing, espeak_available

SAMPLE_RATE = 24000
VOICE_ID = os.environ.get("CARTESIA_VOICE_ID", "a0e99841-438c-4a64-b679-ae501e7d6091")
USER_SPEAKS_SECONDS = 1.0  # how long the user talks after barging in
# Audio the player takes ahead of time, as a sound card's buffer does, so that the
# event loop's timing jitter never opens gaps between frames.
PLAYER_BUFFER_SECONDS = 0.04


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


def offline_emulator(speedup: float) -> CartesiaEmulator:
    """The embedded Cartesia emulator the demo talks to without an API key."""
    # ~90 ms to first audio, then a little faster than real time: the long answer
    # is still being generated when the user barges in, as with a busy server.
    pacing = Pacing(first_chunk_ms=90 / speedup, speed=1.5 * speedup, chunk_ms=40)
    # Real words with the [voice] extra (espeak-ng), so you hear what the bot said;
    # otherwise the synthetic voice (a tone per word, timed like speech).
    return CartesiaEmulator(pacing=pacing, voice="espeak" if espeak_available() else None)


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
    """What the player saw of one segment: its text, time to first byte and words."""

    turn: int
    context_id: str
    flush_id: int
    text: str = ""
    ttfb: float | None = None
    words: list[str] = field(default_factory=list)
    complete: bool = False


class Player(FrameProcessor):
    """Plays audio in real time (like an output transport) and records what was played.

    Frames wait in this processor's queue until played, so an interruption
    drops the audio not played yet, exactly as a transport does. Played audio
    goes on the timeline at the time it played (`PlayedAudio`), the future
    ``bot.wav``.
    """

    def __init__(self, timeline: Timeline):
        super().__init__()
        self.timeline = timeline
        self.clock = timeline.clock
        self.audio = timeline.played
        self.segments: dict[tuple[str, int], Segment] = {}
        self.words_played: dict[int, int] = {}
        self.ended: set[int] = set()
        self.cut: tuple[int, str, float] | None = None  # turn, context, when
        self.after_cut: dict[str, int] = {}  # frames of the cut context seen after the cut
        self._changed = asyncio.Event()

    async def process_frame(self, frame, direction):
        """Play audio in real time; record words, segments, metrics and the cut."""
        await super().process_frame(frame, direction)
        context_id = getattr(frame, "context_id", None)
        if self.cut and context_id == self.cut[1] and not isinstance(frame, MetricsFrame):
            self.after_cut[type(frame).__name__] = self.after_cut.get(type(frame).__name__, 0) + 1
        if isinstance(frame, TTSStartedFrame):
            self.timeline.turn(frame.context_id)
        elif isinstance(frame, CartesiaTTSAudioRawFrame):
            self._segment(frame.context_id, frame.flush_id)
            ends = self.audio.play(self.clock.now(), frame.audio, frame.context_id, frame.flush_id)
            # Playing: the next frame is taken just before this one ends.
            await asyncio.sleep(self.clock.wall(ends - PLAYER_BUFFER_SECONDS - self.clock.now()))
        elif isinstance(frame, TTSTextFrame) and frame.context_id in self.timeline.turns:
            turn = self.timeline.turns[frame.context_id]
            self.words_played[turn] = self.words_played.get(turn, 0) + 1
            self._last_segment(frame.context_id).words.append(frame.text)
        elif isinstance(frame, CartesiaFlushDoneFrame):
            segment = self._segment(frame.context_id, frame.flush_id)
            segment.text, segment.complete = frame.text, True
        elif isinstance(frame, MetricsFrame):
            for data in frame.data:
                if isinstance(data, CartesiaSegmentMetricsData):
                    # On the demo's clock, like every time it prints.
                    ttfb = data.ttfb * self.clock.speedup
                    self._segment(data.context_id, data.flush_id).ttfb = ttfb
        elif isinstance(frame, TTSStoppedFrame) and frame.context_id in self.timeline.turns:
            self.ended.add(self.timeline.turns[frame.context_id])
        elif isinstance(frame, InterruptionFrame):
            playing = next(reversed(self.timeline.turns), None)
            if playing is not None:
                # Like a transport clearing its buffer: silence from this moment on.
                now = self.clock.now()
                self.audio.cut(now)
                turn = self.timeline.turns[playing]
                self.cut = (turn, playing, now)
                self.timeline.cut = now
                self.ended.add(turn)
        self._changed.set()
        await self.push_frame(frame, direction)

    def _segment(self, context_id: str, flush_id: int) -> Segment:
        key = (context_id, flush_id)
        if key not in self.segments:
            turn = self.timeline.turns.get(context_id, 0)
            self.segments[key] = Segment(turn, context_id, flush_id)
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
    """Play the script: each answer streams; on cue, the user barges in and talks a while."""
    timeline, clock = player.timeline, player.clock
    for number, answer in enumerate(SCRIPT, start=1):
        print(f"[{clock.now():6.2f} s] bot answers (turn {number})")
        streaming = asyncio.create_task(llm.stream(answer.text))
        if answer.barge_in_after_words:
            await player.wait_until(
                lambda n=number, w=answer.barge_in_after_words: player.words_played.get(n, 0) >= w
            )
            timeline.barge_in = clock.now()
            print(f"[{timeline.barge_in:6.2f} s] user barges in: InterruptionFrame")
            await worker.queue_frame(InterruptionFrame())
        await streaming
        await player.wait_until(lambda n=number: n in player.ended)
        if answer.barge_in_after_words:
            # The scripted user is talking: the bot answers once they stop.
            await asyncio.sleep(clock.wall(timeline.barge_in + USER_SPEAKS_SECONDS - clock.now()))
            timeline.user_stops = clock.now()
            print(f"[{timeline.user_stops:6.2f} s] user stops talking")
    await worker.queue_frame(EndFrame())


def print_table(player: Player):
    """Print one row per segment (when it played, on the WAV's clock), and the barge-in."""
    print()
    header = f"{'turn':>4}  {'flush_id':>8}  {'TTFB ms':>7}  {'played at (s)':>13}  {'audio ms':>8}"
    print(f"{header}  text")
    for segment in sorted(player.segments.values(), key=lambda s: (s.turn, s.flush_id)):
        ttfb = f"{segment.ttfb * 1000:7.0f}" if segment.ttfb is not None else "      -"
        played = player.audio.played(segment.context_id, segment.flush_id)
        if segment.complete:
            text = segment.text.strip()
        elif played:
            text = f"[CUT after: {' '.join(segment.words)!r}]"
        else:
            text = "[generated, never played]"
        at = f"{played[0]:5.2f} - {played[1]:5.2f}" if played else f"{'-':>13}"
        audio_ms = f"{played[2] * 1000 if played else 0:8.0f}"
        print(f"{segment.turn:>4}  {segment.flush_id:>8}  {ttfb}  {at}  {audio_ms}  {text}")
    if player.cut:
        turn, context_id, when = player.cut
        after = sum(player.after_cut.values())
        print(
            f"\nBarge-in at {player.timeline.barge_in:.2f} s cut turn {turn} at {when:.2f} s "
            f"(context {context_id}); frames of that context played afterwards: {after}"
        )
        whole = sum(s.turn == turn and s.complete for s in player.segments.values())
        print(f"Segments of turn {turn} played whole: {whole}")


def write_outputs(out: Path, timeline: Timeline, emulator: CartesiaEmulator | None):
    """Write bot.wav, and bot_timeline.png if matplotlib is there."""
    path = out / "bot.wav"
    timeline.played.write_wav(path)
    print(
        f"Wrote {path}: {timeline.played.end:.2f} s from the start to the last audio played "
        f"({timeline.played.seconds:.2f} s of it audio, silence where nothing played)"
    )
    if emulator is not None:
        timeline.read_wire(emulator.record)  # what the emulator received, and when
    else:
        print("The wire is not drawn: against the real API the demo does not see it")
    if not can_draw():
        print(f"No timeline picture: matplotlib is missing ({PLOT_HINT} to get it)")
        return
    picture = out / "bot_timeline.png"
    source = "offline, on the embedded emulator" if emulator else "on the Cartesia API"
    draw_timeline(timeline, picture, source=source)
    print(f"Wrote {picture}")


async def main():
    """Run the bot on the script and report."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--out", type=Path, default=Path("out"), help="folder for bot.wav and bot_timeline.png"
    )
    parser.add_argument(
        "--speedup", type=float, default=1.0, help="play and stream N times faster than real time"
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    logger.remove()
    logger.add(sys.stderr, level="WARNING")

    emulator = None
    async with AsyncExitStack() as stack:
        api_key = os.environ.get("CARTESIA_API_KEY")
        if api_key:
            print("Using the Cartesia API (CARTESIA_API_KEY is set)")
            url_kwargs = {}
        else:
            emulator = await stack.enter_async_context(offline_emulator(args.speedup))
            voice = "espeak-ng, real words" if espeak_available() else "synthetic, no [voice] extra"
            print(f"Offline: using the local Cartesia emulator at {emulator.url}, voice: {voice}")
            api_key, url_kwargs = "offline", {"url": emulator.url}

        tts = CartesiaContextTTSService(
            api_key=api_key,
            settings=CartesiaContextTTSService.Settings(voice=VOICE_ID),
            sample_rate=SAMPLE_RATE,
            **url_kwargs,
        )
        llm = ScriptedLLM(tokens_per_second=25 * args.speedup)
        # One clock for everything, from the player's start; the timeline stamps
        # tokens as they leave the LLM and audio as it leaves the TTS service.
        timeline = Timeline(Clock(args.speedup), PlayedAudio(SAMPLE_RATE))
        player = Player(timeline)
        worker = PipelineWorker(
            Pipeline([llm, timeline.tokens_tap(), tts, timeline.audio_tap(), player]),
            params=PipelineParams(audio_out_sample_rate=SAMPLE_RATE, enable_metrics=True),
            cancel_on_idle_timeout=False,
        )
        runner = WorkerRunner(handle_sigint=False)
        await runner.add_workers(worker)

        @worker.event_handler("on_pipeline_started")
        async def on_started(worker, frame):
            worker.create_task(converse(llm, player, worker), "converse")

        await runner.run()

    timeline.late_events_dropped = tts.stats.stale_events_dropped
    print_table(player)
    print()
    write_outputs(args.out, timeline, emulator)
    stats = tts.stats
    print(
        f"Cartesia contexts opened: {stats.contexts_opened}, cancelled on the server: "
        f"{stats.contexts_cancelled}, late events of cancelled contexts dropped: "
        f"{stats.stale_events_dropped}"
    )


if __name__ == "__main__":
    asyncio.run(main())
