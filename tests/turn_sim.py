"""A pure fake Cartesia server for the turn engine, and a player that drives both.

`FakeCartesia` carries out the engine's actions the way a server would: it
keeps each context's pushed text and flushes, and "generates" deterministic
audio for every flushed (or closed) segment:

- each whitespace token of a segment is ``BYTES_PER_CHAR`` bytes per
  character of one byte value, the token's own (`voice_of`), never 0;
- each segment with words ends with ``SILENCE`` zero bytes (one without
  words, an empty flush or trailing whitespace, has no audio);
- the audio goes out in chunks of ``chunk_size`` bytes (the last one of a
  segment shorter), labelled with the manual flush id (the id goes up at each
  manual flush, from 1; the segment closed by ``Close`` gets the next one);
- once a word's audio has all been sent, a `Timestamps` event times it
  (seconds from the context's start, the token verbatim);
- a `FlushDone` follows each flush, an empty one too (as the emulator
  does), and `Done` follows the close.

So the audio of a word is the same whichever context says it, and a replay
lines up byte for byte with what was played before. What went downstream is
read off the engine's actions (`audio`, `words`, `segments_done`).

No I/O and no real time: every input to the engine is one call, in the order
the test chooses, and the clock moves 10 ms per call.
"""

from __future__ import annotations

import itertools
import random
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from pipecat_cartesia_ctx.protocol import (
    CartesiaAPIError,
    CartesiaConnectionError,
    CartesiaError,
    Chunk,
    ConcurrencyLimitError,
    Done,
    Error,
    FlushDone,
    ServerEvent,
    Timestamps,
    is_speakable,
)
from pipecat_cartesia_ctx.segmenter import Segmenter
from pipecat_cartesia_ctx.turn import (
    TurnEngine,
    TurnPhase,
)
from pipecat_cartesia_ctx.turn_actions import (
    Action,
    Audio,
    Cancel,
    Close,
    Open,
    SegmentDone,
    Send,
    SendFlush,
    Words,
)

BYTES_PER_CHAR = 2
SAMPLE_WIDTH = 2
# 8 kHz 16-bit. Below 2002 bytes every byte offset survives the engine's float
# round trip (seconds = bytes / rate, bytes = int(seconds * rate)) exactly; at
# other rates it does not (test_a_word_end_that_is_not_exact_in_floating_point...).
BYTES_PER_SECOND = 16000
SILENCE = 4
MAX_EVENTS = 20_000  # a turn that needs more never settles: a loop


def voice_of(text: str) -> dict[str, int]:
    """The byte value of each distinct token of ``text``: 1, 2, 3... in order of first use."""
    return {token: i % 251 + 1 for i, token in enumerate(dict.fromkeys(text.split()))}


def word_audio(token: str, voice: dict[str, int]) -> bytes:
    return bytes([voice[token]]) * (BYTES_PER_CHAR * len(token))


def segment_audio(text: str, voice: dict[str, int]) -> bytes:
    """The whole audio of one segment: its words, then its silence (none without words)."""
    words = b"".join(word_audio(t, voice) for t in text.split())
    return words + bytes(SILENCE) if words else b""


def runs(audio: bytes) -> list[tuple[int, int]]:
    """The audio as (byte value, length) runs: a word is one run, a silence one run of 0."""
    return [(value, len(list(group))) for value, group in itertools.groupby(audio)]


def word_runs(tokens: Iterable[str], voice: dict[str, int]) -> list[tuple[int, int]]:
    return [(voice[t], BYTES_PER_CHAR * len(t)) for t in tokens]


def voiced_runs(audio: bytes) -> list[tuple[int, int]]:
    """The word runs of the audio, silences left out."""
    return [r for r in runs(audio) if r[0]]


def silences(audio: bytes) -> list[tuple[int, int]]:
    """Each silence as (words before it, its length in bytes)."""
    out, words = [], 0
    for value, length in runs(audio):
        if value:
            words += 1
        else:
            out.append((words, length))
    return out


def word_offsets(audio: bytes) -> list[int]:
    """The byte offset at which each word's audio starts."""
    offsets, position = [], 0
    for value, length in runs(audio):
        if value:
            offsets.append(position)
        position += length
    return offsets


