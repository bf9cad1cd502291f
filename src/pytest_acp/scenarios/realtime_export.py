"""A failing real-time example, written as a scenario file: the replay of a real-time failure.

On real time a seed does not reproduce its example (the bridge, the agent and the scheduler race
on the real clock, and the same seed took another path the next time), so a report's replay line
cannot be "rerun the seed". Instead the example's own steps, as the harness logged them, become a
scenario file (``pytest_acp.scenarios.export``) with the agent it ran (profile, seed, and the faults
scheduled on its launches); that file is the replay. Its times are written in the scenario
format's virtual seconds: played on real time (``run_scenario_realtime``, which scales files by
``SCENARIO_SCALE``) they land at the real times the example had.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any

from acp_sim.faults import FAULT_ADAPTER, parse_fault_spec
from acp_sim.live.redact import Redactor
from acp_sim.scenario import AdvanceStep, dump_scenario
from pytest_acp.adapter import LogEntry
from pytest_acp.harness.machine import PropertyViolation
from pytest_acp.harness.machine_run import bridge_name
from pytest_acp.harness.realtime_scaling import SCENARIO_SCALE, scale_profile
from pytest_acp.scenarios.export import scenario_of, steps_from_log

# Where counterexamples go unless the run says otherwise.
DEFAULT_DIRECTORY = Path(tempfile.gettempdir()) / "pytest-acp-counterexamples"
_CWD_FIELDS = ("cwd", "old", "new")


def _original_cwds(log: list[LogEntry], machine: Any) -> list[LogEntry]:
    """The log with the example's run-directory cwds written as the machine's configured ones (the
    run directory is gone; a replay places them under its own)."""
    mapping = dict(zip(machine.cwds, type(machine).cwds, strict=False))

    def original(value: Any) -> Any:
        if not isinstance(value, str):
            return value
        for run_cwd, configured in mapping.items():
            if value == run_cwd or value.startswith(run_cwd + "/"):  # a directory per open below it
                return configured + value[len(run_cwd) :]
        return value

    out = []
    for entry in log:
        detail = entry.detail or {}
        if any(f in detail for f in _CWD_FIELDS):
            detail = {k: original(v) if k in _CWD_FIELDS else v for k, v in detail.items()}
            entry = entry.model_copy(update={"detail": detail})
        out.append(entry)
    return out


def export_realtime_failure(
    error: PropertyViolation, directory: str | Path | None = None, *, scale: float | None = None
) -> Path:
    """Write the failing real-time example of ``error`` as a scenario file; its path."""
    # A RealTimeMachine (pytest_acp.harness.realtime, which imports this module to export).
    machine: Any = error.machine  # type: ignore[attr-defined]
    assert machine.h is not None
    assert machine.h.log is not None
    factor = 1 / (scale or SCENARIO_SCALE)
    log = _original_cwds(machine.h.log.entries, machine)
    script = []
    for step in steps_from_log(log, getattr(error, "log_end", None)):
        update: dict[str, Any] = {"at": step.at * factor} if step.at is not None else {}
        if isinstance(step, AdvanceStep):
            update["advance"] = step.advance * factor
        script.append(step.model_copy(update=update))
    faults = [parse_fault_spec(spec) for spec in machine.agent_faults]
    faults += [FAULT_ADAPTER.validate_python(f.spec) for f in machine._scheduled]
    profile = machine.agent_profile()
    scenario = scenario_of(error).model_copy(
        update={
            "name": scenario_of(error).name + "-realtime",
            "profile": scale_profile(profile, factor, name=profile.name),
            "script": script,
            "faults": faults,
        }
    )
    ref = bridge_name(type(machine))
    header = "\n".join(
        [
            "A real-time counterexample exported by pytest-acp: the failing example, step by step.",
            f"bridge: {ref}",
            f"replay: {replay_command(Path('<this file>'), ref)}",
            "times: scenario seconds (played on real time at 1/5: the example's own real times)",
            "violated:",
            *(f"  {v}" for v in error.violations[:5]),
        ]
    )
    directory = Path(directory) if directory is not None else DEFAULT_DIRECTORY
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{scenario.name}.yaml"
    path.write_text(Redactor.from_env().text(dump_scenario(scenario, header=header)), encoding="utf-8")
    return path


def replay_command(path: Path, bridge: str) -> str:
    return f"pytest {path} --acp-bridge {bridge}"


def make_replay_the_export(error: PropertyViolation, directory: str | Path | None = None) -> Path | None:
    """Export ``error``'s example and make that the report's replay line (the seed cannot replay it)."""
    try:
        path = export_realtime_failure(error, directory)
    except Exception as exc:  # the report still stands; say why there is no file
        line = f"replay:  (the example could not be exported as a scenario file: {exc})"
        path = None
    else:
        machine = error.machine  # type: ignore[attr-defined]
        line = f"replay:  {replay_command(path, bridge_name(type(machine)))}  (the example, exported)"
        error.scenario_path = path  # type: ignore[attr-defined]
    report = str(error)
    if re.search(r"^replay:  .*$", report, flags=re.M):
        report = re.sub(r"^replay:  .*$", lambda _: line, report, count=1, flags=re.M)
    else:
        report = re.sub(r"^(seed:    .*)$", lambda m: f"{m.group(1)}\n{line}", report, count=1, flags=re.M)
    report = re.sub(
        r"^(seed:    .*)$",
        lambda m: f"{m.group(1)}  (on real time a seed does not replay the example)",
        report,
        count=1,
        flags=re.M,
    )
    error.args = (report, *error.args[1:])
    return path
