"""Reconnect: one agent instance after another, with the sessions carried across.

The supervisor task owns the agent's lifetime: it launches an instance, initializes it, serves
until the connection ends, and when that end was not asked for (a crash), it

1. fails every in-flight turn at once with an error naming the session (``_on_agent_lost``),
2. launches a fresh instance through the same launcher and initializes it,
3. restores every open session (``_restore_session``): one that had a turn is resumed with
   ``session/resume`` (or ``session/load`` when the agent cannot resume, dropping the history it
   replays, see ``Session.drop_replayed``); a phantom (no turn, nothing on the agent's disk) is
   recreated with ``session/new`` and gets a new agent id, while the ``Session`` object the caller
   holds stays the same. A resume the agent refuses with "not found" falls back to ``session/new``
   and sets ``history_lost``.

Prompts started meanwhile wait for their session to be restored, then go out on the new
connection. Nothing that was delivered is delivered again: in-flight turns are failed, never
replayed, and replayed history is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import anyio
from acp.meta import PROTOCOL_VERSION

from acp_sim.errors import RESOURCE_NOT_FOUND, AcpSimError, ConnectionClosed, RemoteError
from acp_sim.orchestrator.session import Session, SessionError
from acp_sim.wire import Connection

if TYPE_CHECKING:
    from acp_sim.orchestrator.core import Orchestrator

RestoreMethod = Literal["resume", "load", "new"]


class AgentUnavailable(AcpSimError):
    """The agent could not be (re)started: every session operation fails with this."""


@dataclass
class Restart:
    """One agent instance ending unexpectedly, and what the orchestrator did about it."""

    epoch: int
    """The instance that went away (0 = first launch)."""
    at: float
    reason: str
    failed_turns: list[str]
    restored: dict[str, str] | None = None
    """Session label -> how it came back (``resume``, ``load``, ``new``, ``new-lost``, ``broken``)."""


def root_cause(error: BaseException) -> BaseException:
    """The one exception inside (nested) single-member exception groups, for messages."""
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error


def is_missing_session(exc: RemoteError) -> bool:
    """The agent does not hold the session: -32002 (claude-agent-acp now) or -32603 "not found" (before)."""
    if exc.code == RESOURCE_NOT_FOUND:
        return True
    detail = f"{exc.message} {exc.data}".lower()
    return "not found" in detail


class ReconnectMixin:
    """The agent-lifetime half of ``Orchestrator`` (kept apart: one idea per module)."""

    async def _supervise(self: Orchestrator, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        """The agent's lifetime: launch, serve, and relaunch after each unexpected end."""
        self._supervisor_scope = anyio.CancelScope()
        try:
            with self._supervisor_scope:
                await self._supervise_loop(task_status)
        finally:
            self._ready.set()  # wake waiters: they see _stopping or _given_up
            self._lost.set()
            self._supervisor_done.set()

    async def _supervise_loop(self: Orchestrator, task_status: anyio.abc.TaskStatus[None]) -> None:
        first = True
        failed_launches = 0
        while True:
            try:
                await self._serve_instance(first, task_status)
                failed_launches = 0
            except Exception as exc:  # launch, initialize or restore failed
                if first:
                    raise
                if self._stopping:
                    return
                failed_launches += 1
                self._record_loss(exc)
                if failed_launches >= self.max_failed_launches:
                    self._give_up(
                        f"{failed_launches} restarts in a row failed, the last with: {root_cause(exc)}"
                    )
                    return
            first = False
            if self._stopping:
                return
            if self.max_restarts is not None and len(self.restarts) > self.max_restarts:
                self._give_up(
                    f"the agent went away {len(self.restarts)} times (max_restarts={self.max_restarts})"
                )
                return
            if failed_launches:
                await anyio.sleep(self.restart_backoff * 2 ** (failed_launches - 1))
            self.epoch += 1

    async def _serve_instance(
        self: Orchestrator, first: bool, task_status: anyio.abc.TaskStatus[None]
    ) -> None:
        async with self.launcher.launch() as link:
            conn = Connection(
                link.receive,
                link.send,
                peer=link.name,
                dispatcher=self._dispatcher(self.epoch),
                observer=self._written,
                peer_exit_code=link.wait_exit_code,
            )
            async with conn:
                self._lost = anyio.Event()
                self._link, self._conn = link, conn
                result = await conn.request(
                    "initialize",
                    {"protocolVersion": PROTOCOL_VERSION, "clientCapabilities": self.client_capabilities},
                    timeout=self.request_timeout,
                )
                self.agent_info = result if isinstance(result, dict) else {}
                if not first:
                    await self._restore_all()
                    self.pool.refill_all()
                self._ready.set()
                if first:
                    task_status.started()
                with anyio.CancelScope() as self._wait_scope:
                    await conn.closed.wait()
                self._wait_scope = None
                if self._stopping:
                    return
                error = conn.close_error or ConnectionClosed(link.name, "connection closed")
                self._on_agent_lost(error)
            # Leaving the launcher's context reaps the dead instance (and its process group).

    def _record_loss(self: Orchestrator, error: BaseException) -> None:
        self._on_agent_lost(error)

    def _on_agent_lost(self: Orchestrator, error: BaseException) -> None:
        """Hazard prevented (reconnect): in-flight turns fail *at once*, naming their session,
        instead of waiting for a response that will never come; every open session is marked for
        restore (prompts wait for it); warm pool sessions died with the agent and are dropped."""
        reason = str(root_cause(error))
        if self._ready.is_set():  # replaced only when set: a waiter on an unset event must stay woken by it
            self._ready = anyio.Event()
        failed, self._lost_turns = self._lost_turns, []
        for session in list(self._routes.values()):
            turn = session.turn
            # Only turns whose prompt went out are lost; one still waiting to be sent goes to the
            # restarted agent.
            if turn is not None and turn.accepting and turn.fail(self._lost_message(error)):
                failed.append(session.label)
            self._cancel_client_requests(session)
            if session.warm:
                continue
            session.restoring = True
            if session.ready.is_set():
                session.ready = anyio.Event()
        for warm in self.pool.forget_all():
            self._forget(warm)
        self.restarts.append(Restart(self.epoch, self.now(), reason, failed))
        self._lost.set()

    def _lost_message(self: Orchestrator, error: BaseException) -> str:
        name = self._link.name if self._link is not None else self.launcher.name
        return (
            f"the agent {name} went away during this turn ({root_cause(error)}); the orchestrator "
            "restarts it and restores the session: prompt again to continue"
        )

    def _give_up(self: Orchestrator, reason: str) -> None:
        self._given_up = AgentUnavailable(f"agent {self.launcher.name} is unavailable: {reason}")
        for session in list(self._routes.values()):
            if session.turn is not None:
                session.turn.fail(str(self._given_up))
            session.broken = SessionError(session.label, str(self._given_up))
            session.restoring = False
            session.ready.set()
        self._ready.set()

    # -- restoring ---------------------------------------------------------------------------------

    async def _restore_all(self: Orchestrator) -> None:
        sessions = [s for s in self._routes.values() if s.restoring and not s.warm]
        async with anyio.create_task_group() as tg:
            for session in sessions:
                tg.start_soon(self._restore_one, session)
        if self.restarts:
            self.restarts[-1].restored = {
                s.label: (s.restores[-1] if s.restores else "broken") for s in sessions
            }

    async def _restore_one(self: Orchestrator, session: Session) -> None:
        try:
            await self._restore_session(session)
        except ConnectionClosed:
            return  # the new instance went away too: the next round restores it
        except Exception as exc:
            session.broken = SessionError(
                session.label, f"could not be restored after the agent restarted: {exc}"
            )
            session.restores.append("broken")
            self._end_restore(session)

    def _capabilities(self: Orchestrator) -> dict[str, Any]:
        caps = self.agent_info.get("agentCapabilities")
        return caps if isinstance(caps, dict) else {}

    def _session_capability(self: Orchestrator, name: str) -> bool:
        session_caps = self._capabilities().get("sessionCapabilities")
        return isinstance(session_caps, dict) and session_caps.get(name) is not None

    def _restore_method(self: Orchestrator, session: Session) -> RestoreMethod:
        """Hazard prevented (phantom resumed after reconnect): a session that never had a turn left
        nothing on the agent's disk, so resuming it fails (-32002 with Claude Code) and a client that
        gives up there loses the session; it is recreated with ``session/new`` instead. A session
        with turns is resumed (or loaded, by preference or when the agent cannot resume)."""
        if session.is_phantom:
            return "new"
        can_resume = self._session_capability("resume")
        can_load = self._capabilities().get("loadSession") is True
        if can_load and (self.restore_with == "load" or not can_resume):
            return "load"
        if can_resume:
            return "resume"
        return "new"

    async def _restore_session(self: Orchestrator, session: Session) -> None:
        method: str = self._restore_method(session)
        conn = self.conn
        if method in ("resume", "load"):
            try:
                await conn.request(
                    f"session/{method}",
                    {"sessionId": session.id, "cwd": session.cwd, "mcpServers": session.mcp_servers},
                    timeout=self.request_timeout,
                )
            except RemoteError as exc:
                if not is_missing_session(exc):
                    raise
                method = "new-lost"
                session.history_lost = True
        if method.startswith("new"):
            result = await conn.request(
                "session/new",
                self._new_session_params(session.cwd, session.mcp_servers, session.model),
                timeout=self.request_timeout,
            )
            new_id = result.get("sessionId") if isinstance(result, dict) else None
            if not isinstance(new_id, str):
                raise AcpSimError(f"session/new answered without a sessionId: {result!r}")
            self._rekey(session, new_id)
            session.agent_turns = 0
            await self._select_model(session, result)
        session.restores.append(method)
        self._end_restore(session)
        self._on_restored(session, method)

    def _end_restore(self: Orchestrator, session: Session) -> None:
        session.restoring = False
        session.ready.set()
        if session.closed:
            self._spawn(self._close_at_agent, session)

    def _on_restored(self: Orchestrator, session: Session, method: str) -> None:
        """Hook after a session came back. Hazard noted (tokens double counted across reconnect):
        nothing is re-added to the ledger here; usage is recorded per answered turn only."""
