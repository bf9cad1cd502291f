"""One object per session: every piece of per-session bookkeeping lives here, nowhere else.

A ``Session`` holds its current ``TurnStream`` (the pending queue of that turn), its generation
counter, its interrupted flag (on the turn), usage, cwd and MCP configuration. Routing an update
means: find the one ``Session`` by id, then let it decide which turn the update belongs to.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
from acp import schema
from pydantic import TypeAdapter

from acp_sim.errors import AcpSimError

if TYPE_CHECKING:
    from acp_sim.orchestrator.core import Orchestrator

_UPDATE_ADAPTER: TypeAdapter[Any] = TypeAdapter(schema.SessionNotification.model_fields["update"].annotation)


class TurnFailed(AcpSimError):
    """A turn ended without a stop reason from the agent: crash, timeout, overflow or an error reply."""

    def __init__(self, session_id: str, generation: int, reason: str) -> None:
        self.session_id = session_id
        self.generation = generation
        self.reason = reason
        super().__init__(f"turn {generation} of session {session_id} failed: {reason}")


class TurnInProgress(AcpSimError):
    pass


class SessionClosed(AcpSimError):
    pass


@dataclass(slots=True, frozen=True)
class Update:
    """One ``session/update`` as delivered to the caller; ``raw`` is the update object off the wire."""

    session_id: str
    generation: int
    raw: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.raw.get("sessionUpdate"))

    @property
    def text(self) -> str | None:
        content = self.raw.get("content")
        if isinstance(content, dict) and isinstance(content.get("text"), str):
            return content["text"]
        return None

    def model(self) -> Any:
        """The update validated as its ``acp.schema`` model (validated on demand: cheap routing)."""
        return _UPDATE_ADAPTER.validate_python(self.raw)


@dataclass(eq=False)
class TurnStream:
    """One prompt turn: the pending queue of its updates and, once over, how it ended.

    Hazard prevented (first chunk): the queue exists *before* ``session/prompt`` is written, so an
    update the agent sends in the same tick as it receives the prompt is queued, not dropped, and
    is delivered when the caller starts iterating.
    """

    session: Session
    generation: int
    max_buffered: int
    started_at: float
    last_activity: float
    _queue: deque[Update] = field(default_factory=deque)
    _wakeup: anyio.Event | None = None
    interrupted: bool = False
    done: bool = False
    stop_reason: str | None = None
    usage: dict[str, Any] | None = None
    error: TurnFailed | None = None
    delivered: int = 0
    dropped_late: int = 0
    finished: anyio.Event = field(default_factory=anyio.Event)

    # -- producer side (called by routing; never blocks) ------------------------------------------

    def push(self, raw: dict[str, Any], now: float) -> None:
        if self.done:
            return
        if self.interrupted:
            # Hazard prevented (scoped interrupts): late updates of a cancelled turn are dropped
            # here, so they can never reach the caller or a later turn.
            self.dropped_late += 1
            return
        if len(self._queue) >= self.max_buffered:
            # Backpressure policy: a consumer that falls this far behind fails its own turn
            # (and the turn is cancelled at the agent); routing never waits, so no other session stalls.
            self.fail(f"consumer fell {self.max_buffered} updates behind (buffer full)")
            self.session.orchestrator.request_cancel(self.session)
            return
        self.last_activity = now
        self._queue.append(Update(self.session.id, self.generation, raw))
        self._wake()

    def finish(self, stop_reason: str, usage: dict[str, Any] | None) -> None:
        if self.done:
            return
        self.stop_reason = "cancelled" if self.interrupted and stop_reason != "cancelled" else stop_reason
        self.usage = usage
        self._end()

    def fail(self, reason: str) -> None:
        if self.done:
            return
        self.error = TurnFailed(self.session.id, self.generation, reason)
        self._end()

    def _end(self) -> None:
        self.done = True
        self.session.turn_ended(self)
        self.finished.set()
        self._wake()

    def _wake(self) -> None:
        if self._wakeup is not None:
            self._wakeup.set()
            self._wakeup = None

    # -- consumer side ----------------------------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[Update]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Update]:
        while True:
            while self._queue:
                self.delivered += 1
                yield self._queue.popleft()
            if self.done:
                break
            self._wakeup = anyio.Event()
            await self._wakeup.wait()
        if self.error is not None:
            raise self.error

    async def result(self) -> str:
        """Wait for the end of the turn (draining nothing) and return its stop reason."""
        await self.finished.wait()
        if self.error is not None:
            raise self.error
        assert self.stop_reason is not None
        return self.stop_reason

    async def collect(self) -> list[Update]:
        """Iterate to the end and return every update delivered."""
        return [update async for update in self]


@dataclass(eq=False)
class Session:
    """Every per-session field, in one place."""

    orchestrator: Orchestrator
    id: str
    cwd: str
    model: str | None
    mcp_servers: list[dict[str, Any]]
    generation: int = 0
    turn: TurnStream | None = None
    closed: bool = False
    usage: dict[str, int] = field(default_factory=dict)
    out_of_turn: list[dict[str, Any]] = field(default_factory=list)
    on_turn_end: list[Callable[[TurnStream], None]] = field(default_factory=list)

    @property
    def is_phantom(self) -> bool:
        """Never had a turn: the agent keeps nothing of it across a restart, so it cannot be resumed."""
        return self.generation == 0

    def route(self, raw: dict[str, Any], now: float) -> None:
        """Hazard prevented (routing): an update goes to this session's current turn or is kept aside."""
        turn = self.turn
        if turn is None or turn.done:
            # Between turns (after session/new, or after the prompt's response): never handed to
            # a later turn; kept for inspection and counted.
            self.out_of_turn.append(raw)
            return
        turn.push(raw, now)

    def prompt(self, text: str) -> TurnStream:
        return self.orchestrator.start_turn(self, text)

    async def cancel(self) -> None:
        await self.orchestrator.cancel(self)

    async def close(self) -> None:
        await self.orchestrator.close_session(self)

    def turn_ended(self, turn: TurnStream) -> None:
        if turn.usage:
            for key, value in turn.usage.items():
                if isinstance(value, int):
                    self.usage[key] = self.usage.get(key, 0) + value
        for callback in self.on_turn_end:
            callback(turn)
