"""pytest-acp: put an ACP bridge under test against the simulated agent (see the README).

The names a bridge author needs, importable from here: the adapter API (``BridgeAdapter``,
``BridgeCapabilities``, ``TurnEnd``, ``TurnOutput``, ``AgentUnderTest``), the base adapter for
bridges that are processes and the vocabulary its mapping speaks (``SubprocessBridge``,
``Action``, ``Delta``, ``Update``, ``End``, ``Ack``, ``Reply``, ``Observation``), the state
machine (``AcpStateMachine``, ``machine_for``, ``run_machine``, ``PropertyViolation``), real-time
runs (``subprocess_agent``, ``realtime_machine_for``, ``run_realtime_machine``,
``run_scenario_realtime``, ``scale_profile``, ``with_tool_calls``) and the oracle (``check``,
``Violation``).

The package is in rooms by role, each saying in its ``__init__`` what it owns: ``properties``
(the oracle), ``harness`` (driving a bridge), ``live``, ``scenarios`` and ``report``; this level
is the plugin's face (``plugin``, ``fixtures``, ``collect``, ``config``), the bridge API
(``adapter``, ``sdk``, ``reference``) and the seeded bugs (``bugs``).
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "AgentUnderTest": "pytest_acp.adapter",
    "BridgeAdapter": "pytest_acp.adapter",
    "BridgeCapabilities": "pytest_acp.adapter",
    "TurnEnd": "pytest_acp.adapter",
    "TurnOutput": "pytest_acp.adapter",
    "SubprocessBridge": "pytest_acp.harness.subprocess_bridge",
    "Action": "pytest_acp.harness.bridge_messages",
    "Ack": "pytest_acp.harness.bridge_messages",
    "Delta": "pytest_acp.harness.bridge_messages",
    "End": "pytest_acp.harness.bridge_messages",
    "Observation": "pytest_acp.harness.bridge_messages",
    "Reply": "pytest_acp.harness.bridge_messages",
    "Update": "pytest_acp.harness.bridge_messages",
    "AcpStateMachine": "pytest_acp.harness.machine",
    "PropertyViolation": "pytest_acp.harness.machine",
    "machine_for": "pytest_acp.harness.machine_run",
    "run_machine": "pytest_acp.harness.machine_run",
    "subprocess_agent": "pytest_acp.harness.realtime",
    "realtime_machine_for": "pytest_acp.harness.realtime",
    "run_realtime_machine": "pytest_acp.harness.realtime",
    "run_scenario_realtime": "pytest_acp.harness.realtime",
    "with_tool_calls": "pytest_acp.harness.realtime",
    "scale_profile": "pytest_acp.harness.realtime_scaling",
    "check": "pytest_acp.properties.oracle",
    "Violation": "pytest_acp.properties.violation",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    # Lazy, so importing the package (pytest loads the plugin early) pulls in nothing extra.
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pytest_acp' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
