"""Seeded fault-injection runs: whole turns through the service against a faulty emulator.

`run_scenario(seed)` picks, from ``random.Random(seed)``, two to four turns of
realistic text and one fault per turn (a dropped or closed connection, a 429 or
503 error event, a 400 refusing one sentence, a stall, a server slower than
real time, an interruption at a random moment), drives them through
`CartesiaContextTTSService` in a running pipeline, then adds a last plain turn.
It then checks, from the frames that came out and the emulator's record, the
invariants a user relies on:

- every word of every turn that was not interrupted reached pipecat exactly
  once, in order, and its segments' flush-done texts make up the turn's text;
- nothing of an interrupted turn comes out after its InterruptionFrame;
- every turn ends (one TTSStoppedFrame), the next one plays, and no turn or
  emulator context is left behind;
- the words pipecat records as spoken were voiced by the server;
- a 400 skips exactly the segment holding the refused word (the sentence, as
  the segmenter cuts it), which is never voiced, and the rest of the turn is;
- no fault is an error: the only `ErrorFrame` allowed is one for a turn whose
  every segment a 400 refused.

A broken invariant is recorded as a violation in the `Report`, never raised, so
the CI test and the soak command (``benchmarks/soak.py``) can name the seed.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pipecat.frames.frames import (
    ErrorFrame,
    Frame,
    InterruptionFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
    TTSTextFrame,
)
from pipeline_harness import running_pipeline
from service_helpers import llm_turn, make_tts

from pipecat_cartesia_ctx import CartesiaFlushDoneFrame, CartesiaTTSAudioRawFrame
from pipecat_cartesia_ctx.emulator import (
    Behavior,
    CancelBehavior,
    CartesiaEmulator,
    InjectedError,
    Pacing,
)
from pipecat_cartesia_ctx.segmenter import Position, Push, Segmenter

FAULT_KINDS = ("none", "drop", "close", "429", "503", "400", "stall", "slow", "interrupt")
TURN_TIMEOUT = 20.0

SENTENCES = [
    "Dr. Smith will see you on Tuesday at 3:45 in the afternoon.",
    "Your order number is 48213, and it should arrive within 5 business days.",
    "Well, that depends on the weather, the traffic, and a little bit of luck.",
    "The total comes to $127.50, including tax.",
    "I checked three times, and the flight still leaves at 7:15.",
    "Please bring your insurance card, a photo ID, and the referral from Dr. Jones.",
    "Sure, I can help with that.",
    "The meeting moved from room 204 to room 310, on the second floor.",
    "Mrs. Alvarez called at 9 a.m. about the invoice.",
    "It takes roughly 20 minutes by train, or 35 by bus.",
    "Honestly, I would start with the smaller one, then see how it goes.",
    "Your balance is 1,250 points, which is enough for a free night.",
    "Is there anything else I can do for you today?",
    "The results were clear: 92 percent said yes, 8 percent said no.",
]
SHORT = [
    "Okay, one moment.",
    "Dr. Smith is out today.",
    "That is 42, not 24.",
    "Yes, of course.",
]
PLAIN = "Great, thanks for waiting. Is there anything else, Dr. Smith?"

# Fast enough for CI, slow enough that audio is in flight when faults fire.
BASE_PACING = dict(first_chunk_ms=10.0, speed=8.0, chunk_ms=40.0)
# Slow enough that an interruption lands mid-turn.
INTERRUPT_PACING = dict(first_chunk_ms=20.0, speed=3.0, chunk_ms=40.0)


@dataclass
class Report:
    """The outcome of one seeded run.

    Parameters:
        seed: The seed.
        faults: The fault kind of each turn, in order (the final plain turn excluded).
        violations: Every broken invariant, as a sentence naming the turn.
        interrupted: For each turn, whether an interruption actually cut it.
        seconds: Wall time of the run.
    """

    seed: int
    faults: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    interrupted: list[bool] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class _Turn:
    index: int
    text: str
    fault: str
    sentences: list[str] = field(default_factory=list)
    refused: str | None = None  # the word a 400 fault refuses
    detail: str = ""
    mark: int = 0  # index in the downstream frames where the turn was sent
    context_id: str | None = None
    cut: int | None = None  # index of its InterruptionFrame downstream
    emu_contexts: list[str] = field(default_factory=list)
    ended: bool = True


def _plan(rnd: random.Random) -> list[_Turn]:
    turns = []
    for i in range(rnd.randint(2, 4)):
        fault = rnd.choice(FAULT_KINDS)
        if fault == "slow":
            sentences = [rnd.choice(SHORT)]
        else:
            sentences = rnd.sample(SENTENCES, rnd.randint(2, 4))
        turns.append(_Turn(i, " ".join(sentences), fault, sentences))
    return turns


def _arm(emu: CartesiaEmulator, turn: _Turn, rnd: random.Random) -> None:
    """Arm the turn's fault; counts are per connection, so start from its chunks so far."""
    faults = emu.faults
    for name in (
        "drop_after_chunks",
        "close_after_chunks",
        "error_after_chunks",
        "stall_after_chunks",
    ):
        setattr(faults, name, None)
    faults.error = None
    faults.refuse_transcripts_containing = None
    live = [c for c in emu.record.connections if not c.closed]
    sent = live[-1].chunks_sent if live else 0
    k = rnd.randint(1, 12)
    pacing = INTERRUPT_PACING if turn.fault == "interrupt" else BASE_PACING
    for key, value in pacing.items():
        setattr(emu.pacing, key, value)
    if turn.fault == "drop":
        faults.drop_after_chunks = sent + k
        turn.detail = f"after {k} chunks"
    elif turn.fault == "close":
        faults.close_code = rnd.choice((1000, 1001, 1011))
        faults.close_after_chunks = sent + k
        turn.detail = f"code {faults.close_code} after {k} chunks"
    elif turn.fault in ("429", "503"):
        status = int(turn.fault)
        code = "concurrency_limited" if status == 429 else "service_unavailable"
        faults.error = InjectedError(status, code, "Injected", f"injected {status}")
        faults.error_after_chunks = sent + k
        turn.detail = f"after {k} chunks"
    elif turn.fault == "400":
        sentence = rnd.choice(turn.sentences)
        others = " ".join(s for s in [*turn.sentences, PLAIN] if s != sentence)
        words = [w for w in sentence.split() if len(w) >= 4 and w not in others]
        if words:
            turn.refused = faults.refuse_transcripts_containing = rnd.choice(words)
            turn.detail = f"refusing {turn.refused!r}"
        else:
            turn.detail = "no word to refuse"
    elif turn.fault == "stall":
        faults.stall_ms = rnd.uniform(50, 300)
        faults.stall_after_chunks = sent + k
        turn.detail = f"{faults.stall_ms:.0f} ms after {k} chunks"
    elif turn.fault == "slow":
        emu.pacing.speed = rnd.uniform(0.8, 1.5)
        turn.detail = f"speed {emu.pacing.speed:.2f}"


