"""Counterexample export: a failing state-machine example written as a scenario file.

``pytest --acp-export-failures DIR`` (``pytest_acp.collect``) calls ``export_failure`` for every
``PropertyViolation`` a test raises: the shrunk example Hypothesis reports becomes
``DIR/<name>.yaml``, which fails the same way when run (``pytest DIR/<name>.yaml --acp-bridge ...``
or ``acp-sim run DIR/<name>.yaml --bridge ...``) and passes once the bridge is fixed.

The script is rebuilt from the harness's delivery log, where every client action of the example
is recorded at its virtual time: the agent (profile and seed) and the bridge are the same, every
action goes through the same harness call at the same moment, and the state machine's waits are
recognised from the log (an open followed by its answer before the next action waited for it; a
prompt followed by its turn's end waited for that), so the replay interleaves exactly as the
example did.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from acp_sim.faults import FAULT_ADAPTER
from acp_sim.live.redact import Redactor
from acp_sim.scenario import (
    AdvanceStep,
    CancelStep,
    ChangeCwdStep,
    CloseStep,
    CrashStep,
    Expect,
    FaultStep,
    McpServerSpec,
    OpenStep,
    PrewarmStep,
    PromptStep,
    Scenario,
    SlowReaderStep,
    dump_scenario,
)
from pytest_acp.adapter import CLIENT_ACTIONS, LogEntry

BUILTIN_MCP = ["-m", "acp_sim", "mcp-server"]


def mcp_spec(server: dict[str, Any]) -> McpServerSpec:
    """The scenario form of a wire ``mcpServers`` entry (acp-sim's own server written as such)."""
    if server.get("url"):
        return McpServerSpec(name=server["name"], url=server["url"], type=server.get("type", "http"))
    server = Redactor.from_env().value(server)
    args = [str(a) for a in server.get("args", []) or []]
    env = {e["name"]: e["value"] for e in server.get("env", []) or [] if isinstance(e, dict)}
    command = server.get("command")
    if command == sys.executable and args[: len(BUILTIN_MCP)] == BUILTIN_MCP:
        return McpServerSpec(name=server["name"], args=args[len(BUILTIN_MCP) :], env=env)
    return McpServerSpec(name=server["name"], command=command, args=args, env=env)


def _waited(log: Sequence[LogEntry], index: int, end: int) -> bool:
    """Whether the rule that logged ``log[index]`` waited for it: its answer came before the next
    client action (a rule that does not wait lets no task run before the next rule), or time passed
    before the next action without an ``advance``."""
    entry = log[index]
    for later in log[index + 1 : end]:
        if later.kind in CLIENT_ACTIONS:
            return later.kind != "advance" and later.t > entry.t
        if later.key != entry.key:
            continue
        if entry.kind == "open" and later.kind in ("opened", "open_failed"):
            return True
        if entry.kind == "prompt" and later.kind == "end" and later.turn == entry.turn:
            return True
    return False


def steps_from_log(log: Sequence[LogEntry], end: int | None = None) -> list[Any]:
    """The client actions of ``log[:end]`` as scenario steps, each at its recorded time."""
    end = len(log) if end is None else end
    steps: list[Any] = []
    for index, entry in enumerate(log[:end]):
        detail = entry.detail or {}
        at = entry.t
        if entry.kind == "open":
            servers = [mcp_spec(s) for s in detail.get("mcp_servers") or []]
            args = {
                "session": entry.key,
                "cwd": detail.get("cwd"),
                "mcp_servers": servers,
                "model": detail.get("model"),
            }
            steps.append(OpenStep(at=at, open={**args, "wait": _waited(log, index, end)}))
        elif entry.kind == "prompt":
            steps.append(
                PromptStep(at=at, prompt={"sessions": [entry.key], "wait": _waited(log, index, end)})
            )
        elif entry.kind == "cancel":
            steps.append(CancelStep(at=at, cancel={"session": entry.key}))
        elif entry.kind == "close":
            steps.append(CloseStep(at=at, close={"session": entry.key}))
        elif entry.kind == "change_cwd":
            steps.append(
                ChangeCwdStep(at=at, change_cwd={"old": detail.get("old"), "new": detail.get("new")})
            )
        elif entry.kind == "prewarm":
            servers = [mcp_spec(s) for s in detail.get("mcp_servers") or []]
            steps.append(
                PrewarmStep(
                    at=at,
                    prewarm={"cwd": detail.get("cwd"), "mcp_servers": servers, "model": detail.get("model")},
                )
            )
        elif entry.kind == "advance":
            steps.append(AdvanceStep(at=at, advance=detail.get("seconds")))
        elif entry.kind == "crash":
            steps.append(CrashStep(at=at, crash={}))
        elif entry.kind == "fault":
            fault = dict(detail)
            if isinstance(fault.get("at"), dict) and "kind" not in fault["at"]:
                fault["at"] = {"kind": "fixed", **fault["at"]}
            steps.append(FaultStep(at=at, fault=FAULT_ADAPTER.validate_python(fault)))
        elif entry.kind == "slow_consumer":
            steps.append(
                SlowReaderStep(at=at, slow_reader={"session": entry.key, "on": detail.get("on", True)})
            )
        elif entry.kind in CLIENT_ACTIONS:  # an action the format cannot say: refuse, never drop it
            raise ValueError(
                f"cannot write the client action {entry.kind!r} (log entry {entry.seq}) as a step"
            )
    return steps


def _slug(text: str) -> str:
    # FirstChunkDropped -> first-chunk-dropped
    text = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "-", text)
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "bridge"


