#
# Copyright (c) 2026, pipecat-cartesia-ctx contributors
#
# SPDX-License-Identifier: BSD 2-Clause License
#

"""Typed field access for decoded JSON objects.

Both directions of the protocol parse untrusted JSON: the client parses what
the server sends, the emulator parses what clients send. A missing or mistyped
field must become the caller's typed error, never a ``KeyError`` or a
``TypeError`` from deep inside the code.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NoReturn

from .errors import CartesiaError
from .text import is_utf8

_MISSING = object()


class FieldReader:
    """Reads typed fields from one decoded JSON object.

    Parameters:
        obj: The decoded object.
        error: Builds the exception to raise; it gets the message and the
            context id (when the object names one).
        what: What the object is, for error messages (e.g. ``"chunk"``).
    """

    def __init__(
        self,
        obj: Mapping[str, Any],
        error: Callable[..., CartesiaError],
        what: str,
    ):
        self._obj = obj
        self._error = error
        self._what = what
        context_id = obj.get("context_id")
        # An id that cannot go back on the wire names no context in an error.
        valid = isinstance(context_id, str) and is_utf8(context_id)
        self.context_id: str | None = context_id if valid else None

    def fail(self, problem: str) -> NoReturn:
        """Raise the typed error for this object.

        Args:
            problem: What is wrong.

        Raises:
            CartesiaError: Always, of the kind given at construction.
        """
        raise self._error(f"{self._what}: {problem}", context_id=self.context_id)

    def _value(self, key: str, required: bool) -> Any:
        value = self._obj.get(key, _MISSING)
        if value is _MISSING or value is None:
            if required:
                self.fail(f"missing required field {key!r}")
            return None
        return value

    def str(self, key: str, *, required: bool = False) -> str | None:
        """Read a string field."""
        value = self._value(key, required)
        if value is not None and not isinstance(value, str):
            self.fail(f"field {key!r} must be a string, got {type(value).__name__}")
        if value is not None and not is_utf8(value):
            self.fail(f"field {key!r} is not valid UTF-8 (a lone surrogate)")
        return value

    def bool(self, key: str, *, default: bool = False) -> bool:
        """Read a boolean field; absent or null gives ``default``."""
        value = self._value(key, False)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.fail(f"field {key!r} must be a boolean, got {type(value).__name__}")
        return value

    def int(self, key: str, *, required: bool = False) -> int | None:
        """Read an integer field (a boolean is not an integer here)."""
        value = self._value(key, required)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            self.fail(f"field {key!r} must be an integer, got {type(value).__name__}")
        return value

    def number(self, key: str, *, required: bool = False) -> float | None:
        """Read a numeric field as a float."""
        value = self._value(key, required)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(f"field {key!r} must be a number, got {type(value).__name__}")
        return float(value)

    def object(self, key: str, *, required: bool = False) -> Mapping[str, Any] | None:
        """Read a JSON object field."""
        value = self._value(key, required)
        if value is not None and not isinstance(value, Mapping):
            self.fail(f"field {key!r} must be an object, got {type(value).__name__}")
        return value

    def raw(self, key: str, *, required: bool = False) -> Any:
        """Read a field of any type (for fields with several accepted shapes)."""
        return self._value(key, required)

    def list(self, key: str, item: type | tuple[type, ...]) -> list[Any]:
        """Read a list field whose items are all of the given type; absent gives ``[]``."""
        value = self._value(key, False)
        if value is None:
            return []
        if not isinstance(value, list):
            self.fail(f"field {key!r} must be a list, got {type(value).__name__}")
        for v in value:
            if isinstance(v, bool) or not isinstance(v, item):
                self.fail(f"field {key!r} has an item of the wrong type: {type(v).__name__}")
        return value