def make_engine(
    context_id: str = "t",
    *,
    expect_timestamps: bool = True,
    hold: float | None = None,
    first_segment_deadline: float | None = None,
    hold_audio_above: float | None = None,
    **segmenter_options,
) -> TurnEngine:
    return TurnEngine(
        context_id,
        Segmenter(**segmenter_options),
        bytes_per_second=BYTES_PER_SECOND,
        sample_width=SAMPLE_WIDTH,
        expect_timestamps=expect_timestamps,
        hold=hold,
        first_segment_deadline=first_segment_deadline,
        hold_audio_above=hold_audio_above,
    )


@dataclass
class ServerContext:
    """One context as the fake server sees it."""

    context_id: str
    inputs: list[str] = field(default_factory=lambda: [""])  # text of flush id n at n - 1
    closed: bool = False
    cancelled: bool = False
    dead: bool = False  # failed, or its connection dropped: it generates nothing more
    ended: bool = False  # the engine was told it ended (done, error, lost) or cancelled it
    clock: int = 0  # audio bytes generated so far
    queue: deque[ServerEvent] = field(default_factory=deque)

    @property
    def flushes(self) -> int:
        return len(self.inputs) - 1

    @property
    def text(self) -> str:
        return "".join(self.inputs)


@dataclass
class Call:
    """One input to the engine and the actions it returned."""

    name: str
    actions: list[Action]


