"""Every fault kind, in-process on virtual time (both backends), checked against the trace; the
fault models, the compact syntax, triggers, probability, launches, and byte-identical traces."""

from __future__ import annotations

import contextlib
import itertools
import os
import random
import sys
from pathlib import Path
from typing import Any

import anyio
import psutil
import pytest

from acp_sim.agent import InProcessAgent
from acp_sim.clock import BACKENDS, run
from acp_sim.errors import ConnectionClosed, ProfileError
from acp_sim.faults import FAULT_KINDS, Crash, FaultPlan, parse_fault_spec
from acp_sim.profile import CLAUDE_CODE, AgentProfile, ModelProfile, TurnProfile, load_profile, with_faults
from acp_sim.trace import TraceEvent, chunk_text

from .test_agent_support import connect, schema_problems

pytestmark = pytest.mark.anyio

MCP = [sys.executable, "-m", "acp_sim", "mcp-server"]
SERVERS = [{"name": f"mini{i}", "command": MCP[0], "args": MCP[1:], "env": []} for i in (1, 2)]


def slow(*specs: str, chunks: int = 5, **changes: Any) -> AgentProfile:
    """session/new 1 s, chunks 1 s apart (turn = chunks - 1 seconds), with these faults."""
    turn = TurnProfile(chunk_count=chunks, chunk_interval=1.0, **changes)
    profile = AgentProfile(
        models={"default": ModelProfile(session_new_cold=1.0, session_new_warm=1.0, turn=turn)}
    )
    return with_faults(profile, [parse_fault_spec(s) for s in specs])


def faults(events: list[TraceEvent]) -> list[dict[str, Any]]:
    return [e.detail for e in events if e.kind == "fault" and e.detail is not None]


def after(events: list[TraceEvent], kind: str) -> list[TraceEvent]:
    """Events after the first ``kind`` event."""
    first = next(i for i, e in enumerate(events) if e.kind == kind)
    return events[first + 1 :]


# -- models and syntax -------------------------------------------------------------------------------


def test_every_kind_parses_from_the_compact_syntax() -> None:
    required = {"error_reply": ",method=session/new", "slow_session_new": ",seconds=1", "stall": ",seconds=1"}
    for kind in FAULT_KINDS:
        fault = parse_fault_spec(f"{kind}:after=2{required.get(kind, '')}")
        assert fault.kind == kind
        assert fault.after == 2
    fault = parse_fault_spec('error_reply:method=session/new,message="a, b",data={"x": [1, 2]}')
    expected = {"kind": "error_reply", "method": "session/new", "message": "a, b", "data": {"x": [1, 2]}}
    assert fault.describe() == expected


@pytest.mark.parametrize(
    ("spec", "names"),
    [
        ("crsh:at=1", ["'crsh'"]),
        ("crash:at=-1", ["at.fixed.seconds", "-1"]),
        ("crash:at=1,after=2", ["either 'at' or 'after'"]),
        ("stall:secs=2", ["secs", "seconds", "Field required"]),
        ("crash:at", ["expected KEY=VALUE", "'at'"]),
        ("error_reply:after=1", ["method", "Field required"]),
    ],
)
def test_a_bad_fault_spec_names_the_field_and_value(spec: str, names: list[str]) -> None:
    with pytest.raises(ProfileError) as info:
        parse_fault_spec(spec)
    assert spec in str(info.value)
    for name in names:
        assert name in str(info.value)


def test_faults_load_from_a_profile_file_and_a_typo_names_file_field_value(tmp_path: Path) -> None:
    good = tmp_path / "faulty.yaml"
    good.write_text(
        "faults:\n  - {kind: crash, at: 2.5}\n  - {kind: stall, seconds: 3, after: 2, session: 0}\n"
    )
    assert [f.kind for f in load_profile(good).faults] == ["crash", "stall"]
    bad = tmp_path / "bad.toml"
    bad.write_text('[[faults]]\nkind = "stall"\nseconds = -3\n')
    with pytest.raises(ProfileError) as info:
        load_profile(bad)
    assert str(bad) in str(info.value)
    assert "faults.0.stall.seconds" in str(info.value)
    assert "-3" in str(info.value)


def test_probability_draws_are_seeded() -> None:
    def decisions(seed: int) -> list[bool]:
        plan = FaultPlan(random.Random(seed))
        entries = [plan.add(parse_fault_spec("malformed_line:probability=0.5")) for _ in range(40)]
        return [plan.roll(e) for e in entries if e is not None]

    assert decisions(1) == decisions(1)
    assert decisions(1) != decisions(2)
    assert 5 < sum(decisions(1)) < 35


