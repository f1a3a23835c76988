#
# Copyright (c) 2026, pipecat-cartesia-ctx contributors
#
# SPDX-License-Identifier: BSD 2-Clause License
#

"""`PlaybackMixin`: pipecat's audio contexts, at less cost per item.

pipecat plays a turn's audio, words and other frames in order from one queue
per audio context (its `AudioContextManager`). Two of its habits cost a busy
process dearly, and this mixin avoids them without changing what is played
or when a context times out:

- Its playback task takes each item with ``asyncio.wait_for``, which on
  Python 3.11 (pipecat installs ``wait_for2`` there) starts a task per item:
  three turns of the event loop per item even when the item is already
  there. With a hundred pipelines in one process a turn of the loop takes
  tens of milliseconds, so the audio context played an item every ~100 ms,
  behind its own audio. Here an item already queued is taken at once, and
  the wait for the next one is a timeout, not a task (as ``wait_for`` is
  from Python 3.12 on).
- It keeps the turn's audio context alive at every text frame: with token
  streaming, one keepalive per LLM token queued ahead of the audio. Here it
  is kept alive once per `KEEPALIVE_S` (or half the context's timeout, if
  that is shorter).

Both read pipecat 1.x's `AudioContextManager` (its per-context queues and
keepalive marker); if those ever change, pipecat's own way is used.
"""

from __future__ import annotations

import asyncio

from loguru import logger
from pipecat.frames.frames import Frame
from pipecat.services.tts_service import WebsocketTTSService
from pipecat.utils.context.audio_context_manager import AudioContextManager
from pipecat.utils.context.word_timestamp_tracker import WordTimestamp

# How often a turn's audio context is kept alive while its text streams in.
KEEPALIVE_S = 0.5

_KEEPALIVE = getattr(AudioContextManager, "_KEEPALIVE", None)


class PlaybackMixin(WebsocketTTSService):
    """Plays queued audio-context items without a task per item; keeps contexts alive sparingly.

    A mixin of `CartesiaContextTTSService`.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        # The audio context last kept alive, when, and the keepalive due for it
        # (not pipecat's WebSocket keepalive, `_keepalive_task`).
        self._audio_kept_alive: tuple[str, float] = ("", 0.0)
        self._audio_keepalive_due: asyncio.TimerHandle | None = None

    async def _next_audio_context_item(self, context_id: str) -> Frame | WordTimestamp | None:
        """The context's next item (None once it ends or goes quiet), at once if it is queued."""
        queues = getattr(self._audio_context_manager, "_contexts", None)
        queue = queues.get(context_id) if isinstance(queues, dict) else None
        if not isinstance(queue, asyncio.Queue) or _KEEPALIVE is None:
            return await super()._next_audio_context_item(context_id)
        item = _KEEPALIVE
        try:
            while item is _KEEPALIVE:  # a keepalive restarts the wait, as in pipecat
                if queue.empty():
                    async with asyncio.timeout(self._stop_frame_timeout_s):
                        item = await queue.get()
                else:
                    item = queue.get_nowait()
        except TimeoutError:
            logger.trace(f"{self} time out on audio context {context_id}")
            return None
        return item

    def _refresh_audio_context(self, context_id: str):
        # A keepalive skipped now goes out when the interval ends, so the context
        # still lives the full timeout after the turn's last token.
        if self._audio_keepalive_due is not None:
            if self._audio_kept_alive[0] == context_id:
                return
            self._audio_keepalive_due.cancel()
            self._audio_keepalive_due = None
        loop = asyncio.get_running_loop()
        last_id, last_at = self._audio_kept_alive
        interval = min(KEEPALIVE_S, self._stop_frame_timeout_s / 2)
        due = last_at + interval if last_id == context_id else 0.0
        if due <= loop.time():
            self._keep_audio_alive(context_id)
        else:
            self._audio_keepalive_due = loop.call_at(due, self._keep_audio_alive, context_id)

    def _keep_audio_alive(self, context_id: str):
        self._audio_keepalive_due = None
        self._audio_kept_alive = (context_id, asyncio.get_running_loop().time())
        super()._refresh_audio_context(context_id)