def _of(frames: list[Frame], context_id: str | None) -> list[Frame]:
    return [f for f in frames if getattr(f, "context_id", None) == context_id]


async def _drive(pipeline, emu, tts, turn: _Turn, rnd: random.Random, report: Report):
    down = pipeline.down
    turn.mark = len(down.frames)
    opened_before = set(emu.record.contexts)
    await pipeline.send(*llm_turn(turn.text, seed=rnd.randint(0, 10**6)))

    def started(frames):
        return any(isinstance(f, TTSStartedFrame) for f in frames[turn.mark :])

    def stopped(frames):
        return any(
            isinstance(f, TTSStoppedFrame) and f.context_id == turn.context_id
            for f in frames[turn.mark :]
        )

    try:
        await down.wait_for(started, TURN_TIMEOUT)
        turn.context_id = next(
            f.context_id for f in down.frames[turn.mark :] if isinstance(f, TTSStartedFrame)
        )
        if turn.fault == "interrupt":
            n = rnd.randint(1, 15)
            turn.detail = f"after {n} audio frames"

            def heard(frames):
                chunks = [
                    f
                    for f in _of(frames[turn.mark :], turn.context_id)
                    if isinstance(f, CartesiaTTSAudioRawFrame)
                ]
                return len(chunks) >= n or stopped(frames)

            await down.wait_for(heard, TURN_TIMEOUT)
            if not stopped(down.frames):
                await pipeline.send(InterruptionFrame())
                await down.wait_for(
                    lambda fs: any(isinstance(f, InterruptionFrame) for f in fs[turn.mark :]),
                    TURN_TIMEOUT,
                )
                turn.cut = next(
                    i
                    for i, f in enumerate(down.frames)
                    if i >= turn.mark and isinstance(f, InterruptionFrame)
                )
                # Cut only if the turn had not finished before the interruption passed.
                if any(
                    isinstance(f, TTSStoppedFrame)
                    for f in _of(down.frames[turn.mark : turn.cut], turn.context_id)
                ):
                    turn.cut = None
            if turn.cut is None:
                await down.wait_for(stopped, TURN_TIMEOUT)
        else:
            await down.wait_for(stopped, TURN_TIMEOUT)
    except TimeoutError:
        turn.ended = False
        report.violations.append(
            f"turn {turn.index} ({turn.fault} {turn.detail}): turn never ended "
            f"within {TURN_TIMEOUT:.0f} s (context {turn.context_id}, turns left "
            f"{list(tts._turns)})"
        )
    turn.emu_contexts = [c for c in emu.record.contexts if c not in opened_before]


