#
# Copyright (c) 2026, pipecat-cartesia-ctx contributors
#
# SPDX-License-Identifier: BSD 2-Clause License
#

"""One context inside the emulator: buffering, flush numbering, paced generation, cancel.

Input handling is synchronous (it runs as each request is read) and only
queues work; one task per context turns the queue into messages, in input
order, at the configured pace. The shared `ContextState` decides what input is
legal, exactly as the client does.
"""

from __future__ import annotations

import asyncio
import functools
import math
import re
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..protocol import (
    DEFAULT_MAX_BUFFER_DELAY_MS,
    ContextPhase,
    ContextState,
    Done,
    FlushDone,
    GenerationRequest,
    PhonemeTimestamps,
    ServerEvent,
    Timestamps,
)
from ..protocol.events import chunk_prefix
from ..protocol.text import ends_sentence, period_context
from .chunktext import CHUNK_TEXTS
from .config import CancelBehavior
from .layout import Layout
from .pump import PIECE_WORDS as _PIECE_WORDS  # noqa: F401 (tests read it here)
from .pump import RENDER, ChunkPump, Piece, SpanCursor, chunk_bounds, prefetch
from .pump import pieces as _pieces

if TYPE_CHECKING:
    from .host import ContextHost
    from .record import ContextRecord

# Text is ready for generation at a sentence end followed by whitespace or by
# the end of the input received so far, or at a newline (protocol doc, 4.2;
# Cartesia: a chunk ending with terminal punctuation is treated as complete).
# A period with a next word known must end a sentence by the shared rule ("Dr.
# Smith" does not); with nothing after it yet, the server cannot wait to see,
# and speaks "Dr. " alone. Anything else waits for more text, a flush, a close
# or the buffer delay.
_READY = re.compile(r"[.!?](?=\s|$)|\n")
_SPACES = re.compile(r"\s*")
# Text kept from earlier generations, to judge a period near the start of the buffer.
_LOOKBACK = 64


@dataclass(frozen=True, slots=True, eq=False)
class _Segment:
    """Text released for generation: compared by identity, each is one generation."""

    text: str
    flush_id: int
    generation_config: Mapping[str, Any] | None
    released_at: float


@dataclass(frozen=True, slots=True)
class _FlushMark:
    flush_id: int


_END = object()
_STOP = object()


