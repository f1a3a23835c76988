"""The floor for `emulator_load.py`: a server that only sends the audio, on the same schedule.

Usage (``emulator_load.py --floor`` starts it in place of the emulator)::

    python3 benchmarks/floor_server.py --first-chunk-ms 90 --speed 1 --chunk-ms 40

It answers the WebSocket upgrade, reads each stream's requests, works out how
many audio bytes and words the emulator's voice gives the text (its layout
only), and sends that many bytes in prebuilt chunk frames of zeros, every
stream's chunks due from one timer, then one timestamps message and ``done``.
No synthesis, no protocol state, no records: what any server written in Python
with asyncio pays on this machine for the same frames at the same times
(wakeups, system calls, the loop). The emulator's cost above it is its own.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import heapq
import itertools
import json
import signal

from load_client import RATE, WIDTH

from pipecat_cartesia_ctx.emulator import SyntheticVoice

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_WINDOW_S = 0.0005  # as the emulator's pacer


def frame(payload: bytes) -> bytes:
    """An unmasked text frame (RFC 6455, 5.2)."""
    size = len(payload)
    if size < 126:
        return bytes((0x81, size)) + payload
    if size < 65536:
        return b"\x81\x7e" + size.to_bytes(2, "big") + payload
    return b"\x81\x7f" + size.to_bytes(8, "big") + payload


def chunk_frame(context_id: str, size: int) -> bytes:
    """A chunk of ``size`` zero bytes, keyed as the emulator's (the client reads them so)."""
    data = base64.b64encode(bytes(size)).decode()
    message = {"type": "chunk", "context_id": context_id, "data": data, "done": False}
    return frame(json.dumps(message, separators=(",", ":")).encode())


class Pacer:
    """Calls functions when due, from one timer (the emulator's design, without its extras)."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self._loop = loop
        self._heap: list = []
        self._order = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._firing = False

    def call_at(self, when: float, callback) -> None:
        heapq.heappush(self._heap, (when, next(self._order), callback))
        if self._firing:
            return  # armed once the wakeup's calls have run, as the emulator's pacer does
        if self._timer is None or when + _WINDOW_S < self._timer.when():
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self._loop.call_at(self._heap[0][0] + _WINDOW_S, self._fire)

    def _fire(self) -> None:
        self._timer = None
        now = self._loop.time()
        self._firing = True
        while self._heap and self._heap[0][0] <= now:
            heapq.heappop(self._heap)[2]()
        self._firing = False
        if self._heap:
            self._timer = self._loop.call_at(self._heap[0][0] + _WINDOW_S, self._fire)


class FloorStream(asyncio.Protocol):
    """One connection: its requests in, its audio out on schedule."""

    def __init__(self, pacer: Pacer, pacing: argparse.Namespace, voice: SyntheticVoice):
        self._pacer, self._pacing, self._voice = pacer, pacing, voice
        self._loop = asyncio.get_running_loop()
        self._buf = bytearray()
        self._open = False
        self._transport: asyncio.Transport | None = None
        self._context_id = ""
        self._total = self._sent = self._words = 0
        self._closed = self._started = False
        self._full: bytes = b""
        self._size = max(1, round(pacing.chunk_ms / 1000.0 * RATE)) * WIDTH
        self._bytes_per_s = RATE * WIDTH * pacing.speed
        self._start = 0.0

    def connection_made(self, transport):
        self._transport = transport

    def data_received(self, data: bytes):
        self._buf += data
        if not self._open:
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self._buf[:end]).decode("latin-1")
            del self._buf[: end + 4]
            key = next(
                line.split(":", 1)[1].strip()
                for line in head.split("\r\n")
                if line.lower().startswith("sec-websocket-key:")
            )
            accept = base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest()).decode()
            self._transport.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept.encode() + b"\r\n\r\n"
            )
            self._open = True
        while len(self._buf) >= 2:
            size, head = self._buf[1] & 0x7F, 2
            if size == 126:
                size, head = int.from_bytes(self._buf[2:4], "big"), 4
            elif size == 127:
                size, head = int.from_bytes(self._buf[2:10], "big"), 10
            if len(self._buf) < head + 4 + size:
                return
            mask = bytes(self._buf[head : head + 4]) * (size // 4 + 1)
            body = self._buf[head + 4 : head + 4 + size]
            payload = (int.from_bytes(body, "big") ^ int.from_bytes(mask[:size], "big")).to_bytes(
                size, "big"
            )
            del self._buf[: head + 4 + size]
            self._request(json.loads(payload))

    def _request(self, request: dict) -> None:
        if not self._context_id:
            self._context_id = request["context_id"]
            self._full = chunk_frame(self._context_id, self._size)
        t = 0.0
        for word, sound, pause in self._voice.plan(request["transcript"]):
            t += sound + pause
            self._words += word is not None
        self._total += round(t * RATE) * WIDTH
        self._closed = not request["continue"]
        if not self._started:
            self._started = True
            self._start = self._loop.time() + self._pacing.first_chunk_ms / 1000.0
            self._pacer.call_at(self._start, self._step)

    def _step(self) -> None:
        if self._sent >= self._total:
            if self._closed:
                words = json.dumps(
                    {"type": "timestamps", "word_timestamps": {"words": ["w"] * self._words}}
                )
                done = json.dumps({"type": "done", "context_id": self._context_id, "done": True})
                self._transport.write(frame(words.encode()) + frame(done.encode()))
                return
            self._pacer.call_at(self._loop.time() + 0.01, self._step)  # more text may come
            return
        size = min(self._size, self._total - self._sent)
        self._transport.write(
            self._full if size == self._size else chunk_frame(self._context_id, size)
        )
        self._sent += size
        self._pacer.call_at(self._start + self._sent / self._bytes_per_s, self._step)


async def serve(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    pacer, voice = Pacer(loop), SyntheticVoice()
    server = await loop.create_server(lambda: FloorStream(pacer, args, voice), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    print(f"Floor server listening on ws://127.0.0.1:{port}/tts/websocket", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--first-chunk-ms", type=float, default=90.0)
    parser.add_argument("--speed", type=float, default=1.0)
    parser.add_argument("--chunk-ms", type=float, default=40.0)
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