def _check_turn(turn: _Turn, frames: list[Frame], emu: CartesiaEmulator, report: Report):
    name = f"turn {turn.index} ({turn.fault} {turn.detail})".replace(" )", ")")
    if turn.context_id is None:
        report.violations.append(f"{name}: no TTSStartedFrame")
        return
    mine = _of(frames, turn.context_id)
    said = [f.text for f in mine if isinstance(f, TTSTextFrame)]
    expected = turn.text.split()
    stops = sum(isinstance(f, TTSStoppedFrame) for f in mine)
    starts = sum(isinstance(f, TTSStartedFrame) for f in mine)
    dones = [f for f in mine if isinstance(f, CartesiaFlushDoneFrame)]
    voiced: Counter[str] = Counter()
    for cid in turn.emu_contexts:
        voiced.update(emu.record.context(cid).spoken)
    if starts != 1:
        report.violations.append(f"{name}: {starts} TTSStartedFrames")

    if turn.refused is not None and turn.cut is None:
        _check_skip(name, turn, said, dones, voiced, report)
        return
    if turn.cut is None:
        if said != expected:
            report.violations.append(f"{name}: words {_diff(said, expected)}")
        text = "".join(f.text for f in dones)
        if text.strip() != turn.text.strip() or text.lstrip() != turn.text.lstrip():
            report.violations.append(
                f"{name}: flush-done texts {text!r} != turn text {turn.text!r}"
            )
        ids = [f.flush_id for f in dones]
        if ids != list(range(1, len(ids) + 1)):
            report.violations.append(f"{name}: flush ids {ids}, expected 1..{len(ids)}")
        if stops != 1 and turn.ended:
            report.violations.append(f"{name}: {stops} TTSStoppedFrames, expected 1")
    else:
        after = [
            f for f in frames[turn.cut + 1 :] if getattr(f, "context_id", None) == turn.context_id
        ]
        leaked = Counter(type(f).__name__ for f in after)
        if leaked:
            report.violations.append(
                f"{name}: after its InterruptionFrame, {dict(leaked)} of the interrupted turn"
            )
        if said != expected[: len(said)]:
            report.violations.append(
                f"{name}: interrupted words are not a prefix: {_diff(said, expected)}"
            )
        if stops > 1:
            report.violations.append(f"{name}: {stops} TTSStoppedFrames")
    # What pipecat records as spoken must have been voiced by the server.
    unvoiced = Counter(said) - voiced
    if unvoiced:
        report.violations.append(
            f"{name}: words sent downstream that the server never voiced in full: "
            f"{sorted(unvoiced.elements())}"
        )


def _check_skip(name, turn, said, dones, voiced, report):
    """A 400 turn: exactly the refused sentence (or its segment) is skipped, the rest voiced."""
    kept_text = "".join(f.text for f in dones)
    segments = _segments(turn.text)
    segment = next(s for s in segments if turn.refused in s)
    expected = "".join(s for s in segments if s is not segment)
    if kept_text.strip() != expected.strip():
        report.violations.append(
            f"{name}: flush-done texts {kept_text!r}, expected all but the segment {segment!r}"
        )
        return
    kept = kept_text.split()
    if any(turn.refused in word for word in voiced):
        report.violations.append(f"{name}: the refused word was voiced")
    missing = Counter(kept) - voiced
    if missing:
        report.violations.append(f"{name}: words never voiced: {sorted(missing.elements())}")
    ids = [f.flush_id for f in dones]
    if ids != sorted(set(ids)):
        report.violations.append(f"{name}: flush ids {ids} out of order")
    if said != kept:
        report.violations.append(f"{name}: words {_diff(said, kept)}")


