#
# Copyright (c) 2026, pipecat-cartesia-ctx contributors
#
# SPDX-License-Identifier: BSD 2-Clause License
#

"""The one exception hierarchy of the package.

Every error carries the fields of Cartesia's structured error event
(``status_code``, ``error_code``, ``title``, ``message``, ``request_id``,
``context_id``), whether it came from the server or was detected locally, so a
caller can handle both the same way.
"""

from __future__ import annotations

from .text import EMPTY_TRANSCRIPT_MESSAGE

# Error codes. The first three are attested in Cartesia's documentation; the
# others are this project's choice for cases the documentation leaves open, and
# both the client and the emulator use them.
MODEL_NOT_FOUND = "model_not_found"
CONCURRENCY_LIMITED = "concurrency_limited"
QUOTA_EXCEEDED = "quota_exceeded"
INVALID_REQUEST = "invalid_request"
CONTEXT_CLOSED = "context_closed"
CONTEXT_FIELD_CHANGED = "context_field_changed"
EMPTY_TRANSCRIPT = "empty_transcript"
TOO_MANY_CONNECTIONS = "too_many_connections"
UNAUTHORIZED = "unauthorized"
INTERNAL_ERROR = "internal_error"
CONCURRENT_RECEIVE = "concurrent_receive"


class CartesiaError(Exception):
    """Base class of every error this package raises.

    Parameters:
        message: Human-readable description.
        status_code: HTTP-style status, when there is one.
        error_code: Machine-readable code (e.g. ``"concurrency_limited"``).
        title: Short human-readable title, as sent by the server.
        request_id: The server's id of the connection, when known.
        context_id: The Cartesia context the error belongs to, when known.
    """

    default_status_code: int | None = None
    default_error_code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        error_code: str | None = None,
        title: str | None = None,
        request_id: str | None = None,
        context_id: str | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.status_code = status_code if status_code is not None else self.default_status_code
        self.error_code = error_code if error_code is not None else self.default_error_code
        self.title = title
        self.request_id = request_id
        self.context_id = context_id

    def __str__(self) -> str:
        head = " ".join(str(p) for p in (self.status_code, self.error_code) if p is not None)
        text = f"{self.title}: {self.message}" if self.title else self.message
        tail = ", ".join(
            f"{k}={v}"
            for k, v in (("context_id", self.context_id), ("request_id", self.request_id))
            if v is not None
        )
        return (f"[{head}] " if head else "") + text + (f" ({tail})" if tail else "")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"


class ProtocolError(CartesiaError):
    """The peer sent something that is not valid Cartesia protocol."""


class CartesiaConnectionError(CartesiaError, ConnectionError):
    """The WebSocket could not be opened, or it closed.

    Parameters:
        close_code: WebSocket close code, when the socket closed.
        close_reason: WebSocket close reason, when the socket closed.
    """

    def __init__(
        self,
        message: str,
        *,
        close_code: int | None = None,
        close_reason: str | None = None,
        **kwargs,
    ):
        super().__init__(message, **kwargs)
        self.close_code = close_code
        self.close_reason = close_reason


class CartesiaTimeoutError(CartesiaError, TimeoutError):
    """Nothing arrived within the time the caller allowed."""


class ConcurrentReceiveError(CartesiaError, RuntimeError):
    """A second `receive` on a context while another one is still iterating.

    Local misuse, never sent to the server, so it has no status code (like an
    async generator's "already running" `RuntimeError`, which it also is).
    Raised at once, at the second receiver's first step; the first receiver
    keeps every event. Once the first one ends, breaks out of its loop, is
    closed or is cancelled, a new `receive` goes on from the next event.
    """

    default_error_code = CONCURRENT_RECEIVE


class CartesiaAPIError(CartesiaError):
    """An error with an HTTP-style status, reported by the server or by local validation."""


class InvalidRequestError(CartesiaAPIError, ValueError):
    """A request the server rejects (400); raised locally before sending when detectable."""

    default_status_code = 400
    default_error_code = INVALID_REQUEST


class ModelNotFoundError(InvalidRequestError):
    """The requested ``model_id`` does not exist."""

    default_error_code = MODEL_NOT_FOUND


class ContextClosedError(InvalidRequestError):
    """Input for a context that was closed, cancelled, finished or failed."""

    default_error_code = CONTEXT_CLOSED


class ContextFieldChangedError(InvalidRequestError):
    """A field that is locked for the life of a context changed between inputs."""

    default_error_code = CONTEXT_FIELD_CHANGED


class EmptyTranscriptError(InvalidRequestError):
    """A context's first transcript is empty, whitespace or punctuation only.

    Cartesia refuses such a context with a 400 error event that ends it (seen
    after tool-call turns, and when an LLM resumes with "..." after a barge-in).
    """

    default_error_code = EMPTY_TRANSCRIPT


class AuthenticationError(CartesiaAPIError):
    """The API key or access token was missing or refused (401)."""

    default_status_code = 401
    default_error_code = UNAUTHORIZED


class QuotaExceededError(CartesiaAPIError):
    """The account has no credits left."""

    default_status_code = 402
    default_error_code = QUOTA_EXCEEDED


class RateLimitError(CartesiaAPIError):
    """Too many requests or sockets (429)."""

    default_status_code = 429


class ConcurrencyLimitError(RateLimitError):
    """Too many active contexts for the account's plan."""

    default_error_code = CONCURRENCY_LIMITED


class ServerError(CartesiaAPIError):
    """The server failed (5xx)."""

    default_status_code = 500
    default_error_code = INTERNAL_ERROR


_BY_CODE: dict[str, type[CartesiaAPIError]] = {
    MODEL_NOT_FOUND: ModelNotFoundError,
    CONTEXT_CLOSED: ContextClosedError,
    CONTEXT_FIELD_CHANGED: ContextFieldChangedError,
    EMPTY_TRANSCRIPT: EmptyTranscriptError,
    CONCURRENCY_LIMITED: ConcurrencyLimitError,
    QUOTA_EXCEEDED: QuotaExceededError,
    UNAUTHORIZED: AuthenticationError,
}

_BY_STATUS: dict[int, type[CartesiaAPIError]] = {
    400: InvalidRequestError,
    401: AuthenticationError,
    402: QuotaExceededError,
    429: RateLimitError,
}


def api_error(
    message: str,
    *,
    status_code: int | None = None,
    error_code: str | None = None,
    title: str | None = None,
    request_id: str | None = None,
    context_id: str | None = None,
) -> CartesiaAPIError:
    """Build the most specific `CartesiaAPIError` for a status and error code.

    Args:
        message: Human-readable description.
        status_code: HTTP-style status, if any.
        error_code: Machine-readable code, if any; it wins over the status.
        title: Short title, if any.
        request_id: The server's connection id, if any.
        context_id: The context the error belongs to, if any.

    Returns:
        An exception instance (not raised) whose fields are exactly the given ones.
    """
    cls = _BY_CODE.get(error_code or "")
    if cls is None and EMPTY_TRANSCRIPT_MESSAGE in message:
        # The real server reports it without a code of its own (legacy frames).
        cls = EmptyTranscriptError
    if cls is None and status_code is not None:
        cls = _BY_STATUS.get(status_code) or (ServerError if status_code >= 500 else None)
    err = (cls or CartesiaAPIError)(
        message,
        title=title,
        request_id=request_id,
        context_id=context_id,
    )
    # Report what the server said, not the class defaults: a legacy error has no code.
    err.status_code = status_code
    err.error_code = error_code
    return err
