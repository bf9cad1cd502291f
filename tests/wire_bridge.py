"""A small ACP client written on the raw wire, as a new user would write one, for oracle tests.

Its own line reader over the launched agent's byte streams, its own JSON-RPC id routing, one queue
of updates per agent session. It is correct as written (it passes the property suite's properties
on the runs the tests make) apart from what a test subclass breaks on purpose; it never restarts
an agent that died (it declares ``reconnects`` as the test asks).
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectSendStream

from acp_sim.orchestrator.launcher import AgentLink
from pytest_acp.adapter import AgentUnderTest, BridgeCapabilities, TurnEnd, TurnOutput

DONE = object()


class WireBridge:
    capabilities = BridgeCapabilities(reconnects=False)

    def __init__(self, link: AgentLink, tg: TaskGroup) -> None:
        self.link, self.tg = link, tg
        self.ids: dict[str, str] = {}
        self.pending: dict[int, Any] = {}  # request id -> [event, reply]
        self.streams: dict[str, MemoryObjectSendStream[Any]] = {}
        self.prompt_ids: dict[int, str] = {}
        self.next_id = 0
        self.buffer = b""
        self.lock = anyio.Lock()
        self.gone = False

    async def read(self) -> None:
        try:
            while True:
                while b"\n" not in self.buffer:
                    self.buffer += await self.link.receive.receive()
                line, self.buffer = self.buffer.split(b"\n", 1)
                try:
                    message = json.loads(line)
                except ValueError:
                    continue
                await self.on_message(message)
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
            # The agent went away: requests waiting for an answer fail; this client never starts
            # another agent, and says nothing to turns that are streaming (the defect of many).
            self.gone = True
            for waiter in self.pending.values():
                waiter[1] = {"error": {"message": "the agent connection closed"}}
                waiter[0].set()
            self.pending.clear()
            await self.on_agent_gone()

    async def on_agent_gone(self) -> None:
        """The agent's connection ended (this client logs it; turns are not told)."""

    async def on_message(self, message: dict[str, Any]) -> None:
        if "id" in message and ("result" in message or "error" in message):
            rid = message["id"]
            sid = self.prompt_ids.pop(rid, None)
            if sid is not None and sid in self.streams:
                await self.streams[sid].send((DONE, message))
            waiter = self.pending.pop(rid, None)
            if waiter is not None:
                waiter[1] = message
                waiter[0].set()
        elif message.get("method") == "session/update":
            params = message.get("params") or {}
            stream = self.streams.get(params.get("sessionId"))
            if stream is not None:
                await stream.send(params.get("update"))
        elif "id" in message:  # a request from the agent this client does not serve
            await self.write(
                {"jsonrpc": "2.0", "id": message["id"], "error": {"code": -32601, "message": "no"}}
            )

    async def write(self, message: dict[str, Any]) -> None:
        # Fire and forget, like a writer task: a write to a dead agent is logged, not raised.
        async with self.lock:
            with suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
                await self.link.send.send(json.dumps(message).encode() + b"\n")

    async def request(self, method: str, params: dict[str, Any], *, prompt_for: str | None = None) -> Any:
        if self.gone and prompt_for is None:
            raise ConnectionError("the agent connection closed")
        self.next_id += 1
        rid = self.next_id
        waiter = [anyio.Event(), None]
        self.pending[rid] = waiter
        if prompt_for is not None:
            self.prompt_ids[rid] = prompt_for
        await self.write({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
        if prompt_for is not None:
            return None
        await waiter[0].wait()
        reply = waiter[1]
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error'].get('message')}")
        return reply.get("result")

    # -- the adapter --------------------------------------------------------------------------------

    async def open_session(
        self, key: str, *, cwd: str, mcp_servers: list[dict[str, Any]], model: str | None
    ) -> None:
        result = await self.request("session/new", {"cwd": cwd, "mcpServers": mcp_servers})
        self.ids[key] = result["sessionId"]

    async def prompt(self, key: str, text: str, out: TurnOutput) -> TurnEnd:
        sid = self.ids[key]
        send, receive = anyio.create_memory_object_stream[Any](math.inf)
        self.streams[sid] = send
        params = {"sessionId": sid, "prompt": [{"type": "text", "text": text}]}
        await self.request("session/prompt", params, prompt_for=sid)
        try:
            async with receive:
                async for item in receive:
                    if isinstance(item, tuple) and item[0] is DONE:
                        reply = item[1]
                        if "error" in reply:
                            return TurnEnd(error=str(reply["error"].get("message")))
                        return TurnEnd(stop_reason=reply["result"].get("stopReason"))
                    await out.update(item)
            return TurnEnd(error="no answer")
        finally:
            if self.streams.get(sid) is send:
                del self.streams[sid]

    async def cancel(self, key: str) -> None:
        await self.write(
            {"jsonrpc": "2.0", "method": "session/cancel", "params": {"sessionId": self.ids[key]}}
        )

    async def close(self, key: str) -> None:
        sid = self.ids.pop(key)
        stream = self.streams.pop(sid, None)
        if stream is not None:
            await stream.send((DONE, {"error": {"message": "closed"}}))
        await self.request("session/close", {"sessionId": sid})

    @classmethod
    def factory(cls, **caps: Any) -> Any:
        @asynccontextmanager
        async def bridge(agent: AgentUnderTest) -> AsyncIterator[WireBridge]:
            async with agent.launcher.launch() as link, anyio.create_task_group() as tg:
                client = cls(link, tg)
                if caps:
                    client.capabilities = BridgeCapabilities(**caps)
                tg.start_soon(client.read)
                await client.request("initialize", {"protocolVersion": 1, "clientCapabilities": {}})
                yield client
                tg.cancel_scope.cancel()

        bridge.__name__ = bridge.__qualname__ = f"{cls.__name__}_bridge"
        return bridge
