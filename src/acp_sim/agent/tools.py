"""One simulated tool call: ``tool_call``, an optional permission request, client fs/terminal calls,
then ``tool_call_update`` in_progress and completed or failed.

The agent asks the client only for what it advertised in ``initialize`` (``fs.readTextFile``,
``fs.writeTextFile``, ``terminal``), as a real agent does. Requests to the client survive a
cancelled turn (see ``SimAgent.client_call``), so a client that answers a permission request
``cancelled`` after ``session/cancel`` (as the ACP spec asks) gets its answer matched.

A tool call sees its agent only through ``ToolHost`` (what ``SimAgent`` offers it).
"""

from __future__ import annotations

import posixpath
from typing import TYPE_CHECKING, Any, Protocol

import anyio

from acp_sim.agent.messages import ALLOW_OPTIONS, PERMISSION_OPTIONS

if TYPE_CHECKING:
    from acp_sim.agent.mcp import McpSupervisor
    from acp_sim.agent.session import SimSession, Turn
    from acp_sim.clock import SimClock
    from acp_sim.errors import JsonRpcError
    from acp_sim.profile import ToolCallSpec


class ToolHost(Protocol):
    """What a tool call uses of its agent: updates, requests to the client, what the client
    advertised, the MCP children and the clock."""

    @property
    def client_fs_read(self) -> bool: ...

    @property
    def client_fs_write(self) -> bool: ...

    @property
    def client_terminal(self) -> bool: ...

    @property
    def mcp(self) -> McpSupervisor: ...

    @property
    def clock(self) -> SimClock: ...

    async def send_update(self, session_id: str, update: dict[str, Any]) -> None: ...

    async def client_call(self, method: str, params: dict[str, Any]) -> tuple[Any, JsonRpcError | None]: ...


def _outcome(result: Any) -> str | None:
    """``cancelled``, the selected option id, or None for an answer we cannot read."""
    outcome = result.get("outcome") if isinstance(result, dict) else None
    if not isinstance(outcome, dict):
        return None
    if outcome.get("outcome") == "cancelled":
        return "cancelled"
    option = outcome.get("optionId")
    return option if outcome.get("outcome") == "selected" and isinstance(option, str) else None


async def run_tool(agent: ToolHost, session: SimSession, turn: Turn, spec: ToolCallSpec, k: int) -> None:
    """Run tool call ``k`` of ``turn``; a ``cancelled`` permission outcome cancels the turn."""
    call_id = f"call_{session.short}_t{turn.number}_{k}"
    tag = f"[{session.short} t{turn.number} tool{k}]"
    path = posixpath.join(session.cwd, spec.path)
    raw_input: dict[str, Any] = {"tag": tag}
    if spec.fs is not None:
        raw_input["path"] = path
    if spec.terminal is not None:
        raw_input["command"] = spec.terminal
    if spec.mcp is not None:
        raw_input["mcp"] = {"server": spec.mcp.server, "op": spec.mcp.op}
    tool_call: dict[str, Any] = {
        "toolCallId": call_id,
        "title": spec.title,
        "kind": spec.kind,
        "status": "pending",
        "rawInput": raw_input,
    }
    if spec.fs is not None:
        tool_call["locations"] = [{"path": path}]
    await agent.send_update(session.id, {"sessionUpdate": "tool_call", **tool_call})

    if spec.permission:
        result, error = await agent.client_call(
            "session/request_permission",
            {"sessionId": session.id, "toolCall": tool_call, "options": PERMISSION_OPTIONS},
        )
        decision = None if error is not None else _outcome(result)
        if decision == "cancelled":
            # ACP: the client answers ``cancelled`` when it cancels the turn; the turn ends so.
            turn.scope.cancel()
            await anyio.lowlevel.checkpoint()
        if decision not in ALLOW_OPTIONS:
            why = "rejected" if error is None else f"permission request failed: {error}"
            await agent.send_update(session.id, _final(call_id, "failed", f"{tag} {why}"))
            return

    await agent.send_update(
        session.id, {"sessionUpdate": "tool_call_update", "toolCallId": call_id, "status": "in_progress"}
    )
    status = spec.outcome
    content: list[dict[str, Any]] = []
    if spec.fs == "read" and agent.client_fs_read:
        _, error = await agent.client_call("fs/read_text_file", {"sessionId": session.id, "path": path})
        status = "failed" if error is not None else status
    elif spec.fs == "write" and agent.client_fs_write:
        _, error = await agent.client_call(
            "fs/write_text_file",
            {"sessionId": session.id, "path": path, "content": f"{tag} written by the simulated agent\n"},
        )
        status = "failed" if error is not None else status
    if spec.terminal is not None and agent.client_terminal:
        status = await _run_terminal(agent, session, spec.terminal, content) or status
    text = f"{tag} {status}"
    if spec.mcp is not None:
        found, state = agent.mcp.use_state(session.id, spec.mcp.server, spec.mcp.op, tag)
        if not found:
            status, text = "failed", f"{tag} failed: no connected MCP server {spec.mcp.server!r}"
        else:
            text = f"{tag} {status}: {spec.mcp.server} state {state}"
    await agent.clock.sleep(spec.duration.draw(session.rng))
    await agent.send_update(session.id, _final(call_id, status, text, content))


async def _run_terminal(
    agent: ToolHost, session: SimSession, command: str, content: list[dict[str, Any]]
) -> str | None:
    """create, wait_for_exit, output, release; "failed" when the command did not exit 0."""
    argv = command.split()
    created, error = await agent.client_call(
        "terminal/create",
        {"sessionId": session.id, "command": argv[0], "args": argv[1:], "cwd": session.cwd},
    )
    terminal_id = created.get("terminalId") if isinstance(created, dict) else None
    if error is not None or not isinstance(terminal_id, str):
        return "failed"
    content.append({"type": "terminal", "terminalId": terminal_id})
    ids = {"sessionId": session.id, "terminalId": terminal_id}
    exited, error = await agent.client_call("terminal/wait_for_exit", ids)
    await agent.client_call("terminal/output", ids)
    await agent.client_call("terminal/release", ids)
    code = exited.get("exitCode") if isinstance(exited, dict) else None
    return "failed" if error is not None or code != 0 else None


def _final(
    call_id: str, status: str, text: str, content: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return {
        "sessionUpdate": "tool_call_update",
        "toolCallId": call_id,
        "status": status,
        "content": [*(content or []), {"type": "content", "content": {"type": "text", "text": text}}],
    }
