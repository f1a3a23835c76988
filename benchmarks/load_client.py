"""The load generator's side of `emulator_load.py`: the text, and lightweight WebSocket streams.

Each stream is one connection and one context. Its client is a minimal
WebSocket reader (an ``asyncio.Protocol``) that counts audio bytes and notes
when each chunk arrives without decoding the audio or the chunk's JSON, so the
load generator costs far less than the server it measures.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
import time
from dataclasses import dataclass, field

VOICE_ID = "a0e99841-438c-4a64-b679-ae501e7d6091"
RATE = 24000
ENCODING = "pcm_s16le"
WIDTH = 2
RUN_TIMEOUT_S = 600.0
_CHUNK_PREFIX = b'{"type":"chunk",'
_DATA_KEY = b'"data":"'


# -- text ---------------------------------------------------------------------


def vocabulary(size: int) -> list[str]:
    """``size`` distinct pseudo-words, shortest first (the commonest are short)."""
    onsets = ["", "b", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "st"]
    nuclei = ["a", "e", "i", "o", "u", "ai", "ou"]
    codas = ["", "n", "r", "s", "t", "nd"]
    syllables = [o + n + c for o in onsets for n in nuclei for c in codas]
    rng = random.Random(7)
    words: list[str] = []
    seen: set[str] = set()
    while len(words) < size:
        count = 1 + min(3, int(rng.expovariate(1.2)))
        word = "".join(rng.choice(syllables) for _ in range(count))
        if word not in seen:
            seen.add(word)
            words.append(word)
    return sorted(words, key=len)


def sentence(rng: random.Random, words: list[str], weights: list[float]) -> str:
    """One sentence of 6 to 16 words, capitalized, perhaps with a comma."""
    picked = rng.choices(words, weights, k=rng.randint(6, 16))
    picked[0] = picked[0].capitalize()
    if len(picked) > 8:
        picked[rng.randint(2, len(picked) - 3)] += ","
    return " ".join(picked) + rng.choice([".", ".", ".", "?", "!"]) + " "


def answers(rng: random.Random, pool: list[str], make, seconds: float, voice):
    """Sentences with at least ``seconds`` of audio; each with its expected samples and words.

    From ``pool`` when it has any (a fleet of bots with scripted answers), else new ones.
    """
    out: list[tuple[str, int, int]] = []
    total = 0.0
    while total < seconds:
        text = rng.choice(pool) if pool else make()
        samples, count = expected_audio(voice, text)
        out.append((text, samples, count))
        total += samples / RATE
    return out


def expected_audio(voice, text: str) -> tuple[int, int]:
    """Samples and words the emulator's voice gives ``text`` (its own layout rule)."""
    t, count = 0.0, 0
    for word, sound, pause in voice.plan(text):
        t += sound + pause
        count += word is not None
    return round(t * RATE), count


@dataclass
class StreamResult:
    """What one stream received."""

    sent_at: float = 0.0
    expected_bytes: int = 0
    expected_words: int = 0
    audio_bytes: int = 0
    words: int = 0
    done: bool = False
    errors: list[str] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)  # audio bytes before each chunk


