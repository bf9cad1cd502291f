"""Pre-warm pool (item 5) and MCP accounting and sharing (item 6), against the in-process agent.

The agent really spawns each session's stdio MCP servers (``acp-sim mcp-server``) as child
processes, so the process counts compared here are real ones (``SimAgent.mcp.count``).
"""

from __future__ import annotations

import sys
from typing import Any

import anyio
import psutil
import pytest

from acp_sim.agent import InProcessAgent
from acp_sim.orchestrator import Orchestrator, Session, SharedHttpServer

from .test_orchestrator_support import check_delivery, make_profile, open_many

pytestmark = pytest.mark.anyio

COLD = 4.0


def stdio_server(name: str, *extra: str) -> dict[str, Any]:
    return {
        "name": name,
        "command": sys.executable,
        "args": ["-m", "acp_sim", "mcp-server", *extra],
        "env": [],
    }


def closes(launcher: InProcessAgent) -> list[str]:
    return [
        e.session for e in launcher.current.trace.events if e.kind == "recv" and e.method == "session/close"
    ]  # type: ignore[misc]


async def test_a_warm_session_answers_a_new_conversation_without_session_new_latency() -> None:
    launcher = InProcessAgent(make_profile(session_new=COLD, first=0.0, models=("default", "other")), seed=1)
    async with Orchestrator(launcher) as orch:
        start = anyio.current_time()
        await orch.prewarm(cwd="/a", count=2, wait=True)
        assert anyio.current_time() - start == pytest.approx(COLD)  # both warmed concurrently
        t0 = anyio.current_time()
        session = await orch.open_session(cwd="/a")
        turn = session.prompt("hello")
        first = await turn.__aiter__().__anext__()
        assert first.kind == "agent_message_chunk"
        assert anyio.current_time() - t0 <= 0.01 * COLD  # P7: within 1% of the cold latency
        assert session.from_pool
        assert not session.warm
        assert session in orch.sessions.values()
        await turn.result()
        # The pool refilled in the background.
        await anyio.sleep(COLD + 0.5)
        report = orch.pool.report()
        assert report.pinned_sessions == 2
        assert report.hits == 1
        assert report.misses == 0
        assert report.saved_seconds == pytest.approx(COLD)
        # No warm session for another cwd, model or MCP set: a cold start, not a wrong session.
        for kwargs in (
            {"cwd": "/b"},
            {"cwd": "/a", "model": "other"},
            {"cwd": "/a", "mcp_servers": [stdio_server("x")]},
        ):
            t0 = anyio.current_time()
            cold = await orch.open_session(**kwargs)
            assert anyio.current_time() - t0 >= COLD  # (+ MCP handshakes for the last one)
            assert not cold.from_pool
        assert orch.pool.report().pinned_sessions == 2
        assert cold.model is None
        assert (await orch.open_session(cwd="/a", model="other")).model == "other"
    switches = [
        e
        for e in launcher.current.trace.events
        if e.kind == "recv" and e.method == "session/set_config_option"
    ]
    assert [e.message["params"]["value"] for e in switches] == ["other", "other"]  # type: ignore[index]


async def test_the_pool_match_ignores_key_order_but_not_content_of_the_mcp_configuration() -> None:
    orch = Orchestrator(InProcessAgent())
    a = {"name": "a", "command": "x", "args": [], "env": []}
    b = {"name": "b", "command": "y", "args": [], "env": []}
    assert orch._pool_key(None, "/w", [a, b]) == orch._pool_key(None, "/w", [dict(reversed(b.items())), a])
    assert orch._pool_key(None, "/w", [a]) != orch._pool_key(None, "/w", [a, b])
    assert orch._pool_key(None, "/w", [a]) != orch._pool_key(None, "/v", [a])
    assert orch._pool_key("m", "/w", [a]) != orch._pool_key(None, "/w", [a])


async def test_a_cwd_change_invalidates_ready_and_in_flight_warm_sessions() -> None:
    launcher = InProcessAgent(make_profile(session_new=COLD), seed=1)
    async with Orchestrator(launcher) as orch:
        await orch.prewarm(cwd="/a", count=1, wait=True)
        (stale,) = orch.pool.pinned()
        changed_at = anyio.current_time()
        await orch.change_cwd("/a")
        assert stale.closed
        assert closes(launcher) == [stale.id]
        # A refill started at the change is in flight; invalidate again while it is.
        await anyio.sleep(1.0)
        changed_again = anyio.current_time()
        await orch.change_cwd("/a")
        await anyio.sleep(COLD + 0.5)
        (fresh,) = orch.pool.pinned()
        assert fresh.created_at >= changed_again > changed_at
        session = await orch.open_session(cwd="/a")
        assert session is fresh
        assert orch.pool.report().invalidated == 2
        assert len(closes(launcher)) == 2  # the stale ready one and the stale in-flight one


