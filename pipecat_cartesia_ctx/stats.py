#
# Copyright (c) 2026, pipecat-cartesia-ctx contributors
#
# SPDX-License-Identifier: BSD 2-Clause License
#

"""`CartesiaServiceStats`: the counters a `CartesiaContextTTSService` keeps since it started.

Plain data, read through the service's ``stats`` property (a snapshot).
"""

from dataclasses import dataclass


@dataclass
class CartesiaServiceStats:
    """Counters of a `CartesiaContextTTSService` since it started.

    Parameters:
        contexts_opened: Cartesia contexts that received input.
        contexts_cancelled: Contexts cancelled by an interruption.
        stale_events_dropped: Server events that arrived for cancelled,
            finished or unknown contexts and were dropped.
        characters_sent: Characters of text sent to Cartesia (replays included).
        errors: Error events Cartesia sent for the service's contexts (429, 5xx,
            400, ...), plus connections refused for good (401/403, unreachable).
            Dropped connections count in ``reconnects``.
        reconnects: Connections opened after the first.
        replayed_characters: Characters sent again after a lost context.
        connect_seconds: How long the last connection took to open.
        pacing_timeouts: Slices of a long text frame sent without their wait
            for audio ending (it is bounded): above 0, audio stopped coming
            while text was ahead of it.
    """

    contexts_opened: int = 0
    contexts_cancelled: int = 0
    stale_events_dropped: int = 0
    characters_sent: int = 0
    errors: int = 0
    reconnects: int = 0
    replayed_characters: int = 0
    connect_seconds: float = 0.0
    pacing_timeouts: int = 0
