"""Scale in process: N concurrent sessions x 100 chunks through the reference orchestrator.

For each N in 10 / 100 / 1,000 / 10,000: wall time, peak traced memory, and the growth factor of
both per 10x sessions (close to 10 means linear), next to the limit: the bare virtual-clock
scheduler firing the same number of timers, and its own growth. Goals (issue 19): 1,000 x 100 in
under 3 s on asyncio, and growth per 10x sessions no worse than the bare scheduler's.

Every figure is measured in a fresh process of its own (``benchmarks.fresh``): the limit is not
charged for the heap an earlier run left, and the simulator's growth is not charged for the runs
before it. The ratios compare figures of the same benchmark run.

Run: ``python -m benchmarks.scale [--max-sessions N] [--backend asyncio|trio]``.
"""

from __future__ import annotations

import argparse
import gc
import time
import tracemalloc
from typing import Any

from acp_sim.clock import BACKENDS, Backend, run
from benchmarks.fresh import fresh
from benchmarks.virtual_time import bare_timers, profile, simulated_run

CHUNKS = 100
GOAL_SECONDS_AT_1000 = 3.0


def _dense() -> Any:
    return profile(chunks=CHUNKS, interval=0.05, session_new=4.0)


def sim_wall(sessions: int, backend: Backend) -> dict[str, Any]:
    """(In a fresh process.) Wall seconds of ``sessions`` x 100 chunks, after a small warm-up."""
    run(simulated_run, 2, 1, profile(5, 0.05, 4.0), backend=backend)  # imports, schema building
    gc.collect()
    t0 = time.perf_counter()
    _, delivered = run(simulated_run, sessions, 1, _dense(), backend=backend)
    return {"wall_s": time.perf_counter() - t0, "chunks": delivered}


def sim_peak_mb(sessions: int, backend: Backend) -> float:
    """(In a fresh process.) Peak traced memory of the same run: tracemalloc slows Python down
    several times, so this is a run of its own."""
    run(simulated_run, 2, 1, profile(5, 0.05, 4.0), backend=backend)
    gc.collect()
    tracemalloc.start()
    run(simulated_run, sessions, 1, _dense(), backend=backend)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20


def bare_wall(sessions: int, backend: Backend) -> float:
    """(In a fresh process.) The limit: ``sessions`` tasks x 100 timers on the bare scheduler."""
    run(bare_timers, 2, 5, 0.05, backend=backend)
    gc.collect()
    t0 = time.perf_counter()
    run(bare_timers, sessions, CHUNKS, 0.05, backend=backend)
    return time.perf_counter() - t0


def one(sessions: int, backend: Backend) -> dict[str, Any]:
    sim = fresh("benchmarks.scale", "sim_wall", sessions, backend)
    bare = fresh("benchmarks.scale", "bare_wall", sessions, backend)
    peak = fresh("benchmarks.scale", "sim_peak_mb", sessions, backend)
    assert sim["chunks"] == sessions * CHUNKS, f"delivered {sim['chunks']} of {sessions * CHUNKS} chunks"
    return {
        "sessions": sessions,
        "chunks": sim["chunks"],
        "wall_s": round(sim["wall_s"], 3),
        "bare_wall_s": round(bare, 3),
        "x_bare": round(sim["wall_s"] / bare, 2),
        "peak_mb": round(peak, 1),
    }


def measure(backend: Backend, max_sessions: int = 10_000) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    n = 10
    while n <= max_sessions:
        row = one(n, backend)
        if rows:
            row["wall_growth"] = round(row["wall_s"] / rows[-1]["wall_s"], 2)
            row["bare_growth"] = round(row["bare_wall_s"] / rows[-1]["bare_wall_s"], 2)
            row["mem_growth"] = round(row["peak_mb"] / max(rows[-1]["peak_mb"], 0.1), 2)
        rows.append(row)
        n *= 10
    return rows


def print_table(backend: str, rows: list[dict[str, Any]]) -> None:
    goal = f"1,000 sessions in < {GOAL_SECONDS_AT_1000} s" if backend == "asyncio" else "no time goal"
    print(
        f"{backend}: sessions x {CHUNKS} chunks, each figure in a fresh process "
        f"(goals: {goal}; growth per 10x no worse than the bare scheduler's)"
    )
    print(
        f"{'sessions':>9} {'wall s':>8} {'bare s':>7} {'x bare':>7} {'peak MB':>8} {'growth':>7}"
        f" {'bare gr':>8} {'mem':>6}"
    )
    for r in rows:
        print(
            f"{r['sessions']:>9,} {r['wall_s']:>8} {r['bare_wall_s']:>7} {r['x_bare']:>7} {r['peak_mb']:>8}"
            f" {r.get('wall_growth', ''):>7} {r.get('bare_growth', ''):>8} {r.get('mem_growth', ''):>6}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-sessions", type=int, default=10_000)
    parser.add_argument("--backend", choices=BACKENDS, action="append")
    args = parser.parse_args(argv)
    for backend in args.backend or BACKENDS:
        print_table(backend, measure(backend, args.max_sessions))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