class PoolIgnoresCwdChanges(Orchestrator):
    async def _invalidate_warm(self, cwd: str) -> None:
        pass


async def test_the_cwd_change_test_catches_a_pool_that_ignores_it() -> None:
    launcher = InProcessAgent(make_profile(session_new=COLD), seed=1)
    async with PoolIgnoresCwdChanges(launcher) as orch:
        await orch.prewarm(cwd="/a", count=1, wait=True)
        changed_at = anyio.current_time()
        await orch.change_cwd("/a")
        session = await orch.open_session(cwd="/a")
        assert session.created_at < changed_at  # a warm session made before the change: the bug


async def test_a_moved_project_takes_its_pool_target_along() -> None:
    launcher = InProcessAgent(make_profile(session_new=COLD), seed=1)
    async with Orchestrator(launcher) as orch:
        await orch.prewarm(cwd="/old", count=2, wait=True)
        await orch.change_cwd("/old", "/new")
        assert orch.pool.pinned() == []
        await anyio.sleep(COLD + 0.5)
        assert sorted(s.cwd for s in orch.pool.pinned()) == ["/new", "/new"]
        assert (await orch.open_session(cwd="/new")).from_pool
        assert not (await orch.open_session(cwd="/old")).from_pool


async def test_pool_report_counts_pinned_mcp_processes_and_warm_up_tokens() -> None:
    launcher = InProcessAgent(make_profile(session_new=COLD, chunks=3), seed=2)
    servers = [stdio_server("tools"), stdio_server("docs")]
    async with Orchestrator(launcher) as orch:
        await orch.prewarm(cwd="/a", mcp_servers=servers, count=2, warmup_prompt="read the repo", wait=True)
        report = orch.pool.report()
        agent = launcher.current
        assert report.pinned_sessions == 2
        assert report.pinned_mcp_processes == 4 == agent.mcp.count()
        warm_ids = {s.id for s in orch.pool.pinned()}
        reported = sum(
            e.message["result"]["usage"]["totalTokens"]  # type: ignore[index]
            for e in agent.trace.events
            if e.kind == "send"
            and e.method == "session/prompt"
            and e.session in warm_ids
            and "result" in (e.message or {})
        )
        assert report.warmup_tokens == reported > 0
        assert orch.usage["totalTokens"] == reported
        assert "2 warm sessions" in report.summary()
        assert "4 MCP processes" in report.summary()
        # The warm-up turn's updates never reach the user's first turn.
        session = await orch.open_session(cwd="/a", mcp_servers=servers)
        turn = session.prompt("now the real work")
        delivered = await turn.collect()
        check_delivery(launcher, turn, delivered)
        assert session.usage["totalTokens"] > 0
        assert orch.ledger.for_session(session.label, "turn")["totalTokens"] == turn.usage["totalTokens"]  # type: ignore[index]
        await orch.change_cwd("/a")
        await session.close()
        await anyio.sleep(60)  # (virtual) the pool re-warms for the changed cwd
        after = orch.pool.report()
        # The changed cwd's warm sessions were replaced, the closed one's servers are gone: every
        # MCP process left belongs to a warm session the report counts.
        assert after.invalidated == 2
        assert after.warming == 0
        assert agent.mcp.count() == after.pinned_mcp_processes == 2 * after.pinned_sessions


# -- 6. MCP accounting, sharing, no leak on close ----------------------------------------------------------


async def test_each_session_runs_its_own_stdio_mcp_servers_and_close_stops_them() -> None:
    launcher = InProcessAgent(make_profile(session_new=1.0), seed=3)
    servers = [stdio_server("tools"), stdio_server("docs")]
    async with Orchestrator(launcher) as orch:
        sessions = await open_many(orch, 3, mcp_servers=servers)
        agent = launcher.current
        report = orch.mcp_report()
        assert report.stdio_processes == 6 == agent.mcp.count()
        for s in sessions:
            assert s.mcp_processes == 2 == agent.mcp.count(s.id)
        await sessions[0].close()
        assert agent.mcp.count() == 4
        assert orch.mcp_report().stdio_processes == 4
        for s in sessions[1:]:
            await s.close()
        assert agent.mcp.count() == 0
        assert orch.mcp_report().total == 0
        assert orch.unclosed == []


