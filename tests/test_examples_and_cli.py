"""The examples run offline and show what they claim; the emulator's command line works."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import struct
import subprocess
import sys
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from helpers import S16_24K, collect, new_context

from pipecat_cartesia_ctx.client import CartesiaConnection
from pipecat_cartesia_ctx.emulator import SyntheticVoice, espeak_available
from pipecat_cartesia_ctx.protocol import AuthenticationError, CartesiaConnectionError, Done

ROOT = Path(__file__).resolve().parent.parent
OFFLINE_ENV = {k: v for k, v in os.environ.items() if not k.startswith("CARTESIA_")}


def run_example(name: str, out: Path, *extra: str, play: bool = False, env=None) -> str:
    command = [sys.executable, str(ROOT / "examples" / name), "--out", str(out), *extra]
    if not play:
        command.append("--no-play")
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=120, env=env or OFFLINE_ENV, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    assert "Offline: using the local Cartesia emulator" in result.stdout
    return result.stdout


def read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 24000)
        samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    assert len(samples) > 24000 // 2, "at least half a second"
    assert np.sqrt(np.mean((samples / 32768.0) ** 2)) > 0.01, "audible"
    return samples


# A row of the demo's table: turn, flush_id, TTFB, when it played (or "-"), audio ms, text.
DEMO_ROW = re.compile(
    r"^\s*(\d+)\s+(\d+)\s+(?:\d+|-)\s+(?:(\d+\.\d+)\s+-\s+(\d+\.\d+)|-)\s+(\d+)\s+(.*)$"
)


@dataclass
class DemoRun:
    out: str
    folder: Path
    rows: list[tuple[int, int, float | None, float | None, str]]  # turn, flush_id, start, end, text

    @property
    def cut_at(self) -> float:
        return float(re.search(r"cut turn 2 at ([\d.]+) s", self.out).group(1))


def run_demo(folder: Path, env: dict[str, str] | None = None) -> DemoRun:
    # 8 times faster; the demo's times (and its WAV) are scaled back to real time.
    out = run_example("voice_bot_offline.py", folder, "--speedup", "8", play=True, env=env)
    rows = []
    for line in out.splitlines():
        if match := DEMO_ROW.match(line):
            turn, flush_id, start, end, _, text = match.groups()
            start, end = (float(start), float(end)) if start else (None, None)
            rows.append((int(turn), int(flush_id), start, end, text))
    return DemoRun(out, folder, rows)


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> DemoRun:
    """One run of the demo, read by several tests."""
    return run_demo(tmp_path_factory.mktemp("demo"))


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean((samples / 32768.0) ** 2))) if len(samples) else 0.0


def test_the_voice_bot_demo_cuts_the_barged_in_answer_and_plays_nothing_of_it_after(demo):
    turns = {row[0] for row in demo.rows}
    assert turns == {1, 2, 3}
    cut = [row for row in demo.rows if row[4].startswith("[CUT after:")]
    assert len(cut) == 1
    assert cut[0][0] == 2
    # Each turn's played segments are numbered 1, 2, 3... in order.
    for turn in turns:
        ids = [row[1] for row in demo.rows if row[0] == turn]
        assert ids == list(range(1, len(ids) + 1))
    assert "frames of that context played afterwards: 0" in demo.out
    assert "cancelled on the server: 1" in demo.out
    # Nothing of turn 2 played after the cut, and turn 3 began after it.
    assert max(row[3] for row in demo.rows if row[0] == 2 and row[3]) <= demo.cut_at + 0.01
    assert min(row[2] for row in demo.rows if row[0] == 3 and row[2]) > demo.cut_at


def test_the_demo_wav_has_sound_at_the_printed_times_and_silence_elsewhere(demo):
    # With the [voice] extra (CI installs it) this is speech: espeak-ng's real words.
    voice = "espeak-ng, real words" if espeak_available() else "synthetic, no [voice] extra"
    assert f"voice: {voice}" in demo.out
    rate = 24000
    samples = read_wav(demo.folder / "bot.wav")
    # The WAV runs on the demo's clock, from its start to the end of the last audio played.
    length = float(re.search(r"bot\.wav: ([\d.]+) s from the start", demo.out).group(1))
    played = [(row[2], row[3]) for row in demo.rows if row[2] is not None]
    assert len(samples) / rate == pytest.approx(length, abs=0.01)
    assert len(samples) / rate == pytest.approx(max(end for _, end in played), abs=0.01)
    # Every segment sounds while the table says it played...
    for start, end in played:
        assert rms(samples[round(start * rate) : round(end * rate)]) > 0.01, (start, end)
    # ...and nothing sounds anywhere else (times are printed to 10 ms).
    heard = np.zeros(len(samples), dtype=bool)
    for start, end in played:
        heard[max(0, round((start - 0.01) * rate)) : round((end + 0.01) * rate)] = True
    assert not np.any(samples[~heard])
    # The cut is audible where it happened: sound just before it, then silence until the
    # next answer, while the user talks (a second in the script).
    cut = round(demo.cut_at * rate)
    next_answer = round(min(row[2] for row in demo.rows if row[0] == 3 and row[2]) * rate)
    assert rms(samples[cut - rate // 4 : cut - rate // 100]) > 0.01
    assert next_answer - cut > 0.8 * rate
    assert not np.any(samples[cut + rate // 100 : next_answer - rate // 100])


def test_the_demo_draws_its_timeline(demo):
    if not os.environ.get("CI"):  # CI installs the [plot] extra: there, no picture fails
        pytest.importorskip("matplotlib")
    picture = demo.folder / "bot_timeline.png"
    assert f"Wrote {picture}" in demo.out
    data = picture.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk
    assert width >= 800, "readable at README size"
    assert height >= 300
    assert len(data) > 20_000, "a picture, not an empty canvas"


def test_without_matplotlib_the_demo_runs_and_says_how_to_get_the_picture(tmp_path):
    hidden = tmp_path / "hide" / "matplotlib"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text("raise ImportError('matplotlib hidden by the test')\n")
    env = {**OFFLINE_ENV, "PYTHONPATH": str(hidden.parent)}
    run = run_demo(tmp_path / "out", env=env)
    hint = "No timeline picture: matplotlib is missing (pip install 'pipecat-cartesia-ctx[plot]'"
    assert [line for line in run.out.splitlines() if "timeline" in line] == [hint + " to get it)"]
    assert not (tmp_path / "out" / "bot_timeline.png").exists()
    read_wav(tmp_path / "out" / "bot.wav")
    assert {row[0] for row in run.rows} == {1, 2, 3}


def test_two_contexts_example_keeps_interleaved_audio_apart(tmp_path):
    out = run_example("two_contexts.py", tmp_path)
    switches = int(re.search(r"switched context (\d+) times", out).group(1))
    assert switches > 0
    left = read_wav(tmp_path / "context_left.wav")
    right = read_wav(tmp_path / "context_right.wav")
    assert not np.array_equal(left[: len(right)], right[: len(left)])
    assert "'demo-left'" in out
    assert "'demo-right'" in out


def test_manual_flush_example_separates_audio_by_flush_id(tmp_path):
    out = run_example("manual_flush.py", tmp_path, "--fast")
    for flush_id in (1, 2, 3):
        assert f"flush_done flush_id={flush_id}:" in out
        read_wav(tmp_path / f"segment_{flush_id}.wav")
    assert out.index("flush_done flush_id=1") < out.index("flush_done flush_id=2")
    assert "words ['Welcome', 'back', 'to', 'the', 'show.']" in out


def test_realtime_streaming_example_writes_a_wav_without_ffplay(tmp_path):
    out = run_example("realtime_streaming.py", tmp_path, "--fast")
    assert "first audio" in out
    assert "responsive." in out
    assert out.rstrip().splitlines()[-1].startswith("  wrote")
    read_wav(tmp_path / "realtime.wav")


@pytest.mark.parametrize(
    ("player", "expected"),
    [
        ('cat > "$FAKE_FFPLAY_OUT"', "ffplay finished with exit code 0"),
        ("exit 1", "ffplay stopped (no audio device?): going on with the WAV only"),
    ],
)
def test_realtime_streaming_plays_through_ffplay_and_survives_its_failure(
    tmp_path, player, expected
):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "ffplay"
    fake.write_text(f"#!/bin/sh\n{player}\n")
    fake.chmod(0o755)
    played = tmp_path / "played.raw"
    env = {**OFFLINE_ENV, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    env["FAKE_FFPLAY_OUT"] = str(played)
    out = run_example("realtime_streaming.py", tmp_path, "--fast", play=True, env=env)
    assert "Playing live through ffplay" in out
    assert expected in out
    wav = read_wav(tmp_path / "realtime.wav")
    if played.exists():
        assert played.read_bytes() == wav.tobytes(), "ffplay got exactly the audio of the WAV"


def test_the_minimal_pipeline_prints_each_segment_with_its_metrics():
    command = [sys.executable, str(ROOT / "examples" / "minimal_pipeline.py")]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=120, env=OFFLINE_ENV, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "segment 1 done: 'Hello there. '" in out
    assert "segment 2 done: 'This pipeline runs offline, on the emulator.'" in out
    metrics = re.findall(r"segment (\d) metrics: first byte after \d+\.\d{3} s", out)
    assert metrics == ["1", "2"]
    assert "contexts_opened=1" in out


def test_the_telephony_example_barges_in_on_a_twilio_call_at_8khz(tmp_path):
    command = [
        sys.executable,
        str(ROOT / "examples" / "telephony_twilio.py"),
        "--out",
        str(tmp_path),
    ]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=120, env=OFFLINE_ENV, cwd=ROOT
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "Offline: using the local Cartesia emulator" in out
    assert "clear received, nothing after it" in out
    assert "(0 media messages after clear)" in out
    # The caller heard the first answer whole and a second of the second, at 8 kHz.
    with wave.open(str(tmp_path / "call.wav")) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 8000)
        samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    first = (
        SyntheticVoice()
        .synthesize(
            "Thanks for calling the clinic. Dr. Smith can see you on Tuesday at 3:45.", 8000
        )
        .samples
    )
    assert len(samples) >= len(first) + 8000 * 0.9
    assert np.sqrt(np.mean((samples / 32768.0) ** 2)) > 0.01, "audible"
    # The timeline: the caller speaks, the bot detects it, then clears the line.
    timeline = [line.split(" s  ", 1)[1] for line in out.splitlines() if " s  " in line]
    speaks = next(i for i, e in enumerate(timeline) if e.startswith("caller speaks"))
    detected = timeline.index("bot: the caller's speech is detected: InterruptionFrame")
    cleared = next(i for i, e in enumerate(timeline) if e.startswith("bot sends clear"))
    assert speaks < detected < cleared


def test_continuations_example_shows_verbatim_concatenation(tmp_path):
    out = run_example("continuations.py", tmp_path, "--fast")
    assert "'Sonic.', 'How'" in out
    # Without their spaces, parts that were still buffered are read glued together.
    assert "'Hello,my'" in out
    assert "'Ihelp'" in out
    read_wav(tmp_path / "continuation.wav")
    read_wav(tmp_path / "continuation_glued.wav")


def test_response_handling_example_shows_every_event_and_a_typed_error(tmp_path):
    out = run_example("response_handling.py", tmp_path, "--fast")
    counts = dict(re.findall(r"(\w+)=(\d+)", out.split("event counts:")[1].splitlines()[0]))
    assert set(counts) == {"chunk", "timestamps", "phoneme_timestamps", "flush_done", "done"}
    assert "error event -> ModelNotFoundError: [400 model_not_found]" in out
    assert "ends with: done" in out
    read_wav(tmp_path / "response.wav")


def test_the_foundational_example_imports_against_this_pipecat():
    """It needs real services to run; its imports and entry points are checked here."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "foundational_voice_bot", ROOT / "examples" / "foundational_voice_bot.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert callable(module.bot)
    assert callable(module.run_bot)
    assert set(module.transport_params) == {"webrtc", "daily", "twilio"}
    assert module.transport_params["webrtc"]().audio_out_enabled