def _refused_in_full(turn: _Turn) -> bool:
    """Whether a 400 refuses every segment of the turn (its one segment, in practice)."""
    segments = [s for s in _segments(turn.text) if s.strip()]
    return turn.refused is not None and all(turn.refused in s for s in segments)


def _segments(text: str) -> list[str]:
    """The turn's segments as the service's segmenter cuts them (at its defaults)."""
    segmenter, at = Segmenter(), Position()
    segments = [""]
    for action in [*segmenter.feed(text, at), *segmenter.finish(at)]:
        if isinstance(action, Push):
            segments[-1] += action.text
        else:
            segments.append("")
        at = at.after(action)
    return segments


def _diff(said: list[str], expected: list[str]) -> str:
    i = next(
        (i for i, (a, b) in enumerate(zip(said, expected, strict=False)) if a != b),
        min(len(said), len(expected)),
    )
    return (
        f"differ at word {i}: got {said[i : i + 4]} expected {expected[i : i + 4]} "
        f"({len(said)} words, expected {len(expected)})"
    )


async def run_scenario(seed: int) -> Report:
    """Run one seeded scenario and check every invariant.

    Args:
        seed: Picks the turns, their faults, where the faults fire and the tokenization.

    Returns:
        The `Report`: the faults injected and every invariant violation seen.
    """
    rnd = random.Random(seed)
    report = Report(seed)
    started_at = time.monotonic()
    turns = _plan(rnd)
    report.faults = [t.fault for t in turns]
    plain = _Turn(len(turns), PLAIN, "plain")
    cancel = rnd.choice(list(CancelBehavior))
    emu = CartesiaEmulator(pacing=Pacing(**BASE_PACING), behavior=Behavior(cancel=cancel))
    await emu.start()
    tts = make_tts(emu)
    try:
        async with running_pipeline(tts) as pipeline:
            for turn in [*turns, plain]:
                if turn is plain:
                    _arm(emu, _Turn(-1, "", "none"), rnd)
                else:
                    _arm(emu, turn, rnd)
                await _drive(pipeline, emu, tts, turn, rnd, report)
                if not turn.ended:
                    break
            frames = list(pipeline.down.frames)
            # Every emulator context of the run has ended (late events after a cancel included).
            opened = [c for c in emu.record.contexts.values() if c.inputs]
            with contextlib.suppress(Exception):
                await emu.record.settled(contexts=len(opened), timeout=5.0)
            running = [
                c.context_id for c in emu.record.contexts.values() if c.inputs and c.outcome is None
            ]
            if running:
                report.violations.append(f"emulator contexts still running at the end: {running}")
            if tts._turns:
                report.violations.append(f"service turns left behind: {list(tts._turns)}")
            for turn in [*turns, plain]:
                if turn.ended:
                    _check_turn(turn, frames, emu, report)
                report.interrupted.append(turn.cut is not None)
            if plain.ended and plain.cut is None:
                words = [
                    f.text for f in _of(frames, plain.context_id) if isinstance(f, TTSTextFrame)
                ]
                if words != PLAIN.split():
                    report.violations.append("the final plain turn did not play fully")
            refused_in_full = sum(map(_refused_in_full, turns))
            errors = [
                str(f.error)
                for f in [*pipeline.up.frames, *pipeline.down.frames]
                if isinstance(f, ErrorFrame)
            ]
            if len(errors) != refused_in_full or not all("400" in e for e in errors):
                report.violations.append(
                    f"ErrorFrames {errors}; expected {refused_in_full}, each naming the 400"
                )
            late = [
                type(f).__name__
                for f in frames
                if isinstance(f, CartesiaTTSAudioRawFrame)
                and f.context_id not in {t.context_id for t in [*turns, plain]}
            ]
            if late:
                report.violations.append(f"audio of unknown contexts: {Counter(late)}")
    except Exception as error:
        report.violations.append(f"run crashed: {type(error).__name__}: {error}")
    finally:
        with contextlib.suppress(Exception):
            await emu.stop()
    report.seconds = round(time.monotonic() - started_at, 2)
    return report


if __name__ == "__main__":
    print(asyncio.run(run_scenario(int(sys.argv[1]) if len(sys.argv) > 1 else 0)))
