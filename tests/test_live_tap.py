"""The stdio tap: forwards every byte unchanged and records the simulated agent's own trace.

The agent behind the tap here is the stdio simulated agent, which writes its own trace: whatever
the tap records must match it message for message (per direction: the two sides may interleave
the directions differently), session and turn included, with secrets redacted. Real processes:
real time, both backends.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from acp_sim.live.redact import REDACTED, Redactor
from acp_sim.live.tap import TappedAgent
from acp_sim.orchestrator import Orchestrator, SubprocessAgent
from acp_sim.trace import TraceEvent, load_jsonl

from .conftest import AGENT_CMD

# Real sockets and processes: real time, on each backend (async tests); sync tests pick a backend
# for the subprocess they start where it matters.
REAL_TIME = pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
BACKENDS = pytest.mark.parametrize("backend", ["asyncio", "trio"])
pytestmark = pytest.mark.anyio

PLANTED = "sk-ant-api03-PLANTED-tap-test-0123456789abcdef"
TAP_CMD = [sys.executable, "-m", "acp_sim", "tap"]
MCP_SERVER = {"name": "mini", "command": sys.executable, "args": ["-m", "acp_sim", "mcp-server"]}
FAST = [
    "--first-chunk-delay",
    "0",
    "--chunk-interval",
    "0.01",
    "--session-new-latency",
    "0.05",
    "--chunks",
    "3",
]


def wire(events: list[TraceEvent], direction: str) -> list[tuple[Any, ...]]:
    return [
        (e.session, e.turn, e.method, e.id, json.dumps(e.message, sort_keys=True))
        for e in events
        if e.kind == direction
    ]


async def drive(orch: Orchestrator, cwd: str) -> None:
    """Two sessions (one with a stdio MCP server carrying a secret), a turn each, a cancel, a bad line."""
    secret_server = {**MCP_SERVER, "env": [{"name": "SERVICE_API_KEY", "value": PLANTED}]}
    a = await orch.open_session(cwd=cwd)
    b = await orch.open_session(cwd=cwd, mcp_servers=[secret_server])
    ta, tb = a.prompt(f"ALPHA with {PLANTED}"), b.prompt("BRAVO")
    assert await ta.result() == "end_turn"
    assert await tb.result() == "end_turn"
    tc = a.prompt("CHARLIE")
    async for _ in tc:
        await a.cancel()
        break
    await tc.result()
    await orch.conn.send_raw(b"this is not json\n")
    td = b.prompt("DELTA")
    assert await td.result() == "end_turn"


@REAL_TIME
async def test_tapped_agent_records_what_the_agent_records(tmp_path: Path) -> None:
    agent_trace = tmp_path / "agent.jsonl"
    inner = SubprocessAgent([*AGENT_CMD, *FAST, "--trace", str(agent_trace)])
    launcher = TappedAgent(inner, redactor=Redactor([PLANTED]), trace_dir=str(tmp_path / "tap"))
    async with Orchestrator(launcher) as orch:
        await drive(orch, str(tmp_path))
    [instance] = launcher.agents
    tapped = instance.trace.events
    truth = load_jsonl(agent_trace.read_text().splitlines())
    for direction in ("send", "recv"):
        got, want = wire(tapped, direction), wire(truth, direction)
        redacted_want = [(*w[:4], w[4].replace(PLANTED, REDACTED)) for w in want]
        assert got == redacted_want, direction
    assert PLANTED in agent_trace.read_text()  # the agent really got the secret: only the record is redacted
    on_disk = (tmp_path / "tap" / "trace-0.jsonl").read_text()
    assert PLANTED not in on_disk
    assert REDACTED in on_disk
    assert load_jsonl(on_disk.splitlines()) == tapped
    # Both sides saw the bad line; the agent answered it with a parse error the tap recorded as sent.
    assert len([e for e in tapped if e.kind == "bad_input"]) == 1
    assert len([e for e in truth if e.kind == "bad_input"]) == 1
    # The probe found the MCP server the agent spawned for session b, as the agent itself recorded it.
    tap_spawns = [(e.session, e.detail["name"]) for e in tapped if e.kind == "spawn"]  # type: ignore[index]
    agent_spawns = [(e.session, e.detail["name"]) for e in truth if e.kind == "spawn"]  # type: ignore[index]
    assert tap_spawns == agent_spawns
    assert len(tap_spawns) == 1
    assert tapped[0].kind == "agent_start"
    assert tapped[-1].kind == "exit"
    assert tapped[-1].detail == {"returncode": 0, "pid": instance.pid}
    # ...and saw it go when the agent stopped (a reap before the exit marker).
    assert [e.session for e in tapped if e.kind == "reap"] == [tap_spawns[0][0]]


@REAL_TIME
async def test_the_tap_command_between_a_client_and_an_agent(tmp_path: Path, anyio_backend: str) -> None:
    agent_trace, tap_trace = tmp_path / "agent.jsonl", tmp_path / "tap-{pid}.jsonl"
    argv = [*TAP_CMD, "--backend", anyio_backend, "--trace", str(tap_trace), "--"]
    argv += [*AGENT_CMD, *FAST, "--trace", str(agent_trace)]
    launcher = SubprocessAgent(argv, env={"ANTHROPIC_API_KEY": PLANTED})
    async with Orchestrator(launcher) as orch:
        await drive(orch, str(tmp_path))
        tap_pid = orch.link.pid if orch.link is not None else None
    written = tmp_path / f"tap-{tap_pid}.jsonl"
    tapped = load_jsonl(written.read_text().splitlines())
    truth = load_jsonl(agent_trace.read_text().splitlines())
    for direction in ("send", "recv"):
        want = [(*w[:4], w[4].replace(PLANTED, REDACTED)) for w in wire(truth, direction)]
        assert wire(tapped, direction) == want, direction
    # The key came from the tap's own environment (ANTHROPIC_API_KEY): registered and redacted.
    assert PLANTED not in written.read_text()
    assert tapped[-1].kind == "exit"
    assert tapped[-1].detail["returncode"] == 0  # type: ignore[index]
    assert [e.kind for e in tapped].count("spawn") == 1


@BACKENDS
def test_the_tap_command_passes_the_exit_code_and_bytes_through(tmp_path: Path, backend: str) -> None:
    trace = tmp_path / "t.jsonl"
    script = "import sys; data = sys.stdin.buffer.read(); sys.stdout.buffer.write(data[::-1]); sys.exit(3)"
    payload = b'{"jsonrpc":"2.0","id":1,"method":"x"}\n\xff\xfe not utf-8\n{"partial":'
    result = subprocess.run(
        [*TAP_CMD, "--backend", backend, "--trace", str(trace), "--", sys.executable, "-c", script],
        input=payload,
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 3
    assert result.stdout == payload[::-1]  # unchanged, byte for byte (reversed by the child)
    events = load_jsonl(trace.read_text().splitlines())
    kinds = [e.kind for e in events]
    assert kinds[0] == "agent_start"
    assert kinds[-1] == "exit"
    assert kinds.count("recv") == 1
    assert kinds.count("bad_input") == 2  # the invalid line, and the partial one at EOF
    assert "bad_output" in kinds  # the child's reversed bytes are not JSON-RPC either


def test_the_tap_command_without_an_agent(tmp_path: Path) -> None:
    missing = subprocess.run(
        [*TAP_CMD, "--trace", str(tmp_path / "t"), "--", "/nonexistent/agent"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 127
    assert "cannot start" in missing.stderr
    empty = subprocess.run(
        [*TAP_CMD, "--trace", str(tmp_path / "t")], capture_output=True, text=True, timeout=60
    )
    assert empty.returncode == 2
    assert "no agent command" in empty.stderr


@BACKENDS
def test_a_sigterm_to_the_tap_reaches_the_agent(tmp_path: Path, backend: str) -> None:
    ready = tmp_path / "ready"
    script = f"import pathlib, time; pathlib.Path({str(ready)!r}).write_text('x'); time.sleep(60)"
    proc = subprocess.Popen(
        [
            *TAP_CMD,
            "--backend",
            backend,
            "--trace",
            str(tmp_path / "t.jsonl"),
            "--",
            sys.executable,
            "-c",
            script,
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert ready.exists()
        proc.terminate()
        # The agent died of the forwarded SIGTERM; the tap exits 128 + 15, as a shell would report it.
        assert proc.wait(timeout=20) == 143
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_the_redactor() -> None:
    redactor = Redactor(["hunter2-long-secret"])
    message = {
        "params": {
            "mcpServers": [
                {"env": [{"name": "GITHUB_TOKEN", "value": "ghp_x"}, {"name": "PATH", "value": "/bin"}]},
                {"headers": [{"name": "Authorization", "value": "Bearer abc.def.ghi"}], "url": "http://x"},
            ],
            "_meta": {"apiKey": "k", "password": "p", "note": "the hunter2-long-secret is here"},
            "usage": {"inputTokens": 5, "totalTokens": 9},
            "text": "task-abcdefghijklmnopqrstuvwxyz stays; sk-ant-api03-abcdefgh goes",
        }
    }
    out = redactor.value(message)
    servers = out["params"]["mcpServers"]
    assert servers[0]["env"] == [
        {"name": "GITHUB_TOKEN", "value": REDACTED},
        {"name": "PATH", "value": "/bin"},
    ]
    assert servers[1]["headers"] == [{"name": "Authorization", "value": REDACTED}]
    assert out["params"]["_meta"] == {
        "apiKey": REDACTED,
        "password": REDACTED,
        "note": f"the {REDACTED} is here",
    }
    assert out["params"]["usage"] == {"inputTokens": 5, "totalTokens": 9}
    assert out["params"]["text"] == f"task-abcdefghijklmnopqrstuvwxyz stays; {REDACTED} goes"
    assert message["params"]["_meta"]["apiKey"] == "k"  # a copy: the original is untouched
    assert redactor.headers([("x-api-key", "k"), ("Accept", "json")]) == {
        "x-api-key": REDACTED,
        "Accept": "json",
    }
    assert (
        Redactor.from_env({"ANTHROPIC_API_KEY": "plain-key-value"}).text("a plain-key-value b")
        == f"a {REDACTED} b"
    )


@REAL_TIME
async def test_a_launch_that_fails_leaves_no_instance(tmp_path: Path) -> None:
    launcher = TappedAgent(SubprocessAgent(["/nonexistent/agent"]))
    with pytest.raises(FileNotFoundError):
        async with launcher.launch():
            pass  # pragma: no cover
    assert launcher.agents == []


@REAL_TIME
async def test_the_callers_error_passes_through_unwrapped_and_the_exit_is_recorded() -> None:
    launcher = TappedAgent(SubprocessAgent(AGENT_CMD))

    async def fail() -> None:
        async with launcher.launch():
            raise LookupError("the caller's own")

    with pytest.raises(LookupError, match="the caller's own"):
        await fail()
    [instance] = launcher.agents
    assert [e.kind for e in instance.trace.events] == ["agent_start", "exit"]
    assert instance.returncode is not None
