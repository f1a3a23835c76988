"""Soak the service under seeded faults: many `run_scenario` runs, one summary.

Usage::

    python3 benchmarks/soak.py --runs 1000 [--seed 0] [--jobs 4]

Runs seeds ``seed .. seed+runs-1``, ``jobs`` at a time in one event loop (each
run has its own emulator and pipeline, and is bounded in time; runs wait mostly
on paced audio, so a few at once fit on two cores), prints a live progress
line, then a summary (runs, faults by kind, violations, failing seeds with
their first violation), and writes
``benchmarks/results/soak.json``. Exits with status 1 if any invariant broke.
Replay one seed with ``python tests/fault_injection.py SEED``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from fault_injection import FAULT_KINDS, Report, run_scenario  # noqa: E402
from loguru import logger  # noqa: E402

RUN_TIMEOUT = 180.0


async def _one(seed: int) -> Report:
    try:
        return await asyncio.wait_for(run_scenario(seed), RUN_TIMEOUT)
    except TimeoutError:
        return Report(seed, violations=[f"run did not finish within {RUN_TIMEOUT:.0f} s"])


async def soak(first: int, runs: int, jobs: int) -> list[Report]:
    reports: list[Report] = []
    bad = 0
    start = time.monotonic()
    seeds = iter(range(first, first + runs))

    async def worker():
        nonlocal bad
        for seed in seeds:
            report = await _one(seed)
            reports.append(report)
            bad += bool(report.violations)
            status = "FAIL" if report.violations else "ok"
            # One line redrawn on a terminal, a line per run in a log.
            tty = sys.stdout.isatty()
            print(
                "\r" * tty + f"{len(reports)}/{runs} runs, {bad} failing, "
                f"{time.monotonic() - start:.0f} s, seed {seed}: {status}  ",
                end="" if tty else "\n",
                flush=True,
            )

    await asyncio.gather(*(worker() for _ in range(jobs)))
    print()
    return sorted(reports, key=lambda r: r.seed)


def summarize(reports: list[Report], seconds: float) -> dict:
    faults = Counter(kind for r in reports for kind in r.faults)
    interrupted = sum(any(r.interrupted) for r in reports)
    failing = [r for r in reports if r.violations]
    return {
        "runs": len(reports),
        "seconds": round(seconds, 1),
        "faults": {kind: faults.get(kind, 0) for kind in FAULT_KINDS},
        "turns_actually_interrupted": sum(sum(r.interrupted) for r in reports),
        "runs_with_an_interruption": interrupted,
        "violations": sum(len(r.violations) for r in reports),
        "failing_runs": len(failing),
        "failing": [{"seed": r.seed, "first": r.violations[0]} for r in failing],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0, help="first seed")
    parser.add_argument("--jobs", type=int, default=4, help="runs at once (1 to 8)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "soak.json")
    args = parser.parse_args()
    if not 1 <= args.jobs <= 8:
        parser.error("--jobs: 1 to 8")
    logger.remove()
    logger.add(sys.stderr, level="ERROR")

    start = time.monotonic()
    reports = asyncio.run(soak(args.seed, args.runs, args.jobs))
    summary = summarize(reports, time.monotonic() - start)

    print(f"\n{'runs':<28}{summary['runs']}")
    print(f"{'seconds':<28}{summary['seconds']}")
    for kind, count in summary["faults"].items():
        print(f"{'  fault ' + kind:<28}{count}")
    print(f"{'turns actually interrupted':<28}{summary['turns_actually_interrupted']}")
    print(f"{'invariant violations':<28}{summary['violations']}")
    print(f"{'failing runs':<28}{summary['failing_runs']}")
    for item in summary["failing"]:
        print(f"  seed {item['seed']}: {item['first']}")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"summary": summary, "reports": [asdict(r) for r in reports]}, indent=2)
    )
    print(f"\nwrote {args.out}")
    return 1 if summary["failing_runs"] else 0


if __name__ == "__main__":
    sys.exit(main())
