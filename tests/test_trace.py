"""The trace's JSON-lines form: attribution, loading back, and the stable form with real pids."""

from __future__ import annotations

import gc
import sys

import anyio
import pytest

from acp_sim.agent import InProcessAgent
from acp_sim.agent.ticker import chunk_message
from acp_sim.clock import BACKENDS, run
from acp_sim.orchestrator import Orchestrator
from acp_sim.trace import Trace, load_jsonl
from acp_sim.wire import encode

MCP = [
    {"name": "tools", "command": sys.executable, "args": ["-m", "acp_sim", "mcp-server"], "env": []},
]


def test_stable_form_numbers_pids_by_first_appearance() -> None:
    trace = Trace(lambda: 1.5)
    trace.record("spawn", session="s", detail={"pid": 4242, "name": "a"})
    trace.record("spawn", session="s", detail={"pid": 17, "name": "b"})
    trace.record("reap", session="s", detail={"pid": 4242})
    stable = load_jsonl(trace.to_jsonl(stable=True).splitlines())
    assert [e.detail["pid"] for e in stable if e.detail] == ["pid#1", "pid#2", "pid#1"]
    assert load_jsonl(trace.to_jsonl().splitlines())[0].detail == {"pid": 4242, "name": "a"}


def test_attribution_of_turns_and_responses() -> None:
    trace = Trace(lambda: 0.0)
    trace.on_message("recv", {"jsonrpc": "2.0", "id": 1, "method": "session/new", "params": {"cwd": "/"}})
    trace.on_message("send", {"jsonrpc": "2.0", "id": 1, "result": {"sessionId": "A"}})
    params = {"sessionId": "A", "prompt": []}
    prompt = {"jsonrpc": "2.0", "id": 2, "method": "session/prompt", "params": params}
    trace.on_message("recv", prompt)
    update = {"jsonrpc": "2.0", "method": "session/update", "params": {"sessionId": "A", "update": {}}}
    trace.on_message("send", update)
    trace.on_message("send", {"jsonrpc": "2.0", "id": 2, "result": {"stopReason": "end_turn"}})
    trace.on_message("recv", {**prompt, "id": 3})
    got = [(e.kind, e.session, e.turn, e.method) for e in trace.events]
    assert got == [
        ("recv", None, None, "session/new"),
        ("send", "A", 0, "session/new"),
        ("recv", "A", 1, "session/prompt"),
        ("send", "A", 1, "session/update"),
        ("send", "A", 1, "session/prompt"),
        ("recv", "A", 2, "session/prompt"),
    ]


def _mcp_trace(backend: str) -> Trace:
    async def main() -> Trace:
        launcher = InProcessAgent(seed=9)
        async with Orchestrator(launcher) as orch:
            sessions = [await orch.open_session(cwd="/w", mcp_servers=MCP) for _ in range(2)]
            await sessions[0].prompt("hi").collect()
            for session in sessions:
                await session.close()
            await anyio.sleep(1)
        return launcher.current.trace

    return run(main, backend=backend)  # type: ignore[arg-type]


@pytest.mark.parametrize("backend", BACKENDS)
def test_runs_with_real_mcp_children_are_identical_in_stable_form(backend: str) -> None:
    first, second = _mcp_trace(backend), _mcp_trace(backend)
    assert first.to_jsonl(stable=True) == second.to_jsonl(stable=True)
    assert first.to_jsonl() != second.to_jsonl()  # only because the OS gave other pids
    assert [e.kind for e in first.events].count("spawn") == 2


