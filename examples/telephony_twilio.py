#
# Copyright (c) 2026, pipecat-cartesia-ctx contributors
#
# SPDX-License-Identifier: BSD 2-Clause License
#

"""A phone bot at 8 kHz, offline: pipecat's WebSocket server with Twilio's serializer, and a caller.

    python examples/telephony_twilio.py            # offline, on the emulator
    CARTESIA_API_KEY=... python examples/telephony_twilio.py

The bot is a real Pipecat pipeline: `SingleClientWebsocketServerTransport`
with `TwilioFrameSerializer` (mu-law at 8 kHz, as Twilio Media Streams send
it), a voice-activity detector that turns the caller's speech into a barge-in,
and `CartesiaContextTTSService` asked for 8 kHz. The caller is a fake Twilio
Media Streams client: it sends ``connected``, ``start``, ``media`` and
``stop`` as Twilio does, decodes the bot's mu-law media into ``out/call.wav``,
speaks over the second answer, and checks the bot sent ``clear``. The call's
timeline is printed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import socket
import time
import wave
from pathlib import Path

import numpy as np
import websockets
from pipecat.audio.vad.vad_analyzer import VADAnalyzer, VADParams
from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    EndFrame,
    Frame,
    InterruptionFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
    VADUserStartedSpeakingFrame,
)
from pipecat.observers.base_observer import BaseObserver, FramePushed
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.audio.vad_processor import VADProcessor
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.serializers.twilio import TwilioFrameSerializer
from pipecat.transports.websocket.server import (
    SingleClientWebsocketServerParams,
    SingleClientWebsocketServerTransport,
)
from pipecat.workers.runner import WorkerRunner

from pipecat_cartesia_ctx import CartesiaContextTTSService
from pipecat_cartesia_ctx.audio import encode_float, to_pcm16
from pipecat_cartesia_ctx.emulator import CartesiaEmulator, SyntheticVoice

VOICE = "a0e99841-438c-4a64-b679-ae501e7d6091"
RATE = 8000
STREAM_SID = "MZ00000000000000000000000000000000"
CALL_SID = "CA00000000000000000000000000000000"
ANSWERS = [
    "Thanks for calling the clinic. Dr. Smith can see you on Tuesday at 3:45.",
    "I can also read you the full list of our opening hours, which change every week in summer, "
    "so please listen carefully to the end.",
]
BARGE_IN_AFTER = 1.0  # seconds into the second answer
LISTEN_AFTER_CLEAR = 1.0  # seconds the caller listens on after the clear


class EnergyVAD(VADAnalyzer):
    """Voice activity by loudness: deterministic for a scripted caller (use Silero for people)."""

    def num_frames_required(self) -> int:
        """Analyse 20 ms at a time."""
        return 160  # 20 ms at 8 kHz

    def voice_confidence(self, buffer: bytes) -> float:
        """Loudness as confidence: silence is 0, a raised voice 1."""
        samples = np.frombuffer(buffer, dtype="<i2").astype(np.float32) / 32768.0
        rms = float(np.sqrt(np.mean(samples**2))) if len(samples) else 0.0
        return min(1.0, rms * 10)


class BargeIn(FrameProcessor):
    """The caller started speaking: interrupt the bot."""

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        """Pass every frame on; interrupt when the caller starts speaking."""
        await super().process_frame(frame, direction)
        await self.push_frame(frame, direction)
        if isinstance(frame, VADUserStartedSpeakingFrame):
            await self.broadcast_interruption()


class BotLog(BaseObserver):
    """Puts the bot's side on the call's timeline: answers starting and stopping, the barge-in."""

    def __init__(self, caller: Caller, tts, barge_in: BargeIn, output):
        super().__init__()
        self._caller, self._tts, self._barge_in, self._output = caller, tts, barge_in, output
        self._answers = 0

    async def on_push_frame(self, data: FramePushed):
        """Mark the frames that shape the call, once each, where they start."""
        frame, mark = data.frame, self._caller.mark
        if data.direction is not FrameDirection.DOWNSTREAM:
            return
        if data.source is self._tts and isinstance(frame, TTSStartedFrame):
            self._answers += 1
            mark(f"bot: answer {self._answers}, its text starts going to Cartesia")
        elif data.source is self._tts and isinstance(frame, TTSStoppedFrame):
            mark(f"bot: answer {self._answers}, all its audio is in from Cartesia")
        elif data.source is self._output and isinstance(frame, BotStartedSpeakingFrame):
            mark("bot starts speaking on the line")
        elif data.source is self._output and isinstance(frame, BotStoppedSpeakingFrame):
            mark("bot stops speaking on the line")
        elif data.source is self._barge_in and isinstance(frame, InterruptionFrame):
            mark("bot: the caller's speech is detected: InterruptionFrame")


def answer_frames(text: str) -> list[Frame]:
    """An LLM answer as it streams: a token per word."""
    words = text.split(" ")
    tokens = [w + " " for w in words[:-1]] + [words[-1]]
    return [LLMFullResponseStartFrame(), *map(LLMTextFrame, tokens), LLMFullResponseEndFrame()]


class Caller:
    """A fake Twilio Media Streams client: what Twilio sends, and what a listener hears."""

    def __init__(self, url: str):
        self.url = url
        self.heard = bytearray()  # 16-bit PCM at 8 kHz, in arrival order
        self.timeline: list[tuple[float, str]] = []
        self.cleared = asyncio.Event()
        self.after_clear = 0  # media messages received after the clear
        self._start = time.monotonic()

    def mark(self, what: str):
        """Note a moment of the call."""
        self.timeline.append((time.monotonic() - self._start, what))

    async def call(self, barge_in_at: float):
        """Call, listen, speak over the bot at ``barge_in_at`` s of its audio, and hang up."""
        async with websockets.connect(self.url) as ws:
            await ws.send(
                json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})
            )
            await ws.send(
                json.dumps(
                    {
                        "event": "start",
                        "streamSid": STREAM_SID,
                        "start": {
                            "streamSid": STREAM_SID,
                            "callSid": CALL_SID,
                            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": RATE},
                        },
                    }
                )
            )
            self.mark("call starts")
            sender = asyncio.create_task(self._send_media(ws, barge_in_at))
            try:
                await self._receive(ws)
                # Listen on a moment: nothing of the interrupted answer may follow.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._receive(ws), LISTEN_AFTER_CLEAR)
            finally:
                sender.cancel()
            await ws.send(json.dumps({"event": "stop", "streamSid": STREAM_SID}))
            self.mark(f"caller hangs up ({self.after_clear} media messages after clear)")

    async def _send_media(self, ws, barge_in_at: float):
        """20 ms of silence at a time, as a phone line does; speech once the bot says enough."""
        chunk, sequence = 160, 0
        speaking_for = 0.0
        while True:
            seconds = len(self.heard) / 2 / RATE
            if seconds >= barge_in_at and speaking_for < 0.6:
                if speaking_for == 0.0:
                    self.mark(f"caller speaks over the bot ({seconds:.2f} s of bot audio heard)")
                t = np.arange(chunk) / RATE
                pcm = (0.3 * np.sin(2 * np.pi * 220 * t) * 32767).astype("<i2")
                speaking_for += 0.02
            else:
                pcm = np.zeros(chunk, dtype="<i2")
            sequence += 1
            mulaw = encode_float(pcm.astype(np.float32) / 32768.0, "pcm_mulaw")
            payload = base64.b64encode(mulaw).decode()
            message = {"event": "media", "streamSid": STREAM_SID, "sequenceNumber": str(sequence)}
            message["media"] = {"track": "inbound", "chunk": str(sequence), "payload": payload}
            await ws.send(json.dumps(message))
            await asyncio.sleep(0.02)

    async def _receive(self, ws):
        async for raw in ws:
            message = json.loads(raw)
            if message.get("event") == "media":
                self.after_clear += self.cleared.is_set()
                if not self.heard:
                    self.mark("first audio of the bot")
                self.heard += to_pcm16(base64.b64decode(message["media"]["payload"]), "pcm_mulaw")
            elif message.get("event") == "clear" and not self.cleared.is_set():
                self.mark("bot sends clear (its queued audio is dropped)")
                self.cleared.set()
                return


async def run(out: Path) -> int:
    """Run the bot and the call; 0 if the barge-in cleared the bot's audio."""
    api_key = os.getenv("CARTESIA_API_KEY")
    print("Real Cartesia API" if api_key else "Offline: using the local Cartesia emulator")
    async with CartesiaEmulator() as emulator:
        tts = CartesiaContextTTSService(
            api_key=api_key or "offline",
            settings=CartesiaContextTTSService.Settings(voice=VOICE),
            sample_rate=RATE,
            **({} if api_key else {"url": emulator.url}),
        )
        port = free_port()
        transport = SingleClientWebsocketServerTransport(
            host="127.0.0.1",
            port=port,
            params=SingleClientWebsocketServerParams(
                audio_in_enabled=True,
                audio_out_enabled=True,
                audio_in_sample_rate=RATE,
                audio_out_sample_rate=RATE,
                serializer=TwilioFrameSerializer(
                    STREAM_SID,
                    call_sid=CALL_SID,
                    params=TwilioFrameSerializer.InputParams(auto_hang_up=False),
                ),
            ),
        )
        vad = VADProcessor(vad_analyzer=EnergyVAD(params=VADParams(start_secs=0.1)))
        barge_in = BargeIn()
        caller = Caller(f"ws://127.0.0.1:{port}")
        worker = PipelineWorker(
            Pipeline([transport.input(), vad, barge_in, tts, transport.output()]),
            params=PipelineParams(audio_in_sample_rate=RATE, audio_out_sample_rate=RATE),
            cancel_on_idle_timeout=False,
            observers=[BotLog(caller, tts, barge_in, transport.output())],
        )
        # Speak over the second answer: the emulator's voice is deterministic, so
        # the first answer's length is known (the real API's is about the same).
        first = SyntheticVoice().synthesize(ANSWERS[0], RATE).samples
        barge_in_at = len(first) / RATE + BARGE_IN_AFTER

        @transport.event_handler("on_client_connected")
        async def on_connected(transport, websocket):
            await worker.queue_frames(answer_frames(ANSWERS[0]) + answer_frames(ANSWERS[1]))

        listening = asyncio.Event()

        @transport.event_handler("on_websocket_ready")
        async def on_ready(transport):
            listening.set()

        async def call():
            await asyncio.wait_for(listening.wait(), timeout=30)
            try:
                await asyncio.wait_for(caller.call(barge_in_at), timeout=60)
            finally:
                await worker.queue_frame(EndFrame())

        runner = WorkerRunner(handle_sigint=False)
        await runner.add_workers(worker)
        await asyncio.gather(runner.run(), call())
        outcomes = [c.outcome for c in emulator.record.contexts.values()]
    if not api_key:
        # Generation outruns playback: a context may be done before the barge-in,
        # its audio waiting in the transport, which the clear drops.
        print(f"Cartesia contexts, how each ended: {outcomes}")
    path = write_wav(out, caller.heard)
    print("\nThe call:")
    for at, what in sorted(caller.timeline):
        print(f"  {at:6.2f} s  {what}")
    print(f"\nWrote {path} ({len(caller.heard) / 2 / RATE:.2f} s heard at {RATE} Hz)")
    ok = caller.cleared.is_set() and caller.after_clear == 0
    print("clear received, nothing after it" if ok else "FAILED: no clear, or audio after it")
    return 0 if ok else 1


def free_port() -> int:
    """A loopback port nothing listens on, for the bot's WebSocket server."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def write_wav(out: Path, pcm: bytes) -> Path:
    """What the caller heard, as a WAV file."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "call.wav"
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(RATE)
        wav.writeframes(bytes(pcm))
    return path


def main() -> int:
    """Parse the arguments and run the call."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("out"))
    return asyncio.run(run(parser.parse_args().out))


if __name__ == "__main__":
    raise SystemExit(main())
