"""A real pipecat pipeline around one processor, driven by events instead of sleeps.

`run_test` (pipecat's helper) sends a fixed list of frames and collects what
comes out. Tests that must act *while* audio flows (an interruption in the
middle of a segment) use this instead: frames are queued at any time, and the
test awaits conditions on what has come out.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

from pipecat.frames.frames import EndFrame, Frame, StartFrame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.workers.runner import WorkerRunner


class Collector(FrameProcessor):
    """Records every frame going one way, and wakes waiters on each one."""

    def __init__(self, direction: FrameDirection):
        super().__init__()
        self.frames: list[Frame] = []
        self._direction = direction
        self._changed = asyncio.Event()

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if direction == self._direction and not isinstance(frame, StartFrame):
            self.frames.append(frame)
            self._changed.set()
        await self.push_frame(frame, direction)

    async def wait_for(self, predicate: Callable[[list[Frame]], bool], timeout: float = 10.0):
        async with asyncio.timeout(timeout):
            while not predicate(self.frames):
                self._changed.clear()
                await self._changed.wait()


class RunningPipeline:
    """A started pipeline: queue frames, await what comes out."""

    def __init__(self, worker: PipelineWorker, down: Collector, up: Collector):
        self.worker = worker
        self.down = down
        self.up = up

    async def send(self, *frames: Frame):
        for frame in frames:
            await self.worker.queue_frame(frame)


@contextlib.asynccontextmanager
async def running_pipeline(
    processor: FrameProcessor, params: PipelineParams | None = None
) -> AsyncIterator[RunningPipeline]:
    """Run ``processor`` between two collectors until the block ends (then an EndFrame)."""
    up, down = Collector(FrameDirection.UPSTREAM), Collector(FrameDirection.DOWNSTREAM)
    worker = PipelineWorker(
        Pipeline([up, processor, down]),
        params=params or PipelineParams(),
        cancel_on_idle_timeout=False,
    )
    started = asyncio.Event()

    @worker.event_handler("on_pipeline_started")
    async def _started(worker, frame):
        started.set()

    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    run = asyncio.create_task(runner.run())
    try:
        async with asyncio.timeout(10):
            await started.wait()
        yield RunningPipeline(worker, down, up)
        await worker.queue_frame(EndFrame())
        async with asyncio.timeout(30):
            await run
    finally:
        if not run.done():
            await worker.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(run, 10)
