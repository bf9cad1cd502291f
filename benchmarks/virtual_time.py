"""Virtual time: simulated seconds per wall second, and the cost per simulated event.

Two figures, each measured side by side in the same run:
1. a latency-bound run (cold session/new plus slow streaming, the shape of a real turn):
   simulated seconds / wall seconds (goal: at least 10,000x);
2. the honest one: wall cost per simulated event (one chunk through agent, wire and
   orchestrator) next to the bare virtual-clock scheduler firing the same number of timers,
   the physical limit of anything built on it (goal, issue 19: at most 3x the limit on asyncio,
   2x on trio). Each of the two is measured in a fresh process of its own (``benchmarks.fresh``).

Run: ``python -m benchmarks.virtual_time`` (add ``--json OUT`` to keep the figures).
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import anyio

from acp_sim.agent import InProcessAgent
from acp_sim.clock import BACKENDS, Backend, run
from acp_sim.orchestrator import Orchestrator
from acp_sim.profile import AgentProfile, ModelProfile, TurnProfile
from benchmarks.fresh import fresh

# Cost per simulated chunk, as a multiple of the bare scheduler's cost per timer (issue 19).
GOAL_X_BARE = {"asyncio": 3.0, "trio": 2.0}
DENSE_SESSIONS, DENSE_TURNS, DENSE_CHUNKS = 100, 2, 100


def profile(chunks: int, interval: float, session_new: float) -> AgentProfile:
    turn = TurnProfile(chunk_count=chunks, chunk_interval=interval, first_chunk_delay=0.5)
    return AgentProfile(
        models={
            "default": ModelProfile(session_new_cold=session_new, session_new_warm=session_new, turn=turn)
        }
    )


async def simulated_run(sessions: int, turns: int, agent_profile: AgentProfile) -> tuple[float, int]:
    """Open ``sessions`` concurrently, run ``turns`` turns in each; return (simulated s, chunks delivered)."""
    start = anyio.current_time()
    delivered = 0
    async with Orchestrator(InProcessAgent(agent_profile, seed=1)) as orch:

        async def one() -> None:
            nonlocal delivered
            session = await orch.open_session(cwd="/bench")
            for _ in range(turns):
                async for update in session.prompt("go"):
                    delivered += update.kind == "agent_message_chunk"

        async with anyio.create_task_group() as tg:
            for _ in range(sessions):
                tg.start_soon(one)
    return anyio.current_time() - start, delivered


async def bare_timers(tasks: int, events_per_task: int, interval: float) -> float:
    """The limit: the same number of timer events, nothing else."""
    start = anyio.current_time()

    async def ticker() -> None:
        for _ in range(events_per_task):
            await anyio.sleep(interval)

    async with anyio.create_task_group() as tg:
        for _ in range(tasks):
            tg.start_soon(ticker)
    return anyio.current_time() - start


def warm_up(backend: Backend, *, bare: bool = False) -> None:
    """A tiny run before the measured one, so first-call costs (imports, pydantic schema building)
    are not charged to it; ``bare``: of the bare scheduler instead of the simulation."""
    if bare:
        run(bare_timers, 2, 5, 0.05, backend=backend)
    else:
        run(simulated_run, 2, 1, profile(5, 0.05, 4.0), backend=backend)


def timed(func: Any, *args: Any, backend: Backend) -> tuple[float, Any]:
    t0 = time.perf_counter()
    result = run(func, *args, backend=backend)
    return time.perf_counter() - t0, result


def dense_simulated(backend: Backend, repeat: int) -> tuple[float, int]:
    """(In a fresh process.) Best wall time of 100 sessions x 2 turns x 100 chunks, and the chunks."""
    warm_up(backend)
    dense = profile(chunks=DENSE_CHUNKS, interval=0.05, session_new=4.0)
    wall, (_, chunks) = min(
        timed(simulated_run, DENSE_SESSIONS, DENSE_TURNS, dense, backend=backend) for _ in range(repeat)
    )
    return wall, chunks


def dense_bare(backend: Backend, repeat: int) -> float:
    """(In a fresh process.) The limit: best wall time of the same number of bare timers."""
    warm_up(backend, bare=True)
    events = DENSE_TURNS * DENSE_CHUNKS
    return min(timed(bare_timers, DENSE_SESSIONS, events, 0.05, backend=backend)[0] for _ in range(repeat))


def measure(backend: Backend, repeat: int = 3) -> dict[str, Any]:
    warm_up(backend)

    latency = profile(chunks=20, interval=1.0, session_new=4.0)
    best_latency = min(timed(simulated_run, 3, 2, latency, backend=backend) for _ in range(repeat))
    wall, (simulated, latency_chunks) = best_latency
    # The same timeline with nothing but timers: the best ratio any simulator could reach here.
    bare_latency_wall, bare_simulated = min(
        timed(bare_timers, 3, latency_chunks // 3, simulated / (latency_chunks // 3), backend=backend)
        for _ in range(repeat)
    )

    sim_wall, chunks = fresh("benchmarks.virtual_time", "dense_simulated", backend, repeat)
    bare_wall = fresh("benchmarks.virtual_time", "dense_bare", backend, repeat)
    return {
        "backend": backend,
        "latency_bound": {
            "simulated_s": round(simulated, 3),
            "wall_s": round(wall, 4),
            "ratio": round(simulated / wall),
            "bare_ratio": round(bare_simulated / bare_latency_wall),
        },
        "per_event": {
            "events": chunks,
            "simulator_us_per_event": round(sim_wall / chunks * 1e6, 2),
            "bare_scheduler_us_per_event": round(bare_wall / chunks * 1e6, 2),
            "simulator_over_bare": round(sim_wall / bare_wall, 2),
            "goal_over_bare": GOAL_X_BARE[backend],
        },
    }


def print_table(results: list[dict[str, Any]]) -> None:
    print(
        f"{'backend':<8} {'sim s':>7} {'wall s':>8} {'sim/wall':>9} {'goal':>8} {'bare':>8} | "
        f"{'events':>7} {'us/event':>9} {'bare us':>8} {'x bare':>7} {'goal':>5}"
    )
    for r in results:
        lat, ev = r["latency_bound"], r["per_event"]
        print(
            f"{r['backend']:<8} {lat['simulated_s']:>7} {lat['wall_s']:>8} {lat['ratio']:>9,} {'10,000':>8} {lat['bare_ratio']:>8,} | "
            f"{ev['events']:>7} {ev['simulator_us_per_event']:>9} {ev['bare_scheduler_us_per_event']:>8} "
            f"{ev['simulator_over_bare']:>7} {'<= ' + str(ev['goal_over_bare']):>5}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", metavar="OUT", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    results = [measure(backend) for backend in BACKENDS]
    print_table(results)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