# -- the emulator's command line ----------------------------------------------


async def start_emulator(*args: str, dev: bool = False) -> tuple[asyncio.subprocess.Process, str]:
    """Start the emulator's command line (or ``dev.py emulator``) on a free port; its URL."""
    command = [str(ROOT / "dev.py"), "emulator"] if dev else ["-m", "pipecat_cartesia_ctx.emulator"]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *command,
        "--port",
        "0",
        "--speed",
        "0",
        "--first-chunk-ms",
        "0",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=OFFLINE_ENV,
    )
    # dev.py may install the project first (on a fresh clone): read up to the URL.
    async with asyncio.timeout(300):
        while True:
            line = (await proc.stdout.readline()).decode()
            if not line:
                raise AssertionError("the emulator exited before listening")
            if match := re.search(r"(ws://127\.0\.0\.1:\d+/tts/websocket)", line):
                return proc, match.group(1)


async def stop_emulator(proc: asyncio.subprocess.Process, sig=signal.SIGINT) -> tuple[str, str]:
    """Signal the emulator and wait for it to exit; its remaining stdout and stderr."""
    try:
        proc.send_signal(sig)
        out, err = await asyncio.wait_for(proc.communicate(), 10)
        return out.decode(), err.decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def speak_once(url: str, **connect_kwargs) -> list:
    async with await CartesiaConnection.connect(url=url, **connect_kwargs) as conn:
        ctx = new_context(conn)
        await ctx.push("From the command line.")
        await ctx.no_more_inputs()
        return await collect(ctx)


