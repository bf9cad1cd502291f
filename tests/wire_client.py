"""Small ACP clients on the raw wire, written the way client authors write them, for oracle tests.

One reader task splits the agent's output into lines and routes them: a response to whoever waits
for its request id, a ``session/update`` by its ``sessionId`` to the turn running in that session
(a queue per turn, the turn's end queued behind its updates, so a turn ends after everything the
agent sent before its response); the agent's own requests are refused. It never restarts an agent
that died. Correct as written, apart from the one defect a test plants: a switch below, or a small
subclass overriding one hook (``new_session``, ``mcp_for``, ``send_prompt``, ``run_turn``,
``deliver``, ``end_of``, ``_route``, ...), so the oracle is judged on a client it did not write.

Switches (class attributes; ``factory(**switches)`` or ``raw_bridge(**switches)`` set them per run):

- ``dedup``: drops a chunk whose text already occurred in the turn (a "remove repeated deltas" fix
  that breaks on ordinary text, where ``.`` and `` the`` repeat all the time);
- ``responses_first``: handles the responses of one read before its notifications (an SDK pattern:
  resolve pending requests, then dispatch notifications), so when the agent writes its last chunks
  and the prompt response together, the turn ends before those chunks are routed and they are lost;
- ``drop_unknown``: drops updates for session ids it does not know yet (sent before ``session/new``
  was answered) instead of keeping them for the session;
- ``silent_on_death``: when the agent dies, a running turn is never told, and a prompt sent later
  waits for ever (other requests still fail at once): the defect of many clients;
- ``every_update``: passes every update kind to the caller (``out.update``), not only text;
- ``close_ends_turn``: closing a key ends its running turn at once, with an error;
- ``session_level`` (not a defect): delivers session-level updates (``available_commands_update``,
  ``current_mode_update``) too, as ``RawBridge`` declares: those that arrive outside a turn are kept
  for the session (from the moment its ``session/new`` answer names it) and handed over first with
  its next turn.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from typing import Any

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectSendStream

from acp_sim.orchestrator.launcher import AgentLink
from pytest_acp.adapter import AgentUnderTest, BridgeCapabilities, TurnEnd, TurnOutput

TEXT = "agent_message_chunk"
SESSION_LEVEL = frozenset({"available_commands_update", "current_mode_update"})
"""Session-level updates (they belong to no turn): a client with ``session_level`` hands them over."""
GONE = {"error": {"message": "the agent connection closed"}}
SWITCHES = frozenset(
    {"dedup", "responses_first", "drop_unknown", "silent_on_death", "every_update", "close_ends_turn"}
)


class WireBridge:
    """One agent connection, one agent session per key, opened by ``open_session``."""

    capabilities: BridgeCapabilities = BridgeCapabilities()
    dedup = False
    responses_first = False
    drop_unknown = True
    silent_on_death = True
    every_update = False
    session_level = False
    close_ends_turn = False

    def __init__(self, link: AgentLink, tg: TaskGroup) -> None:
        self.link = link
        self.tg = tg
        self.sids: dict[str, str] = {}
        self.cwds: dict[str, str] = {}
        self.mcp: dict[str, list[dict[str, Any]]] = {}
        self.cancelled: set[str] = set()
        self.gone = False
        self._ids = 0
        self._waiting: dict[
            int, tuple[Callable[[dict[str, Any]], None], bool]
        ] = {}  # id -> (answer, a turn's)
        self._turns: dict[str, MemoryObjectSendStream[Any]] = {}  # sid -> the running turn's queue
        self._sent: dict[str, anyio.Event] = {}  # key -> its running prompt is on the wire
        self._unknown: dict[str, list[dict[str, Any]]] = {}
        self._early: dict[str, list[dict[str, Any]]] = {}
        """Updates for session ids not known yet, kept until their session/new answer names them."""

    @classmethod
    def factory(cls, *, name: str | None = None, **options: Any) -> Any:
        """A bridge factory for the harness; ``options``: switches, and capability fields (which
        replace the class's capabilities with ``BridgeCapabilities(**fields)``)."""
        switches = {k: options.pop(k) for k in list(options) if k in SWITCHES}
        caps = BridgeCapabilities(**options) if options else None

        @asynccontextmanager
        async def bridge(agent: AgentUnderTest) -> AsyncIterator[WireBridge]:
            async with agent.launcher.launch() as link, anyio.create_task_group() as tg:
                client = cls(link, tg)
                for switch, value in switches.items():
                    setattr(client, switch, value)
                if caps is not None:
                    client.capabilities = caps
                tg.start_soon(client._read)
                await client.request("initialize", {"protocolVersion": 1, "clientCapabilities": {}})
                try:
                    yield client
                finally:
                    tg.cancel_scope.cancel()

        on = "_".join(k for k, v in sorted(switches.items()) if v)
        bridge.__name__ = bridge.__qualname__ = name or f"{cls.__name__}_{on or 'bridge'}"
        return bridge

    # -- the wire ----------------------------------------------------------------------------------

    async def write(self, message: dict[str, Any]) -> None:
        # One send per message (no lock: a lock's checkpoint would reorder concurrent writes, which
        # some planted defects depend on). Fire and forget: a write to a dead agent is lost, not raised.
        with suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
            await self.link.send.send(json.dumps({"jsonrpc": "2.0", **message}).encode() + b"\n")

    async def call(
        self,
        method: str,
        params: dict[str, Any],
        answer: Callable[[dict[str, Any]], None],
        *,
        turn: bool = False,
    ) -> None:
        """Send a request; the reader calls ``answer`` with the response as it routes it."""
        if self.gone and not (turn and self.silent_on_death):
            answer(GONE)
            return
        self._ids += 1
        self._waiting[self._ids] = (answer, turn)
        await self.write({"id": self._ids, "method": method, "params": params})

    async def request(self, method: str, params: dict[str, Any], route: Any = None) -> dict[str, Any]:
        """Send a request; its response goes to ``route`` when given (a turn's queue), else back here."""
        if route is not None:
            await self.call(method, params, lambda m: _offer(route, ("response", m)), turn=True)
            return {}
        done = anyio.Event()
        box: list[dict[str, Any]] = []
        await self.call(method, params, lambda m: (box.append(m), done.set()))
        await done.wait()
        return box[0]

    async def notify(self, method: str, params: dict[str, Any]) -> None:
        await self.write({"method": method, "params": params})

    async def _read(self) -> None:
        buffer = b""
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
                await self._route(message)
        # The agent went away (not the bridge's own stop, which cancels this task).
        self.gone = True
        for ident, (answer, turn) in list(self._waiting.items()):
            if not (turn and self.silent_on_death):
                del self._waiting[ident]
                answer(GONE)

    async def _route(self, message: dict[str, Any]) -> None:
        method = message.get("method")
        if method is None:
            waiter = self._waiting.pop(message.get("id"), None)  # type: ignore[arg-type]
            if waiter is not None:
                waiter[0](message)
        elif "id" in message:  # a request of the agent's: this client offers no fs, terminal or tools
            await self.write({"id": message["id"], "error": {"code": -32601, "message": "Method not found"}})
        elif method == "session/update":
            params = message.get("params") or {}
            sid = params.get("sessionId")
            if sid in self.sids.values() or sid in self._turns:
                self._to_turn(sid, params)
            elif not self.drop_unknown and isinstance(sid, str):
                self._unknown.setdefault(sid, []).append(params)

    def _to_turn(self, sid: str, params: dict[str, Any]) -> None:
        turn = self._turns.get(sid)
        update = params.get("update") or {}
        if turn is not None:
            _offer(turn, ("update", update))
        elif self.session_level and update.get("sessionUpdate") in SESSION_LEVEL:
            # Outside a turn (or before session/new was answered): handed over with the next turn.
            self._early.setdefault(sid, []).append(update)

    # -- the adapter -------------------------------------------------------------------------------

    async def new_session(self, key: str) -> str:
        reply = await self.request("session/new", {"cwd": self.cwds[key], "mcpServers": self.mcp_for(key)})
        if "error" in reply:
            raise RuntimeError(f"session/new: {reply['error'].get('message')}")
        return str(reply["result"]["sessionId"])

    def mcp_for(self, key: str) -> list[dict[str, Any]]:
        return self.mcp[key]

    async def open_session(
        self, key: str, *, cwd: str, mcp_servers: list[dict[str, Any]], model: str | None
    ) -> None:
        self.cwds[key] = cwd
        self.mcp[key] = mcp_servers
        self.sids[key] = sid = await self.new_session(key)
        for params in self._unknown.pop(sid, []):
            self._to_turn(sid, params)

    async def send_prompt(self, sid: str, text: str, route: Any) -> None:
        await self.request(
            "session/prompt", {"sessionId": sid, "prompt": [{"type": "text", "text": text}]}, route
        )

    async def run_turn(self, key: str, text: str, out: TurnOutput) -> dict[str, Any]:
        """One prompt in the key's session: deliver its updates, return the agent's response."""
        sid = self.sids[key]
        send, receive = anyio.create_memory_object_stream[Any](math.inf)
        self._turns[sid] = send
        for update in self._early.pop(sid, []):  # first in the turn's queue; the prompt does not wait
            send.send_nowait(("update", update))
        sent = self._sent[key] = anyio.Event()
        seen: set[str] = set()
        try:
            await self.send_prompt(sid, text, send)
            sent.set()
            async with receive:
                async for kind, item in receive:
                    if kind == "response":
                        return item  # type: ignore[no-any-return]
                    if self.every_update or (
                        self.session_level and item.get("sessionUpdate") in SESSION_LEVEL
                    ):
                        await out.update(item)
                    elif item.get("sessionUpdate") == TEXT:
                        chunk = (item.get("content") or {}).get("text", "")
                        if self.dedup and chunk in seen:
                            continue
                        seen.add(chunk)
                        await self.deliver(key, chunk, out)
        finally:
            if self._turns.get(sid) is send:
                del self._turns[sid]
        return {"error": {"message": "no answer"}}

    async def deliver(self, key: str, text: str, out: TurnOutput) -> None:
        await out.text(text)

    async def prompt(self, key: str, text: str, out: TurnOutput) -> TurnEnd:
        self.cancelled.discard(key)
        response = await self.run_turn(key, text, out)
        return self.end_of(key, response)

    def end_of(self, key: str, response: dict[str, Any]) -> TurnEnd:
        if "error" in response:
            return TurnEnd(error=str(response["error"].get("message")))
        result = response["result"]
        return TurnEnd(stop_reason=result["stopReason"], usage=result.get("usage"))

    async def cancel(self, key: str) -> None:
        self.cancelled.add(key)
        sent = self._sent.get(key)
        if sent is not None and not sent.is_set():  # (waiting on a set event would yield)
            await sent.wait()  # a cancel must not overtake its prompt
        await self.notify("session/cancel", {"sessionId": self.sids[key]})

    async def close(self, key: str) -> None:
        sid = self.sids.pop(key)
        turn = self._turns.get(sid)
        if self.close_ends_turn and turn is not None:
            turn.send_nowait(("response", {"error": {"message": "closed"}}))
        if self.gone:
            raise ConnectionError("the agent connection closed")
        await self.request("session/close", {"sessionId": sid})


class StreamingBridge(WireBridge):
    """Passes every update on and ends a key's running turn when the key is closed; declares that it
    does not reconnect, and leaves running turns waiting when the agent dies (``silent_on_death``)."""

    capabilities = BridgeCapabilities(reconnects=False)
    every_update = True
    close_ends_turn = True


def raw_bridge(**switches: bool) -> Any:
    """A text-only client that keeps early updates and fails every turn when the agent dies; declares
    that it does not reconnect. ``switches``: the defects to plant (``dedup``, ``responses_first``,
    ``drop_unknown``)."""
    return RawBridge.factory(
        name="raw_bridge_" + ("_".join(k for k, v in sorted(switches.items()) if v) or "correct"), **switches
    )


class RawBridge(WireBridge):
    capabilities = BridgeCapabilities(reconnects=False, kinds=frozenset({TEXT, *SESSION_LEVEL}))
    session_level = True
    drop_unknown = False
    silent_on_death = False


def _offer(route: Any, item: tuple[str, Any]) -> None:
    """Hand ``item`` to a turn's queue; a turn whose caller went away (its key closed mid-turn)
    takes nothing more, and what was left for it is dropped, as a real bridge drops it."""
    with suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
        route.send_nowait(item)
