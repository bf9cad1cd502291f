"""The built-in ``claude-code`` profile against the real adapter's recorded wire traffic.

Each test drives the simulated agent through the client actions of one transcript
(shared/reference/transcripts, claude-agent-acp 0.23.1) and compares, session by session, the
*shape* of the traffic: which requests, which updates (an empty chunk marked), which responses
(stop reason, usage present or zero, error code). Times are checked against the calibrated ranges.
"""

from __future__ import annotations

import itertools
import json
import sys
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import anyio
import pytest

from acp_sim.agent import InProcessAgent
from acp_sim.faults import OneTurnBehind
from acp_sim.profile import CLAUDE_CODE
from acp_sim.trace import TraceEvent

from .test_agent_support import TRANSCRIPTS, connect, schema_problems

pytestmark = pytest.mark.anyio

MCP_SERVER = [sys.executable, "-m", "acp_sim", "mcp-server"]


def _token(direction: str, method: str | None, message: dict[str, Any]) -> str:
    arrow = ">" if direction == "recv" else "<"
    if "method" in message:
        if message["method"] == "session/update":
            update = message["params"]["update"]
            kind = update["sessionUpdate"]
            if kind == "agent_message_chunk" and update["content"].get("text") == "":
                return f"< {kind} ''"
            return f"< {kind}"
        return f"{arrow} {message['method']}"
    if "error" in message:
        return f"< {method} error {message['error']['code']}"
    result = message.get("result") or {}
    if method == "session/prompt":
        usage = result.get("usage")
        tail = "" if usage is None else (" zero-usage" if not any(usage.values()) else " usage")
        return f"< {method} {result['stopReason']}{tail}"
    return f"< {method} ok"


def transcript_shapes(name: str) -> dict[str, dict[str, list[str]]]:
    """process -> session id -> shape tokens, attributed like the trace does."""
    path = TRANSCRIPTS / name
    if not path.exists():
        pytest.skip(f"reference transcripts not found at {TRANSCRIPTS}")
    out: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    requests: dict[tuple[str, str, Any], tuple[str | None, str]] = {}
    for line in path.read_text().splitlines():
        entry = json.loads(line)
        proc, msg = entry["agent_process"], entry["msg"]
        direction = "recv" if entry["dir"] == "client->agent" else "send"
        params = msg.get("params") or {}
        session = params.get("sessionId")
        method = msg.get("method")
        if method is not None and "id" in msg:
            requests[(proc, direction, msg["id"])] = (session, method)
        if method is None:
            session, method = requests.pop((proc, "recv" if direction == "send" else "send", msg["id"]))
            if method == "session/new" and "result" in msg:
                session = msg["result"]["sessionId"]
        if session is not None:
            out[proc][session].append(_token(direction, method, msg))
    return out


