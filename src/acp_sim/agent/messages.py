"""The wire shapes the simulated agent sends, built as plain dicts (the hot path cannot afford models).

Shapes copied from claude-agent-acp 0.23.1 (shared/reference/transcripts); a test validates every
message the agent sends against the ``acp.schema`` models.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from acp_sim.agent.session import SimSession
from acp_sim.errors import InternalError, JsonRpcError, MethodNotFound
from acp_sim.profile import AgentProfile

# The adapter's permission options for a tool call (same ids, kinds and order).
PERMISSION_OPTIONS = [
    {"optionId": "allow_always", "name": "Always Allow", "kind": "allow_always"},
    {"optionId": "allow", "name": "Allow", "kind": "allow_once"},
    {"optionId": "reject", "name": "Reject", "kind": "reject_once"},
]
ALLOW_OPTIONS = frozenset({"allow", "allow_always"})
# session/list's updatedAt: the store's logical clock in seconds after this instant (reproducible).
EPOCH = datetime(2025, 1, 1, tzinfo=UTC)
ZERO_USAGE = {
    "inputTokens": 0,
    "outputTokens": 0,
    "cachedReadTokens": 0,
    "cachedWriteTokens": 0,
    "totalTokens": 0,
}


def text_update(session_id: str, kind: str, text: str) -> dict[str, Any]:
    return {
        "sessionId": session_id,
        "update": {"sessionUpdate": kind, "content": {"type": "text", "text": text}},
    }


def initialize_result(protocol_version: int, name: str) -> dict[str, Any]:
    # Shape copied from claude-agent-acp 0.23.1's answer (shared/reference/transcripts).
    return {
        "protocolVersion": protocol_version,
        "agentCapabilities": {
            "_meta": {"claudeCode": {"promptQueueing": True}},
            "promptCapabilities": {"image": True, "embeddedContext": True},
            "mcpCapabilities": {"http": True, "sse": True},
            "loadSession": True,
            "sessionCapabilities": {"fork": {}, "list": {}, "resume": {}, "close": {}},
        },
        "agentInfo": {"name": name, "title": "Simulated ACP agent", "version": "0.1.0"},
        "authMethods": [],
    }


def _models(profile: AgentProfile, current: str) -> dict[str, Any]:
    available = []
    for model_id, model in profile.models.items():
        entry: dict[str, Any] = {"modelId": model_id, "name": model.name or model_id}
        if model.description is not None:
            entry["description"] = model.description
        available.append(entry)
    return {"availableModels": available, "currentModelId": current}


def _modes(profile: AgentProfile, current: str) -> dict[str, Any]:
    return {
        "currentModeId": current,
        "availableModes": [m.model_dump(exclude_none=True) for m in profile.modes],
    }


def config_options(profile: AgentProfile, session: SimSession) -> list[dict[str, Any]]:
    mode_options = [
        {"value": m.id, "name": m.name, **({"description": m.description} if m.description else {})}
        for m in profile.modes
    ]
    model_options = [
        {
            "value": model_id,
            "name": model.name or model_id,
            **({"description": model.description} if model.description else {}),
        }
        for model_id, model in profile.models.items()
    ]
    return [
        {
            "id": "mode",
            "name": "Mode",
            "description": "Session permission mode",
            "category": "mode",
            "type": "select",
            "currentValue": session.mode,
            "options": mode_options,
        },
        {
            "id": "model",
            "name": "Model",
            "description": "AI model to use",
            "category": "model",
            "type": "select",
            "currentValue": session.model_name,
            "options": model_options,
        },
    ]


def session_result(profile: AgentProfile, session: SimSession, *, created: bool) -> dict[str, Any]:
    """The result of session/new (``created``) or of session/resume and session/load.

    The adapter puts ``sessionId`` and ``models`` in all three (both are extensions for resume and
    load), with ``models`` before ``modes`` for session/new and after them otherwise.
    """
    models = _models(profile, session.model_name)
    modes = _modes(profile, session.mode)
    options = config_options(profile, session)
    if created:
        return {"sessionId": session.id, "models": models, "modes": modes, "configOptions": options}
    return {"sessionId": session.id, "modes": modes, "models": models, "configOptions": options}


def available_commands(profile: AgentProfile) -> dict[str, Any]:
    commands = []
    for command in profile.available_commands:
        entry: dict[str, Any] = {"name": command.name, "description": command.description}
        entry["input"] = {"hint": command.hint} if command.hint is not None else None
        commands.append(entry)
    return {"sessionUpdate": "available_commands_update", "availableCommands": commands}


def current_mode_update(mode: str) -> dict[str, Any]:
    return {"sessionUpdate": "current_mode_update", "currentModeId": mode}


def plan_update(session: SimSession, turn: int, entries: int, *, done: bool) -> dict[str, Any]:
    items = []
    for k in range(entries):
        status = "completed" if done else ("in_progress" if k == 0 else "pending")
        items.append(
            {
                "content": f"[{session.short} t{turn} p{k}] step {k + 1}",
                "priority": "medium",
                "status": status,
            }
        )
    return {"sessionUpdate": "plan", "entries": items}


def session_info(record: Any) -> dict[str, Any]:
    """A ``SessionInfo`` of session/list; ``updatedAt`` is the store's logical clock as ISO 8601."""
    info: dict[str, Any] = {"sessionId": record.session_id, "cwd": record.cwd}
    if record.title is not None:
        info["title"] = record.title
    info["updatedAt"] = (EPOCH + timedelta(seconds=record.updated)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return info


def config_option_update(profile: AgentProfile, session: SimSession) -> dict[str, Any]:
    """What the adapter sends after ``session/set_model`` (and set_mode): every option, current values."""
    return {"sessionUpdate": "config_option_update", "configOptions": config_options(profile, session)}


def method_not_found(method: str) -> JsonRpcError:
    """The adapter's SDK (@agentclientprotocol/sdk 0.17.0) answer for a method it has no handler for."""
    return MethodNotFound(f'"Method not found": {method}', data={"method": method})


def unknown_model_error(model_id: str) -> JsonRpcError:
    """A turn on a model id the model API does not know (after ``session/set_model`` took it).

    The CLI reports the API's 404 as an error result and the adapter answers the prompt with
    ``RequestError.internalError(undefined, result)``: -32603, the text in the message, no data.
    """
    body = json.dumps(
        {"type": "error", "error": {"type": "not_found_error", "message": f"model: {model_id}"}},
        separators=(",", ":"),
    )
    return InternalError(f"Internal error: API Error: 404 {body}")
