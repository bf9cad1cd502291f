"""The ground truth is never behind the wire (issue 16 item 6): the agent records a send just before
writing it, so a kill during the write leaves the line of what it was writing; a write that fails or
is cancelled is marked ``unsent``; the oracle does not blame a bridge for a possibly-unsent item it
did not deliver. The race is forced: the client stops reading, so the agent's write must block."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from acp_sim.agent import SimAgent
from acp_sim.clock import BACKENDS, run
from acp_sim.profile import AgentProfile, ModelProfile, TurnProfile
from acp_sim.streams import memory_duplex
from acp_sim.trace import TraceEvent, load_jsonl
from pytest_acp.properties.truth import InstanceTrace

from .test_oracle import A, two_sessions

MANY_CHUNKS = AgentProfile(
    models={"default": ModelProfile(session_new_cold=0, session_new_warm=0, turn=TurnProfile(chunk_count=50))}
)


def line(message: dict[str, Any]) -> bytes:
    return json.dumps({"jsonrpc": "2.0", **message}).encode() + b"\n"


OPENING = [
    {"id": 1, "method": "initialize", "params": {"protocolVersion": 1}},
    {"id": 2, "method": "session/new", "params": {"cwd": "/w", "mcpServers": []}},
]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_write_cancelled_by_a_crash_is_recorded_then_marked_unsent(backend: str) -> None:
    async def main() -> tuple[list[TraceEvent], list[dict[str, Any]]]:
        agent = SimAgent(MANY_CHUNKS, seed=3)
        pair = memory_duplex(max_items=4)  # the client reads nothing: the agent's 5th write blocks
        async with anyio.create_task_group() as tg:
            tg.start_soon(agent.serve, pair.agent.receive_stream, pair.agent.send_stream)
            for message in OPENING:
                await pair.client.send(line(message))
            await anyio.sleep(1)
            sid = agent.trace.sessions()[0]
            prompt = {"sessionId": sid, "prompt": [{"type": "text", "text": "go"}]}
            await pair.client.send(line({"id": 3, "method": "session/prompt", "params": prompt}))
            await anyio.sleep(10)  # the turn streams until its write blocks
            agent.crash()
        wire = []
        with anyio.move_on_after(1):
            async for data in pair.client:
                wire += [json.loads(part) for part in data.splitlines() if part]
        return agent.trace.events, wire

    events, wire = run(main, backend=backend)  # type: ignore[arg-type]
    sends = [e for e in events if e.kind == "send"]
    (unsent,) = [e for e in events if e.kind == "unsent"]
    blocked = next(e for e in sends if e.seq == unsent.detail["seq"])  # type: ignore[index]
    assert blocked.method == "session/update"
    assert [e.message for e in sends if e is not blocked] == wire  # the trace is the wire, less it
    assert len(wire) == 4


# -- over stdio: SIGKILL during a blocked write ----------------------------------------------------------


def pipe_size(fd: int) -> int:
    return fcntl.fcntl(fd, 1032)  # F_GETPIPE_SZ (Linux)


def read_line(fd: int) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        data += os.read(fd, 1)
    return data


def unread(fd: int) -> int:
    """Bytes waiting in the pipe (FIONREAD)."""
    return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_kill_during_a_write_leaves_the_trace_ahead_of_the_wire(backend: str, tmp_path: Path) -> None:
    trace = tmp_path / "trace.jsonl"
    cmd = [sys.executable, "-m", "acp_sim", "agent", "--backend", backend, "--trace", str(trace)]
    # Chunks larger than the pipe: the first one cannot be written whole while nobody reads.
    profile = tmp_path / "big.json"
    turn = {"chunk_count": 3, "chunk_words": 60000, "chunk_interval": 0}
    profile.write_text(json.dumps({"models": {"default": {"session_new_cold": 0, "turn": turn}}}))
    cmd += ["--profile", str(profile)]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdin is not None
    assert proc.stdout is not None
    try:
        for message in OPENING:
            proc.stdin.write(line(message))
        proc.stdin.flush()
        out = proc.stdout.fileno()
        capacity = pipe_size(out)
        # Read exactly the two answers (byte by byte: no read-ahead), then nothing more: the turn's
        # writes fill the pipe and block.
        answers = [json.loads(read_line(out)) for _ in range(2)]
        (sid,) = [a["result"]["sessionId"] for a in answers if a["id"] == 2]  # answers: in either order
        prompt = {"sessionId": sid, "prompt": [{"type": "text", "text": "go"}]}
        proc.stdin.write(line({"id": 3, "method": "session/prompt", "params": prompt}))
        proc.stdin.flush()
        # The pipe full, with a chunk larger than it on the way: the agent is blocked in that write.
        while unread(out) < capacity:
            time.sleep(0.01)  # polling the file the agent writes; nothing is timed
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        wire = [json.loads(part) for part in proc.stdout.read().splitlines() if part.endswith(b"}")]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    events = load_jsonl(trace.read_text().splitlines())
    sent = [e.message for e in events if e.kind == "send"][2:]
    assert wire == sent[: len(wire)]  # everything on the wire is in the trace, in order
    assert len(sent) == len(wire) + 1  # and the trace is one ahead: the line of the blocked write
    # The oracle's view: that last send is possibly unsent, not "sent and never delivered".
    from pytest_acp.properties.truth import Truth

    truth = Truth([InstanceTrace("agent#0", events)], frozenset({"agent_message_chunk"}), True)
    (turn,) = truth.turns.values()
    assert turn.updates[-1].maybe_unsent
    assert not any(u.maybe_unsent for u in turn.updates[:-1])


# -- the oracle ------------------------------------------------------------------------------------------


def crashed_turn(*, last_send_is_the_chunk: bool) -> list[str]:
    """s1's turn: two chunks, the second recorded just before the agent died (its bytes maybe not
    out); the bridge delivered the first and failed the turn when the agent went away."""
    w = two_sessions()
    w.at(1.0).prompt("s1", 1, A)
    w.chunk(A, "[A t1 c0]")
    w.deliver("s1", 1, "[A t1 c0]")
    w.at(2.0)
    w.trace.on_sending(
        {
            "jsonrpc": "2.0",
            "method": "session/update",
            "params": {
                "sessionId": A,
                "update": {
                    "sessionUpdate": "agent_message_chunk",
                    "content": {"type": "text", "text": "[A t1 c1]"},
                },
            },
        }
    )
    if not last_send_is_the_chunk:
        w.chunk(A, "[A t1 c2]")
    w.client("crash")
    w.relaunch()
    w.at(3.0).end("s1", 1, stop=None, error="the agent went away")
    return [str(v) for v in w.check(final=False)]


def test_the_oracle_does_not_blame_a_bridge_for_the_possibly_unsent_last_send() -> None:
    assert crashed_turn(last_send_is_the_chunk=True) == []
    # Only the very last send of the dead instance is in doubt: an earlier one was written.
    (found,) = crashed_turn(last_send_is_the_chunk=False)
    assert "P2" in found
    assert "[A t1 c1]" in found


def test_an_unsent_send_is_not_what_the_agent_sent() -> None:
    w = two_sessions()
    w.at(1.0).prompt("s1", 1, A)
    w.chunk(A, "[A t1 c0]")
    message = {
        "jsonrpc": "2.0",
        "method": "session/update",
        "params": {
            "sessionId": A,
            "update": {
                "sessionUpdate": "agent_message_chunk",
                "content": {"type": "text", "text": "[A t1 c1]"},
            },
        },
    }
    w.trace.on_sending(message)
    w.trace.on_unsent(message)
    w.deliver("s1", 1, "[A t1 c0]")
    w.at(2.0).answer("s1", 1)
    w.end("s1", 1)
    assert w.check() == []
    unsent = [e for e in w.trace.events if e.kind == "unsent"]
    assert unsent[0].detail == {"seq": unsent[0].seq - 1}
