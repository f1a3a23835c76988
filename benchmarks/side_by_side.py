"""Our service against pipecat's built-in `CartesiaTTSService`, side by side, on the emulator.

Usage::

    python3 benchmarks/side_by_side.py            # the full run (about 8 minutes on 2 cores)
    python3 benchmarks/side_by_side.py --smoke    # a small run for CI (behaviour only)

Both services run in one process, alternating turn by turn (the first turns of
each are a warm-up, left out), against one emulator in its own process paced
as Cartesia is: first chunk 90 ms after text is ready, 6x real time, 40 ms
chunks, 24 kHz. Sections:

- **first audio**: first LLM token into the TTS -> first audio frame out of it,
  at 20, 50 and 100 tokens/s, over realistic answers ("Dr. Smith", lists,
  prices); beside it the floor (the LLM's time to a first clause or three
  words, plus the server's first chunk), and playback stalls per turn (a
  player starting at the first audio, fed as the frames came).
- **CPU**: CPU seconds of our process (pipeline, service, client) per second
  of audio, each service alone in turn, and the emulator's.
- **concurrency**: 1 to 200 pipelines in one process (a fresh process per
  level): first audio, p99 stall, the slowest pipeline's real-time factor,
  CPU and peak RSS.
- **barge-in** (emulator in-process, to see the wire): interruption -> cancel
  received by the server, and audio of the interrupted turn that still came
  out of the TTS.
- **wire hygiene** (emulator in-process): sentences glued without a space,
  words split across inputs, first inputs of a context under three words.

Prints the tables, writes ``benchmarks/results/side_by_side.json``,
``benchmarks/side_by_side.png`` (with the ``plot`` extra) and
``benchmarks/RESULTS.md``; the smoke run
writes only ``side_by_side_smoke.json``. Exits with status 1 only if behaviour
is wrong (a turn without audio, stale audio after a barge-in, glued sentences
or split words from our service), never on timing.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import random
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from loguru import logger

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (
    ANSWERS,
    PACING,
    RESULTS,
    ROOT,
    SERVICES,
    Bot,
    Turn,
    machine,
    percentile,
    playback,
    process_cpu_seconds,
    start_emulator,
    tokens,
)

CHART = ROOT / "benchmarks" / "side_by_side.png"  # committed with RESULTS.md
RATES = (20, 50, 100)
LEVELS = (1, 10, 50, 100, 200)
WARMUP = 2
FLOOR_WORDS = 3


def floor_s(text: str, rate: float) -> float:
    """The LLM's time to a first unit worth speaking, plus the server's first chunk.

    The unit is the first clause (or sentence) or the first three words,
    whichever is complete first; it is complete when the token after it
    (starting with whitespace) has come, as no client can know it sooner.
    """
    first_chunk_s = PACING["first_chunk_ms"] / 1000
    seen = ""
    for n, token in enumerate(tokens(text)):
        complete = seen.rstrip()[-1:] in tuple(",;:.!?") or len(seen.split()) >= FLOOR_WORDS
        if token[:1].isspace() and seen.strip() and complete:
            return n / rate + first_chunk_s
        seen += token
    return len(tokens(text)) / rate + first_chunk_s


def quiet():
    logger.remove()
    logger.add(sys.stderr, level="ERROR")


# -- first audio and stalls ---------------------------------------------------------


async def first_audio(url: str, rates: tuple[int, ...], answers: list[str]) -> dict:
    bots = {name: Bot(make(url)) for name, make in SERVICES.items()}
    for bot in bots.values():
        await bot.start()
    results: dict = {}
    try:
        for rate in rates:
            turns: dict[str, list[Turn]] = {name: [] for name in bots}
            order = list(bots)
            for n, text in enumerate([*answers[:WARMUP], *answers]):
                for name in order:
                    turn = await bots[name].speak(text, rate)
                    if n >= WARMUP:
                        turns[name].append(turn)
                order.reverse()  # neither always goes first
            floors = [floor_s(t, rate) for t in answers]
            results[rate] = {"floor_p50_ms": ms(statistics.median(floors))}
            for name, done in turns.items():
                firsts = [t.first_audio_s for t in done if t.first_audio_s is not None]
                stalls = [playback(t.audio)[0] for t in done]
                results[rate][name] = {
                    "turns": len(done),
                    "turns_without_audio": sum(t.first_audio_s is None for t in done),
                    "first_audio_p50_ms": ms(percentile(firsts, 0.5)),
                    "first_audio_p95_ms": ms(percentile(firsts, 0.95)),
                    "stall_per_turn_p50_ms": ms(percentile(stalls, 0.5)),
                    "stall_per_turn_p95_ms": ms(percentile(stalls, 0.95)),
                }
    finally:
        for bot in bots.values():
            await bot.stop()
    return results


# -- CPU per audio second -----------------------------------------------------------


async def cpu(url: str, emulator_pid: int, answers: list[str], rounds: int) -> dict:
    """CPU per audio second of each service, measured turn by turn, alternating.

    Both pipelines run in this process; each answer is spoken by one, then the
    other (the order swapped each time), and only the CPU spent during a turn
    counts for its service. This machine's speed drifts by tens of percent over
    minutes (other work, frequency): measured side by side, turn by turn, the
    drift falls on both alike.
    """
    bots = {name: Bot(make(url)) for name, make in SERVICES.items()}
    used = {name: [0.0, 0.0, 0.0] for name in SERVICES}  # ours CPU, emulator CPU, audio s
    per_round: list[dict[str, float]] = []
    try:
        for bot in bots.values():
            await bot.start()
            await bot.speak(answers[0], 100)  # warm-up: connection, caches
        order = list(bots)
        for _ in range(rounds):
            spent = {name: [0.0, 0.0] for name in bots}  # CPU, audio s, this round
            for text in answers:
                for name in order:
                    cpu0, emu0 = time.process_time(), process_cpu_seconds(emulator_pid)
                    audio = (await bots[name].speak(text, 100)).audio_seconds
                    cpu, emu = time.process_time() - cpu0, process_cpu_seconds(emulator_pid) - emu0
                    used[name][0] += cpu
                    used[name][1] += emu
                    used[name][2] += audio
                    spent[name][0] += cpu
                    spent[name][1] += audio
                order.reverse()  # neither always goes first
            per_round.append({name: cpu / audio for name, (cpu, audio) in spent.items()})
    finally:
        for bot in bots.values():
            await bot.stop()
    result: dict = {
        name: {
            "audio_seconds": round(audio, 1),
            "cpu_ms_per_audio_s": round(1000 * ours / audio, 2),
            "emulator_cpu_ms_per_audio_s": round(1000 * emu / audio, 2),
        }
        for name, (ours, emu, audio) in used.items()
    }
    result["ratio_per_round"] = [round(r["ours"] / r["builtin"], 2) for r in per_round]
    return result


# -- concurrency (one process per level and service) ---------------------------------


async def concurrency_worker(service: str, url: str, pipelines: int, answers: list[str]) -> dict:
    """N pipelines of one service in this process, each speaking two answers at 50 tokens/s."""
    rnd = random.Random(pipelines)
    bots = [Bot(SERVICES[service](url)) for _ in range(pipelines)]
    for bot in bots:
        await bot.start()

    async def talk(bot: Bot) -> list[Turn]:
        await asyncio.sleep(rnd.uniform(0, 1.0))  # users do not all speak at once
        return [await bot.speak(rnd.choice(answers), 50, timeout=120) for _ in range(2)]

    wall0, cpu0 = time.monotonic(), time.process_time()
    done = await asyncio.gather(*(talk(b) for b in bots), return_exceptions=True)
    wall, used = time.monotonic() - wall0, time.process_time() - cpu0
    for bot in bots:
        await bot.stop()
    turns = [t for d in done if isinstance(d, list) for t in d]
    firsts = [t.first_audio_s for t in turns if t.first_audio_s is not None]
    played = [playback(t.audio) for t in turns if t.audio]
    return {
        "pipelines": pipelines,
        "turns": len(turns),
        "failed_pipelines": sum(isinstance(d, BaseException) for d in done),
        "turns_without_audio": sum(not t.audio for t in turns),
        "first_audio_p50_ms": ms(percentile(firsts, 0.5)),
        "first_audio_p99_ms": ms(percentile(firsts, 0.99)),
        "stall_per_turn_p99_ms": ms(percentile([s for s, _ in played], 0.99)),
        "slowest_real_time_factor": round(min((r for _, r in played), default=0.0), 2),
        "cpu_percent": round(100 * used / wall, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def concurrency(url: str, levels: tuple[int, ...], smoke: bool) -> dict:
    results: dict = {}
    for level in levels:
        results[level] = {}
        for service in SERVICES:
            args = [sys.executable, __file__, "--worker", service, "--url", url]
            args += ["--pipelines", str(level)] + (["--smoke"] if smoke else [])
            out = subprocess.run(args, capture_output=True, text=True, timeout=600, cwd=ROOT)
            if out.returncode:
                results[level][service] = {"error": out.stderr.strip().splitlines()[-1:]}
            else:
                results[level][service] = json.loads(out.stdout.strip().splitlines()[-1])
    return results


# -- barge-in and wire hygiene (the emulator in this process, to see the wire) ---------------


async def on_the_wire(answers: list[str], barge_ins: int) -> dict:
    from pipecat_cartesia_ctx.emulator import CartesiaEmulator, Pacing

    results: dict = {}
    async with CartesiaEmulator(pacing=Pacing(**PACING)) as emu:
        for name, make in SERVICES.items():
            bot = Bot(make(emu.url))
            await bot.start()
            before = set(emu.record.contexts)
            for text in answers:
                await bot.speak(text, 50)
            spoken = [c for cid, c in emu.record.contexts.items() if cid not in before]
            cancel_ms, stale = [], 0
            for text in (answers * barge_ins)[:barge_ins]:
                known = set(emu.record.contexts)
                watch = asyncio.create_task(_cancel_seen(emu, known))
                turn = await bot.speak(text, 50, interrupt_after_s=0.6)
                seen = await watch
                stale += turn.stale_frames
                if seen is not None and turn.interrupt_sent_at is not None:
                    cancel_ms.append(1000 * (seen - turn.interrupt_sent_at))
            await bot.stop()
            results[name] = {
                **hygiene(spoken, answers),
                "barge_ins": barge_ins,
                "interruption_to_cancel_p50_ms": round(percentile(cancel_ms, 0.5), 1),
                "cancels_seen": len(cancel_ms),
                "stale_audio_frames": stale,
            }
    return results


async def _cancel_seen(emu, known: set[str]) -> float | None:
    """When the server got a cancel for a context opened after ``known`` (polled, bounded)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for cid, record in emu.record.contexts.items():
            if cid not in known and record.cancelled:
                return time.monotonic()
        await asyncio.sleep(0.001)
    return None


