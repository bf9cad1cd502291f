"""The simulator's cost per chunk in units a noisy machine cannot change (benchmarks/wakeups.py).

Not a timed test: on virtual time the same program takes the same scheduler steps and makes the
same function calls, run after run. A change that makes the per-chunk path do more work fails here
(raise the ceiling only with a benchmark run showing why); one that makes it cheaper should lower
the ceiling, so the guard keeps what was won.
"""

from __future__ import annotations

import pytest
from benchmarks.wakeups import measure

# Measured with Python 3.11 and the pinned dependency ranges; the bare scheduler's own figures are
# asserted too, so a change of interpreter or event loop shows up as that, not as our regression.
CEILINGS = {
    "asyncio": {"steps_per_chunk": 1.54, "calls_per_chunk": 161.2},
    "trio": {"steps_per_chunk": 1.32, "calls_per_chunk": 196.5},
}


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_per_chunk_work_does_not_grow(backend: str) -> None:
    row = measure(backend)  # type: ignore[arg-type]
    ceiling = CEILINGS[backend]
    assert row["steps_per_chunk"] <= ceiling["steps_per_chunk"], row
    assert row["calls_per_chunk"] <= ceiling["calls_per_chunk"], row
    # The floor it is judged against: one timer is one step and a few dozen calls.
    assert row["bare_steps_per_timer"] <= 2.1, row