class EmulatedContext:
    """Server side of one Cartesia context.

    Parameters:
        state: The context's protocol state, its opening request already applied.
        host: The connection it lives on.
        record: Where to record what happens.
    """

    def __init__(self, state: ContextState, host: ContextHost, record: ContextRecord):
        assert state.opening is not None, "a context opens with its first request"
        self.state = state
        self.record = record
        self._host = host
        delay = state.opening.max_buffer_delay_ms
        self._delay_s = (DEFAULT_MAX_BUFFER_DELAY_MS if delay is None else delay) / 1000.0
        self._pending = ""
        self._before = "\n"  # the end of what was released before `_pending`
        self._timer: asyncio.TimerHandle | None = None
        self._jobs: asyncio.Queue[Any] = asyncio.Queue()
        self._upcoming: deque[_Segment] = deque()  # queued generations not yet taken
        self._flush_id = 1  # the server's numbering: manual and, at delay 0, implicit flushes
        self._generation_config: Mapping[str, Any] | None = None
        self._offset_samples = 0
        self._next_free = 0.0
        # The generation under way (taken from the queue, rendering or sending), and
        # the one that was under way when a cancel arrived: only that one goes on.
        self._current: _Segment | None = None
        self._cancelled_during: _Segment | None = None
        self._chunk_head = chunk_prefix(state.context_id).encode()
        # The layout `prefetch` made of the piece expected next: (its generation,
        # first sample, text, layout), so the piece is not laid out twice.
        self._ahead: tuple[_Segment, int, str, Layout] | None = None
        host.start_task(self._run(), name=f"emulator-context-{state.context_id}")

    @property
    def context_id(self) -> str:
        """The context's id."""
        return self.state.context_id

    # -- input (synchronous, in the order requests are read) ------------------

    def input(self, request: GenerationRequest) -> None:
        """Accept one more generation request.

        Raises:
            ContextClosedError: The context accepts no more input.
            ContextFieldChangedError: A locked field changed.
        """
        self.state.input(request)
        self.accept(request)

    def accept(self, request: GenerationRequest) -> None:
        """Buffer and schedule a request the context's state has accepted."""
        if request.generation_config is not None:
            self._generation_config = request.generation_config
        self._pending += request.transcript
        if self._delay_s == 0:
            self._release()  # custom buffering: every input is generated at once
        else:
            self._release_ready(len(request.transcript))
        # At delay 0 the real server treats each input with text as flushed: one
        # flush id per input (its own flush, if it carries one), none for the close.
        implicit = (
            self._delay_s == 0
            and self._host.behavior.implicit_flush
            and request.continue_
            and bool(request.transcript.strip())
        )
        if request.flush or implicit:
            self._release()
            self._flush()
        if not request.continue_:
            self._release()
            if self._host.behavior.flush_done_at_close:
                self._flush()
            self._jobs.put_nowait(_END)

    def cancel(self) -> bool:
        """Cancel: drop the text not yet begun, free the slot, finish as the behaviour says.

        Returns:
            False if the context had already finished.
        """
        if not self.state.cancel():
            return False
        self._pending = ""
        self._cancel_timer()
        self._cancelled_during = self._current
        self._jobs.put_nowait(_END)
        self._host.release(self)
        return True

    def fail(self) -> None:
        """End the context at once: its error event is the last thing sent for it.

        Also a cancelled context still finishing its generation: it stops there.
        """
        held_slot = not self.state.finished  # a cancelled context gave its slot back
        if self.state.fail():
            self._pending = ""
            self._cancel_timer()
            self._jobs.put_nowait(_STOP)
            if held_slot:
                self._host.release(self)

    def _release_ready(self, new: int) -> None:
        # Each ready sentence is a generation of its own, so a cancel stops at the
        # sentence being spoken, as it would on a server generating as text arrives.
        # Only the ``new`` characters at the end are looked at: the rest was, and
        # was not ready whatever follows.
        start = 0
        for match in _READY.finditer(self._pending, max(0, len(self._pending) - new - 1)):
            if match.group() == "." and not self._period_ends(match.start()):
                continue
            self._enqueue(self._pending[start : match.end()])
            start = match.end()
        self._pending = self._pending[start:]
        if not self._pending.strip():
            self._cancel_timer()
        elif self._timer is None:
            # Managed buffering: unready text waits at most the buffer delay.
            self._timer = asyncio.get_running_loop().call_later(self._delay_s, self._release)

    def _period_ends(self, dot: int) -> bool:
        following = _SPACES.match(self._pending, dot + 1).end()
        if following == len(self._pending):
            return True  # nothing known after it: a buffering server speaks now
        # Only the end of what precedes it: a copy per period of a long input
        # would cost the square of its length.
        start = max(0, dot - _LOOKBACK)
        text = (self._before if start == 0 else "") + self._pending[start : dot + 1]
        word, before = period_context(text, len(text) - 1)
        return ends_sentence(word, before, self._pending[following]) is not False

    def _release(self) -> None:
        self._cancel_timer()
        text, self._pending = self._pending, ""
        self._enqueue(text)

    def _enqueue(self, text: str) -> None:
        self._before = (self._before + text)[-_LOOKBACK:]
        if text.strip():
            self.record.generations.append(text)
            now = asyncio.get_running_loop().time()
            segment = _Segment(text, self._flush_id, self._generation_config, now)
            self._jobs.put_nowait(segment)
            self._upcoming.append(segment)

    def _flush(self) -> None:
        self._jobs.put_nowait(_FlushMark(self._flush_id))
        self._flush_id += 1

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # -- output (one task) ----------------------------------------------------

    def _may_send(self, segment: _Segment | None, in_flight: bool = False) -> bool:
        """Whether output of ``segment`` may still go out.

        Args:
            segment: The generation the output belongs to; None for output of
                no generation, which a cancel stops.
            in_flight: The output is the chunk that was being generated when
                the cancel arrived.
        """
        phase = self.state.phase
        if phase is ContextPhase.FAILED:
            return False
        if phase is not ContextPhase.CANCELLED:
            return True
        behavior = self._host.behavior.cancel
        if segment is None or segment is not self._cancelled_during:
            return False
        if behavior is CancelBehavior.FINISH_SEGMENT:
            return True
        return behavior is CancelBehavior.CHUNK_IN_FLIGHT and in_flight

    async def _run(self) -> None:
        try:
            while True:
                job = await self._jobs.get()
                if job is _STOP:
                    return
                if isinstance(job, _Segment):
                    self._upcoming.popleft()  # this one
                    if self._may_send(job):
                        await self._speak(job)
                elif isinstance(job, _FlushMark):
                    await self._flush_done(job)
                elif job is _END:
                    await self._end()
                    return
        finally:
            self._host.ended(self)

    async def _flush_done(self, mark: _FlushMark) -> None:
        # After a cancel, only the generation that was under way may still end with
        # its flush_done (and only if the behaviour lets it finish).
        owner = self._cancelled_during
        if owner is not None and owner.flush_id != mark.flush_id:
            owner = None
        if self._may_send(owner):
            await self._host.send(FlushDone(self.context_id, mark.flush_id), self)

    async def _end(self) -> None:
        if self.state.phase is ContextPhase.CANCELLED:
            if self._host.behavior.done_after_cancel:
                await self._host.send(Done(self.context_id), self)
            return
        if self.state.done():
            self._host.release(self)
            await self._host.send(Done(self.context_id), self)

    async def _speak(self, segment: _Segment) -> None:
        self._current = segment
        try:
            await self._generate(segment)
        finally:
            self._current = None

    async def _generate(self, segment: _Segment) -> None:
        # A long generation is rendered and sent piece by piece, as a streaming
        # server sends it: its first audio does not wait for all of it.
        pieces = _pieces(segment.text)
        for i, piece in enumerate(pieces):
            if not self._may_send(segment):
                return
            after = (pieces[i + 1], segment) if i + 1 < len(pieces) else None
            if after is None and self._upcoming:  # the next generation's first piece
                after = (_pieces(self._upcoming[0].text)[0], self._upcoming[0])
            await self._generate_piece(segment, piece, after)

    async def _generate_piece(
        self, segment: _Segment, text: str, after: tuple[str, _Segment] | None = None
    ) -> None:
        opening, pacing, loop = self.state.opening, self._host.pacing, asyncio.get_running_loop()
        rate = opening.output_format.sample_rate
        width = opening.output_format.bytes_per_sample
        first_sample = self._offset_samples
        layout, data = await self._render(segment, text, opening.output_format.encoding, rate)
        self._offset_samples += layout.samples
        if after is not None:
            next_text, owner = after
            encoding, config = opening.output_format.encoding, owner.generation_config
            offset = self._offset_samples
            ahead = prefetch(self._host.voice, next_text, rate, encoding, config, offset)
            self._ahead = None if ahead is None else (owner, offset, next_text, ahead)
        seconds_per_byte = 0.0 if math.isinf(pacing.speed) else 1.0 / (rate * width * pacing.speed)
        # Audio cannot go out before it is rendered: a slow render delays the start, it
        # never compresses the pacing into a burst.
        ready = segment.released_at + pacing.first_chunk_ms / 1000.0
        start = max(ready, self._next_free, loop.time())
        self._next_free = start + len(data) * seconds_per_byte
        bounds = chunk_bounds(len(data), rate, width, pacing)
        piece = Piece(
            segment,
            segment.flush_id,
            bounds,
            CHUNK_TEXTS.get(data, bounds),
            start,
            seconds_per_byte,
            first_sample,
            rate,
            width,
            spoken=SpanCursor(layout.words),
            words=SpanCursor(layout.words),
            phonemes=SpanCursor(layout.phonemes),
        )
        # The chunks go out from the pacer's timer while nothing needs waiting;
        # this loop sends the rest, if any, the same way with a task's waits.
        await ChunkPump(
            self,
            piece,
            self._host,
            self._may_send,
            self._after_chunk,
            self._next_mark,
            self._chunk_head,
        ).run()
        for i in range(piece.sent, len(piece.bounds)):
            if not piece.waiting and not self._may_send(segment):
                return
            await self._host.pacer.until(piece.due(i))
            piece.waiting = False
            if not self._may_send(segment, in_flight=True):
                return
            await self._host.send(piece.chunk(i, self.context_id), self)
            for event in self._after_chunk(piece, i):
                await self._host.send(event, self)
        for event in self._timing(piece, math.inf):
            await self._host.send(event, self)

    def _after_chunk(self, piece: Piece, i: int) -> Iterable[ServerEvent]:
        """Note the words heard once chunk ``i`` is sent; the timestamps events now due."""
        heard = piece.heard(i)
        # Most chunks end inside a word: nothing more to record or report.
        if piece.spoken.ready(heard):
            self.record.spoken.extend(span.text for span in piece.spoken.take(heard))
        opening = self.state.opening
        if (opening.add_timestamps and piece.words.ready(heard)) or (
            opening.add_phoneme_timestamps and piece.phonemes.ready(heard)
        ):
            return self._timing(piece, heard)
        return ()

    def _next_mark(self, piece: Piece) -> float:
        """Seconds of audio heard before which `_after_chunk` has nothing to note or send.

        The end of the next word (or phoneme, when asked for) not yet handed
        out: exactly where one of its cursors becomes ready.
        """
        opening = self.state.opening
        mark = piece.spoken.next_end
        if opening.add_timestamps:
            mark = min(mark, piece.words.next_end)
        if opening.add_phoneme_timestamps:
            mark = min(mark, piece.phonemes.next_end)
        return mark

    async def _render(
        self, segment: _Segment, text: str, encoding: str, rate: int
    ) -> tuple[Layout, bytes]:
        voice = self._host.voice
        lay_out = functools.partial(
            voice.layout,
            text,
            rate,
            offset_samples=self._offset_samples,
            generation_config=segment.generation_config,
        )
        ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead[:2] == (segment, self._offset_samples) and ahead[2] == text:
            layout = ahead[3]  # laid out ahead, exactly as here
        else:
            layout = lay_out(render=False)
        # A voice that must render to know where its words fall (espeak) says so
        # with None: it lays the piece out in a thread.
        if layout is None:
            layout = await asyncio.get_running_loop().run_in_executor(RENDER, lay_out)
        assert layout is not None  # rendering on: never None
        # Words heard before come from the voice's cache at once; rendering a new
        # one takes ~3 ms per audio second, so a piece with any goes to a thread,
        # where it does not hold up other contexts' chunks or the reading of cancels.
        data = voice.encode(layout, encoding, render=False)
        if data is None:
            encode = functools.partial(voice.encode, layout, encoding)
            data = await asyncio.get_running_loop().run_in_executor(RENDER, encode)
        assert data is not None  # rendering on: never None
        return layout, data

    def _timing(self, piece: Piece, until: float) -> Iterator[ServerEvent]:
        """The timestamps events of the words (and phonemes) whose audio is all sent.

        Lazy: each is made only while the context may still send, once the one
        before it has gone out.
        """
        wanted = (
            (self.state.opening.add_timestamps, piece.words, Timestamps),
            (self.state.opening.add_phoneme_timestamps, piece.phonemes, PhonemeTimestamps),
        )
        for asked, cursor, event in wanted:
            if not self._may_send(piece.segment):
                return
            asked = asked and self._host.behavior.timestamps
            if asked and (spans := cursor.take(until)):
                texts, starts, ends = zip(*((s.text, s.start, s.end) for s in spans), strict=True)
                yield event(self.context_id, texts, starts, ends, piece.flush_id)
