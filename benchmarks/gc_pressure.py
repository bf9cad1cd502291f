"""Young-generation garbage collections per 1,000 simulated chunks at 1,000 concurrent sessions.

At 1,000 sessions every session's chunk falls due in the same tick. Whatever the orchestrator's
reader leaves alive for each session until its consumer runs counts toward CPython's
young-generation threshold (700 allocations). Each crossing is a collection that promotes the
tick's live objects, so older generations, and then full collections walking the whole heap,
follow (issue 19). When the agent wrote a whole tick in one step and the reader routed it in one,
that was 1.9 collections per 1,000 chunks; written and read a batch of 64 at a time
(``acp_sim.agent.ticker.BATCH``), the updates waiting at once stay far below the threshold. The number of
collections is the same run after run on virtual time, whatever the machine's speed, so it is a
guard (``tests/test_gc_pressure.py``) where wall time could not be one.

The figure is marginal: the collections of a run with 20 chunks per session minus those of one with
10, per 1,000 chunks, so opening the sessions (the same in both) is not counted. The bare
scheduler's figure, the same number of timers, is the floor.

Run: ``python -m benchmarks.gc_pressure``.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any

from acp_sim.clock import BACKENDS, Backend, run
from benchmarks.virtual_time import bare_timers, profile, simulated_run, warm_up

SESSIONS = 1000
FEW, MANY = 10, 20


class CollectorWatch:
    """The garbage collector's passes per generation, and the wall seconds they took, while inside."""

    def __init__(self) -> None:
        self.passes = [0, 0, 0]
        self.seconds = 0.0
        self._started = 0.0

    def _tick(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.passes[info["generation"]] += 1
            self.seconds += time.perf_counter() - self._started

    def __enter__(self) -> CollectorWatch:
        gc.callbacks.append(self._tick)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._tick)


def young_collections(func: Callable[..., Any], *args: Any, backend: Backend) -> int:
    """Generation-0 collections while ``func`` runs (from an empty young generation)."""
    gc.collect()
    with CollectorWatch() as watch:
        run(func, *args, backend=backend)
    return watch.passes[0]


def measure(backend: Backend, sessions: int = SESSIONS) -> dict[str, Any]:
    """(In a fresh process: the count depends on the heap and thresholds the process has.)"""
    warm_up(backend)
    sim = [
        young_collections(simulated_run, sessions, 1, profile(chunks, 0.05, 4.0), backend=backend)
        for chunks in (FEW, MANY)
    ]
    bare = [young_collections(bare_timers, sessions, chunks, 0.05, backend=backend) for chunks in (FEW, MANY)]
    per_1000 = 1000 / (sessions * (MANY - FEW))
    return {
        "backend": backend,
        "sessions": sessions,
        "gen0_per_1000_chunks": round((sim[1] - sim[0]) * per_1000, 2),
        "bare_gen0_per_1000_timers": round((bare[1] - bare[0]) * per_1000, 2),
    }


def main() -> int:
    from benchmarks.fresh import fresh

    for backend in BACKENDS:
        row = fresh("benchmarks.gc_pressure", "measure", backend)
        print(
            f"{backend}: {row['gen0_per_1000_chunks']} young-generation collections per 1,000 chunks at "
            f"{row['sessions']:,} sessions (bare scheduler: {row['bare_gen0_per_1000_timers']} per 1,000 timers)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
