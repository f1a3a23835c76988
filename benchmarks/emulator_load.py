"""How many real-time streams one emulator process serves, and what each audio second costs it.

Usage::

    python3 benchmarks/emulator_load.py --streams 500 --seconds 30 [--speed 1] [--clients 2]
    python3 benchmarks/emulator_load.py --smoke

The emulator runs in its own process (``python -m pipecat_cartesia_ctx.emulator``,
logging at WARNING). ``--streams`` streams, each its own WebSocket connection
and context (a bot's turn: its sentences pushed with ``max_buffer_delay_ms: 0``,
then the close), are driven over 127.0.0.1 by ``--clients`` load-generator
processes. Their client is a minimal WebSocket reader that counts audio bytes
and notes when each chunk arrives without decoding the audio, so the load
generator costs far less than the emulator's own work; its CPU is measured and
reported too, since both share this machine's cores.

Reported: the emulator's CPU time (its threads' ``schedstat``) per second of
audio delivered, over the whole run and over its second half (the voice cache
warm); the slowest stream's speed relative to the pacing (1.0 keeps up); the
time to each stream's first chunk; lateness of each chunk against the pacing
schedule (first chunk ``first_chunk_ms`` after the text was sent, then back to
back at ``speed``), and against the stream's own first chunk (a late start
shifts a whole stream: the second says whether the pace then holds); and the
emulator's peak RSS. Each stream speaks sentences drawn from a pool of
``--pool`` (a fleet of bots with scripted answers); the sentences are
Zipf-distributed over ``--vocabulary`` pseudo-words, with capitals and
punctuation attached (each spelling a sound of its own). ``--pool 0`` makes
every sentence new: an open vocabulary, where the voice keeps rendering words
it has not heard yet.

Prints a table and writes ``benchmarks/results/emulator_load.json``. Exits with
status 1 if a stream lost audio, words or its ``done``, or got an error; timing
is reported, never judged (the load generator shares the machine).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import multiprocessing as mp
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

from load_client import (
    ENCODING,
    RATE,
    RUN_TIMEOUT_S,
    WIDTH,
    StreamResult,
    answers,
    client_process,
    sentence,
    vocabulary,
)

ROOT = Path(__file__).resolve().parent.parent
CPU_SAMPLE_S = 0.25


# -- the emulator process --------------------------------------------------------


def start_emulator(pacing: argparse.Namespace) -> tuple[subprocess.Popen, int]:
    """The emulator in its own process."""
    server = (
        [str(ROOT / "benchmarks" / "floor_server.py")]
        if pacing.floor
        else [
            "-m",
            "pipecat_cartesia_ctx.emulator",
            "--port",
            "0",
            "--log-level",
            "WARNING",
            "--idle-timeout",
            "0",
        ]
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            *server,
            "--first-chunk-ms",
            str(pacing.first_chunk_ms),
            "--speed",
            str(pacing.speed),
            "--chunk-ms",
            str(pacing.chunk_ms),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    for _ in range(20):
        line = proc.stdout.readline()
        if "listening on" in line:
            url = line.split("listening on", 1)[1].strip()
            return proc, int(url.rsplit(":", 1)[1].split("/", 1)[0])
    proc.kill()
    raise RuntimeError("the emulator did not start")


def cpu_seconds(pid: int) -> tuple[float, float, float, float]:
    """A process's CPU time so far: on the CPU (exact), the user and kernel shares, threads'.

    Each thread's ``/proc/<pid>/task/<tid>/schedstat`` counts nanoseconds on the
    CPU (the emulator renders new words in worker threads, which live as long
    as it does); ``stat``'s user and system times are sampled at each clock
    tick, coarse for a process that runs in short bursts, but their ratio tells
    how much was the kernel's. The last value is the part of the first spent
    outside the main thread (the event loop): rendering.
    """
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    on_cpu = workers = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):  # a thread just ended
            seconds = int((task / "schedstat").read_text().split()[0]) / 1e9
            on_cpu += seconds
            workers += seconds if task.name != str(pid) else 0.0
    tick = os.sysconf("SC_CLK_TCK")
    return on_cpu, int(fields[11]) / tick, int(fields[12]) / tick, workers


def peak_rss_mb(pid: int) -> float:
    """Peak resident set size of a process, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return math.nan


