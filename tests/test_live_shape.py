"""The drift check's building block: a run reduced to its shape (recorded, simulated, synthetic traces)."""

from __future__ import annotations

import pytest

from acp_sim.agent import InProcessAgent
from acp_sim.clock import run
from acp_sim.faults import parse_fault_spec
from acp_sim.live.script import (
    MODEL_IDS,
    UNKNOWN_MODEL,
    ScriptRun,
    drift_script,
    mini_mcp_servers,
    set_model_script,
)
from acp_sim.live.shape import ASPECTS, Shape, drift, recorded_shape, trace_shape
from acp_sim.live.transcripts import RECORDED_DIR, load_transcript, recorded_transcripts, transcript_traces
from acp_sim.profile import load_profile
from acp_sim.trace import UPDATE, TraceEvent

TRANSCRIPTS = RECORDED_DIR
MCP = mini_mcp_servers(2)

# What the real adapter 0.23.1 does in the recorded transcripts, reduced to its shape. The simulated
# claude-code profile and every live run are compared with this.
RECORDED = {
    "initialize: loadSession=True sessionCapabilities=['close', 'fork', 'list', 'resume'] "
    "mcp=['http', 'sse'] promptQueueing=True authMethods=0",
    "turns: cancelled usage=none ['agent_message_chunk:empty', 'agent_message_chunk']",
    "turns: end_turn usage=nonzero ['agent_message_chunk:empty', 'agent_message_chunk', 'usage_update']",
    "turns: end_turn usage=zero []",
    "turns: error -32603 Internal error {details=Session not found} []",
    "session_updates: ['available_commands_update']",
    "restores: session/load phantom after-restart -> error -32002 Resource not found: <id> {uri=<id>}",
    "restores: session/load phantom same-process -> ok",
    "restores: session/load prompted after-restart -> ok "
    "replay=['user_message_chunk', 'agent_message_chunk']",
    "restores: session/load prompted same-process -> ok replay=['user_message_chunk']",
    "restores: session/resume phantom after-restart -> error -32002 Resource not found: <id> {uri=<id>}",
    "restores: session/resume phantom same-process -> ok",
    "restores: session/resume prompted after-restart -> ok",
    "restores: session/resume prompted same-process -> ok",
    "restores: session/resume unknown -> error -32002 Resource not found: <id> {uri=<id>}",
    "closes: session/close closed -> error -32603 Internal error {details=Session not found}",
    "closes: session/close open -> ok",
}


def test_the_recorded_transcripts_reduce_to_the_known_shape() -> None:
    assert sorted(recorded_transcripts()) == ["cancel", "concurrent", "mcp", "phantom"]
    assert set(str(recorded_shape()).splitlines()) == RECORDED


def test_one_transcript_per_agent_process() -> None:
    phantom = load_transcript(TRANSCRIPTS / "phantom.jsonl")
    assert len(phantom) == 3  # processes A, B, C
    assert all(events[0].method == "initialize" for events in phantom)
    cancel = trace_shape(load_transcript(TRANSCRIPTS / "cancel.jsonl"))
    # The one-turn-behind defect: after the cancel, an instant empty end_turn with zero usage.
    assert "end_turn usage=zero []" in cancel["turns"]
    assert cancel["restores"] == set()


def line(t: float, process: str, direction: str, msg: str) -> str:
    return f'{{"t": {t}, "agent_process": "{process}", "dir": "{direction}", "msg": {msg}}}'


def synthetic(*messages: tuple[str, str]) -> list[list[TraceEvent]]:
    return transcript_traces(line(i / 10, "A", d, m) for i, (d, m) in enumerate(messages))


IN, OUT = "client->agent", "agent->client"
NEW = '{"jsonrpc": "2.0", "id": 1, "method": "session/new", "params": {"cwd": "/w", "mcpServers": []}}'
NEW_OK = '{"jsonrpc": "2.0", "id": 1, "result": {"sessionId": "s1"}}'


def chunk(text: str) -> str:
    return (
        '{"jsonrpc": "2.0", "method": "session/update", "params": {"sessionId": "s1", "update": '
        f'{{"sessionUpdate": "agent_message_chunk", "content": {{"type": "text", "text": "{text}"}}}}}}}}'
    )


def prompt(request_id: int) -> str:
    return (
        f'{{"jsonrpc": "2.0", "id": {request_id}, "method": "session/prompt", '
        '"params": {"sessionId": "s1", "prompt": [{"type": "text", "text": "x"}]}}'
    )


def answer(request_id: int, stop: str = "end_turn") -> str:
    return f'{{"jsonrpc": "2.0", "id": {request_id}, "result": {{"stopReason": "{stop}"}}}}'