async def test_the_emulator_cli_serves_until_interrupted():
    proc, url = await start_emulator()
    assert isinstance((await speak_once(url, api_key="k"))[-1], Done)
    out, _ = await stop_emulator(proc)
    assert proc.returncode == 0
    assert "stopped" in out


@pytest.mark.parametrize("level", ["DEBUG", "INFO", "WARNING"])
async def test_the_cli_log_level_gives_lines_per_connection_context_and_error(level):
    proc, url = await start_emulator("--log-level", level.lower())
    await speak_once(url, api_key="k")
    async with await CartesiaConnection.connect(api_key="k", url=url) as conn:
        bad = conn.context(model_id="no-such-model", voice="v", output_format=S16_24K)
        await bad.push("Refused.")
        await collect(bad)
    _, err = await stop_emulator(proc)
    info = [
        "connection 0 opened: auth x-api-key",
        "connection 0: context ",
        " done: 2 inputs,",
        "connection 1: error event: [400 model_not_found]",
        "connection 1 closed: code 1000",
    ]
    debug = [
        f"push of {len('From the command line.')} chars",
        "opened: sonic-3, pcm_s16le 24000 Hz",
    ]
    for line in info:
        assert (line in err) == (level != "WARNING"), line
    for line in debug:
        assert (line in err) == (level == "DEBUG"), line


