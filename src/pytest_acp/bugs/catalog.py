"""Eleven broken bridges: the reference orchestrator, each with one classic bug in one hazard method.

Every class overrides the one method whose docstring names the hazard, the way the bug is usually
written in real clients (see ``shared/reference/known-client-bugs.md`` in the project notes for
where each was seen): a method of ``acp_sim.orchestrator.Orchestrator`` itself, or of one of its
parts (``TurnLifecycle``, ``SessionRestorer``, ``Session``), then named by the orchestrator's
class attribute for that part (``turns_class``, ``restorer_class``, ``session_class``).
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any

import anyio

from acp_sim.orchestrator import Orchestrator, Session
from acp_sim.orchestrator.accounting import add_into
from acp_sim.orchestrator.reconnect import RestoreMethod, SessionRestorer
from acp_sim.orchestrator.session import TurnStream
from acp_sim.orchestrator.turns import TurnLifecycle
from pytest_acp.reference import make_bridge


class _LateListener(TurnLifecycle):
    def _mark_sent(self, turn: TurnStream) -> None:
        super()._mark_sent(turn)
        turn.accepting = False  # the bug: not listening yet

        async def register_later() -> None:
            await anyio.sleep(0.001)
            if not turn.done:
                turn.accepting = True

        self._spawn(register_later)


class FirstChunkDropped(Orchestrator):
    """Registers the turn's continuation after the prompt is sent (after one more await, say a log
    write): the agent's first chunk, written in the same tick as it reads the prompt, finds no turn
    and is dropped. Seen in getpaseo/paseo PR#3324, kotlin-sdk#37, openclaw/acpx#477."""

    turns_class = _LateListener


class SharedContinuation(Orchestrator):
    """One continuation for the whole connection: every update goes to the turn started last,
    whatever its ``sessionId`` (zed#54858; codex-acp PR#123 broadcast to every handler)."""

    def _route_update(self, session: Session, update: dict[str, Any]) -> None:
        running = [s.turn for s in self.registry.live() if s.turn is not None and s.turn.accepting]
        target = max(running, key=lambda t: t.created_at).session if running else session
        super()._route_update(target, update)


class _OneTimerSlot(TurnLifecycle):
    async def _watch_turn(self, turn: TurnStream) -> None:
        self._latest_turn = turn  # the bug: one slot for every session's turn
        start = turn.sent_at if turn.sent_at is not None else turn.created_at
        await anyio.sleep_until(start + self.turn_timeout)
        victim = self._latest_turn
        if not victim.done:
            self._on_turn_timeout(victim, "turn", self.turn_timeout)


class GlobalTimeout(Orchestrator):
    """The turn timer reads its turn from a slot shared by the whole connection: a timer armed by one
    turn ends whichever turn was started last when it fires, in any session (a stale timer)."""

    turns_class = _OneTimerSlot


class _InterruptEveryone(TurnLifecycle):
    async def _interrupt(self, session: Session) -> None:
        for other in self.registry.live():
            if other is session or (other.turn is not None and not other.turn.done):
                await super()._interrupt(other)


class CancelAll(Orchestrator):
    """The interrupt is global: cancelling one session sends ``session/cancel`` for every session
    with a running turn."""

    turns_class = _InterruptEveryone


class _FlagNeverReset(TurnLifecycle):
    def _reset_interrupt(self, session: Session) -> None:
        pass


class StickyInterrupt(Orchestrator):
    """The interrupted flag is set by a cancel and never reset: every later turn of that session
    drops its updates and ends ``cancelled``."""

    turns_class = _FlagNeverReset


class PoolIgnoresCwd(Orchestrator):
    """A cwd change does not invalidate the warm sessions made for it: the next conversation opened
    there runs on a session prepared before the change."""

    async def _invalidate_warm(self, cwd: str) -> None:
        pass


class _ResumesEverything(SessionRestorer):
    def _restore_method(self, session: Session) -> RestoreMethod:
        method = super()._restore_method(session)
        if method == "new" and self._session_capability("resume"):
            return "resume"
        return method


