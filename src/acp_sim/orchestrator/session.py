"""One object per session: every piece of per-session bookkeeping lives here, nowhere else.

A ``Session`` holds its current ``TurnStream`` (the pending queue of that turn), its generation
counter, its interrupted flag, its usage, cwd, MCP configuration, worktree, restore state and the
history of agent session ids it has had. Routing an update means: find the one ``Session`` by the
update's ``sessionId``, then let the session decide which turn (if any) the update belongs to.

A session never knows its orchestrator (ownership runs one way, as a connection in httpcore's pool
never knows the pool): it is handed ``SessionOps``, the few things it asks its owner to do (start a
turn, cancel, close, the backpressure policy, a runner for blocking git work), and nothing else.

The hot path (``Session.route`` -> ``TurnStream.push``) does no validation, starts no task and
arms no timer: one dict lookup by the caller, a few attribute reads, an append and at most one
event set per update.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import anyio
from pydantic import TypeAdapter

from acp_sim import sdk_schema as schema
from acp_sim.errors import AcpSimError
from acp_sim.loop_primitives import loop_event

if TYPE_CHECKING:
    from acp_sim.orchestrator.worktree import Worktree

_UPDATE_ADAPTER: TypeAdapter[Any] = TypeAdapter(schema.SessionNotification.model_fields["update"].annotation)

# How many updates outside any turn a session keeps for inspection (the rest are only counted).
OUT_OF_TURN_KEPT = 1000


class SessionError(AcpSimError):
    """Something went wrong with one session; the message names it."""

    def __init__(self, session: str, message: str) -> None:
        self.session = session
        super().__init__(f"session {session}: {message}")


class TurnFailed(SessionError):
    """A turn ended without a stop reason from the agent: crash, timeout, overflow or an error reply."""

    def __init__(self, session_id: str, generation: int, reason: str, *, session: str | None = None) -> None:
        self.session_id = session_id
        self.generation = generation
        self.reason = reason
        label = session or session_id
        AcpSimError.__init__(self, f"turn {generation} of session {label} failed: {reason}")
        self.session = label


class TurnInProgress(SessionError):
    """``prompt`` while the session's previous turn has not ended (ACP allows one turn at a time)."""


class SessionClosed(SessionError):
    """The session was closed (by the caller, or it could not be restored after a crash)."""


Prompt = str | list[dict[str, Any]]


class RequestHandler(Protocol):
    """What answers a session's permission, fs and terminal requests (``handlers.ClientHandler``)."""

    async def handle(self, session: Session, method: str, params: dict[str, Any]) -> Any: ...


@dataclass(frozen=True, slots=True)
class SessionOps:
    """The narrow things a ``Session`` (and its turns) ask of whoever owns them; never the owner itself."""

    start_turn: Callable[[Session, Prompt], TurnStream]
    """Open a turn's queue now and send its prompt in the background."""
    cancel: Callable[[Session], Awaitable[None]]
    close: Callable[[Session], Awaitable[None]]
    on_buffer_full: Callable[[TurnStream], None]
    """The backpressure policy for a turn whose consumer fell ``max_buffered`` updates behind."""
    blocking: Callable[..., Awaitable[Any]]
    """Runs blocking work (git) without stalling the event loop: ``await blocking(func, *args)``."""


class Update:
    """One ``session/update`` as delivered to the caller; ``raw`` is the update object off the wire.

    Deliberately a plain slotted class: it is built once per chunk on the routing path, and
    ``model()`` validates only when asked.
    """

    __slots__ = ("generation", "raw", "session_id")

    def __init__(self, session_id: str, generation: int, raw: dict[str, Any]) -> None:
        self.session_id = session_id
        self.generation = generation
        self.raw = raw

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

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Update):
            return NotImplemented
        return (self.session_id, self.generation, self.raw) == (other.session_id, other.generation, other.raw)

    __hash__ = None  # type: ignore[assignment]  # raw is a dict: updates are not hashable

    def __repr__(self) -> str:
        return f"Update({self.session_id[:8]} t{self.generation} {self.kind} {self.text!r})"


