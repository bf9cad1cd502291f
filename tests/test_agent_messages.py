"""Every kind of message the agent sends parses, losslessly, with the acp.schema models.

The hot path builds plain dicts for speed; this test is what keeps them honest. One scenario
exercises every response, update, agent-to-client request and error the agent can send.
"""

from __future__ import annotations

import anyio
import pytest

from acp_sim.agent import InProcessAgent
from acp_sim.faults import parse_fault_spec
from acp_sim.profile import CLAUDE_CODE, ToolCallSpec

from .test_agent_support import ALL_CAPS, REQUEST_MODELS, RESULT_MODELS, connect, schema_problems

pytestmark = pytest.mark.anyio

WS = {"cwd": "/w", "mcpServers": []}


async def test_every_message_the_agent_sends_parses_with_the_schema_models() -> None:
    tools = [
        ToolCallSpec(after_chunk=1, kind="edit", permission=True, fs="write"),
        ToolCallSpec(after_chunk=2, kind="read", fs="read"),
        ToolCallSpec(after_chunk=3, kind="execute", terminal="make test", outcome="failed"),
    ]
    turn = CLAUDE_CODE.models["default"].turn.model_copy(
        update={"thought_chunks": 2, "plan_entries": 3, "tool_calls": tools, "late_updates_after_cancel": 1}
    )
    model = CLAUDE_CODE.models["default"].model_copy(update={"turn": turn})
    profile = CLAUDE_CODE.model_copy(
        update={
            "models": {**CLAUDE_CODE.models, "default": model},
            "faults": [
                parse_fault_spec("one_turn_behind:session=1"),
                parse_fault_spec("foreign_session_update:at=30"),
            ],
        }
    )
    launcher = InProcessAgent(profile, seed=1)
    async with connect(launcher, capabilities=ALL_CAPS) as client:
        a = await client.new_session()
        b = await client.new_session()
        await client.prompt(a, "first")
        await client.prompt_and_cancel(b, 4, "to cancel")
        await client.prompt(b, "behind")
        await client.prompt(b, "behind again")
        await client.c.request("session/load", {"sessionId": a, **WS})
        await client.c.request("session/resume", {"sessionId": a, **WS})
        await client.c.request("session/list", {})
        await client.c.request("session/fork", {"sessionId": a, **WS})
        await client.c.request("session/set_mode", {"sessionId": a, "modeId": "acceptEdits"})
        await client.c.request(
            "session/set_config_option", {"sessionId": a, "configId": "model", "value": "haiku"}
        )
        await client.c.request("session/close", {"sessionId": a})
        await client.error_of("session/close", {"sessionId": a})
        await client.error_of("session/resume", {"sessionId": "unknown", **WS})
        await client.error_of("session/set_mode", {"sessionId": b, "modeId": "nope"})
        await anyio.sleep(30)
    events = launcher.current.trace.events
    assert schema_problems(events) == []
    sent = [e for e in events if e.kind == "send" and e.message is not None]
    responses = {e.method for e in sent if "result" in e.message}  # type: ignore[operator]
    requests = {e.method for e in sent if "method" in e.message and e.id is not None}  # type: ignore[operator]
    updates = {e.update_kind for e in sent if e.update_kind is not None}
    assert responses == set(RESULT_MODELS)
    assert requests == set(REQUEST_MODELS)
    assert updates == {
        "agent_message_chunk", "agent_thought_chunk", "plan", "tool_call", "tool_call_update",
        "usage_update", "available_commands_update", "user_message_chunk",
    }  # fmt: skip
    assert {e.message["error"]["code"] for e in sent if "error" in e.message} == {-32603, -32002, -32602}  # type: ignore[index, operator]
    statuses = {
        e.message["params"]["update"].get("status") for e in sent if e.update_kind == "tool_call_update"
    }  # type: ignore[index]
    assert statuses == {"in_progress", "completed", "failed"}