class FakeCartesia:
    """A fake Cartesia server wired to one turn engine.

    Parameters:
        engine: The engine under test.
        voice: Byte value of each token (`voice_of` of the turn's text).
        chunk_size: Audio bytes per chunk.
        timestamps: Send word timestamps.
        pick: Which context sends next, among those with events queued: the
            oldest (None), a random one (a `random.Random`), or the newest
            (``"newest"``).
        refuse: Called with each pushed text; an error it returns ends the
            context (the error event follows what the context had queued).
        auto_resume: Call `TurnEngine.resume` as soon as the engine waits for it.
        bytes_per_second: The audio rate the engine was given.
    """

    def __init__(
        self,
        engine: TurnEngine,
        voice: dict[str, int],
        *,
        chunk_size: int = 6,
        timestamps: bool = True,
        pick: random.Random | str | None = None,
        refuse: Callable[[str], CartesiaAPIError | None] | None = None,
        auto_resume: bool = True,
        bytes_per_second: int = BYTES_PER_SECOND,
    ):
        self.engine = engine
        self.voice = voice
        self.chunk_size = chunk_size
        self.timestamps = timestamps
        self.pick = pick
        self.refuse = refuse
        self.auto_resume = auto_resume
        self.bytes_per_second = bytes_per_second
        self.contexts: dict[str, ServerContext] = {}
        self.calls: list[Call] = []
        self.violations: list[str] = []  # what a real server would refuse or never see
        self.chunks = 0  # chunks delivered to the engine
        self.live_at_interrupt: list[str] | None = None
        self._clock = 0.0

    # -- what went downstream ---------------------------------------------------------

    @property
    def actions(self) -> list[Action]:
        return [a for call in self.calls for a in call.actions]

    def of(self, kind: type) -> list:
        return [a for a in self.actions if isinstance(a, kind)]

    @property
    def audio(self) -> bytes:
        return b"".join(a.data for a in self.of(Audio))

    def audio_of(self, flush_id: int) -> bytes:
        return b"".join(a.data for a in self.of(Audio) if a.flush_id == flush_id)

    @property
    def words(self) -> list[tuple[str, float]]:
        return [w for a in self.of(Words) for w in a.words]

    @property
    def segments_done(self) -> list[SegmentDone]:
        return self.of(SegmentDone)

    @property
    def pending(self) -> bool:
        return any(c.queue for c in self.contexts.values())

    @property
    def live(self) -> list[str]:
        """Contexts the engine still has, as far as it was told."""
        return [c.context_id for c in self.contexts.values() if not c.ended]

    # -- inputs to the engine ---------------------------------------------------------

    def feed(self, text: str) -> list[Action]:
        return self._call("feed", self.engine.feed(text, self._now()))

    def end_input(self) -> list[Action]:
        return self._call("end_input", self.engine.end_input(self._now()))

    def tick_if_due(self) -> list[Action]:
        """Call `TurnEngine.tick` if its deadline has passed (the clock moves 10 ms a call)."""
        deadline = self.engine.deadline
        if deadline is None or self._clock < deadline:
            return []
        return self._call("tick", self.engine.tick(self._now()))

    def switch_settings(self) -> list[Action]:
        return self._call("switch_settings", self.engine.switch_settings())

    def interrupt(self) -> list[Action]:
        self.live_at_interrupt = self.live
        return self._call("interrupt", self.engine.interrupt())

    def resume(self) -> list[Action]:
        return self._call("resume", self.engine.resume(self._now()))

    def drop(self) -> list[Action]:
        """The connection drops: every context dies and nothing queued arrives."""
        for ctx in self.contexts.values():
            ctx.queue.clear()
            ctx.dead = ctx.ended = True
        return self._call("lost", self.engine.lost(CartesiaConnectionError("connection dropped")))

    def refuse_send(self, context_id: str, error: CartesiaError) -> list[Action]:
        """Sending on a context failed on our side: it is gone, nothing of it arrives."""
        ctx = self.contexts[context_id]
        ctx.queue.clear()
        ctx.dead = ctx.ended = True
        return self._call("refused", self.engine.refused(context_id, error))

    def fail(self, context_id: str, error: CartesiaAPIError, *, after: int = 0) -> None:
        """End a context with ``error``, sent after ``after`` of the events it has queued."""
        ctx = self.contexts[context_id]
        if ctx.queue and isinstance(ctx.queue[-1], Done):
            after = min(after, len(ctx.queue) - 1)  # nothing comes after done
        kept = list(ctx.queue)[:after]
        ctx.queue = deque([*kept, _error_event(context_id, error)])
        ctx.dead = True

    def step(self) -> bool:
        """Deliver the next server event; False when none is queued."""
        ready = [c for c in self.contexts.values() if c.queue]
        if not ready:
            return False
        if self.pick is None:
            ctx = ready[0]
        elif self.pick == "newest":
            ctx = ready[-1]
        else:
            ctx = self.pick.choice(ready)
        event = ctx.queue.popleft()
        if isinstance(event, Chunk):
            self.chunks += 1
        if isinstance(event, Done | Error):
            ctx.ended = True
        self._call(type(event).__name__, self.engine.event(ctx.context_id, event, self._now()))
        return True

    def run(self) -> None:
        """Deliver everything queued, and what it leads to (a loop fails, never hangs)."""
        for _ in range(MAX_EVENTS):
            if not self.step():
                return
        raise AssertionError(f"still busy after {MAX_EVENTS} events: the turn never settles")

    # -- the server side ----------------------------------------------------------------

    def _now(self) -> float:
        self._clock += 0.01
        return self._clock

    def _call(self, name: str, actions: list[Action]) -> list[Action]:
        self.calls.append(Call(name, actions))
        for action in actions:
            self._carry_out(action)
        if self.auto_resume and self.engine.phase is TurnPhase.RESUMING:
            self.resume()
        return actions

    def _carry_out(self, action: Action) -> None:
        if isinstance(action, Open):
            if action.context_id in self.contexts:
                self.violations.append(f"context {action.context_id} opened twice")
            self.contexts[action.context_id] = ServerContext(action.context_id)
            return
        if isinstance(action, Cancel):
            ctx = self.contexts[action.context_id]
            ctx.cancelled = ctx.ended = True
            return
        if not isinstance(action, Send | SendFlush | Close):
            return  # downstream
        ctx = self.contexts.get(action.context_id)
        if ctx is None or ctx.closed or ctx.ended:
            self.violations.append(f"{action} on a context that takes no input")
            return
        if ctx.dead:
            return  # it failed, and the engine has not heard yet
        if isinstance(action, Send):
            if not ctx.text and not is_speakable(action.text):
                self.violations.append(f"context {ctx.context_id} opened with {action.text!r}")
            ctx.inputs[-1] += action.text
            error = self.refuse(action.text) if self.refuse else None
            if error is not None:
                ctx.queue.append(_error_event(ctx.context_id, error))
                ctx.dead = True
        elif isinstance(action, SendFlush):
            self._generate(ctx, ctx.flushes + 1, ctx.inputs[-1])
            ctx.queue.append(FlushDone(ctx.context_id, ctx.flushes + 1))
            ctx.inputs.append("")
        else:
            ctx.closed = True
            self._generate(ctx, ctx.flushes + 1, ctx.inputs[-1])
            ctx.queue.append(Done(ctx.context_id))

    def _generate(self, ctx: ServerContext, flush_id: int, text: str) -> None:
        if not text.split():
            return  # nothing to say (an empty flush, trailing whitespace)
        stream = bytearray()
        timed = []  # (token, start byte, end byte) in the context's audio
        for token in text.split():
            start = ctx.clock + len(stream)
            stream += word_audio(token, self.voice)
            timed.append((token, start, ctx.clock + len(stream)))
        stream += bytes(SILENCE)
        word = 0
        for i in range(0, len(stream), self.chunk_size):
            piece = bytes(stream[i : i + self.chunk_size])
            ctx.queue.append(Chunk(ctx.context_id, piece, flush_id))
            covered = ctx.clock + i + len(piece)
            batch = []
            while word < len(timed) and timed[word][2] <= covered:
                batch.append(timed[word])
                word += 1
            if batch and self.timestamps:
                ctx.queue.append(
                    Timestamps(
                        ctx.context_id,
                        tuple(t for t, _, _ in batch),
                        tuple(s / self.bytes_per_second for _, s, _ in batch),
                        tuple(e / self.bytes_per_second for _, _, e in batch),
                        flush_id,
                    )
                )
        ctx.clock += len(stream)


