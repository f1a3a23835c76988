"""The pytest plugin as users meet it: their own test files, run by pytest in a fresh process.

The plugin is found through its ``pytest11`` entry point, as in a user's
project: nothing here registers it by hand.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent


def readme_example() -> str:
    """The test file shown in the README's "Testing your bot" section, verbatim."""
    section = (ROOT / "README.md").read_text().split("## Testing your bot\n", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


# Our client only: the plugin must not import pipecat for it.
CLIENT_TEST = """
import sys

import pytest

from pipecat_cartesia_ctx import CartesiaConnection
from pipecat_cartesia_ctx.emulator import Behavior, CancelBehavior, Pacing
from pipecat_cartesia_ctx.protocol import AuthenticationError, Done

FORMAT = {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 16000}


async def speak(url, text):
    async with await CartesiaConnection.connect(api_key="test", url=url) as conn:
        ctx = conn.context(model_id="sonic-3", voice="v", output_format=FORMAT)
        await ctx.push(text)
        await ctx.no_more_inputs()
        return [event async for event in ctx.receive(timeout=5)]


MARK
async def test_the_fixture(cartesia_emulator):
    events = await speak(cartesia_emulator.url, "Testing one two.")
    assert isinstance(events[-1], Done)
    assert cartesia_emulator.record.spoken() == ["Testing one two."]
    assert cartesia_emulator.record.transcripts() == ["Testing one two."]
    assert cartesia_emulator.base_url.startswith("ws://127.0.0.1:")
    assert "pipecat" not in sys.modules


MARK
@pytest.mark.cartesia_emulator(
    pacing=Pacing(first_chunk_ms=5, speed=50.0), behavior=Behavior(cancel=CancelBehavior.IMMEDIATE)
)
async def test_the_marker_configures_it(cartesia_emulator):
    assert cartesia_emulator.pacing.speed == 50.0
    assert cartesia_emulator.behavior.cancel is CancelBehavior.IMMEDIATE
    await speak(cartesia_emulator.url, "Paced.")
    await cartesia_emulator.record.settled()
    [record] = cartesia_emulator.record.contexts.values()
    assert record.outcome == "done"


MARK
async def test_the_factory(cartesia_emulator_factory):
    strict = await cartesia_emulator_factory(api_key="secret")
    loose = await cartesia_emulator_factory()
    assert strict.port != loose.port
    await speak(loose.url, "Any key works here.")
    with pytest.raises(AuthenticationError):
        await speak(strict.url, "Not with this key.")
    assert loose.record.spoken() == ["Any key works here."]
    assert strict.record.rejected_connections == [(401, "unauthorized")]
"""


def _run(pytester: pytest.Pytester, mode: str, source: str) -> pytest.RunResult:
    pytester.makeini(
        f"[pytest]\nasyncio_mode = {mode}\nasyncio_default_fixture_loop_scope = function\n"
    )
    pytester.makepyfile(test_user=source)
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")


@pytest.mark.parametrize("mode", ["strict", "auto"])
def test_a_user_test_file_passes_with_only_the_plugins_fixtures(pytester, mode):
    marks = "@pytest.mark.asyncio" if mode == "strict" else ""
    result = _run(pytester, mode, CLIENT_TEST.replace("MARK", marks))
    result.assert_outcomes(passed=3)


def test_the_readme_example_passes_with_pipecat(pytester):
    source = readme_example()
    assert "cartesia_emulator" in source
    result = _run(pytester, "auto", source)
    result.assert_outcomes(passed=1)


def test_strict_mode_without_the_asyncio_mark_does_not_pass_silently(pytester):
    # The fixture is async: strict mode needs the mark, as for any async fixture.
    result = _run(pytester, "strict", CLIENT_TEST.replace("MARK", ""))
    result.assert_outcomes(failed=3)
    result.stdout.fnmatch_lines(["*async def functions are not natively supported*"])


def test_a_failing_user_assertion_fails(pytester):
    source = """
async def test_wrong(cartesia_emulator):
    assert cartesia_emulator.record.spoken() == ["something never said"]
"""
    result = _run(pytester, "auto", source)
    result.assert_outcomes(failed=1)
