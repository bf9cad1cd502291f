"""Time scaling for real-time runs: an agent profile, or a scenario file, played faster.

On real time every latency costs real seconds, so a real-time run plays the simulated agent's
profile scaled down (``scale_profile``) and a scenario file written in virtual seconds faster
(``scale_scenario``, by ``SCENARIO_SCALE``); the real-time export writes a failure back at the
inverse scale. Pure functions of profiles and scenario files: the real-time runner
(``realtime``) and the real-time export (``pytest_acp.scenarios.realtime_export``) both use them.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from acp_sim.profile import AgentProfile, load_profile_data
from acp_sim.scenario import AdvanceStep, ScenarioFile

_LATENCY_FIELDS = {"fixed": ("seconds",), "uniform": ("low", "high"), "lognormal": ("median", "max")}


def scale_profile(profile: AgentProfile, factor: float, *, name: str | None = None) -> AgentProfile:
    """``profile`` with every latency (fixed, uniform, lognormal; faults' times too) times ``factor``."""

    def scale(value: Any) -> Any:
        if isinstance(value, dict):
            fields = _LATENCY_FIELDS.get(value.get("kind")) if isinstance(value.get("kind"), str) else None
            out = {k: scale(v) for k, v in value.items()}
            for key in fields or ():
                if isinstance(out.get(key), int | float):
                    out[key] = out[key] * factor
            return out
        if isinstance(value, list):
            return [scale(v) for v in value]
        return value

    data = scale(profile.model_dump(mode="json", exclude_none=True))
    data["name"] = name or f"{profile.name}-x{factor:g}"
    return load_profile_data(data, source=f"scale_profile({profile.name}, {factor:g})")


# Scenario files are written in virtual seconds (2 s session/new, chunks 0.5 s apart); on real time
# they play 5 times faster, which keeps their interleavings (steps land tens of milliseconds
# between the agent's messages) while a file takes a second or two.
SCENARIO_SCALE = 0.2


def scale_scenario(file: ScenarioFile, factor: float) -> ScenarioFile:
    """``file`` with its agent profile and the script's times (``at``, ``advance``) times ``factor``."""
    script = []
    for step in file.scenario.script:
        update: dict[str, Any] = {}
        if step.at is not None:
            update["at"] = step.at * factor
        if isinstance(step, AdvanceStep):
            update["advance"] = step.advance * factor
        script.append(step.model_copy(update=update) if update else step)
    scenario = file.scenario.model_copy(update={"script": script})
    profile = scale_profile(file.profile, factor, name=f"{file.profile.name}-x{factor:g}")
    return dataclasses.replace(file, scenario=scenario, profile=profile)


def shift_scenario(file: ScenarioFile, seconds: float) -> ScenarioFile:
    """``file`` with every ``at`` of its script later by ``seconds``."""
    script = [
        s.model_copy(update={"at": s.at + seconds}) if s.at is not None else s for s in file.scenario.script
    ]
    return dataclasses.replace(file, scenario=file.scenario.model_copy(update={"script": script}))
