"""The in-process simulated agent as an ``AgentLauncher``: every launch is a fresh agent "process"."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from acp_sim.agent.core import SimAgent
from acp_sim.clock import derive_seed
from acp_sim.orchestrator.launcher import AgentLink
from acp_sim.profile import DEFAULT, AgentProfile


@dataclass
class InProcessAgent:
    """Launches ``SimAgent`` instances on the caller's event loop (virtual time friendly).

    The first instance uses ``seed``; a relaunch (after a crash) derives its seed from it, so a run
    with reconnects is as reproducible as one without. ``agents`` keeps every instance, and with it
    every instance's trace.
    """

    profile: AgentProfile = DEFAULT
    seed: int = 0
    name: str = "acp-sim"
    virtual_time: bool = True
    agents: list[SimAgent] = field(default_factory=list)

    @property
    def current(self) -> SimAgent:
        return self.agents[-1]

    @asynccontextmanager
    async def launch(self) -> AsyncIterator[AgentLink]:
        n = len(self.agents)
        seed = self.seed if n == 0 else derive_seed(self.seed, "launch", n)
        agent = SimAgent(self.profile, seed=seed, name=f"{self.name}#{n}")
        self.agents.append(agent)
        async with agent.running() as stream:
            yield AgentLink(stream.receive_stream, stream.send_stream, agent.name)
