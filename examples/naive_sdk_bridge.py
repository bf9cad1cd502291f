"""A multi-session chat backend built directly on the official ACP Python SDK, the way people
naturally write one: one ``ClientSideConnection``, a queue per session for the streamed text, one
``ask()`` per user message. It works in a demo. ``pytest --acp-sim`` finds what it gets wrong (see
the README, "What the suite finds in a naive SDK bridge").

Deliberately left as written; the adapter that puts it under test is ``naive_sdk_adapter.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from acp import PROTOCOL_VERSION, connect_to_agent, spawn_agent_process, text_block
from acp.schema import AgentMessageChunk, AllowedOutcome, RequestPermissionResponse


class NaiveBridge:
    """One agent connection shared by many chat sessions."""

    def __init__(self) -> None:
        self.conn: Any = None
        self.queues: dict[str, asyncio.Queue[str]] = {}
        self.stop_reasons: dict[str, str] = {}

    # -- the SDK's Client interface ---------------------------------------------------------------

    async def session_update(self, session_id: str, update: Any, **kwargs: Any) -> None:
        if isinstance(update, AgentMessageChunk) and session_id in self.queues:
            await self.queues[session_id].put(update.content.text)

    async def request_permission(self, session_id: str, tool_call: Any, options: Any, **kwargs: Any) -> Any:
        return RequestPermissionResponse(
            outcome=AllowedOutcome(outcome="selected", option_id=options[0].option_id)
        )

    def on_connect(self, conn: Any) -> None:
        pass

    # -- starting ---------------------------------------------------------------------------------

    @classmethod
    @asynccontextmanager
    async def spawn(cls, *command: str) -> AsyncIterator[NaiveBridge]:
        """Start the agent as a child process (the usual way)."""
        bridge = cls()
        async with spawn_agent_process(bridge, *command) as (conn, _process):
            await bridge._start(conn)
            yield bridge

    @classmethod
    @asynccontextmanager
    async def over(cls, transport: Any) -> AsyncIterator[NaiveBridge]:
        """Use an agent connection someone else opened (an SDK ``Transport``)."""
        bridge = cls()
        conn = connect_to_agent(bridge, transport)
        try:
            await bridge._start(conn)
            yield bridge
        finally:
            await conn.close()

    async def _start(self, conn: Any) -> None:
        self.conn = conn
        await conn.initialize(protocol_version=PROTOCOL_VERSION)

    # -- chatting ---------------------------------------------------------------------------------

    async def new_session(self, cwd: str, mcp_servers: list[Any] | None = None) -> str:
        response = await self.conn.new_session(cwd=cwd, mcp_servers=mcp_servers or [])
        return str(response.session_id)

    async def ask(self, session_id: str, text: str) -> AsyncIterator[str]:
        """Stream the agent's answer to ``text`` as it arrives."""
        queue: asyncio.Queue[str] = asyncio.Queue()
        self.queues[session_id] = queue
        answer = asyncio.create_task(self.conn.prompt(session_id=session_id, prompt=[text_block(text)]))
        while not answer.done():
            chunk = asyncio.create_task(queue.get())
            await asyncio.wait({chunk, answer}, return_when=asyncio.FIRST_COMPLETED)
            if chunk.done():
                yield chunk.result()
            else:
                chunk.cancel()
        while not queue.empty():
            yield queue.get_nowait()
        self.stop_reasons[session_id] = str((await answer).stop_reason)

    async def cancel(self, session_id: str) -> None:
        await self.conn.cancel(session_id=session_id)

    async def close(self, session_id: str) -> None:
        self.queues.pop(session_id, None)
