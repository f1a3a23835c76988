#
# Copyright (c) 2026, pipecat-cartesia-ctx contributors
#
# SPDX-License-Identifier: BSD 2-Clause License
#

"""`ConnectionMixin`: the service's Cartesia side: its connection, its turns' contexts, retries.

One long-lived connection, kept by a `ConnectionKeeper` instead of pipecat's
own receive loop and reconnection. Each turn's contexts open within the
``max_concurrent_contexts`` budget, are read by the turn's receiver task, and
a turn that lost its context (or was refused for now) goes on on a new one
after the `RetryPolicy`'s backoff. Cartesia's errors are classified here for
pipecat: only a refused key makes the service unusable.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from loguru import logger
from pipecat.frames.frames import ErrorFrame, MetricsFrame
from pipecat.services.cartesia.tts import CartesiaTTSSettings
from pipecat.services.tts_service import WebsocketTTSService
from pipecat.utils.errors import ErrorCategory
from pipecat.utils.types import assert_given

from .client import CartesiaConnection
from .frames import CartesiaResumeMetricsData
from .protocol import (
    BYTES_PER_SAMPLE,
    AuthenticationError,
    CartesiaAPIError,
    CartesiaConnectionError,
    CartesiaError,
    ConcurrencyLimitError,
    Error,
    InvalidRequestError,
    QuotaExceededError,
    RateLimitError,
    ServerError,
)
from .reconnect import ConnectionKeeper, RetryPolicy
from .settings import generation_config_wire
from .stats import CartesiaServiceStats
from .turn import TurnPhase
from .turn_actions import Action, Audio, FaultKind, Open, Retry, Words, coalesce
from .turn_io import TurnIO

# The most audio one frame downstream carries when chunks are taken together.
MAX_FRAME_S = 0.5
# Actions that can wait for the events already received: only what goes downstream.
_OUTPUT = (Audio, Words)


class _LocalBudgetFull(ConcurrencyLimitError):
    """Our own ``max_concurrent_contexts`` is reached: wait for a slot (nothing was sent)."""


class ConnectionMixin(WebsocketTTSService):
    """Keeps the Cartesia connection, opens and reads the turns' contexts, retries lost turns.

    A mixin of `CartesiaContextTTSService`, which sets the attributes declared
    here from its arguments, carries out (``_do``) the turn engine's actions
    that this side feeds back, and forgets (``_forget``) the turns left at a
    disconnect.
    """

    # The connection, as the service was given it.
    _api_key: str
    _url: str
    _extra_headers: dict[str, str]
    _cartesia_version: str
    _retry: RetryPolicy
    _reconnect_give_up_s: float
    # Every context's settings and output format.
    _settings: CartesiaTTSSettings
    _encoding: str
    _container: str
    _wire_rate: int
    _max_buffer_delay_ms: int | None
    # The contexts open at once: None is no limit.
    _max_contexts: int | None
    _turns: dict[str, TurnIO]
    _stats: CartesiaServiceStats

    if TYPE_CHECKING:
        # Carried out by the service.
        async def _do(self, turn: TurnIO, actions: list[Action]) -> None: ...

        async def _forget(self, turn: TurnIO, *, keep: bool = False) -> None: ...

        def _arm(self, turn: TurnIO) -> None: ...

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._keeper: ConnectionKeeper | None = None
        self._slot_freed = asyncio.Condition()

    # -- connection ------------------------------------------------------------------

    async def _connect(self):
        await super()._connect()
        if self._keeper is None:
            self._keeper = ConnectionKeeper(
                self._open_connection,
                policy=self._retry,
                give_up_after=self._reconnect_give_up_s,
                on_fatal=self._on_fatal,
            )
        self._keeper.start()

    async def _disconnect(self):
        await super()._disconnect()
        for turn in list(self._turns.values()):
            await self._forget(turn)
        if self._keeper is not None:
            await self._keeper.stop()
            await self._call_event_handler("on_disconnected")

    async def _open_connection(self) -> CartesiaConnection:
        try:
            connection = await CartesiaConnection.connect(
                self._api_key,
                self._url,
                cartesia_version=self._cartesia_version,
                extra_headers=self._extra_headers,
            )
        except CartesiaError as e:
            await self._call_event_handler("on_connection_error", str(e))
            raise
        await self._call_event_handler("on_connected")
        return connection

    async def _on_fatal(self, error: CartesiaError):
        """The key was refused, or the server stayed unreachable: say so once."""
        self._stats.errors += 1
        logger.error(f"{self}: cannot use Cartesia: {error}")
        frame = ErrorFrame(error=f"Cartesia: {error}", exception=error)
        frame.fatal = True
        await self.push_error_frame(frame, force_treat_as_permanent=True)
        for turn in list(self._turns.values()):
            await self._do(turn, turn.engine.fail(error, fatal=True))

    # The base class's receive loop and reconnection are not used: the keeper
    # reconnects, and each turn's receiver reads its own contexts.
    async def _connect_websocket(self):
        pass

    async def _disconnect_websocket(self):
        pass

    async def _receive_messages(self):
        pass

    async def _verify_connection(self) -> bool:
        return self._keeper is not None and self._keeper.current is not None

    # -- errors ---------------------------------------------------------------------------

    def _classify_error(self, exception: Exception) -> ErrorCategory | None:
        """Our failure policy, for pipecat: only a refused key makes the service unusable."""
        if isinstance(exception, AuthenticationError):
            return ErrorCategory.AUTHENTICATION
        if isinstance(exception, CartesiaAPIError) and exception.status_code == 403:
            return ErrorCategory.AUTHORIZATION
        if isinstance(exception, RateLimitError):
            return ErrorCategory.RATE_LIMIT
        if isinstance(exception, QuotaExceededError):
            return ErrorCategory.QUOTA
        if isinstance(exception, CartesiaConnectionError):
            return ErrorCategory.CONNECTIVITY
        if isinstance(exception, ServerError):
            return ErrorCategory.SERVER
        if isinstance(exception, CartesiaError):
            # A refused input concerns one turn (the next one may be fine): not
            # pipecat's "invalid request", which would end the service.
            return ErrorCategory.UNKNOWN
        return None

    # -- contexts -------------------------------------------------------------------------

    async def _open_context(self, turn: TurnIO, context_id: str) -> list[Action]:
        """Create a Cartesia context with the current settings, within the budget."""
        if self._keeper is None:
            return turn.engine.refused(context_id, CartesiaConnectionError("not connected"))
        # Between turns the keeper reopens a closed connection in the background;
        # a turn starting meanwhile waits for it (the keeper bounds the wait).
        connection = await self._keeper.connection()
        if self._max_contexts is not None and self._live_contexts() >= self._max_contexts:
            return turn.engine.refused(
                context_id, _LocalBudgetFull("max_concurrent_contexts reached")
            )
        settings = self._settings
        if not assert_given(settings.voice):
            return turn.engine.fail(
                InvalidRequestError("no voice: set CartesiaContextTTSService.Settings(voice=...)")
            )
        try:
            self._generation_config()  # what every push of the context will carry
            context = connection.context(
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
                context_id=context_id,
            )
        except (InvalidRequestError, ValueError, TypeError) as e:
            # Settings checked where they entered can still be changed in place
            # (``tts._settings``, a shared GenerationConfig): the turn fails
            # here, once, rather than once per segment on the server or per
            # token in pipecat. A closed connection is not caught: it retries.
            if not isinstance(e, InvalidRequestError):
                e = InvalidRequestError(f"cannot open a context with these settings: {e}")
            return turn.engine.fail(e)
        turn.contexts[context_id] = context
        turn.opened.put_nowait(context)
        self._stats.contexts_opened += 1
        return []

    def _generation_config(self) -> dict[str, Any] | None:
        return generation_config_wire(assert_given(self._settings.generation_config))

    async def _receive(self, turn: TurnIO):
        """Feed the turn's contexts' events to its engine, context after context.

        Events already received are taken together (taking them does not
        wait), and their audio goes downstream as one frame per segment: the
        more loaded the process, the fewer frames per second of audio.
        """
        max_bytes = round(MAX_FRAME_S * self._wire_rate * BYTES_PER_SAMPLE[self._encoding])
        while (context := await turn.opened.get()) is not None:
            # The engine counts what it returned as gone downstream: a batch is
            # carried out before anything else, also when the stream ends.
            batch: list[Action] = []
            lost: CartesiaConnectionError | None = None
            try:
                async for event in context.receive():
                    self._stats.errors += isinstance(event, Error)
                    actions = turn.engine.event(context.context_id, event, time.monotonic())
                    batch += actions
                    if context.pending and all(isinstance(a, _OUTPUT) for a in actions):
                        continue
                    await self._do(turn, coalesce(batch, max_bytes))
                    batch = []
                    self._arm(turn)  # after a 400, audio lets held text go on
            except CartesiaConnectionError as e:
                lost = e
            await self._do(turn, coalesce(batch, max_bytes))
            if lost is not None:
                await self._do(turn, turn.engine.refused(context.context_id, lost))
            if turn.contexts.pop(context.context_id, None) is not None:
                await self._free_slot()

    async def _cancel_context(self, turn: TurnIO, context_id: str):
        context = turn.contexts.pop(context_id, None)
        if context is not None:
            await context.cancel()
            await self._free_slot()

    def _live_contexts(self) -> int:
        return sum(len(t.contexts) for t in self._turns.values())

    async def _free_slot(self):
        async with self._slot_freed:
            self._slot_freed.notify_all()

    async def _wait_for_slot(self):
        async with self._slot_freed:
            await self._slot_freed.wait_for(lambda: self._live_contexts() < self._max_contexts)

    # -- retrying -------------------------------------------------------------------------

    def _schedule_retry(self, turn: TurnIO, retry: Retry) -> list[Action]:
        if retry.attempt >= self._retry.max_attempts:
            logger.warning(
                f"{self}: turn {turn.context_id}: giving up after {retry.attempt} losses "
                f"in a row without audio ({retry.error})"
            )
            return turn.engine.fail(retry.error)
        what = {
            FaultKind.CONNECTION: "lost its connection",
            FaultKind.RETRY: "was refused for now",
            FaultKind.SKIP: "had an input refused (the sentence is found and skipped)",
        }.get(retry.kind, "lost its context")
        logger.warning(
            f"{self}: turn {turn.context_id} {what}: {retry.error}; "
            f"going on on a new context (attempt {retry.attempt})"
        )
        turn.retry = self.create_task(
            self._resume(turn, retry, time.monotonic()), name=f"cartesia-retry-{turn.context_id}"
        )
        return []

    async def _resume(self, turn: TurnIO, retry: Retry, lost_at: float):
        engine = turn.engine
        try:
            if isinstance(retry.error, _LocalBudgetFull):
                await self._wait_for_slot()
            elif retry.kind is FaultKind.RETRY:
                await asyncio.sleep(self._retry.delay(retry.attempt))
            if self._keeper is not None:
                await self._keeper.connection()
        except CartesiaError as e:
            await self._do(turn, engine.fail(e, fatal=True))
            return
        turn.retry = None
        # In order with the turn's text (see `TurnIO.sending`); the turn may have
        # ended while another holder of the lock waited.
        async with turn.sending:
            if engine.phase is TurnPhase.RESUMING:
                before = engine.replayed_characters
                actions = engine.resume(time.monotonic())
                replayed = engine.replayed_characters - before
                self._stats.replayed_characters += replayed
                if self.can_generate_metrics() and self.metrics_enabled:
                    keeper = self._keeper
                    opened = next((a.context_id for a in actions if isinstance(a, Open)), None)
                    data = CartesiaResumeMetricsData(
                        processor=self.name,
                        model=assert_given(self._settings.model),
                        context_id=turn.context_id,
                        resumed_on=opened,
                        reason=retry.kind.value,
                        attempt=retry.attempt,
                        waited_seconds=time.monotonic() - lost_at,
                        replayed_characters=replayed,
                        reconnects=keeper.reconnects if keeper else 0,
                        connect_seconds=keeper.connect_seconds if keeper else 0.0,
                    )
                    await self.push_frame(MetricsFrame(data=[data]))
                await self._do(turn, actions)
            self._arm(turn)
