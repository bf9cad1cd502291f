"""The reference orchestrator: multi-session ACP bookkeeping, done right, as a library."""

from acp_sim.orchestrator.accounting import TokenLedger
from acp_sim.orchestrator.core import Orchestrator, Unrouted
from acp_sim.orchestrator.handlers import ClientHandler
from acp_sim.orchestrator.launcher import AgentLauncher, AgentLink, SubprocessAgent
from acp_sim.orchestrator.mcp import McpReport, SharedHttpServer
from acp_sim.orchestrator.pool import PoolKey, PoolReport, WarmPool
from acp_sim.orchestrator.reconnect import AgentUnavailable, Restart
from acp_sim.orchestrator.session import (
    Session,
    SessionClosed,
    SessionError,
    TurnFailed,
    TurnInProgress,
    TurnStream,
    Update,
)
from acp_sim.orchestrator.worktree import Worktree, WorktreeError

__all__ = [
    "AgentLauncher",
    "AgentLink",
    "AgentUnavailable",
    "ClientHandler",
    "McpReport",
    "Orchestrator",
    "PoolKey",
    "PoolReport",
    "Restart",
    "Session",
    "SessionClosed",
    "SessionError",
    "SharedHttpServer",
    "SubprocessAgent",
    "TokenLedger",
    "TurnFailed",
    "TurnInProgress",
    "TurnStream",
    "Unrouted",
    "Update",
    "WarmPool",
    "Worktree",
    "WorktreeError",
]