@dataclass(eq=False)
class TurnStream:
    """One prompt turn: the pending queue of its updates and, once over, how it ended.

    Hazard prevented (first chunk): the queue exists *before* ``session/prompt`` is written, so an
    update the agent sends in the same tick as it receives the prompt is queued, not dropped, and
    is delivered when the caller starts iterating.

    The queue is bounded by ``max_buffered`` (backpressure): when a consumer falls that far behind,
    the owner's ``on_buffer_full`` policy (``SessionOps``) applies to this turn alone.
    """

    session: Session
    generation: int
    max_buffered: int
    created_at: float
    sent_at: float | None = None
    last_activity: float = 0.0
    accepting: bool = False
    """True from the moment the prompt is written until the turn ends: only then do updates belong to it."""
    done: bool = False
    interrupted: bool = False
    """This turn was cancelled (or timed out); kept for reporting after the session's flag resets."""
    stop_reason: str | None = None
    agent_stop_reason: str | None = None
    """What the agent answered (``stop_reason`` says ``cancelled`` for a cancelled turn regardless)."""
    usage: dict[str, Any] | None = None
    error: TurnFailed | None = None
    delivered: int = 0
    dropped_late: int = 0
    """Updates of this turn that arrived after it was interrupted: never delivered (scoped interrupts)."""
    note: str | None = None
    warmup: bool = False
    """A pre-warm pool's warm-up turn (its tokens are warm-up cost)."""
    epoch: int = -1
    """The agent instance the prompt went to (-1 until sent)."""
    agent_session_id: str | None = None
    """The agent session id the prompt went to (the session's id may change after a reconnect)."""
    wire_turn: int = 0
    """The agent's number for this turn: the n-th prompt sent under that agent session id, counted
    across resumes (what the simulated agent's trace and chunk texts call the turn)."""
    accounted: bool = False
    after_cancel: bool = False
    """The session's previous turn was cancelled (or timed out)."""
    epoch_sends: int = 0
    """How many times the prompt was handed to a connection (more than once only when the agent
    went away before it could be written)."""
    finished: anyio.Event = field(default_factory=anyio.Event)
    _queue: deque[dict[str, Any] | Update] = field(default_factory=deque, repr=False)
    """Routed updates not yet taken: a raw update of ``_queued_id``'s, or an ``Update`` already made
    (of an id the session had before a restore renamed it)."""
    _queued_id: str = field(default="", repr=False)
    """The session id the raw updates in ``_queue`` were routed under."""
    _waiter: Any = field(default=None, repr=False)
    """The consumer's wake-up while it waits: the loop's own event (``loop_event``), or None."""
    _iterating: bool = field(default=False, repr=False)

    # -- producer side (called by routing; never blocks) ------------------------------------------

    def push(self, raw: dict[str, Any], now: float) -> None:
        session = self.session
        if session.interrupted:
            # Hazard prevented (scoped interrupts): late updates of a cancelled turn are dropped
            # here, so they can never reach the caller or a later turn.
            self.dropped_late += 1
            return
        queue = self._queue
        if len(queue) >= self.max_buffered:
            session.ops.on_buffer_full(self)
            return
        self.last_activity = now
        # The ``Update`` is made when the consumer takes it, not here: routing runs every session's
        # update of a tick in one step of the reader, and an object made here for each one lived
        # until each consumer's own step, so the cyclic GC's young generation filled up several
        # times a tick (issue 19). Only the raw update waits in the queue.
        if session.id is not self._queued_id:  # the turn's first update, or the session was renamed
            if queue:
                self._name_queued()
            self._queued_id = session.id
        queue.append(raw)
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            waiter.set()

    def _name_queued(self) -> None:
        """A restore gave the session a new id: the raw updates queued under the old one become
        ``Update``s of that id now, so each is delivered with the id it was routed under."""
        queue, old = self._queue, self._queued_id
        for _ in range(len(queue)):
            item = queue.popleft()
            queue.append(Update(old, self.generation, item) if type(item) is dict else item)

    @property
    def buffered(self) -> int:
        """Updates routed to this turn and not yet taken by the consumer."""
        return len(self._queue)

    def finish(self, stop_reason: str, usage: dict[str, Any] | None) -> bool:
        """End the turn with the agent's answer; False when it had already ended."""
        if self.done:
            return False
        self.agent_stop_reason = stop_reason
        self.stop_reason = "cancelled" if self.interrupted or self.session.interrupted else stop_reason
        self.usage = usage
        self._end()
        return True

    def fail(self, reason: str) -> bool:
        """End the turn with an error naming its session; False when it had already ended."""
        if self.done:
            return False
        self.error = TurnFailed(self.session.id, self.generation, reason, session=self.session.label)
        self._end()
        return True

    def _end(self) -> None:
        self.done = True
        self.accepting = False
        self.finished.set()
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            waiter.set()
        self.session.turn_ended(self)

    # -- consumer side ----------------------------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[Update]:
        if self._iterating:
            raise SessionError(self.session.label, f"turn {self.generation} is already being iterated")
        self._iterating = True
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Update]:
        queue = self._queue
        new_event = loop_event()  # one wake-up per wait, so the cheapest event there is
        while True:
            while queue:
                self.delivered += 1
                item = queue.popleft()
                yield Update(self._queued_id, self.generation, item) if type(item) is dict else item
            if self.done:
                break
            # No local reference: the producer's ``set`` drops the last one, so the event is freed in
            # the reader's step, where the young generation's count is high enough to take it.
            self._waiter = new_event()
            await self._waiter.wait()
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
        """Iterate to the end and return every update delivered (raises the turn's error, if any)."""
        return [update async for update in self]

    def __repr__(self) -> str:
        state = "done" if self.done else ("streaming" if self.accepting else "pending")
        return f"<TurnStream {self.session.label} turn {self.generation} {state} stop={self.stop_reason}>"


