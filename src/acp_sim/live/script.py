"""The drift-check client script: the same client actions against the simulated and the real agent.

It covers what ``shape`` compares: two sessions prompted at once (one with stdio MCP servers), a
cancel mid-stream and the two prompts after it (Claude Code 0.23.1's one-turn-behind defect shows
there), a session that never has a turn (a phantom) resumed in the same process, ``session/close``
twice, then a restart of the agent (a new launch on the same disk) and ``session/resume`` of the
phantom and of the prompted session, a prompt on the phantom, and one on the resumed session.
It drives the reference orchestrator, plus raw requests where the orchestrator would (rightly)
never send them (resuming a phantom, closing twice, prompting a session it knows is gone).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from acp_sim.errors import INVALID_PARAMS, RemoteError
from acp_sim.orchestrator import Orchestrator
from acp_sim.orchestrator.launcher import AgentLauncher

# The smallest stdio MCP server a client accepts (initialize, tools/list, ping), stdlib only, so it
# starts in milliseconds (``acp-sim mcp-server`` imports the ``mcp`` package: seconds on a busy CI
# machine, paid once per server per session by the real adapter).
MINI_MCP_SERVER = """\
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if "id" not in m or "method" not in m:
        continue
    r = {"jsonrpc": "2.0", "id": m["id"]}
    if m["method"] == "initialize":
        v = m.get("params", {}).get("protocolVersion", "2025-06-18")
        r["result"] = {"protocolVersion": v, "capabilities": {"tools": {}},
                       "serverInfo": {"name": "mini", "version": "1"}}
    elif m["method"] == "tools/list":
        r["result"] = {"tools": []}
    elif m["method"] == "ping":
        r["result"] = {}
    else:
        r["error"] = {"code": -32601, "message": "Method not found"}
    sys.stdout.write(json.dumps(r) + "\\n")
    sys.stdout.flush()
"""


def mini_mcp_servers(count: int = 2, python: str = sys.executable) -> list[dict[str, Any]]:
    """``count`` stdio MCP server entries (ACP ``mcpServers`` form) running ``MINI_MCP_SERVER``."""
    return [
        {"name": f"mini{i}", "command": python, "args": ["-c", MINI_MCP_SERVER], "env": []}
        for i in range(1, count + 1)
    ]


@dataclass
class ScriptRun:
    """What the script saw, for assertions beyond the shape."""

    sessions: dict[str, str] = field(default_factory=dict)
    """label (a, b, phantom) -> session id"""
    stop_reasons: dict[str, str | None] = field(default_factory=dict)
    usage: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)
    """turn label -> the text delivered (chunks joined)"""
    errors: dict[str, dict[str, Any]] = field(default_factory=dict)
    """request label -> the agent's error object"""


async def _request(
    orch: Orchestrator, run: ScriptRun, label: str, method: str, params: dict[str, Any]
) -> Any:
    try:
        return await orch.conn.request(method, params)
    except RemoteError as exc:
        run.errors[label] = {"code": exc.code, "message": exc.message, "data": exc.data}
        return None


