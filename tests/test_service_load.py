"""The service's work per second of audio, over the emulator: chunks that arrive
together go downstream as one frame, and the audio context is not kept alive per token."""

from __future__ import annotations

import asyncio
import itertools
import time

from pipecat.frames.frames import TTSSpeakFrame
from pipecat.tests.utils import run_test
from service_helpers import audio, flush_dones, llm_turn, make_tts

from pipecat_cartesia_ctx import playback
from pipecat_cartesia_ctx.emulator import Behavior


async def test_chunks_that_arrive_together_go_downstream_as_one_frame_per_segment(make_emulator):
    # Instant pacing: each segment's chunks are all in the socket at once, as
    # they are for a process too busy to read each one as it comes. Without
    # timestamps no audio waits for its words' timing (which merges chunks too).
    emu = await make_emulator(behavior=Behavior(timestamps=False))
    text = "The first sentence is a long one, so it makes many chunks. Then a second one."
    down, _ = await run_test(make_tts(emu), frames_to_send=[TTSSpeakFrame(text)])
    [record] = emu.record.contexts.values()
    frames = audio(down)
    chunks = record.events.count("chunk")
    # Fewer frames than chunks (a frame never spans two segments)...
    chunk = round(emu.pacing.chunk_ms / 1000 * 24000) * 2
    assert len(frames) < chunks
    assert max(len(f.audio) for f in frames) > chunk
    # ...and every byte of each segment, under its flush_id, each segment after the last.
    by_segment: dict[int, int] = {}
    for f in frames:
        by_segment[f.flush_id] = by_segment.get(f.flush_id, 0) + len(f.audio)
    assert by_segment == record.audio_bytes
    assert [f.flush_id for f in frames] == sorted(f.flush_id for f in frames)
    assert [d.flush_id for d in flush_dones(down)] == [1, 2]


async def test_the_audio_context_is_kept_alive_once_per_interval_and_after_the_last_token(
    emu, monkeypatch
):
    monkeypatch.setattr(playback, "KEEPALIVE_S", 0.2)
    tts = make_tts(emu)
    requested: list[float] = []  # pipecat asks at every token after the first
    kept: list[float] = []  # what reached the audio context
    after_last = asyncio.Event()
    refresh = tts._refresh_audio_context

    def asked(context_id: str):
        requested.append(time.monotonic())
        refresh(context_id)

    def keepalive(context_id: str):
        kept.append(time.monotonic())
        if requested and kept[-1] >= requested[-1]:
            after_last.set()

    monkeypatch.setattr(tts, "_refresh_audio_context", asked)
    monkeypatch.setattr(tts._audio_context_manager, "keepalive", keepalive)
    text = "Keep this context alive while its many small tokens stream in, one after another."
    await run_test(tts, frames_to_send=llm_turn(text, seed=1))
    # The last token's keepalive is not dropped: it goes out when the interval ends.
    await after_last.wait()
    assert len(requested) > 20
    span = kept[-1] - kept[0]
    assert len(kept) <= 2 + span / 0.2
    assert all(b - a >= 0.2 * 0.99 for a, b in itertools.pairwise(kept))


async def test_items_already_queued_in_an_audio_context_are_taken_without_a_turn_of_the_loop(emu):
    tts = make_tts(emu, stop_frame_timeout_s=0.05)
    manager = tts._audio_context_manager
    await manager.create("c")
    frames = [TTSSpeakFrame(f"item {n}") for n in range(3)]
    for frame in frames[:2]:
        await manager.append("c", frame)
    manager.keepalive("c")  # not an item: skipped
    await manager.append("c", frames[2])
    turned = asyncio.Event()
    asyncio.get_running_loop().call_soon(turned.set)
    taken = [await tts._next_audio_context_item("c") for _ in frames]
    assert taken == frames
    # On Python 3.11 pipecat's own get (asyncio.wait_for: a task) turns the loop thrice per item.
    assert not turned.is_set()
    # An empty context is waited on; its end marker ends it; silence ends it too.
    waiting = asyncio.create_task(tts._next_audio_context_item("c"))
    last = TTSSpeakFrame("last")
    await manager.append("c", last)
    assert await waiting is last
    await manager.append("c", None)
    assert await tts._next_audio_context_item("c") is None
    await manager.create("quiet")
    assert await tts._next_audio_context_item("quiet") is None  # 50 ms of nothing


async def test_items_come_as_pipecats_own_audio_context_gives_them(emu, monkeypatch):
    """What `AudioContextManager.get` gives, and its way if pipecat's manager changes."""
    tts = make_tts(emu, stop_frame_timeout_s=0.05)
    manager = tts._audio_context_manager
    frames = [TTSSpeakFrame(f"item {n}") for n in range(3)]

    async def fill(context_id: str):
        await manager.create(context_id)
        await manager.append(context_id, frames[0])
        manager.keepalive(context_id)
        manager.keepalive(context_id)
        await manager.append(context_id, frames[1])
        await manager.append(context_id, frames[2])
        await manager.append(context_id, None)

    await fill("ours")
    await fill("pipecat")
    ours = [await tts._next_audio_context_item("ours") for _ in range(4)]
    theirs = [await manager.get("pipecat", timeout=0.05) for _ in range(4)]
    assert ours == theirs == [*frames, None]
    # A pipecat without the keepalive marker: its own get, the same items.
    await fill("changed")
    monkeypatch.setattr(playback, "_KEEPALIVE", None)
    assert [await tts._next_audio_context_item("changed") for _ in range(4)] == [*frames, None]
