#
# Copyright (c) 2026, pipecat-cartesia-ctx contributors
#
# SPDX-License-Identifier: BSD 2-Clause License
#

"""Keep API keys and tokens out of logs.

The ``websockets`` library logs every handshake header at DEBUG through
standard `logging` (``> X-API-Key: ...`` on the client, ``< Authorization:
...`` and the request line with its query on the server). The client and the
emulator hand it a `RedactingLoggerAdapter` instead of its default logger, so
the secrets are masked before any record exists, whatever the application's
logging configuration, and without a filter on anyone else's logger.

Secrets are found by name (headers such as ``X-API-Key`` and
``Authorization``, query parameters ``api_key`` and ``access_token``) and, when
the caller knows them, by value.
"""

from __future__ import annotations

import logging
import re
import sys
import traceback
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any

MASK = "***"
"""What a secret is replaced with."""

SECRET_HEADERS = frozenset(
    {"x-api-key", "authorization", "proxy-authorization", "cookie", "set-cookie"}
)
"""Header names whose values are secrets (lower case)."""

SECRET_QUERY_PARAMETERS = frozenset({"api_key", "access_token"})
"""Query parameter names whose values are secrets (lower case)."""

# A known secret shorter than this is not masked by value: masking "k" (a
# test key) everywhere would garble every message and hide nothing.
MIN_SECRET_LENGTH = 8

_HEADER_NAMES = "|".join(re.escape(n) for n in sorted(SECRET_HEADERS))
_ALL_NAMES = "|".join(re.escape(n) for n in sorted(SECRET_HEADERS | SECRET_QUERY_PARAMETERS))
# A header line, `Name: value`: the value runs to the end of the line.
_HEADER_LINE = re.compile(
    rf"(?P<head>\b(?:{_HEADER_NAMES})[ \t]*:[ \t]*)(?P<value>[^\r\n]*)", re.IGNORECASE
)
# A quoted value after a name, as in a logged dict or JSON (`'X-API-Key': '...'`,
# `"api_key": "..."`) or a repr (`api_key='...'`).
_QUOTED = re.compile(
    rf"""(?P<head>(?P<q>['"]?)\b(?:{_ALL_NAMES})(?P=q)[ \t]*[:=][ \t]*)"""
    r"""(?P<quote>['"])(?P<value>(?:(?!(?P=quote)).)*)(?P=quote)""",
    re.IGNORECASE,
)
# A query parameter: the value runs to the next separator.
_QUERY = re.compile(
    rf"(?P<head>[?&;](?:{'|'.join(sorted(SECRET_QUERY_PARAMETERS))})=)[^&#\s'\"]*",
    re.IGNORECASE,
)
# An authorization scheme such as "Bearer" is kept: it says how the client
# authenticated, which helps when debugging, and is no secret.
_SCHEME = re.compile(r"(?P<scheme>(?:bearer|basic|token)[ \t]+)\S.*", re.IGNORECASE | re.DOTALL)


def _mask_value(value: str) -> str:
    value = value.strip()
    if not value:
        return value
    scheme = _SCHEME.fullmatch(value)
    return (scheme["scheme"] if scheme else "") + MASK


def _mask_header_line(match: re.Match[str]) -> str:
    return match["head"] + _mask_value(match["value"])


