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
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Mapping
from typing import Any

from loguru import logger
from pipecat.audio.utils import create_stream_resampler
from pipecat.frames.frames import Frame, MetricsFrame, StartFrame, TTSStoppedFrame
from pipecat.services.cartesia.tts import (
    CartesiaTTSService,
    CartesiaTTSSettings,
    GenerationConfig,
    language_to_cartesia_language,
)
from pipecat.services.tts_service import TextAggregationMode, WebsocketTTSService
from pipecat.transcriptions.language import Language
from pipecat.utils.tracing.service_decorators import traced_tts
from pipecat.utils.types import assert_given

from .audio import Pcm16Converter
from .client import (
    DROP_CANCELLED_CONTEXT,
    DROP_FINISHED_CONTEXT,
    DROP_UNKNOWN_CONTEXT,
    CartesiaConnection,
)
from .frames import CartesiaFlushDoneFrame, CartesiaSegmentMetricsData, CartesiaTTSAudioRawFrame
from .ledger import Segment
from .protocol import (
    BYTES_PER_SAMPLE,
    DEFAULT_CARTESIA_VERSION,
    DEFAULT_URL,
    SAMPLE_RATES,
    AuthenticationError,
    CartesiaConnectionError,
    CartesiaError,
    Chunk,
    Done,
    Error,
    FlushDone,
    InvalidRequestError,
    Timestamps,
)
from .segmenter import Flush, FlushOn, Push, Segmenter
from .turn import (
    BUFFER_DELAY_MS,
    LOCKED_SETTINGS,
    CartesiaServiceStats,
    Link,
    Turn,
    strip_tags,
)


