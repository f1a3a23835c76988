#!/usr/bin/env python3
#
# Copyright (c) 2026, pipecat-cartesia-ctx contributors
#
# SPDX-License-Identifier: BSD 2-Clause License
#

"""Run the demo, the tests or the emulator from a fresh clone, with nothing but Python 3.11+.

    python3 dev.py demo        # the voice bot demo, offline on the embedded emulator
    python3 dev.py test        # the test suite (extra arguments go to pytest)
    python3 dev.py emulator    # a local Cartesia emulator on ws://127.0.0.1:8787

The first run creates ``.venv`` and installs the project with its test extra
(and, where they install, the ``plot`` and ``voice`` extras the demo uses) into
it; later runs reuse it (and reinstall when ``pyproject.toml`` changes).
When a virtual environment is already active, that one is used instead.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
COMMANDS = {
    "demo": ["examples/voice_bot_offline.py"],
    "test": ["-m", "pytest"],
    "emulator": ["-m", "pipecat_cartesia_ctx.emulator"],
}


def _environment() -> Path:
    """The Python to run with: the active virtual environment's, else ``.venv``'s."""
    if sys.prefix != sys.base_prefix:
        return Path(sys.executable)
    env = ROOT / ".venv"
    python = env / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    if not python.exists():
        print(f"dev.py: creating {env}", flush=True)
        venv.create(env, with_pip=True)
    return python


def _ensure_installed(python: Path) -> None:
    """Install the project with its test extra unless this exact pyproject is installed."""
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    prefix = subprocess.run(
        [str(python), "-c", "import sys; print(sys.prefix)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    stamp = Path(prefix) / ".pipecat-cartesia-ctx-installed"
    if stamp.exists() and stamp.read_text() == f"{ROOT}\n{digest}":
        return
    print(f"dev.py: installing pipecat-cartesia-ctx[test] into {prefix}", flush=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "-e", f"{ROOT}[test]"], check=True
    )
    # The demo's picture and real-words voice: worth having, not worth failing for
    # (espeak-ng's wheel is not built for every platform).
    extras = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "-e", f"{ROOT}[test,plot,voice]"],
        check=False,
    )
    if extras.returncode:
        print("dev.py: the [plot] and [voice] extras did not install; the demo runs without them")
    stamp.write_text(f"{ROOT}\n{digest}")


def main(argv: list[str]) -> int:
    """Dispatch ``demo``, ``test`` or ``emulator``; returns the exit code."""
    if not argv or argv[0] not in COMMANDS:
        print(__doc__.strip())
        return 2
    # dev.py runs under whatever python3 is on the PATH, which may predate the project's minimum.
    if sys.version_info < (3, 11):  # noqa: UP036
        print("dev.py: Python 3.11 or newer is required", file=sys.stderr)
        return 2
    python = _environment()
    _ensure_installed(python)
    command = [str(python), *COMMANDS[argv[0]], *argv[1:]]
    if os.name == "posix":
        # Become the command, so SIGTERM and SIGINT reach it directly (a parent that
        # only waits would die alone and leave an emulator running, orphaned).
        sys.stdout.flush()
        os.chdir(ROOT)
        os.execv(command[0], command)
    return subprocess.run(command, cwd=ROOT).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