# -- actions -----------------------------------------------------------------------------------------


async def test_crash_at_a_time_mid_turn_closes_the_streams_at_that_instant() -> None:
    launcher = InProcessAgent(slow("crash:at=3.5"), seed=1)
    async with connect(launcher) as client:
        sid = await client.new_session()
        with pytest.raises(ConnectionClosed):
            await client.prompt(sid)
        assert anyio.current_time() == pytest.approx(3.5)
    events = launcher.current.trace.events
    assert faults(events) == [{"kind": "crash", "at": 3.5}]
    assert [(e.kind, e.detail) for e in after(events, "fault")] == [("exit", {"reason": "crash", "code": 1})]
    assert len(client.texts(sid)) == 3  # chunks at 1.0, 2.0, 3.0
    assert launcher.current.exit_reason == "crash"


async def test_crash_after_the_nth_update_sent_and_a_relaunch_does_not_crash_again() -> None:
    spec = "crash:after=2,direction=send,method=session/update,session=0"
    launcher = InProcessAgent(slow(spec), seed=2)
    async with connect(launcher) as client:
        sid = await client.new_session()
        with pytest.raises(ConnectionClosed):
            await client.prompt(sid)
    assert len(client.texts(sid)) == 2
    events = launcher.current.trace.events
    assert [e.kind for e in after(events, "fault")] == ["exit"]
    assert events[-3].update_kind == "agent_message_chunk"
    async with connect(launcher) as client:  # launch 1: the fault belongs to launch 0
        sid = await client.new_session()
        assert (await client.prompt(sid))["stopReason"] == "end_turn"
    assert faults(launcher.agents[1].trace.events) == []


async def test_a_fault_for_every_launch_fires_again_after_a_relaunch() -> None:
    launcher = InProcessAgent(slow("crash:at=0.5,launch=null"), seed=3)
    for _ in range(2):
        async with connect(launcher) as client:
            with pytest.raises(ConnectionClosed):
                await client.new_session()
    assert [faults(a.trace.events) for a in launcher.agents] == [
        [{"kind": "crash", "launch": None, "at": 0.5}]
    ] * 2


def _children() -> set[int]:
    return {
        p.pid
        for p in psutil.Process(os.getpid()).children(recursive=True)
        if p.status() != psutil.STATUS_ZOMBIE
    }


async def test_crash_kills_every_mcp_child_like_session_close_does() -> None:
    launcher = InProcessAgent(slow(), seed=4)
    before = _children()
    async with connect(launcher) as client:
        for _ in range(3):
            await client.new_session("/w", SERVERS)
        spawned = _children() - before
        assert len(spawned) == 6 == launcher.current.mcp.count()
        launcher.crash()
        with pytest.raises(ConnectionClosed):
            await client.new_session()
    assert _children() - before == set()
    events = launcher.current.trace.events
    reaps = [e.detail for e in events if e.kind == "reap"]
    assert sorted(d["pid"] for d in reaps) == sorted(spawned)  # type: ignore[index]
    assert {d["reason"] for d in reaps} == {"agent_exit"}  # type: ignore[index]
    crash = next(e.seq for e in events if e.kind == "fault")
    assert all(e.seq > crash for e in events if e.kind == "reap")


async def test_hang_stops_everything_but_keeps_the_connection_open() -> None:
    launcher = InProcessAgent(slow("hang:at=2.5"), seed=5)
    async with connect(launcher) as client:
        sid = await client.new_session()
        with anyio.move_on_after(100) as scope:
            await client.prompt(sid)
        assert scope.cancelled_caught
        await client.cancel(sid)  # ignored
        with anyio.move_on_after(10) as scope:
            await client.new_session()
        assert scope.cancelled_caught
        assert not client.c.closed.is_set()
    events = launcher.current.trace.events
    assert faults(events) == [{"kind": "hang", "at": 2.5}]
    assert [e.kind for e in after(events, "fault") if e.kind == "send"] == []
    assert len(client.texts(sid)) == 2


async def test_hang_on_one_prompt_streams_the_turn_then_never_answers_and_wedges_the_session() -> None:
    launcher = InProcessAgent(slow("hang:method=session/prompt,session=0", chunks=2), seed=6)
    async with connect(launcher) as client:
        wedged = await client.new_session()
        other = await client.new_session()
        with anyio.move_on_after(50) as scope:
            await client.prompt(wedged)
        assert scope.cancelled_caught
        with anyio.move_on_after(50) as scope:
            await client.prompt(wedged)  # queued behind the turn that never ends
        assert scope.cancelled_caught
        assert (await client.prompt(other))["stopReason"] == "end_turn"
    assert len(client.texts(wedged)) == 2
    assert faults(launcher.current.trace.events) == [
        {"kind": "hang", "method": "session/prompt", "session": 0, "turn": 1}
    ]


