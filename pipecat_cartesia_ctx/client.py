#
# Copyright (c) 2026, pipecat-cartesia-ctx contributors
#
# SPDX-License-Identifier: BSD 2-Clause License
#

"""Asyncio client for Cartesia's TTS WebSocket contexts API.

`CartesiaConnection` owns one socket and one reader task that routes every
event to its context by ``context_id``. Events of unknown, cancelled or
finished contexts are dropped and counted, never handed to another context.
When the socket closes, every context still waiting ends at once with a
`CartesiaConnectionError`: nothing hangs.

Usable on its own, like the official SDK::

    async with await CartesiaConnection.connect(api_key=KEY) as conn:
        ctx = conn.context(model_id="sonic-3", voice=VOICE_ID, output_format=FORMAT)
        await ctx.push("Stay hungry, ")
        flush_id = await ctx.flush()
        await ctx.push("stay foolish.")
        await ctx.no_more_inputs()
        async for event in ctx.receive():
            ...
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
import weakref
from collections import Counter, OrderedDict, deque
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from loguru import logger
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from .protocol import (
    DEFAULT_CARTESIA_VERSION,
    DEFAULT_URL,
    CancelRequest,
    CartesiaConnectionError,
    CartesiaTimeoutError,
    ConcurrentReceiveError,
    ContextPhase,
    ContextState,
    Done,
    Error,
    GenerationRequest,
    InvalidRequestError,
    OutputFormat,
    ProtocolError,
    ServerEvent,
    UnknownEvent,
    api_error,
    normalize_voice,
    parse_event,
    validate_generation_config,
)
from .redact import RedactingLoggerAdapter, redact

# Finished context ids remembered per connection, to tell stale events from unknown ones.
_FINISHED_MEMORY = 4096

# Drop reasons counted in `CartesiaConnection.dropped`.
DROP_UNKNOWN_CONTEXT = "unknown_context"
DROP_CANCELLED_CONTEXT = "cancelled_context"
DROP_FINISHED_CONTEXT = "finished_context"
DROP_MALFORMED = "malformed"
DROP_UNKNOWN_TYPE = "unknown_type"

_CANCELLED = object()

# The logger websockets uses by default, so the user's logging config for it still applies.
_WEBSOCKETS_LOGGER = logging.getLogger("websockets.client")


def _redact(url: str) -> str:
    """The URL without its query string, where a key might have been put."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


