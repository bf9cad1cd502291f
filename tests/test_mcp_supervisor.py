"""McpSupervisor on virtual time: real child processes, modelled handshakes, every event traced.

The children are real (counted with psutil through acp_sim.proctree); nothing here awaits their
pipes, so the virtual clock stays exact: every time asserted below is exact.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from acp import schema

from acp_sim import clock, proctree
from acp_sim.agent.mcp import NONDETERMINISTIC_DETAIL_KEYS, McpSettings, McpSupervisor
from acp_sim.clock import BACKENDS, Backend, SimClock, make_rng
from acp_sim.distributions import Fixed, Uniform
from acp_sim.trace import Trace, TraceEvent

pytestmark = pytest.mark.anyio

SERVER = [sys.executable, "-m", "acp_sim", "mcp-server"]
HANDSHAKE = 0.5
SETTINGS = McpSettings(handshake=Fixed(seconds=HANDSHAKE), handshake_timeout=30.0)


def stdio(name: str, *options: str) -> dict[str, Any]:
    return {"name": name, "command": SERVER[0], "args": [*SERVER[1:], *options], "env": []}


def http(name: str, url: str, kind: str = "http") -> dict[str, Any]:
    return {"type": kind, "name": name, "url": url, "headers": []}


class Sim:
    def __init__(self, seed: int, settings: McpSettings) -> None:
        self.clock = SimClock()
        self.trace = Trace(self.clock.now)
        self.mcp = McpSupervisor(self.trace, self.clock, make_rng(seed), settings=settings)

    def events(self, *kinds: str) -> list[TraceEvent]:
        return [e for e in self.trace.events if e.kind in kinds]

    def details(self, kind: str) -> list[dict[str, Any]]:
        return [e.detail or {} for e in self.events(kind)]


@asynccontextmanager
async def simulation(seed: int = 0, settings: McpSettings = SETTINGS) -> AsyncIterator[Sim]:
    sim = Sim(seed, settings)
    async with sim.mcp.running():
        yield sim


def masked(trace: Trace) -> str:
    """The trace without the values that are real pids (the only nondeterministic part)."""
    lines = []
    for event in trace.events:
        data = json.loads(event.to_json())
        for key in NONDETERMINISTIC_DETAIL_KEYS:
            data.get("detail", {}).pop(key, None)
        lines.append(json.dumps(data))
    return "\n".join(lines)


async def test_three_sessions_of_two_servers_are_six_real_processes_then_none() -> None:
    async with simulation() as sim:
        async with anyio.create_task_group() as tg:
            for i in range(3):
                tg.start_soon(sim.mcp.start_session, f"s{i}", [stdio("a"), stdio("b")])
        assert sim.clock.now() == HANDSHAKE, "handshakes run in parallel"
        assert sim.mcp.count() == 6
        assert [sim.mcp.count(f"s{i}") for i in range(3)] == [2, 2, 2]
        real = proctree.mcp_servers()
        assert len(real) == 6
        assert {p.pid for p in real} == set(sim.mcp.pids())
        assert {p.ppid for p in real} == {os.getpid()}, "children of the agent's process"
        assert {p.pgid for p in real} == {os.getpgid(0)}, "in the agent's process group"
        pids = sim.mcp.pids()
        for i in range(3):
            sim.mcp.stop_session(f"s{i}")
        assert sim.mcp.count() == 0
        assert proctree.wait_gone(pids) == []
        assert proctree.count_mcp_servers() == 0
        reaps = sim.details("reap")
        assert sorted(d["pid"] for d in reaps) == sorted(pids)
        assert {d["reason"] for d in reaps} == {"session_close"}


async def test_an_agent_crash_reaps_every_child() -> None:
    sim = Sim(0, SETTINGS)
    with anyio.CancelScope() as crash:
        async with sim.mcp.running():
            for i in range(3):
                await sim.mcp.start_session(f"s{i}", [stdio("a"), stdio("b")])
            pids = sim.mcp.pids()
            assert proctree.count_mcp_servers() == 6
            crash.cancel()  # the agent dies mid-flight: its running() scope unwinds
            await anyio.sleep(1)
    assert crash.cancelled_caught
    assert sim.mcp.count() == 0
    assert proctree.wait_gone(pids) == []
    assert sorted(d["pid"] for d in sim.details("reap")) == sorted(pids)
    assert {d["reason"] for d in sim.details("reap")} == {"agent_exit"}
    sim.mcp.stop_all()  # idempotent
    assert len(sim.events("reap")) == 6


async def test_trace_records_spawn_connect_and_reap_with_pid_and_command() -> None:
    async with simulation() as sim:
        (state,) = await sim.mcp.start_session("s", [stdio("tools", "--name", "t")])
        assert state.status == "connected"
        assert state.tools == ("sim_echo", "sim_add")
        await anyio.sleep(2)
        sim.mcp.stop_session("s")
    spawn, connect, reap = sim.trace.events
    command = [*SERVER, "--name", "t"]
    assert (spawn.kind, spawn.t, spawn.session) == ("spawn", 0.0, "s")
    assert spawn.detail == {"name": "tools", "transport": "stdio", "pid": state.pid, "command": command}
    assert (connect.kind, connect.t) == ("connect", HANDSHAKE)
    assert connect.detail == {"name": "tools", "transport": "stdio", "pid": state.pid}
    assert (reap.kind, reap.t) == ("reap", HANDSHAKE + 2)
    assert reap.detail == {"name": "tools", "pid": state.pid, "reason": "session_close"}
    assert state.status == "stopped"
    assert not state.held


async def test_a_command_that_cannot_start_fails_at_once_and_the_session_goes_on() -> None:
    async with simulation() as sim:
        states = await sim.mcp.start_session(
            "s", [{"name": "nope", "command": "/nonexistent/mcp", "args": [], "env": []}, stdio("ok")]
        )
        assert [s.status for s in states] == ["failed", "connected"]
        assert "No such file" in (states[0].error or "")
        (failed,) = sim.events("mcp_failed")
        assert failed.t == 0.0
        assert failed.detail == {
            "name": "nope",
            "transport": "stdio",
            "reason": "spawn_error",
            "error": states[0].error,
        }
        assert [d["name"] for d in sim.details("spawn")] == ["ok"], "nothing was spawned for it"
        assert sim.mcp.count() == 1


async def test_fail_at_start_is_spawned_fails_and_is_reaped() -> None:
    async with simulation() as sim:
        (state,) = await sim.mcp.start_session("s", [stdio("bad", "--fail-at-start")])
        assert sim.clock.now() == HANDSHAKE
        assert state.status == "failed"
        assert [e.kind for e in sim.trace.events] == ["spawn", "mcp_failed", "reap"]
        _, failed, reap = sim.trace.events
        assert failed.detail == {
            "name": "bad",
            "transport": "stdio",
            "reason": "exited",
            "error": "exited with code 1 at start",
            "pid": state.pid,
        }
        assert reap.detail == {"name": "bad", "pid": state.pid, "reason": "failed"}
        assert sim.mcp.count() == 0
        assert state.pid is not None
        assert proctree.wait_gone([state.pid]) == []


async def test_a_hung_server_blocks_for_the_timeout_then_the_session_succeeds_without_it() -> None:
    async with simulation() as sim:
        hung, ok = await sim.mcp.start_session("s", [stdio("hung", "--hang"), stdio("ok")])
        # Claude Code: ~30 s blocked, the server killed, session/new then succeeds, no error.
        assert sim.clock.now() == 30.0
        assert (hung.status, ok.status) == ("failed", "connected")
        kinds = [(e.kind, (e.detail or {})["name"], e.t) for e in sim.trace.events]
        assert kinds == [
            ("spawn", "hung", 0.0),
            ("spawn", "ok", 0.0),
            ("connect", "ok", HANDSHAKE),
            ("mcp_failed", "hung", 30.0),
            ("reap", "hung", 30.0),
        ]
        assert sim.details("mcp_failed")[0]["reason"] == "timeout"
        assert sim.mcp.count() == 1
        assert hung.pid is not None
        assert proctree.wait_gone([hung.pid]) == []


async def test_handshake_timeout_comes_from_the_settings() -> None:
    settings = McpSettings(handshake=Fixed(seconds=0.1), handshake_timeout=192.0)  # row 7's dead server
    async with simulation(settings=settings) as sim:
        await sim.mcp.start_session("s", [stdio("hung", "--hang")])
        assert sim.clock.now() == 192.0
        assert sim.details("mcp_failed")[0]["error"] == "no handshake answer in 192 s"


async def test_crash_after_connects_then_crashes_on_the_virtual_clock() -> None:
    async with simulation() as sim:
        await anyio.sleep(1)
        (state,) = await sim.mcp.start_session("s", [stdio("flaky", "--crash-after", "5")])
        assert state.status == "connected"
        assert sim.mcp.count() == 1
        await anyio.sleep(10)
        assert state.status == "crashed"
        assert sim.mcp.count() == 0
        assert [(e.kind, e.t) for e in sim.trace.events] == [
            ("spawn", 1.0),
            ("connect", 1.0 + HANDSHAKE),
            ("mcp_crash", 6.0),  # 5 s after its spawn, on the virtual clock
            ("reap", 6.0),
        ]
        assert sim.details("mcp_crash") == [{"name": "flaky", "pid": state.pid, "reason": "crash_after"}]
        assert sim.details("reap")[0]["reason"] == "crash"
        assert state.pid is not None
        assert proctree.wait_gone([state.pid]) == []


async def test_crash_before_the_handshake_ends_is_a_start_failure() -> None:
    async with simulation() as sim:
        (state,) = await sim.mcp.start_session("s", [stdio("early", "--crash-after", "0.2")])
        assert sim.clock.now() == 0.2, "session/new does not wait for a server that already died"
        assert state.status == "failed"
        assert [(e.kind, e.t) for e in sim.trace.events] == [
            ("spawn", 0.0),
            ("mcp_failed", 0.2),
            ("reap", 0.2),
        ]
        assert sim.details("mcp_failed")[0]["reason"] == "exited"


async def test_closing_the_session_cancels_a_pending_crash() -> None:
    async with simulation() as sim:
        await sim.mcp.start_session("s", [stdio("flaky", "--crash-after", "5")])
        sim.mcp.stop_session("s")
        await anyio.sleep(10)
        assert [e.kind for e in sim.trace.events] == ["spawn", "connect", "reap"]


async def test_crash_child_fault_kills_one_server_of_one_session() -> None:
    async with simulation() as sim:
        await sim.mcp.start_session("s1", [stdio("a"), stdio("b")])
        await sim.mcp.start_session("s2", [stdio("a"), stdio("b")])
        pids = sim.mcp.pids()
        (victim,) = [s for s in sim.mcp.states("s1") if s.name == "b"]
        assert sim.mcp.crash_child("s1", "b") is True
        assert sim.mcp.crash_child("s1", "b") is False, "already dead"
        assert sim.mcp.crash_child("s1", "zzz") is False
        assert (sim.mcp.count("s1"), sim.mcp.count("s2")) == (1, 2)
        crash, reap = sim.events("mcp_crash", "reap")
        assert crash.session == "s1"
        assert crash.detail == {"name": "b", "pid": victim.pid, "reason": "injected"}
        assert reap.detail == {"name": "b", "pid": victim.pid, "reason": "crash"}
        assert sim.mcp.crash_children(name="a") == 2
        assert (sim.mcp.count("s1"), sim.mcp.count("s2")) == (0, 1)
        assert sim.mcp.crash_children() == 1
        assert proctree.wait_gone(pids) == []


async def test_spawn_failure_fault_fails_the_next_matching_servers() -> None:
    async with simulation() as sim:
        sim.mcp.fail_next_spawn()  # any server
        sim.mcp.fail_next_spawn("b")
        states = await sim.mcp.start_session("s1", [stdio("a"), stdio("b")])
        assert [s.status for s in states] == ["failed", "failed"]
        assert sim.clock.now() == 0.0
        sim.mcp.fail_next_spawn("b")
        states = await sim.mcp.start_session("s2", [stdio("a"), stdio("b"), stdio("b2")])
        assert [s.status for s in states] == ["connected", "failed", "connected"]
        states = await sim.mcp.start_session("s3", [stdio("b")])
        assert [s.status for s in states] == ["connected"], "each armed failure fires once"
        failed = sim.details("mcp_failed")
        assert [(d["name"], d["reason"]) for d in failed] == [
            ("a", "injected"),
            ("b", "injected"),
            ("b", "injected"),
        ]
        assert all("pid" not in d for d in failed), "an injected spawn failure starts no process"
        assert [d["name"] for d in sim.details("spawn")] == ["a", "b2", "b"]
        assert sim.mcp.count() == 3


async def test_http_and_sse_servers_connect_without_processes_and_are_shared_by_url() -> None:
    async with simulation() as sim:
        await sim.mcp.start_session(
            "s1", [http("docs", "http://mcp.local/docs"), http("ev", "http://e/sse", "sse")]
        )
        await sim.mcp.start_session("s2", [http("docs", "http://mcp.local/docs")])
        assert sim.clock.now() == 0.0
        assert sim.mcp.count() == 0
        assert proctree.count_mcp_servers() == 0
        assert sim.details("connect") == [
            {"name": "docs", "transport": "http", "url": "http://mcp.local/docs", "shared": False},
            {"name": "ev", "transport": "sse", "url": "http://e/sse", "shared": False},
            {"name": "docs", "transport": "http", "url": "http://mcp.local/docs", "shared": True},
        ]
        assert [s.status for s in sim.mcp.states()] == ["connected"] * 3
        sim.mcp.stop_session("s1")
        assert sim.details("disconnect") == [{"name": "ev", "transport": "sse", "url": "http://e/sse"}]
        sim.mcp.stop_session("s2")
        assert [d["url"] for d in sim.details("disconnect")] == ["http://e/sse", "http://mcp.local/docs"]


async def test_an_acp_transport_entry_is_unsupported_and_fails_silently() -> None:
    async with simulation() as sim:
        (state,) = await sim.mcp.start_session("s", [{"type": "acp", "name": "x", "serverId": "x1"}])
        assert state.status == "failed"
        assert sim.details("mcp_failed") == [
            {"name": "x", "transport": "acp", "reason": "unsupported", "error": "unsupported transport"}
        ]


async def test_starting_a_held_session_again_spawns_nothing() -> None:
    # session/resume and session/load of a session the agent still holds keep its servers.
    async with simulation() as sim:
        first = await sim.mcp.start_session("s", [stdio("a")])
        again = await sim.mcp.start_session("s", [stdio("a"), stdio("b")])
        assert again == first
        assert len(sim.events("spawn")) == 1
        assert sim.mcp.count() == 1


async def test_schema_models_are_accepted_as_well_as_dicts() -> None:
    entry = schema.McpServerStdio(
        name="m", command=SERVER[0], args=SERVER[1:], env=[schema.EnvVariable(name="X", value="1")]
    )
    async with simulation() as sim:
        (state,) = await sim.mcp.start_session("s", [entry])
        assert state.status == "connected"
        assert sim.mcp.count() == 1


async def test_wrapper_grandchildren_are_reaped_with_the_session() -> None:
    async with simulation() as sim:
        await sim.mcp.start_session("s1", [stdio("w", "--wrapper")])
        await sim.mcp.start_session("s2", [stdio("w", "--wrapper")])
        wrappers = sim.mcp.pids()
        assert sim.mcp.count() == 2
        # Blocking real-time wait for the wrappers to start their servers: the loop is blocked too,
        # so the virtual clock does not move meanwhile.
        assert proctree.wait_for(lambda: proctree.count_mcp_servers() == 2)
        before = sim.clock.now()
        servers = proctree.mcp_servers()
        assert {p.ppid for p in servers} == set(wrappers), "grandchildren, one per wrapper"
        tree = [p.pid for p in proctree.descendants()]
        sim.mcp.stop_session("s1")
        sim.mcp.stop_session("s2")
        assert sim.clock.now() == before
        assert proctree.wait_gone(tree) == []
        # Orphans would have left our tree but not our group: none there either.
        assert not {p.pid for p in proctree.group_members(os.getpgid(0))} & set(tree)


async def test_the_clock_never_waits_on_a_child() -> None:
    # Regression guard for the DESIGN.md hazard: had the supervisor awaited a child's pipe, the
    # virtual clock would have jumped to the other task's far timer while it waited.
    async with simulation() as sim, anyio.create_task_group() as tg:
        tg.start_soon(anyio.sleep, 1000)
        await sim.mcp.start_session("s", [stdio("a"), stdio("b"), stdio("h", "--hang")])
        assert sim.clock.now() == 30.0
        tg.cancel_scope.cancel()


async def scenario(seed: int) -> str:
    settings = McpSettings(handshake=Uniform(kind="uniform", low=0.1, high=2.0))
    async with simulation(seed, settings) as sim:
        async with anyio.create_task_group() as tg:
            for i in range(2):
                tg.start_soon(sim.mcp.start_session, f"s{i}", [stdio("a"), stdio("b", "--crash-after", "3")])
        await sim.mcp.start_session("s2", [stdio("f", "--fail-at-start"), http("h", "http://x")])
        await anyio.sleep(5)
        sim.mcp.stop_session("s0")
    return masked(sim.trace)


@pytest.mark.parametrize("backend", BACKENDS)
def test_same_seed_same_trace_but_for_pids(backend: Backend) -> None:
    # Each run on a fresh event loop, as two runs of a simulation are.
    first, second = (clock.run(scenario, 7, backend=backend) for _ in range(2))
    assert first == second
    assert '"mcp_crash"' in first
    assert '"mcp_failed"' in first
    assert clock.run(scenario, 8, backend=backend) != first, "handshake latencies are drawn from the seed"


async def test_abandon_all_leaves_children_running_until_reaped() -> None:
    async with simulation() as sim:
        await sim.mcp.start_session("s", [stdio("a"), stdio("b")])
        pids = sim.mcp.abandon_all()
        assert sorted(pids) == sorted(p.pid for p in proctree.mcp_servers())
        assert sim.mcp.count() == 0
        assert [d["pid"] for d in sim.details("orphan")] == pids
    assert proctree.count_mcp_servers() == 2, "stop_all does not touch what the agent abandoned"
    sim.mcp.reap_orphans()
    assert proctree.wait_gone(pids) == []
    assert sim.events("reap") == []
