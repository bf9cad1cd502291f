"""A small JSON-lines sidecar between an app and an ACP agent it starts itself (stdlib only).

Written like the desktop-app sidecars the real-time harness is for: its own reader thread on the
agent's stdout, its own routing of ``session/update`` by ``sessionId``, its own line protocol
upward. It never restarts a dead agent. Switches (argv) plant one defect each:

- ``hang-first-turn``: the first query is never sent to the agent and never answered.
- ``ignore-session-id``: updates go to the key that was prompted last, whatever their sessionId.
- ``no-session-close``: a close forgets the key but never sends ``session/close`` (a leak).
- ``noise``: a line that is not JSON at start (a banner).
- ``wrong-stop``: every turn is reported ended ``max_tokens``, whatever the agent said.
- ``relay-permission``: a ``session/request_permission`` is relayed up as ``permission`` and the
  agent gets the app's answer (``permission_answer``); without it the sidecar rejects at once.

Up: ready, opened, text, tool, permission, result, interrupted, closed, error (with ``session``
when it knows the key). Down: open (cwd), query, interrupt, close, permission_answer.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from typing import Any

modes = set(sys.argv[1:])
write_lock = threading.Lock()
agent_lock = threading.Lock()


def up(**message: Any) -> None:
    with write_lock:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()


agent = subprocess.Popen(
    json.loads(os.environ["ACP_AGENT_CMD"]), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
)
assert agent.stdin is not None
assert agent.stdout is not None
next_id = 0
pending: dict[int, tuple[str, str | None]] = {}  # request id -> (what, key)
sid_of: dict[str, str] = {}
key_of: dict[str, str] = {}
last_prompted: str | None = None
permissions: dict[str, Any] = {}  # relayed permission id -> the agent's request id
queries = 0
running: set[str] = set()  # keys whose prompt the agent has not answered yet


def to_agent(message: dict[str, Any]) -> None:
    with agent_lock:
        assert agent.stdin is not None
        agent.stdin.write(json.dumps({"jsonrpc": "2.0", **message}) + "\n")
        agent.stdin.flush()


def request(method: str, params: dict[str, Any], what: str, key: str | None) -> None:
    global next_id
    next_id += 1
    pending[next_id] = (what, key)
    to_agent({"id": next_id, "method": method, "params": params})


def on_agent(message: dict[str, Any]) -> None:
    if "method" in message and "id" in message:  # a request from the agent
        params = message.get("params", {})
        key = key_of.get(params.get("sessionId", ""))
        if message["method"] == "session/request_permission" and "relay-permission" in modes:
            ident = str(message["id"])
            permissions[ident] = message["id"]
            options = [o["optionId"] for o in params.get("options", [])]
            up(type="permission", session=key, id=ident, options=options)
            return
        outcome = {"outcome": "cancelled"}
        if message["method"] == "session/request_permission":
            reject = [o for o in params.get("options", []) if o.get("kind", "").startswith("reject")]
            if reject:
                outcome = {"outcome": "selected", "optionId": reject[0]["optionId"]}
        to_agent({"id": message["id"], "result": {"outcome": outcome}})
        return
    if message.get("method") == "session/update":
        params = message["params"]
        key = last_prompted if "ignore-session-id" in modes else key_of.get(params.get("sessionId", ""))
        update = params.get("update", {})
        kind = update.get("sessionUpdate")
        if key is None:
            return
        if kind == "agent_message_chunk":
            up(type="text", session=key, delta=update.get("content", {}).get("text", ""))
        elif kind in ("tool_call", "tool_call_update"):
            up(type="tool", session=key, phase=kind, id=update.get("toolCallId"), status=update.get("status"))
        return
    what, key = pending.pop(message.get("id"), ("?", None))
    error = message.get("error")
    if what == "new":
        if error:
            up(type="error", session=key, message=str(error))
        else:
            sid = message["result"]["sessionId"]
            sid_of[key], key_of[sid] = sid, key
            up(type="opened", session=key)
    elif what == "close":
        up(type="closed", session=key)
    elif what == "prompt":
        running.discard(key)
        if error:
            up(type="result", session=key, error=str(error))
        else:
            stop = "max_tokens" if "wrong-stop" in modes else message["result"].get("stopReason")
            up(type="result", session=key, stopReason=stop)


def read_agent() -> None:
    assert agent.stdout is not None
    for line in agent.stdout:
        try:
            message = json.loads(line)
        except ValueError:
            continue  # a torn line from the agent: skipped, as many clients do
        if isinstance(message, dict):
            on_agent(message)
    # The agent is gone and is never restarted: say so, with no key (the sidecar does not track
    # which turns were running).
    up(type="error", message="the agent exited")


threading.Thread(target=read_agent, daemon=True).start()
request("initialize", {"protocolVersion": 1, "clientCapabilities": {}}, "init", None)
if "noise" in modes:
    print("sidecar 1.0 starting", flush=True)
up(type="ready")
for line in sys.stdin:
    m = json.loads(line)
    kind, key = m["type"], m.get("session")
    if kind == "open":
        request("session/new", {"cwd": m["cwd"], "mcpServers": []}, "new", key)
    elif kind == "query":
        queries += 1
        if "hang-first-turn" in modes and queries == 1:
            continue
        last_prompted = key
        running.add(key)
        prompt = [{"type": "text", "text": m["prompt"]}]
        request("session/prompt", {"sessionId": sid_of.get(key), "prompt": prompt}, "prompt", key)
    elif kind == "interrupt":
        if key in running:  # a turn that already ended has nothing to cancel
            to_agent({"method": "session/cancel", "params": {"sessionId": sid_of[key]}})
        up(type="interrupted", session=key)
    elif kind == "close":
        if key in sid_of and "no-session-close" not in modes:
            request("session/close", {"sessionId": sid_of[key]}, "close", key)
        else:
            up(type="closed", session=key)
    elif kind == "permission_answer":
        ident = permissions.pop(m["id"], None)
        if ident is not None:
            outcome = {"outcome": "selected", "optionId": m["optionId"]}
            to_agent({"id": ident, "result": {"outcome": outcome}})
agent.stdin.close()
agent.wait()