class CartesiaConnection:
    """One WebSocket to Cartesia, carrying any number of contexts at once.

    Create it with `connect`. The API key is sent in a header only; it is not
    logged, nor shown in ``repr`` or in error texts.

    Parameters:
        ws: The open socket.
        url: The URL it was opened on.
        cartesia_version: The ``Cartesia-Version`` sent.
    """

    def __init__(self, ws: ClientConnection, *, url: str, cartesia_version: str):
        self.url = _redact(url)
        self.cartesia_version = cartesia_version
        self.dropped: Counter[str] = Counter()
        self.errors: deque[Error] = deque(maxlen=100)
        self._ws = ws
        self._contexts: dict[str, CartesiaContext] = {}
        self._finished: OrderedDict[str, str] = OrderedDict()
        self._closed_error: CartesiaConnectionError | None = None
        self._reader = asyncio.get_running_loop().create_task(
            self._read(), name="cartesia-connection-reader"
        )

    @classmethod
    async def connect(
        cls,
        api_key: str,
        url: str = DEFAULT_URL,
        *,
        cartesia_version: str = DEFAULT_CARTESIA_VERSION,
        extra_headers: Mapping[str, str] | None = None,
        open_timeout: float = 10.0,
    ) -> CartesiaConnection:
        """Open a connection.

        Args:
            api_key: Cartesia API key, sent as ``X-API-Key``.
            url: The TTS WebSocket URL (``emu.url`` for the emulator).
            cartesia_version: API version, sent as ``Cartesia-Version``.
            extra_headers: More headers for the handshake.
            open_timeout: Seconds allowed for the opening handshake.

        Returns:
            The open connection.

        Raises:
            AuthenticationError: The key was refused (HTTP 401).
            RateLimitError: Too many sockets (HTTP 429).
            CartesiaAPIError: Another HTTP status on the upgrade.
            CartesiaConnectionError: The server could not be reached.
        """
        headers = {"X-API-Key": api_key, "Cartesia-Version": cartesia_version}
        headers.update(extra_headers or {})
        where = _redact(url)
        try:
            ws = await ws_connect(
                url,
                additional_headers=headers,
                open_timeout=open_timeout,
                # Base64 audio compresses poorly for the CPU it costs; latency matters more.
                compression=None,
                max_size=16 * 2**20,
                # websockets logs each handshake header at DEBUG, X-API-Key included.
                logger=RedactingLoggerAdapter(_WEBSOCKETS_LOGGER, secrets=(api_key,)),
            )
        except InvalidStatus as e:
            raise _upgrade_error(e, where) from None
        except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as e:
            # Some errors quote the URL, query and all, or a header.
            detail = redact(str(e).replace(url, where), (api_key,))
            raise CartesiaConnectionError(
                f"cannot connect to {where}: {type(e).__name__}: {detail}"
            ) from None
        logger.debug(f"Connected to Cartesia at {where} (version {cartesia_version})")
        return cls(ws, url=url, cartesia_version=cartesia_version)

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return (
            f"CartesiaConnection(url={self.url!r}, cartesia_version={self.cartesia_version!r}, "
            f"{state}, contexts={len(self._contexts)})"
        )

    async def __aenter__(self) -> CartesiaConnection:
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.close()

    @property
    def closed(self) -> bool:
        """True once the socket has closed, for whatever reason."""
        return self._closed_error is not None

    @property
    def close_code(self) -> int | None:
        """The close code, once closed."""
        return self._closed_error.close_code if self._closed_error else None

    @property
    def close_reason(self) -> str | None:
        """The close reason, once closed."""
        return self._closed_error.close_reason if self._closed_error else None

    async def close(self) -> None:
        """Close the socket; contexts still waiting end with `CartesiaConnectionError`."""
        await self._ws.close()
        await self._reader

    async def wait_closed(self) -> None:
        """Wait until the socket has closed (by either side)."""
        await asyncio.shield(self._reader)

    def context(
        self,
        *,
        model_id: str,
        voice: str | Mapping[str, Any],
        output_format: OutputFormat | Mapping[str, Any],
        language: str | None = None,
        add_timestamps: bool = False,
        add_phoneme_timestamps: bool = False,
        use_normalized_timestamps: bool | None = None,
        max_buffer_delay_ms: int | None = None,
        generation_config: Mapping[str, Any] | None = None,
        pronunciation_dict_id: str | None = None,
        context_id: str | None = None,
    ) -> CartesiaContext:
        """Create a context on this connection; nothing is sent until its first input.

        Args:
            model_id: E.g. ``"sonic-3"``.
            voice: A voice id, or ``{"mode": "id", "id": ...}``.
            output_format: An `OutputFormat` or its wire object.
            language: Language code, e.g. ``"en"``.
            add_timestamps: Ask for word timestamps.
            add_phoneme_timestamps: Ask for phoneme timestamps.
            use_normalized_timestamps: Normalized or as-sent words.
            max_buffer_delay_ms: Server buffering, 0..5000; None keeps the
                server default (3000). 0 generates each input at once.
            generation_config: Default ``{"volume", "speed", "emotion"}`` of inputs.
            pronunciation_dict_id: Pronunciation dictionary.
            context_id: The id; a fresh UUID when None.

        Returns:
            The context.

        Raises:
            InvalidRequestError: A parameter is invalid or the id is in use.
            CartesiaConnectionError: The connection is closed.
        """
        self._check_open()
        context_id = context_id if context_id is not None else str(uuid.uuid4())
        if context_id in self._contexts or context_id in self._finished:
            raise InvalidRequestError(
                "context_id is already used on this connection", context_id=context_id
            )
        template = GenerationRequest(
            context_id=context_id,
            model_id=model_id,
            voice=normalize_voice(voice),
            output_format=OutputFormat.coerce(output_format),
            continue_=True,
            language=language,
            max_buffer_delay_ms=max_buffer_delay_ms,
            add_timestamps=add_timestamps,
            add_phoneme_timestamps=add_phoneme_timestamps,
            use_normalized_timestamps=use_normalized_timestamps,
            generation_config=None
            if generation_config is None
            else validate_generation_config(generation_config),
            pronunciation_dict_id=pronunciation_dict_id,
        )
        context = CartesiaContext(self, template)
        self._contexts[context_id] = context
        return context

    # -- used by contexts -----------------------------------------------------

    def _check_open(self) -> None:
        if self._closed_error is not None:
            raise self._closed_error

    async def _send(self, text: str) -> None:
        self._check_open()
        try:
            await self._ws.send(text)
        except ConnectionClosed as e:
            raise self._closed(e) from None

    def _context_finished(self, context: CartesiaContext, reason: str) -> None:
        if self._contexts.pop(context.context_id, None) is not None:
            self._finished[context.context_id] = reason
            while len(self._finished) > _FINISHED_MEMORY:
                self._finished.popitem(last=False)

    # -- reading --------------------------------------------------------------

    async def _read(self) -> None:
        try:
            async for raw in self._ws:
                self._dispatch(raw)
        except ConnectionClosed:
            pass
        finally:
            error = self._closed(None)
            for context in list(self._contexts.values()):
                context._connection_lost(error)

    def _closed(self, exc: ConnectionClosed | None) -> CartesiaConnectionError:
        if self._closed_error is None:
            code, reason = self._ws.close_code, self._ws.close_reason
            if exc is not None and exc.rcvd is not None:
                code, reason = exc.rcvd.code, exc.rcvd.reason
            detail = f"code {code}" + (f", {reason}" if reason else "")
            self._closed_error = CartesiaConnectionError(
                f"connection to {self.url} closed ({detail})",
                close_code=code,
                close_reason=reason,
            )
            logger.debug(f"Cartesia connection closed ({detail})")
        return self._closed_error

    def _dispatch(self, raw: str | bytes) -> None:
        try:
            event = parse_event(raw)
        except ProtocolError as e:
            self.dropped[DROP_MALFORMED] += 1
            logger.warning(f"Cartesia: ignoring a malformed message: {e}")
            return
        if isinstance(event, UnknownEvent):
            self.dropped[DROP_UNKNOWN_TYPE] += 1
            logger.debug(f"Cartesia: ignoring a message of unknown type {event.type!r}")
            return
        if event.context_id is None:
            self._dispatch_orphan_error(event)
            return
        context = self._contexts.get(event.context_id)
        if context is None:
            self.dropped[self._finished.get(event.context_id, DROP_UNKNOWN_CONTEXT)] += 1
            return
        context._deliver(event)

    def _dispatch_orphan_error(self, event: Error) -> None:
        """An error naming no context: give it to the only waiting context, else keep it."""
        waiting = [c for c in self._contexts.values() if c.phase is not ContextPhase.NEW]
        if len(waiting) == 1:
            waiting[0]._deliver(event)
            return
        self.errors.append(event)
        logger.warning(f"Cartesia: error for no context: {event.exception()}")