async def drift_script(
    launcher: AgentLauncher,
    cwd: str,
    mcp_servers: Sequence[dict[str, Any]] = (),
    *,
    settle: Callable[[], Awaitable[None]] | None = None,
    **orchestrator: Any,
) -> ScriptRun:
    """Run the script; ``launcher`` must start a fresh agent instance on the same disk per launch.

    ``settle`` is awaited between the two prompts after the cancel. Against the real adapter it
    should wait until the model request of the first of them has ended: 0.23.1 answers that prompt
    at once while its request runs on, and a prompt sent before that request ends streams both
    answers in one turn, one sent after it streams only the previous answer (what the recorded
    transcripts show).
    """
    run = ScriptRun()
    async with Orchestrator(launcher, **orchestrator) as orch:
        a = await orch.open_session(cwd=cwd)
        b = await orch.open_session(cwd=cwd, mcp_servers=list(mcp_servers))
        run.sessions.update(a=a.id, b=b.id)
        alpha, bravo = a.prompt("ALPHA"), b.prompt("BRAVO")
        texts: list[str] = []
        async for update in alpha:
            texts.append(update.text or "")
            if update.text:  # the first real delta: cancel mid-stream
                await a.cancel()
                break
        for label, turn in (("alpha", alpha), ("bravo", bravo)):
            run.stop_reasons[label] = await turn.result()
            run.usage[label] = turn.usage
        run.texts["alpha"] = "".join(texts)
        run.texts["bravo"] = "".join(u.text or "" for u in await bravo.collect())  # buffered, delivered now
        for label in ("charlie", "delta"):
            if label == "delta" and settle is not None:
                await settle()
            turn = a.prompt(label.upper())
            run.texts[label] = "".join(u.text or "" for u in await turn.collect())
            run.stop_reasons[label] = turn.stop_reason
            run.usage[label] = turn.usage
        phantom = await orch.open_session(cwd=cwd)
        run.sessions["phantom"] = phantom.id
        await _request(orch, run, "resume phantom", "session/resume", _restore(phantom.id, cwd))
        await b.close()
        await _request(orch, run, "close again", "session/close", {"sessionId": b.id})
    async with Orchestrator(launcher, **orchestrator) as orch:
        await _request(orch, run, "resume phantom after restart", "session/resume", _restore(phantom.id, cwd))
        await _request(orch, run, "resume a after restart", "session/resume", _restore(a.id, cwd))
        prompt = {"prompt": [{"type": "text", "text": "PHANTOM"}]}
        await _request(orch, run, "prompt phantom", "session/prompt", {"sessionId": phantom.id, **prompt})
        echo = {"prompt": [{"type": "text", "text": "ECHO"}]}
        result = await _request(
            orch, run, "prompt a after restart", "session/prompt", {"sessionId": a.id, **echo}
        )
        run.stop_reasons["echo"] = result.get("stopReason") if isinstance(result, dict) else None
    return run


def _restore(session_id: str, cwd: str) -> dict[str, Any]:
    return {"sessionId": session_id, "cwd": cwd, "mcpServers": []}


# The model ids claude-agent-acp 0.23.1 lists in session/new (transcripts), then one it does not.
MODEL_IDS = ("default", "sonnet[1m]", "opus[1m]", "haiku")
UNKNOWN_MODEL = "no-such-model"


async def set_model_script(launcher: AgentLauncher, cwd: str) -> dict[str, str]:
    """``session/set_model`` as real bridges call it (after ``session/new``), against any agent.

    Returns label -> outcome (``result {...}`` or ``error CODE MESSAGE {data}``): every listed id,
    an unknown id, a session the agent does not hold, params without ``modelId``, and a turn on
    the last listed model. (A turn on the unknown id is left out: it fails at the model API, which
    an offline model stub does not reproduce.)
    """
    out: dict[str, str] = {}

    async def ask(label: str, method: str, params: dict[str, Any]) -> None:
        try:
            out[label] = f"result {json.dumps(await orch.conn.request(method, params), sort_keys=True)}"
        except RemoteError as exc:
            if exc.code == INVALID_PARAMS:  # the wording of a validation error is each SDK's own
                out[label] = f"error {exc.code}"
                return
            data = json.dumps(exc.data, sort_keys=True) if exc.data is not None else ""
            out[label] = f"error {exc.code} {exc.message} {data}".rstrip()

    async with Orchestrator(launcher) as orch:
        session = await orch.open_session(cwd=cwd)
        for model in (*MODEL_IDS, UNKNOWN_MODEL):
            await ask(model, "session/set_model", {"sessionId": session.id, "modelId": model})
        await ask("missing session", "session/set_model", {"sessionId": "not-a-session", "modelId": "haiku"})
        await ask("no modelId", "session/set_model", {"sessionId": session.id})
        await ask("back to haiku", "session/set_model", {"sessionId": session.id, "modelId": MODEL_IDS[-1]})
        turn = session.prompt("HAIKU")
        await turn.collect()
        out["turn"] = f"stopReason {turn.stop_reason}"
    return out
