"""The API key never reaches a log: ours (loguru) nor the websockets library's (standard logging).

Each test captures every record of a whole session, both sides of the socket
(our client and the in-process emulator), at the most verbose levels, then
looks for the key in every message, every argument and every traceback. The
websockets library prints the handshake headers at DEBUG, so each test also
checks that those lines were captured, redacted: a test that captured nothing
would prove nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from helpers import collect, new_context
from loguru import logger
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from wire_helpers import ends, read_until, wire

from pipecat_cartesia_ctx.client import CartesiaConnection
from pipecat_cartesia_ctx.protocol import AuthenticationError, Chunk, Done, FlushDone
from pipecat_cartesia_ctx.redact import MASK, RedactingLoggerAdapter, redact

SECRET = "sk_car_TESTSECRET1234567890abcdef"
OTHER_KEY = "sk_car_SOMEONEELSE0987654321zyx"
TOKEN = "tok_TESTSECRETTOKEN1234567890"
WEBSOCKETS_LOGGERS = ("websockets", "websockets.client", "websockets.server")

# A raw client in a test is not our code: its own logs go nowhere, so that
# what is captured is what our client and our emulator log.
_RAW_CLIENT_LOGGER = logging.getLogger("tests.raw_client")
_RAW_CLIENT_LOGGER.propagate = False


@dataclass
class Captured:
    """Every log record of a test, formatted as a handler would write it."""

    records: list[tuple[str, str]] = field(default_factory=list)  # (logger name, text)
    loguru: list[str] = field(default_factory=list)

    def texts(self) -> Iterator[str]:
        yield from (text for _, text in self.records)
        yield from self.loguru

    def leaks(self, secret: str) -> list[str]:
        return [text for text in self.texts() if secret in text]

    def lines(self, name: str, needle: str) -> list[str]:
        return [t for n, t in self.records if n.startswith(name) and needle in t]


class _Recorder(logging.Handler):
    def __init__(self, captured: Captured):
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self._captured = captured

    def emit(self, record: logging.LogRecord) -> None:
        # The message as formatted, the raw arguments and any traceback: a
        # handler with another format might print any of them.
        text = f"{self.format(record)} | msg={record.msg!r} args={record.args!r}"
        self._captured.records.append((record.name, text))


@pytest.fixture
def captured() -> Iterator[Captured]:
    """Capture loguru at TRACE and standard logging at DEBUG, websockets included."""
    cap = Captured()
    root = logging.getLogger()
    saved_root = root.level
    saved = {
        n: (logging.getLogger(n).level, logging.getLogger(n).propagate) for n in WEBSOCKETS_LOGGERS
    }
    handler = _Recorder(cap)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    for name in WEBSOCKETS_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG)
        logging.getLogger(name).propagate = True
    # diagnose=True prints the variables of each frame of a traceback: strictest.
    sink = logger.add(
        lambda m: cap.loguru.append(str(m)),
        level="TRACE",
        format="{level} {name}:{function} {message} {extra}\n{exception}",
        diagnose=True,
    )
    yield cap
    logger.remove(sink)
    root.removeHandler(handler)
    root.setLevel(saved_root)
    for name, (level, propagate) in saved.items():
        logging.getLogger(name).setLevel(level)
        logging.getLogger(name).propagate = propagate


async def test_a_whole_client_session_logs_no_key_on_either_side(make_emulator, captured):
    emu = await make_emulator(api_key=SECRET)
    async with await CartesiaConnection.connect(SECRET, emu.url) as conn:
        ctx = new_context(conn)
        await ctx.push("Stay hungry, ")
        assert await ctx.flush() == 1
        await ctx.push("stay foolish.")
        await ctx.no_more_inputs()
        events = await collect(ctx)
        cancelled = new_context(conn)
        await cancelled.push("Never mind what I was saying.")
        await cancelled.cancel()
    assert sum(len(e.audio) for e in events if isinstance(e, Chunk)) > 0
    assert any(isinstance(e, FlushDone) for e in events)
    assert isinstance(events[-1], Done)
    refusing = await make_emulator(api_key=OTHER_KEY)
    with pytest.raises(AuthenticationError):
        await CartesiaConnection.connect(SECRET, refusing.url)
    await emu.stop()
    await refusing.stop()

    assert captured.leaks(SECRET) == []
    # Not vacuous: both sides' handshake lines were captured, the key masked.
    assert len(captured.lines("websockets.client", f"X-API-Key: {MASK}")) == 2
    assert len(captured.lines("websockets.server", f"X-API-Key: {MASK}")) == 2
    assert captured.lines("websockets.client", "Cartesia-Version: 2026-03-01"), "rest intact"
    assert any("Connected to Cartesia" in line for line in captured.loguru)
    assert any("refused a connection: HTTP 401" in line for line in captured.loguru)


@pytest.mark.parametrize(
    ("how", "suffix", "headers", "shown"),
    [
        ("bearer", "", {"Authorization": f"Bearer {SECRET}"}, f"Authorization: Bearer {MASK}"),
        ("api_key", f"?api_key={SECRET}", {}, f"?api_key={MASK}"),
        ("access_token", f"?cartesia_version=2026-03-01&access_token={TOKEN}", {}, MASK),
    ],
)
async def test_the_emulator_logs_no_key_however_it_was_sent(
    make_emulator, captured, how, suffix, headers, shown
):
    emu = await make_emulator(api_key=SECRET, access_tokens={TOKEN})
    url = emu.url + suffix
    async with connect(url, additional_headers=headers, logger=_RAW_CLIENT_LOGGER) as ws:
        await ws.send(wire("c", "Hello there.", cont=False))
        assert isinstance((await read_until(ws, ends("c")))[-1], Done)
    await emu.record.wait_for(lambda r: all(c.closed for c in r.connections))
    # And refused: a wrong key is logged no more than a right one.
    wrong = url.replace(SECRET, OTHER_KEY).replace(TOKEN, OTHER_KEY)
    wrong_headers = {k: v.replace(SECRET, OTHER_KEY) for k, v in headers.items()}
    with pytest.raises(InvalidStatus):
        await connect(wrong, additional_headers=wrong_headers, logger=_RAW_CLIENT_LOGGER)
    await emu.stop()

    assert [c.auth for c in emu.record.connections] == [how]
    for secret in (SECRET, TOKEN, OTHER_KEY):
        assert captured.leaks(secret) == []
    assert len(captured.lines("websockets.server", shown)) == 2
    assert all(SECRET not in c.path and TOKEN not in c.path for c in emu.record.connections)


# -- the redaction itself -----------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("> X-API-Key: abc", f"> X-API-Key: {MASK}"),
        ("< x-api-key:abc", f"< x-api-key:{MASK}"),
        ("> Authorization: Bearer abc.def", f"> Authorization: Bearer {MASK}"),
        ("> Authorization: abc", f"> Authorization: {MASK}"),
        ("> Cookie: a=1; b=2", f"> Cookie: {MASK}"),
        (
            "{'X-API-Key': 'abc', 'Cartesia-Version': 'v'}",
            f"{{'X-API-Key': '{MASK}', 'Cartesia-Version': 'v'}}",
        ),
        ('{"api_key": "abc"}', f'{{"api_key": "{MASK}"}}'),
        (
            "< GET /tts/websocket?api_key=abc&x=1 HTTP/1.1",
            f"< GET /tts/websocket?api_key={MASK}&x=1 HTTP/1.1",
        ),
        ("ws://h/p?x=1&ACCESS_TOKEN=abc#f", f"ws://h/p?x=1&ACCESS_TOKEN={MASK}#f"),
        ("> Cartesia-Version: 2026-03-01", "> Cartesia-Version: 2026-03-01"),
        ("> Host: 127.0.0.1:8080", "> Host: 127.0.0.1:8080"),
    ],
)
def test_secrets_are_masked_by_header_and_parameter_name(text, expected):
    assert redact(text) == expected


def test_a_known_secret_is_masked_wherever_it_appears():
    assert redact(f"bad key {SECRET}!", secrets=[SECRET]) == f"bad key {MASK}!"
    # Too short to mask everywhere without garbling every message.
    assert redact("a key k", secrets=["k"]) == "a key k"


def test_the_adapter_masks_a_traceback_that_quotes_the_key(captured):
    log = RedactingLoggerAdapter(logging.getLogger("websockets.client"), secrets=[SECRET])
    try:
        raise ValueError(f"header value {SECRET} is invalid")
    except ValueError:
        log.debug("! failed: %s", "details", exc_info=True)
    log.debug("> %s: %s", "Host", "example.com")
    assert captured.leaks(SECRET) == []
    assert captured.lines("websockets.client", f"header value {MASK} is invalid")
    assert captured.lines("websockets.client", "! failed: details")
    assert captured.lines("websockets.client", "> Host: example.com")