_BUSY = ConcurrencyLimitError("too many concurrent contexts")


def _error_event(context_id: str, error: CartesiaAPIError) -> Error:
    return replace(Error.from_exception(error), context_id=context_id)


def play(
    sim: FakeCartesia,
    tokens: list[str],
    *,
    pauses: list[int] = (),
    drops: Iterable[int] = (),
    switches: Iterable[int] = (),
    errors: Iterable[tuple[int, int, int]] = (),
    interrupt_before: int | None = None,
) -> int:
    """Stream ``tokens`` into the engine and let the server answer; return the inputs made.

    Args:
        sim: The server and its engine.
        tokens: The turn's text, piece by piece; `TurnEngine.end_input` follows.
        pauses: Server events delivered after each token (0 past the list's end);
            after the end of the text, everything is delivered.
        drops: Chunk counts at which the connection drops (while events are
            in flight); the engine resumes at once.
        errors: ``(chunks, context, after)``: once ``chunks`` chunks were
            delivered, a 429 ends a context the server is still working on (the
            ``context``-th of them, modulo their number), after ``after`` of its
            queued events.
        switches: Input numbers before which the settings change.
        interrupt_before: The input number before which the user interrupts.
    """
    drops = sorted(drops)
    errors = sorted(errors)
    switches = set(switches)
    inputs = 0

    def before_input() -> None:
        nonlocal inputs
        if inputs in switches:
            sim.switch_settings()
        if inputs == interrupt_before:
            sim.interrupt()
        inputs += 1

    def deliver(count: float) -> None:
        count = min(count, MAX_EVENTS)
        while count > 0 and sim.pending:
            count -= 1
            before_input()
            working = [c for c in sim.contexts.values() if c.queue and not c.dead]
            if drops and sim.chunks >= drops[0]:
                drops.pop(0)
                sim.drop()
            elif errors and sim.chunks >= errors[0][0] and working:
                _, which, after = errors.pop(0)
                sim.fail(working[which % len(working)].context_id, _BUSY, after=after)
            else:
                sim.step()

    for i, token in enumerate(tokens):
        before_input()
        sim.feed(token)
        deliver(pauses[i] if i < len(pauses) else 0)
        sim.tick_if_due()
    before_input()
    sim.end_input()
    deliver(float("inf"))
    assert not sim.pending, f"still busy after {MAX_EVENTS} events: the turn never settles"
    return inputs
