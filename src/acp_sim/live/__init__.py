"""Live mode: the real Claude Code ACP adapter, offline, observed like the simulated agent.

This package owns everything that runs or records a real agent rather than the simulated one: the
fake model API it talks to, the tap that traces it, and the drift check against the simulator.

- ``model_stub``: a loopback-only fake of the Anthropic Messages API (``acp-sim model-stub``),
  driven by a seeded ``stub_profile``; ``messages_api`` holds its pydantic wire models.
- ``tap``: a transparent stdio tap recording the simulated agent's trace format (``acp-sim tap``,
  ``TappedAgent``); ``processes`` credits a real agent's processes to its sessions.
- ``adapter``: finding the pinned adapter and the environment that runs it offline;
  ``harness.live_agent`` puts stub, environment and tap together.
- ``shape``, ``transcripts`` (and the ``recorded/`` transcripts of adapter 0.23.1) and ``script``:
  the drift check between simulated, recorded and live runs.
- ``redact``: secrets never reach a trace or a log.
- ``cli``: the ``model-stub`` and ``tap`` subcommands of ``acp-sim``.
"""

from __future__ import annotations

import importlib
from typing import Any

# Imported on first use (PEP 562): `acp-sim` builds its parser from acp_sim.live.cli, and the
# heavy modules here (harness, tap) must not slow down every start of the stdio agent.
_WHERE = {
    "ADAPTER_PACKAGE": "acp_sim.live.adapter",
    "ADAPTER_VERSION": "acp_sim.live.adapter",
    "AdapterCommand": "acp_sim.live.adapter",
    "AdapterNotFound": "acp_sim.live.adapter",
    "BUILTIN_STUB_PROFILES": "acp_sim.live.stub_profile",
    "INSTALL_HINT": "acp_sim.live.adapter",
    "LiveAgent": "acp_sim.live.harness",
    "ModelStub": "acp_sim.live.model_stub",
    "NPM_INSTALL": "acp_sim.live.adapter",
    "NonLoopbackAddress": "acp_sim.live.model_stub",
    "Redactor": "acp_sim.live.redact",
    "ScriptRun": "acp_sim.live.script",
    "Shape": "acp_sim.live.shape",
    "StubFault": "acp_sim.live.stub_profile",
    "StubProfile": "acp_sim.live.stub_profile",
    "StubRecord": "acp_sim.live.model_stub",
    "StubReply": "acp_sim.live.stub_profile",
    "TappedAgent": "acp_sim.live.tap",
    "TappedInstance": "acp_sim.live.tap",
    "ToolUseRule": "acp_sim.live.stub_profile",
    "adapter_env": "acp_sim.live.adapter",
    "drift": "acp_sim.live.shape",
    "drift_script": "acp_sim.live.script",
    "find_adapter": "acp_sim.live.adapter",
    "live_agent": "acp_sim.live.harness",
    "load_transcript": "acp_sim.live.transcripts",
    "merge": "acp_sim.live.shape",
    "recorded_shape": "acp_sim.live.shape",
    "recorded_transcripts": "acp_sim.live.transcripts",
    "require_loopback": "acp_sim.live.model_stub",
    "run_tap": "acp_sim.live.tap",
    "trace_shape": "acp_sim.live.shape",
}

__all__ = [
    "ADAPTER_PACKAGE",
    "ADAPTER_VERSION",
    "BUILTIN_STUB_PROFILES",
    "INSTALL_HINT",
    "NPM_INSTALL",
    "AdapterCommand",
    "AdapterNotFound",
    "LiveAgent",
    "ModelStub",
    "NonLoopbackAddress",
    "Redactor",
    "ScriptRun",
    "Shape",
    "StubFault",
    "StubProfile",
    "StubRecord",
    "StubReply",
    "TappedAgent",
    "TappedInstance",
    "ToolUseRule",
    "adapter_env",
    "drift",
    "drift_script",
    "find_adapter",
    "live_agent",
    "load_transcript",
    "merge",
    "recorded_shape",
    "recorded_transcripts",
    "require_loopback",
    "run_tap",
    "trace_shape",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'acp_sim.live' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
