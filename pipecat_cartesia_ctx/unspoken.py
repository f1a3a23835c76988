#
# Copyright (c) 2026, pipecat-cartesia-ctx contributors
#
# SPDX-License-Identifier: BSD 2-Clause License
#

"""`UnspokenWordsMixin`: words that were never voiced stay out of pipecat's word output.

pipecat's word sequencer matches timed words to a turn's text in order, and
completes a turn's untimed words at its end as if they were spoken. This
mixin walks the sequencer past a skipped (refused) segment's text without
emitting its words, drops a failed or silent turn's unvoiced words instead
of completing them, and keeps a failed turn to its one error.
"""

from __future__ import annotations

from dataclasses import dataclass

from loguru import logger
from pipecat.frames.frames import AggregatedTextProgressFrame, Frame, TTSTextFrame
from pipecat.services.tts_service import WebsocketTTSService

from .turn import TurnEngine, TurnPhase
from .turn_actions import Skipped
from .turn_io import TurnIO


@dataclass(frozen=True, slots=True)
class _Unspoken:
    """An audio-context item: the text of a skipped segment, where its audio would have been."""

    text: str


# The pts of a skipped segment's words on their way through pipecat's word
# matching (real ones are >= 0): every word frame built from them is dropped,
# also when pipecat holds them until their sentence is complete and builds the
# frames later (checked against pipecat 1.14).
_UNSPOKEN_PTS = -1


class UnspokenWordsMixin(WebsocketTTSService):
    """Keeps a skipped segment's words, and a failed or silent turn's, from being emitted.

    A mixin of `CartesiaContextTTSService`. How a turn ended is read from its
    engine: from the service's ``_turns`` while it is known, then from
    ``_settling``, where the service leaves the engine of a turn it forgot
    whose audio context still plays out (`settle`), until pipecat ends that
    audio context or it is interrupted.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._settling: dict[str, TurnEngine] = {}

    def settle(self, engine: TurnEngine):
        """Keep a forgotten turn's engine while pipecat still plays its audio context.

        Args:
            engine: The engine of a turn that has ended, failed or been interrupted.
        """
        if engine.phase is not TurnPhase.INTERRUPTED and self.audio_context_available(
            engine.context_id
        ):
            self._settling[engine.context_id] = engine

    def _engine_of(self, context_id: str) -> TurnEngine | None:
        turn = self._turns.get(context_id)
        return turn.engine if turn is not None else self._settling.get(context_id)

    def _drops_unvoiced(self, context_id: str) -> bool:
        """Whether pipecat must not complete the turn's untimed words at its end.

        A failed turn's words were not voiced; nor was the skipped text of a
        turn whose every played word was timed. (A silent turn's words were
        dropped when it ended.)
        """
        engine = self._engine_of(context_id)
        if engine is None:
            return False
        if engine.phase is TurnPhase.FAILED:
            return True
        return (
            engine.phase is TurnPhase.ENDED
            and engine.opened > 0
            and engine.skipped
            and engine.expect_timestamps
        )

    async def _skipped(self, turn: TurnIO, action: Skipped):
        """Log a refused segment, and mark where its audio would have been.

        Args:
            turn: The turn the segment belongs to.
            action: The engine's report of the skipped segment.
        """
        logger.warning(
            f"{self}: turn {turn.context_id}: Cartesia refused segment {action.flush_id} "
            f"({action.error}); skipped {action.text!r}, the turn goes on"
        )
        if turn.engine.expect_timestamps and self.audio_context_available(turn.context_id):
            # In playback order, so pipecat's word matching passes over it unspoken.
            await self.append_to_audio_context(turn.context_id, _Unspoken(action.text))

    async def _push_audio_context_item(self, context_id: str, item, playback):
        if not isinstance(item, _Unspoken):
            await super()._push_audio_context_item(context_id, item, playback)
            return
        # pipecat's sequencer matches timed words to the turn's text in order:
        # walk it past the skipped text, so the next sentence's words are not
        # matched into it.
        sequencer = self._aggregated_frame_sequencer
        for word in item.text.split():
            for frame in self._without_unspoken(
                sequencer.process_word(word, _UNSPOKEN_PTS, context_id)
            ):
                await self.push_frame(frame)

    async def _push_sequencer_frames(self, frames: list[Frame], context_id: str | None):
        # Words pipecat held until their sentence was complete come back here.
        await super()._push_sequencer_frames(self._without_unspoken(frames), context_id)

    def _without_unspoken(self, frames: list[Frame]) -> list[Frame]:
        """Drop the word and progress frames built from a skipped segment's words.

        Args:
            frames: Frames pipecat's sequencer built.

        Returns:
            The frames to push, in order.
        """
        kept = []
        for frame in frames:
            if frame.pts == _UNSPOKEN_PTS:
                if isinstance(frame, TTSTextFrame | AggregatedTextProgressFrame):
                    continue
                frame.pts = self._word_timestamp_tracker.last_pts  # e.g. unblocked skipped text
            kept.append(frame)
        return kept

    async def _apply_force_complete(self, context_id: str):
        # pipecat completes a turn's untimed words at its end as if they were
        # spoken; a failed turn's unvoiced words must not reach the context.
        if self._drops_unvoiced(context_id):
            self._drop_unvoiced(context_id)
        await super()._apply_force_complete(context_id)

    async def _record_context_audio_outcome(self, context_id: str, received_audio: bool):
        # A failed turn has had its one clear error; pipecat would add a
        # "completed with no audio" one for the same turn.
        engine = self._settling.pop(context_id, None) or self._engine_of(context_id)
        if engine is not None and engine.phase is TurnPhase.FAILED and not received_audio:
            return
        await super()._record_context_audio_outcome(context_id, received_audio)

    def _drop_unvoiced(self, context_id: str):
        """Clear the turn from pipecat's sequencer, so its unvoiced words are never emitted.

        The turns whose audio is still open, and the turn taking input, keep theirs.

        Args:
            context_id: The turn's audio context.
        """
        keep = (set(self.get_audio_contexts()) | {self._turn_context_id}) - {None, context_id}
        self._aggregated_frame_sequencer.clear(keep_contexts=keep)
