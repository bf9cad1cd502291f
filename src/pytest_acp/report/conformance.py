"""Conformance runs: every property judged in one run, each distinct failure shrunk on its own.

``run_machine`` stops at the first violation, which is what a developer fixing one bug wants. A
library author validating a bridge wants every verdict at once, so a conformance run has two phases:

1. **explore**: the state machine runs its whole example budget and never stops at a violation; it
   records each distinct failure (property + cause, ``acp_sim.conformance.cause_of``) with the
   example it first appeared in, counts the examples each property failed in, and counts the hazards
   each example really provoked (``pytest_acp.report.exercised``);
2. **shrink**: for each distinct failure, the same seed is run again with a machine that raises only
   for that failure. Hypothesis generates the same examples up to the first one that shows it (the
   machine behaves the same on all earlier ones: none raised in phase 1 either), then shrinks it as
   usual. The shrunk example is exported as a scenario file, its replay.

The verdicts and tier are then decided by ``acp_sim.conformance`` from these counts alone.
"""

from __future__ import annotations

import functools
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from acp_sim.conformance import (
    HAZARDS,
    PROPERTIES,
    ConformanceReport,
    ConformanceRun,
    Counterexample,
    DeclaredLimit,
    Effect,
    PropertyResult,
    Timing,
    cause_of,
    terminal_table,
    tier_of,
    verdict_for,
)
from acp_sim.live.redact import Redactor
from pytest_acp.adapter import BridgeCapabilities, supports
from pytest_acp.harness.machine import STEPS, AcpStateMachine, BridgeViolation, PropertyViolation
from pytest_acp.harness.machine_run import NotExercised, RunStats, bridge_name, run_machine, run_seeded
from pytest_acp.harness.rule_ends import Verdict
from pytest_acp.properties.violation import Violation
from pytest_acp.report.baseline import Baseline
from pytest_acp.report.exercised import HAZARDS as HAZARD_HELP
from pytest_acp.report.exercised import Exercised
from pytest_acp.report.failure import RunContext

MAX_SHRUNK = 12
"""Distinct failures shrunk per run; the rest are reported as generated."""
SHRINK_BUDGET = 300.0
"""Wall seconds for shrinking a run's failures; a counterexample not shrunk by then is shown as
generated (said so in the report). Within it, a report is the same for a seed byte for byte."""


@dataclass
class Finding:
    """One distinct failure (property + cause) and the first example that showed it."""

    property: str
    cause: str
    message: str
    example: int
    steps: list[str]
    counterexample: Counterexample | None = None


@dataclass
class Tally:
    """What the exploring phase saw, across examples."""

    examples: int = 0
    findings: dict[str, Finding] = field(default_factory=dict)
    failed_examples: Counter[str] = field(default_factory=Counter)
    exercised: Exercised = field(default_factory=Exercised)
    capabilities: BridgeCapabilities | None = None
    prewarm: bool = False
    accepted: dict[str, set[str]] = field(default_factory=dict)
    """Property -> the baseline entries that accepted a violation of it."""
    baseline: Baseline | None = None
    bridge_raised: str | None = None
    """The report of an exception that escaped the bridge (the run stops there)."""


def exploring(machine: type[AcpStateMachine], tally: Tally) -> type[AcpStateMachine]:
    """``machine`` recording every violation instead of stopping at the first."""

    class Exploring(machine):  # type: ignore[valid-type, misc]
        judge_lazily = False  # every rule's verdict, each finding with the steps up to it

        def __init__(self) -> None:
            super().__init__()
            tally.examples += 1
            tally.baseline = self.baseline
            self._example = tally.examples
            self._failed_props: set[str] = set()

        def _fail(self, violations: list[Violation], at: Verdict | None = None) -> None:
            if self.baseline is not None:
                accepted, violations = self.baseline.split(violations)
                for v in accepted:
                    index = self.baseline.entry_for(v)
                    if index is not None:
                        tally.accepted.setdefault(v.property, set()).add(
                            self.baseline.entries[index].describe()
                        )
            for v in violations:
                cause = cause_of(v.property, v.message)
                if cause not in tally.findings:
                    tally.findings[cause] = Finding(
                        v.property, cause, str(v), self._example, list(self.steps)
                    )
                self._failed_props.add(v.property)
            # No raise: the example goes on, so later rules can still show other properties failing.

        def teardown(self) -> None:
            try:
                super().teardown()
            finally:
                for prop in self._failed_props:
                    tally.failed_examples[prop] += 1
                h = self.h
                if h is not None and h.log is not None:
                    tally.capabilities = h.capabilities
                    tally.prewarm = tally.prewarm or supports(h._adapter, "prewarm")

    Exploring.__name__ = machine.__name__
    Exploring.__qualname__ = machine.__qualname__
    return Exploring


