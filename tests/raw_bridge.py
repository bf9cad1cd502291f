"""A small chat backend written on the raw ACP wire, the way client authors write one, for oracle tests.

One reader task splits the agent's output into lines and routes them: responses to the request that
waits for them, ``session/update`` text to the running turn of that session (a queue per turn, the
turn's end queued behind its updates, so a turn ends after everything the agent sent before its
response). Each keyword switches on one defect that published clients have:

- ``dedup``: drops a chunk whose text already occurred in the turn (a "remove repeated deltas" fix
  that breaks on ordinary text, where ``.`` and `` the`` repeat all the time);
- ``responses_first``: handles the responses of one read before its notifications (an SDK pattern:
  resolve pending requests, then dispatch notifications), so when the agent writes its last chunks and
  the prompt response together, the turn ends before those chunks are routed and they are lost;
- ``drop_unknown``: drops updates for session ids it does not know yet (sent before ``session/new``
  was answered).

It delivers session-level updates (``available_commands_update``, ``current_mode_update``) too, as
it declares: those that arrive outside a turn are kept for the session and handed over with its
next turn, those for an id not known yet from the moment its ``session/new`` answer names it.

Without a defect it is correct for the state machine's agent without crashes and faults.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from pytest_acp.adapter import AgentUnderTest, BridgeCapabilities, TurnEnd, TurnOutput

TEXT = "agent_message_chunk"
SESSION_LEVEL = frozenset({"available_commands_update", "current_mode_update"})


@dataclass
class _End:
    result: dict[str, Any] | None
    error: str | None = None


@dataclass
class _Session:
    id: str
    turn: MemoryObjectSendStream[Any] | None = None
    sent: anyio.Event = field(default_factory=anyio.Event)
    """Set once the running turn's prompt is on the wire: a cancel must not overtake it."""
    early: list[dict[str, Any]] = field(default_factory=list)
    """Session-level updates that arrived outside a turn: handed over with the next turn."""


