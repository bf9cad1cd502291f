"""One writer at a time on a connection (``acp_sim.wire.Connection``), free when nobody else writes."""

from __future__ import annotations

from collections import deque

import anyio
from anyio.lowlevel import checkpoint_if_cancelled


class WriteLock:
    """One writer at a time on a connection, free when nobody else writes.

    Like ``anyio.Lock(fast_acquire=True)``: an uncontended acquire only checks for cancellation
    (a cancelled writer writes nothing; the simulated agent's crash relies on it) and never yields;
    a writer that finds the lock held waits, in arrival order. Without anyio's wrapper frames.
    """

    __slots__ = ("_waiters", "busy")

    def __init__(self) -> None:
        self.busy = False
        self._waiters: deque[anyio.Event] = deque()

    async def wait_turn(self) -> None:
        """Wait until the holder hands the lock over (call only when ``busy``); then it is ours."""
        turn = anyio.Event()
        self._waiters.append(turn)
        try:
            await turn.wait()
        except BaseException:
            if turn.is_set():
                self.release()  # handed over as we were cancelled: pass it on
            else:
                self._waiters.remove(turn)
            raise

    def release(self) -> None:
        if self._waiters:
            self._waiters.popleft().set()  # ownership passes directly: busy stays True
        else:
            self.busy = False

    async def __aenter__(self) -> None:
        if self.busy:
            await self.wait_turn()
        else:
            await checkpoint_if_cancelled()
            self.busy = True

    async def __aexit__(self, *exc_info: object) -> None:
        self.release()
