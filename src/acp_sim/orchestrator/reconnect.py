"""Reconnect: the sessions carried across from one agent instance to the next.

After the supervisor (``supervisor``) has launched and initialized a fresh instance, every open
session is restored on the new connection before prompts may go out again (``SessionRestorer``):

- one that had a turn is resumed with ``session/resume`` (or ``session/load`` when the agent
  cannot resume, dropping the history it replays, see ``Session.drop_replayed``);
- a phantom (no turn, nothing on the agent's disk) is recreated with ``session/new`` and gets a
  new agent id, while the ``Session`` object the caller holds stays the same (the registry retires
  the old id);
- a resume the agent refuses with "not found" falls back to ``session/new`` and sets
  ``history_lost``; any other failure marks that session alone broken.

Which method a session gets is ``_restore_method``, what happens once it is back ``_on_restored``
(a subclass changes either, named by the orchestrator's ``restorer_class``). Nothing that was
delivered is delivered again: in-flight turns were failed when the agent went away, never
replayed, and replayed history is dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import anyio

from acp_sim.errors import RESOURCE_NOT_FOUND, AcpSimError, ConnectionClosed, RemoteError
from acp_sim.orchestrator.opening import SessionOpener
from acp_sim.orchestrator.routing import SessionRegistry
from acp_sim.orchestrator.session import Session, SessionError
from acp_sim.orchestrator.supervisor import AgentSupervisor

RestoreMethod = Literal["resume", "load", "new"]


def is_missing_session(exc: RemoteError) -> bool:
    """The agent does not hold the session: -32002 (claude-agent-acp now) or -32603 "not found" (before)."""
    if exc.code == RESOURCE_NOT_FOUND:
        return True
    detail = f"{exc.message} {exc.data}".lower()
    return "not found" in detail


class SessionRestorer:
    """Brings every session marked ``restoring`` back on the supervisor's current connection.

    Handed the supervisor (the connection, the agent's capabilities), the registry (the sessions;
    a recreated one is rekeyed there), the opener (``session/new``'s params, the session's model
    re-applied) and ``closed_meanwhile``, which gets a session the caller closed while it was being
    restored (so it is closed at the agent now).
    """

    def __init__(
        self,
        agent: AgentSupervisor,
        registry: SessionRegistry,
        opener: SessionOpener,
        *,
        restore_with: Literal["resume", "load"] = "resume",
        closed_meanwhile: Callable[[Session], None],
    ) -> None:
        self.agent = agent
        self.registry = registry
        self.opener = opener
        self.restore_with = restore_with
        self._closed_meanwhile = closed_meanwhile

    def _capabilities(self) -> dict[str, Any]:
        return self.agent.capabilities()

    def _session_capability(self, name: str) -> bool:
        return self.agent.session_capability(name)

    def _restore_method(self, session: Session) -> RestoreMethod:
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

    def _on_restored(self, session: Session, method: str) -> None:
        """Hook after a session came back. Hazard noted (tokens double counted across reconnect):
        nothing is re-added to the ledger here; usage is recorded per answered turn only."""

    async def restore_all(self) -> dict[str, str]:
        """Restore every session waiting for it, concurrently; label -> how it came back."""
        sessions = [s for s in self.registry.live() if s.restoring and not s.warm]
        async with anyio.create_task_group() as tg:
            for session in sessions:
                tg.start_soon(self._restore_one, session)
        return {s.label: (s.restores[-1] if s.restores else "broken") for s in sessions}

    async def _restore_one(self, session: Session) -> None:
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

    async def _restore_session(self, session: Session) -> None:
        method: str = self._restore_method(session)
        conn = self.agent.conn
        if conn is None:
            raise ConnectionClosed(self.agent.name, "no agent connection")
        timeout = self.agent.request_timeout
        if method in ("resume", "load"):
            try:
                await conn.request(
                    f"session/{method}",
                    {"sessionId": session.id, "cwd": session.cwd, "mcpServers": session.mcp_servers},
                    timeout=timeout,
                )
            except RemoteError as exc:
                if not is_missing_session(exc):
                    raise
                method = "new-lost"
                session.history_lost = True
        if method.startswith("new"):
            result = await conn.request(
                "session/new",
                self.opener.new_session_params(session.cwd, session.mcp_servers, session.model),
                timeout=timeout,
            )
            new_id = result.get("sessionId") if isinstance(result, dict) else None
            if not isinstance(new_id, str):
                raise AcpSimError(f"session/new answered without a sessionId: {result!r}")
            self.registry.rekey(session, new_id)
            session.agent_turns = 0
            await self.opener.select_model(session, result)
        session.restores.append(method)
        self._end_restore(session)
        self._on_restored(session, method)

    def _end_restore(self, session: Session) -> None:
        session.restoring = False
        session.ready.set()
        if session.closed:
            self._closed_meanwhile(session)