def sim_shapes(events: Iterable[TraceEvent]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = defaultdict(list)
    for e in events:
        if e.kind in ("send", "recv") and e.session is not None and e.message is not None:
            out[e.session].append(_token(e.kind, e.method, e.message))
    return out


def collapse(tokens: list[str], drop: tuple[str, ...] = ()) -> list[str]:
    """Runs of the same non-empty chunk kind become one ``+`` token (the recordings' fake model
    streamed one delta where the profile streams five); ``drop`` removes tokens."""
    out: list[str] = []
    for token in tokens:
        if token in drop:
            continue
        if token.endswith("_chunk"):
            token += "+"
            if out and out[-1] == token:
                continue
        out.append(token)
    return out


def by_first_appearance(shapes: dict[str, list[str]]) -> list[list[str]]:
    return list(shapes.values())


async def test_concurrent_transcript_shape_and_timing() -> None:
    expected = by_first_appearance(transcript_shapes("concurrent.jsonl")["A"])
    launcher = InProcessAgent(CLAUDE_CODE, seed=3)
    async with connect(launcher) as client:
        a = await client.new_session("/workspace/ws")
        b = await client.new_session("/workspace/ws")
        async with anyio.create_task_group() as tg:
            tg.start_soon(client.prompt, a, "ALPHA")
            tg.start_soon(client.prompt, b, "BRAVO")
    trace = launcher.current.trace
    assert by_first_appearance(sim_shapes(trace.events)) == expected
    assert schema_problems(trace.events) == []
    # Timing: initialize 0.2-0.4 s; cold session/new around 4 s; the empty chunk 0.05-0.2 s after
    # the prompt, deltas 0.15-0.25 s apart; usage_update and response in the same instant.
    t = {(e.kind, e.method, e.id): e.t for e in trace.events if e.id is not None}
    assert 0.2 <= t[("send", "initialize", 1)] - t[("recv", "initialize", 1)] <= 0.4
    assert 3.0 <= t[("send", "session/new", 2)] - t[("recv", "session/new", 2)] <= 12.0
    for sid, request_id in ((a, 4), (b, 5)):
        updates = [e for e in trace.updates(sid, 1)]
        assert 0.05 <= updates[0].t - t[("recv", "session/prompt", request_id)] <= 0.2
        gaps = [round(y.t - x.t, 6) for x, y in itertools.pairwise(updates[:6])]
        assert all(0.15 <= g <= 0.25 for g in gaps), gaps
        assert updates[-1].update_kind == "usage_update"
        assert updates[-1].t == t[("send", "session/prompt", request_id)]
    # The two turns interleave delta by delta, as in the recording.
    owners = [e.session for e in trace.updates() if e.turn == 1 and e.update_kind == "agent_message_chunk"]
    assert owners != sorted(owners, key=[a, b].index)


@pytest.mark.parametrize("defect", [True, False], ids=["one_turn_behind", "fixed_adapter"])
async def test_cancel_transcript_shape_with_and_without_the_one_turn_behind_defect(defect: bool) -> None:
    shapes = by_first_appearance(transcript_shapes("cancel.jsonl")["A"])
    launcher = InProcessAgent(
        CLAUDE_CODE, seed=4, faults=[OneTurnBehind(kind="one_turn_behind")] if defect else []
    )
    async with connect(launcher) as client:
        a = await client.new_session("/workspace/ws")
        b = await client.new_session("/workspace/ws")
        async with anyio.create_task_group() as tg:
            results: dict[str, Any] = {}

            async def prompt(sid: str, text: str) -> None:
                results[text] = await client.prompt(sid, text)

            tg.start_soon(prompt, a, "ALPHA")
            tg.start_soon(prompt, b, "BRAVO")
            await client.wait_until(lambda: len(client.of(a, "agent_message_chunk")) == 3)  # '', d0, d1
            await client.cancel(a)
        cancel_time = anyio.current_time()
        await prompt(a, "CHARLIE")
        await anyio.sleep(2.5)
        await prompt(a, "DELTA")
    trace = launcher.current.trace
    sim = by_first_appearance(sim_shapes(trace.events))
    assert sim[1] == shapes[1]  # the other session is untouched either way
    assert schema_problems(trace.events) == []
    assert results["ALPHA"] == {"stopReason": "cancelled"}
    cancel_seq = next(e.seq for e in trace.events if e.method == "session/cancel")
    late = [e for e in trace.updates(a, 1) if e.seq > cancel_seq]
    assert late == []  # no further update of the cancelled turn
    if defect:
        assert sim[0] == shapes[0]
        assert results["CHARLIE"]["usage"]["totalTokens"] == 0
        delta = client.texts(a)[-5:]
        assert all(text.startswith(f"[{a[:8]} t2 ") for text in delta)  # DELTA shows CHARLIE's turn
        kinds = [e.detail["effect"] for e in trace.of_kind("fault") if e.detail and "effect" in e.detail]
        assert kinds == ["armed", "answered at once with zero usage", "answered with the previous turn"]
    else:
        expected = shapes[0][
            : shapes[0].index("> session/prompt", shapes[0].index("< session/prompt cancelled"))
        ]
        chunks = ["< agent_message_chunk ''", *["< agent_message_chunk"] * 5]
        turn = ["> session/prompt", *chunks, "< usage_update", "< session/prompt end_turn usage"]
        assert sim[0] == expected + turn + turn
        assert all(text.startswith(f"[{a[:8]} t3 ") for text in client.texts(a)[-5:])
    assert anyio.current_time() >= cancel_time


async def test_mcp_transcript_shape_close_twice() -> None:
    expected = [collapse(s) for s in by_first_appearance(transcript_shapes("mcp.jsonl")["A"])]
    servers = [
        {"name": f"mini{i}", "command": MCP_SERVER[0], "args": MCP_SERVER[1:], "env": []} for i in (1, 2)
    ]
    launcher = InProcessAgent(CLAUDE_CODE, seed=5)
    async with connect(launcher) as client:
        sids = [await client.new_session("/workspace/ws", servers) for _ in range(3)]
        assert launcher.current.mcp.count() == 6
        await client.prompt(sids[0], "hi")
        assert await client.c.request("session/close", {"sessionId": sids[0]}) == {}
        assert launcher.current.mcp.count() == 4
        await anyio.sleep(2)
        error = await client.error_of("session/close", {"sessionId": sids[0]})
    assert error == {"code": -32603, "message": "Internal error", "data": {"details": "Session not found"}}
    trace = launcher.current.trace
    assert [collapse(s) for s in by_first_appearance(sim_shapes(trace.events))] == expected
    assert launcher.current.mcp.count() == 0


async def test_phantom_transcript_lifecycle_across_restarts() -> None:
    recorded = transcript_shapes("phantom.jsonl")
    unknown = "00000000-0000-4000-8000-000000000000"
    launcher = InProcessAgent(CLAUDE_CODE, seed=6)
    errors: list[dict[str, Any]] = []
    ws = {"cwd": "/workspace/ws", "mcpServers": []}
    async with connect(launcher) as client:  # process A
        phantom = await client.new_session("/workspace/ws")
        await client.c.request("session/resume", {"sessionId": phantom, **ws})
        await client.c.request("session/load", {"sessionId": phantom, **ws})
        real = await client.new_session("/workspace/ws")
        await client.prompt(real, "turn one")
        await client.c.request("session/resume", {"sessionId": real, **ws})
        await client.c.request("session/load", {"sessionId": real, **ws})
        errors.append(await client.error_of("session/resume", {"sessionId": unknown, **ws}))
    async with connect(launcher) as client:  # process B: a restart on the same disk
        errors.append(await client.error_of("session/resume", {"sessionId": phantom, **ws}))
        await client.c.request("session/resume", {"sessionId": real, **ws})
    async with connect(launcher) as client:  # process C
        errors.append(await client.error_of("session/load", {"sessionId": phantom, **ws}))
        await client.c.request("session/load", {"sessionId": real, **ws})
        await client.prompt(real, "turn two")
        errors.append(await client.error_of("session/prompt", {"sessionId": phantom, "prompt": []}))

    def lifecycle(tokens: list[str]) -> list[str]:
        drop = (
            "< available_commands_update",
            "< agent_message_chunk ''",
            "< usage_update",
            "< agent_message_chunk",
        )
        return [
            t for t in collapse(tokens, drop) if t not in ("< user_message_chunk+", "< agent_message_chunk+")
        ]

    for proc, agent in zip("ABC", launcher.agents, strict=True):
        sim = [lifecycle(v) for v in sim_shapes(agent.trace.events).values()]
        rec = [lifecycle(v) for v in recorded[proc].values()]
        assert sorted(sim) == sorted(rec), proc
    # The error objects, exactly as the adapter sends them (ids substituted).
    assert errors == [
        {"code": -32002, "message": f"Resource not found: {unknown}", "data": {"uri": unknown}},
        {"code": -32002, "message": f"Resource not found: {phantom}", "data": {"uri": phantom}},
        {"code": -32002, "message": f"Resource not found: {phantom}", "data": {"uri": phantom}},
        {"code": -32603, "message": "Internal error", "data": {"details": "Session not found"}},
    ]
    # Load from disk replays the history (user, then agent) before its response.
    c = sim_shapes(launcher.agents[2].trace.events)[real]
    load = c.index("> session/load")
    assert collapse(c[load : c.index("< session/load ok") + 1]) == [
        "> session/load", "< user_message_chunk+", "< agent_message_chunk+", "< session/load ok"]  # fmt: skip
    # Timing: in-process resume/load at once; from disk 1.0-1.4 s; not found 1.0-1.7 s.
    a, b, c_ = (durations(agent.trace.events) for agent in launcher.agents)
    assert a[:4] == [0.0, 0.0, 0.0, 0.0]
    assert 1.0 <= a[4] <= 1.7
    assert 1.0 <= b[0] <= 1.7
    assert 1.0 <= b[1] <= 1.4
    assert 1.0 <= c_[0] <= 1.7
    assert 1.0 <= c_[1] <= 1.4
    for agent in launcher.agents:
        assert schema_problems(agent.trace.events) == []


def durations(events: list[TraceEvent]) -> list[float]:
    """Request-to-response times of session/resume and session/load, in request order."""
    asked = {e.id: e.t for e in events if e.kind == "recv" and e.method in ("session/resume", "session/load")}
    return [round(e.t - asked[e.id], 6) for e in events if e.kind == "send" and e.id in asked]
