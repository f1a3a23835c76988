#
# Copyright (c) 2026, pipecat-cartesia-ctx contributors
#
# SPDX-License-Identifier: BSD 2-Clause License
#

"""A voice bot in Pipecat's usual shape, with CartesiaContextTTSService as its voice.

Copy it and swap in the LLM, speech-to-text and transport of your choice; the
TTS line is the only one this package changes. It needs real services:

    pip install -e . "pipecat-ai[runner,webrtc,daily,silero,openai,cartesia]"  # in this repo
    export CARTESIA_API_KEY=... OPENAI_API_KEY=...
    python examples/foundational_voice_bot.py               # browser, at http://localhost:7860
    python examples/foundational_voice_bot.py -t daily      # a Daily room
    python examples/foundational_voice_bot.py -t twilio     # a phone call: 8 kHz, handled natively

Without keys, run ``examples/voice_bot_offline.py`` instead: the same service on
the local emulator.
"""

import os

from loguru import logger
from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.frames.frames import LLMRunFrame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import (
    LLMContextAggregatorPair,
    LLMUserAggregatorParams,
)
from pipecat.runner.types import RunnerArguments
from pipecat.runner.utils import create_transport
from pipecat.services.cartesia.stt import CartesiaSTTService
from pipecat.services.openai.llm import OpenAILLMService
from pipecat.transports.base_transport import BaseTransport, TransportParams
from pipecat.workers.runner import WorkerRunner

from pipecat_cartesia_ctx import CartesiaContextTTSService


def _daily_params():
    from pipecat.transports.daily.transport import DailyParams

    return DailyParams(audio_in_enabled=True, audio_out_enabled=True)


def _twilio_params():
    from pipecat.transports.websocket.fastapi import FastAPIWebsocketParams

    return FastAPIWebsocketParams(audio_in_enabled=True, audio_out_enabled=True)


# Made lazily, once the runner knows which transport was asked for.
transport_params = {
    "webrtc": lambda: TransportParams(audio_in_enabled=True, audio_out_enabled=True),
    "daily": _daily_params,
    "twilio": _twilio_params,
}


async def run_bot(transport: BaseTransport, runner_args: RunnerArguments):
    """Build the pipeline on ``transport`` and run it until the user leaves."""
    stt = CartesiaSTTService(api_key=os.environ["CARTESIA_API_KEY"])

    tts = CartesiaContextTTSService(
        api_key=os.environ["CARTESIA_API_KEY"],
        settings=CartesiaContextTTSService.Settings(
            voice="a0e99841-438c-4a64-b679-ae501e7d6091",  # Barbershop Man
            model="sonic-3",
        ),
        # Segments end at sentences (the default); "clause" for the fastest first audio.
        flush_on="sentence",
    )

    llm = OpenAILLMService(
        api_key=os.environ["OPENAI_API_KEY"],
        settings=OpenAILLMService.Settings(
            system_instruction=(
                "You are a friendly assistant in a voice call. Your answers are spoken "
                "aloud: no lists, no emojis, short sentences."
            ),
        ),
    )

    context = LLMContext()
    user_aggregator, assistant_aggregator = LLMContextAggregatorPair(
        context, user_params=LLMUserAggregatorParams(vad_analyzer=SileroVADAnalyzer())
    )

    pipeline = Pipeline(
        [
            transport.input(),
            stt,
            user_aggregator,
            llm,
            tts,
            transport.output(),
            # After the transport: word timestamps put only what was played in the context.
            assistant_aggregator,
        ]
    )

    worker = PipelineWorker(
        pipeline,
        params=PipelineParams(enable_metrics=True, enable_usage_metrics=True),
        idle_timeout_secs=runner_args.pipeline_idle_timeout_secs,
    )
    runner = WorkerRunner(handle_sigint=runner_args.handle_sigint)
    await runner.add_workers(worker)

    @transport.event_handler("on_client_connected")
    async def on_client_connected(transport, client):
        logger.info("Client connected")
        context.add_message({"role": "developer", "content": "Greet the user briefly."})
        await worker.queue_frames([LLMRunFrame()])

    @transport.event_handler("on_client_disconnected")
    async def on_client_disconnected(transport, client):
        logger.info("Client disconnected")
        await runner.cancel()

    await runner.run()


async def bot(runner_args: RunnerArguments):
    """Entry point for Pipecat's runner (and Pipecat Cloud)."""
    transport = await create_transport(runner_args, transport_params)
    await run_bot(transport, runner_args)


if __name__ == "__main__":
    from pipecat.runner.run import main

    main()
