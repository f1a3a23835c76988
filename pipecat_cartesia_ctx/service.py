#
# Copyright (c) 2026, pipecat-cartesia-ctx contributors
#
# SPDX-License-Identifier: BSD 2-Clause License
#

"""`CartesiaContextTTSService`: Cartesia WebSocket contexts as a Pipecat TTS service.

One Cartesia context per LLM turn (and per `TTSSpeakFrame`), on one long-lived
connection. LLM tokens are pushed as continuations as soon as they complete a
word, a flush goes out at each sentence (or clause, or turn) end, and audio
comes back labelled with its segment's ``flush_id``, each segment followed by
a `CartesiaFlushDoneFrame` carrying its exact text. An interruption cancels
the context on the same socket, and nothing of it reaches downstream after.

This module is pipecat's side: frames in, the turn engine's actions carried
out, its outputs as frames. The service's other jobs are mixins, one a
module: `ConnectionMixin` (``connection``: the connection, the contexts and
their budget, retries, errors for pipecat), `PacedTextMixin` (``pacing``: a huge
text frame in slices), `UnspokenWordsMixin` (``unspoken``: words never voiced
kept out of pipecat's word output), `PlaybackMixin` (``playback``: pipecat's
audio contexts at less cost per item). `CartesiaServiceStats` lives in
``stats`` and `TurnIO`, a turn's I/O state, in ``turn_io``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Mapping
from typing import Any

from loguru import logger
from pipecat.audio.utils import create_stream_resampler
from pipecat.frames.frames import (
    Frame,
    InterruptionFrame,
    MetricsFrame,
    StartFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
)
from pipecat.processors.frame_processor import FrameDirection
from pipecat.services.cartesia.tts import (
    CartesiaTTSService,
    CartesiaTTSSettings,
    language_to_cartesia_language,
)
from pipecat.services.tts_service import TextAggregationMode
from pipecat.transcriptions.language import Language
from pipecat.utils.tracing.service_decorators import traced_tts
from pipecat.utils.types import assert_given

from .audio import Pcm16Converter
from .client import DROP_CANCELLED_CONTEXT, DROP_FINISHED_CONTEXT, DROP_UNKNOWN_CONTEXT
from .connection import ConnectionMixin
from .frames import CartesiaFlushDoneFrame, CartesiaSegmentMetricsData, CartesiaTTSAudioRawFrame
from .pacing import SLICE_CHARACTERS as SLICE_CHARACTERS  # re-exported: its home used to be here
from .pacing import PacedTextMixin
from .playback import PlaybackMixin
from .protocol import (
    BYTES_PER_SAMPLE,
    DEFAULT_CARTESIA_VERSION,
    DEFAULT_URL,
    SAMPLE_RATES,
    CartesiaError,
    InvalidRequestError,
)
from .protocol.text import is_speakable
from .reconnect import RetryPolicy
from .segmenter import FlushOn, Segmenter
from .settings import SETTINGS_FIELDS, check_options, check_settings
from .stats import CartesiaServiceStats
from .turn import (
    BUFFER_DELAY_MS,
    HOLD_S,
    LOCKED_SETTINGS,
    LOW_AUDIO_S,
    TurnEngine,
    TurnPhase,
)
from .turn_actions import (
    Action,
    Audio,
    Cancel,
    Close,
    Ended,
    Failed,
    Open,
    Retry,
    SegmentDone,
    Send,
    SendFlush,
    Skipped,
    StartAudio,
    Words,
)
from .turn_io import TurnIO
from .unspoken import UnspokenWordsMixin


# Each mixin subclasses `WebsocketTTSService`, so its super() calls and the
# base's attributes are typed; none overrides a method another part does
# (``__init__`` aside, which each passes on), so their order does not matter.
class CartesiaContextTTSService(PacedTextMixin, UnspokenWordsMixin, PlaybackMixin, ConnectionMixin):
    """Cartesia TTS over WebSocket contexts.

    Pushes continuations, flushes per sentence, cancels on interruption.

    A drop-in for pipecat's `CartesiaTTSService`: the same keyword arguments
    where they mean the same thing, and the same ``Settings``.

    Event handlers: ``on_connected``, ``on_disconnected``, ``on_connection_error``
    (see `WebsocketTTSService`).

    Example::

        tts = CartesiaContextTTSService(
            api_key=os.getenv("CARTESIA_API_KEY"),
            settings=CartesiaContextTTSService.Settings(voice="a0e99841-..."),
        )
    """

    Settings = CartesiaTTSSettings
    InputParams = CartesiaTTSService.InputParams
    _settings: CartesiaTTSSettings

    def __init__(
        self,
        *,
        api_key: str,
        url: str = DEFAULT_URL,
        settings: CartesiaTTSSettings | None = None,
        sample_rate: int | None = None,
        encoding: str = "pcm_s16le",
        container: str = "raw",
        max_buffer_delay_ms: int | None = None,
        extra_headers: Mapping[str, str] | None = None,
        cartesia_version: str = DEFAULT_CARTESIA_VERSION,
        flush_on: FlushOn | str = FlushOn.SENTENCE,
        first_push_words: int = 3,
        first_segment_words: int = 3,
        flush_first_clause: bool = True,
        first_segment_deadline_ms: int | None = 250,
        retry: RetryPolicy | None = None,
        max_concurrent_contexts: int | None = None,
        reconnect_give_up_s: float = 30.0,
        voice_id: str | None = None,
        model: str | None = None,
        params: CartesiaTTSService.InputParams | None = None,
        text_aggregation_mode: TextAggregationMode | None = None,
        **kwargs,
    ):
        """Initialize the service.

        Args:
            api_key: Cartesia API key (any string for the emulator).
            url: The TTS WebSocket URL (``emu.url`` for the emulator).
            settings: Voice, model, language, generation config and
                pronunciation dictionary; updatable at run time with
                ``TTSUpdateSettingsFrame``.
            sample_rate: Output sample rate; the pipeline's when None. Rates
                Cartesia does not offer are resampled from the next one up.
            encoding: Encoding on the wire; frames are always 16-bit PCM.
            container: Always ``"raw"`` on the WebSocket.
            max_buffer_delay_ms: Server buffering; None picks the value that
                fits ``flush_on`` (see `BUFFER_DELAY_MS`). 0 makes the service
                send each segment whole, as custom buffering expects.
            extra_headers: More headers for the WebSocket handshake.
            cartesia_version: The ``Cartesia-Version`` header.
            flush_on: Where segments end: ``"sentence"``, ``"clause"`` or ``"turn"``.
            first_push_words: Words the first push of a context waits for,
                unless a clause ends first.
            first_segment_words: End the first segment of a turn after this
                many words (one to three more after "the", "of", "and"...) if
                no clause or sentence ended it first, so the first audio does
                not wait for a long first sentence; 0 waits for ``flush_on``.
                Later segments end at ``flush_on``, while the first one plays.
            flush_first_clause: End the first segment of a turn at its first
                clause (True by default, for a fast first audio); False waits
                for ``flush_on``.
            first_segment_deadline_ms: If the first segment of a turn has not
                ended this long after its first word (an LLM that stalls), it
                ends at the last whole word received. None waits for the rules
                above.
            retry: Backoff for a turn whose context was lost or refused (429,
                5xx, a dropped connection) and for reconnecting; a turn is given
                up after ``retry.max_attempts`` losses in a row without audio.
            max_concurrent_contexts: Contexts this service keeps open at once
                (your Cartesia plan's concurrency); further turns wait for a
                slot instead of being refused by the server. None: no limit.
            reconnect_give_up_s: Seconds the server may stay unreachable before
                the service reports a fatal error.
            voice_id: Deprecated in pipecat; use ``settings=Settings(voice=...)``.
            model: Deprecated in pipecat; use ``settings=Settings(model=...)``.
            params: Deprecated in pipecat; use ``settings``.
            text_aggregation_mode: Token (default) streams LLM tokens; sentence
                makes pipecat aggregate sentences first, at some latency.
            **kwargs: Passed to `WebsocketTTSService`.

        Raises:
            InvalidRequestError: An option or setting Cartesia (or the service)
                cannot use; the message names it, its value and what is
                allowed. It is also a `ValueError`.
        """
        check_options(
            url=url,
            cartesia_version=cartesia_version,
            sample_rate=sample_rate,
            encoding=encoding,
            container=container,
            max_buffer_delay_ms=max_buffer_delay_ms,
            flush_on=flush_on,
            first_push_words=first_push_words,
            first_segment_words=first_segment_words,
            flush_first_clause=flush_first_clause,
            first_segment_deadline_ms=first_segment_deadline_ms,
            max_concurrent_contexts=max_concurrent_contexts,
            reconnect_give_up_s=reconnect_give_up_s,
            retry=retry,
        )
        defaults = self.Settings(
            model="sonic-3.6",  # pipecat 1.14's default, so swapping the class keeps the model
            voice=None,
            language=Language.EN,
            generation_config=None,
            pronunciation_dict_id=None,
        )
        # The deprecated arguments, warned about and applied as pipecat does.
        if voice_id is not None:
            self._warn_init_param_moved_to_settings("voice_id", "voice")
            defaults.voice = voice_id
        if model is not None:
            self._warn_init_param_moved_to_settings("model", "model")
            defaults.model = model
        if params is not None:
            self._warn_init_param_moved_to_settings("params")
            if not settings:
                for name in ("language", "generation_config", "pronunciation_dict_id"):
                    if (value := getattr(params, name)) is not None:
                        setattr(defaults, name, value)
        if settings is not None:
            defaults.apply_update(settings)
        # Our own failure policy: a silent turn ("...", a skipped input) is not a
        # failing service, and reconnecting is ours, not the base class's.
        kwargs.setdefault("max_consecutive_zero_audio_contexts", 0)
        kwargs.setdefault("reconnect_on_error", False)
        # pipecat's sentence aggregation hands on sentences without the space
        # between them; Cartesia would read "there." + "How" as "there.How".
        kwargs.setdefault("append_trailing_space", True)
        super().__init__(
            text_aggregation_mode=text_aggregation_mode or TextAggregationMode.TOKEN,
            push_text_frames=False,
            # The audio context opens when a turn has something to say, not at its
            # first token: a "..." turn opens nothing.
            push_start_frame=False,
            sample_rate=sample_rate,
            settings=defaults,
            **kwargs,
        )
        # After pipecat has put the language in Cartesia's form, as it is sent.
        check_settings(self._settings, update=False, service_language=self._service_language)
        if self._settings.voice is None:
            # Allowed, as in pipecat's service: an update may set it before the first turn.
            logger.warning(
                f"{self}: no voice yet; each turn fails (one error) until "
                "TTSUpdateSettingsFrame(delta=Settings(voice=...)) sets one"
            )
        self._api_key = api_key
        self._url = url
        self._extra_headers = dict(extra_headers or {})
        self._cartesia_version = cartesia_version
        self._encoding = encoding
        self._container = container
        self._flush_on = FlushOn(flush_on)
        self._first_push_words = first_push_words
        self._first_segment_words = first_segment_words
        self._flush_first_clause = flush_first_clause
        self._first_segment_deadline = (
            None if first_segment_deadline_ms is None else first_segment_deadline_ms / 1000
        )
        self._max_buffer_delay_ms = (
            BUFFER_DELAY_MS[self._flush_on] if max_buffer_delay_ms is None else max_buffer_delay_ms
        )
        # Text waits for its flush no longer than the server would buffer it.
        delay_ms = self._max_buffer_delay_ms
        self._hold = HOLD_S if not delay_ms else min(HOLD_S, delay_ms / 1000)
        self._retry = retry or RetryPolicy()
        self._max_contexts = max_concurrent_contexts
        self._reconnect_give_up_s = reconnect_give_up_s
        self._expect_timestamps = True  # learned per server, carried from turn to turn
        self._wire_rate = 0
        self._turns: dict[str, TurnIO] = {}
        self._stats = CartesiaServiceStats()

    # -- pipecat service interface ------------------------------------------------

    def can_generate_metrics(self) -> bool:
        """The service reports TTFB, per-segment and usage metrics."""
        return True

    def language_to_service_language(self, language: Language) -> str | None:
        """Convert a pipecat `Language` to Cartesia's code (e.g. ``es-MX``)."""
        return language_to_cartesia_language(language)

    @property
    def stats(self) -> CartesiaServiceStats:
        """Counters since the service started (a snapshot)."""
        keeper = self._keeper
        connections = [] if keeper is None else [*keeper.retired, keeper.current]
        reasons = (DROP_CANCELLED_CONTEXT, DROP_FINISHED_CONTEXT, DROP_UNKNOWN_CONTEXT)
        dropped = sum(c.dropped[r] for c in connections if c is not None for r in reasons)
        return CartesiaServiceStats(
            **{
                **self._stats.__dict__,
                "stale_events_dropped": dropped,
                "reconnects": keeper.reconnects if keeper else 0,
                "connect_seconds": keeper.connect_seconds if keeper else 0.0,
            }
        )

    @property
    def max_buffer_delay_ms(self) -> int | None:
        """The ``max_buffer_delay_ms`` sent with every input (None: server default)."""
        return self._max_buffer_delay_ms

    async def start(self, frame: StartFrame):
        """Start the service and open the connection.

        Args:
            frame: The start frame.
        """
        await super().start(frame)
        self._wire_rate = next((r for r in SAMPLE_RATES if r >= self.sample_rate), SAMPLE_RATES[-1])
        await self._connect()

    @traced_tts
    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[Frame | None, None]:
        """Feed text of a turn to its engine; audio arrives on the turn's receiver.

        Args:
            text: The next piece of the turn's text (an LLM token, a sentence).
            context_id: The turn's audio context.

        Yields:
            None: audio is appended to the audio context as it arrives.
        """
        turn = self._turns.get(context_id) or self._open_turn(context_id)
        async with turn.sending:
            await self._do(turn, turn.engine.feed(text, time.monotonic()))
        self._arm(turn)
        yield None

    async def flush_audio(self, context_id: str | None = None):
        """End the turn's input: push what is left and close its Cartesia context.

        Args:
            context_id: The turn's audio context; the active one when None.
        """
        context_id = context_id or self.get_active_audio_context_id()
        turn = self._turns.get(context_id) if context_id else None
        if turn is None:
            return
        if turn.engine.phase is TurnPhase.FAILED:
            # Its audio was stopped at the failure; the audio context goes with its input.
            self._turns.pop(turn.context_id, None)
            self.settle(turn.engine)
            if self.audio_context_available(turn.context_id):
                await self.remove_audio_context(turn.context_id)
        elif not turn.engine.segmenter.finished:
            async with turn.sending:
                await self._do(turn, turn.engine.end_input(time.monotonic()))

    async def on_turn_context_completed(self):
        """End the turn's input, also for a turn that never opened its audio ("...")."""
        context_id = self._turn_context_id
        await super().on_turn_context_completed()
        if context_id is not None:
            await self.flush_audio(context_id)

    async def on_audio_context_interrupted(self, context_id: str):
        """Cancel the turn's Cartesia contexts at once, on the same socket."""
        turn = self._turns.get(context_id)
        if turn is not None:
            live = len(turn.contexts)
            await self._do(turn, turn.engine.interrupt())
            self._stats.contexts_cancelled += live
            await self._forget(turn)
        # An interrupted context never completes: nothing is left to do for it.
        self._settling.pop(context_id, None)
        await super().on_audio_context_interrupted(context_id)

    async def _handle_interruption(self, frame: InterruptionFrame, direction: FrameDirection):
        await super()._handle_interruption(frame, direction)
        # A turn with nothing to say yet has no audio context for the base to interrupt.
        for turn in list(self._turns.values()):
            if turn.engine.phase is TurnPhase.IDLE:
                await self._do(turn, turn.engine.interrupt())
                await self._forget(turn)

    async def _update_settings(self, delta: CartesiaTTSSettings) -> dict[str, Any]:
        """Apply a settings delta; a locked field takes effect at the next sentence.

        The current sentence ends on the context it started on (unless none
        of it has gone out yet); the next one opens a new context with the new
        settings, so no text is lost and no locked field changes within a
        context. ``generation_config`` applies to the next push.

        A delta with a bad value is refused whole: one `ErrorFrame` names it,
        nothing of the delta is applied, and turns go on with the settings
        they had.

        Returns:
            The changed fields and their previous values; empty when refused.
        """
        try:
            check_settings(delta, update=True, service_language=self._service_language)
        except InvalidRequestError as e:
            logger.warning(f"{self}: settings update refused, the settings stay as they were: {e}")
            await self.push_error(error_msg=f"Cartesia settings update refused: {e}", exception=e)
            return {}
        changed = await super()._update_settings(delta)
        self._warn_unhandled_updated_settings(changed.keys() - set(SETTINGS_FIELDS))
        turn = self._turns.get(self._turn_context_id) if self._turn_context_id else None
        if turn is not None and changed.keys() & LOCKED_SETTINGS:
            async with turn.sending:  # not between a tick's push and its flush
                await self._do(turn, turn.engine.switch_settings())
        return changed

    # -- carrying out the engine's actions --------------------------------------------

    def _open_turn(self, context_id: str) -> TurnIO:
        segmenter = Segmenter(
            self._flush_on,
            first_push_words=self._first_push_words,
            first_segment_words=self._first_segment_words,
            flush_first_clause=self._flush_first_clause,
            whole_segments=self._max_buffer_delay_ms == 0,
        )
        width = BYTES_PER_SAMPLE[self._encoding]
        turn = TurnIO(
            engine=TurnEngine(
                context_id,
                segmenter,
                bytes_per_second=self._wire_rate * width,
                sample_width=width,
                expect_timestamps=self._expect_timestamps,
                hold=self._hold,
                first_segment_deadline=self._first_segment_deadline,
                hold_audio_above=LOW_AUDIO_S,
            ),
            converter=Pcm16Converter(self._encoding),
            # A turn's audio is one stream: never drop history in a pause (an LLM
            # stall), and drain the tail at each segment's end instead.
            resampler=create_stream_resampler(clear_after_secs=None),
        )
        self._turns[context_id] = turn
        turn.receiver = self.create_task(self._receive(turn), name=f"cartesia-{context_id}")
        return turn

    def _arm(self, turn: TurnIO) -> None:
        """Have the engine's `tick` called at its deadline, unless input comes first."""
        deadline = turn.engine.deadline
        if deadline == turn.timer_at:
            return
        if turn.timer is not None:
            turn.timer.cancel()
        turn.timer = turn.timer_at = None
        if deadline is not None and self._turns.get(turn.context_id) is turn:
            turn.timer_at = deadline
            turn.timer = asyncio.get_running_loop().call_at(deadline, self._ring, turn)

    def _ring(self, turn: TurnIO) -> None:
        turn.timer = turn.timer_at = None
        if self._turns.get(turn.context_id) is turn and turn.ticking is None:
            turn.ticking = self.create_task(
                self._tick(turn), name=f"cartesia-tick-{turn.context_id}"
            )

    async def _tick(self, turn: TurnIO) -> None:
        try:
            # In order with the turn's text: a push must not land between another's text and flush.
            async with turn.sending:
                before = turn.engine.deadline
                actions = turn.engine.tick(time.monotonic())
                await self._do(turn, actions)
        finally:
            turn.ticking = None
        if actions or turn.engine.deadline != before:
            self._arm(turn)  # not the same deadline again: that would spin

    async def _do(self, turn: TurnIO, actions: list[Action]) -> None:
        """Carry out the engine's actions in order; a failed send goes back to the engine."""
        for action in actions:
            try:
                more = await self._act(turn, action)
            except CartesiaError as e:
                context_id = getattr(action, "context_id", None)
                more = turn.engine.refused(context_id, e) if context_id else []
            if more:
                await self._do(turn, more)

    async def _act(self, turn: TurnIO, action: Action) -> list[Action]:
        if isinstance(action, Send):
            context = turn.contexts.get(action.context_id)
            if context is not None:
                await context.push(action.text, generation_config=self._generation_config())
                self._stats.characters_sent += len(action.text)
        elif isinstance(action, Audio):
            await self._audio(turn, action)
        elif isinstance(action, Words):
            await self._words(turn, action)
            turn.progress.set()
        elif isinstance(action, SegmentDone):
            await self._segment_done(turn, action)
            turn.progress.set()
        elif isinstance(action, SendFlush):
            if (context := turn.contexts.get(action.context_id)) is not None:
                await context.flush()
        elif isinstance(action, Close):
            if (context := turn.contexts.get(action.context_id)) is not None:
                await context.no_more_inputs()
        elif isinstance(action, Open):
            return await self._open_context(turn, action.context_id)
        elif isinstance(action, Cancel):
            await self._cancel_context(turn, action.context_id)
        elif isinstance(action, StartAudio):
            await self._open_audio(turn.context_id)
            await self.start_ttfb_metrics(start_time=time.time())
        elif isinstance(action, Retry):
            turn.progress.set()  # a skip leaves less to wait for
            return self._schedule_retry(turn, action)
        elif isinstance(action, Skipped):
            await self._skipped(turn, action)
            turn.progress.set()
        elif isinstance(action, Failed):
            await self._failed(turn, action)
        elif isinstance(action, Ended):
            await self._ended(turn, action)
        return []

    # -- the engine's outputs as frames ---------------------------------------------------

    def _seconds(self, wire_bytes: int) -> float:
        """Seconds of audio in ``wire_bytes`` of the wire encoding and rate."""
        return wire_bytes / (self._wire_rate * BYTES_PER_SAMPLE[self._encoding])

    async def _audio(self, turn: TurnIO, action: Audio):
        if action.first:
            await self.stop_ttfb_metrics(end_time=time.time())
        turn.progress.set()
        audio = turn.converter.convert(action.data)
        if audio and self._wire_rate != self.sample_rate:
            audio = await turn.resampler.resample(audio, self._wire_rate, self.sample_rate)
        await self._append_audio(turn, audio, action.flush_id)

    async def _append_audio(self, turn: TurnIO, audio: bytes, flush_id: int):
        if audio:
            frame = CartesiaTTSAudioRawFrame(
                audio=audio,
                sample_rate=self.sample_rate,
                num_channels=1,
                context_id=turn.context_id,
                flush_id=flush_id,
            )
            await self.append_to_audio_context(turn.context_id, frame)

    async def _words(self, turn: TurnIO, action: Words):
        cjk = str(assert_given(self._settings.language) or "").split("-")[0].lower() in ("zh", "ja")
        await self.add_word_timestamps(
            list(action.words),
            turn.context_id,
            includes_inter_frame_spaces=True if cjk else None,
            pre_merge_tokens=cjk,
        )

    async def _register_spoken_text(self, src_frame, text: str, context_id: str):
        turn = self._turns.get(context_id)
        if turn is not None and turn.engine.phase is TurnPhase.FAILED:
            # The rest of a failed turn's text is never voiced: pipecat would
            # complete its words as spoken when the turn's audio context ends
            # (or times out while the LLM pauses, and opens again for its text).
            return
        # Open the turn's audio (its TTSStartedFrame) before its first words are
        # registered, as pipecat's own service does, once there is something to
        # say: a "..." turn opens none.
        if is_speakable(text):
            await self._open_audio(context_id)
        await super()._register_spoken_text(src_frame, text, context_id)

    async def _open_audio(self, context_id: str):
        if not self.audio_context_available(context_id):
            await self.create_audio_context(context_id)
            await self.append_to_audio_context(context_id, TTSStartedFrame(context_id=context_id))

    async def _segment_done(self, turn: TurnIO, action: SegmentDone):
        if self._wire_rate != self.sample_rate:
            # The resampler holds the segment's last few milliseconds back.
            await self._append_audio(turn, await turn.resampler.flush(), action.flush_id)
        frame = CartesiaFlushDoneFrame(
            context_id=turn.context_id, flush_id=action.flush_id, text=action.text
        )
        await self.append_to_audio_context(turn.context_id, frame)
        if self.can_generate_metrics() and self.metrics_enabled:
            data = CartesiaSegmentMetricsData(
                processor=self.name,
                model=assert_given(self._settings.model),
                context_id=turn.context_id,
                flush_id=action.flush_id,
                ttfb=action.ttfb,
                audio_seconds=self._seconds(action.audio_bytes),
                characters=len(action.text),
            )
            await self.push_frame(MetricsFrame(data=[data]))

    # -- ending -------------------------------------------------------------------------

    async def _failed(self, turn: TurnIO, action: Failed):
        """Report the error and stop the turn's audio at once, without its unvoiced words."""
        self._expect_timestamps = turn.engine.expect_timestamps
        if not action.fatal:
            logger.warning(f"{self}: turn {turn.context_id} failed: {action.error}")
            await self.push_error(
                error_msg=f"Cartesia error: {action.error}", exception=action.error
            )
        # The audio context lives on until the turn's input ends, or pipecat
        # would open a new one (and a TTSStartedFrame) for its next token.
        await self._stop_audio(turn.context_id, remove=turn.engine.segmenter.finished)
        await self._forget(turn, keep=not turn.engine.segmenter.finished)

    async def _ended(self, turn: TurnIO, action: Ended):
        self._expect_timestamps = turn.engine.expect_timestamps
        if action.silent:
            self._drop_unvoiced(turn.context_id)
        await self._stop_audio(turn.context_id)
        await self._forget(turn)

    async def _stop_audio(self, context_id: str, *, remove: bool = True):
        """End the turn's audio with its TTSStoppedFrame; ``remove`` closes its audio context."""
        if self.audio_context_available(context_id):
            await self.append_to_audio_context(context_id, TTSStoppedFrame(context_id=context_id))
            if remove:
                await self.remove_audio_context(context_id)

    async def _forget(self, turn: TurnIO, *, keep: bool = False):
        """Stop the turn's tasks; ``keep`` leaves it known until its input ends."""
        if not keep and self._turns.pop(turn.context_id, None) is not None:
            self.settle(turn.engine)
        if turn.timer is not None:
            turn.timer.cancel()
            turn.timer = turn.timer_at = None
        if turn.ticking is not None and turn.ticking is not asyncio.current_task():
            await self.cancel_task(turn.ticking)
            turn.ticking = None
        for context_id in list(turn.contexts):
            await self._cancel_context(turn, context_id)
        current = asyncio.current_task()
        for task in (turn.retry, turn.receiver):
            if task is not None and task is not current and not task.done():
                await self.cancel_task(task)
        if turn.receiver is not current:
            turn.receiver = None
        turn.opened.put_nowait(None)
        turn.progress.set()  # nothing waits for a turn that will not speak