async def test_the_cli_takes_a_key_and_access_tokens():
    proc, url = await start_emulator("--api-key", "cli-key", "--access-token", "cli-token")
    try:
        assert isinstance((await speak_once(url, api_key="cli-key"))[-1], Done)
        async with await CartesiaConnection.connect(
            api_key="k",
            url=url,
            extra_headers={"X-API-Key": "", "Authorization": "Bearer cli-token"},
        ):
            pass
        with pytest.raises(AuthenticationError):
            await speak_once(url, api_key="another-key")
    finally:
        await stop_emulator(proc)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_dev_py_emulator_stops_its_emulator_on_a_signal(sig):
    proc, url = await start_emulator(dev=True)
    assert isinstance((await speak_once(url, api_key="k"))[-1], Done)
    out, _ = await stop_emulator(proc, sig)
    assert proc.returncode == 0
    assert "stopped" in out
    with pytest.raises(CartesiaConnectionError):
        await CartesiaConnection.connect(api_key="k", url=url, open_timeout=2)


def test_the_console_script_is_installed_and_documents_its_knobs():
    script = Path(sys.executable).parent / "cartesia-emulator"
    if not script.exists():
        pytest.skip("console script not installed (package not installed in this environment)")
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    for option in (
        "--port",
        "--api-key",
        "--first-chunk-ms",
        "--speed",
        "--cancel",
        "--idle-timeout",
    ):
        assert option in result.stdout


def test_the_cli_reports_a_port_in_use_clearly(tmp_path):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "pipecat_cartesia_ctx.emulator", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