class CartesiaContext:
    """One Cartesia context: inputs out, its events in, in order.

    Create it with `CartesiaConnection.context`.

    Parameters:
        connection: The connection it belongs to.
        template: The request all inputs are built from.
    """

    def __init__(self, connection: CartesiaConnection, template: GenerationRequest):
        self._connection = connection
        self._template = template
        self._state = ContextState(template.context_id)
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._ended: Any = None
        # Weak, so that a stream dropped without being closed frees the context.
        self._receiver: weakref.ref[EventStream] | None = None

    def __repr__(self) -> str:
        return f"CartesiaContext({self.context_id!r}, {self.phase.value})"

    @property
    def context_id(self) -> str:
        """The context's id."""
        return self._template.context_id

    @property
    def phase(self) -> ContextPhase:
        """Where the context is in its life (new, open, closing, done, cancelled, failed)."""
        return self._state.phase

    @property
    def output_format(self) -> OutputFormat:
        """The audio format of the context."""
        return self._template.output_format

    @property
    def flush_id(self) -> int:
        """The flush id that audio of text pushed now will carry."""
        return self._state.current_flush_id

    @property
    def pending(self) -> int:
        """What `receive` can take without a wait: events received, and its end once known.

        The end (a cancel, a lost connection) counts as one: nonzero means the
        next step of `receive` does not wait.
        """
        return self._queue.qsize()

    async def push(self, text: str, *, generation_config: Mapping[str, Any] | None = None) -> None:
        """Send text; more may follow (``continue: true``).

        The text is concatenated verbatim to earlier inputs: include the spaces.

        Args:
            text: The text.
            generation_config: Overrides the context's default for this input.

        Raises:
            ContextClosedError: After `no_more_inputs` or `cancel`, or once finished.
            EmptyTranscriptError: The context's first input has no letter or digit.
            InvalidRequestError: ``generation_config`` is invalid, or the text is
                not valid UTF-8.
            CartesiaConnectionError: The connection is closed.
            TypeError: ``text`` is not a string.
        """
        if not isinstance(text, str):
            raise TypeError(f"push() takes a str, got {type(text).__name__}")
        changes = {}
        if generation_config is not None:
            changes["generation_config"] = validate_generation_config(generation_config)
        await self._send_input(self._template.push(text, **changes))

    async def flush(self) -> int:
        """Make the server generate everything sent so far, as one segment.

        Returns:
            The flush id of the segment this flush closes: the id its audio
            carries and its ``flush_done`` reports (1 for the first flush). A
            server that flushes every input by itself numbers segments on its
            own; key segments on ``flush_done`` events when that matters.

        Raises:
            ContextClosedError: After `no_more_inputs` or `cancel`, or once finished.
            EmptyTranscriptError: Nothing was pushed yet: a context cannot open with a flush.
            CartesiaConnectionError: The connection is closed.
        """
        return await self._send_input(self._template.flushed())

    async def no_more_inputs(self) -> None:
        """End the input (``""`` with ``continue: false``); the server finishes, then ``done``.

        Calling it again is a no-op.

        Raises:
            ContextClosedError: After `cancel`, or once failed.
            EmptyTranscriptError: Nothing was pushed yet (cancel such a context instead).
            CartesiaConnectionError: The connection is closed.
        """
        if self.phase in (ContextPhase.CLOSING, ContextPhase.DONE):
            return
        await self._send_input(self._template.closed())

    async def cancel(self) -> None:
        """Cancel the context: `receive` ends at once and yields nothing more.

        Events already received but not yet consumed are dropped, and so is
        any event of the context still arriving (the server may go on sending
        the audio it was generating). Cancelling a finished context does
        nothing. Safe on a closed connection.
        """
        sent_anything = self.phase is not ContextPhase.NEW
        if not self._state.cancel():
            return
        self._connection._context_finished(self, DROP_CANCELLED_CONTEXT)
        while not self._queue.empty():
            self._queue.get_nowait()
            self._connection.dropped[DROP_CANCELLED_CONTEXT] += 1
        self._queue.put_nowait(_CANCELLED)
        if sent_anything and not self._connection.closed:
            # If the connection dies meanwhile, the context died with it: nothing to cancel.
            with contextlib.suppress(CartesiaConnectionError):
                await self._connection._send(CancelRequest(self.context_id).encode())

    def receive(self, timeout: float | None = None) -> EventStream:
        """The context's events in order, until ``done`` or ``error`` (both yielded), or a cancel.

        One receiver at a time: while an `EventStream` of this context is
        iterating, another one fails at its first step. Leaving the loop
        (``break``), closing the stream or cancelling its task frees the
        context, and the next `receive` goes on from the next event.

        Args:
            timeout: Seconds to wait for each event; None waits as long as it takes.

        Returns:
            An async iterator of `Chunk`, `Timestamps`, `PhonemeTimestamps`,
            `FlushDone`, `Done`, `Error`.

        Raises:
            ConcurrentReceiveError: Another receive is iterating this context
                (raised by the first step of the iteration).
            CartesiaConnectionError: The connection closed before the context
                finished (raised by the iteration).
            CartesiaTimeoutError: No event arrived within ``timeout`` (raised
                by the iteration).
        """
        return EventStream(self, timeout)

    def _claim_receiver(self, stream: EventStream) -> None:
        current = self._receiver() if self._receiver is not None else None
        if current is not None and current is not stream:
            raise ConcurrentReceiveError(
                "another receive() is already iterating this context; "
                "only one receiver gets its events",
                context_id=self.context_id,
            )
        self._receiver = weakref.ref(stream)

    def _release_receiver(self, stream: EventStream) -> None:
        if self._receiver is not None and self._receiver() is stream:
            self._receiver = None

    async def _next_event(self, timeout: float | None) -> ServerEvent:
        """The next event, or StopAsyncIteration once the context has ended."""
        while True:
            if self._ended is not None and self._queue.empty():
                if isinstance(self._ended, CartesiaConnectionError):
                    raise self._ended
                raise StopAsyncIteration
            if not self._queue.empty():
                item = self._queue.get_nowait()  # most events: no wait, no timer
            elif timeout is None:
                item = await self._queue.get()
            else:
                try:
                    async with asyncio.timeout(timeout):
                        item = await self._queue.get()
                except TimeoutError:
                    raise CartesiaTimeoutError(
                        f"no event within {timeout} s", context_id=self.context_id
                    ) from None
            if item is _CANCELLED or isinstance(item, CartesiaConnectionError):
                self._ended = item
                continue
            if isinstance(item, Done | Error):
                self._ended = item
            return item

    async def _send_input(self, request: GenerationRequest) -> int | None:
        self._connection._check_open()
        frame = request.encode()  # refused here, before the state takes the input
        flush_id = self._state.input(request)
        await self._connection._send(frame)
        return flush_id

    def _deliver(self, event: ServerEvent) -> None:
        if isinstance(event, Done):
            self._state.done()
            self._connection._context_finished(self, DROP_FINISHED_CONTEXT)
        elif isinstance(event, Error):
            self._state.fail()
            self._connection._context_finished(self, DROP_FINISHED_CONTEXT)
        self._queue.put_nowait(event)

    def _connection_lost(self, error: CartesiaConnectionError) -> None:
        if self._state.fail():
            self._queue.put_nowait(error)


