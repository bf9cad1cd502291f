"""Virtual time on both anyio backends, and the one seeded random source of a simulation.

trio runs on ``trio.testing.MockClock(autojump_threshold=0)``; asyncio runs on looptime's
virtual-time event loop. Either way the clock jumps to the next timer whenever every task is
waiting, so simulated seconds cost microseconds.

Hazard (see the design notes): the clock also jumps while a task waits on a *real* process's
pipe, so nothing running on virtual time may await a real process's I/O. Anything that talks to a
real process (the stdio agent, live mode) runs on ``real`` time.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypeVar

import anyio

from acp_sim.loop_primitives import loop_clock, loop_sleep

Backend = Literal["asyncio", "trio"]
BACKENDS: tuple[Backend, ...] = ("asyncio", "trio")
T = TypeVar("T")


def backend_options(backend: Backend, *, virtual: bool = True) -> dict[str, Any]:
    """The ``backend_options`` for ``anyio.run`` (and anyio's pytest plugin) on virtual or real time."""
    if not virtual:
        return {}
    if backend == "trio":
        import trio.testing

        deterministic_trio_scheduling()
        return {"clock": trio.testing.MockClock(autojump_threshold=0)}
    if backend == "asyncio":
        import looptime

        # Nanosecond ticks: looptime rounds every timer up by one tick, which at its default
        # microsecond resolution drifts by 1 us per timer; at 1 ns it stays below the trace's rounding.
        return {"loop_factory": functools.partial(looptime.new_event_loop, resolution=1e-9, noop_cycles=1)}
    raise ValueError(f"unknown anyio backend {backend!r}; expected one of {', '.join(BACKENDS)}")


def deterministic_trio_scheduling(seed: int = 0) -> None:
    """Make trio's scheduler reproducible: same program, same task order, run after run.

    trio randomises the order of runnable tasks on purpose. It ships a switch for Hypothesis
    (``trio._core._run._hypothesis_plugin_setup``) that sorts each batch and shuffles it with a
    seedable RNG; we flip the same switch and reseed that RNG at the start of every run.
    """
    from trio._core import _run

    _run._ALLOW_DETERMINISTIC_SCHEDULING = True  # type: ignore[misc]
    _run._r.seed(seed)


def run(
    func: Callable[..., Awaitable[T]], *args: Any, backend: Backend = "asyncio", virtual: bool = True
) -> T:
    """``anyio.run`` on the chosen backend, on virtual time unless ``virtual=False``."""
    return anyio.run(func, *args, backend=backend, backend_options=backend_options(backend, virtual=virtual))


class SimClock:
    """Reads the event loop's clock relative to the start of a simulation.

    Simulation code reads time only through this (never ``time.time``), so a run on virtual time
    is reproducible; times are rounded to the microsecond to keep float noise out of traces.
    """

    def __init__(self) -> None:
        # The loop's own clock and sleep, bound once: read per trace line and slept per chunk.
        self._time = loop_clock()
        self._sleep = loop_sleep()
        self._origin = self._time()

    def now(self) -> float:
        return round(self._time() - self._origin, 6)

    async def sleep(self, seconds: float) -> None:
        await self._sleep(seconds)

    async def sleep_until(self, t: float) -> None:
        await anyio.sleep_until(self._origin + t)


def make_rng(seed: int) -> random.Random:
    """The one random source of a simulation; derive sub-streams with ``derive_seed``."""
    return random.Random(seed)


def derive_seed(seed: int, *labels: object) -> int:
    """A stable seed for a part of a run (an xdist worker, a session), independent of hash seeds."""
    rng = random.Random(f"{seed}:" + ":".join(str(label) for label in labels))
    return rng.getrandbits(63)