def targeting(machine: type[AcpStateMachine], cause: str) -> type[AcpStateMachine]:
    """``machine`` that fails only on violations with this cause (and ignores every other one)."""

    class Targeting(machine):  # type: ignore[valid-type, misc]
        def _fail(self, violations: list[Violation], at: Verdict | None = None) -> None:
            hits = [v for v in violations if cause_of(v.property, v.message) == cause]
            if hits:
                super()._fail(hits, at)

    Targeting.__name__ = machine.__name__
    Targeting.__qualname__ = machine.__qualname__
    return Targeting


def _run(
    machine: type[AcpStateMachine],
    *,
    examples: int,
    seed: int,
    steps: int,
    shrink: bool,
    context: RunContext,
    exercised: Exercised | None = None,
) -> None:
    from pytest_acp.harness.leakguard import LeakGuard

    run_cls = type(
        machine.__name__,
        (machine,),
        {
            "context": context,
            "_hypothesis_internal_use_seed": seed,
            "examples_run": 0,
            "process_baseline": LeakGuard.start(),
            "exercised": exercised if exercised is not None else Exercised(),
            "__module__": machine.__module__,
        },
    )
    run_seeded(run_cls, examples=examples, steps=steps, shrink=shrink)


def run_conformance(
    machine: type[AcpStateMachine],
    *,
    examples: int,
    seed: int,
    steps: int = STEPS,
    context: RunContext | None = None,
    export_dir: Path | None = None,
    shrink_budget: float = SHRINK_BUDGET,
    run: Callable[..., Any] | None = None,
) -> ConformanceRun:
    """Judge every property of ``machine``'s bridge in one run of ``examples`` examples.

    ``run`` runs a machine class (default: Hypothesis on virtual time, as ``run_machine`` does);
    the real-time suite passes its own, and then nothing is shrunk (a replay on real time may take
    another path): each counterexample is the example as generated.
    """
    context = context or RunContext(seed=seed, backend=machine.backend, bridge=bridge_name(machine))
    started = time.perf_counter()
    tally = Tally()
    shrink = run is None
    if run is None:
        run = functools.partial(run_machine, steps=steps, shrink=False)
    try:
        stats = run(exploring(machine, tally), examples=examples, seed=seed, context=context)
        if getattr(stats, "exercised", None) is not None:
            tally.exercised = stats.exercised
    except BridgeViolation as error:
        # The bridge itself raised: nothing more can be driven; the report says so first.
        tally.bridge_raised = str(error)
    except NotExercised as error:
        # The report says what took effect; its verdicts are "not exercised".
        if getattr(error, "exercised", None) is not None:
            tally.exercised = error.exercised
    deadline = time.perf_counter() + shrink_budget
    findings = sorted(tally.findings.values(), key=lambda f: (f.property, f.example, f.cause))
    # Shrunk in this order while the budget lasts: each property's first failure, the property that
    # failed in most examples first (a bug's own property, before the side effects of it), then the rest.
    firsts = {f.property: f for f in reversed(findings)}
    leads = sorted(firsts.values(), key=lambda f: (-tally.failed_examples[f.property], f.property))
    order = [*leads, *(f for f in findings if firsts[f.property] is not f)]
    nth: Counter[str] = Counter()
    for index, finding in enumerate(order):
        # A property's nth counterexample gets a file of its own ("-2", "-3", ...); ``order`` keeps
        # each property's findings in report order.
        nth[finding.property] += 1
        suffix = "" if nth[finding.property] == 1 else f"-{nth[finding.property]}"
        finding.counterexample = Counterexample(
            cause=finding.cause, message=finding.message, example=finding.example, steps=finding.steps
        )
        if not shrink or index >= MAX_SHRUNK or time.perf_counter() > deadline:
            continue
        try:
            # The same budget as the exploring run: Hypothesis then generates the same examples up
            # to the first that shows this failure (none before it raised in either run).
            _run(targeting(machine, finding.cause), examples=examples, seed=seed, steps=steps, shrink=True,
                 context=context)  # fmt: skip
        except PropertyViolation as error:
            finding.counterexample = _counterexample(finding, error, export_dir, context, suffix)
    judged = _judge(tally, findings, context, time.perf_counter() - started, machine.min_effect)
    # Like every other report: violation texts carry chunks, configs and steps of the run.
    return redacted(judged, Redactor.from_env(extra=[k for k in (getattr(machine, "api_key", None),) if k]))


