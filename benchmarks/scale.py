"""Scale in process: N concurrent sessions x 100 chunks through the reference orchestrator.

For each N in 10 / 100 / 1,000 / 10,000: wall time, peak traced memory, and the growth factor of
both per 10x sessions (close to 10 means linear). Goal: 1,000 x 100 in under 2 s on 2 cores.
Each figure sits next to the bare virtual-clock scheduler firing the same number of timers.

Run: ``python -m benchmarks.scale [--max-sessions N] [--backend asyncio|trio]``.
"""

from __future__ import annotations

import argparse
import gc
import time
import tracemalloc
from typing import Any

from acp_sim.clock import BACKENDS, Backend, run
from benchmarks.virtual_time import bare_timers, profile, simulated_run

CHUNKS = 100
GOAL_SECONDS_AT_1000 = 2.0


def one(sessions: int, backend: Backend) -> dict[str, Any]:
    dense = profile(chunks=CHUNKS, interval=0.05, session_new=4.0)
    gc.collect()
    t0 = time.perf_counter()
    _, delivered = run(simulated_run, sessions, 1, dense, backend=backend)
    wall = time.perf_counter() - t0
    # Memory in a second, identical run: tracemalloc slows Python down several times.
    gc.collect()
    tracemalloc.start()
    run(simulated_run, sessions, 1, dense, backend=backend)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    t0 = time.perf_counter()
    run(bare_timers, sessions, CHUNKS, 0.05, backend=backend)
    bare = time.perf_counter() - t0
    assert delivered == sessions * CHUNKS, f"delivered {delivered} of {sessions * CHUNKS} chunks"
    return {
        "sessions": sessions,
        "chunks": delivered,
        "wall_s": round(wall, 3),
        "bare_wall_s": round(bare, 3),
        "x_bare": round(wall / bare, 2),
        "peak_mb": round(peak / 2**20, 1),
    }


def measure(backend: Backend, max_sessions: int = 10_000) -> list[dict[str, Any]]:
    run(simulated_run, 2, 1, profile(5, 0.05, 4.0), backend=backend)  # warm-up
    rows: list[dict[str, Any]] = []
    n = 10
    while n <= max_sessions:
        row = one(n, backend)
        if rows:
            row["wall_growth"] = round(row["wall_s"] / rows[-1]["wall_s"], 2)
            row["mem_growth"] = round(row["peak_mb"] / max(rows[-1]["peak_mb"], 0.1), 2)
        rows.append(row)
        n *= 10
    return rows


def print_table(backend: str, rows: list[dict[str, Any]]) -> None:
    print(f"{backend}: sessions x {CHUNKS} chunks (goal: 1,000 sessions in < {GOAL_SECONDS_AT_1000} s)")
    print(
        f"{'sessions':>9} {'wall s':>8} {'bare s':>7} {'x bare':>7} {'peak MB':>8} {'growth':>7} {'mem':>6}"
    )
    for r in rows:
        print(
            f"{r['sessions']:>9,} {r['wall_s']:>8} {r['bare_wall_s']:>7} {r['x_bare']:>7} {r['peak_mb']:>8}"
            f" {r.get('wall_growth', ''):>7} {r.get('mem_growth', ''):>6}"
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
