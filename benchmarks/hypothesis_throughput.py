"""State-machine throughput: examples per minute against the reference orchestrator, and how long
the suite takes to catch each seeded bug (examples and wall seconds), on virtual time.

Goal: >= 2,000 examples per minute against the reference orchestrator on asyncio (issue 19).

The limit, measured in the same run: Hypothesis drives the rules from the main thread, and the
simulation (agent, bridge, oracle) runs on its own thread only while a rule waits for it, so the
two never run at once. The main thread's CPU time is what any simulation would leave: Hypothesis's
engine (drawing, mutating, shrinking bookkeeping) and the rules' synchronous glue. Examples per
minute with a simulation that cost nothing is at most ``examples / main CPU seconds x 60``; the
rest of the process's CPU time is ours, and wall time beyond both is the hand-over between threads.
Next to it (asyncio), the same examples judged after every rule (``judge_lazily=False``) in
alternating rounds: what judging each example once, at its end, saves.
Run: ``python -m benchmarks.hypothesis_throughput [--examples N] [--backend asyncio|trio]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from acp_sim.clock import BACKENDS, Backend
from benchmarks.gc_pressure import CollectorWatch
from pytest_acp.bugs.catalog import CATALOG
from pytest_acp.harness.machine import PropertyViolation
from pytest_acp.harness.machine_run import machine_for, run_machine
from pytest_acp.reference import bridge as reference_bridge

GOAL_PER_MINUTE = 2_000  # issue 19: on asyncio, against the reference orchestrator


def reference_rate(
    backend: Backend, examples: int, seed: int, *, judge_lazily: bool = True
) -> dict[str, Any]:
    machine = machine_for(reference_bridge, backend=backend, judge_lazily=judge_lazily)
    main_cpu, process_cpu = time.thread_time(), time.process_time()
    with CollectorWatch() as collector:
        stats = run_machine(machine, examples=examples, seed=seed)
    main_cpu, process_cpu = time.thread_time() - main_cpu, time.process_time() - process_cpu
    n = stats.examples
    return {
        "examples": n,
        "wall_s": round(stats.wall_seconds, 2),
        "per_minute": round(n / stats.wall_seconds * 60),
        # Per example, in ms: Hypothesis's side (main thread), ours (every other thread), hand-over.
        "hypothesis_ms": round(main_cpu / n * 1e3, 2),
        "simulation_ms": round((process_cpu - main_cpu) / n * 1e3, 2),
        "handover_ms": round(max(stats.wall_seconds - process_cpu, 0.0) / n * 1e3, 2),
        # Of the two shares above, the garbage collector's (it runs on whichever thread allocates).
        "collector_ms": round(collector.seconds / n * 1e3, 2),
        "ceiling_per_minute": round(n / main_cpu * 60),
    }


def describe(ref: dict[str, Any]) -> str:
    """The rate next to its limit: what an example costs on each side, and the ceiling."""
    budget = 60_000 / GOAL_PER_MINUTE - ref["hypothesis_ms"]
    return (
        f"{ref['per_minute']:,} examples/min (goal >= {GOAL_PER_MINUTE:,}); per example "
        f"{ref['hypothesis_ms']} ms Hypothesis, {ref['simulation_ms']} ms simulation and oracle, "
        f"{ref['handover_ms']} ms hand-over (garbage collection: {ref['collector_ms']} ms of the first two); "
        "with a simulation that cost nothing: "
        f"{ref['ceiling_per_minute']:,}/min (the goal leaves the simulation {budget:.1f} ms)"
    )


def judging_lever(backend: Backend, examples: int, seed: int, rounds: int) -> dict[str, Any]:
    """Examples per minute judging each example at its end (``judge_lazily``, the default) and
    after every rule, in alternating rounds of the same examples: medians and the paired ratio."""
    lazy, eager = [], []
    for _ in range(rounds):
        eager.append(reference_rate(backend, examples, seed, judge_lazily=False)["per_minute"])
        lazy.append(reference_rate(backend, examples, seed)["per_minute"])
    return {
        "rounds": rounds,
        "at_the_end_per_minute": statistics.median(lazy),
        "every_rule_per_minute": statistics.median(eager),
        "ratio": round(statistics.median(a / b for a, b in zip(lazy, eager, strict=True)), 2),
    }


def describe_lever(row: dict[str, Any]) -> str:
    return (
        f"judged once at each example's end: {row['at_the_end_per_minute']:,.0f} examples/min; after "
        f"every rule: {row['every_rule_per_minute']:,.0f}/min ({row['ratio']}x, medians of "
        f"{row['rounds']} paired rounds)"
    )


def time_to_catch(backend: Backend, seed: int, budget: int = 200) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, bug in CATALOG.items():
        started = time.perf_counter()
        try:
            run_machine(machine_for(bug.bridge, backend=backend), examples=budget, seed=seed, shrink=False)
        except PropertyViolation as exc:
            found = sorted({v.property for v in exc.violations})
            out[name] = {
                "examples": getattr(exc, "examples", None),
                "wall_s": round(time.perf_counter() - started, 2),
                "properties": found,
            }
        else:
            out[name] = {
                "examples": None,
                "wall_s": round(time.perf_counter() - started, 2),
                "properties": [],
            }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backend", choices=BACKENDS, action="append")
    args = parser.parse_args(argv)
    for backend in args.backend or BACKENDS:
        ref = reference_rate(backend, args.examples, args.seed)
        print(
            f"{backend}: reference orchestrator, {ref['examples']} examples in {ref['wall_s']} s: {describe(ref)}"
        )
        if backend == "asyncio":
            print(f"  {describe_lever(judging_lever(backend, args.examples, args.seed, 3))}")
        for name, row in time_to_catch(backend, args.seed).items():
            caught = f"caught after {row['examples']} examples" if row["properties"] else "NOT caught in 200"
            print(f"  {name:<28} {caught:<28} {row['wall_s']:>6} s  {','.join(row['properties'])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
