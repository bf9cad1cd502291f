"""The simulated ACP agent."""

from acp_sim.agent.core import SimAgent
from acp_sim.agent.launcher import InProcessAgent
from acp_sim.agent.session import SimSession, Turn

__all__ = ["InProcessAgent", "SimAgent", "SimSession", "Turn"]
