"""Puts ``naive_sdk_bridge.NaiveBridge`` under test (asyncio only: the SDK is built on asyncio).

pytest --acp-sim --acp-backend asyncio --acp-bridge examples.naive_sdk_adapter:bridge
"""

from contextlib import asynccontextmanager

from examples.naive_sdk_bridge import NaiveBridge

from pytest_acp.sdk import LinkTransport


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


bridge.backends = ("asyncio",)  # the SDK is built on asyncio: the suite skips trio, saying so
