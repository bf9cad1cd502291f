"""Updates before the ``session/new`` response (issue 17 item 3): with
``updates_before_new_response`` (or the ``early_session_updates`` fault) the agent sends the new
session's ``available_commands_update`` and ``current_mode_update`` before it answers session/new
(in process on both backends, and over stdio); a bridge that drops updates for session ids it does
not know yet is caught by the state machine; a correct one and the reference orchestrator pass."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from acp_sim.agent import SimAgent
from acp_sim.clock import BACKENDS, run
from acp_sim.faults import parse_fault_spec
from acp_sim.streams import memory_duplex
from acp_sim.trace import TraceEvent, load_jsonl
from pytest_acp.adapter import BridgeCapabilities
from pytest_acp.harness.machine import MACHINE_PROFILE, PropertyViolation
from pytest_acp.harness.machine_run import machine_for, run_machine
from pytest_acp.reference import bridge as reference_bridge

from .test_oracle import A, B, World, props
from .wire_client import raw_bridge

EARLY = ["available_commands_update", "current_mode_update"]


def line(message: dict[str, Any]) -> bytes:
    return json.dumps({"jsonrpc": "2.0", **message}).encode() + b"\n"


OPENING = [
    {"id": 1, "method": "initialize", "params": {"protocolVersion": 1}},
    {"id": 2, "method": "session/new", "params": {"cwd": "/w", "mcpServers": []}},
    {"id": 3, "method": "session/new", "params": {"cwd": "/w", "mcpServers": []}},
]


def sends(events: list[TraceEvent]) -> list[tuple[str, str]]:
    """(session prefix, what) of every send after initialize: an update's kind, or the response."""
    out = []
    for e in events:
        if e.kind != "send" or e.method == "initialize":
            continue
        message = e.message or {}
        if e.method == "session/update":
            out.append((str(e.session)[:8], message["params"]["update"]["sessionUpdate"]))
        else:
            out.append((str(message.get("result", {}).get("sessionId"))[:8], e.method or "?"))
    return out


def opened(backend: str, *, early: bool, faults: tuple[str, ...] = ()) -> tuple[list[TraceEvent], str]:
    async def main() -> tuple[list[TraceEvent], str]:
        profile = MACHINE_PROFILE.model_copy(update={"updates_before_new_response": early})
        agent = SimAgent(profile, seed=4, faults=[parse_fault_spec(f) for f in faults])
        pair = memory_duplex()
        async with anyio.create_task_group() as tg:
            tg.start_soon(agent.serve, pair.agent.receive_stream, pair.agent.send_stream)
            for message in OPENING:
                await pair.client.send(line(message))
            await anyio.sleep(60)
            await pair.client.aclose()
        return list(agent.trace.events), agent.trace.to_jsonl()

    return run(main, backend=backend)  # type: ignore[arg-type]


