"""Seeded fault injection: whole turns through the service against a faulty emulator.

Each example is one `run_scenario` (see ``fault_injection.py``): two to four
turns with drops, closes, 429s, 503s, a 400 on one sentence, stalls, a slow
server or interruptions, then a plain turn; every invariant is checked from the
frames and the emulator's record. CI runs a few seeds;
``python benchmarks/soak.py --runs 1000 --jobs 4`` runs many.
"""

from __future__ import annotations

import pytest
from fault_injection import run_scenario
from hypothesis import given, settings
from hypothesis import strategies as st


@pytest.mark.timeout(600)
@settings(max_examples=8, deadline=None, derandomize=True, database=None)
@given(seed=st.integers(0, 10**6))
async def test_every_turn_ends_and_every_word_is_voiced_once_under_faults(seed):
    report = await run_scenario(seed)
    assert report.violations == [], (
        f"seed {seed} (faults {report.faults}): {report.violations}; "
        f"replay with `python tests/fault_injection.py {seed}`"
    )