def hygiene(contexts: list, answers: list[str]) -> dict:
    """What went on the wire: glued sentences, split words, short first inputs."""
    glued = split = short = 0
    for record in contexts:
        pushes = [i.transcript for i in record.inputs if i.kind == "push" and i.transcript]
        joined = "".join(pushes)
        # A sentence end right before a letter, where every answer has whitespace.
        glued += sum(
            1
            for i in range(1, len(joined))
            if joined[i - 1] in ".!?" and joined[i].isalpha() and not _inside_word(joined, i)
        )
        for a, b in itertools.pairwise(pushes):
            split += a[-1:].isalnum() and b[:1].isalnum()
        short += bool(pushes) and len(pushes[0].split()) < 3
    return {
        "contexts": len(contexts),
        "glued_sentences": glued,
        "split_words": split,
        "first_inputs_under_3_words": short,
    }


def _inside_word(text: str, i: int) -> bool:
    """ "a.m", "U.S", "e.g": a period inside an abbreviation, not a sentence end."""
    return i >= 2 and text[i - 2].isalpha() and (i + 1 >= len(text) or text[i + 1] == ".")


# -- the report -----------------------------------------------------------------------


def ms(seconds: float) -> float:
    return round(1000 * seconds, 1)


def ratio(ours: float, theirs: float) -> str:
    return f"{ours / theirs:.2f}x" if theirs and theirs == theirs else "-"