def _mask_quoted(match: re.Match[str]) -> str:
    quote = match["quote"]
    return f"{match['head']}{quote}{_mask_value(match['value'])}{quote}"


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Mask the secrets in a text, leaving the rest as it was.

    Args:
        text: A log message, a header line, a URL, an error text.
        secrets: Values to mask wherever they appear (e.g. the API key);
            those shorter than `MIN_SECRET_LENGTH` are only masked by name.

    Returns:
        The text with the value of each secret header and query parameter,
        and each known secret, replaced by `MASK`.
    """
    for secret in secrets:
        if len(secret) >= MIN_SECRET_LENGTH:
            text = text.replace(secret, MASK)
    text = _QUERY.sub(lambda m: m["head"] + MASK, text)
    text = _QUOTED.sub(_mask_quoted, text)
    return _HEADER_LINE.sub(_mask_header_line, text)


class RedactingLoggerAdapter(logging.LoggerAdapter):
    """A logger adapter that masks secrets in every message before it is logged.

    Pass it as ``logger=`` to ``websockets`` (``connect``, ``serve``). Each
    message is formatted (``msg % args``) and redacted here, so the record
    carries no secret in its message nor in its arguments; a traceback that
    quotes a secret is formatted, redacted and appended to the message.
    Records keep their logger's name, level and ``extra``.

    Parameters:
        logger: The logger to write to, e.g. ``logging.getLogger("websockets.client")``.
        secrets: Values to mask wherever they appear (e.g. the API key).
    """

    def __init__(self, logger: logging.Logger, secrets: Iterable[str] = ()):
        super().__init__(logger, {})
        self._secrets = tuple(s for s in secrets if len(s) >= MIN_SECRET_LENGTH)

    def __repr__(self) -> str:
        # LoggerAdapter's repr names the logger only; say the same, never the secrets.
        return f"<{type(self).__name__} {self.logger.name}>"

    def log(
        self,
        level: int,
        msg: object,
        *args: object,
        exc_info: Any = None,
        extra: Mapping[str, object] | None = None,
        stack_info: bool = False,
        stacklevel: int = 1,
    ) -> None:
        """Log ``msg % args`` with its secrets masked.

        Args:
            level: The logging level.
            msg: The message, a %-format when ``args`` are given.
            *args: The message's arguments.
            exc_info: As for `logging.Logger.log`.
            extra: As for `logging.Logger.log`; kept, not replaced (a
                ``websockets`` connection adds ``websocket`` to each record).
            stack_info: As for `logging.Logger.log`.
            stacklevel: As for `logging.Logger.log`.
        """
        if not self.isEnabledFor(level):
            return
        message = redact(_format(msg, args), self._secrets)
        message, exc_info = self._redacted_traceback(message, exc_info)
        self.logger.log(
            level,
            message,
            exc_info=exc_info,
            extra=extra,
            stack_info=stack_info,
            # Report the caller of the adapter, not this method.
            stacklevel=stacklevel + 1,
        )

    def _redacted_traceback(self, message: str, exc_info: Any) -> tuple[str, Any]:
        """The message and exc_info to log; a traceback quoting a secret goes into the text."""
        info = _exc_info_tuple(exc_info)
        if info is None:
            return message, exc_info
        text = "".join(traceback.format_exception(*info)).rstrip("\n")
        redacted = redact(text, self._secrets)
        if redacted == text:
            return message, info  # nothing secret: handlers format it as usual
        return f"{message}\n{redacted}", None


def _format(msg: object, args: tuple[object, ...]) -> str:
    """``msg % args`` as `logging.LogRecord.getMessage` does it."""
    text = str(msg)
    if not args:
        return text
    # Like logging, a lone mapping is the mapping itself, for %(name)s formats.
    lone_mapping = len(args) == 1 and isinstance(args[0], Mapping) and args[0]
    values = args[0] if lone_mapping else args
    try:
        return text % values
    except (TypeError, ValueError, KeyError):
        # A broken format: logging would print both to stderr; keep both, redacted.
        return f"{text} {values!r}"


def _exc_info_tuple(
    exc_info: Any,
) -> tuple[type[BaseException], BaseException, TracebackType | None] | None:
    """`logging`'s ``exc_info`` argument as a tuple, or None when there is no exception."""
    if not exc_info:
        return None
    if isinstance(exc_info, BaseException):
        return type(exc_info), exc_info, exc_info.__traceback__
    if not isinstance(exc_info, tuple):
        exc_info = sys.exc_info()
    return None if exc_info[0] is None else exc_info
