"""Writing a scenario file: a ``Scenario`` as YAML a person reads (block style, one flow-style line
per script step, shorthands and defaults as a person would write them), and a step in one line.
"""

from __future__ import annotations

import json
import math
from typing import Any

import yaml

from acp_sim.profile import AgentProfile
from acp_sim.scenario.model import (
    FaultStep,
    OpenStep,
    PromptStep,
    Scenario,
    WaitStep,
    _Step,
    _WaitingStep,
)

# -- writing -------------------------------------------------------------------------------------------


def _flow(value: Any) -> str:
    """One YAML line in flow style (for a script step)."""
    return yaml.safe_dump(value, default_flow_style=True, width=math.inf, sort_keys=False).strip()


def step_data(step: _Step) -> dict[str, Any]:
    """A step as it is written in a file: shorthands where they say the same, defaults left out."""
    data: dict[str, Any] = {}
    if step.at is not None:
        data["at"] = round(step.at, 6)
    args = step.args
    if isinstance(args, float):
        data[step.action] = round(args, 6)
        return data
    if isinstance(step, FaultStep):
        dumped = fault_data(args)
    else:
        dumped = args.model_dump(mode="json", exclude_defaults=True)
    waits = step.waits if isinstance(step, _WaitingStep) else None
    if waits is not None:
        dumped.pop("wait", None)
    if isinstance(step, PromptStep) and set(dumped) == {"sessions"}:
        sessions = dumped["sessions"]
        dumped = sessions[0] if len(sessions) == 1 else sessions
    elif isinstance(step, WaitStep) and set(dumped) == {"sessions"}:
        dumped = dumped["sessions"]
    elif set(dumped) == {"session"}:
        dumped = dumped["session"]
    data[step.action] = dumped
    # the wait modifier only where it differs from the action's default (open waits, others not)
    if waits is not None and waits != isinstance(step, OpenStep):
        data["wait"] = waits
    return data


def _compact(value: Any) -> Any:
    """Fixed latencies as bare numbers (``2.5``, not ``{kind: fixed, seconds: 2.5}``)."""
    if isinstance(value, dict):
        if set(value) == {"kind", "seconds"} and value["kind"] == "fixed":
            return value["seconds"]
        return {k: _compact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_compact(v) for v in value]
    return value


def fault_data(fault: Any) -> dict[str, Any]:
    """A fault as written in a file: its kind first, then only what was given (latencies keep
    their ``kind``, which ``exclude_defaults`` would drop)."""
    return _compact({"kind": fault.kind, **fault.model_dump(mode="json", exclude_unset=True)})


def profile_data(profile: AgentProfile) -> dict[str, Any]:
    """An agent profile as written in a file (only what was given when it was made)."""
    return _compact(profile.model_dump(mode="json", exclude_unset=True))


def describe_step(step: _Step) -> str:
    """A step in one line, as it would be written in the file (without its ``at``)."""
    data = step_data(step)
    data.pop("at", None)
    return _flow(data).removeprefix("{").removesuffix("}")


def dump_scenario(scenario: Scenario, *, header: str = "") -> str:
    """The scenario as a YAML file: block style, one flow-style line per script step."""
    out = [f"# {line}".rstrip() for line in header.splitlines()]
    top = scenario.model_dump(
        mode="json", exclude_defaults=True, exclude={"script", "expect", "faults", "profile"}
    )
    top = {"name": scenario.name, "description": scenario.description, **top}
    out.append(yaml.safe_dump(top, sort_keys=False, width=100, allow_unicode=True).rstrip())
    if isinstance(scenario.profile, AgentProfile):
        out.append(
            yaml.safe_dump({"profile": profile_data(scenario.profile)}, sort_keys=False, width=100).rstrip()
        )
    elif scenario.profile != "default":
        out.append(f"profile: {json.dumps(scenario.profile)}")
    if scenario.faults:
        out.append("faults:")
        out += [f"  - {_flow(fault_data(f))}" for f in scenario.faults]
    out.append("script:")
    out += [f"  - {_flow(step_data(step))}" for step in scenario.script]
    expect = scenario.expect.model_dump(mode="json", exclude_defaults=True)
    if expect:
        out.append(
            yaml.safe_dump({"expect": expect}, sort_keys=False, width=100, default_flow_style=None).rstrip()
        )
    return "\n".join(out) + "\n"