def tables(result: dict) -> list[str]:
    lines = []
    lines += ["### First audio and playback stalls (per turn)", ""]
    lines += [
        "| tokens/s | floor p50 | ours p50 | built-in p50 | ours/built-in | ours/floor "
        "| stall p95 ours | stall p95 built-in |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for rate, row in result["first_audio"].items():
        o, b = row["ours"], row["builtin"]
        lines.append(
            f"| {rate} | {row['floor_p50_ms']} ms | {o['first_audio_p50_ms']} ms "
            f"| {b['first_audio_p50_ms']} ms "
            f"| {ratio(o['first_audio_p50_ms'], b['first_audio_p50_ms'])} "
            f"| {ratio(o['first_audio_p50_ms'], row['floor_p50_ms'])} "
            f"| {o['stall_per_turn_p95_ms']} ms | {b['stall_per_turn_p95_ms']} ms |"
        )
    c = result["cpu"]
    lines += ["", "### CPU per second of audio (emulator in its own process)", ""]
    lines += ["| | ours | built-in | ours/built-in |", "|---|---|---|---|"]
    for key, label in (
        ("cpu_ms_per_audio_s", "pipeline process"),
        ("emulator_cpu_ms_per_audio_s", "emulator"),
    ):
        o, b = c["ours"][key], c["builtin"][key]
        lines.append(f"| {label} | {o} ms | {b} ms | {ratio(o, b)} |")
    if c.get("ratio_per_round"):
        rounds = ", ".join(f"{r}x" for r in c["ratio_per_round"])
        lines += ["", f"Pipeline process, ours/built-in in each round: {rounds}."]
    lines += ["", "### Concurrent pipelines in one process (two turns each, 50 tokens/s)", ""]
    lines += [
        "| pipelines | service | first audio p50 | p99 stall | slowest RTF | CPU | peak RSS "
        "| failed |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for level, row in result["concurrency"].items():
        for service, r in row.items():
            if "error" in r:
                lines.append(f"| {level} | {service} | error: {r['error']} | | | | | |")
                continue
            lines.append(
                f"| {level} | {service} | {r['first_audio_p50_ms']} ms "
                f"| {r['stall_per_turn_p99_ms']} ms | {r['slowest_real_time_factor']}x "
                f"| {r['cpu_percent']}% | {r['peak_rss_mb']} MB "
                f"| {r['failed_pipelines'] + r['turns_without_audio']} |"
            )
    w = result["wire"]
    lines += ["", "### Barge-in and wire hygiene", ""]
    lines += ["| | ours | built-in |", "|---|---|---|"]
    for key, label in (
        ("interruption_to_cancel_p50_ms", "interruption -> cancel on the wire, p50 (ms)"),
        ("stale_audio_frames", "audio frames of the interrupted turn after the interruption"),
        ("glued_sentences", "sentences glued without a space"),
        ("split_words", "words split across inputs"),
        ("first_inputs_under_3_words", "first inputs of a context under 3 words"),
        ("contexts", "contexts checked"),
    ):
        lines.append(f"| {label} | {w['ours'][key]} | {w['builtin'][key]} |")
    return lines


def chart(result: dict, path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    rates = list(result["first_audio"])
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    width = 0.27
    for k, (key, label) in enumerate(
        (("floor", "floor"), ("ours", "ours"), ("builtin", "pipecat built-in"))
    ):
        values = [
            result["first_audio"][r]["floor_p50_ms"]
            if key == "floor"
            else result["first_audio"][r][key]["first_audio_p50_ms"]
            for r in rates
        ]
        left.bar([i + (k - 1) * width for i in range(len(rates))], values, width, label=label)
    left.set_xticks(range(len(rates)), [f"{r} tok/s" for r in rates])
    left.set_ylabel("time to first audio, p50 (ms)")
    left.legend()
    levels = list(result["concurrency"])
    for service, label in (("ours", "ours"), ("builtin", "pipecat built-in")):
        right.plot(
            [int(x) for x in levels],
            [result["concurrency"][x][service].get("first_audio_p50_ms") for x in levels],
            marker="o",
            label=label,
        )
    right.set_xlabel("concurrent pipelines")
    right.set_ylabel("time to first audio, p50 (ms)")
    right.legend()
    fig.suptitle("pipecat-cartesia-ctx vs pipecat CartesiaTTSService (emulator, 2 cores)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def write_report(result: dict, lines: list[str], png: bool) -> None:
    header = [
        "# Benchmark results: ours against pipecat's built-in service",
        "",
        f"Machine: {result['machine']}. Date: {result['date']}. Command: "
        f"`python3 benchmarks/side_by_side.py{' --smoke' if result['smoke'] else ''}`.",
        f"Pacing (emulator in its own process): first chunk {PACING['first_chunk_ms']:.0f} ms "
        f"after text is ready, {PACING['speed']:.0f}x real time, {PACING['chunk_ms']:.0f} ms "
        "chunks, 24 kHz pcm_s16le. Both services in one process, alternating, warm-up excluded. "
        f"pipecat-ai {result['pipecat']}.",
        "",
    ]
    if png:
        header += [f"![first audio]({CHART.name})", ""]
    (ROOT / "benchmarks" / "RESULTS.md").write_text("\n".join(header + lines) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="a small run, for CI")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--pipelines", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    quiet()
    answers = ANSWERS[:3] if args.smoke else ANSWERS
    if args.worker:
        result = asyncio.run(concurrency_worker(args.worker, args.url, args.pipelines, answers))
        print(json.dumps(result))
        return 0
    import pipecat

    result: dict = {
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d"),
        "pacing": PACING,
        "smoke": args.smoke,
        "pipecat": getattr(pipecat, "__version__", "?"),
    }
    proc, url = start_emulator(PACING)
    try:
        print("first audio ...", flush=True)
        result["first_audio"] = asyncio.run(
            first_audio(url, (50,) if args.smoke else RATES, answers)
        )
        print("CPU ...", flush=True)
        result["cpu"] = asyncio.run(cpu(url, proc.pid, answers, 1 if args.smoke else 2))
        print("concurrency ...", flush=True)
        result["concurrency"] = concurrency(url, (1, 10) if args.smoke else LEVELS, args.smoke)
    finally:
        proc.terminate()
        proc.wait(10)
    print("barge-in and wire hygiene ...", flush=True)
    result["wire"] = asyncio.run(on_the_wire(answers, 2 if args.smoke else 6))
    lines = tables(result)
    print("\n".join(lines))
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.smoke:  # never in place of a full run's figures
        (RESULTS / "side_by_side_smoke.json").write_text(json.dumps(result, indent=2) + "\n")
    else:
        png = chart(result, CHART)
        (RESULTS / "side_by_side.json").write_text(json.dumps(result, indent=2) + "\n")
        write_report(result, lines, png)
    problems = behaviour_problems(result)
    for problem in problems:
        print("FAIL:", problem)
    return 1 if problems else 0


def behaviour_problems(result: dict) -> list[str]:
    """What must hold whatever the machine's load: audio for every turn, nothing stale."""
    problems = []
    for rate, row in result["first_audio"].items():
        for name in SERVICES:
            if row[name]["turns_without_audio"]:
                problems.append(f"{name} at {rate} tokens/s: a turn without audio")
    for level, row in result["concurrency"].items():
        r = row["ours"]
        if "error" in r or r["failed_pipelines"] or r["turns_without_audio"]:
            problems.append(f"ours with {level} pipelines: {r}")
    ours = result["wire"]["ours"]
    if ours["stale_audio_frames"] or ours["glued_sentences"] or ours["split_words"]:
        problems.append(f"ours on the wire: {ours}")
    if ours["cancels_seen"] != ours["barge_ins"]:
        problems.append(f"ours: {ours['cancels_seen']} cancels for {ours['barge_ins']} barge-ins")
    return problems


if __name__ == "__main__":
    sys.exit(main())
