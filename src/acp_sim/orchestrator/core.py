"""The reference orchestrator: drives an ACP agent for many sessions at once, bookkeeping done right.

It is a client of the wire and nothing else: it never imports the simulated agent, so it runs
unchanged against Claude Code's adapter. All per-session state lives in ``Session`` objects; this
module owns the connection, the registry of sessions by id, and the per-turn timers.
"""

from __future__ import annotations

import math
from contextlib import AsyncExitStack, suppress
from dataclasses import dataclass, field
from typing import Any

import anyio
from acp.meta import PROTOCOL_VERSION
from anyio.abc import TaskGroup

from acp_sim.errors import AcpSimError, ConnectionClosed, RemoteError
from acp_sim.orchestrator.launcher import AgentLauncher, AgentLink
from acp_sim.orchestrator.session import Session, SessionClosed, TurnFailed, TurnInProgress, TurnStream
from acp_sim.wire import Connection, Dispatcher

DEFAULT_MAX_BUFFERED = 10_000


@dataclass
class Unrouted:
    """Updates that matched no open session: counted and kept, never delivered elsewhere."""

    unknown: list[dict[str, Any]] = field(default_factory=list)
    closed: list[dict[str, Any]] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.unknown) + len(self.closed)


class Orchestrator:
    """Many ACP sessions over one agent connection.

    ``turn_timeout`` bounds a whole turn, ``idle_timeout`` the silence between two updates of a
    turn; both are armed per turn generation (see ``_watch_turn``).
    """

    def __init__(
        self,
        agent: AgentLauncher,
        *,
        turn_timeout: float = math.inf,
        idle_timeout: float = math.inf,
        max_buffered: int = DEFAULT_MAX_BUFFERED,
        client_capabilities: dict[str, Any] | None = None,
    ) -> None:
        self.launcher = agent
        self.turn_timeout = turn_timeout
        self.idle_timeout = idle_timeout
        self.max_buffered = max_buffered
        self.client_capabilities = client_capabilities or {
            "fs": {"readTextFile": False, "writeTextFile": False},
            "terminal": False,
        }
        self.sessions: dict[str, Session] = {}
        self.unrouted = Unrouted()
        self.agent_info: dict[str, Any] = {}
        self._exit = AsyncExitStack()
        self._tg: TaskGroup | None = None
        self._conn: Connection | None = None
        self._link: AgentLink | None = None
        self._closed_ids: set[str] = set()

    # -- lifecycle -------------------------------------------------------------------------------

    async def __aenter__(self) -> Orchestrator:
        await self._exit.__aenter__()
        try:
            self._tg = await self._exit.enter_async_context(anyio.create_task_group())
            self._exit.callback(self._tg.cancel_scope.cancel)
            await self._connect()
        except BaseException:
            await self._exit.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        for session in list(self.sessions.values()):
            if session.turn is not None:
                session.turn.fail("orchestrator closed")
        return await self._exit.__aexit__(*exc_info)

    async def _connect(self) -> None:
        self._link = await self._exit.enter_async_context(self.launcher.launch())
        dispatcher = Dispatcher()
        dispatcher.add_notification("session/update", self._on_update)
        self._conn = await self._exit.enter_async_context(
            Connection(
                self._link.receive,
                self._link.send,
                peer=self._link.name,
                dispatcher=dispatcher,
                peer_exit_code=self._link.wait_exit_code,
            )
        )
        assert self._tg is not None
        self._tg.start_soon(self._watch_connection, self._conn)
        result = await self._conn.request(
            "initialize",
            {"protocolVersion": PROTOCOL_VERSION, "clientCapabilities": self.client_capabilities},
        )
        self.agent_info = result if isinstance(result, dict) else {}

    @property
    def conn(self) -> Connection:
        if self._conn is None:
            raise AcpSimError("the orchestrator is not running; use 'async with Orchestrator(...)'")
        return self._conn

    def now(self) -> float:
        return anyio.current_time()

    async def _watch_connection(self, conn: Connection) -> None:
        await conn.closed.wait()
        error = conn.close_error
        reason = str(error) if error is not None else "connection closed"
        for session in list(self.sessions.values()):
            if session.turn is not None:
                session.turn.fail(f"agent connection lost: {reason}")

    # -- sessions --------------------------------------------------------------------------------

    async def open_session(
        self, *, cwd: str, mcp_servers: list[dict[str, Any]] | None = None, model: str | None = None
    ) -> Session:
        servers = list(mcp_servers or [])
        result = await self.conn.request("session/new", {"cwd": cwd, "mcpServers": servers})
        session = Session(self, result["sessionId"], cwd, model, servers)
        self.sessions[session.id] = session
        return session

    def _on_update(self, params: Any) -> None:
        """Hazard prevented (cross-session bleed): one lookup by the update's own sessionId."""
        if not isinstance(params, dict) or not isinstance(params.get("update"), dict):
            self.unrouted.unknown.append({"malformed": params})
            return
        session = self.sessions.get(params.get("sessionId"))  # type: ignore[arg-type]
        if session is None:
            bucket = (
                self.unrouted.closed if params.get("sessionId") in self._closed_ids else self.unrouted.unknown
            )
            bucket.append(params)
            return
        session.route(params["update"], self.now())

    # -- turns -----------------------------------------------------------------------------------

    def start_turn(self, session: Session, text: str) -> TurnStream:
        """Open the turn's queue, then send the prompt (in that order: see ``TurnStream``)."""
        if session.closed:
            raise SessionClosed(f"session {session.id} is closed")
        if session.turn is not None and not session.turn.done:
            raise TurnInProgress(f"session {session.id} already has turn {session.turn.generation} running")
        session.generation += 1
        now = self.now()
        turn = TurnStream(session, session.generation, self.max_buffered, now, now)
        session.turn = turn
        assert self._tg is not None
        self._tg.start_soon(self._run_prompt, turn, text)
        if self.turn_timeout < math.inf or self.idle_timeout < math.inf:
            self._tg.start_soon(self._watch_turn, turn)
        return turn

    async def _run_prompt(self, turn: TurnStream, text: str) -> None:
        session = turn.session
        try:
            result = await self.conn.request(
                "session/prompt", {"sessionId": session.id, "prompt": [{"type": "text", "text": text}]}
            )
        except RemoteError as exc:
            turn.fail(f"agent answered with error: {exc.message} (code {exc.code})")
        except ConnectionClosed as exc:
            turn.fail(f"agent connection lost: {exc}")
        else:
            result = result if isinstance(result, dict) else {}
            turn.finish(str(result.get("stopReason")), result.get("usage"))

    async def _watch_turn(self, turn: TurnStream) -> None:
        """Hazard prevented (stale timers): the timer belongs to one generation of one session.

        It ends only the turn that armed it, re-reads that turn's last activity before firing, and
        returns as soon as that turn is over, so it can never touch a later turn.
        """
        session = turn.session
        while not turn.done and session.generation == turn.generation:
            deadline = min(turn.started_at + self.turn_timeout, turn.last_activity + self.idle_timeout)
            if self.now() >= deadline:
                which = "turn" if deadline == turn.started_at + self.turn_timeout else "idle"
                limit = self.turn_timeout if which == "turn" else self.idle_timeout
                turn.fail(f"{which} timeout after {limit:g} s")
                await self._send_cancel(session)
                return
            with anyio.move_on_after(deadline - self.now()):
                await turn.finished.wait()

    async def cancel(self, session: Session) -> None:
        """Hazard prevented (scoped interrupts): ``session/cancel`` for this session only.

        The interrupted flag lives on the current turn, so the next turn starts clean.
        """
        turn = session.turn
        if turn is None or turn.done:
            return
        turn.interrupted = True
        await self._send_cancel(session)

    def request_cancel(self, session: Session) -> None:
        """Cancel from synchronous code (routing): the notification is sent by a task."""
        if self._tg is not None:
            self._tg.start_soon(self._send_cancel, session)

    async def _send_cancel(self, session: Session) -> None:
        with suppress(ConnectionClosed):
            await self.conn.notify("session/cancel", {"sessionId": session.id})

    async def close_session(self, session: Session) -> None:
        if session.closed:
            return
        if session.turn is not None and not session.turn.done:
            await self.cancel(session)
            session.turn.fail("session closed")
        session.closed = True
        self.sessions.pop(session.id, None)
        self._closed_ids.add(session.id)
        if (
            self.agent_info.get("agentCapabilities", {}).get("sessionCapabilities", {}).get("close")
            is not None
        ):
            with suppress(RemoteError, ConnectionClosed):
                await self.conn.request("session/close", {"sessionId": session.id})


__all__ = ["Orchestrator", "Session", "TurnFailed", "TurnStream"]
