"""How the simulated agent carries out its faults (the models and the bookkeeping: ``acp_sim.faults``).

A mixin of ``SimAgent``: scheduling (timers for ``at``, message counting for ``after``), and the
effect of each action (crash, disconnect, hang, malformed line, foreign update, MCP child crash)
and of the stall behaviour. Every fault fired is a trace ``fault`` event; the agent's end is an
``exit`` event. The other behaviours take effect where the agent handles the matching message
(``SimAgent._guard``, ``_prompt``, ``_cancel``; ``SessionLifecycle`` for ``session/new`` and MCP
spawns).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import TYPE_CHECKING, Any

from anyio.abc import TaskGroup

from acp_sim.agent.messages import text_update
from acp_sim.agent.session import SimSession, Turn
from acp_sim.errors import ConnectionClosed
from acp_sim.faults import (
    Crash,
    Disconnect,
    Fault,
    FaultPlan,
    ForeignSessionUpdate,
    Hang,
    MalformedLine,
    McpChildCrash,
    Scheduled,
    Stall,
    is_action,
    parse_fault_spec,
)

if TYPE_CHECKING:
    from acp_sim.agent.mcp import McpSupervisor
    from acp_sim.clock import SimClock
    from acp_sim.trace import Trace
    from acp_sim.wire import Connection


class Observer:
    """The connection's ``MessageObserver``: the trace, plus fault triggers while a fault counts
    messages. ``on_message`` is swapped, not wrapped, so the trace costs no extra call per chunk
    when no fault is counting."""

    on_message: Callable[[str, dict[str, Any]], Any]
    on_bad_input: Callable[..., None]
    on_sending: Callable[[dict[str, Any], bytes], None]
    on_receiving: Callable[[dict[str, Any], str], None]
    on_unsent: Callable[[dict[str, Any]], None]


class FaultEffects:
    """The fault half of ``SimAgent`` (see the module docstring)."""

    # Provided by SimAgent.
    faults: FaultPlan
    sessions: dict[str, SimSession]
    _by_index: dict[int, SimSession]
    _tg: TaskGroup | None
    _observer: Observer
    hung: bool
    exit_reason: str | None
    exit_process: Callable[[int], None] | None
    clock: SimClock
    trace: Trace
    conn: Connection
    mcp: McpSupervisor

    def inject(self, fault: Fault | str) -> None:
        """Schedule a fault now (a model or the compact syntax, e.g. ``"crash:at=2.5"``).

        ``at`` is a time since this agent started (past: at once); ``after`` counts from now; with
        neither an action fires at once and a behaviour applies to the next matching message.
        """
        if isinstance(fault, str):
            fault = parse_fault_spec(fault)
        entry = self.faults.add(fault, any_launch=True)
        assert entry is not None
        if self._tg is not None:
            self._schedule(entry)

    def crash(self, code: int = 1) -> None:
        """Die at once (in-process: streams closed abruptly, MCP children killed; stdio: exit ``code``)."""
        self._crash(Crash(kind="crash", code=code), None)

    def _start_faults(self) -> None:
        for entry in list(self.faults.entries):
            self._schedule(entry)

    def _schedule(self, entry: Scheduled) -> None:
        assert self._tg is not None
        if entry.at is not None:
            self._tg.start_soon(self._timer, entry)
        elif entry.fault.after is None:
            if self.faults.roll(entry):
                self._trigger(entry, None)
        else:
            self._observer.on_message = self._observe

    async def _timer(self, entry: Scheduled) -> None:
        assert entry.at is not None
        await self.clock.sleep_until(entry.at)
        if entry.state == "pending" and self.faults.roll(entry):
            self._trigger(entry, None)

    def _observe(self, direction: str, message: dict[str, Any]) -> None:
        """The observer while faults count messages: trace first, then count (the fault sees the
        message as the trace recorded it, with its session and method attributed)."""
        trace = self.trace
        event = trace.on_written(direction, message)
        if event is None:
            return
        session = self.sessions.get(event.session) if event.session is not None else None
        for entry in self.faults.observe(direction, event.method, session.index if session else None):
            self._trigger(entry, session)
        if not self.faults.watching:
            self._observer.on_message = trace.written

    def _trigger(self, entry: Scheduled, session: SimSession | None) -> None:
        fault = entry.fault
        if not is_action(fault):
            if isinstance(fault, Stall):
                self._arm_stall(entry, session)
            else:
                self.faults.arm(entry)
            return
        entry.state = "done"
        at = entry.at
        if isinstance(fault, Crash):
            self._crash(fault, at)
        elif isinstance(fault, Disconnect):
            self._disconnect(fault, at)
        elif isinstance(fault, Hang):
            self._hang(fault, at)
        elif isinstance(fault, MalformedLine):
            self._record_fault(fault, None, at=at)
            self._background(self.conn.send_raw, fault.line.encode() + b"\n")
        elif isinstance(fault, ForeignSessionUpdate):
            foreign = fault.session_id or str(uuid.UUID(int=self.faults.rng.getrandbits(128), version=4))
            self._record_fault(fault, None, at=at, session_id=foreign)
            update = text_update(foreign, "agent_message_chunk", fault.text)
            self._background(self.conn.notify, "session/update", update)
        elif isinstance(fault, McpChildCrash):
            self._crash_children(fault, session, at)

    def _background(self, func: Callable[..., Awaitable[Any]], *args: Any) -> None:
        async def run() -> None:
            if not self.hung:
                with suppress(ConnectionClosed):
                    await func(*args)

        assert self._tg is not None
        self._tg.start_soon(run)

    def _targets(self, fault: Fault, session: SimSession | None) -> list[SimSession]:
        if fault.session is not None:
            target = self._by_index.get(fault.session)
            return [target] if target is not None and not target.closed else []
        if session is not None:
            return [session]
        return [s for s in self.sessions.values() if not s.closed]

    def _arm_stall(self, entry: Scheduled, session: SimSession | None) -> None:
        entry.state = "done"
        targets = self._targets(entry.fault, session)
        for target in targets:
            target.stall += entry.fault.seconds  # type: ignore[union-attr]
        if not targets:
            self._record_fault(entry.fault, None, at=entry.at, effect="no session to stall")

    def _take_stall(self, session: SimSession, turn: Turn, chunk: int) -> float:
        seconds, session.stall = session.stall, 0.0
        self.trace.record(
            "fault",
            session=session.id,
            detail={"kind": "stall", "seconds": seconds, "turn": turn.number, "chunk": chunk},
        )
        return seconds

    def _crash_children(self, fault: McpChildCrash, session: SimSession | None, at: float | None) -> None:
        killed = []
        for target in self._targets(fault, session):
            for name in target.mcp_servers:
                if fault.server in (None, name) and self.mcp.crash_child(target.id, name):
                    killed.append({"session": target.id, "server": name})
        self._record_fault(fault, session.id if session else None, at=at, killed=killed)

    def _crash(self, fault: Crash, at: float | None) -> None:
        if self.exit_reason is not None:
            return
        self._record_fault(fault, None, at=at)
        self.exit_reason = "crash"
        if not fault.orphan_mcp or self.exit_process is None:
            self.mcp.stop_all()  # in-process children die with the agent (stop_all is idempotent)
        self._record_exit("crash", fault.code)
        if self.exit_process is not None:
            self.exit_process(fault.code)  # the stdio agent: flush the trace, os._exit
        if self._tg is not None:
            # Every agent task is cancelled at its next checkpoint, before it can write again; the
            # connection closes both streams as it unwinds, in the same virtual instant.
            self._tg.cancel_scope.cancel()

    def _disconnect(self, fault: Disconnect, at: float | None) -> None:
        if self.exit_reason is not None:
            return
        self._record_fault(fault, None, at=at)
        self.exit_reason = "disconnect"
        self.mcp.stop_all()
        self._record_exit("disconnect", 0)
        if self._tg is not None:
            self._tg.cancel_scope.cancel()

    def _hang(self, fault: Hang, at: float | None) -> None:
        self._record_fault(fault, None, at=at)
        self.hung = True
        for session in self.sessions.values():
            session.cancel()  # turns stop where they are and never answer (see _finish_turn)

    def _record_fault(self, fault: Fault, sid: str | None, *, at: float | None = None, **effect: Any) -> None:
        self.trace.record("fault", session=sid, detail={**fault.describe(at), **effect})

    def _record_behind(self, session: SimSession, turn: Turn, effect: str, *, shown_turn: int | None) -> None:
        detail: dict[str, Any] = {"kind": "one_turn_behind", "turn": turn.number, "effect": effect}
        if shown_turn is not None:
            detail["shown_turn"] = shown_turn
        self.trace.record("fault", session=session.id, detail=detail)

    def _record_exit(self, reason: str, code: int) -> None:
        self.trace.record("exit", detail={"reason": reason, "code": code})
