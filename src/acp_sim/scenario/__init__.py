"""Scenario files: a regression case as data (YAML), validated, with errors that point at the file.

This package owns the scenario format and nothing that runs it: ``pytest_acp`` collects
``scenarios/**/*.yaml`` as test items and runs each against the bridge under test
(``pytest_acp.scenarios.run``); ``acp-sim run FILE`` runs one outside pytest. ``acp_sim`` never
imports pytest or ``pytest_acp``.

- ``model``: the format as pydantic models: ``Scenario``, its ``Step`` kinds, ``Expect``,
  ``McpServerSpec``; ``acp-sim schema scenario`` prints their JSON Schema;
- ``load``: ``load_scenario`` / ``load_scenario_text`` to a ``ScenarioFile`` (with the line of
  every step), or a ``ScenarioError`` naming every problem as ``file:line: field: what (got value)``;
- ``write``: ``dump_scenario`` and ``describe_step``, a scenario or a step as a person writes it.
"""

from acp_sim.scenario.load import (
    Problem,
    ScenarioError,
    ScenarioFile,
    load_scenario,
    load_scenario_text,
    scenario_json_schema,
)
from acp_sim.scenario.model import (
    TIME_SLACK,
    AdvanceStep,
    CancelStep,
    ChangeCwdStep,
    CheckStep,
    CloseStep,
    CrashStep,
    Expect,
    FaultStep,
    McpServerSpec,
    OpenStep,
    PrewarmStep,
    PromptStep,
    ReconnectStep,
    Scenario,
    SlowReaderStep,
    Step,
    WaitStep,
)
from acp_sim.scenario.write import describe_step, dump_scenario

__all__ = [
    "TIME_SLACK",
    "AdvanceStep",
    "CancelStep",
    "ChangeCwdStep",
    "CheckStep",
    "CloseStep",
    "CrashStep",
    "Expect",
    "FaultStep",
    "McpServerSpec",
    "OpenStep",
    "PrewarmStep",
    "Problem",
    "PromptStep",
    "ReconnectStep",
    "Scenario",
    "ScenarioError",
    "ScenarioFile",
    "SlowReaderStep",
    "Step",
    "WaitStep",
    "describe_step",
    "dump_scenario",
    "load_scenario",
    "load_scenario_text",
    "scenario_json_schema",
]