async def test_disconnect_closes_cleanly_and_stops_mcp_children() -> None:
    launcher = InProcessAgent(slow("disconnect:after=1,direction=send,method=session/new"), seed=7)
    async with connect(launcher) as client:
        await client.new_session("/w", SERVERS[:1])
        with pytest.raises(ConnectionClosed):
            await client.new_session()
    events = after(launcher.current.trace.events, "fault")
    assert [e.kind for e in events] == ["reap", "exit"]
    assert events[0].detail["reason"] == "agent_exit"  # type: ignore[index]
    assert events[1].detail == {"reason": "disconnect", "code": 0}
    assert launcher.current.mcp.count() == 0


async def test_malformed_line_reaches_the_client_and_the_connection_lives_on() -> None:
    launcher = InProcessAgent(slow("malformed_line:after=1,direction=send,method=session/new"), seed=8)
    async with connect(launcher) as client:
        sid = await client.new_session()
        assert (await client.prompt(sid))["stopReason"] == "end_turn"
    assert [e.code for e in client.c.protocol_errors] == [-32700]
    assert faults(launcher.current.trace.events) == [
        {"kind": "malformed_line", "after": 1, "direction": "send", "method": "session/new"}
    ]


async def test_foreign_session_update_goes_to_an_id_the_client_never_opened() -> None:
    launcher = InProcessAgent(slow("foreign_session_update:at=1.5"), seed=9)
    async with connect(launcher) as client:
        sid = await client.new_session()
        await client.prompt(sid)
    foreign = {s for s, _ in client.updates} - {sid}
    assert len(foreign) == 1
    (fault,) = faults(launcher.current.trace.events)
    assert fault["session_id"] in foreign
    sent = [e for e in launcher.current.trace.updates(fault["session_id"])]
    assert len(sent) == 1
    assert sent[0].t == 1.5


async def test_mcp_child_crash_kills_one_named_server() -> None:
    launcher = InProcessAgent(slow("mcp_child_crash:at=5,server=mini2,session=1"), seed=10)
    async with connect(launcher) as client:
        a = await client.new_session("/w", SERVERS)
        b = await client.new_session("/w", SERVERS)
        await anyio.sleep(5)
        assert launcher.current.mcp.count(a) == 2
        assert launcher.current.mcp.count(b) == 1
    (fault,) = faults(launcher.current.trace.events)
    assert fault["killed"] == [{"session": b, "server": "mini2"}]
    crashes = [e for e in launcher.current.trace.events if e.kind == "mcp_crash"]
    assert [(e.session, e.detail["name"]) for e in crashes] == [(b, "mini2")]  # type: ignore[index]


# -- behaviours --------------------------------------------------------------------------------------


async def test_error_reply_answers_the_nth_request_with_the_given_error() -> None:
    launcher = InProcessAgent(
        slow('error_reply:method=session/new,after=2,code=-32000,message=overloaded,data={"retry": 1}'),
        seed=11,
    )
    async with connect(launcher) as client:
        first = await client.new_session()
        error = await client.error_of("session/new", {"cwd": "/w", "mcpServers": []})
        third = await client.new_session()
    assert error == {"code": -32000, "message": "overloaded", "data": {"retry": 1}}
    assert len(launcher.current.sessions) == 2
    assert {first, third} == set(launcher.current.sessions)
    assert faults(launcher.current.trace.events)[0]["kind"] == "error_reply"


async def test_error_reply_on_a_prompt_keeps_turn_numbers_in_step_with_the_trace() -> None:
    launcher = InProcessAgent(slow("error_reply:method=session/prompt,after=1", chunks=2), seed=12)
    async with connect(launcher) as client:
        sid = await client.new_session()
        error = await client.error_of("session/prompt", {"sessionId": sid, "prompt": []})
        await client.prompt(sid)
    assert error == {"code": -32603, "message": "Internal error"}
    trace = launcher.current.trace
    assert {e.turn for e in trace.updates(sid) if e.update_kind == "agent_message_chunk"} == {2}
    assert client.texts(sid)[0].startswith(f"[{sid[:8]} t2 c0]")


