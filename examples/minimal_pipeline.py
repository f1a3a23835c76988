#
# Copyright (c) 2026, pipecat-cartesia-ctx contributors
#
# SPDX-License-Identifier: BSD 2-Clause License
#

"""The smallest runnable pipeline: the service, a worker, a runner, and an observer.

    python examples/minimal_pipeline.py     # offline, on the emulator
    CARTESIA_API_KEY=... python examples/minimal_pipeline.py     # the real API

It speaks one `TTSSpeakFrame` and prints each segment as it leaves the service:
its `CartesiaFlushDoneFrame` (the segment's exact text) and its
`CartesiaSegmentMetricsData` (time to first byte on the wire, audio length).
"""

import asyncio
import os

from pipecat.frames.frames import EndFrame, MetricsFrame, TTSSpeakFrame
from pipecat.observers.base_observer import BaseObserver, FramePushed
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.workers.runner import WorkerRunner

from pipecat_cartesia_ctx import (
    CartesiaContextTTSService,
    CartesiaFlushDoneFrame,
    CartesiaSegmentMetricsData,
)
from pipecat_cartesia_ctx.emulator import CartesiaEmulator

VOICE = "a0e99841-438c-4a64-b679-ae501e7d6091"


class SegmentLog(BaseObserver):
    """Prints each segment's text and metrics as the TTS service pushes them."""

    def __init__(self, tts: CartesiaContextTTSService):
        super().__init__()
        self._tts = tts

    async def on_push_frame(self, data: FramePushed):
        """Print the segment frames and metrics the service pushes."""
        if data.source is not self._tts:
            return  # each frame once, as it leaves the service
        frame = data.frame
        if isinstance(frame, CartesiaFlushDoneFrame):
            print(f"segment {frame.flush_id} done: {frame.text!r}")
        elif isinstance(frame, MetricsFrame):
            for metrics in frame.data:
                if isinstance(metrics, CartesiaSegmentMetricsData):
                    ttfb = "none" if metrics.ttfb is None else f"{metrics.ttfb:.3f} s"
                    print(
                        f"segment {metrics.flush_id} metrics: first byte after {ttfb}, "
                        f"{metrics.audio_seconds:.2f} s of audio"
                    )


async def main():
    """Speak one frame through a one-processor pipeline and print what came out."""
    api_key = os.getenv("CARTESIA_API_KEY")
    async with CartesiaEmulator() as emulator:
        tts = CartesiaContextTTSService(
            api_key=api_key or "offline",
            settings=CartesiaContextTTSService.Settings(voice=VOICE),
            **({} if api_key else {"url": emulator.url}),
        )
        worker = PipelineWorker(
            Pipeline([tts]),
            params=PipelineParams(audio_out_sample_rate=24000, enable_metrics=True),
            observers=[SegmentLog(tts)],
        )
        await worker.queue_frames(
            [TTSSpeakFrame("Hello there. This pipeline runs offline, on the emulator."), EndFrame()]
        )
        runner = WorkerRunner(handle_sigint=False)
        await runner.add_workers(worker)
        await runner.run()
    print(tts.stats)


if __name__ == "__main__":
    asyncio.run(main())
