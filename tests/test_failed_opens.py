"""Failed opens are judged: a bridge that tells its caller "no" for a session the agent made, or with
no cause at the agent, fails; the session it left behind is a leak. Raw-wire bridges
(``tests/wire_client.py``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from acp_sim.agent import InProcessAgent
from pytest_acp.adapter import AgentUnderTest
from pytest_acp.harness.harness import Harness
from pytest_acp.harness.machine import MACHINE_PROFILE
from pytest_acp.properties.violation import Violation
from tests.wire_client import StreamingBridge

pytestmark = pytest.mark.anyio


async def run(factory: Any, script: Callable[[Harness], Awaitable[None]]) -> tuple[Harness, list[Violation]]:
    agent = AgentUnderTest(InProcessAgent(MACHINE_PROFILE, seed=3))
    h = Harness(factory, agent, guard_processes=False)
    await h.start()
    try:
        await script(h)
    finally:
        await h.stop()
    return h, h.check(final=True)


async def open_and_talk(h: Harness) -> None:
    for cwd in ("/work/alpha", "/work/beta"):
        key = h.open(cwd=cwd)
        await h.wait_for(lambda key=key: h.keys[key].status != "opening")
        if h.keys[key].status == "idle":
            h.prompt(key)
            await h.wait_idle(200)
    await h.advance(10)  # the bridge lives on after the opens (its stop ends the agent)


class OpenRaisesAfterNew(StreamingBridge):
    """Creates the agent session, then fails the open anyway (and forgets the session)."""

    async def open_session(
        self, key: str, *, cwd: str, mcp_servers: list[dict[str, Any]], model: str | None
    ) -> None:
        await super().open_session(key, cwd=cwd, mcp_servers=mcp_servers, model=model)
        del self.sids[key]
        raise ValueError(f"unknown project {cwd}")


class OpenRaisesAtOnce(StreamingBridge):
    """Fails every open before asking the agent anything."""

    async def open_session(
        self, key: str, *, cwd: str, mcp_servers: list[dict[str, Any]], model: str | None
    ) -> None:
        raise ValueError("not ready")


async def test_the_raw_wire_bridge_itself_passes() -> None:
    h, found = await run(StreamingBridge.factory(), open_and_talk)
    assert [e.kind for e in h._log.entries].count("opened") == 2
    assert found == []


async def test_an_open_failed_after_the_agent_created_its_session_is_p2_and_the_session_a_p6_leak() -> None:
    _, found = await run(OpenRaisesAfterNew.factory(), open_and_talk)
    p2 = [v for v in found if v.property == "P2"]
    p6 = [v for v in found if v.property == "P6"]
    assert len(p2) == 2, found
    assert len(p6) == 2, found
    assert (
        "open_session failed (ValueError: unknown project /work/alpha), although the agent created session"
        in p2[0].message
    )
    assert "the caller was told no for a session that exists" in p2[0].message
    assert p2[0].key == "s1"
    assert p2[0].session is not None
    assert "was never closed" in p6[0].message
    assert p6[0].key in ("s1", "s2")


async def test_an_open_that_fails_with_no_cause_at_the_agent_is_p2() -> None:
    _, found = await run(OpenRaisesAtOnce.factory(), open_and_talk)
    assert [v.property for v in found] == ["P2", "P2"], found
    assert "open_session failed (ValueError: not ready) with no cause at the agent" in found[0].message


async def test_a_declared_session_limit_explains_a_refused_open() -> None:
    _, found = await run(OpenRaisesAtOnce.factory(max_sessions=0), open_and_talk)
    assert found == []


def test_the_property_suite_fails_a_bridge_that_cannot_open_one_session() -> None:
    from pytest_acp.harness.machine import PropertyViolation
    from pytest_acp.harness.machine_run import machine_for, run_machine

    with pytest.raises(PropertyViolation) as caught:
        run_machine(machine_for(OpenRaisesAfterNew.factory()), examples=30, seed=0)
    report = str(caught.value)
    first = report.splitlines()[0]
    assert first.startswith(
        "P2 integrity violated: P2 integrity: open_session failed (ValueError: unknown project"
    )
    assert "although the agent created session" in first
    assert "steps (shrunk" in report
    # The timeline shows the session the agent made for the key, though no prompt reached it.
    assert "key s1 (agent#0 " in report
    assert "session/new -> created" in report