async def test_stall_pauses_before_the_next_chunk() -> None:
    launcher = InProcessAgent(slow("stall:seconds=3,after=2,session=0"), seed=13)
    async with connect(launcher) as client:
        sid = await client.new_session()
        await client.prompt(sid)
    trace = launcher.current.trace
    times = [e.t for e in trace.updates(sid) if e.update_kind == "agent_message_chunk"]
    assert [round(b - a, 6) for a, b in itertools.pairwise(times)] == [1.0, 4.0, 1.0, 1.0]
    assert faults(trace.events) == [{"kind": "stall", "seconds": 3.0, "turn": 1, "chunk": 2}]


async def test_slow_session_new_delays_only_the_chosen_call() -> None:
    launcher = InProcessAgent(slow("slow_session_new:seconds=5,after=2"), seed=14)
    async with connect(launcher) as client:
        times = []
        for _ in range(3):
            start = anyio.current_time()
            await client.new_session()
            times.append(round(anyio.current_time() - start, 6))
    assert times == [1.0, 6.0, 1.0]
    assert faults(launcher.current.trace.events)[0] == {
        "kind": "slow_session_new",
        "after": 2,
        "seconds": 5.0,
    }


async def test_mcp_spawn_failure_fails_the_named_server_silently() -> None:
    launcher = InProcessAgent(slow("mcp_spawn_failure:server=mini1"), seed=15)
    async with connect(launcher) as client:
        sid = await client.new_session("/w", SERVERS)
        assert launcher.current.mcp.count(sid) == 1
    events = launcher.current.trace.events
    assert faults(events) == [{"kind": "mcp_spawn_failure", "server": "mini1", "servers": ["mini1"]}]
    failed = [e.detail for e in events if e.kind == "mcp_failed"]
    assert [(d["name"], d["reason"]) for d in failed] == [("mini1", "injected")]  # type: ignore[index]
    assert [e.detail["name"] for e in events if e.kind == "spawn"] == ["mini2"]  # type: ignore[index]


async def test_ignore_cancel_lets_the_turn_run_to_end_turn() -> None:
    launcher = InProcessAgent(slow("ignore_cancel"), seed=16)
    async with connect(launcher) as client:
        sid = await client.new_session()
        result = await client.prompt_and_cancel(sid, 2)
    assert result["stopReason"] == "end_turn"
    assert "usage" in result
    assert len(client.texts(sid)) == 5
    assert faults(launcher.current.trace.events) == [{"kind": "ignore_cancel", "turn": 1}]


@pytest.mark.parametrize(("spec", "expected"), [
    ("wrong_stop_reason", {"stopReason": "end_turn"}),
    ("wrong_stop_reason:method=session/prompt,stop_reason=max_tokens", "max_tokens"),
])  # fmt: skip
async def test_wrong_stop_reason(spec: str, expected: Any) -> None:
    launcher = InProcessAgent(slow(spec), seed=17)
    async with connect(launcher) as client:
        sid = await client.new_session()
        result = await (client.prompt(sid) if expected == "max_tokens" else client.prompt_and_cancel(sid, 2))
    if expected == "max_tokens":
        assert result["stopReason"] == "max_tokens"
        assert len(client.texts(sid)) == 5
    else:
        assert result == expected
        assert len(client.texts(sid)) == 2
    assert faults(launcher.current.trace.events)[0]["kind"] == "wrong_stop_reason"


async def test_updates_after_response_send_a_tail_after_the_prompt_answer() -> None:
    launcher = InProcessAgent(slow("updates_after_response:count=2,interval=0.5", chunks=3), seed=18)
    async with connect(launcher) as client:
        sid = await client.new_session()
        await client.prompt(sid)
        await anyio.sleep(2)
    trace = launcher.current.trace
    response = next(e for e in trace.events if e.kind == "send" and e.method == "session/prompt")
    tail = [e for e in trace.updates(sid) if e.seq > response.seq]
    assert [chunk_text(e).split("]")[0] for e in tail] == [f"[{sid[:8]} t1 c3", f"[{sid[:8]} t1 c4"]  # type: ignore[union-attr]
    assert [round(e.t - response.t, 6) for e in tail] == [0.5, 1.0]
    assert len(client.texts(sid)) == 5


async def test_empty_turn_ends_end_turn_without_a_chunk() -> None:
    launcher = InProcessAgent(slow("empty_turn:after=2"), seed=19)
    async with connect(launcher) as client:
        sid = await client.new_session()
        await client.prompt(sid)
        start = anyio.current_time()
        result = await client.prompt(sid)
        assert anyio.current_time() == start
    assert result["stopReason"] == "end_turn"
    assert result["usage"]["outputTokens"] == 0
    assert [e.update_kind for e in launcher.current.trace.updates(sid, 2)] == ["usage_update"]
    assert faults(launcher.current.trace.events) == [{"kind": "empty_turn", "after": 2, "turn": 2}]


