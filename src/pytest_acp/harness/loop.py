"""An event loop in a thread that only runs while the caller waits: stepping a simulation from sync code.

Hypothesis drives a ``RuleBasedStateMachine`` synchronously, one rule at a time, while the bridge
and the simulated agent live on an anyio event loop with a virtual clock. A virtual clock jumps
whenever every task waits, so a loop left running between two rules would race ahead while
Hypothesis is choosing the next one. Here the loop's main task blocks its whole thread (a plain
``queue.get``, not an await) between calls: no task runs and no virtual time passes until the next
rule hands it work. The two threads never run at the same time, so a run is as deterministic as a
single-threaded one.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio

from acp_sim.clock import Backend, backend_options

T = TypeVar("T")

# Real seconds one call may take before we give up on it: only a bridge that blocks on something
# outside the simulation (real I/O, a lock held by another thread) gets anywhere near it.
REAL_TIME_LIMIT = 120.0


class StepTimeout(RuntimeError):
    pass


class LoopThread:
    """Runs ``await fn()`` calls one at a time on an anyio loop (virtual time by default) in a thread."""

    def __init__(self, backend: Backend, *, virtual: bool = True, name: str = "acp-loop") -> None:
        self.backend = backend
        self._requests: queue.SimpleQueue[Callable[[], Awaitable[Any]] | None] = queue.SimpleQueue()
        self._results: queue.SimpleQueue[tuple[bool, Any]] = queue.SimpleQueue()
        self._options = backend_options(backend, virtual=virtual)
        self._crashed: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        try:
            anyio.run(self._serve, backend=self.backend, backend_options=self._options)
        except BaseException as exc:  # the loop itself died: report it to the waiting caller
            self._crashed = exc
            self._results.put((False, exc))

    async def _serve(self) -> None:
        while True:
            fn = self._requests.get()  # blocks the loop's thread on purpose: time stands still
            if fn is None:
                return
            try:
                result = (True, await fn())
            except Exception as exc:
                result = (False, exc)
            self._results.put(result)

    def call(self, fn: Callable[[], Awaitable[T]], *, limit: float = REAL_TIME_LIMIT, what: str = "") -> T:
        """Run ``await fn()`` on the loop and return its result (or raise its exception)."""
        if self._crashed is not None or not self._thread.is_alive():
            raise RuntimeError("the simulation's event loop is not running") from self._crashed
        self._requests.put(fn)
        deadline = time.monotonic() + limit
        while True:
            try:
                ok, value = self._results.get(timeout=0.25)
                break
            except queue.Empty:
                if time.monotonic() > deadline:
                    raise StepTimeout(
                        f"{what or 'a step'} did not finish within {limit:g} s of real time: the bridge "
                        "is waiting on something outside the simulation (real I/O under virtual time?)"
                    ) from None
        if not ok:
            raise value
        return value  # type: ignore[no-any-return]

    def close(self) -> None:
        if self._thread.is_alive():
            self._requests.put(None)
            self._thread.join(timeout=REAL_TIME_LIMIT)
