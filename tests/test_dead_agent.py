"""After the agent dies: a turn only the harness's teardown ended is a turn that never ended; a bridge
that says it reconnects must start a new agent; one that says it does not must fail the key's turns
at once; an instance the harness killed is over even if no later one starts. Raw-wire bridges."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from acp_sim.trace import Trace
from pytest_acp.adapter import DeliveryLog, TurnEnd, TurnOutput
from pytest_acp.harness.harness import Harness
from pytest_acp.properties.oracle import check
from pytest_acp.properties.truth import InstanceTrace
from tests.test_failed_opens import run
from tests.wire_client import StreamingBridge

pytestmark = pytest.mark.anyio


async def crash_then_prompt(h: Harness) -> None:
    key = h.open(cwd="/work/alpha")
    await h.wait_for(lambda: h.keys[key].status != "opening")
    h.prompt(key)
    await h.wait_for(lambda: h.keys[key].running == 0)
    h.crash()
    await h.advance(1.0)
    h.prompt(key)  # the agent is dead: this turn can only fail
    await h.advance(1.0)


class FailsTurnsOnDeath(StreamingBridge):
    """Does not reconnect, and says so to every turn at once when the agent dies."""

    silent_on_death = False


class FailsTurnsOnItsTimer(StreamingBridge):
    """Does not reconnect, and leaves a dead agent's turns to its own 30 s timeout."""

    async def prompt(self, key: str, text: str, out: TurnOutput) -> TurnEnd:
        with anyio.fail_after(30):
            return await super().prompt(key, text, out)


async def test_a_turn_left_waiting_after_the_agent_died_is_no_reconnect_if_the_bridge_reconnects() -> None:
    h, found = await run(StreamingBridge.factory(reconnects=True), crash_then_prompt)
    # The harness's teardown closed the key, and the bridge then failed the turn: flagged as such.
    ends = [e for e in h._log.entries if e.kind == "end" and e.turn == 2]
    assert (ends[0].detail or {}).get("teardown") is True
    (v,) = found
    assert v.property == "P6"
    assert "never ended: no reconnect after the agent died at t=" in v.message
    assert "only the harness's teardown ended it (closed)" in v.message


async def test_a_bridge_that_does_not_reconnect_must_not_leave_the_turn_waiting() -> None:
    _, found = await run(StreamingBridge.factory(reconnects=False), crash_then_prompt)
    (v,) = found
    assert v.property == "P4"
    assert "never ended, although the agent died at t=" in v.message
    assert "must fail the turn at once with an error" in v.message


async def test_a_bridge_that_does_not_reconnect_and_fails_at_once_passes() -> None:
    _, found = await run(FailsTurnsOnDeath.factory(reconnects=False), crash_then_prompt)
    assert found == []


async def test_a_bridge_that_does_not_reconnect_must_fail_promptly_not_on_a_timer() -> None:
    _, found = await run(FailsTurnsOnItsTimer.factory(reconnects=False, turn_timeout=30), crash_then_prompt)
    (v,) = found
    assert v.property == "P4"
    assert "failed only 30.000 s after the agent died" in v.message


def test_an_instance_the_harness_killed_is_over_though_its_trace_says_nothing() -> None:
    # A SIGKILLed agent writes no exit line and no later instance starts: the harness's crash
    # entry is what ends it, so its session is not "never closed" after the key's close.
    t = 0.0
    trace = Trace(lambda: t)
    log = DeliveryLog(lambda: t)
    sid = "aaaaaaaa-0000-4000-8000-000000000001"
    trace.on_message("recv", {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}})
    caps: dict[str, Any] = {"sessionCapabilities": {"close": {}}}
    trace.on_message("send", {"jsonrpc": "2.0", "id": 1, "result": {"agentCapabilities": caps}})
    log.record("open", key="s1", detail={"cwd": "/w", "mcp_servers": [], "model": None})
    trace.on_message("recv", {"jsonrpc": "2.0", "id": 2, "method": "session/new", "params": {"cwd": "/w"}})
    t = 1.0
    trace.on_message("send", {"jsonrpc": "2.0", "id": 2, "result": {"sessionId": sid}})
    log.record("opened", key="s1")
    log.record("prompt", key="s1", turn=1, text="task-0001: go", detail={"token": "task-0001"})
    prompt = {"sessionId": sid, "prompt": [{"type": "text", "text": "task-0001: go"}]}
    trace.on_message("recv", {"jsonrpc": "2.0", "id": 3, "method": "session/prompt", "params": prompt})
    t = 2.0
    log.record("crash", detail={"instance": 0})  # SIGKILL: nothing more in the trace
    log.record("end", key="s1", turn=1, error="ConnectionError: the agent died")
    t = 3.0
    log.record("close", key="s1")
    log.record("closed", key="s1")
    found = check([InstanceTrace("agent#0", trace.events)], log.entries)
    assert [v for v in found if "never closed" in v.message] == []
    assert found == []
