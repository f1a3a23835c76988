#
# Copyright (c) 2026, pipecat-cartesia-ctx contributors
#
# SPDX-License-Identifier: BSD 2-Clause License
#

"""Text frames of one socket, framed here and written together once per pacer tick.

Every write to a socket is a system call, as costly on a small virtual machine
as the rest of a chunk's work. A chunk and the timestamps that follow it, the
chunks of several contexts of one socket due in the same tick, a segment's last
timestamps and its ``flush_done``: each batch goes out in one write, at the
end of the pacer's tick or of the loop's turn. A frame is framed as websockets
frames it (RFC 6455, 5.2: FIN, text, no mask from a server, no extension: the
emulator negotiates none; a test holds the bytes equal) without a frame object
and its serializer per message. Frames leave in the order they were queued,
and before anything written to the socket another way: whatever else writes
to it (websockets' own ``send`` and ``close``, an abort) flushes the outbox
first.
"""

from __future__ import annotations

import asyncio
import functools

from websockets.asyncio.server import ServerConnection
from websockets.protocol import State

from .pacer import Pacer

# Written at once past this many bytes, so a piece sent in one go (instant
# pacing) meets the socket's flow control chunk by chunk, not all at the end.
FLUSH_BYTES = 64 * 1024


@functools.lru_cache(maxsize=4096)  # chunks of a pacing all have one size, or two
def text_header(size: int) -> bytes:
    """The header of an unmasked final text frame with a payload of ``size`` bytes."""
    if size < 126:
        return bytes((0x81, size))
    if size < 65536:
        return b"\x81\x7e" + size.to_bytes(2, "big")
    return b"\x81\x7f" + size.to_bytes(8, "big")


class Outbox:
    """Buffers one socket's text frames until the end of the pacer's tick or the loop's turn.

    Add frames only while the socket is open and writable (`Session` checks);
    `flush` writes them, and runs by itself at the end of the tick, or on the
    loop's next turn when frames come from outside one.

    Parameters:
        ws: The socket.
        pacer: The emulator's pacer, whose ticks bound a batch.
    """

    def __init__(self, ws: ServerConnection, pacer: Pacer):
        self._ws = ws
        self._pacer = pacer
        # websockets' own framing if an extension was ever negotiated (it would
        # transform the payload); the emulator offers none.
        self._own_framing = not ws.protocol.extensions
        self._parts: list[bytes] = []
        self._size = 0
        self._flush = self.flush  # one bound method, not one per batch

    def __len__(self) -> int:
        """Bytes waiting."""
        return self._size

    def add(self, payload: bytes) -> None:
        """Queue one text frame (its payload UTF-8 encoded)."""
        self.add_parts(payload, b"", b"")

    def add_parts(self, head: bytes, body: bytes, tail: bytes) -> None:
        """Queue one text frame whose payload is ``head + body + tail``, joined only once."""
        # The first frame of a batch arranges its flush: at the end of the tick,
        # or (frames added from a task) on the loop's next turn at the latest; a
        # caller outside a tick may flush sooner itself.
        if not self._parts and not self._pacer.after_tick(self._flush):
            asyncio.get_running_loop().call_soon(self._flush)
        size = len(head) + len(body) + len(tail)
        if self._own_framing:
            self._parts += (text_header(size), head, body, tail)
        else:
            protocol = self._ws.protocol
            protocol.send_text(head + body + tail)
            self._parts += protocol.data_to_send()
        self._size += size
        if self._size >= FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        """Write what waits, in one write."""
        if not self._parts:
            return
        parts, self._parts, self._size = self._parts, [], 0
        ws = self._ws
        # Frames are only added while the socket is open, and nothing else runs
        # between that and the end of the tick; a socket closed since (aborted by
        # a fault) has nowhere to write them.
        if ws.protocol.state is State.OPEN and not ws.transport.is_closing():
            ws.transport.write(b"".join(parts))
