"""SIGTERM and SIGINT mid-turn: ``acp-sim agent`` records its exit, reaps its MCP children, then exits.

The agent runs as a bare process in its own session (no launcher whose process-group kill would
tidy up after it) and the signal goes to its pid alone, as a supervisor or ``kill`` sends it; the
leak guard then looks for any process it started, orphans included.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import anyio
import pytest

from acp_sim.orchestrator.launcher import AgentLink
from acp_sim.trace import load_jsonl
from pytest_acp.harness import leakguard

from .test_agent_envelope import Raw

AGENT = [sys.executable, "-m", "acp_sim", "agent", "--session-new-latency", "0.01"]
LONG_TURN = ("--chunks", "400", "--chunk-interval", "0.05")  # 20 s: the signal lands mid-turn
MCP = [sys.executable, "-m", "acp_sim", "mcp-server"]
SERVERS = [{"name": f"mini{i}", "command": MCP[0], "args": MCP[1:], "env": []} for i in (1, 2)]


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_a_signal_mid_turn_records_the_exit_and_leaves_no_child(signum: int, tmp_path: Path) -> None:
    trace = tmp_path / "trace.jsonl"
    guard = leakguard.LeakGuard.start(orphans=True)
    process = await anyio.open_process([*AGENT, *LONG_TURN, "--trace", str(trace)], start_new_session=True)
    try:
        assert process.stdout is not None
        assert process.stdin is not None
        raw = Raw(AgentLink(process.stdout, process.stdin, "agent", process.pid))
        await raw.call(1, "initialize", {"protocolVersion": 1})
        sid = (await raw.call(2, "session/new", {"cwd": "/w", "mcpServers": SERVERS}))["result"]["sessionId"]
        await raw.send(
            {
                "jsonrpc": "2.0",
                "id": 3,
                "method": "session/prompt",
                "params": {"sessionId": sid, "prompt": [{"type": "text", "text": "hi"}]},
            }
        )
        await raw.until(lambda m: m.get("method") == "session/update" and "content" in m["params"]["update"])
        guard.observe()
        os.kill(process.pid, signum)
        with anyio.fail_after(20):
            code = await process.wait()
        leaked = guard.leaked()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await process.aclose()
    leakguard.kill(leaked)  # so a failure here does not leave them running for the next test
    assert leaked == [], leakguard.describe(leaked)
    assert code == 128 + signum
    events = load_jsonl(trace.read_text().splitlines())
    kinds = [e.kind for e in events]
    assert kinds[-3:] == ["reap", "reap", "exit"]
    name = signal.Signals(signum).name
    assert events[-1].detail == {"reason": "signal", "code": 128 + signum, "signal": name}
    reaps = [e.detail["reason"] for e in events if e.kind == "reap" and e.detail]
    assert reaps == ["agent_exit", "agent_exit"]
