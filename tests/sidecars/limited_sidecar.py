"""A JSON-lines sidecar that gives its app text only (stdlib only; issue 25's done-when).

Like many real clients it has no stop reasons (a reply is text, then ``done``), no token usage and
no per-session close (``forget`` drops the key; the agent session lives until the sidecar stops).
It starts the agent once and never restarts it: when the agent dies it fails every running reply
and every later one at once. Its own reader thread on the agent's stdout routes ``session/update``
by ``sessionId``; after asking a cancel it drops the rest of that reply (the agent may still be
sending). Switches (argv) plant one defect each:

- ``after-cancel``: the rest of a cancelled reply is still passed on (a chunk after the cancel).
- ``ignore-session-id``: updates go to the key that asked last, whatever their sessionId (bleed).
- ``hang-after-death``: after the agent died, running and later replies are never failed.

Up: ready, opened, failed (open refused), text, done, error (a reply failed), stopping, forgotten;
each with ``key``. Down: open (key, cwd), say (key, text), stop (key), forget (key).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from typing import Any

modes = set(sys.argv[1:])
lock = threading.Lock()  # one lock for all state and both pipes: the reader and the main loop share them


def up(**message: Any) -> None:
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
replying: set[str] = set()  # keys whose prompt the agent has not answered
cancelled: set[str] = set()  # keys whose running reply was cancelled: its updates are dropped
last_asked: str | None = None
dead = False


def to_agent(message: dict[str, Any]) -> None:
    assert agent.stdin is not None
    try:
        agent.stdin.write(json.dumps({"jsonrpc": "2.0", **message}) + "\n")
        agent.stdin.flush()
    except (BrokenPipeError, ValueError):
        pass  # the agent is gone: the reader says so


def request(method: str, params: dict[str, Any], what: str, key: str | None) -> None:
    global next_id
    next_id += 1
    pending[next_id] = (what, key)
    to_agent({"id": next_id, "method": method, "params": params})


def on_agent(message: dict[str, Any]) -> None:
    if "method" in message and "id" in message:  # the agent asks: refuse permissions, nothing else
        params = message.get("params") or {}
        reject = [o for o in params.get("options", []) if str(o.get("kind", "")).startswith("reject")]
        outcome = (
            {"outcome": "selected", "optionId": reject[0]["optionId"]} if reject else {"outcome": "cancelled"}
        )
        to_agent({"id": message["id"], "result": {"outcome": outcome}})
        return
    if message.get("method") == "session/update":
        params = message.get("params") or {}
        key = last_asked if "ignore-session-id" in modes else key_of.get(params.get("sessionId", ""))
        update = params.get("update") or {}
        if key is None or key not in replying:
            return  # not a reply of ours (a foreign or late update)
        if key in cancelled and "after-cancel" not in modes:
            return
        if update.get("sessionUpdate") == "agent_message_chunk":
            up(type="text", key=key, text=(update.get("content") or {}).get("text", ""))
        return
    what, key = pending.pop(message.get("id"), ("?", None))
    error = message.get("error")
    if what == "new" and key is not None:
        if error is not None or not isinstance(message.get("result"), dict):
            up(type="failed", key=key, message=str(error))
        else:
            sid = message["result"]["sessionId"]
            sid_of[key], key_of[sid] = sid, key
            up(type="opened", key=key)
    elif what == "prompt" and key is not None and key in replying:
        replying.discard(key)
        cancelled.discard(key)
        if error is not None:
            up(type="error", key=key, message=str(error))
        else:
            up(type="done", key=key)  # text only: no stop reason, no usage


def read_agent() -> None:
    global dead
    assert agent.stdout is not None
    for line in agent.stdout:
        try:
            message = json.loads(line)
        except ValueError:
            continue  # a torn line: skipped
        if isinstance(message, dict):
            with lock:
                on_agent(message)
    with lock:
        dead = True
        if "hang-after-death" in modes:
            return
        for key in sorted(replying):  # no restart: every running reply fails now
            up(type="error", key=key, message="the agent exited")
        replying.clear()
        for what, key in pending.values():
            if what == "new" and key is not None:
                up(type="failed", key=key, message="the agent exited")
        pending.clear()


threading.Thread(target=read_agent, daemon=True).start()
with lock:
    request("initialize", {"protocolVersion": 1, "clientCapabilities": {}}, "init", None)
up(type="ready")
for line in sys.stdin:
    m = json.loads(line)
    kind, key = m["type"], m["key"]
    with lock:
        if kind == "open":
            if dead and "hang-after-death" not in modes:
                up(type="failed", key=key, message="the agent exited")
            else:
                request("session/new", {"cwd": m["cwd"], "mcpServers": []}, "new", key)
        elif kind == "say":
            if dead:
                if "hang-after-death" not in modes:
                    up(type="error", key=key, message="the agent exited")
                continue
            last_asked = key
            replying.add(key)
            prompt = [{"type": "text", "text": m["text"]}]
            request("session/prompt", {"sessionId": sid_of.get(key), "prompt": prompt}, "prompt", key)
        elif kind == "stop":
            if key in replying and key not in cancelled and not dead:
                cancelled.add(key)
                to_agent({"method": "session/cancel", "params": {"sessionId": sid_of[key]}})
            up(type="stopping", key=key)
        elif kind == "forget":  # no session/close: the agent session lives until the sidecar stops
            sid = sid_of.pop(key, None)
            key_of.pop(sid or "", None)
            up(type="forgotten", key=key)
agent.stdin.close()
agent.wait()
