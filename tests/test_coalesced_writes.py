"""The last updates and the prompt response in one write (issue 17 item 4): with
``coalesce_writes`` the agent flushes a turn's final chunk, its ``usage_update`` and the
``session/prompt`` response together (in process on both backends, and over stdio), the trace is
the same as without, and a client that handles a read's responses before its notifications is
caught by the state machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import anyio
import pytest

from acp_sim.agent import SimAgent
from acp_sim.clock import BACKENDS, run
from acp_sim.streams import memory_duplex
from pytest_acp.harness.machine import MACHINE_PROFILE, PropertyViolation
from pytest_acp.harness.machine_run import machine_for, run_machine

from .wire_client import raw_bridge


def line(message: dict[str, Any]) -> bytes:
    return json.dumps({"jsonrpc": "2.0", **message}).encode() + b"\n"


OPENING = [
    {"id": 1, "method": "initialize", "params": {"protocolVersion": 1}},
    {"id": 2, "method": "session/new", "params": {"cwd": "/w", "mcpServers": []}},
]


def one_turn(backend: str, coalesce: bool) -> tuple[list[list[dict[str, Any]]], str]:
    """Every read of the client during one turn (each a list of messages), and the agent's trace."""

    async def main() -> tuple[list[list[dict[str, Any]]], str]:
        agent = SimAgent(MACHINE_PROFILE.model_copy(update={"coalesce_writes": coalesce}), seed=4)
        pair = memory_duplex()
        reads: list[list[dict[str, Any]]] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(agent.serve, pair.agent.receive_stream, pair.agent.send_stream)
            for message in OPENING:
                await pair.client.send(line(message))
            for _ in OPENING:
                await pair.client.receive()
            sid = agent.trace.sessions()[0]
            prompt = {"sessionId": sid, "prompt": [{"type": "text", "text": "go"}]}
            await pair.client.send(line({"id": 3, "method": "session/prompt", "params": prompt}))
            while not any(m.get("id") == 3 for read in reads for m in read):
                data = await pair.client.receive()
                reads.append([json.loads(part) for part in data.splitlines()])
            await pair.client.aclose()
        return reads, agent.trace.to_jsonl()

    return run(main, backend=backend)  # type: ignore[arg-type]


def kinds(read: list[dict[str, Any]]) -> list[str]:
    return [m["params"]["update"]["sessionUpdate"] if "method" in m else "response" for m in read]


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_final_chunk_usage_and_response_come_in_one_write(backend: str) -> None:
    reads, trace = one_turn(backend, coalesce=True)
    assert kinds(reads[-1]) == ["agent_message_chunk", "usage_update", "response"]
    assert all(len(read) == 1 for read in reads[:-1])  # the chunks before: one write each
    separate, plain = one_turn(backend, coalesce=False)
    assert [kinds(read) for read in separate][-3:] == [
        ["agent_message_chunk"],
        ["usage_update"],
        ["response"],
    ]
    assert trace == plain  # the same messages at the same times: only the writes are grouped
    assert trace == one_turn(backend, coalesce=True)[1]  # deterministic


def read(fd: int) -> bytes:
    data = os.read(fd, 65536)
    assert data, "the agent closed its output"
    return data


@pytest.mark.parametrize("backend", BACKENDS)
def test_coalesced_writes_over_stdio(backend: str) -> None:
    cmd = [sys.executable, "-m", "acp_sim", "agent", "--backend", backend, "--coalesce-writes"]
    cmd += ["--chunks", "3", "--chunk-interval", "0.01", "--session-new-latency", "0"]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdin is not None
    assert proc.stdout is not None
    try:
        for message in OPENING:
            proc.stdin.write(line(message))
        proc.stdin.flush()
        out = proc.stdout.fileno()
        buffer = b""
        while buffer.count(b"\n") < 2:
            buffer += read(out)
        (sid,) = [json.loads(p)["result"]["sessionId"] for p in buffer.splitlines() if b'"id":2' in p]
        prompt = {"sessionId": sid, "prompt": [{"type": "text", "text": "go"}]}
        proc.stdin.write(line({"id": 3, "method": "session/prompt", "params": prompt}))
        proc.stdin.flush()
        reads: list[list[str]] = []
        while not any("response" in read for read in reads):
            # One write of less than PIPE_BUF bytes is atomic: a read returns all of it or none.
            data = read(out)
            reads.append(kinds([json.loads(part) for part in data.splitlines()]))
        assert reads[-1][-3:] == ["agent_message_chunk", "usage_update", "response"]
    finally:
        proc.stdin.close()
        proc.wait()


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_client_that_handles_responses_before_notifications_is_caught(backend: str) -> None:
    machine = machine_for(raw_bridge(responses_first=True), backend=backend, fault_kinds=())
    with pytest.raises(PropertyViolation) as caught:
        run_machine(machine, examples=200, seed=0, shrink=False)
    assert caught.value.examples <= 200  # type: ignore[attr-defined]
    found = [str(v) for v in caught.value.violations]
    assert any(v.startswith("P2") and "never delivered" in v for v in found), found
    assert "coalesced writes" in str(caught.value)


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_same_client_is_fine_when_every_message_is_its_own_write(backend: str) -> None:
    machine = machine_for(
        raw_bridge(responses_first=True), backend=backend, fault_kinds=(), coalesce=(False,)
    )
    assert run_machine(machine, examples=60, seed=0).examples >= 60


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_correct_raw_bridge_passes_with_coalesced_writes(backend: str) -> None:
    machine = machine_for(raw_bridge(), backend=backend, fault_kinds=(), coalesce=(True,))
    assert run_machine(machine, examples=60, seed=0).examples >= 60