def redacted(run: ConformanceRun, redactor: Redactor) -> ConformanceRun:
    """``run`` with every secret in it replaced by ``[REDACTED]``."""
    return ConformanceRun.model_validate(redactor.value(run.model_dump(mode="json")))


def _counterexample(
    finding: Finding, error: PropertyViolation, export_dir: Path | None, context: RunContext, suffix: str
) -> Counterexample:
    machine = getattr(error, "machine", None)
    steps = list(machine.steps) if machine is not None else finding.steps
    scenario = None
    if export_dir is not None and machine is not None:
        from pytest_acp.scenarios.export import export_failure

        scenario = str(export_failure(error, export_dir, suffix=suffix))
    replay = f"pytest {scenario} --acp-bridge {context.bridge}" if scenario else context.replay
    message = str(error.violations[0]) if error.violations else finding.message
    return Counterexample(
        cause=finding.cause,
        message=message,
        example=finding.example,
        steps=steps,
        scenario=scenario,
        replay=replay,
        shrunk=True,
    )


def applicability(tally: Tally) -> dict[str, str | None]:
    """Property -> why it does not apply to this bridge (``None``: it applies)."""
    caps = tally.capabilities or BridgeCapabilities()
    out: dict[str, str | None] = dict.fromkeys(PROPERTIES)
    if not tally.prewarm:
        out["P7"] = "the bridge has no prewarm(): it cannot hide session/new latency"
    if not caps.reconnects:
        out["P8"] = "reconnects=False: the bridge never resumes a session after a restart"
    if getattr(caps, "usage", True) is False:
        out["P9"] = "usage=False: the bridge reports no token usage to its callers"
    return out


def _judge(
    tally: Tally, findings: list[Finding], context: RunContext, wall: float, min_effect: float
) -> ConformanceRun:
    why_not = applicability(tally)
    # Too little took effect (the bridge refused its opens, or its prompts never reached the agent):
    # nothing was judged, whatever the hazard counts say.
    short = tally.exercised.below(min_effect)
    results = []
    for prop, name in PROPERTIES.items():
        hazards = {h: tally.exercised.hazards.get(h, 0) for h in HAZARDS[prop]}
        failed = tally.failed_examples.get(prop, 0)
        verdict = verdict_for(
            prop,
            applicable=why_not[prop] is None,
            hazards=hazards,
            failed_examples=failed,
            accepted=bool(tally.accepted.get(prop)),
        )
        reason = why_not[prop]
        if verdict == "not_exercised":
            reason = "not provoked in this run: " + ", ".join(HAZARDS[prop])
        if short and verdict in ("pass", "accepted"):
            verdict = "not_exercised"
            reason = f"too little took effect ({tally.exercised.summary()}); short on: {', '.join(short)}"
        if verdict == "accepted":
            reason = "violated only as the baseline accepts"
        results.append(
            PropertyResult(
                property=prop,
                name=name,
                verdict=verdict,
                examples=tally.examples if why_not[prop] is None else 0,
                failed_examples=failed,
                hazards=hazards,
                reason=reason,
                counterexamples=[
                    f.counterexample for f in findings if f.property == prop and f.counterexample
                ],
                accepted=sorted(tally.accepted.get(prop, ())),
            )
        )
    caps = tally.capabilities or BridgeCapabilities()
    matched = set().union(*tally.accepted.values())
    # Per run (the session's baseline summary is across runs): an entry this run never needed.
    stale = [e.describe() for e in tally.baseline.entries] if tally.baseline is not None else []
    counted = tally.exercised.hazards
    hazards = {k: v for k, v in sorted(counted.items()) if not k.startswith("fault:")}
    faults = {k.removeprefix("fault:"): v for k, v in sorted(counted.items()) if k.startswith("fault:")}
    return ConformanceRun(
        bridge=context.bridge,
        backend=context.backend,
        clock="virtual" if context.virtual_time else "real",
        seed=context.seed,
        examples=tally.examples,
        tier="none" if tally.bridge_raised else tier_of(results),
        properties=results,
        bridge_raised=tally.bridge_raised,
        hazards=hazards,
        hazard_help=dict(HAZARD_HELP),
        faults=faults,
        effect=Effect(
            opens_requested=tally.exercised.opens,
            opens_effective=tally.exercised.opened,
            prompts_sent=tally.exercised.prompts,
            prompts_reached=tally.exercised.reached,
        ),
        limits=[DeclaredLimit(capability=c, cost=cost) for c, cost in caps.declared_limits()],
        stale_baseline=[s for s in stale if s not in matched],
        timing=Timing(wall_seconds=round(wall, 3)),
    )