class PhantomResumed(Orchestrator):
    """After a reconnect every session is resumed, including phantoms that never had a turn (they
    left nothing on the agent's disk: claude-agent-acp PR#363, openclaw/acpx#121)."""

    restorer_class = _ResumesEverything


class McpLeakOnClose(Orchestrator):
    """Closing forgets the session locally but never sends ``session/close``: the agent keeps the
    session's process and MCP servers until it exits (claude-agent-acp#1011, openclaw#44790)."""

    async def _close_at_agent(self, session: Session) -> None:
        pass


class _ReAddsUsage(SessionRestorer):
    def _on_restored(self, session: Session, method: str) -> None:
        super()._on_restored(session, method)
        add_into(session.usage, dict(session.usage))


class TokensDoubleCounted(Orchestrator):
    """After a reconnect the restored session re-adds the usage it had, so every token spent before
    a crash is counted twice."""

    restorer_class = _ReAddsUsage


class ReplayingSession(Session):
    """Hands the history ``session/load`` replays to the session's pending turn, as if it were new."""

    def drop_replayed(self, raw: dict[str, Any]) -> None:
        turn = self.turn
        if turn is not None and not turn.done:
            turn.push(raw, 0.0)


class DuplicatedAfterReconnect(Orchestrator):
    """Restores with ``session/load`` and delivers the history it replays to the prompt waiting for
    the restore: everything said before the crash is shown a second time."""

    session_class = ReplayingSession


class SlowSessionStallsOthers(Orchestrator):
    """A bounded queue with a blocking put in the connection's reader: one caller that reads slowly
    holds up every other session on the connection."""

    def _backpressure(self, session: Session) -> Awaitable[None] | None:
        turn = session.turn
        if turn is None or turn.buffered < 1:
            return None

        async def wait_for_room() -> None:  # a queue of one slot: poll until the reader took it
            # The bug as people write it: a polling put.
            while turn.buffered >= 1 and not turn.done:  # noqa: ASYNC110
                await anyio.sleep(0.05)

        return wait_for_room()


@dataclass(frozen=True)
class SeededBug:
    """One catalog entry: the broken orchestrator, how it is built, and what should catch it."""

    name: str
    orchestrator: type[Orchestrator]
    catches: tuple[str, ...]
    """The property that names this bug class first; the others are its usual side effects (a
    sticky interrupt also drops the next turn's chunks, P1/P2, and starves its idle timer, P4)."""
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def summary(self) -> str:
        return (self.orchestrator.__doc__ or "").split("\n\n")[0].replace("\n", " ").replace("    ", " ")

    @property
    def bridge(self) -> Any:
        return make_bridge(self.orchestrator, **self.options)


CATALOG: dict[str, SeededBug] = {
    bug.name: bug
    for bug in (
        SeededBug("first_chunk_dropped", FirstChunkDropped, ("P1",)),
        # One turn gets another's chunks (P3) while that one loses them, its first included (P1, P2).
        SeededBug("shared_continuation", SharedContinuation, ("P3", "P1", "P2")),
        SeededBug("global_timeout", GlobalTimeout, ("P4",)),
        SeededBug("cancel_all", CancelAll, ("P5",)),
        SeededBug("sticky_interrupt", StickyInterrupt, ("P5", "P1", "P2", "P4")),
        SeededBug("pool_ignores_cwd", PoolIgnoresCwd, ("P7",)),
        SeededBug("phantom_resumed", PhantomResumed, ("P8",)),
        SeededBug("mcp_leak_on_close", McpLeakOnClose, ("P6",)),
        SeededBug("tokens_double_counted", TokensDoubleCounted, ("P9",)),
        SeededBug("duplicated_after_reconnect", DuplicatedAfterReconnect, ("P2",), {"restore_with": "load"}),
        # Stalled sessions get their chunks late (P3); their idle timers fire on an agent that is
        # talking (P4); chunks still stuck in the reader when a turn ends are lost (P1, P2); a
        # response never read leaves that turn's tokens out of the key's running total (P9).
        SeededBug("slow_session_stalls_others", SlowSessionStallsOthers, ("P3", "P4", "P2", "P1", "P9")),
    )
}
