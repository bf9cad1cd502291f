"""The reference orchestrator: drives an ACP agent for many sessions at once, bookkeeping done right.

It is a client of the wire and nothing else: it never imports the simulated agent, so it runs
unchanged against Claude Code's adapter. All per-session state lives in ``Session`` objects; this
module owns the registry of sessions by agent id, the turns' lifecycle and timers, cancel and
close. The agent's lifetime (launch, crash, restart, restore) is in ``reconnect``; the pre-warm
pool in ``pool``; MCP processes in ``mcp``; tokens in ``accounting``; worktrees in ``worktree``.

Every hazard has its own small method whose docstring names it, so a subclass can change exactly
one behaviour (the plugin's seeded-bug catalog does):

- start of a turn: ``_register_turn`` (queue before the prompt), ``_mark_sent`` (from when the
  turn takes updates), ``_reset_interrupt``; early updates of a new session: ``_adopt_early_updates``;
- routing: ``_route_update``, ``Session.route``, ``_route_client_request`` (permission, fs, terminal);
- timers: ``_watch_turn``, ``_turn_deadline``, ``_on_turn_timeout`` (one generation each);
- interrupts: ``_interrupt`` (scoped cancel);
- pre-warm pool: ``_pool_key`` (matching key), ``_invalidate_warm`` (cwd change);
- reconnect (``reconnect.py``): ``_on_agent_lost``, ``_restore_method`` (phantoms are recreated),
  ``Session.drop_replayed`` (no duplicate after a reconnect), ``_on_restored``;
- MCP cleanup on close: ``_close_at_agent``; tokens: ``_account_turn``;
- backpressure: ``_backpressure`` (routing never waits), ``_on_buffer_full`` (the policy).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal, TypeVar

import anyio
from anyio.abc import TaskGroup

from acp_sim.errors import AcpSimError, ConnectionClosed, InvalidParams, RemoteError
from acp_sim.orchestrator.accounting import TokenLedger, add_into, usage_counts
from acp_sim.orchestrator.handlers import CANCELLED_PERMISSION, CLIENT_REQUESTS, PERMISSION, ClientHandler
from acp_sim.orchestrator.launcher import AgentLauncher, AgentLink
from acp_sim.orchestrator.mcp import McpManager, McpReport, McpSharing
from acp_sim.orchestrator.pool import PoolKey, WarmPool, canonical_mcp
from acp_sim.orchestrator.reconnect import AgentUnavailable, ReconnectMixin, Restart, root_cause
from acp_sim.orchestrator.session import (
    Session,
    SessionClosed,
    SessionError,
    TurnFailed,
    TurnInProgress,
    TurnStream,
)
from acp_sim.orchestrator.worktree import Worktree
from acp_sim.wire import Connection, Dispatcher

DEFAULT_MAX_BUFFERED = 10_000
DEFAULT_CANCEL_GRACE = 30.0
# How many updates for not-yet-known session ids are parked for adoption (the rest only counted).
MAX_PARKED = 1000
T = TypeVar("T")
Prompt = str | list[dict[str, Any]]


@dataclass
class Unrouted:
    """Updates that matched no open session: counted and kept, never delivered elsewhere.

    ``unknown``: ids the orchestrator never opened (a misbehaving agent, or a session whose
    ``session/new`` answer is still on its way: those are adopted when it arrives and leave this
    list). ``closed``: sessions closed by the caller, or agent ids a session had before a reconnect.
    ``stale``: updates from an agent instance that is no longer the current one.
    """

    unknown: list[dict[str, Any]] = field(default_factory=list)
    closed: list[dict[str, Any]] = field(default_factory=list)
    stale: list[dict[str, Any]] = field(default_factory=list)
    malformed: list[Any] = field(default_factory=list)
    requests: list[tuple[str, Any]] = field(default_factory=list)
    """Agent requests (permission, fs, terminal) naming no open session: refused with an error."""

    @property
    def count(self) -> int:
        return len(self.unknown) + len(self.closed) + len(self.stale) + len(self.malformed)


async def _wait_any(*events: anyio.Event) -> None:
    """Until one of the events is set (only used off the hot path)."""
    if any(event.is_set() for event in events):
        return
    async with anyio.create_task_group() as tg:

        async def wait(event: anyio.Event) -> None:
            await event.wait()
            tg.cancel_scope.cancel()

        for event in events:
            tg.start_soon(wait, event)


class _WrittenPrompts:
    """The connection's observer: tells whether a prompt was actually written before the agent
    went away (then it was in flight, and fails) or not (then it is sent to the restarted agent).

    Called for every message in both directions, so it does one comparison for received ones.
    """

    def __init__(self) -> None:
        self._expected: dict[int, tuple[dict[str, Any], TurnStream]] = {}
        self._written: set[int] = set()

    def expect(self, params: dict[str, Any], turn: TurnStream) -> None:
        self._expected[id(params)] = (params, turn)

    def forget(self, params: dict[str, Any]) -> bool:
        """Stop watching ``params``; True when they were written."""
        self._expected.pop(id(params), None)
        if id(params) in self._written:
            self._written.discard(id(params))
            return True
        return False

    def on_message(self, direction: str, message: dict[str, Any]) -> None:
        if direction == "send" and self._expected:
            key = id(message.get("params"))
            if key in self._expected:
                self._written.add(key)

    def on_bad_input(self, line: bytes, error: Any) -> None:
        pass


def prompt_blocks(prompt: Prompt) -> list[dict[str, Any]]:
    if isinstance(prompt, str):
        return [{"type": "text", "text": prompt}]
    return list(prompt)


class Orchestrator(ReconnectMixin):
    """Many ACP sessions over one agent, restarted when it crashes.

    ``turn_timeout`` bounds a whole turn (from the prompt being sent), ``idle_timeout`` the silence
    between two updates of a turn (time spent waiting on the client's own answers does not count);
    both are armed per turn generation (see ``_watch_turn``). ``max_buffered`` bounds each turn's
    queue (see ``_on_buffer_full``). ``cancel_grace`` is how long ``cancel()`` waits for the agent
    to answer the cancelled prompt before ending the turn locally. ``restore_with`` picks
    ``session/resume`` or ``session/load`` for restoring sessions with turns after a crash.
    ``mcp_sharing`` is the policy for orchestrator-run HTTP MCP servers (see ``mcp``).
    """

    session_class: type[Session] = Session
    turn_class: type[TurnStream] = TurnStream
    pool_class: type[WarmPool] = WarmPool

    def __init__(
        self,
        agent: AgentLauncher,
        *,
        turn_timeout: float = math.inf,
        idle_timeout: float = math.inf,
        max_buffered: int = DEFAULT_MAX_BUFFERED,
        cancel_grace: float = DEFAULT_CANCEL_GRACE,
        handler: ClientHandler | None = None,
        client_capabilities: dict[str, Any] | None = None,
        restore_with: Literal["resume", "load"] = "resume",
        max_restarts: int | None = None,
        max_failed_launches: int = 3,
        restart_backoff: float = 0.5,
        request_timeout: float = math.inf,
        open_retries: int = 2,
        mcp_sharing: McpSharing = "share_http",
        worktree_root: str | None = None,
    ) -> None:
        if max_buffered < 1:
            raise ValueError(f"max_buffered must be at least 1, got {max_buffered}")
        self.launcher = agent
        self.turn_timeout = turn_timeout
        self.idle_timeout = idle_timeout
        self.max_buffered = max_buffered
        self.cancel_grace = cancel_grace
        self.handler = handler or ClientHandler()
        self.client_capabilities = client_capabilities or self.handler.capabilities()
        self.restore_with = restore_with
        self.max_restarts = max_restarts
        self.max_failed_launches = max_failed_launches
        self.restart_backoff = restart_backoff
        self.request_timeout = request_timeout
        self.open_retries = open_retries
        self.worktree_root = worktree_root
        self.unrouted = Unrouted()
        self.agent_info: dict[str, Any] = {}
        self.ledger = TokenLedger()
        self.mcp = McpManager(mcp_sharing)
        self.pool = self.pool_class(self)
        self.epoch = 0
        """Which agent instance is current: 0 for the first launch, +1 per restart."""
        self.restarts: list[Restart] = []
        self.closed_sessions: list[Session] = []
        self.unclosed: list[str] = []
        """Sessions closed here that the agent could not be told to close (no close capability)."""
        self.internal_errors: list[BaseException] = []
        self._routes: dict[str, Session] = {}
        self._retired_ids: set[str] = set()
        self._parked: dict[str, list[dict[str, Any]]] = {}
        self._parked_count = 0
        self._labels = itertools.count(1)
        self._track_activity = idle_timeout < math.inf
        self._timed = turn_timeout < math.inf or idle_timeout < math.inf
        self._tg: TaskGroup | None = None
        self._conn: Connection | None = None
        self._link: AgentLink | None = None
        self._ready = anyio.Event()
        self._lost = anyio.Event()
        """Set once the current instance's loss has been handled (``_on_agent_lost``)."""
        self._supervisor_done = anyio.Event()
        self._wait_scope: anyio.CancelScope | None = None
        self._supervisor_scope: anyio.CancelScope | None = None
        self._stopping = False
        self._given_up: AgentUnavailable | None = None
        self._lost_turns: list[str] = []
        self._written = _WrittenPrompts()

    # -- lifecycle -------------------------------------------------------------------------------

    async def __aenter__(self) -> Orchestrator:
        if self._tg is not None:
            raise AcpSimError("an Orchestrator can be entered once")
        self._ready = anyio.Event()
        self._supervisor_done = anyio.Event()
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        try:
            await self._tg.start(self._supervise)
        except BaseException as exc:
            self._stopping = True
            self._tg.cancel_scope.cancel()
            await self._tg.__aexit__(None, None, None)
            root = root_cause(exc)
            if isinstance(root, Exception) and not isinstance(root, AgentUnavailable):
                raise AgentUnavailable(f"could not start agent {self.launcher.name}: {root}") from root
            raise
        return self

    async def __aexit__(self, *exc_info: Any) -> bool:
        """Stop the agent (gracefully: stdin closed, then TERM, then KILL) and everything it started.

        The caller's own exception comes out as it was raised, never wrapped in an ExceptionGroup
        of the orchestrator's internal task group.
        """
        assert self._tg is not None
        self._stopping = True
        for session in list(self._routes.values()):
            if session.turn is not None:
                session.turn.fail("the orchestrator was closed")
        with anyio.CancelScope(shield=True):
            for session in list(self._routes.values()):
                if session.worktree is not None and session.worktree.state == "active":
                    try:
                        await self._blocking(session.worktree.close)
                    except AcpSimError as exc:
                        self.internal_errors.append(exc)
            if self._wait_scope is not None:
                self._wait_scope.cancel()  # serving: leave the agent's contexts gracefully
            elif self._supervisor_scope is not None:
                self._supervisor_scope.cancel()  # launching, restoring or backing off: stop that
            with anyio.move_on_after(10):
                await self._supervisor_done.wait()
        # Outside the shield: the task group's scope was entered before it (scopes must nest).
        self._tg.cancel_scope.cancel()
        try:
            await self._tg.__aexit__(None, None, None)
        finally:
            self.mcp.stop_all()
        if (
            exc_info[0] is None
            and self.internal_errors
            and not all(isinstance(e, AcpSimError) for e in self.internal_errors)
        ):
            first = next(e for e in self.internal_errors if not isinstance(e, AcpSimError))
            raise AcpSimError(f"internal error in the orchestrator: {first!r}") from first
        return False

    def _spawn(self, func: Callable[..., Awaitable[Any]], *args: Any) -> None:
        """Run a background task that never takes the task group (and the caller) down with it."""
        if self._tg is None:
            raise AcpSimError("the orchestrator is not running; use 'async with Orchestrator(...)'")
        self._tg.start_soon(self._guarded, func, args)

    async def _guarded(self, func: Callable[..., Awaitable[Any]], args: tuple[Any, ...]) -> None:
        try:
            await func(*args)
        except Exception as exc:
            self.internal_errors.append(exc)

    @property
    def conn(self) -> Connection:
        if self._conn is None:
            raise AcpSimError("the orchestrator is not running; use 'async with Orchestrator(...)'")
        return self._conn

    @property
    def link(self) -> AgentLink | None:
        return self._link

    def now(self) -> float:
        return anyio.current_time()

    async def _wait_ready(self, stale: Connection | None = None) -> None:
        """Until the agent is up (after a restart: until it is initialized and sessions restored).

        ``stale``: a connection a request just failed on; its loss may not be handled yet.
        """
        if stale is not None and stale is self._conn:
            await self._lost.wait()
        while True:
            if self._given_up is not None:
                raise self._given_up
            if self._stopping:
                raise AcpSimError("the orchestrator is closing")
            if self._ready.is_set():
                return
            await self._ready.wait()

    async def _blocking(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Blocking work (git): inline on virtual time (a thread would let the clock jump), else a thread."""
        if getattr(self.launcher, "virtual_time", False):
            return func(*args, **kwargs)
        return await anyio.to_thread.run_sync(partial(func, *args, **kwargs))

    def _dispatcher(self, epoch: int) -> Dispatcher:
        dispatcher = Dispatcher()

        def on_update(params: Any) -> Awaitable[None] | None:
            if self.epoch != epoch:
                self.unrouted.stale.append(params)
                return None
            return self._on_update(params)

        dispatcher.add_notification("session/update", on_update)
        for method in CLIENT_REQUESTS:
            dispatcher.add_request(method, partial(self._on_client_request, method))
        return dispatcher

    # -- sessions --------------------------------------------------------------------------------

    def _next_label(self) -> str:
        return f"s{next(self._labels)}"

    def _new_session_params(
        self, cwd: str, wire_servers: list[dict[str, Any]], model: str | None
    ) -> dict[str, Any]:
        return {"cwd": cwd, "mcpServers": wire_servers}

    async def open_session(
        self,
        *,
        cwd: str,
        mcp_servers: Sequence[Any] | None = None,
        model: str | None = None,
        handler: ClientHandler | None = None,
        worktree: bool = False,
        use_pool: bool = True,
    ) -> Session:
        """A session ready for prompts: a matching warm one from the pool, else a new one.

        ``worktree=True`` makes a git worktree of the repository at ``cwd`` for this session and
        runs the session in it (see ``worktree``). ``handler`` answers this session's permission,
        fs and terminal requests (default: the orchestrator's handler).
        """
        self._check_running()
        servers = list(mcp_servers or [])
        tree: Worktree | None = None
        label = self._next_label()
        if worktree:
            tree = await self._blocking(Worktree.create, cwd, label, root=self.worktree_root)
            cwd = str(tree.path)
        session = (
            await self.pool.claim(self._pool_key(model, cwd, servers)) if use_pool and tree is None else None
        )
        if session is None:
            try:
                session = await self._new_agent_session(cwd, servers, model, label=label)
            except BaseException:
                if tree is not None:
                    with anyio.CancelScope(shield=True):
                        await self._blocking(tree.discard)
                raise
        else:
            session.warm = False
            session.from_pool = True
        session.handler = handler
        session.worktree = tree
        return session

    async def _new_agent_session(
        self,
        cwd: str,
        mcp_servers: Sequence[Any],
        model: str | None,
        *,
        warm: bool = False,
        label: str | None = None,
    ) -> Session:
        """``session/new`` on the current agent, retried on the restarted agent if it went away."""
        label = label or self._next_label()
        wire = self.mcp.resolve(label, mcp_servers)
        attempts = 0
        try:
            while True:
                await self._wait_ready()
                conn = self.conn
                started = self.now()
                try:
                    result = await conn.request(
                        "session/new",
                        self._new_session_params(cwd, wire, model),
                        timeout=self.request_timeout,
                    )
                    break
                except ConnectionClosed as exc:
                    attempts += 1
                    if attempts > self.open_retries:
                        raise SessionError(label, f"session/new failed: {exc}") from None
                    await self._wait_ready(stale=conn)
                except RemoteError as exc:
                    raise SessionError(label, f"the agent refused session/new for cwd {cwd}: {exc}") from None
                except TimeoutError:
                    raise SessionError(
                        label, f"session/new got no answer within {self.request_timeout:g} s"
                    ) from None
        except BaseException:
            self.mcp.release(label)
            raise
        session_id = result.get("sessionId") if isinstance(result, dict) else None
        if not isinstance(session_id, str):
            self.mcp.release(label)
            raise SessionError(label, f"session/new answered without a sessionId: {result!r}")
        session = self.session_class(
            self, session_id, cwd, model, wire, label=label, warm=warm, created_at=started,
            new_latency=self.now() - started,
        )  # fmt: skip
        self._register_route(session)
        try:
            await self._select_model(session, result)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._discard_warm(session)
            raise
        session.new_latency = self.now() - started
        return session

    async def _select_model(self, session: Session, new_result: dict[str, Any]) -> None:
        """Switch a fresh session to ``session.model`` (ACP ``session/set_config_option`` "model")
        unless the agent already chose it."""
        if session.model is None:
            return
        models = new_result.get("models")
        current = models.get("currentModelId") if isinstance(models, dict) else None
        if current == session.model:
            return
        try:
            await self.conn.request(
                "session/set_config_option",
                {"sessionId": session.id, "configId": "model", "value": session.model},
                timeout=self.request_timeout,
            )
        except RemoteError as exc:
            raise SessionError(
                session.name, f"the agent cannot switch to model {session.model!r}: {exc}"
            ) from None

    def _check_running(self) -> None:
        if self._tg is None:
            raise AcpSimError("the orchestrator is not running; use 'async with Orchestrator(...)'")
        if self._given_up is not None:
            raise self._given_up
        if self._stopping:
            raise AcpSimError("the orchestrator is closing")

    @property
    def sessions(self) -> dict[str, Session]:
        """Open sessions given to callers (not the pool's warm ones), by their current agent id.

        A view of the one registry of sessions (``_routes``, which routes updates), not a second map
        to keep in step with it."""
        return {sid: s for sid, s in self._routes.items() if not s.warm and not s.closed}

    def _register_route(self, session: Session) -> None:
        self._routes[session.id] = session
        self._adopt_early_updates(session)

    def _adopt_early_updates(self, session: Session) -> None:
        """Hazard prevented (first updates of a session dropped): an agent may send updates for a new
        session (``available_commands_update``) right after the ``session/new`` answer, before the
        caller's task resumes and registers it. Those were parked by id; they are adopted now."""
        parked = self._parked.pop(session.id, None)
        if not parked:
            return
        self._parked_count -= len(parked)
        adopted = {id(p) for p in parked}
        self.unrouted.unknown = [p for p in self.unrouted.unknown if id(p) not in adopted]
        for params in parked:
            session.keep_out_of_turn(params["update"])

    def _rekey(self, session: Session, new_id: str) -> None:
        old = session.id
        if self._routes.get(old) is session:
            del self._routes[old]
        self._retired_ids.add(old)
        session.id = new_id
        session.agent_ids.append(new_id)
        if session.closed:  # closed while it was being restored: closed at the agent next
            self._retired_ids.add(new_id)
        else:
            self._register_route(session)

    def _forget(self, session: Session) -> None:
        """Unregister a session (closed, or a warm one that died with the agent)."""
        session.closed = True
        if self._routes.get(session.id) is session:
            del self._routes[session.id]
        self._retired_ids.add(session.id)
        self.mcp.release(session.label)
        self.closed_sessions.append(session)

    # -- routing (hot path) ------------------------------------------------------------------------

    def _on_update(self, params: Any) -> Awaitable[None] | None:
        """One ``session/update``: routed synchronously, in arrival order, never waiting."""
        try:
            session = self._routes.get(params["sessionId"])
            update = params["update"]
        except (TypeError, KeyError):
            self.unrouted.malformed.append(params)
            return None
        if type(update) is not dict:
            self.unrouted.malformed.append(params)
            return None
        if session is None:
            self._unroutable(params)
            return None
        self._route_update(session, update)
        return self._backpressure(session)

    def _route_update(self, session: Session, update: dict[str, Any]) -> None:
        """Hazard prevented (cross-session bleed): the update goes to the one session its own
        ``sessionId`` names, which hands it to its current turn (``Session.route``); never to
        whichever turn happens to be waiting."""
        session.route(update, anyio.current_time() if self._track_activity else 0.0)

    def _backpressure(self, session: Session) -> Awaitable[None] | None:
        """Hazard prevented (one slow session stalls the others): routing never waits for a
        consumer. Returning an awaitable here would make the connection's reader wait on it, and
        with it every session on the connection; the bounded per-turn queue and ``_on_buffer_full``
        deal with a slow consumer instead."""
        return None

    def _on_buffer_full(self, turn: TurnStream) -> None:
        """Backpressure policy when a turn's queue holds ``max_buffered`` undelivered updates: that
        turn fails ("consumer fell behind") and is cancelled at the agent; the other sessions keep
        streaming. Waiting instead would stall the shared connection (see ``_backpressure``)."""
        turn.interrupted = True
        turn.fail(
            f"the consumer fell {self.max_buffered} updates behind (max_buffered); the turn was cancelled"
        )
        self._spawn(self._send_cancel, turn.session)

    def _unroutable(self, params: dict[str, Any]) -> None:
        session_id = params.get("sessionId")
        if isinstance(session_id, str) and session_id in self._retired_ids:
            self.unrouted.closed.append(params)
            return
        self.unrouted.unknown.append(params)
        if isinstance(session_id, str) and self._parked_count < MAX_PARKED:
            self._parked.setdefault(session_id, []).append(params)
            self._parked_count += 1

    # -- agent requests (permission, fs, terminal) ------------------------------------------------

    def _on_client_request(self, method: str, params: Any) -> Awaitable[Any]:
        session = self._route_client_request(method, params)
        return self._serve_client_request(session, method, params)

    def _route_client_request(self, method: str, params: Any) -> Session:
        """Hazard prevented (a permission prompt answered for the wrong session): the request goes
        to the handler of the session its ``sessionId`` names; an unknown id is refused."""
        session_id = params.get("sessionId") if isinstance(params, dict) else None
        session = self._routes.get(session_id) if isinstance(session_id, str) else None
        if session is None:
            self.unrouted.requests.append((method, params))
            raise InvalidParams(
                f"{method} names no open session: {session_id!r}", data={"sessionId": session_id}
            )
        return session

    async def _serve_client_request(self, session: Session, method: str, params: dict[str, Any]) -> Any:
        handler = session.handler or self.handler
        with anyio.CancelScope() as scope:
            session._client_requests.add(scope)
            try:
                return await handler.handle(session, method, params)
            finally:
                session._client_requests.discard(scope)
                if session.turn is not None and self._track_activity:
                    session.turn.last_activity = self.now()
        # Cancelled by the session's cancel: the ACP answer for a pending permission request.
        if method == PERMISSION:
            return CANCELLED_PERMISSION
        raise InvalidParams(f"{method} was cancelled with the turn of session {session.label}")

    def _cancel_client_requests(self, session: Session) -> None:
        for scope in list(session._client_requests):
            scope.cancel()

    # -- turns -----------------------------------------------------------------------------------

    def start_turn(self, session: Session, prompt: Prompt, *, warmup: bool = False) -> TurnStream:
        """Open the turn's queue, then send the prompt (in that order: see ``TurnStream``)."""
        self._check_can_prompt(session)
        session.generation += 1
        now = self.now()
        turn = self.turn_class(session, session.generation, self.max_buffered, now, last_activity=now)
        turn.warmup = warmup
        previous = session.turn
        turn.after_cancel = previous is not None and previous.interrupted
        self._reset_interrupt(session)
        self._register_turn(session, turn)
        self._spawn(self._run_prompt, turn, prompt)
        return turn

    def _check_can_prompt(self, session: Session) -> None:
        if session.closed:
            raise SessionClosed(session.name, "is closed")
        if session.broken is not None:
            raise session.broken
        if self._given_up is not None:
            raise self._given_up
        if self._tg is None or self._stopping:
            raise AcpSimError("the orchestrator is not running")
        if session.turn is not None and not session.turn.done:
            raise TurnInProgress(session.name, f"turn {session.turn.generation} is still running")

    def _reset_interrupt(self, session: Session) -> None:
        """Hazard prevented (interrupted flag never reset): a cancel marks the session interrupted so
        its late updates are dropped; a new turn clears the mark, or every later turn of this
        session would be dropped and reported as cancelled."""
        session.interrupted = False

    def _register_turn(self, session: Session, turn: TurnStream) -> None:
        """Hazard prevented (first chunk dropped): the turn becomes the session's current turn
        before the prompt can be written, so an update the agent sends in the same tick as it
        reads the prompt finds its queue."""
        session.turn = turn

    async def _run_prompt(self, turn: TurnStream, prompt: Prompt) -> None:
        session = turn.session
        blocks = prompt_blocks(prompt)
        while True:
            try:
                await self._wait_until_sendable(turn)
            except AcpSimError as exc:
                turn.fail(str(exc))
                return
            if turn.done:  # cancelled or closed while it waited
                return
            conn = self.conn
            params = {"sessionId": session.id, "prompt": blocks}
            settled = session._prompt_settled = anyio.Event()
            self._written.expect(params, turn)
            self._mark_sent(turn)
            if self._timed and turn.epoch_sends == 1:
                self._spawn(self._watch_turn, turn)
            try:
                result = await conn.request("session/prompt", params)
            except RemoteError as exc:
                detail = f" ({exc.data})" if exc.data is not None else ""
                turn.fail(f"the agent answered session/prompt with error {exc.code} {exc.message!r}{detail}")
            except ConnectionClosed as exc:
                if not self._written.forget(params) and not turn.done:
                    # The agent went away before the prompt was written: nothing of this turn
                    # happened there, so it goes to the restarted agent instead.
                    self._unmark_sent(turn)
                    continue
                if turn.fail(self._lost_message(exc)):
                    self._lost_turns.append(session.label)
            else:
                self._complete_turn(turn, result if isinstance(result, dict) else {})
            finally:
                self._written.forget(params)
                settled.set()
            return

    def _unmark_sent(self, turn: TurnStream) -> None:
        turn.accepting = False
        turn.session.agent_turns -= 1

    def _mark_sent(self, turn: TurnStream) -> None:
        """Hazard prevented (first chunk dropped): called right before the prompt is written, so
        the turn takes updates from the instant the agent can answer; also records where the
        prompt went (agent instance, agent session id, the agent's turn number)."""
        turn.epoch_sends += 1
        turn.accepting = True
        turn.sent_at = turn.last_activity = self.now()
        session = turn.session
        turn.epoch = self.epoch
        turn.agent_session_id = session.id
        session.agent_turns += 1
        turn.wire_turn = session.agent_turns

    async def _wait_until_sendable(self, turn: TurnStream) -> None:
        """The agent is up, the session restored, and its previous prompt answered.

        A turn that timed out or whose cancel the agent never answered still has its prompt
        pending at the agent; sending the next prompt before that one settles would mix the old
        turn's late updates into the new one. It is awaited for ``cancel_grace`` seconds, then the
        session is reported wedged.
        """
        session = turn.session
        while not turn.done:
            if self._given_up is not None:
                raise self._given_up
            if self._stopping:
                raise AcpSimError("the orchestrator is closing")
            conn = self._conn
            if conn is not None and conn.close_error is not None and not self._lost.is_set():
                # The agent is gone but its loss is not handled yet: the prompt would go nowhere.
                await _wait_any(self._lost, turn.finished)
                continue
            if not self._ready.is_set():
                await _wait_any(self._ready, turn.finished)
                continue
            if not session.ready.is_set():
                await _wait_any(session.ready, turn.finished)
                continue
            if session.broken is not None:
                raise session.broken
            previous = session._prompt_settled
            if previous is not None and not previous.is_set():
                with anyio.move_on_after(self.cancel_grace):
                    await _wait_any(previous, turn.finished)
                if not previous.is_set() and not turn.done:
                    raise SessionError(
                        session.name,
                        f"wedged: the agent has not answered its previous prompt {self.cancel_grace:g} s "
                        "after it was cancelled or timed out; close this session and open another",
                    )
                continue
            return

    def _complete_turn(self, turn: TurnStream, result: dict[str, Any]) -> None:
        usage = result.get("usage")
        usage = usage if isinstance(usage, dict) else None
        if not turn.finish(str(result.get("stopReason")), usage):
            # Ended locally before the agent answered (timeout, cancel grace): the answer still
            # tells what the agent spent.
            turn.agent_stop_reason = str(result.get("stopReason"))
            if turn.usage is None:
                turn.usage = usage
        elif self._looks_one_turn_behind(turn, usage):
            # Claude Code adapter 0.23.1: after a cancel, the next prompt answers at once with
            # zero usage while the real turn runs on; the session then stays one turn behind.
            turn.note = (
                "suspect: ended at once with no update and zero usage right after a cancelled "
                "turn (the one-turn-behind defect of claude-agent-acp 0.23.1); later turns of this "
                "session may show the previous turn's answer"
            )
        self._account_turn(turn, usage)

    @staticmethod
    def _looks_one_turn_behind(turn: TurnStream, usage: dict[str, Any] | None) -> bool:
        empty = not turn.delivered + turn.buffered and not any(usage_counts(usage).values())
        return turn.after_cancel and turn.stop_reason == "end_turn" and empty

    def _account_turn(self, turn: TurnStream, usage: dict[str, Any] | None) -> None:
        """Hazard prevented (tokens double counted across reconnect, or lost): each answered turn
        is recorded exactly once, from its own prompt response, by the turn and not by the agent
        session id (which may change across a reconnect); a turn failed by a crash reported
        nothing and adds nothing."""
        if turn.accounted or usage is None:
            return
        turn.accounted = True
        session = turn.session
        counts = self.ledger.record(
            session=session.label,
            agent_session_id=turn.agent_session_id or session.id,
            generation=turn.generation,
            epoch=turn.epoch,
            kind="warmup" if turn.warmup else "turn",
            usage=usage,
        )
        add_into(session.usage, counts)

    # -- timers ------------------------------------------------------------------------------------

    def _turn_deadline(self, turn: TurnStream) -> tuple[float, str, float]:
        """(deadline, "turn" or "idle", limit) of this turn alone: from its own send time and its
        own last update; time spent waiting on our own handler (a permission prompt) is not
        silence."""
        sent = turn.sent_at if turn.sent_at is not None else turn.created_at
        whole = sent + self.turn_timeout
        last = turn.last_activity
        if turn.session._client_requests:  # waiting on our own handler is not the agent's silence
            last = max(last, self.now())
        idle = last + self.idle_timeout
        if whole <= idle:
            return whole, "turn", self.turn_timeout
        return idle, "idle", self.idle_timeout

    async def _watch_turn(self, turn: TurnStream) -> None:
        """Hazard prevented (stale timers): the timer belongs to one generation of one session.

        It holds its own turn, ends only that turn, re-reads that turn's last activity before
        firing, and returns as soon as that turn is over, so it can never touch a later turn.
        """
        while not turn.done:
            deadline, which, limit = self._turn_deadline(turn)
            now = self.now()
            if now >= deadline:
                self._on_turn_timeout(turn, which, limit)
                return
            with anyio.move_on_after(deadline - now):
                await turn.finished.wait()

    def _on_turn_timeout(self, turn: TurnStream, which: str, limit: float) -> None:
        """Hazard prevented (a timeout that ends the wrong turn, or leaves the agent spending):
        ends ``turn`` and only it, and sends ``session/cancel`` so the agent stops working on it
        (the next prompt waits for that cancelled prompt to settle, see ``_wait_until_sendable``)."""
        if turn.done:
            return
        turn.interrupted = True
        what = "turn timeout: no stop reason" if which == "turn" else "idle timeout: no update"
        turn.fail(f"{what} within {limit:g} s; the turn was cancelled at the agent")
        if turn.session.turn is turn:
            self._spawn(self._send_cancel, turn.session)

    # -- cancel and close --------------------------------------------------------------------------

    async def cancel(self, session: Session) -> None:
        """Cancel the session's running turn and return once it has ended (``cancelled``).

        If the agent does not answer the cancelled prompt within ``cancel_grace`` seconds, the
        turn ends locally (stop reason ``cancelled``, ``agent_stop_reason`` None, a ``note``).
        """
        turn = session.turn
        if turn is None or turn.done:
            return
        await self._interrupt(session)
        if turn.done:
            return
        with anyio.move_on_after(self.cancel_grace):
            await turn.finished.wait()
        if not turn.done:
            turn.note = f"the agent had not answered the cancelled prompt after {self.cancel_grace:g} s"
            turn.finish("cancelled", None)
            turn.agent_stop_reason = None

    async def _interrupt(self, session: Session) -> None:
        """Hazard prevented (an interrupt hitting other sessions): marks this session interrupted
        (its late updates are dropped), answers its pending permission requests ``cancelled``, and
        sends ``session/cancel`` for this session only."""
        turn = session.turn
        session.interrupted = True
        if turn is not None:
            turn.interrupted = True
        self._cancel_client_requests(session)
        if turn is not None and not turn.done and not turn.accepting:
            # Not sent yet (waiting for a restore): the agent knows nothing of it.
            turn.note = "cancelled before the prompt was sent"
            turn.finish("cancelled", None)
            turn.agent_stop_reason = None
            return
        await self._send_cancel(session)

    async def _send_cancel(self, session: Session) -> None:
        conn = self._conn
        if conn is None or session.restoring:
            return
        with suppress(ConnectionClosed):
            await conn.notify("session/cancel", {"sessionId": session.id})

    async def close_session(self, session: Session) -> None:
        """Cancel a running turn, forget the session, close it at the agent, clean its worktree."""
        if session.closed:
            return
        turn = session.turn
        if turn is not None and not turn.done:
            await self._interrupt(session)
            turn.fail("the session was closed during this turn")
        was_restoring = session.restoring
        self._forget(session)
        if not was_restoring:
            await self._close_at_agent(session)
        if session.worktree is not None and session.worktree.state == "active":
            await self._blocking(session.worktree.close)

    async def _close_at_agent(self, session: Session) -> None:
        """Hazard prevented (MCP children leaked on close): ``session/close`` makes the agent stop
        the session's own processes (its CLI and stdio MCP servers with Claude Code). An agent that
        cannot close sessions keeps them until it exits; that is recorded in ``unclosed``."""
        if not self._session_capability("close"):
            self.unclosed.append(session.label)
            return
        conn = self._conn
        if conn is None:
            return
        try:
            with anyio.move_on_after(self.cancel_grace):
                await conn.request("session/close", {"sessionId": session.id})
        except (RemoteError, ConnectionClosed):
            pass

    # -- pre-warm pool -----------------------------------------------------------------------------

    def _pool_key(self, model: str | None, cwd: str, mcp_servers: Sequence[Any]) -> PoolKey:
        """Hazard prevented (a warm session used for the wrong conversation): the key is the exact
        (model, cwd, MCP configuration) a session was made with."""
        return PoolKey(model, cwd, canonical_mcp(mcp_servers))

    async def prewarm(
        self,
        *,
        cwd: str,
        model: str | None = None,
        mcp_servers: Sequence[Any] | None = None,
        count: int = 1,
        warmup_prompt: Prompt | None = None,
        wait: bool = False,
    ) -> PoolKey:
        """Keep ``count`` warm sessions for this (model, cwd, MCP) key, refilled in the background.

        ``warmup_prompt`` runs one turn in each warm session (its tokens are warm-up cost).
        ``wait=True`` returns once ``count`` are ready.
        """
        self._check_running()
        servers = list(mcp_servers or [])
        key = self._pool_key(model, cwd, servers)
        self.pool.set_target(key, count, servers, warmup_prompt)
        if wait:
            await self.pool.wait_ready(key, count)
        return key

    async def change_cwd(self, old: str, new: str | None = None) -> None:
        """The project at ``old`` changed (or moved to ``new``): warm sessions made for it are
        invalidated, and its pool targets follow it to ``new``."""
        await self._invalidate_warm(old)
        if new is not None and new != old:
            for key in self.pool.move_targets(old, new):
                self.pool.refill(key)
        else:
            for key in [k for k in self.pool.targets if k.cwd == old]:
                self.pool.refill(key)

    async def _invalidate_warm(self, cwd: str) -> None:
        """Hazard prevented (pool ignores a cwd change): warm sessions made for ``cwd`` are closed at
        the agent, and ones still being created for it are discarded when they arrive."""
        for session in self.pool.remove_ready(cwd):
            await self._discard_warm(session)

    async def _discard_warm(self, session: Session) -> None:
        if session.closed:
            return
        self._forget(session)
        await self._close_at_agent(session)

    # -- reports -----------------------------------------------------------------------------------

    @property
    def usage(self) -> dict[str, int]:
        """Every token the agent reported, all sessions, warm-up included."""
        return self.ledger.total()

    def mcp_report(self) -> McpReport:
        live = [s for s in self._routes.values() if not s.closed]
        return McpReport({s.label: s.mcp_processes for s in live}, self.mcp.managed_counts())

    def all_sessions(self) -> list[Session]:
        """Every session this orchestrator made (open, warm and closed), in no particular order."""
        return [*self._routes.values(), *self.closed_sessions]

    # -- worktrees -----------------------------------------------------------------------------------

    async def merge_worktree(self, session: Session, message: str | None = None) -> str:
        if session.worktree is None:
            raise SessionError(session.name, "has no worktree (open_session(worktree=True) makes one)")
        return await self._blocking(session.worktree.merge, message)

    async def discard_worktree(self, session: Session) -> None:
        if session.worktree is None:
            raise SessionError(session.name, "has no worktree (open_session(worktree=True) makes one)")
        await self._blocking(session.worktree.discard)


__all__ = ["AgentUnavailable", "Orchestrator", "Session", "TurnFailed", "TurnStream", "Unrouted"]