# -- the suite's side: one part per run, one report per pytest session -------------------------------

PARTS = "parts"


class ConformanceFailed(PropertyViolation):
    """A conformance run in which a property failed (or the bridge raised): the message is the
    run's table and each failure's first counterexample."""

    property = "conformance"


def describe(run: ConformanceRun, paths: tuple[Path, Path] | None = None) -> str:
    """The failure text of a run: its table, then each failing property's counterexamples."""
    lines = [terminal_table(run), ""]
    if run.bridge_raised:
        lines += ["the bridge raised, and the run stopped there:", run.bridge_raised, ""]
    for result in run.properties:
        if result.verdict != "fail":
            continue
        for c in result.counterexamples:
            how = "shrunk" if c.shrunk else "as generated, not shrunk"
            lines.append(f"{result.property} {result.name}: {c.message}")
            lines.append(f"  first seen in example {c.example}; steps ({how}):")
            lines.extend(f"    {step}" for step in c.steps)
            if c.replay:
                lines.append(f"  replay: {c.replay}")
            lines.append("")
    if paths is not None:
        lines.append(f"report: {paths[0]} and {paths[1]}")
    return "\n".join(lines)


def reporting(directory: Path, nodeid: str, run: Callable[..., Any] | None = None) -> Callable[..., RunStats]:
    """A runner with ``run_machine``'s signature that runs a conformance run instead, writes its part
    of the session's report, and raises ``ConformanceFailed`` when a property failed."""

    def runner(
        machine: type[AcpStateMachine], *, examples: int, seed: int, context: RunContext, **kw: Any
    ) -> RunStats:
        started = time.perf_counter()
        result = run_conformance(
            machine,
            examples=examples,
            seed=seed,
            context=context,
            export_dir=directory / "counterexamples",
            run=None if run is None else functools.partial(run, **kw),
        )
        write_part(directory, nodeid, result)
        if result.failed:
            raise ConformanceFailed(describe(result))
        return RunStats(result.examples, time.perf_counter() - started, summary=f"tier {result.tier}")

    return runner


def write_part(directory: Path, nodeid: str, run: ConformanceRun) -> Path:
    parts = directory / PARTS
    parts.mkdir(parents=True, exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{nodeid}-{run.bridge}-{run.backend}")
    path = parts / f"{name}.json"
    path.write_text(run.model_dump_json(indent=2), encoding="utf-8")
    return path


def collect_report(directory: Path) -> ConformanceReport | None:
    """Every run's part in ``directory``, as one report (in a stable order: same seed, same bytes)."""
    parts = sorted((directory / PARTS).glob("*.json")) if (directory / PARTS).is_dir() else []
    if not parts:
        return None
    runs = [ConformanceRun.model_validate_json(p.read_text(encoding="utf-8")) for p in parts]
    runs.sort(key=lambda r: (r.bridge, r.backend, r.clock, r.seed))
    return ConformanceReport(runs=runs)


def clear_parts(directory: Path) -> None:
    parts = directory / PARTS
    if parts.is_dir():
        for path in parts.glob("*.json"):
            path.unlink()


__all__ = [
    "ConformanceFailed",
    "Finding",
    "Tally",
    "collect_report",
    "exploring",
    "reporting",
    "run_conformance",
    "targeting",
]
