#
# Copyright (c) 2026, pipecat-cartesia-ctx contributors
#
# SPDX-License-Identifier: BSD 2-Clause License
#

"""Draws the voice bot demo's timeline (see ``_timeline.py``) with matplotlib.

Imported only when a picture is asked for, so the demo runs without matplotlib.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display needed, none opened

import matplotlib.pyplot as plt
from _timeline import Timeline
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MultipleLocator

# One colour per flush_id (segment), none of them the red of the barge-in.
_SEGMENT_COLORS = ["#4c72b0", "#dd8452", "#55a868", "#8172b3", "#937860", "#da8bc3", "#8c8c8c"]
_CUT = "#c0392b"
_INK = "#333333"
_BANDS = ["#ececec", "#f6f6f6"]
# Lanes, top to bottom.
_USER, _LLM, _WIRE, _RECEIVED, _PLAYED = 5, 4, 3, 2, 1
_LANES = {
    _USER: "user",
    _LLM: "LLM tokens",
    _WIRE: "on the wire\n(Cartesia received)",
    _RECEIVED: "audio out of\nthe TTS service",
    _PLAYED: "audio played\n(bot.wav)",
}


def _color(flush_id: int | None) -> str:
    return _SEGMENT_COLORS[((flush_id or 1) - 1) % len(_SEGMENT_COLORS)]


def draw(timeline: Timeline, path: Path, *, source: str) -> None:
    """Draw the timeline as a PNG.

    Args:
        timeline: What happened.
        path: Where to write the PNG.
        source: Where the audio came from, for the subtitle.
    """
    fig, ax = plt.subplots(figsize=(12, 5.2), dpi=100)
    end = max([timeline.played.end, *(t.at for t in timeline.tokens)], default=1.0)
    _turn_bands(ax, timeline)
    _tokens(ax, timeline)
    _wire(ax, timeline, end)
    _received(ax, timeline)
    _played(ax, timeline)
    _barge_in(ax, timeline)

    ax.set_xlim(0, end + 0.2)
    ax.xaxis.set_major_locator(MultipleLocator(1.0))  # whole seconds, to find printed times
    ax.set_ylim(0.4, 6.1)
    ax.set_yticks(list(_LANES), list(_LANES.values()), fontsize=11)
    ax.tick_params(axis="x", labelsize=10.5)
    ax.tick_params(axis="y", length=0)
    ax.set_xlabel("seconds from the start (the time axis of bot.wav)", fontsize=11)
    ax.grid(axis="x", color="#dddddd", linewidth=0.6)
    ax.set_axisbelow(True)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    speed = timeline.clock.speedup
    pace = f", run {speed:g}x faster (times scaled back)" if speed != 1 else ""
    ax.set_title(
        f"Voice bot demo: what happened in each turn\n{source}{pace}; colour: flush_id",
        fontsize=12.5,
    )
    handles = _legend(timeline)
    rows = 2
    fig.legend(
        handles=handles,
        loc="lower center",
        ncol=-(-len(handles) // rows),
        frameon=False,
        fontsize=10.5,
    )
    fig.tight_layout(rect=(0, 0.03 + 0.045 * rows, 1, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _turn_bands(ax, timeline: Timeline) -> None:
    """A shaded band per turn, from its first token to the end of its audio."""
    starts: dict[int, float] = {}
    for token in timeline.tokens:
        starts.setdefault(token.turn, token.at)
    ends: dict[int, float] = {}
    for span in timeline.played.spans:
        turn = timeline.turns.get(span.context_id)
        if turn is not None:
            ends[turn] = span.end / timeline.played.sample_rate
    for turn, start in starts.items():
        stop = ends.get(turn, start)
        ax.axvspan(start, stop, color=_BANDS[turn % 2], zorder=0, linewidth=0)
        ax.text(start + 0.05, 5.8, f"turn {turn}", fontsize=11, color=_INK, va="center")


def _tokens(ax, timeline: Timeline) -> None:
    ax.vlines([t.at for t in timeline.tokens], _LLM - 0.28, _LLM + 0.28, color=_INK, lw=0.8)


def _wire(ax, timeline: Timeline, end: float) -> None:
    if timeline.wire is None:
        ax.text(
            end / 2,
            _WIRE,
            "not seen: the demo talked to the real Cartesia API (the emulator records the wire)",
            ha="center",
            va="center",
            fontsize=10.5,
            color="#777777",
            bbox={"facecolor": "white", "edgecolor": "none", "pad": 2},
        )
        return
    pushes = [e.at for e in timeline.wire if e.kind == "push"]
    ax.vlines(pushes, _WIRE - 0.22, _WIRE + 0.22, color="#888888", lw=0.8)
    # The nth flush of a context ends its segment n: drawn in that segment's colour.
    flushes: dict[str, int] = defaultdict(int)
    for event in timeline.wire:
        if event.kind == "flush":
            flushes[event.context_id] += 1
            ax.scatter(event.at, _WIRE, marker="v", s=46, color=_color(flushes[event.context_id]))
            ax.scatter(event.at, _WIRE, marker="v", s=46, facecolor="none", edgecolor=_INK, lw=0.5)
        elif event.kind == "close":
            ax.scatter(event.at, _WIRE, marker="s", s=30, color=_INK, zorder=3)
        elif event.kind == "cancel":
            ax.scatter(event.at, _WIRE, marker="X", s=90, color=_CUT, zorder=4)


def _received(ax, timeline: Timeline) -> None:
    """Each frame as a tick when it came out of the TTS, its segment's arrival as a bar."""
    groups: dict[tuple[str, int | None], list[float]] = defaultdict(list)
    for frame in timeline.received:
        groups[(frame.context_id, frame.flush_id)].append(frame.at)
    for (_, flush_id), times in groups.items():
        color = _color(flush_id)
        ax.broken_barh(
            [(times[0], times[-1] - times[0])], (_RECEIVED - 0.25, 0.5), color=color, alpha=0.3
        )
        ax.vlines(times, _RECEIVED - 0.25, _RECEIVED + 0.25, color=color, lw=0.7)


