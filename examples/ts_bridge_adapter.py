"""The adapter for examples/ts-bridge (a Node bridge on the TypeScript ACP SDK): its protocol, mapped.

pytest --acp-bridge examples.ts_bridge_adapter:bridge        (see the README section
"Testing a bridge written in another language"; buggy_bridge has --bug shared-continuation)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pytest_acp import Ack, Action, Delta, End, Observation, SubprocessBridge, Update

BRIDGE = Path(__file__).resolve().parent / "ts-bridge" / "bridge.mjs"
ACTIONS = {"open": "open", "prompt": "query", "cancel": "interrupt", "close": "close", "prewarm": "warmup"}
ACKS = {"ready": "start", "opened": "open", "interrupted": "cancel", "closed": "close", "warm": "prewarm"}


class TsBridge(SubprocessBridge):
    command = ("node", str(BRIDGE))
    agent_env = "ACP_AGENT_CMD"  # a JSON array, the bridge's own convention
    actions = frozenset({"open", "prompt", "cancel", "close", "prewarm"})
    acks = frozenset(ACKS.values())

    def request(self, action: Action) -> dict[str, Any] | None:
        kind = ACTIONS.get(action.kind)
        if kind is None:
            return None
        message: dict[str, Any] = {"type": kind, "session": action.key}
        if action.kind in ("open", "prewarm"):
            message |= {"cwd": action.cwd, "mcpServers": action.mcp_servers}
        if action.kind == "prompt":
            message["prompt"] = action.text
        return message

    def observe(self, m: dict[str, Any]) -> Observation | None:
        key, kind = m.get("session"), m.get("type")
        if kind == "text":
            return Delta(key, m["delta"])
        if kind == "tool":
            status = {"status": m["status"]} if m.get("status") else {}
            phase = "tool_call" if m["phase"] == "start" else "tool_call_update"
            return Update(key, {"sessionUpdate": phase, "toolCallId": m["id"], **status})
        if kind == "result":
            return End(key, m.get("stopReason"), m.get("usage"), m.get("error"))
        if kind in ACKS:
            return Ack(ACKS[kind], None if kind in ("ready", "warm") else key)
        if kind == "error" and m.get("for") == "query":
            return End(key, error=m["message"])
        if kind == "error" and m.get("for") in ("open", "interrupt", "close", "warmup"):
            action = {"interrupt": "cancel", "warmup": "prewarm"}.get(m["for"], m["for"])
            return Ack(action, key, error=m["message"])
        return None  # agent_restarted, fatal: the traces tell the oracle what happened


bridge = TsBridge.factory()
buggy_bridge = TsBridge.factory(args=["--bug", "shared-continuation"], name="TsBridge_shared_continuation")
