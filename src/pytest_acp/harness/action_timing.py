"""When a client action actually reached the bridge, as opposed to when the harness asked for it.

The harness logs an action the moment the client asks; between that and the bridge acting on it
lie the harness's own sequencing and the adapter's work (a write to a bridge process's stdin).
On real time that gap is real: a cancel asked while a turn ran may reach the bridge after the turn
ended, and must not then be blamed on the bridge. The harness installs a callback for the action
it is running (``receiving``); an adapter that knows better than "when it was called" (a write
to another process) calls ``received()`` once the action is in the bridge's hands.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_CALLBACK: ContextVar[Callable[[], None] | None] = ContextVar("pytest_acp_action_received", default=None)


def received() -> None:
    """Say that the action being run in this task has now reached the bridge (no-op outside one)."""
    callback = _CALLBACK.get()
    if callback is not None:
        callback()


@contextmanager
def receiving(callback: Callable[[], None]) -> Iterator[None]:
    """Run an action with ``callback`` as its ``received()`` (called once at entry: the call into
    the adapter is when an in-process bridge has it)."""
    token = _CALLBACK.set(callback)
    try:
        callback()
        yield
    finally:
        _CALLBACK.reset(token)