async def test_inject_at_run_time_with_the_compact_syntax() -> None:
    launcher = InProcessAgent(slow(), seed=20)
    async with connect(launcher) as client:
        sid = await client.new_session()
        launcher.inject("crash:after=3,direction=send,method=session/update")
        with pytest.raises(ConnectionClosed):
            await client.prompt(sid)
    assert len(client.texts(sid)) == 3
    assert faults(launcher.current.trace.events)[0]["kind"] == "crash"


# -- ground truth ------------------------------------------------------------------------------------

FAULTY = [
    "stall:seconds=2,after=3,session=1",
    "error_reply:method=session/prompt,after=2",
    "foreign_session_update:at=7",
    "malformed_line:at=8.5",
    "one_turn_behind",
    "updates_after_response:session=2,count=2",
    "slow_session_new:seconds=1.5,after=2",
    "crash:at=40",
]


# The other fault kinds, on sessions with an MCP server (two kinds act on MCP children); the
# hung prompt is released by the disconnect at 40 s, which ends the run like the crash above.
FAULTY_MORE = [
    "ignore_cancel",
    "wrong_stop_reason:method=session/prompt,session=1",
    "empty_turn:after=3",
    "early_session_updates:session=2",
    "mcp_spawn_failure:after=2",
    "mcp_child_crash:at=9",
    "hang:method=session/prompt,session=1,after=1",
    "disconnect:at=40",
]
MCP = [{"name": "tools", "command": sys.executable, "args": ["-m", "acp_sim", "mcp-server"], "env": []}]


def faulty_trace(seed: int, backend: str, specs: list[str] = FAULTY, mcp: list[Any] | None = None) -> str:
    profile = with_faults(CLAUDE_CODE, [parse_fault_spec(s) for s in specs])

    async def main() -> str:
        launcher = InProcessAgent(profile, seed=seed)
        async with connect(launcher) as client:
            sids: list[str] = []
            async with anyio.create_task_group() as tg:
                for _ in range(3):
                    tg.start_soon(lambda: _new(client, sids, mcp))
            ended = False
            try:
                await _rounds(client, sids)
            except* ConnectionClosed:  # the crash (or disconnect) at 40 s, maybe inside a task group
                ended = True
            assert ended
        events = launcher.current.trace.events
        assert schema_problems(events) == []
        assert {d["kind"] for d in faults(events)} == {f.split(":")[0] for f in specs}
        return launcher.current.trace.to_jsonl(stable=True)  # MCP children's pids vary

    return run(main, backend=backend)  # type: ignore[arg-type]


async def _rounds(client: Any, sids: list[str]) -> None:
    for round_ in range(4):
        async with anyio.create_task_group() as tg:
            for sid in sids:
                tg.start_soon(_prompt_ignoring_errors, client, sid, f"round {round_}")
            await anyio.sleep(0.6)
            for sid in sids:  # every running turn gets a cancel (the cancel faults need one)
                await client.cancel(sid)
    await client.prompt(sids[1])
    await anyio.sleep(60)
    await client.new_session()


async def _new(client: Any, sids: list[str], mcp: list[Any] | None = None) -> None:
    with contextlib.suppress(Exception):  # a session/new failed by mcp_spawn_failure
        sids.append(await client.new_session(mcp_servers=mcp))


async def _prompt_ignoring_errors(client: Any, sid: str, text: str) -> None:
    with contextlib.suppress(Exception):
        await client.prompt(sid, text)


@pytest.mark.parametrize("backend", BACKENDS)
def test_same_seed_profile_and_actions_give_a_byte_identical_trace_with_faults(backend: str) -> None:
    first = faulty_trace(21, backend)
    assert first == faulty_trace(21, backend)
    assert first != faulty_trace(22, backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_other_fault_kinds_are_deterministic_too(backend: str) -> None:
    first = faulty_trace(21, backend, FAULTY_MORE, MCP)
    assert first == faulty_trace(21, backend, FAULTY_MORE, MCP)
    assert first != faulty_trace(22, backend, FAULTY_MORE, MCP)
    # Every kind is covered by one of the two runs.
    covered = {s.split(":")[0] for s in FAULTY + FAULTY_MORE}
    assert covered == set(FAULT_KINDS)


def test_crash_fault_model_defaults() -> None:
    assert Crash(kind="crash").describe() == {"kind": "crash"}
    assert Crash(kind="crash", code=3).describe(at=1.0) == {"kind": "crash", "code": 3, "at": 1.0}