@dataclass(eq=False)
class Session:
    """Every per-session field, in one place.

    ``id`` is the agent's session id *now*: a phantom session recreated after a crash gets a new
    one, while this object (and ``label``) keeps its identity for the caller. ``agent_ids`` lists
    every id it has had, in order.
    """

    ops: SessionOps
    id: str
    cwd: str
    model: str | None
    mcp_servers: list[dict[str, Any]]
    label: str = ""
    generation: int = 0
    turn: TurnStream | None = None
    interrupted: bool = False
    closed: bool = False
    warm: bool = False
    """Created by the pre-warm pool and not handed out yet."""
    from_pool: bool = False
    agent_turns: int = 0
    """Prompts the agent received under the current ``id``: 0 means a phantom (nothing to resume)."""
    restoring: bool = False
    ready: anyio.Event = field(default_factory=anyio.Event)
    broken: SessionError | None = None
    history_lost: bool = False
    agent_ids: list[str] = field(default_factory=list)
    restores: list[str] = field(default_factory=list)
    """How each restore after a crash went: ``resume``, ``load``, ``new`` (phantom) or ``new-lost``."""
    created_at: float = 0.0
    new_latency: float = 0.0
    """How long the session/new that created this session took (what a warm start saves)."""
    pool_key: Any = None
    handler: RequestHandler | None = None
    worktree: Worktree | None = None
    usage: dict[str, int] = field(default_factory=dict)
    context: dict[str, Any] | None = None
    """The last ``usage_update`` (context window use and cumulative cost) the agent sent."""
    out_of_turn: list[dict[str, Any]] = field(default_factory=list)
    out_of_turn_count: int = 0
    replayed_dropped: int = 0
    """History replayed by ``session/load`` after a reconnect: dropped, it was delivered before."""
    on_turn_end: list[Callable[[TurnStream], None]] = field(default_factory=list)
    _prompt_settled: anyio.Event | None = field(default=None, repr=False)
    _client_requests: set[anyio.CancelScope] = field(default_factory=set, repr=False)

    def __post_init__(self) -> None:
        if not self.agent_ids:
            self.agent_ids.append(self.id)
        if not self.label:
            self.label = self.id[:8]
        self.ready.set()

    @property
    def name(self) -> str:
        """How errors name this session: its label and current agent id."""
        return f"{self.label} ({self.id})" if self.label != self.id else self.id

    @property
    def is_phantom(self) -> bool:
        """Never had a turn (under its current id): the agent keeps nothing of it across a restart."""
        return self.agent_turns == 0

    @property
    def mcp_processes(self) -> int:
        """The stdio MCP server processes this session costs at the agent: one per stdio entry it was
        opened with, by ACP's contract. A client cannot see the agent's children; what really runs
        is measured from outside (the simulated agent's trace, the live tap's process probe)."""
        from acp_sim.orchestrator.mcp import stdio_count

        return stdio_count(self.mcp_servers)

    # -- routing (hot path) ------------------------------------------------------------------------

    def route(self, raw: dict[str, Any], now: float) -> None:
        """Hazard prevented (routing): an update goes to this session's current turn or is kept aside.

        Only a turn whose prompt is on the wire (``accepting``) takes updates; anything between
        turns is never handed to a later turn. During a restore after a reconnect, updates are
        history replayed by ``session/load`` (see ``drop_replayed``).
        """
        if self.restoring:
            self.drop_replayed(raw)
            return
        turn = self.turn
        if turn is not None and turn.accepting:
            turn.push(raw, now)
            if raw.get("sessionUpdate") == "usage_update":
                self.context = raw
            return
        self.keep_out_of_turn(raw)

    def drop_replayed(self, raw: dict[str, Any]) -> None:
        """Hazard prevented (chunks duplicated after reconnect): ``session/load`` replays the whole
        history as updates before it answers; every one of them was delivered before the crash, so
        they are counted and dropped, never handed to a turn."""
        self.replayed_dropped += 1

    def keep_out_of_turn(self, raw: dict[str, Any]) -> None:
        """Updates between turns (``available_commands_update`` after session/new, a misbehaving
        agent's updates after the prompt's response): kept for inspection, never given to a turn."""
        self.out_of_turn_count += 1
        if raw.get("sessionUpdate") == "usage_update":
            self.context = raw
        if len(self.out_of_turn) < OUT_OF_TURN_KEPT:
            self.out_of_turn.append(raw)

    # -- the caller's API ----------------------------------------------------------------------------

    def prompt(self, text: Prompt) -> TurnStream:
        """Start a turn now (synchronously: its queue exists before anything is sent)."""
        return self.ops.start_turn(self, text)

    async def cancel(self) -> None:
        """Cancel the running turn and return once it has ended (see ``Orchestrator.cancel``)."""
        await self.ops.cancel(self)

    async def close(self) -> None:
        await self.ops.close(self)

    async def merge(self, message: str | None = None) -> str:
        """Merge this session's worktree branch into the branch it started from (see ``Worktree``)."""
        result: str = await self.ops.blocking(self._worktree().merge, message)
        return result

    async def discard(self) -> None:
        """Throw this session's worktree and branch away."""
        await self.ops.blocking(self._worktree().discard)

    def _worktree(self) -> Worktree:
        if self.worktree is None:
            raise SessionError(self.name, "has no worktree (open_session(worktree=True) makes one)")
        return self.worktree

    # -- requests from the agent (permission, fs, terminal) -------------------------------------------

    @property
    def waiting_on_client(self) -> bool:
        """A request of the agent is being answered by our handler (its silence is not idleness)."""
        return bool(self._client_requests)

    @contextmanager
    def answering(self) -> Iterator[anyio.CancelScope]:
        """The scope of one handler call answering this session's request: cancelled by the
        session's cancel (``cancel_client_requests``), never by another session's."""
        with anyio.CancelScope() as scope:
            self._client_requests.add(scope)
            try:
                yield scope
            finally:
                self._client_requests.discard(scope)

    def cancel_client_requests(self) -> None:
        """Interrupt the handler calls still answering this session's requests (see ``handlers``)."""
        for scope in list(self._client_requests):
            scope.cancel()

    @property
    def total_tokens(self) -> int:
        return self.usage.get("totalTokens", 0)

    # -- bookkeeping -----------------------------------------------------------------------------

    def turn_ended(self, turn: TurnStream) -> None:
        for callback in self.on_turn_end:
            callback(turn)

    def __repr__(self) -> str:
        state = "closed" if self.closed else ("warm" if self.warm else "open")
        return f"<Session {self.name} {state} cwd={self.cwd!r} turns={self.generation}>"
