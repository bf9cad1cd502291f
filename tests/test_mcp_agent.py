"""The simulated agent holds real MCP children per session: in process (virtual time) and over stdio.

A bare JSON-RPC client (``acp_sim.wire.Connection``) drives the agent, so these tests depend on the
agent and the wire only.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from typing import Any

import anyio
import pytest

from acp_sim import proctree
from acp_sim.agent import InProcessAgent, SimAgent
from acp_sim.errors import ConnectionClosed
from acp_sim.faults import McpChildCrash, McpSpawnFailure
from acp_sim.profile import load_profile_data
from acp_sim.store import SessionStore
from acp_sim.wire import Connection
from tests.conftest import AGENT_CMD

pytestmark = pytest.mark.anyio
real_time = pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])

SERVER = [sys.executable, "-m", "acp_sim", "mcp-server"]
# session/new costs exactly 1 s of virtual time, so MCP times below are exact.
PROFILE = load_profile_data({"models": {"default": {"session_new_cold": 1.0, "session_new_warm": 1.0}}})
INIT = {"protocolVersion": 1, "clientCapabilities": {}}
FAST_AGENT = [*AGENT_CMD, "--session-new-latency", "0.05"]
# Real seconds a process may take to start or to go on a loaded machine (a bound, not a timing).
SETTLE = 60.0


async def until(predicate: Callable[[], bool]) -> None:
    """Poll (real time) without blocking the event loop, so the connection keeps running."""
    with anyio.fail_after(SETTLE):
        while not predicate():  # noqa: ASYNC110 (the OS's process table has no event to wait on)
            await anyio.sleep(0.05)


def stdio(name: str, *options: str) -> dict[str, Any]:
    return {"name": name, "command": SERVER[0], "args": [*SERVER[1:], *options], "env": []}


@asynccontextmanager
async def in_process(agent: SimAgent) -> AsyncIterator[Connection]:
    async with agent.running() as stream, Connection(stream, stream, peer="agent") as conn:
        await conn.request("initialize", INIT)
        yield conn


async def opening(conn: Connection, servers: list[dict[str, Any]]) -> None:
    """A session/new the agent will not live to answer."""
    with suppress(ConnectionClosed):
        await new_session(conn, servers)


async def new_session(conn: Connection, servers: list[dict[str, Any]]) -> str:
    result = await conn.request("session/new", {"cwd": "/workspace", "mcpServers": servers})
    session_id = result["sessionId"]
    assert isinstance(session_id, str)
    return session_id


async def test_three_sessions_with_two_servers_hold_six_processes_until_the_agent_stops() -> None:
    agent = SimAgent(PROFILE, seed=3)
    async with in_process(agent) as conn:
        ids = [await new_session(conn, [stdio("a"), stdio("b")]) for _ in range(3)]
        assert agent.mcp.count() == 6
        assert [agent.mcp.count(i) for i in ids] == [2, 2, 2]
        # The OS's process table can lag a freshly exec'd child on a loaded machine: poll it in real
        # time (a blocking, bounded poll: under the virtual clock an async sleep would not wait).
        assert proctree.wait_for(lambda: len(proctree.mcp_servers()) == 6, timeout=30)
        assert {p.pid for p in proctree.mcp_servers()} == set(agent.mcp.pids())
        pids = agent.mcp.pids()
        # Every child was spawned, and connected, before its session/new was answered.
        for session_id in ids:
            answered = next(
                e.seq
                for e in agent.trace.events
                if e.kind == "send" and e.method == "session/new" and e.session == session_id
            )
            mine = [
                e for e in agent.trace.events if e.session == session_id and e.kind in ("spawn", "connect")
            ]
            assert len(mine) == 4
            assert all(e.seq < answered for e in mine)
    # Leaving running() is the agent process ending: nothing it started survives it.
    assert agent.mcp.count() == 0
    assert proctree.wait_gone(pids) == []
    reaps = agent.trace.of_kind("reap")
    assert sorted((e.detail or {})["pid"] for e in reaps) == sorted(pids)
    assert {(e.detail or {})["reason"] for e in reaps} == {"agent_exit"}


async def test_an_agent_crash_mid_session_new_reaps_children_still_starting() -> None:
    agent = SimAgent(PROFILE, seed=3)
    with anyio.move_on_after(5) as crash:  # the hung server keeps session/new busy for 30 s
        async with in_process(agent) as conn:
            await new_session(conn, [stdio("h", "--hang"), stdio("ok")])
    assert crash.cancelled_caught
    spawned = [(e.detail or {})["pid"] for e in agent.trace.of_kind("spawn")]
    assert len(spawned) == 2
    assert agent.mcp.count() == 0
    assert proctree.wait_gone(spawned) == []
    assert sorted((e.detail or {})["pid"] for e in agent.trace.of_kind("reap")) == sorted(spawned)


async def test_spawn_failure_and_hang_surface_nowhere_but_the_trace() -> None:
    agent = SimAgent(PROFILE, seed=3)
    async with in_process(agent) as conn:
        start = anyio.current_time()
        session_id = await new_session(
            conn,
            [
                {"name": "missing", "command": "/nonexistent/mcp", "args": [], "env": []},
                stdio("broken", "--fail-at-start"),
                stdio("hung", "--hang"),
                stdio("ok"),
            ],
        )
        # session/new succeeded (no error), after the latency and the 30 s handshake timeout.
        assert anyio.current_time() - start == pytest.approx(31.0, abs=1e-6)
        assert agent.mcp.count(session_id) == 1
        failed = {
            (e.detail or {})["name"]: (e.detail or {})["reason"] for e in agent.trace.of_kind("mcp_failed")
        }
        assert failed == {"missing": "spawn_error", "broken": "exited", "hung": "timeout"}
        assert all(e.session == session_id for e in agent.trace.of_kind("mcp_failed"))


@real_time
async def test_stdio_agent_children_live_in_its_group_and_go_when_it_is_killed() -> None:
    process = await anyio.open_process(FAST_AGENT, start_new_session=True, stderr=None)
    pgid = process.pid
    try:
        assert process.stdout is not None
        assert process.stdin is not None
        async with Connection(process.stdout, process.stdin, peer="agent") as conn:
            with anyio.fail_after(60):
                await conn.request("initialize", INIT)
                for _ in range(3):
                    await new_session(conn, [stdio("a"), stdio("b", "--wrapper")])
            await until(lambda: proctree.count_mcp_servers(process.pid) == 6)
            servers = proctree.mcp_servers(process.pid)
            assert {p.pgid for p in servers} == {pgid}, (
                "every server, grandchildren too, is in the agent's group"
            )
            group = {p.pid for p in proctree.group_members(pgid)}
            assert len(group) == 1 + 6 + 3, "the agent, six servers, three wrappers"
            # The agent crashes: SIGKILL, no chance to clean up. Like the real adapter's children,
            # healthy servers leave by themselves: their stdin (held by the agent) reaches EOF.
            os.kill(process.pid, signal.SIGKILL)
            await process.wait()
        # A server still importing when its agent died reads the EOF once started: a generous bound.
        assert proctree.wait_gone(group, timeout=SETTLE) == []
        assert proctree.group_members(pgid) == []
    finally:
        with suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        await process.aclose()


@real_time
async def test_a_wedged_server_outlives_a_killed_stdio_agent_until_its_group_is_killed() -> None:
    process = await anyio.open_process(FAST_AGENT, start_new_session=True, stderr=None)
    pgid = process.pid
    try:
        assert process.stdout is not None
        assert process.stdin is not None
        async with (
            Connection(process.stdout, process.stdin, peer="agent") as conn,
            anyio.create_task_group() as tg,
        ):
            with anyio.fail_after(60):
                await conn.request("initialize", INIT)
            # session/new waits for the wedged server (30 s); the agent dies before that.
            tg.start_soon(opening, conn, [stdio("wedged", "--hang"), stdio("ok")])
            await until(lambda: proctree.count_mcp_servers(process.pid) == 2)
            (wedged,) = [p for p in proctree.mcp_servers(process.pid) if "--hang" in p.cmdline]
            (ok,) = [p for p in proctree.mcp_servers(process.pid) if "--hang" not in p.cmdline]
            os.kill(process.pid, signal.SIGKILL)
            await process.wait()
            tg.cancel_scope.cancel()
        assert proctree.wait_gone([ok.pid], timeout=SETTLE) == [], "a healthy server leaves at stdin EOF"
        # The wedged one does not: an orphan, out of our tree, alive in the agent's group (row 10).
        assert wedged.pid not in {p.pid for p in proctree.descendants()}
        assert [p.pid for p in proctree.group_members(pgid)] == [wedged.pid]
        # What a launcher must do after its agent dies (SubprocessAgent does): kill the group.
        os.killpg(pgid, signal.SIGKILL)
        assert proctree.wait_gone([wedged.pid]) == []
        assert proctree.group_members(pgid) == []
    finally:
        with suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        await process.aclose()


@real_time
async def test_stdio_agent_reaps_its_children_when_stdin_closes(tmp_path: Any) -> None:
    trace_file = tmp_path / "trace.jsonl"
    process = await anyio.open_process([*FAST_AGENT, "--trace", str(trace_file)], start_new_session=True)
    try:
        assert process.stdout is not None
        assert process.stdin is not None
        async with Connection(process.stdout, process.stdin, peer="agent") as conn:
            with anyio.fail_after(60):
                await conn.request("initialize", INIT)
                await new_session(conn, [stdio("a"), stdio("b")])
            pids = [p.pid for p in proctree.descendants(process.pid)]
            assert len(pids) == 2
        with anyio.fail_after(30):
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            os.killpg(process.pid, signal.SIGKILL)
        await process.aclose()
    assert proctree.wait_gone(pids) == []
    kinds = [line for line in trace_file.read_text().splitlines() if '"kind":"reap"' in line]
    assert len(kinds) == 2


async def test_session_close_reaps_only_that_sessions_children_before_answering() -> None:
    agent = SimAgent(PROFILE, seed=3)
    async with in_process(agent) as conn:
        ids = [await new_session(conn, [stdio("a"), stdio("b")]) for _ in range(3)]
        closing = agent.mcp.pids(ids[0])
        await conn.request("session/close", {"sessionId": ids[0]})
        assert (agent.mcp.count(), agent.mcp.count(ids[0])) == (4, 0)
        assert proctree.wait_gone(closing) == []
        assert len(proctree.mcp_servers()) == 4
        answered = next(e.seq for e in agent.trace.events if e.kind == "send" and e.method == "session/close")
        reaps = [e for e in agent.trace.of_kind("reap") if e.session == ids[0]]
        assert sorted((e.detail or {})["pid"] for e in reaps) == sorted(closing)
        assert all(e.seq < answered for e in reaps), "children are gone when session/close is answered"
        for session_id in ids[1:]:
            await conn.request("session/close", {"sessionId": session_id})
        assert agent.mcp.count() == 0
        assert proctree.wait_for(lambda: proctree.mcp_servers() == [])
        assert {(e.detail or {})["reason"] for e in agent.trace.of_kind("reap")} == {"session_close"}


async def test_resume_of_a_held_session_keeps_its_children_and_load_after_a_restart_spawns_anew() -> None:
    store = SessionStore()
    first = SimAgent(PROFILE, seed=3, store=store)
    async with in_process(first) as conn:
        session_id = await new_session(conn, [stdio("a")])
        (pid,) = first.mcp.pids()
        await conn.request(
            "session/prompt", {"sessionId": session_id, "prompt": [{"type": "text", "text": "x"}]}
        )
        await conn.request(
            "session/resume", {"sessionId": session_id, "cwd": "/workspace", "mcpServers": [stdio("a")]}
        )
        assert first.mcp.pids() == [pid], "claude-agent-acp returns a held session as it is"
        assert len(first.trace.of_kind("spawn")) == 1
    assert proctree.wait_gone([pid]) == []
    second = SimAgent(PROFILE, seed=4, store=store, launch=1)
    async with in_process(second) as conn:
        await conn.request(
            "session/load",
            {"sessionId": session_id, "cwd": "/workspace", "mcpServers": [stdio("a"), stdio("b")]},
        )
        assert second.mcp.count(session_id) == 2
        assert {(e.detail or {})["name"] for e in second.trace.of_kind("spawn")} == {"a", "b"}
        assert all(e.session == session_id for e in second.trace.of_kind("spawn"))
        pids = second.mcp.pids()
    assert proctree.wait_gone(pids) == []


async def test_in_process_crash_kills_the_children() -> None:
    launcher = InProcessAgent(PROFILE, seed=3)
    async with launcher.launch() as link, Connection(link.receive, link.send, peer="agent") as conn:
        await conn.request("initialize", INIT)
        await new_session(conn, [stdio("a"), stdio("b")])
        pids = launcher.current.mcp.pids()
        assert len(proctree.mcp_servers()) == 2
        launcher.crash()
        assert launcher.current.mcp.count() == 0
        assert proctree.wait_gone(pids) == []
    reaps = launcher.current.trace.of_kind("reap")
    assert {(e.detail or {})["reason"] for e in reaps} == {"agent_exit"}
    assert sorted((e.detail or {})["pid"] for e in reaps) == sorted(pids)


async def test_mcp_faults_through_the_agent() -> None:
    faults = [
        McpSpawnFailure(kind="mcp_spawn_failure", session=1, server="b"),
        McpChildCrash(kind="mcp_child_crash", at=10.0, session=0, server="a"),
    ]
    agent = SimAgent(PROFILE, seed=3, faults=faults)
    async with in_process(agent) as conn:
        s0 = await new_session(conn, [stdio("a"), stdio("b")])
        s1 = await new_session(conn, [stdio("a"), stdio("b")])
        assert (agent.mcp.count(s0), agent.mcp.count(s1)) == (2, 1)
        (failed,) = agent.trace.of_kind("mcp_failed")
        assert failed.session == s1
        assert failed.detail == {
            "name": "b",
            "transport": "stdio",
            "reason": "injected",
            "error": "injected spawn failure",
        }
        await anyio.sleep(20)
        assert (agent.mcp.count(s0), agent.mcp.count(s1)) == (1, 1)
        (crash,) = agent.trace.of_kind("mcp_crash")
        assert (crash.session, crash.t, (crash.detail or {})["name"]) == (s0, 10.0, "a")
