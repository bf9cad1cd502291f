"""The running event loop's own sleep and clock, looked up once per caller instead of per call.

``anyio.sleep`` and ``anyio.current_time`` ask which event loop runs on every call and add two
coroutine frames to every await; on the simulator's hot path (one sleep per chunk, clock reads per
trace line) that was a sixth of the work per chunk. These return the very functions anyio ends up
calling (``asyncio.sleep`` / ``loop.time`` or ``trio.sleep`` / ``trio.current_time``), so timing,
cancellation and virtual time behave exactly as through anyio. Call them inside a running loop.
"""

from __future__ import annotations

import asyncio
import functools
import math
from collections.abc import Awaitable, Callable
from typing import Any


def _on_asyncio() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False  # anyio's other backend: trio
    return True


def loop_sleep() -> Callable[[float], Awaitable[None]]:
    """What ``anyio.sleep`` calls on the running backend (delays must be >= 0, as anyio asks)."""
    if _on_asyncio():
        return asyncio.sleep
    import trio

    return trio.sleep


def loop_clock() -> Callable[[], float]:
    """What ``anyio.current_time`` reads on the running backend, bound to the running loop."""
    if _on_asyncio():
        return asyncio.get_running_loop().time
    import trio

    return trio.lowlevel.current_clock().current_time  # what trio.current_time() reads


def loop_timer_horizon() -> Callable[[float], float]:
    """``now`` -> the time before which a timer set now counts as due on the running backend.

    asyncio runs every timer due before ``time() + clock resolution`` (a timer set for
    ``1.2000000000000002`` runs when the clock reads 1.2); trio runs a deadline once the clock
    reaches it. A task that keeps its own timetable (the agent's chunk ticker) compares against this
    to treat as due exactly what the loop would have woken it for."""
    if _on_asyncio():
        slack: float = asyncio.get_running_loop()._clock_resolution  # type: ignore[attr-defined]
        return lambda now: now + slack
    return lambda now: math.nextafter(now, math.inf)


def loop_event() -> Callable[[], Any]:
    """A factory of one-shot wake-ups for the running backend: ``set()``, ``is_set()`` and
    ``await wait()``. On asyncio the bare future an ``asyncio.Event`` would wait on (no waiter list,
    no coroutine frame per wait); on trio ``trio.Event``. Waiting on an unset one is a checkpoint on
    both; cancellation reaches it as usual."""
    if _on_asyncio():
        return functools.partial(_FutureEvent, asyncio.get_running_loop())
    import trio

    return trio.Event


class _FutureEvent:
    """One future: set once, awaited by whoever waits (``wait`` returns the future itself)."""

    __slots__ = ("_future",)

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._future: asyncio.Future[None] = loop.create_future()

    def set(self) -> None:
        future = self._future
        if not future.done():  # a waiter cancelled it: nobody is left to wake
            future.set_result(None)

    def is_set(self) -> bool:
        future = self._future
        return future.done() and not future.cancelled()

    def wait(self) -> asyncio.Future[None]:
        return self._future


class Alarm:
    """Sleep until a deadline on the loop's clock, or until ``wake`` is called, whichever is first.

    One per long-lived task that sleeps to a moving deadline (the agent's chunk ticker): a new,
    earlier deadline wakes it without a task or a cancel scope per change. Cancellation reaches
    ``wait`` as it reaches any sleep.
    """

    async def wait(self, deadline: float | None) -> None:
        raise NotImplementedError

    def wake(self) -> None:
        raise NotImplementedError


class _AsyncioAlarm(Alarm):
    """A future and a timer handle: what ``asyncio.sleep`` builds, plus a way to end it early."""

    __slots__ = ("_future", "_loop")

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._future: asyncio.Future[None] | None = None

    async def wait(self, deadline: float | None) -> None:
        future = self._future = self._loop.create_future()
        handle = self._loop.call_at(deadline, _ring, future) if deadline is not None else None
        try:
            await future
        finally:
            self._future = None
            if handle is not None:
                handle.cancel()

    def wake(self) -> None:
        future = self._future
        if future is not None and not future.done():
            future.set_result(None)


def _ring(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class _TrioAlarm(Alarm):
    """An event waited on under a deadline (one cancel scope per wait)."""

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event: Any = None

    async def wait(self, deadline: float | None) -> None:
        import trio

        event = self._event = trio.Event()
        try:
            if deadline is None:
                await event.wait()
            else:
                with trio.move_on_at(deadline):
                    await event.wait()
        finally:
            self._event = None

    def wake(self) -> None:
        if self._event is not None:
            self._event.set()


def loop_alarm() -> Alarm:
    """An ``Alarm`` for the running backend (create it inside the loop)."""
    return _AsyncioAlarm() if _on_asyncio() else _TrioAlarm()
