"""The reference orchestrator: multi-session ACP bookkeeping, done right, as a library."""

from acp_sim.orchestrator.core import Orchestrator, Unrouted
from acp_sim.orchestrator.launcher import AgentLauncher, AgentLink, SubprocessAgent
from acp_sim.orchestrator.session import (
    Session,
    SessionClosed,
    TurnFailed,
    TurnInProgress,
    TurnStream,
    Update,
)

__all__ = [
    "AgentLauncher",
    "AgentLink",
    "Orchestrator",
    "Session",
    "SessionClosed",
    "SubprocessAgent",
    "TurnFailed",
    "TurnInProgress",
    "TurnStream",
    "Unrouted",
    "Update",
]