class RawBridge:
    capabilities = BridgeCapabilities(reconnects=False, kinds=frozenset({TEXT, *SESSION_LEVEL}))

    def __init__(self, link: Any, *, dedup: bool = False, responses_first: bool = False,
                 drop_unknown: bool = False) -> None:  # fmt: skip
        self.link = link
        self.dedup, self.responses_first, self.drop_unknown = dedup, responses_first, drop_unknown
        self.lock = anyio.Lock()
        self.next_id = 0
        self.waiting: dict[int, Callable[[dict[str, Any]], None]] = {}
        self.by_sid: dict[str, _Session] = {}
        self.by_key: dict[str, _Session] = {}
        self.unknown: dict[str, list[dict[str, Any]]] = {}
        """Updates for session ids not known yet, kept until their session/new answer names them."""
        self.closed = False

    # -- the wire ------------------------------------------------------------------------------------

    async def write(self, message: dict[str, Any]) -> None:
        async with self.lock:
            await self.link.send.send(json.dumps({"jsonrpc": "2.0", **message}).encode() + b"\n")

    async def call(
        self, method: str, params: dict[str, Any], on_answer: Callable[[dict[str, Any]], None]
    ) -> None:
        """Send a request; the reader calls ``on_answer`` with the response as it routes it."""
        self.next_id += 1
        self.waiting[self.next_id] = on_answer
        await self.write({"id": self.next_id, "method": method, "params": params})

    async def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        done = anyio.Event()
        box: list[dict[str, Any]] = []
        await self.call(method, params, lambda message: (box.append(message), done.set()))
        await done.wait()
        return box[0]

    async def read_loop(self) -> None:
        buffer = b""
        try:
            while True:
                try:
                    data = await self.link.receive.receive()
                except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
                    break
                *lines, buffer = (buffer + data).split(b"\n")
                messages = []
                for line in lines:
                    try:
                        message = json.loads(line)
                    except ValueError:
                        continue  # not JSON: skip it, as the SDKs do
                    if isinstance(message, dict):
                        messages.append(message)
                if self.responses_first:
                    messages.sort(key=lambda m: "method" in m)  # this read's responses, then the rest
                for message in messages:
                    await self.route(message)
        finally:
            self.closed = True
            for answer in list(self.waiting.values()):
                answer({"error": {"message": "the agent went away"}})
            self.waiting.clear()
            for session in self.by_sid.values():
                if session.turn is not None:
                    session.turn.send_nowait(_End(None, "the agent went away"))

    async def route(self, message: dict[str, Any]) -> None:
        method = message.get("method")
        if method is None:
            answer = self.waiting.pop(message.get("id"), None)  # type: ignore[arg-type]
            if answer is not None:
                answer(message)
        elif "id" in message:  # a request of the agent's: this client offers no fs, terminal or tools
            await self.write({"id": message["id"], "error": {"code": -32601, "message": "Method not found"}})
        elif method == "session/update":
            params = message.get("params") or {}
            sid = params.get("sessionId")
            session = self.by_sid.get(sid)
            if session is None:
                if not self.drop_unknown and isinstance(sid, str):
                    self.unknown.setdefault(sid, []).append(params)
                return
            self.deliver(session, params)

    def deliver(self, session: _Session, params: dict[str, Any]) -> None:
        update = params.get("update") or {}
        if session.turn is not None:
            session.turn.send_nowait(update)
        elif update.get("sessionUpdate") in SESSION_LEVEL:
            session.early.append(update)

    # -- the adapter ---------------------------------------------------------------------------------

    async def open_session(
        self, key: str, *, cwd: str, mcp_servers: list[dict[str, Any]], model: str | None
    ) -> None:
        answer = await self.request("session/new", {"cwd": cwd, "mcpServers": mcp_servers})
        if "error" in answer:
            raise RuntimeError(answer["error"].get("message"))
        session = _Session(answer["result"]["sessionId"])
        self.by_sid[session.id] = self.by_key[key] = session
        for params in self.unknown.pop(session.id, []):
            self.deliver(session, params)

    async def prompt(self, key: str, text: str, out: TurnOutput) -> TurnEnd:
        session = self.by_key[key]
        send: MemoryObjectSendStream[Any]
        receive: MemoryObjectReceiveStream[Any]
        send, receive = anyio.create_memory_object_stream(float("inf"))
        session.turn = send
        session.sent = anyio.Event()
        seen: set[str] = set()

        def answered(answer: dict[str, Any]) -> None:
            # The turn's end is queued as the reader routes the response: behind every update routed
            # before it.
            error = answer.get("error")
            send.send_nowait(_End(answer.get("result"), error.get("message") if error else None))

        async def ask() -> None:
            params = {"sessionId": session.id, "prompt": [{"type": "text", "text": text}]}
            await self.call("session/prompt", params, answered)
            session.sent.set()

        for update in session.early:  # first in the turn's queue; the prompt does not wait for them
            send.send_nowait(update)
        session.early = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(ask)
            async for item in receive:
                if isinstance(item, _End):
                    break
                if item.get("sessionUpdate") in SESSION_LEVEL:
                    await out.update(item)
                    continue
                if item.get("sessionUpdate") != TEXT:
                    continue
                chunk = (item.get("content") or {}).get("text", "")
                if self.dedup and chunk in seen:
                    continue
                seen.add(chunk)
                await out.text(chunk)
        if session.turn is send:
            session.turn = None
        if item.error is not None:
            return TurnEnd(error=item.error)
        return TurnEnd(stop_reason=(item.result or {}).get("stopReason"))

    async def cancel(self, key: str) -> None:
        await self.by_key[key].sent.wait()
        await self.write({"method": "session/cancel", "params": {"sessionId": self.by_key[key].id}})

    async def close(self, key: str) -> None:
        session = self.by_key.pop(key)
        if not self.closed:
            await self.request("session/close", {"sessionId": session.id})
        self.by_sid.pop(session.id, None)


def raw_bridge(**defects: bool) -> Callable[[AgentUnderTest], Any]:
    """A bridge factory for the harness: ``RawBridge`` over the agent the suite launched."""

    @asynccontextmanager
    async def factory(agent: AgentUnderTest) -> AsyncIterator[RawBridge]:
        async with agent.launcher.launch() as link, anyio.create_task_group() as tg:
            bridge = RawBridge(link, **defects)
            tg.start_soon(bridge.read_loop)
            await bridge.request("initialize", {"protocolVersion": 1, "clientCapabilities": {}})
            try:
                yield bridge
            finally:
                tg.cancel_scope.cancel()

    factory.__name__ = "raw_bridge_" + ("_".join(k for k, v in sorted(defects.items()) if v) or "correct")
    return factory
