"""The orchestrator against the stdio simulated agent: a real process, real pipes, real time.

Small latencies keep these fast; nothing asserts on wall-clock durations. The ground truth is the
trace the agent process writes (``--trace``), read once it has exited.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import anyio
import psutil
import pytest

from acp_sim.orchestrator import Orchestrator, SubprocessAgent, TurnFailed, TurnStream, Update
from acp_sim.trace import TraceEvent, load_jsonl

from .conftest import AGENT_CMD

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])]


def agent(tmp_path: Path, turn: dict[str, Any], *extra: str, session_new: float = 0.05) -> SubprocessAgent:
    profile = {
        "models": {
            "default": {"session_new_cold": session_new, "session_new_warm": session_new, "turn": turn}
        }
    }
    (tmp_path / "profile.json").write_text(json.dumps(profile))
    argv = [
        *AGENT_CMD,
        "--profile",
        str(tmp_path / "profile.json"),
        "--trace",
        str(tmp_path / "trace.jsonl"),
        *extra,
    ]
    return SubprocessAgent(argv)


def trace(tmp_path: Path) -> list[TraceEvent]:
    return load_jsonl((tmp_path / "trace.jsonl").read_text().splitlines())


def sent(events: list[TraceEvent], turn: TurnStream) -> list[dict[str, Any]]:
    return [
        e.message["params"]["update"]  # type: ignore[index]
        for e in events
        if e.kind == "send"
        and e.method == "session/update"
        and e.session == turn.agent_session_id
        and e.turn == turn.wire_turn
    ]


def recv(events: list[TraceEvent], method: str) -> list[str | None]:
    return [e.session for e in events if e.kind == "recv" and e.method == method]


async def test_interleaved_sessions_and_a_cancel_with_late_updates_match_the_trace(tmp_path: Path) -> None:
    launcher = agent(tmp_path, {"chunk_count": 30, "chunk_interval": 0.01, "late_updates_after_cancel": 3})
    with anyio.fail_after(60):
        async with Orchestrator(launcher) as orch:
            sessions = [await orch.open_session(cwd=str(tmp_path)) for _ in range(4)]
            turns = [s.prompt(f"task {s.label}") for s in sessions]
            delivered: dict[str, list[Update]] = {}

            async def consume(turn: TurnStream) -> None:
                got = delivered[turn.session.label] = []
                async for update in turn:
                    got.append(update)
                    if turn.session is sessions[1] and len(got) == 5:
                        await turn.session.cancel()

            async with anyio.create_task_group() as tg:
                for turn in turns:
                    tg.start_soon(consume, turn)
    events = trace(tmp_path)
    assert recv(events, "session/cancel") == [sessions[1].id]
    for turn in turns:
        got = [u.raw for u in delivered[turn.session.label]]
        truth = sent(events, turn)
        if turn is turns[1]:
            assert turn.stop_reason == "cancelled"
            assert got == truth[: len(got)]
            assert len(got) + turn.dropped_late == len(truth)
            assert turn.dropped_late >= 3  # at least the late ones
        else:
            assert turn.stop_reason == "end_turn"
            assert got == truth


async def test_a_hung_prompt_times_out_the_next_reports_the_wedge_and_errors_name_the_session(
    tmp_path: Path,
) -> None:
    launcher = agent(
        tmp_path,
        {"chunk_count": 3, "chunk_interval": 0.01},
        "--fault", "hang:method=session/prompt,session=0",
        "--fault", "error_reply:method=session/prompt,session=1,code=-32603,message=overloaded",
    )  # fmt: skip
    with anyio.fail_after(60):
        async with Orchestrator(launcher, idle_timeout=0.5, cancel_grace=0.5) as orch:
            hung = await orch.open_session(cwd=str(tmp_path))
            refused = await orch.open_session(cwd=str(tmp_path))
            fine = await orch.open_session(cwd=str(tmp_path))
            t_hung, t_refused, t_fine = hung.prompt("a"), refused.prompt("b"), fine.prompt("c")
            with pytest.raises(TurnFailed, match=rf"session {hung.label}.*idle timeout"):
                await t_hung.result()
            with pytest.raises(TurnFailed, match=rf"session {refused.label}.*overloaded"):
                await t_refused.result()
            assert await t_fine.result() == "end_turn"
            with pytest.raises(TurnFailed, match=rf"session {hung.label}.*wedged"):
                await hung.prompt("again").result()
            assert await refused.prompt("again").result() == "end_turn"
    events = trace(tmp_path)
    assert recv(events, "session/cancel") == [hung.id]  # the timeout told the agent to stop


def mcp_children(pid: int) -> list[psutil.Process]:
    found = []
    for proc in psutil.Process(pid).children(recursive=True):
        try:
            if "mcp-server" in proc.cmdline() and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.NoSuchProcess:
            pass
    return found


async def wait_for_count(pid: int, expected: int) -> int:
    """Poll the agent's process tree until it has ``expected`` MCP children (bounded)."""
    with anyio.move_on_after(10):
        while len(mcp_children(pid)) != expected:  # noqa: ASYNC110 - polling another process
            await anyio.sleep(0.05)
    return len(mcp_children(pid))


async def test_each_session_gets_its_own_mcp_processes_and_close_stops_them(tmp_path: Path) -> None:
    server = {"name": "tools", "command": sys.executable, "args": ["-m", "acp_sim", "mcp-server"], "env": []}
    other = {**server, "name": "docs"}
    launcher = agent(tmp_path, {"chunk_count": 2}, "--fault", "mcp_spawn_failure:session=2,server=docs")
    with anyio.fail_after(60):
        async with Orchestrator(launcher) as orch:
            sessions = [
                await orch.open_session(cwd=str(tmp_path), mcp_servers=[server, other]) for _ in range(3)
            ]
            pid = orch.link.pid  # type: ignore[union-attr]
            assert pid is not None
            # The third session's "docs" server failed to start; session/new still succeeded.
            assert await wait_for_count(pid, 5) == 5
            assert orch.mcp_report().stdio_processes == 6  # what the configuration asks for
            assert await sessions[2].prompt("works").result() == "end_turn"
            await sessions[0].close()
            assert await wait_for_count(pid, 3) == 3
            for s in sessions[1:]:
                await s.close()
            assert await wait_for_count(pid, 0) == 0
    assert [e.detail["name"] for e in trace(tmp_path) if e.kind == "mcp_failed"] == ["docs"]  # type: ignore[index]


async def test_a_warm_session_from_the_pool_is_the_one_prompted(tmp_path: Path) -> None:
    launcher = agent(tmp_path, {"chunk_count": 2}, session_new=0.3)
    with anyio.fail_after(60):
        async with Orchestrator(launcher) as orch:
            await orch.prewarm(cwd=str(tmp_path), count=1, wait=True)
            (warm,) = orch.pool.pinned()
            session = await orch.open_session(cwd=str(tmp_path))
            assert session is warm
            assert session.from_pool
            assert await session.prompt("go").result() == "end_turn"
            await orch.change_cwd(str(tmp_path))
    events = trace(tmp_path)
    prompted = recv(events, "session/prompt")
    assert prompted == [warm.id]
    new_answers = [e for e in events if e.kind == "send" and e.method == "session/new"]
    first_prompt = next(e.seq for e in events if e.kind == "recv" and e.method == "session/prompt")
    assert new_answers[0].session == warm.id
    assert new_answers[0].seq < first_prompt
