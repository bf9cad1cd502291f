"""What a run exercised: a run in which nothing took effect never passes, and the counts are shown."""

from __future__ import annotations

import pytest

from pytest_acp.harness.machine_run import NotExercised, machine_for, run_machine
from pytest_acp.reference import bridge as reference_bridge
from tests.test_failed_opens import OpenRaisesAtOnce

pytest_plugins = ["pytester"]


def test_a_bridge_that_opens_nothing_fails_for_it() -> None:
    # It declares it holds no session at all, so each refused open is its declared cost (no
    # property fails), and not one turn runs: that run must not pass.
    refusing = OpenRaisesAtOnce.factory(max_sessions=0)
    with pytest.raises(NotExercised) as caught:
        run_machine(machine_for(refusing), examples=5, seed=0)
    report = str(caught.value)
    assert report.startswith("nothing happened: 0 of ")
    assert "opens took effect (0%)" in report
    assert "0 of 0 prompts took effect" in report
    assert "at least 50% of the opens and of the prompts must take effect (--acp-min-effect" in report
    assert "fell short on: opens, no prompt" in report
    assert "seed:    0" in report


def test_the_threshold_is_the_users() -> None:
    refusing = OpenRaisesAtOnce.factory(max_sessions=0)
    stats = run_machine(machine_for(refusing, min_effect=0.0), examples=3, seed=0)
    assert stats.exercised is not None
    assert stats.exercised.opens > 0
    assert stats.exercised.opened == 0


def test_the_reference_clears_the_default_with_every_hazard_counted() -> None:
    stats = run_machine(machine_for(reference_bridge), examples=60, seed=0)
    run = stats.exercised
    assert run is not None
    fractions = run.fractions()
    assert fractions["opens"] is not None
    assert fractions["opens"] > 0.9
    assert fractions["prompts"] is not None
    assert fractions["prompts"] > 0.9
    for hazard in ("crash_mid_turn", "cancel_reached_agent", "concurrent_turns", "slow_reader"):
        assert run.hazards[hazard] > 0, run.summary()
    assert "opens took effect" in run.summary()
    # The run's one-line coverage counts faults as the effect count does (crashes among them), and
    # counts rules only: the end-of-run drain is no rule.
    assert run.hazards["fault:crash"] > 0
    assert f"faults injected: {run.faults};" in stats.summary or stats.summary.endswith(f": {run.faults}")
    assert run.faults > run.hazards["fault:crash"]
    assert "teardown" not in stats.summary


REFUSING = """
from contextlib import asynccontextmanager
from pytest_acp.adapter import BridgeCapabilities


class Refusing:
    capabilities = BridgeCapabilities(max_sessions=0)

    async def open_session(self, key, *, cwd, mcp_servers, model):
        raise ValueError("no sessions here")

    async def prompt(self, key, text, out):
        raise AssertionError("never opened")

    async def cancel(self, key):
        pass

    async def close(self, key):
        pass


@asynccontextmanager
async def bridge(agent):
    yield Refusing()
"""


def test_the_plugin_fails_a_run_that_did_nothing_unless_told_otherwise(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(refusing=REFUSING)
    args = ["--acp-sim", "--acp-bridge", "refusing:bridge", "--acp-examples", "3", "--acp-backend", "asyncio"]
    result = pytester.runpytest_subprocess(*args, "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*nothing happened: 0 of * opens took effect (0%)*", "*--acp-min-effect*"])
    result = pytester.runpytest_subprocess(*args, "--acp-min-effect", "0", "-rA")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*acp exercised*", "*0 of * opens took effect (0%)*"])
