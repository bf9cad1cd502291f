"""Permission requests and fs/terminal calls go to the handler of the session that asked (item 9)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from acp_sim.agent import InProcessAgent
from acp_sim.orchestrator import ClientHandler, Orchestrator, Session

from .test_orchestrator_support import check_delivery, make_profile, open_many

pytestmark = pytest.mark.anyio


def tool_outcomes(launcher: InProcessAgent, session_id: str) -> list[str]:
    return [
        e.message["params"]["update"]["status"]  # type: ignore[index]
        for e in launcher.current.trace.updates(session_id)
        if e.update_kind == "tool_call_update"
        and e.message["params"]["update"]["status"] in ("completed", "failed")  # type: ignore[index]
    ]


async def test_each_sessions_permission_request_reaches_its_own_handler() -> None:
    profile = make_profile(chunks=3, interval=0.01, tool_calls=[{"permission": True, "after_chunk": 1}])
    launcher = InProcessAgent(profile, seed=5)
    allow, reject = ClientHandler(permission="allow"), ClientHandler(permission="reject")
    async with Orchestrator(launcher) as orch:
        sessions = await open_many(orch, 4)
        for i, s in enumerate(sessions):
            s.handler = allow if i % 2 == 0 else reject
        turns = [s.prompt("go") for s in sessions]
        delivered = [await t.collect() for t in turns]
    for turn, got in zip(turns, delivered, strict=True):
        check_delivery(launcher, turn, got)
    assert {c[2]["sessionId"] for c in allow.calls} == {sessions[0].id, sessions[2].id}
    assert {c[2]["sessionId"] for c in reject.calls} == {sessions[1].id, sessions[3].id}
    assert all(
        c[0] == next(s.label for s in sessions if s.id == c[2]["sessionId"])
        for c in allow.calls + reject.calls
    )
    assert [tool_outcomes(launcher, s.id) for s in sessions] == [
        ["completed"],
        ["failed"],
        ["completed"],
        ["failed"],
    ]


class WaitsForTheUser(ClientHandler):
    """A permission prompt nobody answers (for ``hold``) or that is answered after ``delay`` s."""

    def __init__(self, hold: set[str], delay: float) -> None:
        super().__init__(permission="allow")
        self.hold = hold
        self.delay = delay

    async def request_permission(self, session: Session, params: dict[str, Any]) -> dict[str, Any]:
        if session.label in self.hold:
            await anyio.sleep_forever()
        await anyio.sleep(self.delay)
        return await super().request_permission(session, params)


async def test_cancel_during_a_permission_request_answers_it_cancelled_for_that_session_only() -> None:
    profile = make_profile(chunks=3, interval=0.01, tool_calls=[{"permission": True, "after_chunk": 1}])
    launcher = InProcessAgent(profile, seed=5)
    async with Orchestrator(launcher, handler=WaitsForTheUser({"s1"}, delay=2.0), idle_timeout=1.0) as orch:
        stuck, patient = await open_many(orch, 2)
        t_stuck, t_patient = stuck.prompt("a"), patient.prompt("b")
        await anyio.sleep(1.5)  # past the idle timeout: waiting on our own user is not agent silence
        assert not t_stuck.done
        assert not t_patient.done
        await stuck.cancel()
        assert t_stuck.stop_reason == "cancelled"
        assert await t_patient.result() == "end_turn"
    answers = [
        e.message for e in launcher.current.trace.events
        if e.kind == "recv" and e.method == "session/request_permission" and "result" in (e.message or {})
    ]  # fmt: skip
    outcomes = {a["result"]["outcome"]["outcome"] for a in answers}  # type: ignore[index]
    assert outcomes == {"cancelled", "selected"}
    assert tool_outcomes(launcher, patient.id) == ["completed"]


async def test_fs_calls_read_and_write_inside_the_asking_sessions_cwd(tmp_path: Path) -> None:
    profile = make_profile(
        chunks=1, tool_calls=[{"fs": "write", "path": "out.txt"}, {"fs": "read", "path": "in.txt"}]
    )
    launcher = InProcessAgent(profile, seed=2)
    dirs = [tmp_path / "one", tmp_path / "two"]
    for d in dirs:
        d.mkdir()
        (d / "in.txt").write_text(f"input of {d.name}\n")
    async with Orchestrator(launcher, handler=ClientHandler(fs=True)) as orch:
        sessions = [await orch.open_session(cwd=str(d)) for d in dirs]
        for s in sessions:
            await s.prompt("edit").result()
    for s, d in zip(sessions, dirs, strict=True):
        assert (d / "out.txt").read_text().startswith(f"[{s.id[:8]} t1 tool0]")
    reads = [
        e.message["result"]["content"]  # type: ignore[index]
        for e in launcher.current.trace.events
        if e.kind == "recv" and e.method == "fs/read_text_file" and "result" in (e.message or {})
    ]
    assert reads == ["input of one\n", "input of two\n"]


class FakeTerminals(ClientHandler):
    def __init__(self) -> None:
        super().__init__()
        self.terminal = True

    async def terminal_request(self, session: Session, method: str, params: dict[str, Any]) -> Any:
        if method == "terminal/create":
            return {"terminalId": f"term-{session.label}"}
        if method == "terminal/wait_for_exit":
            return {"exitCode": 0 if session.label == "s1" else 2}
        if method == "terminal/output":
            return {"output": f"ran for {session.label}", "truncated": False}
        return {}


async def test_terminal_calls_are_routed_per_session() -> None:
    profile = make_profile(chunks=1, tool_calls=[{"terminal": "pytest -q"}])
    launcher = InProcessAgent(profile, seed=2)
    handler = FakeTerminals()
    async with Orchestrator(launcher, handler=handler) as orch:
        sessions = await open_many(orch, 2)
        for t in [s.prompt("test") for s in sessions]:
            await t.result()
    for s in sessions:
        mine = [c for c in handler.calls if c[0] == s.label]
        assert [c[1] for c in mine] == [
            "terminal/create",
            "terminal/wait_for_exit",
            "terminal/output",
            "terminal/release",
        ]
        assert {c[2]["sessionId"] for c in mine} == {s.id}
        assert all(c[2].get("terminalId", f"term-{s.label}") == f"term-{s.label}" for c in mine)
    assert [tool_outcomes(launcher, s.id) for s in sessions] == [["completed"], ["failed"]]


async def test_a_request_naming_no_open_session_is_refused_and_counted() -> None:
    launcher = InProcessAgent(make_profile(chunks=1), seed=2)
    async with Orchestrator(launcher) as orch:
        await orch.open_session(cwd="/w")
        with pytest.raises(Exception, match="names no open session"):
            orch._route_client_request("session/request_permission", {"sessionId": "nope"})
        assert orch.unrouted.requests == [("session/request_permission", {"sessionId": "nope"})]