@pytest.mark.parametrize("backend", BACKENDS)
def test_session_updates_come_before_the_session_new_response(backend: str) -> None:
    events, trace = opened(backend, early=True)
    order = sends(events)
    sids = [sid for sid, what in order if what == "session/new"]
    assert len(sids) == 2
    for sid in sids:
        mine = [what for s, what in order if s == sid]
        assert mine == [*EARLY, "session/new"]  # recorded (and written) before the response
    assert trace == opened(backend, early=True)[1]  # deterministic
    plain, _ = opened(backend, early=False)
    assert [what for _, what in sends(plain)] == ["session/new", "session/new"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_fault_does_it_for_one_session_new(backend: str) -> None:
    events, _ = opened(backend, early=False, faults=("early_session_updates:session=1",))
    order = sends(events)
    first, second = [sid for sid, what in order if what == "session/new"]
    assert [what for s, what in order if s == first] == ["session/new"]
    assert [what for s, what in order if s == second] == [*EARLY, "session/new"]
    fired = [e.detail for e in events if e.kind == "fault"]
    assert fired == [{"kind": "early_session_updates", "session": 1}]


@pytest.mark.parametrize(
    ("backend", "flag"),
    [(b, f) for b in BACKENDS for f in ("--updates-before-new-response", "--fault=early_session_updates")],
)
def test_over_stdio(backend: str, flag: str, tmp_path: Path) -> None:
    trace = tmp_path / "trace.jsonl"
    cmd = [sys.executable, "-m", "acp_sim", "agent", "--backend", backend, flag, "--trace", str(trace)]
    cmd += ["--session-new-latency", "0"]
    # As a real client does: session/new only after initialize has answered (sent together, the two
    # requests race on real time, and a loaded machine may answer session/new first).
    with subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE) as agent:
        assert agent.stdin is not None
        assert agent.stdout is not None
        agent.stdin.write(line(OPENING[0]))
        agent.stdin.flush()
        first = agent.stdout.readline()
        agent.stdin.write(line(OPENING[1]))
        agent.stdin.close()
        out = first + agent.stdout.read()
        assert agent.wait(timeout=60) == 0
    got = [json.loads(part) for part in out.splitlines()]
    kinds = [m["params"]["update"]["sessionUpdate"] if "method" in m else m.get("id") for m in got]
    assert kinds == [1, *EARLY, 2]  # on the wire: the updates, then the session/new response
    sid = got[-1]["result"]["sessionId"]
    assert {m["params"]["sessionId"] for m in got[1:3]} == {sid}
    events = load_jsonl(trace.read_text().splitlines())
    assert [what for _, what in sends(events)] == [*EARLY, "session/new"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_bridge_that_drops_updates_for_unknown_ids_is_caught(backend: str) -> None:
    machine = machine_for(raw_bridge(drop_unknown=True), backend=backend, fault_kinds=())
    with pytest.raises(PropertyViolation) as caught:
        run_machine(machine, examples=200, seed=0, shrink=False)
    assert caught.value.examples <= 200  # type: ignore[attr-defined]
    found = [str(v) for v in caught.value.violations]
    assert any(v.startswith("P2") and "before the key's first prompt" in v for v in found), found
    assert "session updates before session/new's answer" in str(caught.value)


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_correct_raw_bridge_passes_with_early_updates(backend: str) -> None:
    machine = machine_for(raw_bridge(), backend=backend, fault_kinds=(), early=(True,))
    assert run_machine(machine, examples=60, seed=0).examples >= 60


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_reference_orchestrator_passes_with_early_updates(backend: str) -> None:
    machine = machine_for(reference_bridge, backend=backend, early=(True,))
    assert run_machine(machine, examples=60, seed=0).examples >= 60


# -- the oracle's judgement, on hand-made runs -------------------------------------------------------

DECLARED = BridgeCapabilities(kinds=frozenset({"agent_message_chunk", *EARLY}))


def session_update(w: World, sid: str, update: dict[str, Any]) -> None:
    params = {"sessionId": sid, "update": update}
    w.trace.on_message("send", {"jsonrpc": "2.0", "method": "session/update", "params": params})


def early_open(w: World, key: str, sid: str) -> None:
    """``key`` opens; the agent sends the session's updates before its session/new answer."""
    w.open(key)
    request = w._request("session/new", {"cwd": "/w", "mcpServers": []})
    session_update(w, sid, {"sessionUpdate": "available_commands_update", "availableCommands": []})
    session_update(w, sid, {"sessionUpdate": "current_mode_update", "currentModeId": "default"})
    w._answer(request, {"sessionId": sid})
    w.opened(key)


def deliver_early(w: World, key: str, turn: int) -> None:
    for kind in EARLY:
        w.log.record("update", key=key, turn=turn, update_kind=kind, raw={"sessionUpdate": kind})


def one_turn_each(w: World, keys: dict[str, str], delivered: dict[str, int]) -> None:
    """A turn per key; ``delivered``: how many times each key's caller got the early updates."""
    for key, sid in keys.items():
        w.at(1.0).prompt(key, 1, sid)
        for _ in range(delivered.get(key, 0)):
            deliver_early(w, key, 1)
        w.chunk(sid, f"[{key} t1 c0]")
        w.deliver(key, 1, f"[{key} t1 c0]")
        w.at(2.0).answer(key, 1)
        w.end(key, 1)


def test_early_updates_delivered_with_the_first_turn_are_fine() -> None:
    w = World()
    w.initialize()
    early_open(w, "s1", A)
    one_turn_each(w, {"s1": A}, {"s1": 1})
    assert w.check(DECLARED) == []


def test_early_updates_never_delivered_are_p2_for_a_bridge_that_declares_them() -> None:
    w = World()
    w.initialize()
    early_open(w, "s1", A)
    one_turn_each(w, {"s1": A}, {})
    found = w.check(DECLARED)
    assert props(found) == ["P2", "P2"]
    assert all(v.key == "s1" and v.turn == 1 and v.session == A for v in found)
    assert "available_commands_update" in found[0].message
    assert "before the key's first prompt" in found[0].message
    assert w.check() == []  # a bridge that does not deliver that kind owes nothing


def test_early_updates_of_another_session_are_bleed() -> None:
    w = World()
    w.initialize()
    early_open(w, "s1", A)
    early_open(w, "s2", B)
    one_turn_each(w, {"s1": A, "s2": B}, {"s1": 2})  # s2's updates went to s1's caller
    found = w.check(DECLARED)
    bleed = [v for v in found if v.property == "P3"]
    assert [v.key for v in bleed] == ["s1", "s1"]
    assert "belong to another session" in bleed[0].message
    assert {v.key for v in found if v.property == "P2"} == {"s2"}


def test_session_updates_in_a_turn_do_not_upset_the_turn_checks() -> None:
    """Regression (false alarm): a bridge that delivers tool calls (no text) and the session's
    updates in its first turn: the session updates are no part of the turn's sequence."""
    caps = BridgeCapabilities(kinds=DECLARED.kinds | {"tool_call"})
    w = World()
    w.initialize()
    early_open(w, "s1", A)
    w.at(1.0).prompt("s1", 1, A)
    deliver_early(w, "s1", 1)
    w.chunk(A, "[A t1 c0]")
    w.deliver("s1", 1, "[A t1 c0]")
    tool = {"sessionUpdate": "tool_call", "toolCallId": "t1", "title": "read"}
    session_update(w, A, tool)
    w.log.record("update", key="s1", turn=1, update_kind="tool_call", raw=tool)
    w.chunk(A, "[A t1 c1]")
    w.deliver("s1", 1, "[A t1 c1]")
    w.at(2.0).answer("s1", 1)
    w.end("s1", 1)
    assert w.check(caps) == []


def test_updates_handed_over_with_a_turn_that_reached_no_agent_are_not_called_bleed() -> None:
    """Regression (false alarm): the agent died before the key's first prompt reached it; the bridge
    still handed its session's updates to that turn's caller, then failed the turn. Which session
    the key held cannot be told from the trace, so another session's alike updates are no proof."""
    w = World()
    w.initialize()
    early_open(w, "s1", A)
    early_open(w, "s2", B)
    w.at(1.0).prompt("s1", 1, None)
    deliver_early(w, "s1", 1)
    w.client("crash", detail={"instance": 0})
    w.end("s1", 1, None, error="the agent went away")
    assert [v for v in w.check(DECLARED) if v.property == "P3"] == []
