"""A small bridge on the raw ACP wire, written the way client libraries are, for oracle tests.

One reader task parses JSON lines from the agent and routes them: a response by its request id, a
``session/update`` by its ``sessionId`` to the turn running in that session; the agent's own
requests are refused. Each test subclasses it and plants exactly one defect (an override of one
method), so the oracle is judged on a bridge it did not write, not on our reference orchestrator.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectSendStream

from acp_sim.orchestrator.launcher import AgentLink
from pytest_acp.adapter import AgentUnderTest, BridgeCapabilities, TurnEnd, TurnOutput


class WireBridge:
    """One agent connection, one agent session per key, opened by ``open_session``."""

    capabilities: BridgeCapabilities = BridgeCapabilities()

    def __init__(self, link: AgentLink, tg: TaskGroup) -> None:
        self.link = link
        self.tg = tg
        self.sids: dict[str, str] = {}
        self.cwds: dict[str, str] = {}
        self.mcp: dict[str, list[dict[str, Any]]] = {}
        self.cancelled: set[str] = set()
        self._ids = 0
        self._pending: dict[int, MemoryObjectSendStream[Any]] = {}
        self._turns: dict[str, MemoryObjectSendStream[Any]] = {}

    @classmethod
    def factory(cls) -> Any:
        @asynccontextmanager
        async def bridge(agent: AgentUnderTest) -> AsyncIterator[WireBridge]:
            async with agent.launcher.launch() as link, anyio.create_task_group() as tg:
                adapter = cls(link, tg)
                tg.start_soon(adapter._read)
                await adapter.request("initialize", {"protocolVersion": 1, "clientCapabilities": {}})
                yield adapter
                tg.cancel_scope.cancel()

        return bridge

    # -- the wire ----------------------------------------------------------------------------------

    async def write(self, message: dict[str, Any]) -> None:
        await self.link.send.send(json.dumps({"jsonrpc": "2.0", **message}).encode() + b"\n")

    async def request(self, method: str, params: dict[str, Any], route: Any = None) -> dict[str, Any]:
        """Send a request; its response goes to ``route`` when given (a turn's stream), else back here."""
        self._ids += 1
        ident = self._ids
        send, receive = anyio.create_memory_object_stream[Any](1)
        self._pending[ident] = route or send
        await self.write({"id": ident, "method": method, "params": params})
        if route is not None:
            return {}
        async with receive:
            _kind, response = await receive.receive()
            return response

    async def notify(self, method: str, params: dict[str, Any]) -> None:
        await self.write({"method": method, "params": params})

    async def _read(self) -> None:
        buffer = b""
        while True:
            try:
                buffer += await self.link.receive.receive()
            except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
                return
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if line.strip():
                    await self._route(json.loads(line))

    async def _route(self, message: dict[str, Any]) -> None:
        if "method" not in message:
            target = self._pending.pop(message.get("id"), None)
            if target is not None:
                target.send_nowait(("response", message))
        elif message["method"] == "session/update":
            turn = self._turns.get(message["params"].get("sessionId"))
            if turn is not None:
                turn.send_nowait(("update", message["params"]["update"]))
        elif "id" in message:
            await self.write({"id": message["id"], "error": {"code": -32601, "message": "not supported"}})

    # -- the adapter -------------------------------------------------------------------------------

    async def new_session(self, key: str) -> str:
        reply = await self.request("session/new", {"cwd": self.cwds[key], "mcpServers": self.mcp_for(key)})
        return str(reply["result"]["sessionId"])

    def mcp_for(self, key: str) -> list[dict[str, Any]]:
        return self.mcp[key]

    async def open_session(
        self, key: str, *, cwd: str, mcp_servers: list[dict[str, Any]], model: str | None
    ) -> None:
        self.cwds[key] = cwd
        self.mcp[key] = mcp_servers
        self.sids[key] = await self.new_session(key)

    async def send_prompt(self, sid: str, text: str, route: Any) -> None:
        await self.request(
            "session/prompt", {"sessionId": sid, "prompt": [{"type": "text", "text": text}]}, route
        )

    async def run_turn(self, key: str, text: str, out: TurnOutput) -> dict[str, Any]:
        """One prompt in the key's session: deliver its text chunks, return the agent's response."""
        sid = self.sids[key]
        send, receive = anyio.create_memory_object_stream[Any](math.inf)
        self._turns[sid] = send
        await self.send_prompt(sid, text, send)
        async with receive:
            async for kind, item in receive:
                if kind == "response":
                    return item
                if item.get("sessionUpdate") == "agent_message_chunk":
                    await self.deliver(key, item["content"]["text"], out)
        raise AssertionError("unreachable")

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
        await self.notify("session/cancel", {"sessionId": self.sids[key]})

    async def close(self, key: str) -> None:
        await self.request("session/close", {"sessionId": self.sids.pop(key)})