class EventStream(AsyncIterator[ServerEvent]):
    """The events of one context, as `CartesiaContext.receive` returns them.

    It takes the context at its first step, not when created, and gives it
    back when it ends: at ``done``, ``error`` or a cancel, on any exception
    (a timeout, a closed connection, the task's cancellation), on `aclose`,
    or when it is dropped (``break`` out of an ``async for``). Like an async
    generator, once ended it stays ended.

    Parameters:
        context: The context whose events it yields.
        timeout: Seconds to wait for each event; None waits as long as it takes.
    """

    def __init__(self, context: CartesiaContext, timeout: float | None):
        self._context = context
        self._timeout = timeout
        self._claimed = False
        self._finished = False
        self._waiting = False

    def __repr__(self) -> str:
        state = "finished" if self._finished else "receiving" if self._claimed else "new"
        return f"EventStream({self._context.context_id!r}, {state})"

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> ServerEvent:
        """The next event.

        Raises:
            StopAsyncIteration: The context ended.
            ConcurrentReceiveError: Another stream is iterating the context, or
                another task is already waiting on this one.
            CartesiaConnectionError: The connection closed first.
            CartesiaTimeoutError: No event within the timeout.
        """
        if self._finished:
            raise StopAsyncIteration
        if self._waiting:
            # Two tasks sharing one stream would split its events between them.
            raise ConcurrentReceiveError(
                "another task is already waiting on this receive()",
                context_id=self._context.context_id,
            )
        if not self._claimed:
            try:
                self._context._claim_receiver(self)
            except ConcurrentReceiveError:
                self._finished = True  # the first receiver keeps the context
                raise
            self._claimed = True
        self._waiting = True
        try:
            return await self._context._next_event(self._timeout)
        except BaseException:
            # Ended, failed or cancelled (asyncio.timeout around the loop
            # included): no event was taken from the queue, and the context
            # is free for the next receive.
            self._finish()
            raise
        finally:
            self._waiting = False

    async def aclose(self) -> None:
        """Stop receiving; the next `CartesiaContext.receive` goes on from here."""
        self._finish()

    def __del__(self) -> None:
        # A ``break`` drops the stream without closing it; free the context at once
        # so that a receive right after the loop works.
        self._finish()

    def _finish(self) -> None:
        if not self._finished:
            self._finished = True
            if self._claimed:
                self._context._release_receiver(self)


def _upgrade_error(e: InvalidStatus, where: str) -> Exception:
    """The typed error for an HTTP status refusing the WebSocket upgrade."""
    response = e.response
    message = f"{where} refused the WebSocket upgrade with HTTP {response.status_code}"
    error_code = None
    body = (response.body or b"").decode("utf-8", "replace").strip()
    try:
        obj = json.loads(body) if body else None
    except ValueError:
        obj = None
        message = f"{message}: {body[:200]}"
    if isinstance(obj, dict):
        message = str(obj.get("message") or obj.get("error") or message)
        code = obj.get("error_code")
        error_code = code if isinstance(code, str) else None
    return api_error(message, status_code=response.status_code, error_code=error_code)
