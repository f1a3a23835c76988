#
# Copyright (c) 2026, pipecat-cartesia-ctx contributors
#
# SPDX-License-Identifier: BSD 2-Clause License
#

"""Sans-I/O: text that grows at its end, appended to and read in linear time.

A turn's segment is built from every push of its text: with ``flush_on="turn"``
(or a run-on sentence) that is one segment of 100,000 LLM tokens. ``s += piece``
on a string kept in a list or an attribute copies the whole string each time
(CPython extends a string in place only in a local variable), so the turn would
cost the square of its length. A `TextBuffer` keeps the pieces apart and joins
them once, when the whole text is asked for.
"""

from __future__ import annotations

from bisect import bisect_right


class TextBuffer:
    """Append-only text: appending costs the piece, reading a tail costs the tail.

    Parameters:
        text: The text it starts with.
    """

    __slots__ = ("_ends", "_pieces")

    def __init__(self, text: str = ""):
        self._pieces: list[str] = []
        self._ends: list[int] = []  # the offset just after each piece
        self.append(text)

    def append(self, piece: str) -> None:
        """Add ``piece`` at the end."""
        if piece:
            self._pieces.append(piece)
            self._ends.append(len(self) + len(piece))

    def tail(self, start: int) -> str:
        """The text from offset ``start`` on."""
        index = bisect_right(self._ends, start)
        if index == len(self._pieces):
            return ""
        begins = self._ends[index - 1] if index else 0
        first = self._pieces[index][start - begins :]
        if index == len(self._pieces) - 1:
            return first
        return first + "".join(self._pieces[index + 1 :])

    def find(self, sub: str, start: int = 0) -> int:
        """The offset of the first ``sub`` at ``start`` or later, -1 if there is none.

        Costs the text from ``start`` on, not the whole text.
        """
        if start > len(self):
            return -1
        found = self.tail(start).find(sub)
        return found if found < 0 else start + found

    def __str__(self) -> str:
        if len(self._pieces) > 1:
            # Joined once; later appends add pieces after it.
            self._pieces = ["".join(self._pieces)]
            self._ends = [self._ends[-1]]
        return self._pieces[0] if self._pieces else ""

    def __len__(self) -> int:
        return self._ends[-1] if self._ends else 0

    def __bool__(self) -> bool:
        return bool(self._pieces)

    def __repr__(self) -> str:
        return f"TextBuffer({str(self)!r})"
