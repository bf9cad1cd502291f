"""The simulated ACP agent."""

from acp_sim.agent.core import SimAgent
from acp_sim.agent.session import SimSession, Turn

__all__ = ["SimAgent", "SimSession", "Turn"]
