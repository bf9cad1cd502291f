"""The reference orchestrator put under test: the whole adapter a Python bridge needs.

pytest --acp-sim --acp-bridge examples.reference_adapter:bridge
"""

from contextlib import asynccontextmanager

from acp_sim.orchestrator import Orchestrator, TurnFailed
from pytest_acp.adapter import BridgeCapabilities, TurnEnd


class ReferenceBridge:
    capabilities = BridgeCapabilities(turn_timeout=40, idle_timeout=15)

    def __init__(self, orch):
        self.orch, self.sessions = orch, {}

    async def open_session(self, key, *, cwd, mcp_servers, model):
        self.sessions[key] = await self.orch.open_session(cwd=cwd, mcp_servers=mcp_servers, model=model)

    async def prompt(self, key, text, out):
        turn = self.sessions[key].prompt(text)
        try:
            async for update in turn:
                await out.update(update.raw)
        except TurnFailed as exc:
            return TurnEnd(error=exc.reason, timed_out="timeout" in exc.reason)
        return TurnEnd(stop_reason=turn.stop_reason, usage=turn.usage)

    async def cancel(self, key):
        await self.sessions[key].cancel()

    async def close(self, key):
        await self.sessions.pop(key).close()


@asynccontextmanager
async def bridge(agent):
    async with Orchestrator(agent.launcher, turn_timeout=40, idle_timeout=15) as orch:
        yield ReferenceBridge(orch)
