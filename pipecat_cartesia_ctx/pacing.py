#
# Copyright (c) 2026, pipecat-cartesia-ctx contributors
#
# SPDX-License-Identifier: BSD 2-Clause License
#

"""`PacedTextMixin`: a huge text frame is spoken in slices, paced by its turn's audio.

A pasted document (a 200 KB frame) must not stall every pipeline in the
process: the service's text handling cuts it into slices of about
`SLICE_CHARACTERS` and hands them on one at a time, each once the turn's audio
has caught up with the text already sent.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Iterator

from pipecat.frames.frames import AggregatedTextFrame
from pipecat.services.tts_service import WebsocketTTSService
from pipecat.utils.utils import obj_count, obj_id

from .stats import CartesiaServiceStats
from .turn import TurnPhase
from .turn_io import TurnIO

# A text frame longer than this goes on in slices, the event loop free between
# them, as if an LLM had streamed it: one pasted document must not stall every
# pipeline in the process (pipecat's own sentence matching rescans its text).
SLICE_CHARACTERS = 2048
# The longest a slice waits for the turn's audio to move on before it goes anyway.
_PACING_WAIT_S = 2.0


def _slices(text: str, size: int = SLICE_CHARACTERS) -> Iterator[str]:
    """``text`` in pieces of about ``size`` characters, cut after whitespace where there is some.

    A piece never starts with whitespace: pipecat strips a leading newline
    from each sentence-aggregated frame, and a list's line breaks must stay.
    """
    start = 0
    while len(text) - start > size:
        cut = start + size
        while cut > start and not text[cut - 1].isspace():
            cut -= 1
        if cut == start:
            cut = start + size  # one long word: cut inside it
        while cut < len(text) and text[cut].isspace():
            cut += 1
        yield text[start:cut]
        start = cut
    yield text[start:]


class PacedTextMixin(WebsocketTTSService):
    """Speaks a text frame longer than `SLICE_CHARACTERS` in slices, as fast as its audio comes.

    A mixin of `CartesiaContextTTSService`, which sets the attributes declared
    here and sets each turn's ``progress`` event as its audio comes and once
    the turn is over.
    """

    # The service's turns, by context id.
    _turns: dict[str, TurnIO]
    # Counts a slice that went on without its wait ending (``pacing_timeouts``).
    _stats: CartesiaServiceStats

    async def _handle_aggregated_text(
        self, src_frame: AggregatedTextFrame, context_id: str | None = None
    ):
        """Speak long text (a 200 KB frame) in slices, as fast as its audio comes.

        Each slice waits until less than a slice of the text sent has no audio
        yet. So the first audio is as early as a short turn's (pipecat queues
        each sentence's text frame ahead of the audio that comes after it), and
        the turn holds a few slices' worth of pipecat's per-sentence state, not
        the whole frame's, which would stall the loop in garbage collection.

        Args:
            src_frame: The aggregated text frame pipecat hands the service.
            context_id: The turn's audio context; a new one when None.
        """
        if (
            len(src_frame.text) <= SLICE_CHARACTERS
            or src_frame.text_type in self._skip_text_types
            or src_frame.raw_text not in (None, src_frame.text)  # a pattern match: kept whole
        ):
            await super()._handle_aggregated_text(src_frame, context_id)
            return
        context_id = context_id or self.create_context_id()
        for n, piece in enumerate(_slices(src_frame.text)):
            if n:
                await asyncio.sleep(0)  # other pipelines, and this turn's audio, go on
                await self._wait_for_audio(context_id)
            frame = copy.copy(src_frame)
            frame.id, frame.name = obj_id(), f"{type(frame).__name__}#{obj_count(frame)}"
            frame.text = piece
            frame.raw_text = piece if src_frame.raw_text is not None else None
            await super()._handle_aggregated_text(frame, context_id)

    async def _wait_for_audio(self, context_id: str):
        """Wait while a slice or more of the turn's text sent has no audio yet.

        Args:
            context_id: The turn's audio context.
        """
        turn = self._turns.get(context_id)
        while turn is not None and turn.engine.unheard >= SLICE_CHARACTERS:
            if turn.engine.phase not in (
                TurnPhase.STREAMING,
                TurnPhase.SWITCHING,
                TurnPhase.RESUMING,
            ):
                return  # over (the rest is dropped), or nothing sent yet
            turn.progress.clear()
            try:
                # Bounded: pacing is an optimisation, and text waiting for audio
                # that never comes must not hold the pipeline.
                await asyncio.wait_for(turn.progress.wait(), _PACING_WAIT_S)
            except TimeoutError:
                self._stats.pacing_timeouts += 1
                return
