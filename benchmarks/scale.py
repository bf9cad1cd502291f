"""Scale in process: N concurrent sessions x 100 chunks through the reference orchestrator.

For each N in 10 / 100 / 1,000 / 10,000: wall time, peak traced memory, and the growth factor of
both per 10x sessions (close to 10 means linear), next to the limit: the bare virtual-clock
scheduler firing the same number of timers, and its own growth. Goals (issue 19): 1,000 x 100 in
under 3 s on asyncio, and growth per 10x sessions no worse than the bare scheduler's.

Every figure is measured in a fresh process of its own (``benchmarks.fresh``): the limit is not
charged for the heap an earlier run left, and the simulator's growth is not charged for the runs
before it. Wall times are medians of ``--repeat`` rounds, each round running the simulation and
the bare scheduler in turn, so a drift of the machine's speed hits both alike (one round each, the
bare scheduler's own growth from 100 to 1,000 came out anywhere from 8x to 14x on the 2-core
machine). Up to 1,000 sessions the simulation is also run with the garbage collector switched off
after the warm-up ("collector off"): what is left of its growth is the simulation's own, and the
difference is what the collector's passes cost as the heap grows.

Run: ``python -m benchmarks.scale [--max-sessions N] [--repeat R] [--backend asyncio|trio]``.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
import tracemalloc
from typing import Any

from acp_sim.clock import BACKENDS, Backend, run
from benchmarks.fresh import fresh
from benchmarks.virtual_time import bare_timers, profile, simulated_run, warm_up

CHUNKS = 100
GOAL_SECONDS_AT_1000 = 3.0
COLLECTOR_OFF_UP_TO = 1_000  # beyond it, a run's uncollected cycles would cost more memory than it tells


def _dense() -> Any:
    return profile(chunks=CHUNKS, interval=0.05, session_new=4.0)


def sim_wall(sessions: int, backend: Backend, collector: bool = True) -> dict[str, Any]:
    """(In a fresh process.) Wall seconds of ``sessions`` x 100 chunks, after a small warm-up;
    with ``collector=False``, the garbage collector is off for the measured run."""
    warm_up(backend)
    gc.collect()
    if not collector:
        gc.disable()  # the process ends after this run: nothing to re-enable
    t0 = time.perf_counter()
    _, delivered = run(simulated_run, sessions, 1, _dense(), backend=backend)
    return {"wall_s": time.perf_counter() - t0, "chunks": delivered}


def sim_peak_mb(sessions: int, backend: Backend) -> float:
    """(In a fresh process.) Peak traced memory of the same run: tracemalloc slows Python down
    several times, so this is a run of its own."""
    warm_up(backend)
    gc.collect()
    tracemalloc.start()
    run(simulated_run, sessions, 1, _dense(), backend=backend)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20


def bare_wall(sessions: int, backend: Backend) -> float:
    """(In a fresh process.) The limit: ``sessions`` tasks x 100 timers on the bare scheduler."""
    warm_up(backend, bare=True)
    gc.collect()
    t0 = time.perf_counter()
    run(bare_timers, sessions, CHUNKS, 0.05, backend=backend)
    return time.perf_counter() - t0


def _simulated(sessions: int, backend: Backend, collector: bool = True) -> float:
    sim = fresh("benchmarks.scale", "sim_wall", sessions, backend, collector)
    assert sim["chunks"] == sessions * CHUNKS, f"delivered {sim['chunks']} of {sessions * CHUNKS} chunks"
    return float(sim["wall_s"])


def one(sessions: int, backend: Backend, repeat: int = 1) -> dict[str, Any]:
    """Medians of ``repeat`` rounds; in each round the simulation, the bare scheduler and (up to
    ``COLLECTOR_OFF_UP_TO`` sessions) the simulation with the collector off run in turn."""
    sim: list[float] = []
    bare: list[float] = []
    off: list[float] = []
    for _ in range(repeat):
        sim.append(_simulated(sessions, backend))
        bare.append(fresh("benchmarks.scale", "bare_wall", sessions, backend))
        if sessions <= COLLECTOR_OFF_UP_TO:
            off.append(_simulated(sessions, backend, collector=False))
    peak = fresh("benchmarks.scale", "sim_peak_mb", sessions, backend)
    wall, bare_wall = statistics.median(sim), statistics.median(bare)
    row: dict[str, Any] = {
        "sessions": sessions,
        "chunks": sessions * CHUNKS,
        "rounds": repeat,
        "wall_s": round(wall, 3),
        "bare_wall_s": round(bare_wall, 3),
        "x_bare": round(wall / bare_wall, 2),
        "peak_mb": round(peak, 1),
    }
    if off:
        row["collector_off_wall_s"] = round(statistics.median(off), 3)
    return row


def measure(backend: Backend, max_sessions: int = 10_000, repeat: int = 3) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    n = 10
    while n <= max_sessions:
        # Small runs are noisy and cheap: more rounds for them.
        row = one(n, backend, repeat if n >= 1_000 else 2 * repeat)
        if rows:
            prev = rows[-1]
            row["wall_growth"] = round(row["wall_s"] / prev["wall_s"], 2)
            row["bare_growth"] = round(row["bare_wall_s"] / prev["bare_wall_s"], 2)
            if "collector_off_wall_s" in row and "collector_off_wall_s" in prev:
                row["collector_off_growth"] = round(
                    row["collector_off_wall_s"] / prev["collector_off_wall_s"], 2
                )
            row["mem_growth"] = round(row["peak_mb"] / max(prev["peak_mb"], 0.1), 2)
        rows.append(row)
        n *= 10
    return rows


def print_table(backend: str, rows: list[dict[str, Any]]) -> None:
    goal = f"1,000 sessions in < {GOAL_SECONDS_AT_1000} s" if backend == "asyncio" else "no time goal"
    print(
        f"{backend}: sessions x {CHUNKS} chunks, each figure in a fresh process "
        f"(goals: {goal}; growth per 10x no worse than the bare scheduler's)"
    )
    rounds = " or ".join(str(n) for n in sorted({r["rounds"] for r in rows}))
    print(f"  (medians of {rounds} rounds; 'gc off': the collector off)")
    print(
        f"{'sessions':>9} {'wall s':>8} {'bare s':>7} {'x bare':>7} {'gc off s':>9} {'peak MB':>8} {'growth':>7}"
        f" {'bare gr':>8} {'gc off gr':>10} {'mem':>6}"
    )
    for r in rows:
        print(
            f"{r['sessions']:>9,} {r['wall_s']:>8} {r['bare_wall_s']:>7} {r['x_bare']:>7}"
            f" {r.get('collector_off_wall_s', ''):>9} {r['peak_mb']:>8} {r.get('wall_growth', ''):>7}"
            f" {r.get('bare_growth', ''):>8} {r.get('collector_off_growth', ''):>10} {r.get('mem_growth', ''):>6}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-sessions", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3, help="rounds per size (twice as many below 1,000)")
    parser.add_argument("--backend", choices=BACKENDS, action="append")
    args = parser.parse_args(argv)
    for backend in args.backend or BACKENDS:
        print_table(backend, measure(backend, args.max_sessions, args.repeat))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
