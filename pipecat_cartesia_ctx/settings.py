#
# Copyright (c) 2026, pipecat-cartesia-ctx contributors
#
# SPDX-License-Identifier: BSD 2-Clause License
#

"""Checks of `CartesiaContextTTSService`'s options and settings, where they enter.

A bad value is refused at construction (raised) or in a ``TTSUpdateSettingsFrame``
(one error frame, the previous settings kept), never once per turn or per token
later. The rules themselves are `protocol`'s, shared with the client and the
emulator; this module only knows pipecat's settings types, so only `service`
imports it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from loguru import logger
from pipecat.services.cartesia.tts import CartesiaEmotion, CartesiaTTSSettings, GenerationConfig
from pipecat.utils.types import NOT_GIVEN, is_given

from .protocol import (
    MODEL_FAMILIES,
    InvalidRequestError,
    check_cartesia_version,
    check_container,
    check_encoding,
    check_language,
    check_max_buffer_delay_ms,
    check_model_id,
    check_pronunciation_dict_id,
    check_url,
    is_known_model,
    normalize_voice,
)
from .protocol import validate_generation_config as _validate_generation_config
from .protocol.wire import refuse
from .reconnect import RetryPolicy
from .segmenter import Segmenter

# The fields of `CartesiaTTSSettings` the service reads; anything else in a
# delta lands in its ``extra`` and is not used.
SETTINGS_FIELDS = ("model", "voice", "language", "generation_config", "pronunciation_dict_id")

_EMOTIONS = frozenset(e.value for e in CartesiaEmotion)


def check_options(
    *,
    url: Any,
    cartesia_version: Any,
    sample_rate: Any,
    encoding: Any,
    container: Any,
    max_buffer_delay_ms: Any,
    flush_on: Any,
    first_push_words: Any,
    first_segment_words: Any,
    flush_first_clause: Any,
    first_segment_deadline_ms: Any,
    max_concurrent_contexts: Any,
    reconnect_give_up_s: Any,
    retry: Any,
) -> None:
    """Check the constructor options that no settings update can change.

    Raises:
        InvalidRequestError: The first bad option, named with its value and
            what is allowed.
    """
    check_url(url)
    check_cartesia_version(cartesia_version)
    # Any pipeline rate works: audio comes at the next Cartesia rate up and is
    # resampled. Only a rate that is no rate is refused.
    if sample_rate is not None and (
        isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate <= 0
    ):
        refuse("sample_rate", "a positive integer in Hz (or None: the pipeline's)", sample_rate)
    check_encoding(encoding, "encoding")
    check_container(container, "container")
    check_max_buffer_delay_ms(max_buffer_delay_ms)
    try:
        # Its own rules, defined once.
        Segmenter(
            flush_on, first_push_words=first_push_words, first_segment_words=first_segment_words
        )
    except ValueError as e:
        raise InvalidRequestError(str(e)) from None
    if not isinstance(flush_first_clause, bool):
        refuse("flush_first_clause", "True or False", flush_first_clause)
    if first_segment_deadline_ms is not None and (
        isinstance(first_segment_deadline_ms, bool)
        or not isinstance(first_segment_deadline_ms, int)
        or not 0 < first_segment_deadline_ms <= 10_000
    ):
        refuse(
            "first_segment_deadline_ms",
            "milliseconds from 1 to 10000 (or None)",
            first_segment_deadline_ms,
        )
    if max_concurrent_contexts is not None and (
        isinstance(max_concurrent_contexts, bool)
        or not isinstance(max_concurrent_contexts, int)
        or max_concurrent_contexts < 1
    ):
        refuse(
            "max_concurrent_contexts", "an integer of at least 1 (or None)", max_concurrent_contexts
        )
    if (
        isinstance(reconnect_give_up_s, bool)
        or not isinstance(reconnect_give_up_s, int | float)
        or math.isnan(reconnect_give_up_s)
        or reconnect_give_up_s < 0
    ):
        refuse("reconnect_give_up_s", "a number of seconds >= 0", reconnect_give_up_s)
    if retry is not None and not isinstance(retry, RetryPolicy):
        refuse("retry", "a RetryPolicy (or None)", retry)


def check_settings(
    settings: CartesiaTTSSettings,
    *,
    update: bool,
    service_language: Callable[[str], str],
) -> None:
    """Check the given fields of the service's settings, or of a delta, as a whole.

    Args:
        settings: The settings at construction, or a ``TTSUpdateSettingsFrame``'s delta.
        update: True for a delta. A missing voice is allowed at construction,
            as in pipecat's service (a bot may set it by an update before it
            speaks); an update to no voice is refused.
        service_language: Converts a pipecat `Language` or a code to
            Cartesia's code, as the service stores it.

    Raises:
        InvalidRequestError: The first bad field, named with its value and what
            is allowed. Nothing is changed either way.
    """
    values = {
        name: value
        for name in SETTINGS_FIELDS
        if is_given(value := getattr(settings, name, NOT_GIVEN))
    }
    if "model" in values:
        model = check_model_id(values["model"], "model")
        if not is_known_model(model):
            # Cartesia adds models (and snapshots) faster than this package is
            # released: an id it does not know is sent as given, and a model the
            # server lacks fails the turn with its own 400 model_not_found.
            logger.warning(
                f"Cartesia model {model!r} is not one this package knows "
                f"({', '.join(MODEL_FAMILIES)}, their -latest and dated snapshots); "
                "it is sent as given"
            )
    if "voice" in values and (values["voice"] is not None or update):
        try:
            normalize_voice(values["voice"])
        except InvalidRequestError:
            refuse("voice", "a Cartesia voice id", values["voice"])
    if "language" in values:
        language = values["language"]
        check_language(service_language(language) if isinstance(language, str) else language)
    if "generation_config" in values:
        config = generation_config_wire(values["generation_config"])
        emotion = (config or {}).get("emotion")
        if emotion is not None and emotion not in _EMOTIONS:
            # Cartesia documents "over 60" emotions and adds more: not a closed list.
            logger.warning(
                f"generation_config emotion {emotion!r} is not one of pipecat's "
                "CartesiaEmotion values; it is sent as given"
            )
    if "pronunciation_dict_id" in values:
        check_pronunciation_dict_id(values["pronunciation_dict_id"])


def generation_config_wire(config: Any) -> dict[str, Any] | None:
    """The wire object of a ``generation_config`` setting, checked.

    Args:
        config: pipecat's `GenerationConfig`, a mapping with ``volume``,
            ``speed`` and ``emotion``, or None.

    Returns:
        The object to send (unset fields left out), or None when there is none.

    Raises:
        InvalidRequestError: A value out of its documented range, or of the
            wrong type.
    """
    if config is None:
        return None
    if isinstance(config, GenerationConfig):
        config = config.model_dump(exclude_none=True)
    elif isinstance(config, Mapping):
        config = {k: v for k, v in config.items() if v is not None}
    else:
        refuse("generation_config", "a GenerationConfig, a dict or None", config)
    return _validate_generation_config(config) or None
