"""The running event loop's own sleep and clock, looked up once per caller instead of per call.

``anyio.sleep`` and ``anyio.current_time`` ask which event loop runs on every call and add two
coroutine frames to every await; on the simulator's hot path (one sleep per chunk, clock reads per
trace line) that was a sixth of the work per chunk. These return the very functions anyio ends up
calling (``asyncio.sleep`` / ``loop.time`` or ``trio.sleep`` / ``trio.current_time``), so timing,
cancellation and virtual time behave exactly as through anyio. Call them inside a running loop.
"""

from __future__ import annotations

import asyncio
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


def loop_event() -> Callable[[], Any]:
    """The running backend's own event class (``asyncio.Event`` or ``trio.Event``): ``set`` and
    ``await wait()`` without anyio's wrapper, which looks the backend up on every creation.
    Waiting on an unset one is a checkpoint on both; cancellation reaches it as usual."""
    if _on_asyncio():
        return asyncio.Event
    import trio

    return trio.Event
