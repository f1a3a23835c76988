#
# Copyright (c) 2026, pipecat-cartesia-ctx contributors
#
# SPDX-License-Identifier: BSD 2-Clause License
#

"""One WebSocket connection to the emulator: reads requests, hosts contexts, sends events."""

from __future__ import annotations

import asyncio
import json
from collections import OrderedDict
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from loguru import logger
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from ..protocol import (
    CancelRequest,
    CartesiaAPIError,
    Chunk,
    ContextClosedError,
    Done,
    Error,
    FlushDone,
    InvalidRequestError,
    ServerEvent,
    Timestamps,
    event_to_wire,
    parse_request,
)
from ..protocol.wire import dumps
from .config import Behavior, InjectedError, Pacing
from .context import EmulatedContext
from .record import ConnectionRecord, ContextRecord, InputRecord
from .voice import SyntheticVoice

if TYPE_CHECKING:
    from .server import CartesiaEmulator

# Ids of finished contexts remembered per connection, to refuse input to them.
_FINISHED_MEMORY = 4096


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
        self._legacy_errors = legacy_errors
        self._contexts: dict[str, EmulatedContext] = {}
        # Every context task, including those of finished contexts that may still be
        # sending the rest of a cancelled segment: all end with the connection.
        self._tasks: set[asyncio.Task] = set()
        self._finished: OrderedDict[str, None] = OrderedDict()
        self._loop = asyncio.get_running_loop()
        self._last_activity = self._loop.time()
        self._stall_until = 0.0
        self._closing = False

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
        if abort:
            self._ws.transport.abort()
        else:
            self._loop.create_task(self._ws.close(code, reason))

    async def _on_message(self, raw: str | bytes) -> None:
        try:
            obj = json.loads(raw)
        except ValueError:
            await self._send_error(InvalidRequestError("request is not valid JSON"))
            return
        record: ContextRecord | None = None
        if isinstance(obj, dict) and isinstance(obj.get("context_id"), str):
            record = self._emu.record.open_context(obj["context_id"], self.record.number)
            record.requests.append(obj)
        try:
            message = parse_request(obj)
        except InvalidRequestError as e:
            await self._send_error(e, record)
            return
        if isinstance(message, CancelRequest):
            context = self._contexts.get(message.context_id)
            # Cancelling an unknown or finished context is ignored.
            if record is not None and context is not None and context.cancel():
                record.cancelled = True
                self._emu.record.changed()
            return
        context = self._contexts.get(message.context_id)
        try:
            if context is None:
                if message.context_id in self._finished:
                    raise ContextClosedError(
                        "context has finished; it accepts no more input",
                        context_id=message.context_id,
                    )
                self._emu.check_model(message.model_id)
                self._emu.acquire_slot()
                context = EmulatedContext(message, self, record)
                self._contexts[message.context_id] = context
            context.input(message)
        except CartesiaAPIError as e:
            e.context_id = message.context_id
            await self._send_error(e, record)
            if context is not None:
                context.fail()
            return
        record.inputs.append(InputRecord(message.kind, message.transcript))
        self._emu.record.changed()

    def context_finished(self, context: EmulatedContext) -> None:
        """Free the slot of a finished context and remember its id."""
        if self._contexts.pop(context.context_id, None) is None:
            return
        self._emu.release_slot()
        self._finished[context.context_id] = None
        while len(self._finished) > _FINISHED_MEMORY:
            self._finished.popitem(last=False)

    def start_task(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task:
        """Run a context's output task, owned by this connection."""
        task = self._loop.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _send_error(self, error: CartesiaAPIError, record: ContextRecord | None = None):
        await self._send(Error.from_exception(error, request_id=self.record.request_id), record)

    async def send(self, event: ServerEvent, context: EmulatedContext) -> None:
        """Send one event of a context, applying faults and recording it."""
        await self._send(event, context.record, context)

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
        wire = event_to_wire(event, legacy_errors=self._legacy_errors)
        try:
            await self._ws.send(dumps(wire))
        except ConnectionClosed:
            self._closing = True
            return
        self._touch()
        if record is not None:
            self._record_event(event, wire, record)
        if isinstance(event, Chunk):
            self.record.chunks_sent += 1
        self._emu.record.changed()
        if isinstance(event, Chunk) and context is not None:
            await self._after_chunk(context)

    @staticmethod
    def _record_event(event: ServerEvent, wire: dict, record: ContextRecord) -> None:
        record.events.append(event.type)
        if record.cancelled:
            record.events_after_cancel.append(event.type)
        if isinstance(event, Chunk):
            key = event.flush_id or 0
            record.audio_bytes[key] = record.audio_bytes.get(key, 0) + len(event.audio)
        elif isinstance(event, Timestamps):
            record.words.extend(event.words)
        elif isinstance(event, FlushDone):
            record.flush_done_ids.append(event.flush_id)
        elif isinstance(event, Done):
            record.done = True
        elif isinstance(event, Error):
            record.errors.append(wire)

    async def _after_chunk(self, context: EmulatedContext) -> None:
        faults, sent = self._emu.faults, self.record.chunks_sent
        if faults.take("malformed_after_chunks", sent):
            logger.debug("emulator fault: sending a malformed frame")
            await self._ws.send('{"type": "chunk", "context_id": ')
        if faults.take("error_after_chunks", sent):
            spec = faults.error or InjectedError()
            await self._send(
                Error(
                    context_id=context.context_id,
                    status_code=spec.status_code,
                    error_code=spec.error_code,
                    title=spec.title,
                    message=spec.message,
                    request_id=self.record.request_id,
                ),
                context.record,
            )
            context.fail()
        if faults.take("stall_after_chunks", sent):
            self._stall_until = self._loop.time() + faults.stall_ms / 1000.0
        if faults.take("close_after_chunks", sent):
            self.close_soon(faults.close_code, "emulator fault: close after chunks")
        if faults.take("drop_after_chunks", sent):
            logger.debug("emulator fault: dropping the connection")
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
                logger.debug(f"emulator: closing idle connection {self.record.request_id}")
                await self._ws.close(1000, "connection idle timeout")
                return
            await asyncio.sleep(remaining)
