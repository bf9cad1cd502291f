"""The plugin's fixtures in async tests of this suite (virtual time, both backends)."""

from __future__ import annotations

import sys
from typing import Any

import anyio
import pytest

from acp_sim.agent import InProcessAgent
from pytest_acp.harness.harness import Harness

pytestmark = pytest.mark.anyio


@pytest.mark.acp(profile="claude-code", seed=11)
async def test_the_bridge_fixture_drives_the_simulated_agent_on_virtual_time(
    acp_bridge: Any, acp_agent: InProcessAgent, acp_trace: Any, acp_clock: Any
) -> None:
    from pytest_acp.adapter import DeliveryLog, TurnOutput

    log = DeliveryLog()
    await acp_bridge.open_session("k", cwd="/w", mcp_servers=[], model=None)
    end = await acp_bridge.prompt("k", "task-0001: hello", TurnOutput(log, "k", 1))
    assert end.stop_reason == "end_turn"
    sent = [e for e in acp_trace.current.updates() if e.update_kind == "agent_message_chunk"]
    delivered = [e.text for e in log.entries if e.kind == "update" and e.update_kind == "agent_message_chunk"]
    assert delivered == [e.message["params"]["update"]["content"]["text"] for e in sent]
    assert acp_agent.profile.name == "claude-code"
    assert acp_agent.seed == 11
    assert acp_clock.now() >= 3.0  # Claude Code's session/new alone takes ~4 virtual seconds


async def test_the_harness_fixture_judges_a_directed_run(acp_harness: Harness) -> None:
    first = acp_harness.open(cwd="/w")
    second = acp_harness.open(cwd="/w")
    await acp_harness.wait_idle(60)
    acp_harness.prompt(first)
    acp_harness.prompt(second)
    await anyio.sleep(0.12)
    acp_harness.cancel(first)
    await acp_harness.wait_idle(60)
    await acp_harness.stop()
    assert acp_harness.check(final=True) == []
    ends = {e.key: e.stop_reason for e in acp_harness.log.entries if e.kind == "end"}  # type: ignore[union-attr]
    assert ends == {first: "cancelled", second: "end_turn"}


@pytest.mark.acp(faults=["error_reply:method=session/prompt"])
async def test_a_marker_fault_reaches_the_agent_and_the_oracle_accepts_the_failed_turn(
    acp_harness: Harness,
) -> None:
    key = acp_harness.open(cwd="/w")
    await acp_harness.wait_idle(60)
    acp_harness.prompt(key)
    await acp_harness.wait_idle(60)
    await acp_harness.stop()
    (end,) = [e for e in acp_harness.log.entries if e.kind == "end"]  # type: ignore[union-attr]
    assert end.error is not None
    assert "Internal error" in end.error
    assert acp_harness.check(final=True) == []


def test_the_agent_command_fixture_runs_the_stdio_simulated_agent(
    acp_agent_cmd: list[str], acp_seed: int
) -> None:
    assert acp_agent_cmd[:4] == [sys.executable, "-m", "acp_sim", "agent"]
    assert acp_agent_cmd[acp_agent_cmd.index("--seed") + 1] == str(acp_seed)
