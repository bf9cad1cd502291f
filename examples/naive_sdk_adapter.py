"""Puts ``naive_sdk_bridge.NaiveBridge`` under test (asyncio only: the SDK is built on asyncio).

pytest --acp-sim --acp-backend asyncio --acp-bridge examples.naive_sdk_adapter:bridge
"""

import json
from contextlib import asynccontextmanager

from examples.naive_sdk_bridge import NaiveBridge


class LinkTransport:
    """The SDK's message ``Transport`` over the byte streams of an agent launched by the suite."""

    def __init__(self, link):
        self.link, self.buffer = link, b""

    async def send(self, message):
        await self.link.send.send(json.dumps(message).encode() + b"\n")

    async def receive(self):  # like the SDK's stdio framing: one JSON object per line, bad lines skipped
        while True:
            while b"\n" not in self.buffer:
                try:
                    self.buffer += await self.link.receive.receive()
                except Exception:  # end of stream: the agent went away
                    return None
            line, self.buffer = self.buffer.split(b"\n", 1)
            try:
                return json.loads(line)
            except ValueError:
                continue

    async def close(self):
        await self.link.send.aclose()


class NaiveAdapter:
    def __init__(self, bridge):
        self.bridge, self.ids = bridge, {}

    async def open_session(self, key, *, cwd, mcp_servers, model):
        self.ids[key] = await self.bridge.new_session(cwd, mcp_servers)

    async def prompt(self, key, text, out):
        async for chunk in self.bridge.ask(self.ids[key], text):
            await out.text(chunk)
        return self.bridge.stop_reasons.get(self.ids[key])

    async def cancel(self, key):
        await self.bridge.cancel(self.ids[key])

    async def close(self, key):
        await self.bridge.close(self.ids.pop(key))


@asynccontextmanager
async def bridge(agent):
    async with agent.launcher.launch() as link, NaiveBridge.over(LinkTransport(link)) as naive:
        yield NaiveAdapter(naive)
