"""The official ACP Python SDK (``acp``) over the agent the suite launched.

A bridge built on the SDK talks to its agent through a ``ClientSideConnection``; the suite hands
an adapter factory an ``AgentUnderTest`` whose launcher yields anyio byte streams (the in-process
simulated agent on virtual time, or a process). ``LinkTransport`` is the SDK's message
``Transport`` over those streams, framed like the SDK's own stdio transport (one JSON object per
line, lines that are not JSON skipped), and ``connect`` opens a ``ClientSideConnection`` on it::

    from pytest_acp.sdk import connect

    @asynccontextmanager
    async def bridge(agent):
        async with agent.launcher.launch() as link, connect(MyClient(), link) as conn:
            yield MyAdapter(conn)

    bridge.backends = ("asyncio",)  # the SDK is built on asyncio

(``examples/naive_sdk_adapter.py`` is a whole adapter built this way.)
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from acp import connect_to_agent
from acp.client.connection import ClientSideConnection

from acp_sim.orchestrator.launcher import AgentLink

__all__ = ["LinkTransport", "connect"]

# What a closed or broken byte stream raises: the agent went away, the SDK sees end of stream.
_GONE = (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError)


class LinkTransport:
    """The SDK's message ``Transport`` (``acp._transport.Transport``) over an agent's byte streams."""

    def __init__(self, link: AgentLink) -> None:
        self.link = link
        self._buffer = b""

    async def send(self, message: dict[str, Any]) -> None:
        await self.link.send.send(json.dumps(message).encode() + b"\n")

    async def receive(self) -> dict[str, Any] | None:
        """The next JSON-RPC message, or None at end of stream (as the SDK's transports do)."""
        while True:
            while b"\n" not in self._buffer:
                try:
                    self._buffer += await self.link.receive.receive()
                except _GONE:
                    return None
            line, self._buffer = self._buffer.split(b"\n", 1)
            try:
                message = json.loads(line)
            except ValueError:  # like the SDK's stdio framing: a line that is not JSON is skipped
                continue
            if isinstance(message, dict):
                return message

    async def close(self) -> None:
        await self.link.send.aclose()


@asynccontextmanager
async def connect(
    client: Any, link: AgentLink, **connection_kwargs: Any
) -> AsyncIterator[ClientSideConnection]:
    """A ``ClientSideConnection`` for ``client`` (an SDK ``Client``) to the agent on ``link``,
    closed on exit. Keyword arguments go to ``ClientSideConnection``."""
    conn = connect_to_agent(client, LinkTransport(link), **connection_kwargs)
    try:
        yield conn
    finally:
        await conn.close()
