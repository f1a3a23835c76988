#
# Copyright (c) 2026, pipecat-cartesia-ctx contributors
#
# SPDX-License-Identifier: BSD 2-Clause License
#

"""One WebSocket connection to the emulator: reads requests, hosts contexts, sends events."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import OrderedDict
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from loguru import logger
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from ..protocol import (
    CancelRequest,
    CartesiaAPIError,
    Chunk,
    ContextClosedError,
    ContextPhase,
    ContextState,
    Error,
    GenerationRequest,
    InvalidRequestError,
    ServerEvent,
    api_error,
    encode_event,
    is_utf8,
    parse_request,
)
from ..protocol.wire import json_object
from .config import Behavior, InjectedError, Pacing
from .context import EmulatedContext
from .outbox import Outbox
from .pacer import Pacer
from .record import ConnectionRecord, ContextRecord, InputRecord
from .voice import SyntheticVoice

if TYPE_CHECKING:
    from .server import CartesiaEmulator

_OPEN = State.OPEN
# Ids of ended contexts remembered per connection, to answer input for them.
_ENDED_MEMORY = 4096


class Session:
    """Serves one connection; the emulator creates one per accepted socket.

    Parameters:
        emulator: The emulator (configuration, limits, record).
        ws: The accepted socket.
        record: The connection's record.
        legacy_errors: Send errors in the shape of versions before 2026-03-01.
    """

    def __init__(
        self,
        emulator: CartesiaEmulator,
        ws: ServerConnection,
        record: ConnectionRecord,
        legacy_errors: bool,
    ):
        self.record = record
        self._emu = emulator
        self._ws = ws
        self._outbox = Outbox(ws, emulator.pacer)
        self._protocol, self._transport = ws.protocol, ws.transport  # read for every chunk
        self._legacy_errors = legacy_errors
        # Contexts whose output task runs: open ones, and cancelled ones still
        # finishing the generation under way.
        self._contexts: dict[str, EmulatedContext] = {}
        # Every context task: all end with the connection.
        self._tasks: set[asyncio.Task] = set()
        # How each ended context ended, to answer input for it.
        self._ended: OrderedDict[str, ContextPhase] = OrderedDict()
        self._loop = asyncio.get_running_loop()
        self._last_activity = self._loop.time()
        self._stall_until = 0.0
        self._closing = False
        self._who = f"connection {record.number}"  # how its log lines begin

    # ContextHost: read live from the emulator so changes apply at once.
    @property
    def pacing(self) -> Pacing:
        """The emulator's current pacing."""
        return self._emu.pacing

    @property
    def behavior(self) -> Behavior:
        """The emulator's current protocol choices."""
        return self._emu.behavior

    @property
    def voice(self) -> SyntheticVoice:
        """The emulator's voice."""
        return self._emu.voice

    @property
    def pacer(self) -> Pacer:
        """The emulator's chunk timer, shared by all its connections."""
        return self._emu.pacer

    async def run(self) -> None:
        """Serve the connection until it closes, then free everything it held."""
        watchdog = self._loop.create_task(self._watch_idle(), name="emulator-idle-watchdog")
        try:
            async for raw in self._ws:
                self._touch()
                self.record.messages_received += 1
                await self._on_message(raw)
        except ConnectionClosed:
            pass
        finally:
            self._closing = True
            watchdog.cancel()
            for context in list(self._contexts.values()):
                context.cancel()
            tasks = [watchdog, *self._tasks]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.record.closed = True
            self.record.close_code = self._ws.close_code
            self.record.close_reason = self._ws.close_reason
            self._emu.record.changed()

    def close_soon(self, code: int, reason: str, abort: bool = False) -> None:
        """Close the socket (cleanly, or by aborting the TCP connection)."""
        self._outbox.flush()  # what was sent before goes first, as it would have
        if abort:
            self._ws.transport.abort()
        else:
            self._loop.create_task(self._ws.close(code, reason))

    # -- requests -------------------------------------------------------------

    async def _on_message(self, raw: str | bytes) -> None:
        received_at = time.monotonic()  # before parsing, which a huge transcript makes slow
        try:
            obj = dict(json_object(raw, InvalidRequestError, "request"))
        except InvalidRequestError as e:
            # Any JSON value, nesting too deep for the parser, or no JSON at all:
            # refused like any bad request, and the connection goes on.
            await self._refuse(e)
            return
        # Cartesia's own "basic" example sends no context_id: the request is then
        # a context of its own, under an id the server picks.
        if "context_id" not in obj:  # not setdefault: a uuid per request costs a syscall
            obj["context_id"] = f"emu-{uuid.uuid4().hex[:12]}"
        context_id = obj["context_id"]
        if not isinstance(context_id, str) or not is_utf8(context_id):
            context_id = None  # parse_request refuses it; an error must not echo it
        record = None
        if context_id:
            record = self._emu.record.open_context(context_id, self.record.number)
            record.requests.append(obj)
            ended = self._ended.get(context_id)
            if ended is ContextPhase.FAILED:
                # Nothing at all for a context after its error event.
                logger.debug(f"{self._who}: ignoring input for failed context {context_id}")
                return
            if ended is not None:
                # Cancelling a finished context is ignored; any other input is refused,
                # whatever fields it carries or leaves out.
                if obj.get("cancel") is not True:
                    await self._refuse(
                        ContextClosedError(
                            f"context has {ended.value}; it accepts no more input",
                            context_id=context_id,
                        )
                    )
                return
        context = self._contexts.get(context_id) if context_id else None
        try:
            message = parse_request(obj, context.state.opening if context else None)
            if isinstance(message, CancelRequest):
                self._cancel(message.context_id, context, record, received_at)
                return
            refused = self._emu.faults.refuse_transcripts_containing
            if refused and refused in message.transcript:
                raise InvalidRequestError(
                    "transcript refused (emulator fault)", title="Invalid transcript"
                )
            if context is None:
                context = self._open(message, record)
            else:
                context.input(message)
        except CartesiaAPIError as e:
            e.context_id = e.context_id or context_id
            await self._refuse(e, context)
            return
        logger.debug(
            f"{self._who}: context {message.context_id}: "
            f"{message.kind} of {len(message.transcript)} chars"
        )
        record.inputs.append(InputRecord(message.kind, message.transcript, received_at))
        self._emu.record.changed()

    def _open(self, message: GenerationRequest, record: ContextRecord) -> EmulatedContext:
        """Open a context with its first request; every check comes before the slot."""
        state = ContextState(message.context_id)
        state.input(message)
        self._emu.check_model(message.model_id)
        self._emu.acquire_slot()
        context = EmulatedContext(state, self, record)
        self._contexts[message.context_id] = context
        context.accept(message)
        fmt = message.output_format
        logger.debug(
            f"{self._who}: context {message.context_id} opened: {message.model_id}, {fmt.encoding} "
            f"{fmt.sample_rate} Hz, buffer delay {message.max_buffer_delay_ms}"
        )
        return context

    def _cancel(
        self,
        context_id: str,
        context: EmulatedContext | None,
        record: ContextRecord | None,
        received_at: float,
    ) -> None:
        # Cancelling an unknown or finished context is ignored.
        if context is None or record is None or not context.cancel():
            return
        record.cancelled, record.cancelled_at = True, received_at
        logger.debug(f"{self._who}: context {context_id} cancelled")
        self._emu.record.changed()

    async def _refuse(self, error: CartesiaAPIError, context: EmulatedContext | None = None):
        """Send an error event; it ends the context it names, which gets nothing after it."""
        if context is not None:
            error.context_id = context.context_id
            context.fail()  # before the send: none of its output may follow the error
        if error.context_id is not None:
            self._remember(error.context_id, ContextPhase.FAILED)
        logger.info(f"{self._who}: error event: {error}")
        record = self._emu.record.contexts.get(error.context_id) if error.context_id else None
        await self._send(Error.from_exception(error, request_id=self.record.request_id), record)
        if record is not None and record.outcome is None:
            record.outcome = "failed"  # refused before it had a task: it ends here
            self._emu.record.changed()

    # -- ContextHost ------------------------------------------------------------

    def release(self, context: EmulatedContext) -> None:
        """Free the concurrency slot of a context that just became done, cancelled or failed."""
        self._emu.release_slot()

    def ended(self, context: EmulatedContext) -> None:
        """Forget a context whose output task has ended, remembering how it ended."""
        if self._contexts.get(context.context_id) is context:
            del self._contexts[context.context_id]
            self._remember(context.context_id, context.state.phase)
        record = context.record
        # A task that ends before its context does would be a bug: report it as failed.
        record.outcome = context.state.phase.value if context.state.finished else "failed"
        self._emu.record.changed()
        logger.info(
            f"{self._who}: context {context.context_id} {context.state.phase.value}: "
            f"{len(record.inputs)} inputs, {record.total_audio_bytes} audio bytes, "
            f"{len(record.spoken)} words spoken, flush_done {record.flush_done_ids}"
        )

    def _remember(self, context_id: str, phase: ContextPhase) -> None:
        if self._ended.get(context_id) is ContextPhase.FAILED:
            return  # an error event is final
        self._ended[context_id] = phase
        self._ended.move_to_end(context_id)
        while len(self._ended) > _ENDED_MEMORY:
            self._ended.popitem(last=False)

    def start_task(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task:
        """Run a context's output task, owned by this connection."""
        task = self._loop.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def send(self, event: ServerEvent, context: EmulatedContext) -> None:
        """Send one event of a context, applying faults and recording it."""
        await self._send(event, context.record, context)

    # -- sending ----------------------------------------------------------------

    async def _send(
        self,
        event: ServerEvent,
        record: ContextRecord | None,
        context: EmulatedContext | None = None,
    ) -> None:
        if self._closing:
            return
        if self._stall_until > self._loop.time():
            await asyncio.sleep(self._stall_until - self._loop.time())
        if context is not None and context.state.phase is ContextPhase.FAILED:
            return  # its error event was its last (checked after any wait, just before sending)
        text = encode_event(event, legacy_errors=self._legacy_errors)
        if self._writable():
            # Written with whatever else of this turn of the loop: a segment's last
            # timestamps and its flush_done, say.
            self._outbox.add(text.encode())
        else:
            self._outbox.flush()  # in order: what the pacer's tick left goes first
            try:
                await self._ws.send(text)  # waits for the client to read, or reports the close
            except ConnectionClosed:
                self._closing = True
                return
        self._sent(event, record)
        if isinstance(event, Chunk) and context is not None:
            await self._after_chunk(context)

    def send_chunk_now(
        self,
        context: EmulatedContext,
        head: bytes,
        body: bytes,
        tail: bytes,
        flush_id: int | None,
        size: int,
        now: float,
    ) -> bool:
        """Send a chunk of a context at once, from the pacer's timer, if nothing must wait.

        The chunk's frame comes in parts (`protocol.chunk_prefix`, its base64
        audio, `protocol.chunk_suffix`), so no `Chunk` is made and its text is
        joined only with the rest of the tick's writes (`Outbox`).

        Args:
            context: The context (it may send: the caller checked).
            head: The frame's payload before the audio.
            body: The audio, base64.
            tail: The payload after the audio.
            flush_id: The chunk's flush id, for the record.
            size: Its bytes of audio, for the record.
            now: The loop's time (the pacer's wakeup's).

        Returns:
            False, sending nothing, when the task must send it instead: the
            connection closing, stalled or not reading, or a fault armed to fire
            after a number of chunks.
        """
        if (  # as `_writable`, inline: this runs for every chunk
            self._closing
            or self._ws.paused
            or self._stall_until > now
            or self._emu.faults.armed
            or self._protocol.state is not _OPEN
            or self._transport.is_closing()
        ):
            return False
        self._outbox.add_parts(head, body, tail)
        self._last_activity = now
        context.record.note_chunk(flush_id, size)
        self.record.chunks_sent += 1
        self._emu.record.changed()
        return True

    def send_now(self, event: ServerEvent, context: EmulatedContext) -> None:
        """Send one event of a context that follows a chunk `send_chunk_now` sent.

        It goes out with the chunk, even if the chunk filled the socket's buffer
        (a few hundred bytes past the mark; the next chunk waits).
        """
        if self._closing or context.state.phase is ContextPhase.FAILED:
            return
        self._outbox.add(encode_event(event, legacy_errors=self._legacy_errors).encode())
        self._sent(event, context.record)

    def flush(self) -> None:
        """Write what `send_chunk_now` and `send_now` queued, now."""
        self._outbox.flush()

    def _writable(self) -> bool:
        """Whether a message can be written without waiting: open, and the client reading.

        ``ws.send`` costs an async context manager and a drain check per
        message, and can only be awaited, not called from the pacer's timer;
        the `Outbox` does what it does on this common path. Anything else (the
        socket closing, the client not reading so the transport is paused) goes
        through ``ws.send``, which waits and reports it.
        """
        ws = self._ws
        return ws.protocol.state is State.OPEN and not ws.paused and not ws.transport.is_closing()

    def _sent(self, event: ServerEvent, record: ContextRecord | None) -> None:
        self._touch()
        if record is not None:
            record.note_sent(event, legacy_errors=self._legacy_errors)
        if isinstance(event, Chunk):
            self.record.chunks_sent += 1
        self._emu.record.changed()

    async def _after_chunk(self, context: EmulatedContext) -> None:
        faults, sent = self._emu.faults, self.record.chunks_sent
        if not faults.armed_after_chunks():
            return
        if faults.take("malformed_after_chunks", sent):
            logger.info(f"{self._who}: fault: sending a malformed frame")
            self._outbox.flush()
            await self._ws.send('{"type": "chunk", "context_id": ')
        if faults.take("error_after_chunks", sent):
            spec = faults.error or InjectedError()
            logger.info(f"{self._who}: fault: error event for context {context.context_id}")
            await self._refuse(
                api_error(
                    spec.message,
                    status_code=spec.status_code,
                    error_code=spec.error_code,
                    title=spec.title,
                ),
                context,
            )
        if faults.take("stall_after_chunks", sent):
            logger.info(f"{self._who}: fault: stalling for {faults.stall_ms:g} ms")
            self._stall_until = self._loop.time() + faults.stall_ms / 1000.0
        if faults.take("close_after_chunks", sent):
            logger.info(f"{self._who}: fault: closing with code {faults.close_code}")
            self.close_soon(faults.close_code, "emulator fault: close after chunks")
        if faults.take("drop_after_chunks", sent):
            logger.info(f"{self._who}: fault: dropping the connection")
            self._closing = True
            self.close_soon(1006, "", abort=True)

    def _touch(self) -> None:
        self._last_activity = self._loop.time()

    async def _watch_idle(self) -> None:
        timeout = self._emu.idle_timeout
        if timeout is None:
            return
        while True:
            remaining = self._last_activity + timeout - self._loop.time()
            if remaining <= 0:
                logger.info(f"{self._who}: closing idle connection {self.record.request_id}")
                self._outbox.flush()
                await self._ws.close(1000, "connection idle timeout")
                return
            await asyncio.sleep(remaining)
