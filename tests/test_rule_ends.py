"""Judging an example once, at its end, and the run after each rule only when that finds something
(``AcpStateMachine.judge_lazily``, ``pytest_acp.harness.rule_ends``): the same examples fail, at the
same step, with the same report, as with a check after every rule; a passing example costs one check.
"""

from __future__ import annotations

from typing import Any

import anyio.lowlevel
import pytest

from acp_sim.conformance import cause_of
from pytest_acp.adapter import BridgeCapabilities, TurnOutput
from pytest_acp.bugs import CATALOG
from pytest_acp.harness import harness as harness_module
from pytest_acp.harness.machine import AcpStateMachine, PropertyViolation
from pytest_acp.harness.machine_run import machine_for, run_machine
from pytest_acp.reference import bridge as reference_bridge
from pytest_acp.report.conformance import targeting

from .wire_client import WireBridge


def _failure(machine: type[AcpStateMachine], examples: int, seed: int) -> tuple[Any, ...]:
    with pytest.raises(PropertyViolation) as caught:
        run_machine(machine, examples=examples, seed=seed, shrink=False)
    error = caught.value
    return (type(error), error.examples, error.log_end, str(error))  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("bug", "backend", "seed"),
    [
        ("cancel_all", "asyncio", 0),
        ("mcp_leak_on_close", "trio", 0),
        ("pool_ignores_cwd", "asyncio", 1),
        ("shared_continuation", "trio", 2),
    ],
)
def test_judging_at_the_end_fails_the_same_example_at_the_same_step_with_the_same_report(
    bug: str, backend: str, seed: int
) -> None:
    factory = CATALOG[bug].bridge
    every_rule = _failure(machine_for(factory, backend=backend, judge_lazily=False), 200, seed)
    at_the_end = _failure(machine_for(factory, backend=backend, judge_lazily=True), 200, seed)
    assert at_the_end == every_rule


@pytest.mark.parametrize("lazily", [True, False])
def test_a_passing_example_is_judged_once_at_its_end(lazily: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    finals: list[bool] = []
    real = harness_module.check

    def counted(*args: Any, **kwargs: Any) -> Any:
        finals.append(kwargs["final"])
        return real(*args, **kwargs)

    monkeypatch.setattr(harness_module, "check", counted)
    stats = run_machine(machine_for(reference_bridge, judge_lazily=lazily), examples=15, seed=0)
    assert finals.count(True) == stats.examples
    if lazily:
        assert False not in finals
    else:
        assert finals.count(False) > stats.examples  # a check after (nearly) every rule


class DropsFirstThenRaises(WireBridge):
    """Drops each key's first chunk (P1); a close makes a task of the bridge raise (its own failure,
    which a check after every rule never reached: the example stopped at the dropped chunk)."""

    capabilities = BridgeCapabilities(reconnects=False)

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.started: set[str] = set()

    async def deliver(self, key: str, text: str, out: TurnOutput) -> None:
        if key in self.started:
            await out.text(text)
        self.started.add(key)

    async def close(self, key: str) -> None:
        async def fail() -> None:
            await anyio.lowlevel.checkpoint()
            raise RuntimeError("the close path is broken too")

        self.tg.start_soon(fail)


def _prompt_then_close(machine: AcpStateMachine, *, own_call: bool) -> None:
    if own_call:  # a subclass's rule that drives the loop itself, not through the machine's call
        assert machine.loop is not None
        assert machine.h is not None
        harness = machine.h

        async def prompt() -> None:
            harness.prompt("s1")
            await harness.wait_for(lambda: harness.keys["s1"].status == "idle")

        machine.loop.call(prompt)
        machine._step("prompt s1 turn 1 (its own call)")
    else:
        machine.prompt(pick=0, wait=True)
    machine.properties_hold()  # a check after every rule stops the example here
    machine.close(pick=0)
    machine.advance(seconds=1.0)  # the bridge's task raises
    machine.properties_hold()
    machine.teardown()


@pytest.mark.parametrize("own_call", [False, True])
@pytest.mark.parametrize("lazily", [True, False])
def test_a_bridge_that_raises_after_a_violation_is_reported_at_the_violation(
    lazily: bool, own_call: bool
) -> None:
    machine = machine_for(DropsFirstThenRaises.factory(), judge_lazily=lazily, fault_kinds=())()
    try:
        machine.start(agent_seed=1, text=0, writes=0)
        machine.properties_hold()
        machine.open_session(cwd=0, mcp=0, model=0, wait=True)
        machine.properties_hold()
        with pytest.raises(PropertyViolation) as caught:
            _prompt_then_close(machine, own_call=own_call)
    finally:
        machine.teardown()
    error = caught.value
    assert type(error).property == "P1", str(error)
    steps = str(error).split("steps", 1)[1]
    assert "prompt s1 turn 1" in steps
    assert "close s1" not in steps  # reported as of the rule after which the run was broken


def test_a_machine_that_fails_on_one_cause_only_reports_it_as_of_its_rule_too() -> None:
    """The conformance report's shrinking machine fails only on one cause; judged at the end, it
    still fails where a check after every rule would have, with that report."""
    factory = CATALOG["cancel_all"].bridge
    with pytest.raises(PropertyViolation) as caught:
        run_machine(machine_for(factory, judge_lazily=False), examples=200, seed=0, shrink=False)
    first = caught.value.violations[0]
    cause = cause_of(first.property, first.message)
    every_rule = _failure(targeting(machine_for(factory, judge_lazily=False), cause), 200, 0)
    at_the_end = _failure(targeting(machine_for(factory, judge_lazily=True), cause), 200, 0)
    assert at_the_end == every_rule
