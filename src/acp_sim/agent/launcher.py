"""The in-process simulated agent as an ``AgentLauncher``: every launch is a fresh agent "process"."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from acp_sim.agent.core import SimAgent
from acp_sim.clock import derive_seed
from acp_sim.faults import Fault
from acp_sim.orchestrator.launcher import AgentLink
from acp_sim.profile import DEFAULT, AgentProfile
from acp_sim.store import SessionStore


@dataclass
class InProcessAgent:
    """Launches ``SimAgent`` instances on the caller's event loop (virtual time friendly).

    Every instance shares ``store``, the agent's "disk": after ``crash()`` and a relaunch, sessions
    that had a turn can be resumed or loaded, phantoms are gone. The first launch uses ``seed``; a
    relaunch derives its seed from it (and the launch number the store counts), so a run with
    reconnects is as reproducible as one without. ``faults`` are scheduled on every launch besides
    the profile's (each fault's ``launch`` field picks the launches it applies to). ``agents`` keeps
    every instance, and with it every instance's trace.
    """

    profile: AgentProfile = DEFAULT
    seed: int = 0
    name: str = "acp-sim"
    virtual_time: bool = True
    agents: list[SimAgent] = field(default_factory=list)
    store: SessionStore = field(default_factory=SessionStore)
    faults: list[Fault] = field(default_factory=list)

    @property
    def current(self) -> SimAgent:
        return self.agents[-1]

    @asynccontextmanager
    async def launch(self) -> AsyncIterator[AgentLink]:
        n = self.store.next_launch()
        seed = self.seed if n == 0 else derive_seed(self.seed, "launch", n)
        agent = SimAgent(
            self.profile, seed=seed, name=f"{self.name}#{n}", store=self.store, launch=n, faults=self.faults
        )
        self.agents.append(agent)
        async with agent.running() as stream:
            yield AgentLink(stream.receive_stream, stream.send_stream, agent.name)

    def crash(self, code: int = 1) -> None:
        """Kill the current instance: streams closed abruptly, MCP children killed, trace ``fault``."""
        self.current.crash(code)

    def inject(self, fault: Fault | str) -> None:
        """Inject a fault into the current instance (see ``SimAgent.inject``)."""
        self.current.inject(fault)
