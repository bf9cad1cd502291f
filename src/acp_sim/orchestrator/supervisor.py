"""The agent's lifetime: one instance after another, launched, initialized, served, replaced.

``AgentSupervisor`` runs as one task. It launches an instance through the launcher, sends
``initialize``, serves until the connection ends, and when that end was not asked for (a crash):

1. reports the loss at once (``on_lost``): the owner fails every in-flight turn, naming its
   session, instead of letting it wait for a response that will never come;
2. launches a fresh instance through the same launcher and initializes it;
3. asks the owner to restore its sessions on the new connection (``restore``, see ``reconnect``),
   and only then declares the agent ready again (prompts started meanwhile wait for that).

A launch, initialize or restore that fails counts as another loss; after ``max_failed_launches``
in a row (waiting ``restart_backoff`` seconds, doubled each time, between them), or more than
``max_restarts`` losses in all, it gives up: ``on_give_up`` gets the ``AgentUnavailable`` error
every later operation raises.

The supervisor knows nothing of sessions or turns: it is handed the launcher, a dispatcher
factory (one dispatcher per instance, told the instance's epoch), the connection's observer and
three callbacks. Its state (``epoch``, ``conn``, ``ready``, ``lost``, ``restarts``) is read by its
owner.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio
from acp.meta import PROTOCOL_VERSION
from anyio.abc import TaskStatus

from acp_sim.dispatch import Dispatcher
from acp_sim.errors import AcpSimError, ConnectionClosed
from acp_sim.orchestrator.launcher import AgentLauncher, AgentLink
from acp_sim.wire import Connection, MessageObserver


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


class AgentSupervisor:
    """Launches the agent and relaunches it after each unexpected end (see the module docstring).

    ``on_lost(error)`` returns the labels of the sessions whose turns it failed (for ``Restart``);
    ``restore()`` runs on the new connection before it is declared ready and returns how each
    session came back; ``on_give_up(error)`` is called once, when restarting stops.
    """

    def __init__(
        self,
        launcher: AgentLauncher,
        *,
        dispatcher: Callable[[int], Dispatcher],
        client_capabilities: dict[str, Any],
        on_lost: Callable[[BaseException], list[str]],
        restore: Callable[[], Awaitable[dict[str, str]]],
        on_give_up: Callable[[AgentUnavailable], None],
        request_timeout: float = math.inf,
        max_restarts: int | None = None,
        max_failed_launches: int = 3,
        restart_backoff: float = 0.5,
        observer: MessageObserver | None = None,
    ) -> None:
        self.launcher = launcher
        self._dispatcher = dispatcher
        self.observer = observer
        """Sees every message of each connection (the turns' ``WrittenPrompts``): handed to each."""
        self._client_capabilities = client_capabilities
        self._on_lost = on_lost
        self._restore = restore
        self._on_give_up = on_give_up
        self.request_timeout = request_timeout
        self.max_restarts = max_restarts
        self.max_failed_launches = max_failed_launches
        self.restart_backoff = restart_backoff
        self.epoch = 0
        """Which agent instance is current: 0 for the first launch, +1 per restart."""
        self.restarts: list[Restart] = []
        self.agent_info: dict[str, Any] = {}
        """The current instance's ``initialize`` answer."""
        self.conn: Connection | None = None
        self.link: AgentLink | None = None
        self.ready = anyio.Event()
        """Set while an initialized (and, after a restart, restored) instance is serving."""
        self.lost = anyio.Event()
        """Set once the current instance's loss has been handled (``on_lost`` returned)."""
        self.done = anyio.Event()
        self.stopping = False
        self.given_up: AgentUnavailable | None = None
        self._wait_scope: anyio.CancelScope | None = None
        self._scope: anyio.CancelScope | None = None

    # -- queries -------------------------------------------------------------------------------------

    def capabilities(self) -> dict[str, Any]:
        caps = self.agent_info.get("agentCapabilities")
        return caps if isinstance(caps, dict) else {}

    def session_capability(self, name: str) -> bool:
        session_caps = self.capabilities().get("sessionCapabilities")
        return isinstance(session_caps, dict) and session_caps.get(name) is not None

    @property
    def name(self) -> str:
        return self.link.name if self.link is not None else self.launcher.name

    def lost_message(self, error: BaseException) -> str:
        """What a turn that was in flight when the agent went away fails with."""
        return (
            f"the agent {self.name} went away during this turn ({root_cause(error)}); the orchestrator "
            "restarts it and restores the session: prompt again to continue"
        )

    async def wait_ready(self, stale: Connection | None = None) -> None:
        """Until the agent is up (after a restart: until it is initialized and sessions restored).

        ``stale``: a connection a request just failed on; its loss may not be handled yet.
        """
        if stale is not None and stale is self.conn:
            await self.lost.wait()
        while True:
            if self.given_up is not None:
                raise self.given_up
            if self.stopping:
                raise AcpSimError("the orchestrator is closing")
            if self.ready.is_set():
                return
            await self.ready.wait()

    # -- running -------------------------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None]) -> None:
        """The agent's lifetime: started once the first instance is initialized."""
        self.ready, self.done = anyio.Event(), anyio.Event()  # of the event loop running it
        self._scope = anyio.CancelScope()
        try:
            with self._scope:
                await self._loop(task_status)
        finally:
            self.ready.set()  # wake waiters: they see stopping or given_up
            self.lost.set()
            self.done.set()

    async def stop(self, grace: float) -> None:
        """Leave the agent's contexts gracefully (serving) or stop what is under way (launching,
        restoring, backing off); wait up to ``grace`` seconds for the task to end."""
        self.stopping = True
        if self._wait_scope is not None:
            self._wait_scope.cancel()
        elif self._scope is not None:
            self._scope.cancel()
        with anyio.move_on_after(grace):
            await self.done.wait()

    async def _loop(self, task_status: TaskStatus[None]) -> None:
        first = True
        failed_launches = 0
        while True:
            try:
                await self._serve_instance(first, task_status)
                failed_launches = 0
            except Exception as exc:  # launch, initialize or restore failed
                if first:
                    raise
                if self.stopping:
                    return
                failed_launches += 1
                self._handle_loss(exc)
                if failed_launches >= self.max_failed_launches:
                    self._give_up(
                        f"{failed_launches} restarts in a row failed, the last with: {root_cause(exc)}"
                    )
                    return
            first = False
            if self.stopping:
                return
            if self.max_restarts is not None and len(self.restarts) > self.max_restarts:
                self._give_up(
                    f"the agent went away {len(self.restarts)} times (max_restarts={self.max_restarts})"
                )
                return
            if failed_launches:
                await anyio.sleep(self.restart_backoff * 2 ** (failed_launches - 1))
            self.epoch += 1

    async def _serve_instance(self, first: bool, task_status: TaskStatus[None]) -> None:
        async with self.launcher.launch() as link:
            conn = Connection(
                link.receive,
                link.send,
                peer=link.name,
                dispatcher=self._dispatcher(self.epoch),
                observer=self.observer,
                peer_exit_code=link.wait_exit_code,
            )
            async with conn:
                self.lost = anyio.Event()
                self.link, self.conn = link, conn
                result = await conn.request(
                    "initialize",
                    {"protocolVersion": PROTOCOL_VERSION, "clientCapabilities": self._client_capabilities},
                    timeout=self.request_timeout,
                )
                self.agent_info = result if isinstance(result, dict) else {}
                if not first:
                    restored = await self._restore()
                    if self.restarts:
                        self.restarts[-1].restored = restored
                self.ready.set()
                if first:
                    task_status.started()
                with anyio.CancelScope() as self._wait_scope:
                    await conn.closed.wait()
                self._wait_scope = None
                if self.stopping:
                    return
                self._handle_loss(conn.close_error or ConnectionClosed(link.name, "connection closed"))
            # Leaving the launcher's context reaps the dead instance (and its process group).

    def _handle_loss(self, error: BaseException) -> None:
        if self.ready.is_set():  # replaced only when set: a waiter on an unset event must stay woken by it
            self.ready = anyio.Event()
        failed = self._on_lost(error)
        self.restarts.append(Restart(self.epoch, anyio.current_time(), str(root_cause(error)), failed))
        self.lost.set()

    def _give_up(self, reason: str) -> None:
        self.given_up = AgentUnavailable(f"agent {self.launcher.name} is unavailable: {reason}")
        self._on_give_up(self.given_up)
        self.ready.set()
