"""The real Claude Code ACP adapter, offline: model stub, temporary HOME, tap, reference orchestrator.

Skipped with one line saying how to install it when node or the adapter is absent. Real processes:
real time. Budget: about 30 s on a 2-core machine (each adapter stop costs 2 s: it ignores the end
of its stdin, so ``SubprocessAgent`` terminates it after its grace period).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import anyio
import pytest

from acp_sim import proctree
from acp_sim.live.adapter import AdapterNotFound, adapter_env, find_adapter, inherited_to_drop, launch_argv
from acp_sim.live.harness import live_agent
from acp_sim.live.model_stub import ModelStub
from acp_sim.live.redact import Redactor
from acp_sim.live.script import drift_script, set_model_script
from acp_sim.live.shape import ASPECTS, Shape, drift, recorded_shape, trace_shape
from acp_sim.live.stub_profile import BUILTIN_STUB_PROFILES, StubProfile, StubReply, ToolUseRule
from acp_sim.orchestrator import Orchestrator, SubprocessAgent
from acp_sim.orchestrator.handlers import ClientHandler
from acp_sim.trace import TraceEvent, load_jsonl

from .test_live_shape import MCP, set_model_updates, simulated_run, simulated_set_model

REPO = Path(__file__).resolve().parent.parent
try:
    ADAPTER = find_adapter(project_root=REPO)
except AdapterNotFound as exc:
    pytest.skip(f"live mode: {exc}", allow_module_level=True)

pytestmark = pytest.mark.anyio
PLANTED = "sk-ant-api03-PLANTED-live-test-key-0123456789"
# After the model stub has served a request, time for the CLI to hand the result to the adapter.
SETTLE = 0.5


def latencies(events: list[TraceEvent]) -> dict[str, float]:
    """Seconds from each request the agent received to its answer, labelled method#n."""
    asked = {
        e.id: e
        for e in events
        if e.kind == "recv" and e.message and "method" in e.message and "id" in e.message
    }
    out: dict[str, float] = {}
    counts: dict[str, int] = {}
    for e in events:
        if e.kind == "send" and e.message and "method" not in e.message and e.id in asked:
            method = asked[e.id].method or "?"
            counts[method] = counts.get(method, 0) + 1
            out[f"{method}#{counts[method]}"] = round(e.t - asked[e.id].t, 3)
    return out


@pytest.fixture(scope="module")
def simulated() -> Shape:
    """The simulated claude-code profile's shape for the same script (virtual time, outside the live loop)."""
    return simulated_run()[1]


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_the_real_adapter_runs_the_drift_script_offline(tmp_path: Path, simulated: Shape) -> None:
    traces = tmp_path / "traces"
    async with live_agent(
        ADAPTER, profile=BUILTIN_STUB_PROFILES["transcript"], api_key=PLANTED, trace_dir=traces
    ) as live:

        async def settle() -> None:
            # Until CHARLIE's model request, which outlives its instant answer, has been served.
            assert live.stub is not None
            with anyio.fail_after(30):
                await live.stub.wait_for(lambda r: r.prompt == "CHARLIE" and r.outcome == "ok")
            await anyio.sleep(SETTLE)

        run = await drift_script(live.launcher, str(live.workspace), MCP, settle=settle)
        instances = [agent.trace.events for agent in live.launcher.agents]
        records = list(live.model_requests)
        spawned = [e.detail["pid"] for e in instances[0] if e.kind == "spawn"]  # type: ignore[index]

    # What the script saw: a cancelled turn, then 0.23.1's defect (an instant empty end_turn with
    # zero usage, then the previous prompt's text), and the phantom gone after the restart.
    a, phantom = run.sessions["a"], run.sessions["phantom"]
    assert run.stop_reasons == {
        "alpha": "cancelled",
        "bravo": "end_turn",
        "charlie": "end_turn",
        "delta": "end_turn",
        "echo": "end_turn",
    }
    assert run.texts["bravo"] == "".join(f"<BRAVO|d{i}>" for i in range(5))
    assert run.texts["charlie"] == ""
    assert run.usage["charlie"] == {
        "inputTokens": 0,
        "outputTokens": 0,
        "cachedReadTokens": 0,
        "cachedWriteTokens": 0,
        "totalTokens": 0,
    }
    assert run.texts["delta"].startswith("<CHARLIE|d0>")  # one turn behind
    assert run.errors["resume phantom after restart"] == {
        "code": -32002,
        "message": f"Resource not found: {phantom}",
        "data": {"uri": phantom},
    }
    assert run.errors["prompt phantom"] == {
        "code": -32603,
        "message": "Internal error",
        "data": {"details": "Session not found"},
    }
    assert "resume a after restart" not in run.errors

    # The model side: the cancel really aborted ALPHA's stream; the restart resumed a's history.
    by_prompt = {(r.prompt, r.outcome) for r in records if r.method == "POST"}
    assert ("ALPHA", "client_closed") in by_prompt
    assert ("BRAVO", "ok") in by_prompt
    assert ("ECHO", "ok") in by_prompt
    assert {r.auth for r in records if r.method == "POST"} == {"x-api-key"}
    assert all(r.session == a for r in records if r.prompt in ("ALPHA", "CHARLIE", "DELTA", "ECHO"))

    # The shape: exactly what the recorded transcripts show, and what the simulated claude-code
    # profile does for the same script (no drift either way).
    assert len(instances) == 2
    shape = trace_shape(instances)
    assert drift(recorded_shape(), shape, aspects=[x for x in ASPECTS if x != "mcp"]) == []
    assert shape["mcp"] == {"stdio servers 2 -> processes 2"}  # one copy per session, as recorded
    assert drift(simulated, shape) == []
    assert drift(shape, simulated) == []

    # The MCP servers of session b were found, and are gone.
    assert len(spawned) == 2
    assert len([e for e in instances[0] if e.kind == "reap"]) == 2
    assert proctree.alive(spawned) == []

    # No key anywhere we wrote.
    written = "".join(p.read_text() for p in sorted(traces.glob("*.jsonl")))
    assert len(written.splitlines()) == sum(len(events) for events in instances)
    assert PLANTED not in written
    assert PLANTED not in json.dumps([r.model_dump() for r in records])

    # Offline latencies (real seconds), for the record: pytest -s shows them.
    print("\nlive latencies (s):", json.dumps({i: latencies(events) for i, events in enumerate(instances)}))


