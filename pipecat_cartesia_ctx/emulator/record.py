#
# Copyright (c) 2026, pipecat-cartesia-ctx contributors
#
# SPDX-License-Identifier: BSD 2-Clause License
#

"""What the emulator received and sent, per connection and per context, for tests to read."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from ..protocol import (
    CartesiaTimeoutError,
    Chunk,
    Done,
    Error,
    FlushDone,
    ServerEvent,
    Timestamps,
    event_to_wire,
)


@dataclass(frozen=True, slots=True)
class InputRecord:
    """One generation request as received.

    Parameters:
        kind: ``"push"``, ``"flush"`` or ``"close"``.
        transcript: Its text (possibly empty).
        received_at: When the emulator read it off the socket, in
            ``time.monotonic()`` seconds, so that an emulator embedded in a
            program can be put on that program's own timeline.
    """

    kind: Literal["push", "flush", "close"]
    transcript: str
    received_at: float


@dataclass
class ContextRecord:
    """Everything the emulator saw and did for one context.

    Parameters:
        context_id: The context.
        connection: The `ConnectionRecord.number` of the connection it was opened on.
        requests: Every request for the context, as decoded JSON, in order.
        inputs: Generation requests, in order.
        generations: The text of each generation, in order: what the server
            buffered and then spoke as one piece (a sentence it found, what a
            flush, the close or the buffer delay released). Prosody does not
            cross from one to the next, so ``"Dr."`` alone here is a defect.
        cancelled: A cancel was received.
        cancelled_at: When the emulator read that cancel, in ``time.monotonic()``
            seconds (see `InputRecord.received_at`); None without a cancel.
        done: ``done`` was sent.
        audio_bytes: Bytes of audio sent, by flush id.
        words: Words reported in timestamps, in order.
        spoken: Words whose audio was sent in full, in order, whether or not
            timestamps were asked for: what a listener of the context heard.
        flush_done_ids: Ids of the ``flush_done`` events sent, in order.
        errors: Error events sent, as wire objects.
        events_after_cancel: Messages sent after the cancel arrived.
        outcome: How the context ended once nothing more will be sent for it:
            ``"done"``, ``"cancelled"`` or ``"failed"``; None while it runs.
    """

    context_id: str
    connection: int
    requests: list[dict[str, Any]] = field(default_factory=list)
    inputs: list[InputRecord] = field(default_factory=list)
    generations: list[str] = field(default_factory=list)
    cancelled: bool = False
    cancelled_at: float | None = None
    done: bool = False
    audio_bytes: dict[int, int] = field(default_factory=dict)
    words: list[str] = field(default_factory=list)
    spoken: list[str] = field(default_factory=list)
    flush_done_ids: list[int] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    events_after_cancel: list[str] = field(default_factory=list)
    outcome: Literal["done", "cancelled", "failed"] | None = None
    # `events`, compact: a context sends ~25 chunks per second of audio, so a
    # run of chunks is one count, and the count of the run going on is apart.
    _kinds: list[str | int] = field(default_factory=list, init=False, repr=False)
    _chunk_run: int = field(default=0, init=False, repr=False)

    def note_sent(self, event: ServerEvent, *, legacy_errors: bool = False) -> None:
        """Record one event sent for the context.

        Args:
            event: The event.
            legacy_errors: The connection sends errors in the shape of versions
                before 2026-03-01 (an error is kept as its wire object).
        """
        if isinstance(event, Chunk):
            self.note_chunk(event.flush_id, len(event.audio))
            return
        if self._chunk_run:
            self._kinds.append(self._chunk_run)
            self._chunk_run = 0
        self._kinds.append(event.type)
        if self.cancelled:
            self.events_after_cancel.append(event.type)
        if isinstance(event, Timestamps):
            self.words.extend(event.words)
        elif isinstance(event, FlushDone):
            self.flush_done_ids.append(event.flush_id)
        elif isinstance(event, Done):
            self.done = True
        elif isinstance(event, Error):
            self.errors.append(event_to_wire(event, legacy_errors=legacy_errors))

    def note_chunk(self, flush_id: int | None, size: int) -> None:
        """Record one chunk sent for the context (`note_sent`, without making the event).

        Args:
            flush_id: Its flush id.
            size: Its bytes of audio.
        """
        self._chunk_run += 1
        if self.cancelled:
            self.events_after_cancel.append("chunk")
        key = flush_id or 0
        self.audio_bytes[key] = self.audio_bytes.get(key, 0) + size

    @property
    def events(self) -> list[str]:
        """Types of the messages sent, in order (``"chunk"``, ``"timestamps"``, ``"done"``...)."""
        events: list[str] = []
        for kind in (*self._kinds, self._chunk_run):
            if isinstance(kind, int):
                events += ("chunk",) * kind
            else:
                events.append(kind)
        return events

    @property
    def transcript(self) -> str:
        """Every input's text, concatenated verbatim as the server reads it."""
        return "".join(i.transcript for i in self.inputs)

    @property
    def spoken_text(self) -> str:
        """The words whose audio was sent in full, joined by single spaces."""
        return " ".join(self.spoken)

    @property
    def pushes(self) -> list[str]:
        """Texts of the non-empty inputs, in order."""
        return [i.transcript for i in self.inputs if i.transcript]

    @property
    def flushes(self) -> int:
        """Manual flushes received."""
        return sum(i.kind == "flush" for i in self.inputs)

    @property
    def closed(self) -> bool:
        """A ``continue: false`` input was received."""
        return any(i.kind == "close" for i in self.inputs)

    @property
    def total_audio_bytes(self) -> int:
        """All audio bytes sent for the context."""
        return sum(self.audio_bytes.values())


