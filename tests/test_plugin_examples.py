"""The shipped examples: the reference adapter passes, and the suite finds what the README says it
finds in the naive SDK bridge (asyncio only: the SDK is built on asyncio)."""

from __future__ import annotations

from typing import Any

import pytest
from examples import naive_sdk_adapter, reference_adapter

from pytest_acp.harness.machine import PropertyViolation
from pytest_acp.harness.machine_run import machine_for, run_machine

QUIET = {"crashes": False, "cancels": False, "closes": False, "fault_kinds": ()}


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_the_reference_adapter_example_passes(backend: str) -> None:
    assert (
        run_machine(machine_for(reference_adapter.bridge, backend=backend), examples=100, seed=0).examples
        >= 100
    )


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize(
    ("enabled", "prop", "message"),
    [
        ({"closes": True}, "P6", "session/close not sent"),
        ({"cancels": True}, "P5", "but the turn ended 'end_turn'"),
        ({"crashes": True}, "P6", "no reconnect after the agent died"),
    ],
    ids=["close-leaks-the-session", "cancel-overtakes-prompt", "no-reconnect"],
)
def test_what_the_suite_finds_in_the_naive_sdk_bridge(
    enabled: dict[str, Any], prop: str, message: str
) -> None:
    machine = machine_for(naive_sdk_adapter.bridge, backend="asyncio", **{**QUIET, **enabled})
    with pytest.raises(PropertyViolation) as caught:
        run_machine(machine, examples=300, seed=0, shrink=False)
    assert caught.value.property == prop
    assert message in str(caught.value)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_the_naive_sdk_bridge_streams_several_sessions_correctly() -> None:
    """What it gets right: interleaved sessions, slow readers, malformed lines, stalls, errors."""
    faults = (
        "stall",
        "malformed_line",
        "foreign_session_update",
        "error_reply",
        "empty_turn",
        "slow_session_new",
    )
    machine = machine_for(naive_sdk_adapter.bridge, backend="asyncio", **{**QUIET, "fault_kinds": faults})
    assert run_machine(machine, examples=150, seed=0).examples >= 150


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_the_naive_sdk_bridge_passes_on_a_wrong_stop_reason_for_a_cancelled_turn() -> None:
    import anyio

    from acp_sim.agent import InProcessAgent
    from acp_sim.clock import backend_options
    from acp_sim.faults import parse_fault_spec
    from pytest_acp.adapter import AgentUnderTest
    from pytest_acp.harness.harness import Harness
    from pytest_acp.harness.machine import MACHINE_PROFILE

    async def run() -> list[Any]:
        harness = Harness(naive_sdk_adapter.bridge, AgentUnderTest(InProcessAgent(MACHINE_PROFILE, seed=1)))
        await harness.start()
        key = harness.open(cwd="/w")
        await harness.wait_idle(60)
        harness.prompt(key)
        await harness.advance(1.0)  # the prompt is well under way: no race with the cancel
        harness.inject(parse_fault_spec("wrong_stop_reason"))
        harness.cancel(key)
        await harness.wait_idle(60)
        await harness.stop()
        return harness.check(final=True)

    (violation, *_) = anyio.run(run, backend="asyncio", backend_options=backend_options("asyncio"))
    assert violation.property == "P5"
    assert "but the turn ended 'end_turn'" in violation.message
