"""Live mode: the real Claude Code ACP adapter, offline, observed like the simulated agent.

- ``model_stub``: a loopback-only fake of the Anthropic Messages API (``acp-sim model-stub``),
  driven by a seeded ``stub_profile``; ``messages_api`` holds its pydantic wire models.
- ``tap``: a transparent stdio tap recording the simulated agent's trace format (``acp-sim tap``,
  ``TappedAgent``); ``processes`` credits a real agent's processes to its sessions.
- ``adapter``: finding the pinned adapter and the environment that runs it offline;
  ``harness.live_agent`` puts stub, environment and tap together.
- ``shape``, ``transcripts`` (and the ``recorded/`` transcripts of adapter 0.23.1) and ``script``:
  the drift check between simulated, recorded and live runs.
- ``redact``: secrets never reach a trace or a log.
"""

from acp_sim.live.adapter import (
    ADAPTER_PACKAGE,
    ADAPTER_VERSION,
    INSTALL_HINT,
    NPM_INSTALL,
    AdapterCommand,
    AdapterNotFound,
    adapter_env,
    find_adapter,
)
from acp_sim.live.harness import LiveAgent, live_agent
from acp_sim.live.model_stub import ModelStub, NonLoopbackAddress, StubRecord, require_loopback
from acp_sim.live.redact import Redactor
from acp_sim.live.script import ScriptRun, drift_script
from acp_sim.live.shape import Shape, drift, merge, recorded_shape, trace_shape
from acp_sim.live.stub_profile import BUILTIN_STUB_PROFILES, StubFault, StubProfile, StubReply, ToolUseRule
from acp_sim.live.tap import TappedAgent, TappedInstance, run_tap
from acp_sim.live.transcripts import load_transcript, recorded_transcripts

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
