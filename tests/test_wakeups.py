"""The simulator's cost per chunk in units a noisy machine cannot change (benchmarks/wakeups.py).

Not a timed test: on virtual time the same program takes the same scheduler steps and makes the
same function calls, run after run. A change that makes the per-chunk path do more work fails here
(raise the ceiling only with a benchmark run showing why); one that makes it cheaper should lower
the ceiling, so the guard keeps what was won.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from .conftest import REPO

# Measured with Python 3.11 and the pinned dependency ranges; the bare scheduler's own figures are
# asserted too, so a change of interpreter or event loop shows up as that, not as our regression.
CEILINGS = {
    "asyncio": {"steps_per_chunk": 1.54, "calls_per_chunk": 150.6},
    "trio": {"steps_per_chunk": 1.32, "calls_per_chunk": 184.5},
}


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_per_chunk_work_does_not_grow(backend: str) -> None:
    # In a fresh interpreter, as the ceilings were measured: in a test worker the count also holds
    # whatever the tests before it left behind (caches, garbage and its finalizers, gc callbacks).
    code = f"import json; from benchmarks.wakeups import measure; print(json.dumps(measure({backend!r})))"
    env = {**os.environ, "PYTHONHASHSEED": "0"}  # set and dict orders, the same every run
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    row = json.loads(out.stdout)
    ceiling = CEILINGS[backend]
    assert row["steps_per_chunk"] <= ceiling["steps_per_chunk"], row
    assert row["calls_per_chunk"] <= ceiling["calls_per_chunk"], row
    # The floor it is judged against: one timer is one step and a few dozen calls.
    assert row["bare_steps_per_timer"] <= 2.1, row