@pytest.mark.parametrize(
    "message",
    [
        chunk_message("s-1", "a \u2028 b \x85 \u00e9 \U0001f600 \\u00e9 \x00"),
        chunk_message("s-1", "lone \ud800 surrogate"),  # encoded with \\u escapes: not spliced as is
        {"jsonrpc": "2.0", "id": 3, "result": {"stopReason": "end_turn", "n": [1, 2.5, None, True]}},
        {"jsonrpc": "2.0", "id": "x", "error": {"code": -32603, "message": "nan", "data": float("nan")}},
    ],
)
def test_a_message_kept_as_its_line_reads_and_writes_as_the_message(message: dict[str, object]) -> None:
    # What the trace keeps of a written message is its line, decoded on first read: no dicts for the
    # garbage collector to walk while a run goes on. Nothing a reader sees may differ.
    import json

    from acp_sim.wire import encode

    kept, plain = Trace(lambda: 1.5), Trace(lambda: 1.5)
    kept.on_sending(message, encode(message))  # type: ignore[arg-type]
    plain.on_message("send", message)  # type: ignore[arg-type]
    event, reference = kept.events[0], plain.events[0]
    assert event.to_json() == reference.to_json()
    assert kept.to_jsonl() == plain.to_jsonl()
    decoded = event.message
    assert decoded is event.message  # decoded once, then kept
    assert json.dumps(decoded) == json.dumps(message)
    assert event.to_json() == reference.to_json()
    if message.get("params") is not None:
        assert event == reference
        assert reference == event
        assert event.update_kind == "agent_message_chunk"
    (loaded,) = load_jsonl([event.to_json()])
    assert loaded.to_json() == reference.to_json()  # (NaN is not equal to itself: compared as text)


def test_a_read_message_is_kept_as_the_text_of_its_line() -> None:
    from acp_sim.trace import TraceEvent
    from acp_sim.wire import decode_text

    text = (
        '{"jsonrpc": "2.0", "id": 1, "method": "session/prompt", '
        + '"params": {"sessionId": "s", "prompt": []}}'
    )
    message = decode_text(text)
    trace = Trace(lambda: 0.0)
    trace.on_receiving(message, text)
    event = trace.on_written("recv", message)
    assert event is trace.events[-1]
    assert len(trace.events) == 1  # recorded once
    assert (event.session, event.turn, event.method, event.id) == ("s", 1, "session/prompt", 1)
    reference = TraceEvent(0, 0.0, "recv", "s", 1, "session/prompt", 1, message)
    assert event.to_json() == reference.to_json()  # encoded as the trace encodes, not the peer's spacing
    assert event == reference


def test_wire_events_stay_out_of_the_collectors_walk_until_the_trace_is_read() -> None:
    # Issue 19: at 1,000 sessions x 100 chunks the chunks' events were a third of the objects every
    # full garbage collection walked. Until ``events`` is read, a sent line's event is its fields
    # (strings, numbers and bytes), which the collector never tracks; read, it is the same event.
    messages = [
        {
            "jsonrpc": "2.0",
            "method": "session/update",
            "params": {"sessionId": "s", "update": {"sessionUpdate": "agent_message_chunk", "n": i}},
        }
        for i in range(1000)
    ]
    lines = [encode(m) for m in messages]
    trace = Trace(lambda: 1.5)
    trace.record("fault", detail={"kind": "stall"})
    gc.collect()
    tracked = len(gc.get_objects())
    for message, line in zip(messages, lines, strict=True):
        trace.on_sending(message, line)
        assert trace.written("send", message) == trace.size - 1
    gc.collect()
    assert len(gc.get_objects()) - tracked < 50  # 1,000 or more when each event is an object

    events = trace.events
    assert events is trace.events
    assert len(events) == trace.size == 1001
    assert events[0].kind == "fault"
    assert [e.seq for e in events] == list(range(1001))
    fields = {(e.kind, e.session, e.turn, e.method, e.t) for e in events[1:]}
    assert fields == {("send", "s", 0, "session/update", 1.5)}
    assert [e.message for e in events[1:]] == messages
    assert [e.to_json() for e in load_jsonl(trace.to_jsonl().splitlines())] == [e.to_json() for e in events]


def test_recording_wire_events_does_not_bring_the_young_collection_nearer() -> None:
    # Issue 19: CPython collects its young generation every 700 tracked objects allocated and not
    # freed. A tuple kept per event, though the collector drops it at its first pass, counted: at
    # 1,000 sessions one young collection in three was the trace's. Its fields laid out flat count
    # nothing; reading the events is when they become objects.
    messages = [
        {"jsonrpc": "2.0", "method": "session/update", "params": {"sessionId": "s", "update": {"n": i}}}
        for i in range(1000)
    ]
    lines = [encode(m) for m in messages]
    trace = Trace(lambda: 1.5)
    gc.collect()
    gc.disable()
    try:
        before = gc.get_count()[0]
        for message, line in zip(messages, lines, strict=True):
            trace.on_sending(message, line)
            trace.written("send", message)
        counted = gc.get_count()[0] - before
    finally:
        gc.enable()
    assert counted < 50, counted  # about 1,000 when each event waits as an object
    assert [e.message for e in trace.events] == messages