def test_turn_signatures_collapse_runs_and_show_late_updates() -> None:
    shape = trace_shape(
        synthetic(
            (IN, NEW),
            (OUT, NEW_OK),
            (IN, prompt(2)),
            (OUT, chunk("")),
            (OUT, chunk("a")),
            (OUT, chunk("b")),
            (OUT, chunk("c")),
            (OUT, answer(2)),
            (OUT, chunk("late")),
            (IN, prompt(3)),
            (OUT, answer(3, "refusal")),
        )
    )
    assert shape["turns"] == {
        "end_turn usage=none ['agent_message_chunk:empty', 'agent_message_chunk'] "
        "then ['agent_message_chunk']",
        "refusal usage=none []",
    }


def test_drift_lists_what_only_the_candidate_does() -> None:
    reference = Shape()
    reference["turns"].update({"end_turn usage=nonzero []", "cancelled usage=none []"})
    candidate = Shape()
    candidate["turns"].update({"end_turn usage=nonzero []", "end_turn usage=zero []"})
    candidate["mcp"].add("stdio servers 2 -> processes 0")
    assert drift(reference, candidate) == [
        "turns: end_turn usage=zero []",
        "mcp: stdio servers 2 -> processes 0",
    ]
    assert drift(reference, candidate, aspects=["turns"]) == ["turns: end_turn usage=zero []"]
    assert drift(candidate, reference) == ["turns: cancelled usage=none []"]
    assert set(Shape().aspects) == set(ASPECTS)


def simulated_run(seed: int = 1) -> tuple[ScriptRun, Shape]:
    """The drift script against the simulated claude-code profile, with 0.23.1's defect switched on."""

    async def main() -> tuple[ScriptRun, list[list[TraceEvent]]]:
        faults = [parse_fault_spec("one_turn_behind")]
        launcher = InProcessAgent(profile=load_profile("claude-code"), seed=seed, faults=faults)
        script = await drift_script(launcher, "/workspace/ws", MCP)
        return script, [agent.trace.events for agent in launcher.agents]

    script, traces = run(main, backend="trio")
    return script, trace_shape(traces)


def test_the_simulated_claude_code_profile_does_nothing_the_real_adapter_never_did() -> None:
    script, shape = simulated_run()
    # The transcripts record no process counts; the reference documents one process per stdio server.
    assert drift(recorded_shape(), shape, aspects=[a for a in ASPECTS if a != "mcp"]) == []
    assert shape["mcp"] == {"stdio servers 2 -> processes 2"}
    assert script.stop_reasons == {
        "alpha": "cancelled",
        "bravo": "end_turn",
        "charlie": "end_turn",
        "delta": "end_turn",
        "echo": "end_turn",
    }
    assert set(script.errors) == {"close again", "resume phantom after restart", "prompt phantom"}


@pytest.mark.parametrize("seed", [2, 3])
def test_the_simulated_shape_does_not_depend_on_the_seed(seed: int) -> None:
    assert str(simulated_run(seed)[1]) == str(simulated_run(1)[1])


def set_model_updates(events: list[TraceEvent]) -> list[list[str]]:
    """Per session/set_model request, the update kinds the agent sent between it and its answer."""
    out: list[list[str]] = []
    pending: dict[object, list[str]] = {}
    for e in events:
        if e.kind == "recv" and e.method == "session/set_model" and e.message and "method" in e.message:
            pending[e.id] = []
        elif e.kind == "send" and e.method == UPDATE and e.update_kind != "available_commands_update":
            # (the slash commands follow session/new whenever they are ready: not set_model's)
            for kinds in pending.values():
                kinds.append(e.update_kind or "?")
        elif e.kind == "send" and e.id in pending and e.message and "method" not in e.message:
            out.append(pending.pop(e.id))
    return out


def simulated_set_model() -> tuple[dict[str, str], list[list[str]]]:
    """``set_model_script`` against the simulated claude-code profile (virtual time)."""

    async def main() -> tuple[dict[str, str], list[list[str]]]:
        launcher = InProcessAgent(profile=load_profile("claude-code"))
        outcomes = await set_model_script(launcher, "/workspace/ws")
        return outcomes, set_model_updates(launcher.agents[0].trace.events)

    return run(main, backend="asyncio")


def test_simulated_set_model_outcomes() -> None:
    outcomes, updates = simulated_set_model()
    assert outcomes == {
        **{model: "result {}" for model in (*MODEL_IDS, UNKNOWN_MODEL)},
        "missing session": 'error -32603 Internal error {"details": "Session not found"}',
        "no modelId": "error -32602",
        "back to haiku": "result {}",
        "turn": "stopReason end_turn",
    }
    # The adapter's updateConfigOption: one config_option_update before each answer it gives.
    assert updates == [["config_option_update"]] * 5 + [[]] * 2 + [["config_option_update"]]
