"""Cartesia's WebSocket quickstarts, with the official SDK unmodified, against `cartesia-emulator`.

Each test makes the calls one of Cartesia's examples makes (docs.cartesia.ai:
the realtime TTS quickstart, and the WebSocket continuations, flushing,
concurrent contexts and response handling examples, with their basic request),
in the sync client and, where the page has one, the async client, in both
generations of the docs: contexts with defaults and ``push`` (SDK 4.x), and the
earlier bare ``context()`` with ``send(..., continue_=True)`` whose close carries
the SDK's own defaults. The texts and ids are ours; the calls are theirs.

The server is the emulator's command line in its own process, with its
defaults, as a user would start it.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest
from cartesia import AsyncCartesia, Cartesia

from pipecat_cartesia_ctx.audio import encode_float
from pipecat_cartesia_ctx.emulator import SyntheticVoice

VOICE_ID = "f786b574-daa5-4673-aa0c-cbe3e8534c02"
F32_44K = {"container": "raw", "encoding": "pcm_f32le", "sample_rate": 44100}
S16_44K = {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 44100}
VOICE_MODEL = SyntheticVoice()
PACING = ["--first-chunk-ms", "5", "--speed", "40", "--chunk-ms", "40"]


@pytest.fixture(scope="module")
def emulator_url() -> Iterator[str]:
    """``ws://127.0.0.1:PORT``: a `cartesia-emulator` process, paced so contexts interleave."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARTESIA_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipecat_cartesia_ctx.emulator", "--port", "0", *PACING],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        line = proc.stdout.readline()
        match = re.search(r"ws://(127\.0\.0\.1:\d+)/tts/websocket", line)
        assert match, f"the emulator did not start: {line!r}"
        yield f"ws://{match.group(1)}"
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def expected(*texts: str, fmt=F32_44K) -> bytes:
    """The emulator's audio of consecutive inputs of one context."""
    out, offset = b"", 0
    for text in texts:
        samples = VOICE_MODEL.synthesize(text, fmt["sample_rate"], offset_samples=offset).samples
        offset += len(samples)
        out += encode_float(samples, fmt["encoding"])
    return out


def audio_and_types(responses) -> tuple[bytes, list[str]]:
    audio = b"".join(r.audio for r in responses if r.type == "chunk" and r.audio)
    return audio, [r.type for r in responses]


# -- the realtime TTS quickstart (sync only on its page) -------------------------------


def test_realtime_quickstart(emulator_url):
    client = Cartesia(api_key="my-key", websocket_base_url=emulator_url)
    parts = ["Hi there! ", "Welcome to ", "the local emulator."]
    played = bytearray()
    with client.tts.websocket_connect() as connection:
        ctx = connection.context(
            model_id="sonic-3.5", voice={"mode": "id", "id": VOICE_ID}, output_format=F32_44K
        )
        for part in parts:
            ctx.push(part)
        ctx.no_more_inputs()
        for response in ctx.receive():
            if response.type == "chunk" and response.audio:
                played += response.audio
            elif response.type == "done":
                break
            assert response.type != "error", response
    assert bytes(played) == expected(*_sentences("".join(parts)))


def _sentences(text: str) -> list[str]:
    """How managed buffering releases text: at each sentence end followed by a space."""
    return [s for s in re.split(r"(?<=[.!?])(?= )", text) if s]


# -- continuations -----------------------------------------------------------------------


def test_continuations_sync(emulator_url):
    client = Cartesia(api_key="my-key", websocket_base_url=emulator_url)
    with client.tts.websocket_connect() as connection:
        ctx = connection.context(
            model_id="sonic-latest", voice=VOICE_ID, output_format=S16_44K, language="en"
        )
        for part in ["The road ", "goes ever ", "on and ", "on."]:
            ctx.push(part)
        ctx.no_more_inputs()
        audio, types = audio_and_types(list(ctx.receive()))
    assert "error" not in types
    assert types[-1] == "done"
    assert audio == expected("The road goes ever on and on.", fmt=S16_44K)


async def test_continuations_async_with_a_bare_context_and_send(emulator_url):
    client = AsyncCartesia(api_key="my-key", websocket_base_url=emulator_url)
    parts = ["The only thing we have ", "to say ", "is this."]
    async with client.tts.websocket_connect() as connection:
        ctx = connection.context()
        for part in parts:
            await ctx.send(
                model_id="sonic-3",
                transcript=part,
                voice={"mode": "id", "id": VOICE_ID},
                output_format=F32_44K,
                continue_=True,
            )
        # Its close carries the SDK's defaults: sonic-latest, another voice, the same format.
        await ctx.no_more_inputs()
        responses = [r async for r in ctx.receive()]
    audio, types = audio_and_types(responses)
    assert "error" not in types
    assert types[-1] == "done"
    assert audio == expected("".join(parts))


# -- flushing ----------------------------------------------------------------------------


def test_flushing_sync(emulator_url):
    client = Cartesia(api_key="my-key", websocket_base_url=emulator_url)
    by_flush: dict[int, bytearray] = {}
    flushes_done = []
    with client.tts.websocket_connect() as connection:
        ctx = connection.context(
            model_id="sonic-3", voice={"mode": "id", "id": VOICE_ID}, output_format=F32_44K
        )
        ctx.push("Stay hungry, ")
        ctx.push("", flush=True)
        ctx.push("stay foolish.")
        ctx.no_more_inputs()
        for response in ctx.receive():
            if response.type == "chunk" and response.audio:
                by_flush.setdefault(response.flush_id or 0, bytearray()).extend(response.audio)
            elif response.type == "flush_done":
                flushes_done.append(response.flush_id)
            assert response.type != "error", response
    assert flushes_done == [1]
    first = expected("Stay hungry, ")
    assert bytes(by_flush[1]) == first
    assert bytes(by_flush[1] + by_flush[2]) == expected("Stay hungry, ", "stay foolish.")


