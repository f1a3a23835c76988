#
# Copyright (c) 2026, pipecat-cartesia-ctx contributors
#
# SPDX-License-Identifier: BSD 2-Clause License
#

"""`CartesiaEmulator`: a local server speaking Cartesia's TTS WebSocket contexts protocol."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import uuid
from collections.abc import Collection
from urllib.parse import parse_qs, urlsplit

from loguru import logger
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from ..protocol import (
    TOO_MANY_CONNECTIONS,
    UNAUTHORIZED,
    WEBSOCKET_PATH,
    ConcurrencyLimitError,
    ModelNotFoundError,
    is_known_model,
    uses_structured_errors,
)
from ..redact import RedactingLoggerAdapter, redact
from .config import Behavior, Faults, Pacing
from .pacer import Pacer
from .record import ConnectionRecord, EmulatorRecord
from .session import Session
from .voices import Voice, make_voice

# The logger websockets uses by default, so the user's logging config for it still applies.
_WEBSOCKETS_LOGGER = logging.getLogger("websockets.server")


class CartesiaEmulator:
    """A local, protocol-faithful Cartesia TTS WebSocket server.

    Use it as an async context manager; it binds to 127.0.0.1 on a free port
    unless told otherwise::

        async with CartesiaEmulator() as emu:
            conn = await CartesiaConnection.connect(api_key="any", url=emu.url)

    Every knob (``pacing``, ``behavior``, ``faults``) may be changed while it runs.

    Parameters:
        host: Interface to bind.
        port: Port to bind; 0 picks a free one.
        api_key: When set, connections must present it (``X-API-Key``,
            ``Authorization: Bearer``, ``?api_key=``) or an access token;
            others get HTTP 401 on the upgrade. A connection that presents no
            credentials at all always gets 401; with neither ``api_key`` nor
            ``access_tokens`` set, any non-empty key or token is accepted.
        access_tokens: Tokens accepted as ``?access_token=`` or bearer.
        models: Accepted ``model_id`` values; None accepts Cartesia's model
            ids (`is_known_model`). Others get a 400 ``model_not_found`` error event.
        pacing: How fast audio comes.
        behavior: Protocol behaviours; Cartesia's by default, kinder ones as options.
        faults: Faults to inject.
        voice: ``"synthetic"`` (the default: deterministic, its audio and
            timestamps predictable from the text), ``"espeak"`` (real words
            through espeak-ng; needs the ``[voice]`` extra), or a voice object
            (`SyntheticVoice`, `EspeakVoice`, or one of your own: `Voice`).
        max_concurrent_contexts: Active contexts allowed across all
            connections (the plan's concurrency); beyond it a new context gets
            a 429 ``concurrency_limited`` error event. None: unlimited.
        max_connections: Open sockets allowed; beyond it the upgrade gets
            HTTP 429. None: ten times ``max_concurrent_contexts``, or unlimited.
        idle_timeout: Seconds without traffic before a socket is closed with
            1000 "connection idle timeout"; None never closes.
        record_limit: Contexts and connections kept in `record`.

    Raises:
        VoiceUnavailableError: ``voice="espeak"`` without the ``[voice]`` extra
            (its message says what to install).
        ValueError: An unknown voice name.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
        access_tokens: Collection[str] = (),
        models: Collection[str] | None = None,
        pacing: Pacing | None = None,
        behavior: Behavior | None = None,
        faults: Faults | None = None,
        voice: Voice | str | None = None,
        max_concurrent_contexts: int | None = None,
        max_connections: int | None = None,
        idle_timeout: float | None = 300.0,
        record_limit: int = 1000,
    ):
        self.host = host
        self.api_key = api_key
        self.access_tokens = frozenset(access_tokens)
        self.models = None if models is None else frozenset(models)
        self.pacing = pacing or Pacing()
        self.behavior = behavior or Behavior()
        self.faults = faults or Faults()
        self.voice = make_voice(voice)
        self.pacer = Pacer()
        self.max_concurrent_contexts = max_concurrent_contexts
        if max_connections is None and max_concurrent_contexts is not None:
            max_connections = 10 * max_concurrent_contexts
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.record = EmulatorRecord(record_limit)
        self._requested_port = port
        self._server: Server | None = None
        self._sessions: dict[ServerConnection, Session] = {}
        self._active_contexts = 0
        self._connection_count = 0

    def __repr__(self) -> str:
        state = self.url if self._server else "stopped"
        return f"CartesiaEmulator({state})"

    # -- lifecycle ------------------------------------------------------------

    async def start(self) -> CartesiaEmulator:
        """Start listening.

        Returns:
            The emulator itself.
        """
        if self._server is not None:
            return self
        self._server = await serve(
            self._handle,
            self.host,
            self._requested_port,
            process_request=self._process_request,
            compression=None,
            ping_interval=None,
            server_header="cartesia-emulator",
            # websockets logs each handshake line at DEBUG: the request line with
            # its query (?api_key=), X-API-Key, Authorization. A bot's test suite
            # running the emulator in-process must not print its key.
            logger=RedactingLoggerAdapter(_WEBSOCKETS_LOGGER, secrets=self._secrets()),
        )
        logger.debug(f"Cartesia emulator listening on {self.url}")
        return self

    def _secrets(self) -> list[str]:
        """The keys and tokens configured, masked wherever they appear in a log line."""
        return [*([self.api_key] if self.api_key else []), *self.access_tokens]

    async def stop(self) -> None:
        """Close every connection and stop listening."""
        if self._server is None:
            return
        server, self._server = self._server, None
        server.close(close_connections=True)
        try:
            async with asyncio.timeout(5):
                await server.wait_closed()
        except TimeoutError:
            logger.warning("Cartesia emulator: connections did not close within 5 s")

    async def __aenter__(self) -> CartesiaEmulator:
        return await self.start()

    async def __aexit__(self, *exc_info) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        """The bound port."""
        if self._server is None:
            raise RuntimeError("the emulator is not running")
        return self._server.sockets[0].getsockname()[1]

    @property
    def base_url(self) -> str:
        """``ws://HOST:PORT``: what the official SDK takes as ``websocket_base_url``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ws://{host}:{self.port}"

    @property
    def url(self) -> str:
        """``ws://HOST:PORT/tts/websocket``: the full TTS WebSocket URL."""
        return self.base_url + WEBSOCKET_PATH

    @property
    def active_contexts(self) -> int:
        """Contexts currently holding a concurrency slot."""
        return self._active_contexts

    @property
    def connections(self) -> int:
        """Sockets currently open."""
        return len(self._sessions)

    def close_connections(self, code: int = 1011, reason: str = "", abort: bool = False) -> None:
        """Close every open socket, cleanly or by aborting TCP (a network failure).

        Args:
            code: Close code of a clean close.
            reason: Close reason of a clean close.
            abort: Drop the TCP connections with no close frame.
        """
        for session in list(self._sessions.values()):
            session.close_soon(code, reason, abort=abort)

    # -- used by sessions -----------------------------------------------------

    def check_model(self, model_id: str) -> None:
        """Refuse unknown models.

        Raises:
            ModelNotFoundError: If ``model_id`` is not accepted.
        """
        known = model_id in self.models if self.models is not None else is_known_model(model_id)
        if not known:
            raise ModelNotFoundError(f"Invalid model: {model_id}", title="Model not found")

    def acquire_slot(self) -> None:
        """Take a concurrency slot for a new context.

        Raises:
            ConcurrencyLimitError: If all slots are taken.
        """
        limit = self.max_concurrent_contexts
        if limit is not None and self._active_contexts >= limit:
            raise ConcurrencyLimitError(
                f"Too many concurrent requests: the limit is {limit} active contexts",
                title="Concurrency limited",
            )
        self._active_contexts += 1

    def release_slot(self) -> None:
        """Give a concurrency slot back."""
        self._active_contexts -= 1

    # -- connection handling --------------------------------------------------

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        parts = urlsplit(request.path)
        if parts.path.rstrip("/") != WEBSOCKET_PATH:
            return self._refuse(connection, 404, "not_found", f"no endpoint at {parts.path}")
        offered = _credentials(request.headers, parse_qs(parts.query))
        if not offered:
            return self._refuse(connection, 401, UNAUTHORIZED, "No API key or access token given")
        if self._authenticate(offered) is None:
            return self._refuse(connection, 401, UNAUTHORIZED, "Invalid API key or access token")
        if self.max_connections is not None and len(self._sessions) >= self.max_connections:
            return self._refuse(
                connection,
                429,
                TOO_MANY_CONNECTIONS,
                f"Too many open connections: the limit is {self.max_connections}",
            )
        return None

    def _refuse(
        self, connection: ServerConnection, status: int, code: str, message: str
    ) -> Response:
        logger.info(f"refused a connection: HTTP {status} {code}: {message}")
        self.record.rejected_connections.append((status, code))
        self.record.changed()
        body = json.dumps({"status_code": status, "error_code": code, "message": message})
        response = connection.respond(status, body + "\n")
        response.headers["Content-Type"] = "application/json"
        return response

    def _authenticate(self, offered: list[tuple[str, str]]) -> str | None:
        """The method of the first credential accepted, or None when all are refused.

        With no ``api_key`` and no ``access_tokens`` configured, any non-empty
        key or token is accepted, as any valid key of an account would be.
        """
        open_door = self.api_key is None and not self.access_tokens
        for method, value in offered:
            if open_door:
                return method
            if self.api_key is not None and hmac.compare_digest(
                value.encode(), self.api_key.encode()
            ):
                return method
            if method in ("bearer", "access_token") and value in self.access_tokens:
                return method
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        request = ws.request
        parts = urlsplit(request.path)
        params = parse_qs(parts.query)
        version = (params.get("cartesia_version") or [None])[0] or request.headers.get(
            "Cartesia-Version"
        )
        record = ConnectionRecord(
            number=self._connection_count,
            request_id=f"emu-{uuid.uuid4().hex[:16]}",
            path=redact(request.path),  # the record is printed in test failures
            cartesia_version=version,
            auth=self._authenticate(_credentials(request.headers, params)),
            user_agent=request.headers.get("User-Agent"),
        )
        self._connection_count += 1
        self.record.open_connection(record)
        session = Session(self, ws, record, legacy_errors=not uses_structured_errors(version))
        self._sessions[ws] = session
        logger.info(
            f"connection {record.number} opened: auth {record.auth}, version {version}, "
            f"{record.user_agent or 'no user agent'}"
        )
        try:
            await session.run()
        finally:
            del self._sessions[ws]
            logger.info(
                f"connection {record.number} closed: code {record.close_code}"
                + (f" ({record.close_reason})" if record.close_reason else "")
                + f", {record.messages_received} requests, {record.chunks_sent} chunks"
            )


def _credentials(headers: Headers, params: dict[str, list[str]]) -> list[tuple[str, str]]:
    """Every non-empty key or token a handshake offers, with how it was offered."""
    offered: list[tuple[str, str]] = []
    if value := headers.get("X-API-Key", "").strip():
        offered.append(("x-api-key", value))
    authorization = headers.get("Authorization") or ""
    if authorization[:7].lower() == "bearer " and (token := authorization[7:].strip()):
        offered.append(("bearer", token))
    for name in ("api_key", "access_token"):
        offered += [(name, v.strip()) for v in params.get(name, []) if v.strip()]
    return offered