# -- the run ------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run(args: argparse.Namespace) -> dict:
    from pipecat_cartesia_ctx.emulator import SyntheticVoice

    voice = SyntheticVoice()
    words = vocabulary(args.vocabulary)
    weights = [1.0 / (rank + 1) for rank in range(len(words))]
    rng = random.Random(args.seed)
    pool = [sentence(rng, words, weights) for _ in range(args.pool)]
    texts = []
    for i in range(args.streams):
        own = random.Random(args.seed + 1 + i)
        texts.append(
            answers(own, pool, lambda r=own: sentence(r, words, weights), args.seconds, voice)
        )
    proc, port = start_emulator(args)
    ctx = mp.get_context("spawn")
    try:
        cpu0 = cpu_seconds(proc.pid)
        # Every client process connects its streams first; streams start together.
        start_at = time.monotonic() + 2.0 + args.streams * 0.004
        pipes, workers = [], []
        for k in range(args.clients):
            share = texts[k :: args.clients]
            if not share:
                continue
            ramp = args.ramp * len(share) / args.streams
            parent, child = ctx.Pipe(duplex=False)
            worker = ctx.Process(
                target=client_process,
                args=(child, port, share, start_at + args.ramp * k / args.streams, ramp),
            )
            worker.start()
            pipes.append(parent)
            workers.append(worker)
        while time.monotonic() < start_at:
            time.sleep(0.01)
        wall_start = time.monotonic()
        samples = [(wall_start, *cpu_seconds(proc.pid))]
        results: list[StreamResult] = []
        client_cpu = 0.0
        pending = list(pipes)
        deadline = wall_start + RUN_TIMEOUT_S
        while pending and time.monotonic() < deadline:
            ready = mp.connection.wait(pending, timeout=CPU_SAMPLE_S)
            samples.append((time.monotonic(), *cpu_seconds(proc.pid)))
            for pipe in ready:
                share_results, cpu = pipe.recv()
                results += share_results
                client_cpu += cpu
                pending.remove(pipe)
        wall_end = time.monotonic()
        for worker in workers:
            worker.join(10)
        rss = peak_rss_mb(proc.pid)
        idle_cpu = samples[0][1] - cpu0[0]
    finally:
        proc.terminate()
        proc.wait(10)
    return summarize(args, results, samples, wall_start, wall_end, client_cpu, rss, idle_cpu)