async def test_flushing_async_with_a_bare_context_and_send(emulator_url):
    client = AsyncCartesia(api_key="my-key", websocket_base_url=emulator_url)
    common = {
        "model_id": "sonic-3",
        "voice": {"mode": "id", "id": VOICE_ID},
        "output_format": F32_44K,
        "continue_": True,
    }
    by_flush: dict[int, bytearray] = {}
    async with client.tts.websocket_connect() as connection:
        ctx = connection.context()
        await ctx.send(transcript="First transcript.", **common)
        await ctx.send(transcript="", flush=True, **common)
        await ctx.send(transcript="Second transcript.", **common)
        await ctx.no_more_inputs()
        responses = [r async for r in ctx.receive()]
    for r in responses:
        if r.type == "chunk" and r.audio:
            by_flush.setdefault(r.flush_id or 0, bytearray()).extend(r.audio)
    types = [r.type for r in responses]
    assert "error" not in types
    assert [r.flush_id for r in responses if r.type == "flush_done"] == [1]
    assert bytes(by_flush[1]) == expected("First transcript.")
    assert bytes(by_flush[1] + by_flush[2]) == expected("First transcript.", "Second transcript.")


# -- concurrent contexts -----------------------------------------------------------------

ONE = "Context one is speaking now. It says a few sentences, so that its audio takes a while."
TWO = "Context two has another message. Its audio is interleaved with the first on the wire."


def test_concurrent_contexts_sync(emulator_url):
    client = Cartesia(api_key="my-key", websocket_base_url=emulator_url)
    with client.tts.websocket_connect() as connection:
        contexts = [
            connection.context(
                model_id="sonic-3", voice={"mode": "id", "id": VOICE_ID}, output_format=F32_44K
            )
            for _ in range(2)
        ]
        for ctx, text in zip(contexts, (ONE, TWO), strict=True):
            ctx.push(text)
            ctx.no_more_inputs()
        # Sequentially: the SDK queues the other context's events while one is read.
        results = [audio_and_types(list(ctx.receive())) for ctx in contexts]
    for (audio, types), text in zip(results, (ONE, TWO), strict=True):
        assert "error" not in types
        assert audio == expected(*_sentences(text))


async def test_concurrent_contexts_async(emulator_url):
    client = AsyncCartesia(api_key="my-key", websocket_base_url=emulator_url)
    async with client.tts.websocket_connect() as connection:
        contexts = [
            connection.context(
                model_id="sonic-3", voice={"mode": "id", "id": VOICE_ID}, output_format=F32_44K
            )
            for _ in range(2)
        ]
        for ctx, text in zip(contexts, (ONE, TWO), strict=True):
            await ctx.push(text)
            await ctx.no_more_inputs()

        async def collect(ctx):
            return audio_and_types([r async for r in ctx.receive()])

        results = await asyncio.gather(*(collect(ctx) for ctx in contexts))
    for (audio, types), text in zip(results, (ONE, TWO), strict=True):
        assert "error" not in types
        assert audio == expected(*_sentences(text))


# -- response handling and the basic request ------------------------------------------------


def test_response_handling_with_a_request_that_names_no_context(emulator_url):
    client = Cartesia(api_key="my-key", websocket_base_url=emulator_url)
    audio, words = bytearray(), []
    with client.tts.websocket_connect() as connection:
        connection.send(
            {
                "model_id": "sonic-3",
                "transcript": "Hello, world!",
                "voice": {"mode": "id", "id": "voice-id"},
                "output_format": F32_44K,
                "add_timestamps": True,
            }
        )
        for response in connection:
            if response.type == "chunk" and response.audio:
                audio += response.audio
            elif response.type == "timestamps":
                words += response.word_timestamps.words
            elif response.type == "error":
                raise AssertionError(response)
            if response.done:
                break
    assert bytes(audio) == expected("Hello, world!")
    assert words == ["Hello,", "world!"]


def test_response_handling_with_a_context_closed_by_its_only_push(emulator_url):
    client = Cartesia(api_key="my-key", websocket_base_url=emulator_url)
    with client.tts.websocket_connect() as connection:
        ctx = connection.context(
            model_id="sonic-latest", voice=VOICE_ID, output_format=S16_44K, language="en"
        )
        ctx.push("Hello, world!", continue_=False)
        responses = []
        for response in ctx.receive():
            responses.append(response)
            if response.done:
                break
    audio, types = audio_and_types(responses)
    assert types[-1] == "done"
    assert "error" not in types
    assert audio == expected("Hello, world!", fmt=S16_44K)


async def test_basic_request_async(emulator_url):
    client = AsyncCartesia(api_key="my-key", websocket_base_url=emulator_url)
    audio = bytearray()
    async with client.tts.websocket_connect() as connection:
        await connection.send(
            {
                "model_id": "sonic-3",
                "transcript": "Hello, world!",
                "voice": {"mode": "id", "id": VOICE_ID},
                "output_format": F32_44K,
            }
        )
        async for response in connection:
            if response.type == "chunk" and response.audio:
                audio += response.audio
            assert response.type != "error", response
            if response.done:
                break
    assert bytes(audio) == expected("Hello, world!")
