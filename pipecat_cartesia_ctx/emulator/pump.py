#
# Copyright (c) 2026, pipecat-cartesia-ctx contributors
#
# SPDX-License-Identifier: BSD 2-Clause License
#

"""How a generation's audio goes out: cut into pieces, each piece in chunks, words as heard.

A context's task awaiting a timer and a send for every chunk costs a task
switch through its whole chain of coroutines each time; at 25 chunks per audio
second, with words from the cache, that was a third of the emulator's work.
`ChunkPump` sends a piece's chunks
straight from the shared pacer's timer instead, and gives the rest back to the
task as soon as something needs waiting (a stall, a fault to fire, a client not
reading, a cancel): the task then goes on exactly as it would have. `prefetch`
renders the next piece's new words while the current one plays.

What every chunk of a piece shares is worked out once per piece (`Piece`):
when each is due, how much of the context a listener has heard after it, the
end of its frame's text; a chunk costs its base64 and a few comparisons, and
the words' bookkeeping runs only at the chunks where a word ends.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from loguru import logger

from ..protocol import Chunk, ContextPhase, ServerEvent
from ..protocol.events import chunk_suffix
from ..protocol.text import tag_end
from .chunktext import ChunkTexts
from .config import Pacing
from .layout import Layout, Span
from .voices import Voice

# Renders ahead of time (`prefetch`), one at a time, for every emulator in the process.
_AHEAD = ThreadPoolExecutor(max_workers=1, thread_name_prefix="emulator-render-ahead")
# Renders a first chunk waits for, one at a time: more threads would not render
# faster (the voice's numpy work and espeak hold the GIL or a lock for much of
# it), but would take the GIL from the event loop, which sends every stream's
# chunks, each time one of its writes lets go of it.
RENDER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="emulator-render")
# A generation longer than this many words is rendered and sent piece by piece.
PIECE_WORDS = 120
_SPACE_OR_TAG = re.compile(r"\s+|<")

if TYPE_CHECKING:
    from .host import ContextHost


@functools.lru_cache(maxsize=1024)  # a context asks twice; a fleet of bots, over and over
def pieces(text: str) -> tuple[str, ...]:
    """``text`` in pieces of about `PIECE_WORDS` words, cut at whitespace outside tags."""
    out: list[str]
    out, start, words, tagged = [], 0, 0, 0  # tagged: the end of the last tag seen
    for match in _SPACE_OR_TAG.finditer(text):
        if match.group() == "<":
            if match.start() >= tagged:
                tagged = tag_end(text, match.start()) or tagged  # None: a literal "<"
            continue
        words += 1
        if words < PIECE_WORDS or match.start() < tagged:
            continue  # too short yet, or inside a tag ("<break time=...", "<spell>A B</spell>")
        out.append(text[start : match.end()])
        start, words = match.end(), 0
    return (*out, text[start:]) if start < len(text) or not out else tuple(out)


def prefetch(
    voice: Voice,
    text: str,
    rate: int,
    encoding: str,
    generation_config: Mapping[str, Any] | None,
    offset_samples: int = 0,
) -> Layout | None:
    """Render the new words of the piece that comes next, in a worker thread, now.

    A piece is rendered as the one before it sends its last chunk, so a piece
    with words never heard would start late by its render time; rendered while
    the one before plays, it comes from the cache. Only the cache changes: what
    is sent is the same.

    Args:
        voice: The voice.
        text: The next piece's text.
        rate: Sample rate.
        encoding: Encoding.
        generation_config: The next piece's generation config.
        offset_samples: Samples of the context before the next piece.

    Returns:
        The next piece's layout at ``offset_samples``, to be used when its turn
        comes; None when the voice must render to lay it out.
    """
    layout = voice.layout(
        text,
        rate,
        offset_samples=offset_samples,
        generation_config=generation_config,
        render=False,
    )
    if layout is None or not voice.cached(layout, encoding):
        # One thread of its own: rendering ahead never delays a render that a
        # first chunk waits for (those go to the loop's default executor).
        render = functools.partial(_render, voice, layout, text, rate, encoding, generation_config)
        done = asyncio.get_running_loop().run_in_executor(_AHEAD, render)
        done.add_done_callback(_report_failure)
    return layout


def _render(
    voice: Voice,
    layout: Layout | None,
    text: str,
    rate: int,
    encoding: str,
    generation_config: Mapping[str, Any] | None,
) -> None:
    if layout is None:  # the voice renders to lay out (espeak): that is the rendering
        layout = voice.layout(text, rate, generation_config=generation_config)
    assert layout is not None  # rendering on: never None
    voice.encode(layout, encoding)


def _report_failure(done: asyncio.Future) -> None:
    if not done.cancelled() and (error := done.exception()) is not None:
        # The piece renders again when its turn comes, and fails there if it must.
        logger.warning(f"emulator: rendering ahead failed: {error!r}")


class SpanCursor:
    """Hands out spans in order, each once, as their audio is sent."""

    def __init__(self, spans: list[Span]):
        self._spans = spans
        self._next = 0

    def ready(self, until: float) -> bool:
        """Whether `take` would hand out a span now."""
        return self._next < len(self._spans) and self._spans[self._next].end <= until + 1e-9

    @property
    def next_end(self) -> float:
        """The end of the next span to hand out; infinite when none is left."""
        return self._spans[self._next].end if self._next < len(self._spans) else math.inf

    def take(self, until: float) -> list[Span]:
        """The spans not yet taken that end at or before ``until`` seconds."""
        end = self._next
        while end < len(self._spans) and self._spans[end].end <= until + 1e-9:
            end += 1
        taken, self._next = self._spans[self._next : end], end
        return taken


def chunk_bounds(total: int, rate: int, width: int, pacing: Pacing) -> tuple[tuple[int, int], ...]:
    """Byte ranges of the chunks of ``total`` bytes of audio."""
    return _chunk_bounds(total, rate, width, pacing.chunk_ms, pacing.unaligned_chunks)


@functools.lru_cache(maxsize=1024)  # pieces of a length, cut alike, come again and again
def _chunk_bounds(
    total: int, rate: int, width: int, chunk_ms: float, unaligned: bool
) -> tuple[tuple[int, int], ...]:
    size = max(1, round(chunk_ms / 1000.0 * rate)) * width
    cuts = list(range(size, total, size))
    if unaligned and width > 1:
        # Move every other cut off the sample grid, as the real server may.
        cuts = [c + 1 if i % 2 == 0 else c for i, c in enumerate(cuts)]
    return tuple((a, b) for a, b in itertools.pairwise([0, *cuts, total]) if b > a)


@dataclass
class Piece:
    """One rendered piece of a generation, and how far its output has gone.

    Parameters:
        segment: The generation it belongs to.
        flush_id: The generation's flush id.
        bounds: Byte ranges of its chunks.
        audio: Its audio, and each chunk's base64 text (`ChunkTexts`).
        start: Loop time its first chunk is due.
        seconds_per_byte: Wall seconds per byte of audio at the pacing's speed.
        first_sample: Samples of the context before the piece.
        rate: Sample rate.
        width: Bytes per sample.
        spoken: Words heard (their audio sent in full), for the record.
        words: Words reported in timestamps.
        phonemes: Phonemes reported in timestamps.
    """

    segment: Any
    flush_id: int
    bounds: Sequence[tuple[int, int]]
    audio: ChunkTexts
    start: float
    seconds_per_byte: float
    first_sample: int
    rate: int
    width: int
    spoken: SpanCursor
    words: SpanCursor
    phonemes: SpanCursor
    sent: int = field(default=0)  # chunks sent so far
    # The next chunk's wait has begun, the context allowed to send when it did:
    # a cancel arriving during the wait leaves it in flight.
    waiting: bool = field(default=False)
    # Worked out once for all the chunks (`ChunkPump`): when each is due, how
    # much of the context is heard once it is in, the end of its frame's text.
    dues: list[float] = field(init=False, repr=False)
    heard_s: list[float] = field(init=False, repr=False)
    tails: list[bytes] = field(init=False, repr=False)

    def __post_init__(self):
        start, spb, first, width, rate = (
            self.start,
            self.seconds_per_byte,
            self.first_sample,
            self.width,
            self.rate,
        )
        self.dues = [start + a * spb for a, _ in self.bounds]
        self.heard_s = [(first + b // width) / rate for _, b in self.bounds]
        by_size: dict[int, bytes] = {}  # one or two sizes: a text each
        self.tails = [
            by_size.get(b - a) or by_size.setdefault(b - a, self._tail(b - a))
            for a, b in self.bounds
        ]

    def due(self, i: int) -> float:
        """Loop time chunk ``i`` is due."""
        return self.dues[i]

    def _tail(self, size: int) -> bytes:
        """The text after the audio in the frame of a chunk of ``size`` bytes (`chunk_suffix`)."""
        return chunk_suffix(self.flush_id, self._step_ms(size)).encode()

    def _step_ms(self, size: int) -> float:
        return round(size * self.seconds_per_byte * 1000.0, 3)

    def chunk(self, i: int, context_id: str) -> Chunk:
        """Chunk ``i``'s event."""
        begin, end = self.bounds[i]
        audio = self.audio.data[begin:end]
        return Chunk(context_id, audio, self.flush_id, step_time=self._step_ms(end - begin))

    def heard(self, i: int) -> float:
        """Seconds of the context's audio a listener has once chunk ``i`` is in."""
        return self.heard_s[i]


