"""Scheduler steps and function calls per simulated chunk: costs in units no machine's speed changes.

Wall time on a shared 2-core machine varies run to run; the number of times the event loop runs a
callback (asyncio) or steps a task (trio) to carry one chunk from the agent to the orchestrator's
caller does not: on virtual time the same program takes the same steps. The bare scheduler's count
(one timer, one step) is the floor. CI keeps the simulator's count from growing
(``tests/test_wakeups.py``), which a timed assertion could not do reliably.

Run: ``python -m benchmarks.wakeups``.
"""

from __future__ import annotations

import asyncio.events
import gc
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from acp_sim.clock import Backend, run
from benchmarks.virtual_time import bare_timers, profile, simulated_run

SESSIONS = 20
CHUNKS = 50


@contextmanager
def counting_calls() -> Iterator[Callable[[], int]]:
    """Count Python function calls (C calls too) while the block runs: the work per step."""
    count = 0

    def profiler(frame: Any, event: str, arg: Any) -> None:
        nonlocal count
        if event in ("call", "c_call"):
            count += 1

    # No garbage collection while counting: when it runs depends on the whole process's heap (what
    # ran before, e.g. other tests in the same worker), and its callbacks (``gc.callbacks``, which
    # Hypothesis registers) and finalizers are calls too.
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    previous = sys.getprofile()
    threading.setprofile(profiler)
    sys.setprofile(profiler)
    try:
        yield lambda: count
    finally:
        sys.setprofile(previous)
        threading.setprofile(previous)  # type: ignore[arg-type]
        if was_enabled:
            gc.enable()


@contextmanager
def counting(backend: Backend) -> Iterator[Callable[[], int]]:
    """Count scheduler steps while the block runs; yields a reader of the count."""
    count = 0
    if backend == "asyncio":
        original = asyncio.events.Handle._run

        def counted(self: Any) -> None:
            nonlocal count
            count += 1
            original(self)

        asyncio.events.Handle._run = counted  # type: ignore[method-assign]
        try:
            yield lambda: count
        finally:
            asyncio.events.Handle._run = original  # type: ignore[method-assign]
        return
    import trio.abc
    import trio.lowlevel

    class Steps(trio.abc.Instrument):
        def before_task_step(self, task: trio.lowlevel.Task) -> None:
            nonlocal count
            count += 1

    steps = Steps()
    _instruments.append(steps)
    try:
        yield lambda: count
    finally:
        _instruments.remove(steps)


_instruments: list[Any] = []


def _run_counted(backend: Backend, func: Any, *args: Any, calls: bool = False) -> tuple[Any, int]:
    with counting_calls() if calls else counting(backend) as read:
        if backend == "trio" and not calls:
            result = run(_with_instruments, func, *args, backend=backend)
        else:
            result = run(func, *args, backend=backend)
        return result, read()


async def _with_instruments(func: Any, *args: Any) -> Any:
    import trio.lowlevel

    for instrument in _instruments:
        trio.lowlevel.add_instrument(instrument)
    try:
        return await func(*args)
    finally:
        for instrument in _instruments:
            trio.lowlevel.remove_instrument(instrument)


def measure(backend: Backend, sessions: int = SESSIONS, chunks: int = CHUNKS) -> dict[str, Any]:
    dense = profile(chunks=chunks, interval=0.05, session_new=4.0)
    (_, delivered), sim_steps = _run_counted(backend, simulated_run, sessions, 1, dense)
    _, bare_steps = _run_counted(backend, bare_timers, sessions, chunks, 0.05)
    _, sim_calls = _run_counted(backend, simulated_run, sessions, 1, dense, calls=True)
    _, bare_calls = _run_counted(backend, bare_timers, sessions, chunks, 0.05, calls=True)
    assert delivered == sessions * chunks, f"delivered {delivered} of {sessions * chunks} chunks"
    timers = sessions * chunks
    return {
        "backend": backend,
        "chunks": delivered,
        "steps_per_chunk": round(sim_steps / delivered, 2),
        "bare_steps_per_timer": round(bare_steps / timers, 2),
        "calls_per_chunk": round(sim_calls / delivered, 1),
        "bare_calls_per_timer": round(bare_calls / timers, 1),
    }


def main() -> int:
    for backend in ("asyncio", "trio"):
        row = measure(backend)  # type: ignore[arg-type]
        print(
            f"{backend}: {row['steps_per_chunk']} scheduler steps and {row['calls_per_chunk']} function "
            f"calls per chunk (bare scheduler: {row['bare_steps_per_timer']} and "
            f"{row['bare_calls_per_timer']} per timer)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