class Stream(asyncio.Protocol):
    """One connection, one context; counts audio without decoding it."""

    def __init__(self, host: str, port: int):
        self.result = StreamResult()
        self.upgraded = asyncio.get_running_loop().create_future()
        self.finished = asyncio.get_running_loop().create_future()
        self._host = f"{host}:{port}"
        self._buf = bytearray()
        self._open = False
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport):
        self._transport = transport
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(
            (
                f"GET /tts/websocket HTTP/1.1\r\nHost: {self._host}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\nX-API-Key: bench\r\n"
                "Cartesia-Version: 2026-03-01\r\n\r\n"
            ).encode()
        )

    def connection_lost(self, exc):
        if not self.finished.done():
            self.result.errors.append(f"connection lost: {exc}")
            self.finished.set_result(None)
        if not self.upgraded.done():
            self.upgraded.set_exception(ConnectionError("closed during the handshake"))

    def send_json(self, obj: dict) -> None:
        payload = json.dumps(obj).encode()
        mask = os.urandom(4)
        n = len(payload)
        header = bytes([0x81])
        if n < 126:
            header += bytes([0x80 | n])
        elif n < 65536:
            header += bytes([0xFE]) + n.to_bytes(2, "big")
        else:
            header += bytes([0xFF]) + n.to_bytes(8, "big")
        keys = (mask * (n // 4 + 1))[:n]
        masked = (int.from_bytes(payload, "big") ^ int.from_bytes(keys, "big")).to_bytes(n, "big")
        assert self._transport is not None
        self._transport.write(header + mask + masked)

    def data_received(self, data: bytes):
        self._buf += data
        if not self._open:
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(self._buf[:end]).split(b"\r\n", 1)[0]
            del self._buf[: end + 4]
            if b" 101 " not in status:
                self.upgraded.set_exception(ConnectionError(status.decode(errors="replace")))
                return
            self._open = True
            self.upgraded.set_result(None)
        buf, pos, now = self._buf, 0, time.monotonic()
        while len(buf) - pos >= 2:
            length, head = buf[pos + 1] & 0x7F, 2
            if length == 126:
                if len(buf) - pos < 4:
                    break
                length, head = int.from_bytes(buf[pos + 2 : pos + 4], "big"), 4
            elif length == 127:
                if len(buf) - pos < 10:
                    break
                length, head = int.from_bytes(buf[pos + 2 : pos + 10], "big"), 10
            if len(buf) - pos < head + length:
                break
            opcode = buf[pos] & 0x0F
            payload = bytes(buf[pos + head : pos + head + length])
            pos += head + length
            if opcode == 1:
                self._message(payload, now)
            elif opcode == 8 and not self.finished.done():
                self.result.errors.append("closed by the server")
                self.finished.set_result(None)
        del buf[:pos]

    def _message(self, payload: bytes, now: float) -> None:
        result = self.result
        if payload.startswith(_CHUNK_PREFIX):
            start = payload.find(_DATA_KEY) + len(_DATA_KEY)
            end = payload.index(b'"', start)
            size = (end - start) // 4 * 3 - payload.count(b"=", end - 2, end)
            result.offsets.append(result.audio_bytes)
            result.arrivals.append(now)
            result.audio_bytes += size
            return
        msg = json.loads(payload)
        kind = msg.get("type")
        if kind == "timestamps":
            result.words += len(msg["word_timestamps"]["words"])
        elif kind == "error":
            result.errors.append(f"error event: {msg.get('message')}")
            self._finish()
        elif kind == "done":
            result.done = True
            self._finish()

    def _finish(self) -> None:
        if not self.finished.done():
            self.finished.set_result(None)
        assert self._transport is not None
        self._transport.close()


async def run_streams(
    port: int, texts: list[list[tuple[str, int, int]]], start_at: float, ramp_s: float
) -> list[StreamResult]:
    """Connect every stream, then start stream ``i`` at ``start_at + i * ramp / n``."""
    loop = asyncio.get_running_loop()
    streams: list[Stream] = []
    for _ in texts:
        _, stream = await loop.create_connection(
            lambda: Stream("127.0.0.1", port), "127.0.0.1", port
        )
        await stream.upgraded
        streams.append(stream)

    async def one(i: int, stream: Stream, parts: list[tuple[str, int, int]]):
        await asyncio.sleep(max(0.0, start_at + i * ramp_s / len(texts) - time.monotonic()))
        base = {
            "context_id": f"load-{i}",
            "model_id": "sonic-3",
            "voice": {"mode": "id", "id": VOICE_ID},
            "output_format": {"container": "raw", "encoding": ENCODING, "sample_rate": RATE},
            "language": "en",
            "add_timestamps": True,
            "max_buffer_delay_ms": 0,
        }
        stream.result.sent_at = time.monotonic()
        for text, samples, words in parts:
            stream.send_json({**base, "transcript": text, "continue": True})
            stream.result.expected_bytes += samples * WIDTH
            stream.result.expected_words += words
        stream.send_json({**base, "transcript": "", "continue": False})
        await stream.finished

    await asyncio.gather(
        *(one(i, s, t) for i, (s, t) in enumerate(zip(streams, texts, strict=True)))
    )
    return [s.result for s in streams]


def client_process(conn, port: int, texts, start_at: float, ramp_s: float) -> None:
    """A load-generator process: runs its streams, sends back results and its CPU time."""
    results = asyncio.run(
        asyncio.wait_for(run_streams(port, texts, start_at, ramp_s), RUN_TIMEOUT_S)
    )
    usage = os.times()
    conn.send((results, usage.user + usage.system))
    conn.close()