@dataclass
class ConnectionRecord:
    """One accepted WebSocket connection.

    Parameters:
        number: Its number, counting connections from 0 over the emulator's life.
        request_id: The id the emulator gave it (sent in error events).
        path: The request path, query included.
        cartesia_version: The version asked for (query wins over header).
        auth: How the client authenticated: ``"x-api-key"``, ``"bearer"``,
            ``"api_key"`` or ``"access_token"``.
        user_agent: The client's User-Agent header.
        messages_received: Text frames received.
        chunks_sent: Chunks sent.
        close_code: Close code, once closed.
        close_reason: Close reason, once closed.
        closed: The connection has closed and everything it held is freed.
    """

    number: int
    request_id: str
    path: str
    cartesia_version: str | None
    auth: str | None
    user_agent: str | None = None
    messages_received: int = 0
    chunks_sent: int = 0
    close_code: int | None = None
    close_reason: str | None = None
    closed: bool = False


class EmulatorRecord:
    """The emulator's record of connections and contexts, with a way to await changes.

    Parameters:
        limit: Contexts kept; the oldest are forgotten beyond it, so a
            long-running emulator does not grow without bound.
    """

    def __init__(self, limit: int = 1000):
        self.limit = limit
        self.contexts: OrderedDict[str, ContextRecord] = OrderedDict()
        self.connections: list[ConnectionRecord] = []
        self.rejected_connections: list[tuple[int, str]] = []
        # Made when someone waits: the emulator reports a change for every chunk.
        self._changed: asyncio.Event | None = None

    def context(self, context_id: str) -> ContextRecord:
        """The record of one context.

        Raises:
            KeyError: If the emulator never saw the context (or forgot it).
        """
        return self.contexts[context_id]

    def spoken(self) -> list[str]:
        """What each context spoke, in the order the contexts were opened.

        Returns:
            For each context that received input, the words whose audio was
            sent in full, joined by spaces (a cancelled context shows what was
            heard before the cut).
        """
        return [c.spoken_text for c in self.contexts.values() if c.inputs]

    def transcripts(self) -> list[str]:
        """The text each context received, concatenated verbatim, in the order opened."""
        return [c.transcript for c in self.contexts.values() if c.inputs]

    async def settled(self, contexts: int = 1, timeout: float = 5.0) -> None:
        """Wait until at least ``contexts`` contexts were opened and every one has ended.

        Ended means it sent its last event (``done``, an error, or the rest of a
        cancelled generation). Contexts not yet seen by the emulator cannot be
        waited for: say how many you expect.

        Args:
            contexts: How many contexts must have received input.
            timeout: Seconds to wait at most.

        Raises:
            CartesiaTimeoutError: If that does not happen in time.
        """

        def ended(record: EmulatorRecord) -> bool:
            opened = [c for c in record.contexts.values() if c.inputs]
            return len(opened) >= contexts and all(c.outcome is not None for c in opened)

        await self.wait_for(ended, timeout)

    def clear(self) -> None:
        """Forget everything recorded so far (open connections keep counting)."""
        self.contexts.clear()
        self.rejected_connections.clear()
        self.changed()

    def open_context(self, context_id: str, connection: int) -> ContextRecord:
        """The record of a context, created on first sight.

        Context ids are per connection: an id seen again on another connection
        is another context, and its record replaces the earlier one.
        """
        record = self.contexts.get(context_id)
        if record is None or record.connection != connection:
            self.contexts.pop(context_id, None)
            record = self.contexts[context_id] = ContextRecord(context_id, connection)
            while len(self.contexts) > self.limit:
                self.contexts.popitem(last=False)
        return record

    def open_connection(self, record: ConnectionRecord) -> None:
        """Add a connection, forgetting the oldest beyond the limit."""
        self.connections.append(record)
        del self.connections[: -self.limit]
        self.changed()

    def changed(self) -> None:
        """Wake everyone waiting in `wait_for`."""
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    async def wait_for(
        self, predicate: Callable[[EmulatorRecord], bool], timeout: float = 5.0
    ) -> None:
        """Wait until ``predicate(record)`` holds.

        Args:
            predicate: Checked now and after every change to the record.
            timeout: Seconds to wait at most.

        Raises:
            CartesiaTimeoutError: If it does not hold in time.
        """
        try:
            async with asyncio.timeout(timeout):
                while not predicate(self):
                    if self._changed is None:
                        self._changed = asyncio.Event()
                    await self._changed.wait()
        except TimeoutError:
            raise CartesiaTimeoutError(
                f"emulator record did not reach the expected state in {timeout} s"
            ) from None