_CANCELLED, _FAILED = ContextPhase.CANCELLED, ContextPhase.FAILED


class ChunkPump:
    """Sends a piece's chunks from the pacer's timer until something needs the task.

    Parameters:
        context: The context (an `EmulatedContext`).
        piece: The piece, its ``sent`` count where the pump starts.
        host: The connection.
        may_send: ``may_send(segment, in_flight)``: whether the context may
            still send a chunk of the piece (`EmulatedContext._may_send`).
        after_chunk: The events that follow chunk ``i`` (its timestamps).
        next_mark: Seconds of the context's audio before which ``after_chunk``
            has nothing to do (the end of the next word or phoneme to note).
        head: The context's chunk frames' text before the audio (`chunk_prefix`).
    """

    def __init__(
        self,
        context: Any,
        piece: Piece,
        host: ContextHost,
        may_send: Callable[[Any, bool], bool],
        after_chunk: Callable[[Piece, int], Iterable[ServerEvent]],
        next_mark: Callable[[Piece], float],
        head: bytes,
    ):
        self._context = context
        self._piece = piece
        self._host = host
        self._may_send = may_send
        self._after_chunk = after_chunk
        self._next_mark = next_mark
        self._mark = next_mark(piece)
        self._head = head
        self._loop = asyncio.get_running_loop()
        self._done: asyncio.Future[None] = self._loop.create_future()
        self._pacer = host.pacer
        self._wake = self._step  # one bound method for every wait, not one per chunk
        # What each step reads, fetched once (a step sends one chunk, most of the time).
        self._fixed = (piece, context, context.state, may_send, host.send_chunk_now, head)
        self._fixed_piece = (
            piece.segment,
            piece.flush_id,
            piece.bounds,
            piece.dues,
            piece.heard_s,
            piece.tails,
            piece.audio,
            piece.audio.texts,
        )

    async def run(self) -> None:
        """Send chunks until the piece is out or the task must take over (``piece.sent`` says)."""
        self._step(self._loop.time())
        self._host.flush()  # called from the task, not a tick: what it sent goes now
        # Cancelled (the connection closed): the future is done, the next step does nothing.
        await self._done

    def _step(self, now: float | None = None) -> None:
        # The same steps, in the same order, as the task's loop in `EmulatedContext`,
        # which takes over (and checks again) wherever this one stops. A context
        # neither cancelled nor failed may send: ``may_send`` is asked only then.
        if self._done.done():
            return
        if now is None:
            # The pacer's call. Its wakeup's time is when the pacer woke, a little
            # earlier than now: a chunk due in between waits for the next wakeup,
            # never goes early, and no clock is read per chunk.
            now = self._pacer.now
        try:
            piece, context, state, may_send, send, head = self._fixed
            segment, flush_id, bounds, dues, heard, tails, audio, texts = self._fixed_piece
            i, count = piece.sent, len(bounds)
            while i < count:
                if not piece.waiting:
                    phase = state.phase
                    if (phase is _CANCELLED or phase is _FAILED) and not may_send(segment, False):
                        break
                    piece.waiting = True
                due = dues[i]
                if due > now:
                    self._pacer.call_at(due, self._wake)
                    return
                phase = state.phase
                stopped = phase is _CANCELLED or phase is _FAILED
                if stopped and not may_send(segment, True):
                    break
                begin, end = bounds[i]
                text = texts[i] or audio.text(i)  # made by the first context to send it
                if not send(context, head, text, tails[i], flush_id, end - begin, now):
                    break
                i += 1
                # The next chunk's wait begins now, as the check above would have
                # said at once for a context neither cancelled nor failed.
                piece.sent, piece.waiting = i, not stopped
                if self._mark <= heard[i - 1] + 1e-9:  # a word (or phoneme) ends in this chunk
                    for event in self._after_chunk(piece, i - 1):
                        self._host.send_now(event, context)
                    self._mark = self._next_mark(piece)
        except Exception as e:  # the task awaiting the pump raises it
            self._done.set_exception(e)
            return
        self._done.set_result(None)
