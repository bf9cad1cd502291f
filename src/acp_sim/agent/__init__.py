"""The simulated ACP agent: real ACP over a byte stream, driven by a profile and a seed.

This package owns the agent's side of the protocol and everything it does: sessions, turns, tool
calls, MCP children, faults, and the trace of it all. Ownership runs one way: ``SimAgent`` composes
the parts, and none of them imports it (each sees the agent through a protocol of what it uses).

- ``core``: ``SimAgent``: the connection, request-level faults, the turns (prompt, cancel, the
  per-chunk streaming);
- ``lifecycle``: ``SessionLifecycle``: session/new, load, resume, fork, list, close, set_model,
  set_mode, set_config_option, and the store;
- ``session``: ``SimSession`` and ``Turn``, per-session state (text, usage, context);
- ``tools``: one simulated tool call (permission, fs and terminal requests to the client);
- ``effects``: ``FaultEffects``, how the agent carries out its faults; ``mcp``: its MCP children;
- ``messages``: the wire shapes it sends; ``requests``: the params models it validates itself;
- ``launcher``: ``InProcessAgent``, the in-process agent as an orchestrator ``AgentLauncher``.
"""

from acp_sim.agent.core import SimAgent
from acp_sim.agent.launcher import InProcessAgent
from acp_sim.agent.session import SimSession, Turn

__all__ = ["InProcessAgent", "SimAgent", "SimSession", "Turn"]