def _played(ax, timeline: Timeline) -> None:
    """Each stretch of a segment played without a break; a gap is the player running dry."""
    rate = timeline.played.sample_rate
    longest: dict[tuple[str, int | None], tuple[float, float]] = {}
    for span in timeline.played.spans:
        start, seconds = span.start / rate, (span.end - span.start) / rate
        ax.broken_barh([(start, seconds)], (_PLAYED - 0.3, 0.6), color=_color(span.flush_id))
        key = (span.context_id, span.flush_id)
        if seconds > longest.get(key, (0.0, 0.0))[1]:
            longest[key] = (start, seconds)
    for (_, flush_id), (start, seconds) in longest.items():
        if seconds > 0.3:  # labelled once, where there is room
            ax.text(
                start + seconds / 2,
                _PLAYED,
                str(flush_id),
                ha="center",
                va="center",
                fontsize=10,
                color="white",
                fontweight="bold",
            )


def _barge_in(ax, timeline: Timeline) -> None:
    """The barge-in across every lane, the user's speech, the cancel and the cut."""
    if timeline.barge_in is None:
        return
    barge_in = timeline.barge_in
    ax.axvline(barge_in, color=_CUT, linestyle="--", linewidth=1.2, zorder=5)
    if timeline.user_stops is not None:
        ax.broken_barh(
            [(barge_in, timeline.user_stops - barge_in)],
            (_USER - 0.3, 0.6),
            facecolor="none",
            edgecolor=_CUT,
            hatch="////",
            linewidth=1,
        )
    lines = [f"barge-in at {barge_in:.2f} s"]
    cancels = [e.at for e in timeline.wire or [] if e.kind == "cancel"]
    if cancels:
        lines.append(f"cancel on the wire +{(cancels[0] - barge_in) * 1000:.0f} ms")
    if timeline.cut is not None:
        lines.append(f"audio cut +{(timeline.cut - barge_in) * 1000:.0f} ms")
    if timeline.late_events_dropped:
        lines.append(f"late server events dropped: {timeline.late_events_dropped}")
        ax.vlines(timeline.cut, _PLAYED - 0.42, _PLAYED + 0.42, color=_CUT, lw=2.5, zorder=6)
    # Beside the user's speech, where nothing else is drawn.
    ax.text(
        (timeline.user_stops or barge_in) + 0.15,
        _USER,
        "\n".join(lines),
        ha="left",
        va="center",
        fontsize=10,
        color=_CUT,
        bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.85, "pad": 1.5},
    )


def _legend(timeline: Timeline) -> list:
    flush_ids = {s.flush_id or 1 for s in timeline.played.spans} | {1}
    flush_ids |= {r.flush_id or 1 for r in timeline.received}
    for context_id in {e.context_id for e in timeline.wire or []}:
        flushes = sum(e.kind == "flush" and e.context_id == context_id for e in timeline.wire or [])
        flush_ids |= set(range(1, flushes + 1))
    handles: list = [Patch(color=_color(f), label=f"flush_id {f}") for f in sorted(flush_ids)]

    def marker(label: str, **kwargs) -> Line2D:
        return Line2D([], [], linestyle="none", label=label, **kwargs)

    handles += [
        marker("token / push", marker="|", color=_INK, markersize=9),
        marker("flush", marker="v", color="#aaaaaa", markeredgecolor=_INK, markersize=7),
        marker("close", marker="s", color=_INK, markersize=6),
        marker("cancel", marker="X", color=_CUT, markersize=9),
        Line2D([], [], color=_CUT, linestyle="--", label="barge-in"),
        Patch(facecolor="none", edgecolor=_CUT, hatch="////", label="user speaks"),
    ]
    return handles