class LeaksMcpOnClose(Orchestrator):
    async def _close_at_agent(self, session: Session) -> None:
        pass


async def test_the_close_test_catches_a_client_that_never_closes_sessions_at_the_agent() -> None:
    launcher = InProcessAgent(make_profile(session_new=1.0), seed=3)
    async with LeaksMcpOnClose(launcher) as orch:
        (session,) = await open_many(orch, 1, mcp_servers=[stdio_server("tools")])
        await session.close()
        assert launcher.current.mcp.count() == 1  # still running: the leak the test looks for


def _http_servers() -> list[psutil.Process]:
    found = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if "http.server" in proc.cmdline() and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.NoSuchProcess:
            pass
    return found


# A real HTTP server process stands in for an HTTP MCP server: the simulated agent only connects
# http entries by URL, and what is counted here is processes.
HTTP = SharedHttpServer("docs", [sys.executable, "-m", "http.server", "{port}", "--bind", "127.0.0.1"])


@pytest.mark.parametrize(("policy", "expected"), [("share_http", 1), ("per_session", 3)])
async def test_http_mcp_servers_are_shared_or_per_session_by_policy_and_never_leak(
    policy: Any, expected: int
) -> None:
    launcher = InProcessAgent(make_profile(session_new=1.0), seed=3)
    async with Orchestrator(launcher, mcp_sharing=policy) as orch:
        sessions = await open_many(orch, 3, mcp_servers=[HTTP, stdio_server("tools")])
        assert len(_http_servers()) == expected
        assert orch.mcp_report().managed == {"docs": expected}
        assert orch.mcp_report().stdio_processes == 3 == launcher.current.mcp.count()
        urls = {next(m["url"] for m in s.mcp_servers if m.get("type") == "http") for s in sessions}
        assert len(urls) == expected
        connects = [e for e in launcher.current.trace.events if e.kind == "connect"]
        assert len(connects) >= 1
        await sessions[0].close()
        assert len(_http_servers()) == expected - (0 if policy == "share_http" else 1)
        for s in sessions[1:]:
            await s.close()
        assert _http_servers() == []
        assert orch.mcp_report().total == 0


async def test_mcp_failures_never_break_a_session_and_nothing_is_left_after_close() -> None:
    faults = [
        {"kind": "mcp_spawn_failure", "session": 0, "server": "docs"},
        {"kind": "mcp_child_crash", "session": 1, "server": "tools", "at": 3.0},
    ]
    launcher = InProcessAgent(make_profile(session_new=1.0, chunks=3, agent={"faults": faults}), seed=3)
    servers = [stdio_server("tools"), stdio_server("docs"), stdio_server("slow", "--fail-at-start")]
    async with Orchestrator(launcher) as orch:
        a, b = [await orch.open_session(cwd="/w", mcp_servers=servers) for _ in range(2)]
        agent = launcher.current
        assert agent.mcp.count(a.id) == 1  # docs failed by the fault, slow failed at start
        await anyio.sleep(3.0)
        assert agent.mcp.count(b.id) == 1  # tools crashed
        for s in (a, b):
            turn = s.prompt("still works")
            check_delivery(launcher, turn, await turn.collect())
            assert turn.stop_reason == "end_turn"
        assert orch.mcp_report().stdio_processes == 6  # what the configuration asks for
        await a.close()
        await b.close()
        assert agent.mcp.count() == 0
    failed = sorted(e.detail["name"] for e in agent.trace.events if e.kind == "mcp_failed")  # type: ignore[index]
    assert failed == ["docs", "slow", "slow"]


async def test_a_conversation_opened_while_its_warm_session_is_still_warming_waits_for_it() -> None:
    launcher = InProcessAgent(make_profile(session_new=COLD), seed=1)
    async with Orchestrator(launcher) as orch:
        await orch.prewarm(cwd="/a", count=1)
        await anyio.sleep(3.0)
        t0 = anyio.current_time()
        first, second = await open_many(orch, 2, cwd="/a")
        # One waited 1 s for the warm-up already under way; the other made its own (4 s, cold).
        assert anyio.current_time() - t0 == pytest.approx(COLD)
        assert [first.from_pool, second.from_pool].count(True) == 1
        report = orch.pool.report()
        assert (report.hits, report.waited, report.misses) == (0, 1, 1)
        assert report.saved_seconds == pytest.approx(COLD - 1.0)