class CartesiaContextTTSService(WebsocketTTSService):
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
        flush_first_clause: bool = False,
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
            flush_first_clause: End the first segment of a turn at its first
                clause, for the fastest first audio.
            voice_id: Deprecated in pipecat; use ``settings=Settings(voice=...)``.
            model: Deprecated in pipecat; use ``settings=Settings(model=...)``.
            params: Deprecated in pipecat; use ``settings``.
            text_aggregation_mode: Token (default) streams LLM tokens; sentence
                makes pipecat aggregate sentences first, at some latency.
            **kwargs: Passed to `WebsocketTTSService`.
        """
        defaults = self.Settings(
            model="sonic-3",
            voice=None,
            language=Language.EN,
            generation_config=None,
            pronunciation_dict_id=None,
        )
        if voice_id is not None:
            defaults.voice = voice_id
        if model is not None:
            defaults.model = model
        if params is not None and settings is None:
            defaults.language = params.language
            defaults.generation_config = params.generation_config
            defaults.pronunciation_dict_id = params.pronunciation_dict_id
        if settings is not None:
            defaults.apply_update(settings)
        super().__init__(
            text_aggregation_mode=text_aggregation_mode or TextAggregationMode.TOKEN,
            push_text_frames=False,
            push_start_frame=True,
            sample_rate=sample_rate,
            settings=defaults,
            **kwargs,
        )
        self._api_key = api_key
        self._url = url
        self._extra_headers = dict(extra_headers or {})
        self._cartesia_version = cartesia_version
        self._encoding = encoding
        self._container = container
        self._flush_on = FlushOn(flush_on)
        self._first_push_words = first_push_words
        self._flush_first_clause = flush_first_clause
        self._max_buffer_delay_ms = (
            BUFFER_DELAY_MS[self._flush_on] if max_buffer_delay_ms is None else max_buffer_delay_ms
        )
        self._wire_rate = 0
        self._connection: CartesiaConnection | None = None
        self._receive_task: asyncio.Task | None = None
        self._turns: dict[str, Turn] = {}
        self._stats = CartesiaServiceStats()
        self._dropped_on_closed_connections = 0

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
        dropped = self._dropped_on_closed_connections + self._dropped(self._connection)
        return CartesiaServiceStats(**{**self._stats.__dict__, "stale_events_dropped": dropped})

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

    async def start_ttfb_metrics(self, *, start_time: float | None = None):
        """Start TTFB at the turn's first text on the wire.

        The base class starts TTFB when a turn's audio context opens, before the
        first push (which waits for a few words); this service passes the
        moment the first text was sent instead, and ignores the base's call.

        Args:
            start_time: Wall-clock time the first text was sent.
        """
        if start_time is not None:
            await super().start_ttfb_metrics(start_time=start_time)

    async def stop_ttfb_metrics(self, *, end_time: float | None = None):
        """Stop TTFB at the turn's first chunk received, not when it is played.

        Args:
            end_time: Wall-clock time the first chunk arrived.
        """
        if end_time is not None:
            await super().stop_ttfb_metrics(end_time=end_time)

    @traced_tts
    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[Frame | None, None]:
        """Feed text of a turn to its Cartesia context; audio arrives on the turn's receiver.

        Args:
            text: The next piece of the turn's text (an LLM token, a sentence).
            context_id: The turn's audio context.

        Yields:
            None: audio is appended to the audio context as it arrives.
        """
        turn = self._turns.get(context_id) or await self._open_turn(context_id)
        if not turn.failed:
            await self._apply(turn, turn.segmenter.feed(text))
        yield None

    async def flush_audio(self, context_id: str | None = None):
        """End the turn's input: push what is left and close the Cartesia context.

        Args:
            context_id: The turn's audio context; the active one when None.
        """
        context_id = context_id or self.get_active_audio_context_id()
        turn = self._turns.get(context_id) if context_id else None
        if turn is None or turn.input_ended:
            return
        turn.input_ended = True
        if turn.failed:
            # The rest of a failed turn is dropped; its audio was stopped at the failure.
            self._turns.pop(context_id, None)
            await self._end_audio(context_id, stop=False)
            return
        await self._apply(turn, turn.segmenter.finish())
        await self._close_link(turn)
        turn.ready.put_nowait(None)

    async def on_audio_context_interrupted(self, context_id: str):
        """Cancel the turn's Cartesia contexts at once, on the same socket."""
        turn = self._turns.pop(context_id, None)
        if turn is not None:
            self._stats.contexts_cancelled += await self._stop_turn(turn)
        await super().on_audio_context_interrupted(context_id)

    async def _update_settings(self, delta: CartesiaTTSSettings) -> dict[str, Any]:
        """Apply a settings delta; a locked field takes effect at the next sentence.

        The current sentence ends on the context it started on; the next one
        opens a new context with the new settings, so no text is lost and no
        locked field changes within a context. ``generation_config`` applies to
        the next push.
        """
        changed = await super()._update_settings(delta)
        turn = self._turns.get(self._turn_context_id) if self._turn_context_id else None
        if turn is not None and changed.keys() & LOCKED_SETTINGS and not turn.failed:
            if turn.link.active:
                turn.switch_pending = True
                turn.segmenter.flush_at_next_sentence()
            else:
                # Nothing sent yet: the context can simply be made with the new settings.
                try:
                    await turn.link.context.cancel()
                    turn.link = self._new_link(turn, turn.link.first_number)
                except CartesiaError as e:
                    await self._fail_turn(turn, e)
        return changed

    # -- connection (WebsocketService) ---------------------------------------------

    async def _connect(self):
        await super()._connect()
        await self._connect_websocket()
        if self._receive_task is None:
            self._receive_task = self.create_task(self._receive_task_handler(self._report_error))

    async def _disconnect(self):
        await super()._disconnect()
        for turn in list(self._turns.values()):
            if turn.receiver is not None:
                await self.cancel_task(turn.receiver)
        self._turns.clear()
        if self._receive_task is not None:
            await self.cancel_task(self._receive_task)
            self._receive_task = None
        await self._disconnect_websocket()

    async def _connect_websocket(self):
        if self._connection is not None and not self._connection.closed:
            return
        self._dropped_on_closed_connections += self._dropped(self._connection)
        try:
            self._connection = await CartesiaConnection.connect(
                self._api_key,
                self._url,
                cartesia_version=self._cartesia_version,
                extra_headers=self._extra_headers,
            )
        except CartesiaError as e:
            self._connection = None
            await self.push_error(
                error_msg=f"Cannot connect to Cartesia: {e}",
                exception=e,
                force_treat_as_permanent=isinstance(e, AuthenticationError),
            )
            await self._call_event_handler("on_connection_error", str(e))
            return
        await self._call_event_handler("on_connected")

    async def _disconnect_websocket(self):
        connection, self._connection = self._connection, None
        if connection is not None:
            self._dropped_on_closed_connections += self._dropped(connection)
            await connection.close()
            await self._call_event_handler("on_disconnected")

    async def _verify_connection(self) -> bool:
        return self._connection is not None and not self._connection.closed

    async def _receive_messages(self):
        # The client's reader routes every event to its context; this task only
        # watches the connection, so that the base class reconnects when it closes.
        if self._connection is None:
            raise ConnectionError("not connected to Cartesia")
        await self._connection.wait_closed()

    @staticmethod
    def _dropped(connection: CartesiaConnection | None) -> int:
        if connection is None:
            return 0
        reasons = (DROP_CANCELLED_CONTEXT, DROP_FINISHED_CONTEXT, DROP_UNKNOWN_CONTEXT)
        return sum(connection.dropped[r] for r in reasons)

    # -- sending ------------------------------------------------------------------------

    async def _open_turn(self, context_id: str) -> Turn:
        turn = Turn(
            context_id=context_id,
            segmenter=Segmenter(
                self._flush_on,
                first_push_words=self._first_push_words,
                flush_first_clause=self._flush_first_clause,
                whole_segments=self._max_buffer_delay_ms == 0,
            ),
            converter=Pcm16Converter(self._encoding),
            # A turn's audio is one stream: never drop history in a pause (an LLM
            # stall), and drain the tail at each segment's end instead.
            resampler=create_stream_resampler(clear_after_secs=None),
        )
        self._turns[context_id] = turn
        if self._connection is None or self._connection.closed:
            await self._connect_websocket()
        try:
            if self._connection is None:
                raise CartesiaConnectionError("not connected to Cartesia")
            turn.link = self._new_link(turn, 1)
        except CartesiaError as e:
            await self._fail_turn(turn, e)
            return turn
        turn.receiver = self.create_task(self._receive_turn(turn), name=f"cartesia-{context_id}")
        return turn

    def _new_link(self, turn: Turn, first_number: int) -> Link:
        """A new Cartesia context for the turn, with the current settings.

        Raises:
            CartesiaError: The settings are invalid (no voice, say) or the
                connection is closed.
        """
        settings = self._settings
        if not assert_given(settings.voice):
            raise InvalidRequestError("no voice: set CartesiaContextTTSService.Settings(voice=...)")
        if self._connection is None:
            raise CartesiaConnectionError("not connected to Cartesia")
        context = self._connection.context(
            model_id=assert_given(settings.model),
            voice=assert_given(settings.voice),
            output_format={
                "container": self._container,
                "encoding": self._encoding,
                "sample_rate": self._wire_rate,
            },
            language=assert_given(settings.language) or None,
            add_timestamps=True,
            use_normalized_timestamps=False,
            max_buffer_delay_ms=self._max_buffer_delay_ms,
            pronunciation_dict_id=assert_given(settings.pronunciation_dict_id) or None,
            context_id=turn.next_context_id,
        )
        link = Link(context=context, first_number=first_number)
        turn.every_link.append(link)
        return link

    def _generation_config(self) -> dict[str, Any] | None:
        config = assert_given(self._settings.generation_config)
        if isinstance(config, GenerationConfig):
            return config.model_dump(exclude_none=True) or None
        return dict(config) if config else None

    async def _apply(self, turn: Turn, actions: list[Push | Flush]):
        """Send the segmenter's actions on the turn's current Cartesia context."""
        try:
            for action in actions:
                link = turn.link
                if isinstance(action, Push):
                    await self._push(turn, link, action.text)
                    continue
                await link.context.flush()
                link.ledger.flushed()
                if turn.switch_pending:
                    # The sentence is done: the next one goes to a context with the new settings.
                    turn.switch_pending = False
                    await self._close_link(turn)
                    turn.link = self._new_link(turn, link.next_number)
                    turn.segmenter.new_context()
        except CartesiaError as e:
            await self._fail_turn(turn, e)

    async def _push(self, turn: Turn, link: Link, text: str):
        now = time.monotonic()
        await link.context.push(text, generation_config=self._generation_config())
        self._stats.characters_sent += len(text)
        if link.sent(text, now):
            self._stats.contexts_opened += 1
            turn.ready.put_nowait(link)
        if not turn.first_sent:
            turn.first_sent = True
            await self.start_ttfb_metrics(start_time=time.time())

    async def _close_link(self, turn: Turn):
        link = turn.link
        if not link.active:
            await link.context.cancel()  # never used: forget it locally, nothing on the wire
        elif not link.closed:
            link.closed = True
            link.ledger.closed()
            await link.context.no_more_inputs()

    # -- receiving ----------------------------------------------------------------------

    async def _receive_turn(self, turn: Turn):
        """Play the turn's Cartesia contexts in order into its audio context."""
        try:
            while (link := await turn.ready.get()) is not None:
                if not await self._receive_link(turn, link):
                    return
                link.done = True
                turn.audio_offset += self._seconds(link.audio_bytes)
        except CartesiaConnectionError as e:
            await self._fail_turn(turn, e)
            return
        self._turns.pop(turn.context_id, None)
        await self._end_audio(turn.context_id)

    async def _receive_link(self, turn: Turn, link: Link) -> bool:
        """Relay one Cartesia context's events; False if the turn must stop."""
        async for event in link.context.receive():
            if isinstance(event, Chunk):
                await self._on_chunk(turn, link, event)
            elif isinstance(event, Timestamps):
                await self._on_timestamps(turn, event)
            elif isinstance(event, FlushDone):
                await self._segments_done(turn, link, link.ledger.flush_done(event.flush_id))
            elif isinstance(event, Done):
                await self._segments_done(turn, link, link.ledger.done())
                return True
            elif isinstance(event, Error):
                await self._fail_turn(turn, event.exception())
                return False
        return False  # cancelled

    @property
    def _model(self) -> str | None:
        return assert_given(self._settings.model)

    def _seconds(self, wire_bytes: int) -> float:
        """Seconds of audio in ``wire_bytes`` of the wire encoding and rate."""
        return wire_bytes / (self._wire_rate * BYTES_PER_SAMPLE[self._encoding])

    async def _on_chunk(self, turn: Turn, link: Link, chunk: Chunk):
        local, done = link.received(chunk, time.monotonic())
        await self._segments_done(turn, link, done)
        if not turn.heard:
            turn.heard = True
            await self.stop_ttfb_metrics(end_time=time.time())
        audio = turn.converter.convert(chunk.audio)
        if audio and self._wire_rate != self.sample_rate:
            audio = await turn.resampler.resample(audio, self._wire_rate, self.sample_rate)
        await self._append_audio(turn, audio, link.number(local))

    async def _append_audio(self, turn: Turn, audio: bytes, flush_id: int):
        if audio:
            frame = CartesiaTTSAudioRawFrame(
                audio=audio,
                sample_rate=self.sample_rate,
                num_channels=1,
                context_id=turn.context_id,
                flush_id=flush_id,
            )
            await self.append_to_audio_context(turn.context_id, frame)

    async def _on_timestamps(self, turn: Turn, event: Timestamps):
        words = []
        for word, start in zip(event.words, event.start, strict=True):
            cleaned = strip_tags(word)
            if cleaned:
                words.append((cleaned, start + turn.audio_offset))
        if not words:
            return
        cjk = str(assert_given(self._settings.language) or "").split("-")[0].lower() in ("zh", "ja")
        await self.add_word_timestamps(
            words,
            turn.context_id,
            includes_inter_frame_spaces=True if cjk else None,
            pre_merge_tokens=cjk,
        )

    async def _segments_done(self, turn: Turn, link: Link, segments: list[Segment]):
        for segment in segments:
            number = link.number(segment.number)
            if self._wire_rate != self.sample_rate:
                # The resampler holds the segment's last few milliseconds back.
                await self._append_audio(turn, await turn.resampler.flush(), number)
            frame = CartesiaFlushDoneFrame(
                context_id=turn.context_id, flush_id=number, text=segment.text
            )
            await self.append_to_audio_context(turn.context_id, frame)
            if self.can_generate_metrics() and self.metrics_enabled:
                data = CartesiaSegmentMetricsData(
                    processor=self.name,
                    model=self._model,
                    context_id=turn.context_id,
                    flush_id=number,
                    ttfb=link.ttfb(segment.number),
                    audio_seconds=self._seconds(link.segment_bytes(segment.number)),
                    characters=len(segment.text),
                )
                await self.push_frame(MetricsFrame(data=[data]))

    # -- ending -------------------------------------------------------------------------

    async def _fail_turn(self, turn: Turn, error: Exception):
        """Report an error, cancel what is left of the turn, and end its audio cleanly."""
        if turn.failed:
            return
        self._stats.errors += 1
        if turn.input_ended:
            self._turns.pop(turn.context_id, None)
        logger.warning(f"{self}: turn {turn.context_id} failed: {error}")
        await self.push_error(error_msg=f"Cartesia error: {error}", exception=error)
        await self._stop_turn(turn)
        # Stop the audio now; the audio context lives on until the turn's input ends,
        # or pipecat would open a new one (and a TTSStartedFrame) for its next token.
        await self._end_audio(turn.context_id, remove=turn.input_ended)

    async def _stop_turn(self, turn: Turn) -> int:
        """Cancel every Cartesia context of the turn and stop relaying its events.

        Returns:
            How many of its contexts were still live on the server.
        """
        turn.failed = True
        live = 0
        for link in turn.every_link:
            live += link.active and not link.done
            await link.context.cancel()
        if turn.receiver is not None and turn.receiver is not asyncio.current_task():
            await self.cancel_task(turn.receiver)
        return live

    async def _end_audio(self, context_id: str, *, stop: bool = True, remove: bool = True):
        """End the turn's audio after everything queued in its audio context.

        Args:
            context_id: The audio context.
            stop: Append a `TTSStoppedFrame`.
            remove: Remove the audio context (playback ends after its last item).
        """
        if not self.audio_context_available(context_id):
            return
        if stop:
            await self.append_to_audio_context(context_id, TTSStoppedFrame(context_id=context_id))
        if remove:
            await self.remove_audio_context(context_id)