def summarize(args, results, samples, wall_start, wall_end, client_cpu, rss, idle_cpu) -> dict:
    bytes_per_s = RATE * WIDTH
    spb = 1.0 / (bytes_per_s * args.speed)
    first_chunk_s = args.first_chunk_ms / 1000.0
    # The second half of the run (by wall time): the voice's cache is warm by then.
    mid = min(samples, key=lambda s: abs(s[0] - (wall_start + wall_end) / 2))
    audio = [0, 0]  # bytes delivered in each half
    lateness: tuple[list[float], list[float]] = ([], [])
    first: list[float] = []
    jitter: list[float] = []  # lateness against the stream's own first chunk
    speeds: list[float] = []
    for r in results:
        ends = [*r.offsets[1:], r.audio_bytes][: len(r.offsets)]
        for arrival, offset, end in zip(r.arrivals, r.offsets, ends, strict=True):
            half = arrival >= mid[0]
            lateness[half].append(arrival - (r.sent_at + first_chunk_s + offset * spb))
            audio[half] += end - offset
        if not r.arrivals:
            continue
        first.append(r.arrivals[0] - r.sent_at)
        jitter += [a - r.arrivals[0] - o * spb for a, o in zip(r.arrivals, r.offsets, strict=True)]
        # Audio seconds per wall second after the first chunk, against the pacing.
        span = r.arrivals[-1] - r.arrivals[0] + (r.audio_bytes - r.offsets[-1]) * spb
        speeds.append(r.audio_bytes * spb / span if span > 0 else math.inf)
    cpu = samples[-1][1] - samples[0][1]
    user, system = samples[-1][2] - samples[0][2], samples[-1][3] - samples[0][3]
    system = cpu * system / (user + system) if user + system else 0.0
    late_cpu = samples[-1][1] - mid[1]
    worker_cpu = samples[-1][4] - samples[0][4]
    audio_s = sum(r.audio_bytes for r in results) / bytes_per_s
    late_audio_s = audio[1] / bytes_per_s
    everything = lateness[0] + lateness[1]
    failures = [
        f"stream {i}: " + "; ".join(problems)
        for i, r in enumerate(results)
        if (
            problems := [
                *r.errors,
                *(["no done"] if not r.done else []),
                *(
                    [f"{r.audio_bytes} audio bytes, expected {r.expected_bytes}"]
                    if r.audio_bytes != r.expected_bytes
                    else []
                ),
                *(
                    [f"{r.words} words, expected {r.expected_words}"]
                    if r.words != r.expected_words
                    else []
                ),
            ]
        )
    ]
    if len(results) != args.streams:
        failures.append(f"{len(results)} of {args.streams} streams reported")
    return {
        "streams": args.streams,
        "seconds_per_stream": args.seconds,
        "pacing": {
            "first_chunk_ms": args.first_chunk_ms,
            "speed": args.speed,
            "chunk_ms": args.chunk_ms,
            "format": f"{ENCODING} {RATE} Hz",
        },
        "server": "floor_server.py" if args.floor else "emulator",
        "client_processes": args.clients,
        "vocabulary": args.vocabulary,
        "sentence_pool": args.pool,
        "wall_s": round(wall_end - wall_start, 2),
        "audio_s": round(audio_s, 1),
        "emulator_cpu_s": round(cpu, 2),
        "emulator_cpu_kernel_s": round(system, 2),
        "emulator_cpu_worker_threads_s": round(worker_cpu, 2),
        "emulator_cpu_ms_per_audio_s": round(1000 * cpu / audio_s, 2) if audio_s else None,
        "emulator_cpu_ms_per_audio_s_second_half": (
            round(1000 * late_cpu / late_audio_s, 2) if late_audio_s else None
        ),
        "emulator_cpu_share_of_one_core": round(cpu / (wall_end - wall_start), 3),
        "emulator_idle_cpu_s_while_connecting": round(idle_cpu, 2),
        "client_cpu_s": round(client_cpu, 2),
        "slowest_stream_speed_vs_pacing": round(min(speeds), 3) if speeds else None,
        "median_stream_speed_vs_pacing": round(statistics.median(speeds), 3) if speeds else None,
        "first_chunk_ms": {
            "p50": round(1000 * percentile(first, 0.50), 1),
            "p99": round(1000 * percentile(first, 0.99), 1),
        },
        "chunk_lateness_ms": {
            "p50": round(1000 * percentile(everything, 0.50), 1),
            "p99": round(1000 * percentile(everything, 0.99), 1),
            "max": round(1000 * max(everything, default=math.nan), 1),
            "p99_second_half": round(1000 * percentile(lateness[1], 0.99), 1),
            "p99_after_first_chunk": round(1000 * percentile(jitter, 0.99), 1),
        },
        "chunks": len(everything),
        "emulator_peak_rss_mb": round(rss, 1),
        "failures": failures[:20],
        "ok": not failures,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--streams", type=int, default=50, help="concurrent streams (default 50)")
    parser.add_argument("--seconds", type=float, default=20.0, help="audio per stream (default 20)")
    parser.add_argument("--speed", type=float, default=1.0, help="pacing speed (default 1.0)")
    parser.add_argument("--first-chunk-ms", type=float, default=90.0, help="default 90")
    parser.add_argument("--chunk-ms", type=float, default=40.0, help="default 40")
    parser.add_argument("--clients", type=int, default=0, help="load processes (0: by streams)")
    parser.add_argument("--ramp", type=float, default=1.0, help="seconds over which streams start")
    parser.add_argument(
        "--vocabulary", type=int, default=2000, help="distinct words (default 2000)"
    )
    parser.add_argument(
        "--pool",
        type=int,
        default=300,
        help="distinct sentences the streams pick from (default 300); 0: every sentence new",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="8 streams of 3 s at 6x, for CI")
    parser.add_argument(
        "--floor",
        action="store_true",
        help="serve with benchmarks/floor_server.py instead: the same frames, nothing else",
    )
    parser.add_argument(
        "--output", type=Path, default=ROOT / "benchmarks/results/emulator_load.json"
    )
    args = parser.parse_args()
    if args.smoke:
        args.streams, args.seconds, args.speed = 8, 3.0, 6.0
    if args.clients <= 0:
        args.clients = 1 if args.streams <= 100 else 2
    result = run(args)
    result.update(
        machine=f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        date=time.strftime("%Y-%m-%d %H:%M"),
    )
    late = result["chunk_lateness_ms"]
    rows = [
        ("streams x audio each", f"{args.streams} x {args.seconds:g} s at speed {args.speed:g}"),
        ("audio delivered / wall", f"{result['audio_s']} s in {result['wall_s']} s"),
        (
            "server CPU per audio second",
            f"{result['emulator_cpu_ms_per_audio_s']} ms "
            f"(second half: {result['emulator_cpu_ms_per_audio_s_second_half']} ms)",
        ),
        (
            "server CPU in the kernel / in worker threads",
            f"{result['emulator_cpu_kernel_s']} / {result['emulator_cpu_worker_threads_s']} "
            f"of {result['emulator_cpu_s']} s",
        ),
        ("server CPU, share of one core", f"{result['emulator_cpu_share_of_one_core']:.0%}"),
        ("load generator CPU", f"{result['client_cpu_s']} s in {args.clients} process(es)"),
        (
            "stream speed vs pacing: slowest / median",
            f"{result['slowest_stream_speed_vs_pacing']} / "
            f"{result['median_stream_speed_vs_pacing']}",
        ),
        (
            "first chunk after the text p50 / p99",
            f"{result['first_chunk_ms']['p50']} / {result['first_chunk_ms']['p99']} ms "
            f"(pacing: {args.first_chunk_ms:g} ms)",
        ),
        (
            "chunk lateness p50 / p99 / max",
            f"{late['p50']} / {late['p99']} / {late['max']} ms "
            f"(p99 in the second half: {late['p99_second_half']} ms)",
        ),
        (
            "chunk lateness p99 after each stream's first chunk",
            f"{late['p99_after_first_chunk']} ms",
        ),
        ("server peak RSS", f"{result['emulator_peak_rss_mb']} MiB"),
    ]
    width = max(len(r[0]) for r in rows)
    server = "floor server (frames only)" if args.floor else "emulator"
    print(f"Load on the {server} in its own process, clients over 127.0.0.1")
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
    for failure in result["failures"]:
        print(f"  FAILURE {failure}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print("PASS" if result["ok"] else "FAIL")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
