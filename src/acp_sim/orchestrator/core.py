"""The reference orchestrator: drives an ACP agent for many sessions at once, bookkeeping done right.

It is a client of the wire and nothing else: it never imports the simulated agent, so it runs
unchanged against Claude Code's adapter. ``Orchestrator`` is the public face, and it owns its
parts; none of them knows it (ownership runs one way, as in httpcore's connection pool, where a
connection never knows the pool): each is handed the few values and callables it needs.

- ``supervisor.AgentSupervisor``: the agent's lifetime (launch, initialize, crash, restart);
- ``reconnect.SessionRestorer``: sessions carried across a restart;
- ``routing.SessionRegistry``: the one map of sessions by agent id, ``Unrouted``, early updates;
- ``opening.SessionOpener``: ``session/new``, retried across a restart, and the session's model;
- ``turns.TurnLifecycle``: a turn's queue, prompt, answer, timers and cancel;
- ``session.Session`` / ``TurnStream``: all per-session and per-turn state;
- ``pool.WarmPool``, ``mcp.McpManager``, ``accounting.TokenLedger``, ``worktree.Worktree``.

Every hazard has its own small method whose docstring names it, so a subclass can change exactly
one behaviour (the plugin's seeded-bug catalog does). Those of this class:

- routing: ``_route_update`` (then ``Session.route``), ``_route_client_request`` (permission, fs,
  terminal); backpressure: ``_backpressure`` (routing never waits);
- pre-warm pool: ``_pool_key`` (matching key), ``_invalidate_warm`` (cwd change);
- reconnect: ``_on_agent_lost`` (in-flight turns fail at once);
- MCP cleanup on close: ``_close_at_agent``.

Those of its parts, each changed through the class attribute naming the part's class
(``turns_class``, ``restorer_class``, ``session_class``, ``pool_class``):

- ``TurnLifecycle``: ``_register_turn`` (queue before the prompt), ``_mark_sent`` (from when the
  turn takes updates), ``_reset_interrupt``, ``_watch_turn``, ``_turn_deadline``,
  ``_on_turn_timeout`` (one generation each), ``_interrupt`` (scoped cancel), ``_account_turn``
  (tokens), ``_on_buffer_full`` (the backpressure policy);
- ``SessionRestorer``: ``_restore_method`` (phantoms are recreated), ``_on_restored``;
- ``Session``: ``route``, ``drop_replayed`` (no duplicate after a reconnect);
- ``SessionRegistry``: ``adopt_early_updates`` (first updates of a new session).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any, Literal, TypeVar

import anyio
from anyio.abc import TaskGroup

from acp_sim.dispatch import Dispatcher
from acp_sim.errors import AcpSimError, ConnectionClosed, InvalidParams, RemoteError
from acp_sim.orchestrator.accounting import TokenLedger
from acp_sim.orchestrator.handlers import CLIENT_REQUESTS, ClientHandler, serve_request
from acp_sim.orchestrator.launcher import AgentLauncher, AgentLink
from acp_sim.orchestrator.mcp import McpManager, McpReport, McpSharing
from acp_sim.orchestrator.opening import SessionOpener
from acp_sim.orchestrator.pool import PoolKey, PoolOps, WarmPool, canonical_mcp
from acp_sim.orchestrator.reconnect import SessionRestorer
from acp_sim.orchestrator.routing import SessionRegistry, Unrouted
from acp_sim.orchestrator.session import Prompt, Session, SessionError, SessionOps, TurnStream
from acp_sim.orchestrator.supervisor import AgentSupervisor, AgentUnavailable, Restart, root_cause
from acp_sim.orchestrator.turns import TurnLifecycle, WrittenPrompts
from acp_sim.orchestrator.worktree import Worktree
from acp_sim.wire import Connection

DEFAULT_MAX_BUFFERED = 10_000
DEFAULT_CANCEL_GRACE = 30.0
T = TypeVar("T")


class Orchestrator:
    """Many ACP sessions over one agent, restarted when it crashes.

    ``turn_timeout`` bounds a whole turn (from the prompt being sent), ``idle_timeout`` the silence
    between two updates of a turn (time spent waiting on the client's own answers does not count);
    both are armed per turn generation (see ``TurnLifecycle._watch_turn``). ``max_buffered`` bounds
    each turn's queue (see ``TurnLifecycle._on_buffer_full``). ``cancel_grace`` is how long
    ``cancel()`` waits for the agent to answer the cancelled prompt before ending the turn locally.
    ``restore_with`` picks ``session/resume`` or ``session/load`` for restoring sessions with turns
    after a crash. ``mcp_sharing`` is the policy for orchestrator-run HTTP MCP servers (see ``mcp``).
    """

    session_class: type[Session] = Session
    turn_class: type[TurnStream] = TurnStream
    pool_class: type[WarmPool] = WarmPool
    turns_class: type[TurnLifecycle] = TurnLifecycle
    restorer_class: type[SessionRestorer] = SessionRestorer

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
        self.request_timeout = request_timeout
        self.worktree_root = worktree_root
        self.ledger = TokenLedger()
        self.mcp = McpManager(mcp_sharing)
        self.unclosed: list[str] = []
        """Sessions closed here that the agent could not be told to close (no close capability)."""
        self.internal_errors: list[BaseException] = []
        self._tg: TaskGroup | None = None
        self._track_activity = idle_timeout < math.inf
        # The parts, each handed only what it needs (see the module docstring).
        self.registry = SessionRegistry()
        self.unrouted: Unrouted = self.registry.unrouted
        self.closed_sessions: list[Session] = self.registry.closed
        self._routes: dict[str, Session] = self.registry.routes  # read directly by the hot path
        written = WrittenPrompts()  # sees each connection's messages; tells the turns what went out
        self.supervisor = AgentSupervisor(
            agent,
            dispatcher=self._dispatcher,
            client_capabilities=self.client_capabilities,
            on_lost=self._on_agent_lost,
            restore=self._restore_sessions,
            on_give_up=self._on_give_up,
            request_timeout=request_timeout,
            max_restarts=max_restarts,
            max_failed_launches=max_failed_launches,
            restart_backoff=restart_backoff,
            observer=written,
        )
        self.turns = self.turns_class(
            self.supervisor,
            self.registry,
            self.ledger,
            spawn=self._spawn,
            is_running=lambda: self._tg is not None and not self.supervisor.stopping,
            turn_class=self.turn_class,
            turn_timeout=turn_timeout,
            idle_timeout=idle_timeout,
            max_buffered=max_buffered,
            cancel_grace=cancel_grace,
            written=written,
        )
        session_ops = SessionOps(
            start_turn=self.start_turn,
            cancel=self.cancel,
            close=self.close_session,
            on_buffer_full=self.turns._on_buffer_full,
            blocking=self._blocking,
        )
        self.opener = SessionOpener(
            self.supervisor,
            self.registry,
            self.mcp,
            make_session=lambda *args, **fields: self.session_class(session_ops, *args, **fields),
            discard=self._discard_warm,
            open_retries=open_retries,
        )
        self.restorer = self.restorer_class(
            self.supervisor,
            self.registry,
            self.opener,
            restore_with=restore_with,
            closed_meanwhile=partial(self._spawn, self._close_at_agent),
        )
        self.pool = self.pool_class(
            PoolOps(
                spawn=self._spawn,
                new_session=partial(self.opener.open, warm=True),
                start_turn=partial(self.start_turn, warmup=True),
                discard=self._discard_warm,
                now=self.now,
                warmup_tokens=lambda: self.ledger.warmup_tokens,
            )
        )

    # -- lifecycle -------------------------------------------------------------------------------

    async def __aenter__(self) -> Orchestrator:
        if self._tg is not None:
            raise AcpSimError("an Orchestrator can be entered once")
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        try:
            await self._tg.start(self.supervisor.run)
        except BaseException as exc:
            self.supervisor.stopping = True
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
        self.supervisor.stopping = True
        for session in self.registry.live():
            if session.turn is not None:
                session.turn.fail("the orchestrator was closed")
        with anyio.CancelScope(shield=True):
            for session in self.registry.live():
                if session.worktree is not None and session.worktree.state == "active":
                    try:
                        await self._blocking(session.worktree.close)
                    except AcpSimError as exc:
                        self.internal_errors.append(exc)
            await self.supervisor.stop(grace=10)
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
        conn = self.supervisor.conn
        if conn is None:
            raise AcpSimError("the orchestrator is not running; use 'async with Orchestrator(...)'")
        return conn

    @property
    def link(self) -> AgentLink | None:
        return self.supervisor.link

    @property
    def epoch(self) -> int:
        """Which agent instance is current: 0 for the first launch, +1 per restart."""
        return self.supervisor.epoch

    @property
    def restarts(self) -> list[Restart]:
        return self.supervisor.restarts

    @property
    def agent_info(self) -> dict[str, Any]:
        """The current agent instance's ``initialize`` answer."""
        return self.supervisor.agent_info

    def now(self) -> float:
        return anyio.current_time()

    async def _blocking(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Blocking work (git): inline on virtual time (a thread would let the clock jump), else a thread."""
        if getattr(self.launcher, "virtual_time", False):
            return func(*args, **kwargs)
        return await anyio.to_thread.run_sync(partial(func, *args, **kwargs))

    def _dispatcher(self, epoch: int) -> Dispatcher:
        """The handlers of one agent instance's messages; updates of an older instance are stale."""
        dispatcher = Dispatcher()
        agent, stale = self.supervisor, self.unrouted.stale

        def on_update(params: Any) -> Awaitable[None] | None:
            if agent.epoch != epoch:
                stale.append(params)
                return None
            return self._on_update(params)

        dispatcher.add_notification("session/update", on_update)
        for method in CLIENT_REQUESTS:
            dispatcher.add_request(method, partial(self._on_client_request, method))
        return dispatcher

    def _check_running(self) -> None:
        if self._tg is None:
            raise AcpSimError("the orchestrator is not running; use 'async with Orchestrator(...)'")
        if self.supervisor.given_up is not None:
            raise self.supervisor.given_up
        if self.supervisor.stopping:
            raise AcpSimError("the orchestrator is closing")

    # -- sessions --------------------------------------------------------------------------------

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
        label = self.opener.next_label()
        if worktree:
            tree = await self._blocking(Worktree.create, cwd, label, root=self.worktree_root)
            cwd = str(tree.path)
        session = (
            await self.pool.claim(self._pool_key(model, cwd, servers)) if use_pool and tree is None else None
        )
        if session is None:
            try:
                session = await self.opener.open(cwd, servers, model, label=label)
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

    @property
    def sessions(self) -> dict[str, Session]:
        """Open sessions given to callers (not the pool's warm ones), by their current agent id.

        A view of the one registry of sessions (which routes updates), not a second map to keep in
        step with it."""
        return {sid: s for sid, s in self._routes.items() if not s.warm and not s.closed}

    def _forget(self, session: Session) -> None:
        """Unregister a session (closed, or a warm one that died with the agent)."""
        self.registry.forget(session)
        self.mcp.release(session.label)

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
            self.registry.unroutable(params)
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

    # -- agent requests (permission, fs, terminal) ------------------------------------------------

    def _on_client_request(self, method: str, params: Any) -> Awaitable[Any]:
        session = self._route_client_request(method, params)
        now = self.now if self._track_activity else None
        return serve_request(session.handler or self.handler, session, method, params, now)

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

    # -- turns (see ``turns``) ---------------------------------------------------------------------

    def start_turn(self, session: Session, prompt: Prompt, *, warmup: bool = False) -> TurnStream:
        """Open the turn's queue, then send the prompt (in that order: see ``TurnStream``)."""
        return self.turns.start(session, prompt, warmup=warmup)

    async def cancel(self, session: Session) -> None:
        """Cancel the session's running turn and return once it has ended (``cancelled``).

        If the agent does not answer the cancelled prompt within ``cancel_grace`` seconds, the
        turn ends locally (stop reason ``cancelled``, ``agent_stop_reason`` None, a ``note``).
        """
        await self.turns.cancel(session)

    # -- close -------------------------------------------------------------------------------------

    async def close_session(self, session: Session) -> None:
        """Cancel a running turn, forget the session, close it at the agent, clean its worktree."""
        if session.closed:
            return
        turn = session.turn
        if turn is not None and not turn.done:
            await self.turns._interrupt(session)
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
        if not self.supervisor.session_capability("close"):
            self.unclosed.append(session.label)
            return
        conn = self.supervisor.conn
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

    # -- reconnect (the supervisor's callbacks; restoring itself is in ``reconnect``) -------------

    def _on_agent_lost(self, error: BaseException) -> list[str]:
        """Hazard prevented (reconnect): in-flight turns fail *at once*, naming their session,
        instead of waiting for a response that will never come; every open session is marked for
        restore (prompts wait for it); warm pool sessions died with the agent and are dropped.
        Returns the labels of the sessions whose turn failed."""
        message = self.supervisor.lost_message(error)
        failed, self.turns.lost_turns = self.turns.lost_turns, []
        for session in self.registry.live():
            turn = session.turn
            # Only turns whose prompt went out are lost; one still waiting to be sent goes to the
            # restarted agent.
            if turn is not None and turn.accepting and turn.fail(message):
                failed.append(session.label)
            session.cancel_client_requests()
            if session.warm:
                continue
            session.restoring = True
            if session.ready.is_set():
                session.ready = anyio.Event()
        for warm in self.pool.forget_all():
            self._forget(warm)
        return failed

    async def _restore_sessions(self) -> dict[str, str]:
        restored = await self.restorer.restore_all()
        self.pool.refill_all()
        return restored

    def _on_give_up(self, error: AgentUnavailable) -> None:
        for session in self.registry.live():
            if session.turn is not None:
                session.turn.fail(str(error))
            session.broken = SessionError(session.label, str(error))
            session.restoring = False
            session.ready.set()

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
        return await session.merge(message)

    async def discard_worktree(self, session: Session) -> None:
        await session.discard()


__all__ = ["AgentUnavailable", "Orchestrator", "Session", "TurnStream", "Unrouted"]