def scenario_of(error: BaseException, *, bridge: str | None = None) -> Scenario:
    """The scenario file of a ``PropertyViolation`` raised by a state machine."""
    machine = getattr(error, "machine", None)
    if machine is None or machine.h is None or machine.h.log is None:
        raise ValueError("this failure carries no state-machine run to export")
    harness = machine.h
    launcher = harness.agent.launcher
    violations = getattr(error, "violations", [])
    prop = violations[0].property if violations else "P?"
    factory = type(machine).bridge
    factory_name = f"{getattr(factory, '__module__', '?')}:{getattr(factory, '__qualname__', 'bridge')}"
    bridge = bridge or (machine.context.bridge if machine.context is not None else factory_name)
    seed = int(getattr(launcher, "seed", getattr(harness.agent, "seed", 0)) or 0)
    short = _slug(factory_name.rsplit(":", 1)[-1].removesuffix("_bridge").removesuffix("bridge"))
    name = f"counterexample-{prop.lower()}-{short}-{machine.backend}-seed{seed}"
    title = violations[0].title if violations else "a property"
    description = (
        f"A {title} counterexample of the property suite on {bridge} ({machine.backend}): the shrunk "
        "example, action by action. Fails the same way until the bridge is fixed."
    )
    return Scenario(
        name=name,
        description=description,
        seed=seed,
        # A live run's launcher is the real agent: the machine's profile stands in for it (played
        # live again, its turn profile becomes the model stub's).
        profile=getattr(launcher, "profile", None) or machine.profile,
        backend=machine.backend,
        script=steps_from_log(harness.log.entries, getattr(error, "log_end", None)),
        expect=Expect(),
    )


def export_failure(
    error: BaseException, directory: str | Path, *, bridge: str | None = None, suffix: str = ""
) -> Path:
    """Write the failing example of ``error`` as a scenario file in ``directory``; its path.

    ``suffix`` ends the file's (and the scenario's) name: a run with several counterexamples of one
    property names each its own file."""
    scenario = scenario_of(error, bridge=bridge)
    if suffix:
        scenario = scenario.model_copy(update={"name": scenario.name + suffix})
    machine = error.machine  # type: ignore[attr-defined]
    context = machine.context
    bridge_ref = bridge or (context.bridge if context is not None else "?")
    header = "\n".join(
        [
            "A counterexample exported by pytest-acp (--acp-export-failures).",
            f"bridge: {bridge_ref}",
            f"suite seed: {context.seed if context is not None else '?'}",
            f"replay: pytest <this file> --acp-bridge {bridge_ref}",
            f"    or: acp-sim run <this file> --bridge {bridge_ref}",
            "violated:",
            *(f"  {v}" for v in getattr(error, "violations", [])[:5]),
        ]
    )
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{scenario.name}.yaml"
    # Secrets never reach a file we write: the run's API key (a live run's), keys in this
    # environment, and values under secret-looking names (an MCP server's env, say).
    redactor = Redactor.from_env(extra=[k for k in (getattr(machine, "api_key", None),) if k])
    path.write_text(redactor.text(dump_scenario(scenario, header=header)), encoding="utf-8")
    return path
