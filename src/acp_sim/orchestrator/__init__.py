"""The reference orchestrator: multi-session ACP bookkeeping, done right, as a library.

This package owns everything a client needs to drive one ACP agent for many sessions at once: the
agent's lifetime, the sessions and their turns, routing of the agent's updates and requests, the
pre-warm pool, MCP processes, tokens and worktrees. It speaks only the wire (``acp_sim.wire``,
``acp_sim.dispatch``) and never imports the simulated agent. Ownership runs one way:
``Orchestrator`` owns the parts below, and no part knows its owner (each is handed the callables it
needs); no module imports one that imports it.

- ``core``: ``Orchestrator``, the public face; composes the parts and holds the cross-cutting
  hazard methods (routing, backpressure, pool key and invalidation, agent lost, close);
- ``supervisor``: ``AgentSupervisor``, the agent's lifetime (launch, initialize, crash, restart,
  give up); ``AgentUnavailable``, ``Restart``;
- ``reconnect``: ``SessionRestorer``, sessions carried across a restart (resume, load, new);
- ``routing``: ``SessionRegistry``, the one map of sessions by agent id; ``Unrouted``;
- ``opening``: ``SessionOpener``, ``session/new`` (retried across a restart) and the model;
- ``turns``: ``TurnLifecycle``, a turn from its queue to its end (timers, cancel, tokens);
- ``session``: ``Session``, ``TurnStream``, ``Update`` and the session errors: per-session state;
- ``handlers``: ``ClientHandler``, answers to the agent's permission, fs and terminal requests;
- ``pool``: ``WarmPool``, sessions created ahead of time per (model, cwd, MCP configuration);
- ``mcp``: MCP process accounting and orchestrator-run HTTP MCP servers;
- ``accounting``: ``TokenLedger``; ``worktree``: a git worktree per session;
- ``launcher``: how the agent process is started (``SubprocessAgent``, ``AgentLauncher``);
- ``patterns``: fan-out, race and worktree merge built on sessions.
"""

from acp_sim.orchestrator.accounting import TokenLedger
from acp_sim.orchestrator.core import Orchestrator, Unrouted
from acp_sim.orchestrator.handlers import ClientHandler
from acp_sim.orchestrator.launcher import AgentLauncher, AgentLink, SubprocessAgent
from acp_sim.orchestrator.mcp import McpReport, SharedHttpServer
from acp_sim.orchestrator.pool import PoolKey, PoolReport, WarmPool
from acp_sim.orchestrator.reconnect import SessionRestorer
from acp_sim.orchestrator.session import (
    Session,
    SessionClosed,
    SessionError,
    TurnFailed,
    TurnInProgress,
    TurnStream,
    Update,
)
from acp_sim.orchestrator.supervisor import AgentSupervisor, AgentUnavailable, Restart
from acp_sim.orchestrator.turns import TurnLifecycle
from acp_sim.orchestrator.worktree import Worktree, WorktreeError

__all__ = [
    "AgentLauncher",
    "AgentLink",
    "AgentSupervisor",
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
    "SessionRestorer",
    "SharedHttpServer",
    "SubprocessAgent",
    "TokenLedger",
    "TurnFailed",
    "TurnInProgress",
    "TurnLifecycle",
    "TurnStream",
    "Unrouted",
    "Update",
    "WarmPool",
    "Worktree",
    "WorktreeError",
]
