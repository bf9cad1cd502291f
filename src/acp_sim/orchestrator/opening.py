"""Opening a session at the agent: ``session/new``, retried across a restart, then its model.

``session/new`` is sent only once the agent is up; if the agent goes away before answering, the
request is sent again to the restarted instance (``open_retries`` times), since nothing of the
session exists at the agent yet. A refusal, a timeout or an answer without a ``sessionId`` fails
the open naming the session. The new ``Session`` is registered for routing before anything else
can happen (its early updates were parked, see ``routing``), then switched to its model.

Each session gets a label (``s1``, ``s2``...) that stays its name for the caller and in errors,
even when a restore gives it a new agent id.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio

from acp_sim.errors import ConnectionClosed, RemoteError
from acp_sim.orchestrator.mcp import McpManager
from acp_sim.orchestrator.routing import SessionRegistry
from acp_sim.orchestrator.session import Session, SessionError
from acp_sim.orchestrator.supervisor import AgentSupervisor


class SessionOpener:
    """Makes sessions at the agent. ``make_session(id, cwd, model, wire_servers, **fields)`` builds
    the ``Session`` object; ``discard(session)`` forgets one whose model could not be set."""

    def __init__(
        self,
        agent: AgentSupervisor,
        registry: SessionRegistry,
        mcp: McpManager,
        *,
        make_session: Callable[..., Session],
        discard: Callable[[Session], Awaitable[None]],
        open_retries: int = 2,
    ) -> None:
        self.agent = agent
        self.registry = registry
        self.mcp = mcp
        self._make_session = make_session
        self._discard = discard
        self.open_retries = open_retries
        self._labels = itertools.count(1)

    def next_label(self) -> str:
        return f"s{next(self._labels)}"

    def new_session_params(
        self, cwd: str, wire_servers: list[dict[str, Any]], model: str | None
    ) -> dict[str, Any]:
        return {"cwd": cwd, "mcpServers": wire_servers}

    async def open(
        self,
        cwd: str,
        mcp_servers: Sequence[Any],
        model: str | None,
        *,
        warm: bool = False,
        label: str | None = None,
    ) -> Session:
        """``session/new`` on the current agent, retried on the restarted agent if it went away."""
        label = label or self.next_label()
        wire = self.mcp.resolve(label, mcp_servers)
        agent = self.agent
        timeout = agent.request_timeout
        attempts = 0
        try:
            while True:
                await agent.wait_ready()
                conn = agent.conn
                if conn is None:
                    raise SessionError(label, "session/new failed: the agent is not running")
                started = anyio.current_time()
                try:
                    result = await conn.request(
                        "session/new", self.new_session_params(cwd, wire, model), timeout=timeout
                    )
                    break
                except ConnectionClosed as exc:
                    attempts += 1
                    if attempts > self.open_retries:
                        raise SessionError(label, f"session/new failed: {exc}") from None
                    await agent.wait_ready(stale=conn)
                except RemoteError as exc:
                    raise SessionError(label, f"the agent refused session/new for cwd {cwd}: {exc}") from None
                except TimeoutError:
                    raise SessionError(label, f"session/new got no answer within {timeout:g} s") from None
        except BaseException:
            self.mcp.release(label)
            raise
        session_id = result.get("sessionId") if isinstance(result, dict) else None
        if not isinstance(session_id, str):
            self.mcp.release(label)
            raise SessionError(label, f"session/new answered without a sessionId: {result!r}")
        session = self._make_session(
            session_id, cwd, model, wire, label=label, warm=warm, created_at=started,
            new_latency=anyio.current_time() - started,
        )  # fmt: skip
        self.registry.register(session)
        try:
            await self.select_model(session, result)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._discard(session)
            raise
        session.new_latency = anyio.current_time() - started
        return session

    async def select_model(self, session: Session, new_result: dict[str, Any]) -> None:
        """Switch a fresh session to ``session.model`` (ACP ``session/set_config_option`` "model")
        unless the agent already chose it."""
        if session.model is None:
            return
        models = new_result.get("models")
        current = models.get("currentModelId") if isinstance(models, dict) else None
        if current == session.model:
            return
        conn = self.agent.conn
        if conn is None:
            raise SessionError(session.name, "the agent is not running")
        try:
            await conn.request(
                "session/set_config_option",
                {"sessionId": session.id, "configId": "model", "value": session.model},
                timeout=self.agent.request_timeout,
            )
        except RemoteError as exc:
            raise SessionError(
                session.name, f"the agent cannot switch to model {session.model!r}: {exc}"
            ) from None