@pytest.fixture(scope="module")
def simulated_models() -> tuple[dict[str, str], list[list[str]]]:
    """``set_model_script`` on the simulated claude-code profile (virtual time, outside the live loop)."""
    return simulated_set_model()


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_set_model_answers_as_the_simulated_claude_code_profile(
    tmp_path: Path, simulated_models: tuple[dict[str, str], list[list[str]]]
) -> None:
    async with live_agent(
        ADAPTER, profile=BUILTIN_STUB_PROFILES["transcript"], api_key=PLANTED, trace_dir=tmp_path / "traces"
    ) as live:
        outcomes = await set_model_script(live.launcher, str(live.workspace))
        updates = set_model_updates(live.launcher.agents[0].trace.events)
    assert (outcomes, updates) == simulated_models


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_a_tool_call_through_the_tap_command(tmp_path: Path) -> None:
    home = tmp_path / "home"
    workspace = home / "ws"
    workspace.mkdir(parents=True)
    trace_file = tmp_path / "tap.jsonl"
    profile = StubProfile(reply=StubReply(deltas=2), tool_use=[ToolUseRule(prompt_contains="TOOL")])
    stub = ModelStub(profile, redactor=Redactor([PLANTED]))
    async with stub.serve() as base_url:
        env = adapter_env(home, base_url=base_url, api_key=PLANTED)
        tap = [sys.executable, "-m", "acp_sim", "tap", "--backend", "trio", "--trace", str(trace_file), "--"]
        argv = tap + launch_argv(ADAPTER, [n for n in inherited_to_drop() if n not in env])
        handler = ClientHandler(permission="allow")
        async with Orchestrator(SubprocessAgent(argv, env=env, cwd=str(home)), handler=handler) as orch:
            session = await orch.open_session(cwd=str(workspace))
            turn = session.prompt("please use a TOOL")
            updates = await turn.collect()
    assert turn.stop_reason == "end_turn"
    kinds = [u.kind for u in updates]
    assert kinds.index("tool_call") < kinds.index("agent_message_chunk")
    assert (workspace / "acp-sim-tool-ran").exists()  # the CLI really ran the Bash tool
    assert [call[1] for call in handler.calls] == ["session/request_permission"]
    events = load_jsonl(trace_file.read_text().splitlines())
    asked = [e for e in events if e.method == "session/request_permission"]
    assert [e.kind for e in asked] == ["send", "recv"]  # the agent asked, the client answered
    assert asked[0].session == session.id
    assert asked[0].turn == 1
    posts = [r for r in stub.records if r.method == "POST"]
    assert [(r.tool_use, r.tool_results) for r in posts] == [("Bash", 0), (None, 1)]
    assert events[-1].kind == "exit"
    assert PLANTED not in trace_file.read_text()
