"""Shared MCP isolation: a stateful MCP server shared over HTTP carries one session's state into
another; the report names who saw whose, and sessions declared isolated fail on it."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from acp_sim.agent import InProcessAgent
from acp_sim.orchestrator import Orchestrator, SharedHttpServer
from acp_sim.profile import McpStateUse, ToolCallSpec
from acp_sim.scenario import load_scenario_text
from pytest_acp.properties.isolation import ISOLATION, check_isolation, observations, report
from pytest_acp.properties.truth import InstanceTrace
from pytest_acp.reference import bridge
from pytest_acp.scenarios.run import run_scenario

from .test_orchestrator_pool import stdio_server
from .test_orchestrator_support import make_profile, open_many

pytestmark = pytest.mark.anyio

# A real HTTP process stands in for the browser (the simulated agent keeps its state per URL).
BROWSER = SharedHttpServer("browser", [sys.executable, "-m", "http.server", "{port}", "--bind", "127.0.0.1"])
# Every turn looks at the browser's current page, then navigates (leaves its own mark).
LOOK_THEN_NAVIGATE = [
    ToolCallSpec(after_chunk=0, title="current page", mcp=McpStateUse(server="browser", op="get")),
    ToolCallSpec(after_chunk=1, title="navigate", mcp=McpStateUse(server="browser", op="set")),
]


def traces_of(launcher: InProcessAgent) -> list[InstanceTrace]:
    return [InstanceTrace(a.name, a.trace.events) for a in launcher.agents]


async def one_turn_each(policy: Any, servers: list[Any]) -> tuple[InProcessAgent, list[str]]:
    launcher = InProcessAgent(make_profile(chunks=3, tool_calls=LOOK_THEN_NAVIGATE), seed=5)
    async with Orchestrator(launcher, mcp_sharing=policy) as orch:
        a, b = await open_many(orch, 2, mcp_servers=servers)
        for session in (a, b):  # one after the other: b looks at what a left
            await session.prompt("browse").result()
        ids = [a.id, b.id]
    return launcher, ids


async def test_a_shared_stateful_server_shows_one_session_what_another_left() -> None:
    launcher, (a, b) = await one_turn_each("share_http", [BROWSER])
    seen = observations(traces_of(launcher))
    assert [(o.reader, o.writer, o.server) for o in seen] == [(b, a, "browser")]
    assert seen[0].value == f"[{a[:8]} t1 tool1]"  # a's navigation, read by b's first look
    assert seen[0].url is not None
    text = report(traces_of(launcher))
    assert text.splitlines()[0] == "shared MCP state: 1 read(s) of state another session left behind"
    assert f"session {b[:8]} read '[{a[:8]} t1 tool1]' from MCP server 'browser'" in text
    violations = check_isolation(traces_of(launcher))
    assert [(v.property, v.session) for v in violations] == [(ISOLATION, b)]
    # What b's caller was shown: the tool's output names the page a left.
    updates = [e.message for e in launcher.current.trace.events if e.session == b and e.update_kind]
    outputs = [str(u) for u in updates if "tool_call_update" in str(u) and "state [" in str(u)]
    assert any(f"browser state [{a[:8]} t1 tool1]" in out for out in outputs)


@pytest.mark.parametrize(
    "servers",
    [[BROWSER], [stdio_server("browser")]],
    ids=["http-per-session", "stdio"],
)
async def test_a_server_of_its_own_keeps_each_session_isolated(servers: list[Any]) -> None:
    policy = "per_session"
    launcher, (a, b) = await one_turn_each(policy, servers)
    events = [e for e in launcher.current.trace.events if e.kind == "mcp_state"]
    assert [(e.session, e.detail["op"]) for e in events] == [(a, "get"), (a, "set"), (b, "get"), (b, "set")]  # type: ignore[index]
    assert [e.detail["value"] for e in events if e.detail["op"] == "get"] == [None, None]  # type: ignore[index]
    assert observations(traces_of(launcher)) == []
    assert report(traces_of(launcher)) == (
        "shared MCP state: no session read state another session left behind"
    )


async def test_a_tool_of_a_server_the_session_lacks_fails_the_call() -> None:
    launcher = InProcessAgent(make_profile(chunks=2, tool_calls=LOOK_THEN_NAVIGATE[:1]), seed=5)
    async with Orchestrator(launcher) as orch:
        (a,) = await open_many(orch, 1)
        await a.prompt("browse").result()
    finals = [
        e.message["params"]["update"]  # type: ignore[index]
        for e in launcher.current.trace.events
        if e.update_kind == "tool_call_update" and e.message["params"]["update"]["status"] == "failed"  # type: ignore[index]
    ]
    assert len(finals) == 1
    assert "no connected MCP server 'browser'" in str(finals[0]["content"])
    assert [e for e in launcher.current.trace.events if e.kind == "mcp_state"] == []


SCENARIO = """
name: browser-{name}
description: two sessions use a browser MCP server; they must not see each other's pages
profile:
  name: browsing
  models:
    default:
      session_new_cold: 1.0
      turn:
        chunk_count: 3
        tool_calls:
          - {{after_chunk: 0, mcp: {{server: browser, op: get}}}}
          - {{after_chunk: 1, mcp: {{server: browser, op: set}}}}
script:
  - {{open: {{session: a, mcp_servers: [{{name: browser, type: http, url: "http://127.0.0.1:9/{a}"}}]}}}}
  - {{open: {{session: b, mcp_servers: [{{name: browser, type: http, url: "http://127.0.0.1:9/{b}"}}]}}}}
  - {{prompt: a, wait: true}}
  - {{prompt: b, wait: true}}
expect:
  mcp_isolated: true
"""


def test_a_scenario_declaring_isolation_fails_on_a_shared_server_and_passes_without() -> None:
    shared = load_scenario_text(SCENARIO.format(name="shared", a="one", b="one"))
    own = load_scenario_text(SCENARIO.format(name="own", a="one", b="two"))
    failed = run_scenario(shared, bridge)
    assert not failed.passed
    assert [v.property for v in failed.failures] == [ISOLATION]
    assert "sessions not isolated: session" in failed.report()
    assert "MCP server 'browser' at http://127.0.0.1:9/one" in failed.report()
    passed = run_scenario(own, bridge)
    assert passed.passed, passed.report()
