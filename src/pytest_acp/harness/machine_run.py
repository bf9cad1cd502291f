"""Running a state machine: a machine class for a bridge, Hypothesis' settings, and a run's verdict.

``machine_for(factory)`` makes an ``AcpStateMachine`` (``machine``) for a bridge; ``run_machine``
runs its examples from a seed (the same seed, machine and bridge give the same examples) and
raises the first ``PropertyViolation``, shrunk. A run that passed but in which too few opens or
prompts took effect judged nothing, and says so (``NotExercised``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, ClassVar

from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import run_state_machine_as_test

from acp_sim.clock import Backend
from pytest_acp.adapter import AdapterFactory
from pytest_acp.harness.frozen_heap import frozen_heap
from pytest_acp.harness.leakguard import LeakGuard
from pytest_acp.harness.machine import STEPS, AcpStateMachine, PropertyViolation
from pytest_acp.harness.pinned_constants import pinned_constants
from pytest_acp.report.coverage import RunCoverage
from pytest_acp.report.exercised import Exercised
from pytest_acp.report.failure import RunContext
from pytest_acp.report.progress import Progress


class NotExercised(PropertyViolation):
    """The run passed, but too few of its actions took effect for the pass to mean anything."""

    property: ClassVar[str] = "effect"


def judge_effect(machine: type[AcpStateMachine], context: RunContext | None) -> Exercised | None:
    """Raise ``NotExercised`` when a passing run's opens or prompts fell below ``min_effect``."""
    run = machine.exercised
    if run is None:
        return None
    short = run.below(machine.min_effect)
    if not short:
        return run
    lines = [
        f"nothing happened: {run.summary()}, over {run.examples} example(s)",
        f"  at least {machine.min_effect:.0%} of the opens and of the prompts must take effect "
        "(--acp-min-effect, ini acp_min_effect); this run fell short on: " + ", ".join(short),
        "  a run in which the bridge did not do what it was asked judges nothing: look at why its "
        "opens fail or its prompts never reach the agent",
    ]
    if context is not None:
        clock = "virtual time" if context.virtual_time else "real time"
        lines += [
            "",
            f"bridge:  {context.bridge} ({context.backend}, {clock})",
            f"seed:    {context.seed_line()}",
        ]
        if context.replay:
            lines.append(f"replay:  {context.replay}")
    error = NotExercised("\n".join(lines))
    error.exercised = run  # type: ignore[attr-defined]  (what a conformance report shows)
    raise error


def machine_for(
    factory: AdapterFactory,
    *,
    backend: Backend = "asyncio",
    name: str | None = None,
    base: type[AcpStateMachine] = AcpStateMachine,
    **attributes: Any,
) -> type[AcpStateMachine]:
    """A state machine class for this bridge factory (``attributes`` override class attributes)."""
    cls_name = name or f"{getattr(factory, '__name__', 'Bridge')}Machine"
    body = {"bridge": staticmethod(factory), "backend": backend, **attributes}
    return type(cls_name, (base,), body)


@dataclass
class RunStats:
    """What a passing run did."""

    examples: int
    wall_seconds: float
    budget: str | None = None
    """A live run's spending against its budget (``BudgetMeter.summary``)."""
    exercised: Exercised | None = None
    """What the run's examples exercised (``pytest_acp.report.exercised``)."""
    summary: str = ""
    """One line of what the run covered (``RunCoverage.summary``)."""


def bridge_name(machine: type[AcpStateMachine]) -> str:
    factory = machine.bridge
    if factory is None:
        return "?"
    return f"{getattr(factory, '__module__', '?')}:{getattr(factory, '__qualname__', repr(factory))}"


def machine_settings(examples: int, *, steps: int = STEPS, shrink: bool = True) -> settings:
    return settings(
        max_examples=examples,
        stateful_step_count=steps,
        deadline=None,
        database=None,
        derandomize=False,
        report_multiple_bugs=False,
        print_blob=False,
        suppress_health_check=list(HealthCheck),
        phases=(Phase.explicit, Phase.generate, Phase.shrink) if shrink else (Phase.explicit, Phase.generate),
    )


def run_seeded(run_cls: type[AcpStateMachine], *, examples: int, steps: int, shrink: bool) -> None:
    """Run a machine class that carries its seed (``_hypothesis_internal_use_seed``): the examples
    depend on the seed alone, not on what else this process imported (``pinned_constants``). The
    objects alive before it are left out of the collector's passes until it ends (``frozen_heap``)."""
    with pinned_constants(), frozen_heap():
        run_state_machine_as_test(run_cls, settings=machine_settings(examples, steps=steps, shrink=shrink))


def run_machine(
    machine: type[AcpStateMachine],
    *,
    examples: int,
    seed: int,
    steps: int = STEPS,
    shrink: bool = True,
    context: RunContext | None = None,
    progress: Progress | None = None,
) -> RunStats:
    """Run ``machine`` for ``examples`` examples from ``seed``; raises ``PropertyViolation`` (shrunk).

    The same seed, machine and bridge give the same examples, so a failure replays exactly.
    ``progress``: where a long run says where it is (default: stderr, after ``machine.progress_after``
    real seconds; ``pytest_acp.report.progress``).
    """
    ctx = context or RunContext(seed=seed, backend=machine.backend, bridge=bridge_name(machine))
    run_cls = type(
        machine.__name__,
        (machine,),
        {
            "context": ctx,
            "_hypothesis_internal_use_seed": seed,
            "examples_run": 0,
            "coverage": RunCoverage(),
            "process_baseline": LeakGuard.start(),
            "exercised": Exercised(),
            "progress": progress or Progress(examples, steps, after=machine.progress_after),
            "__module__": machine.__module__,
        },
    )
    started = time.perf_counter()
    try:
        run_seeded(run_cls, examples=examples, steps=steps, shrink=shrink)
    except PropertyViolation as exc:
        exc.examples = run_cls.examples_run  # type: ignore[attr-defined]
        raise
    exercised = judge_effect(run_cls, ctx)
    coverage = run_cls.coverage
    faults = run_cls.exercised.faults if run_cls.exercised is not None else 0
    summary = coverage.summary(run_cls.examples_run, faults) if coverage is not None else ""
    return RunStats(run_cls.examples_run, time.perf_counter() - started, exercised=exercised, summary=summary)
