"""pytest-acp: put an ACP bridge under test against the simulated agent (see the README).

The names a bridge author needs, importable from here: the adapter API (``BridgeAdapter``,
``BridgeCapabilities``, ``TurnEnd``, ``TurnOutput``, ``AgentUnderTest``), the state machine
(``AcpStateMachine``, ``machine_for``, ``run_machine``, ``PropertyViolation``) and the oracle
(``check``, ``Violation``).
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "AgentUnderTest": "pytest_acp.adapter",
    "BridgeAdapter": "pytest_acp.adapter",
    "BridgeCapabilities": "pytest_acp.adapter",
    "TurnEnd": "pytest_acp.adapter",
    "TurnOutput": "pytest_acp.adapter",
    "AcpStateMachine": "pytest_acp.harness.machine",
    "PropertyViolation": "pytest_acp.harness.machine",
    "machine_for": "pytest_acp.harness.machine_run",
    "run_machine": "pytest_acp.harness.machine_run",
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
