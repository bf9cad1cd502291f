"""Progress of long property-suite runs (issue 21 item 13): one mechanism (``pytest_acp.report.progress``)
for virtual-time, real-time and live runs, written past pytest's capture, and from xdist workers on
stderr. The threshold is set near zero so that short runs print (nothing here is timed)."""

from __future__ import annotations

import re

import pytest

from pytest_acp.bugs import CATALOG
from pytest_acp.harness.machine import PropertyViolation
from pytest_acp.harness.machine_run import machine_for, run_machine
from pytest_acp.report.baseline import AcceptedViolation, Baseline
from pytest_acp.report.progress import Progress

pytest_plugins = ["pytester"]

# Speak from the first step on (0 turns progress off).
AT_ONCE = "0.001"
SUITE = ["--acp-sim", "--acp-backend", "asyncio", "--acp-examples", "2", "--acp-progress", AT_ONCE]


def test_a_property_item_on_virtual_time_prints_its_progress_past_the_capture(
    pytester: pytest.Pytester,
) -> None:
    result = pytester.runpytest(*SUITE)  # pytest's capture on, as by default
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "acp acp_properties[[]asyncio[]]: example 1 of 2, step 1 of up to 40 "
            "(* s; violations so far: 0): start(agent_seed=*"
        ]
    )


def test_progress_is_off_with_zero(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest(*SUITE[:-1], "0")
    result.assert_outcomes(passed=1)
    assert "violations so far" not in result.stdout.str() + result.stderr.str()


def test_an_xdist_worker_prints_its_progress_on_stderr(pytester: pytest.Pytester) -> None:
    """A worker's stdout is the channel to the controller; its stderr is the controller's."""
    pytest.importorskip("xdist")
    result = pytester.runpytest_subprocess("-p", "xdist", "-n", "1", *SUITE)
    result.assert_outcomes(passed=1)
    result.stderr.fnmatch_lines(
        ["[[]gw0[]] acp acp_properties[[]asyncio[]]: example 1 of 2, step 1 of up to 40 *"]
    )


@pytest.mark.parametrize("lazily", [True, False])
def test_progress_counts_accepted_violations_and_says_when_a_failure_is_replayed(lazily: bool) -> None:
    lines: list[str] = []
    progress = Progress(5, 40, write=lines.append, after=0, every=0)
    # A bridge that drops first chunks, with its P1 accepted: the run goes on to what else it breaks.
    baseline = Baseline([AcceptedViolation(property="P1", pattern=".", why="known: ticket #1")])
    machine = machine_for(
        CATALOG["first_chunk_dropped"].bridge, baseline=baseline, min_effect=0, judge_lazily=lazily
    )
    with pytest.raises(PropertyViolation) as caught:
        run_machine(machine, examples=5, seed=0, shrink=False, progress=progress)
    accepted = [line for line in lines if "accepted by the baseline" in line]
    assert accepted, lines
    counts = [int(m.group(1)) for m in (re.search(r"violations so far: (\d+)", line) for line in lines) if m]
    assert counts == sorted(counts)
    if lazily:  # judged at each example's end: a line counts the examples ended before it
        assert 0 < counts[-1] <= progress.violations
    else:
        assert counts[-1] == progress.violations > 0
    cause = caught.value.violations[0].property
    assert any(f"replaying the {cause} failure of example " in line for line in lines), lines[-3:]
