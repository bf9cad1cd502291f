"""acp_sim: a deterministic simulated ACP agent and a reference multi-session orchestrator."""

__version__ = "0.1.0"
