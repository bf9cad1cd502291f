"""The turns' lifecycle: a prompt's queue opened, the prompt sent, answered, timed out or cancelled.

``TurnLifecycle`` holds every turn hazard in its own method (a subclass changes one):

1. start (``start``): the turn's queue exists, as the session's current turn (``_register_turn``),
   before the prompt can be written, and the session's interrupted mark is cleared
   (``_reset_interrupt``);
2. wait until the prompt can be sent (``_wait_until_sendable``): the agent is up, the session
   restored after a reconnect, and the session's previous prompt answered: a turn that timed out
   or whose cancel the agent never answered still has its prompt pending at the agent, and sending
   the next one first would mix the old turn's late updates into the new one;
3. mark the turn sent right before the write (``_mark_sent``: from then on it takes updates), arm
   its timers (``_watch_turn``: one generation each), write ``session/prompt``;
4. end the turn with the answer (stop reason, usage recorded once, ``_account_turn``), or fail it
   naming its session. A prompt the agent went away before it was even written
   (``WrittenPrompts`` tells) is not lost: it waits for the restarted agent and goes there;
5. cancel (``cancel``, ``_interrupt``): that session's turn only; a timeout
   (``_on_turn_timeout``) or a consumer that fell behind (``_on_buffer_full``) ends that turn alone
   and cancels it at the agent.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import suppress
from typing import Any

import anyio

from acp_sim.errors import AcpSimError, ConnectionClosed, RemoteError
from acp_sim.orchestrator.accounting import TokenLedger, add_into, usage_counts
from acp_sim.orchestrator.routing import SessionRegistry
from acp_sim.orchestrator.session import (
    Prompt,
    Session,
    SessionClosed,
    SessionError,
    TurnInProgress,
    TurnStream,
)
from acp_sim.orchestrator.supervisor import AgentSupervisor


async def wait_any(*events: anyio.Event) -> None:
    """Until one of the events is set (only used off the hot path)."""
    if any(event.is_set() for event in events):
        return
    async with anyio.create_task_group() as tg:

        async def wait(event: anyio.Event) -> None:
            await event.wait()
            tg.cancel_scope.cancel()

        for event in events:
            tg.start_soon(wait, event)


def prompt_blocks(prompt: Prompt) -> list[dict[str, Any]]:
    if isinstance(prompt, str):
        return [{"type": "text", "text": prompt}]
    return list(prompt)


class WrittenPrompts:
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


class TurnLifecycle:
    """Every turn of every session, from its queue to its end: the turn hazards' methods.

    ``Orchestrator.start_turn`` and ``Orchestrator.cancel`` are this class's ``start`` and
    ``cancel``. A subclass changes one hazard by overriding its method and is named by the
    orchestrator's ``turns_class`` (the seeded-bug catalog does).

    It is handed the supervisor (is the agent up? the connection), the registry (the sessions), a
    task spawner, the ledger, ``is_running`` and the connection's observer; never the orchestrator.
    """

    def __init__(
        self,
        agent: AgentSupervisor,
        registry: SessionRegistry,
        ledger: TokenLedger,
        *,
        spawn: Callable[..., None],
        is_running: Callable[[], bool],
        turn_class: type[TurnStream] = TurnStream,
        turn_timeout: float = math.inf,
        idle_timeout: float = math.inf,
        max_buffered: int,
        cancel_grace: float,
        written: WrittenPrompts | None = None,
    ) -> None:
        self.agent = agent
        self.registry = registry
        self.ledger = ledger
        self._spawn = spawn
        self._is_running = is_running
        self.turn_class = turn_class
        self.turn_timeout = turn_timeout
        self.idle_timeout = idle_timeout
        self.max_buffered = max_buffered
        self.cancel_grace = cancel_grace
        self._timed = turn_timeout < math.inf or idle_timeout < math.inf
        self.written = written or WrittenPrompts()
        """Which prompts were written: the connection's observer (the owner hands the same object to
        the supervisor, which gives it to each connection)."""
        self.lost_turns: list[str] = []
        """Sessions whose turn failed on a connection that went away before its loss was handled
        (the owner's ``_on_agent_lost`` takes them for the ``Restart`` record)."""

    # -- start -----------------------------------------------------------------------------------

    def start(self, session: Session, prompt: Prompt, *, warmup: bool = False) -> TurnStream:
        """Open the turn's queue, then send the prompt (in that order: see ``TurnStream``)."""
        self._check_can_prompt(session)
        session.generation += 1
        now = anyio.current_time()
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
        if self.agent.given_up is not None:
            raise self.agent.given_up
        if not self._is_running():
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

    # -- send and answer ---------------------------------------------------------------------------

    async def _run_prompt(self, turn: TurnStream, prompt: Prompt) -> None:
        session = turn.session
        blocks = prompt_blocks(prompt)
        agent = self.agent
        while True:
            try:
                await self._wait_until_sendable(turn)
            except AcpSimError as exc:
                turn.fail(str(exc))
                return
            if turn.done:  # cancelled or closed while it waited
                return
            conn = agent.conn
            if conn is None:  # stopped before the first instance came up
                turn.fail("the orchestrator is not running")
                return
            params = {"sessionId": session.id, "prompt": blocks}
            settled = session._prompt_settled = anyio.Event()
            self.written.expect(params, turn)
            self._mark_sent(turn)
            if self._timed and turn.epoch_sends == 1:
                self._spawn(self._watch_turn, turn)
            try:
                result = await conn.request("session/prompt", params)
            except RemoteError as exc:
                detail = f" ({exc.data})" if exc.data is not None else ""
                turn.fail(f"the agent answered session/prompt with error {exc.code} {exc.message!r}{detail}")
            except ConnectionClosed as exc:
                if not self.written.forget(params) and not turn.done:
                    # The agent went away before the prompt was written: nothing of this turn
                    # happened there, so it goes to the restarted agent instead.
                    self._unmark_sent(turn)
                    continue
                if turn.fail(agent.lost_message(exc)):
                    self.lost_turns.append(session.label)
            else:
                self._complete_turn(turn, result if isinstance(result, dict) else {})
            finally:
                self.written.forget(params)
                settled.set()
            return

    def _mark_sent(self, turn: TurnStream) -> None:
        """Hazard prevented (first chunk dropped): called right before the prompt is written, so
        the turn takes updates from the instant the agent can answer; also records where the
        prompt went (agent instance, agent session id, the agent's turn number)."""
        turn.epoch_sends += 1
        turn.accepting = True
        turn.sent_at = turn.last_activity = anyio.current_time()
        session = turn.session
        turn.epoch = self.agent.epoch
        turn.agent_session_id = session.id
        session.agent_turns += 1
        turn.wire_turn = session.agent_turns

    def _unmark_sent(self, turn: TurnStream) -> None:
        turn.accepting = False
        turn.session.agent_turns -= 1

    async def _wait_until_sendable(self, turn: TurnStream) -> None:
        """The agent is up, the session restored, and its previous prompt answered.

        A turn that timed out or whose cancel the agent never answered still has its prompt
        pending at the agent; sending the next prompt before that one settles would mix the old
        turn's late updates into the new one. It is awaited for ``cancel_grace`` seconds, then the
        session is reported wedged.
        """
        session = turn.session
        agent = self.agent
        while not turn.done:
            if agent.given_up is not None:
                raise agent.given_up
            if agent.stopping:
                raise AcpSimError("the orchestrator is closing")
            conn = agent.conn
            if conn is not None and conn.close_error is not None and not agent.lost.is_set():
                # The agent is gone but its loss is not handled yet: the prompt would go nowhere.
                await wait_any(agent.lost, turn.finished)
                continue
            if not agent.ready.is_set():
                await wait_any(agent.ready, turn.finished)
                continue
            if not session.ready.is_set():
                await wait_any(session.ready, turn.finished)
                continue
            if session.broken is not None:
                raise session.broken
            previous = session._prompt_settled
            if previous is not None and not previous.is_set():
                with anyio.move_on_after(self.cancel_grace):
                    await wait_any(previous, turn.finished)
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
        elif looks_one_turn_behind(turn, usage):
            # Claude Code adapter 0.23.1: after a cancel, the next prompt answers at once with
            # zero usage while the real turn runs on; the session then stays one turn behind.
            turn.note = (
                "suspect: ended at once with no update and zero usage right after a cancelled "
                "turn (the one-turn-behind defect of claude-agent-acp 0.23.1); later turns of this "
                "session may show the previous turn's answer"
            )
        self._account_turn(turn, usage)

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
        if turn.session.waiting_on_client:  # waiting on our own handler is not the agent's silence
            last = max(last, anyio.current_time())
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
            now = anyio.current_time()
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
            self._spawn(self.send_cancel, turn.session)

    def _on_buffer_full(self, turn: TurnStream) -> None:
        """Backpressure policy when a turn's queue holds ``max_buffered`` undelivered updates: that
        turn fails ("consumer fell behind") and is cancelled at the agent; the other sessions keep
        streaming. Waiting instead would stall the shared connection (see
        ``Orchestrator._backpressure``)."""
        turn.interrupted = True
        turn.fail(
            f"the consumer fell {self.max_buffered} updates behind (max_buffered); the turn was cancelled"
        )
        self._spawn(self.send_cancel, turn.session)

    # -- cancel ------------------------------------------------------------------------------------

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
        session.cancel_client_requests()
        if turn is not None and not turn.done and not turn.accepting:
            # Not sent yet (waiting for a restore): the agent knows nothing of it.
            turn.note = "cancelled before the prompt was sent"
            turn.finish("cancelled", None)
            turn.agent_stop_reason = None
            return
        await self.send_cancel(session)

    async def send_cancel(self, session: Session) -> None:
        conn = self.agent.conn
        if conn is None or session.restoring:
            return
        with suppress(ConnectionClosed):
            await conn.notify("session/cancel", {"sessionId": session.id})


def looks_one_turn_behind(turn: TurnStream, usage: dict[str, Any] | None) -> bool:
    empty = not turn.delivered + turn.buffered and not any(usage_counts(usage).values())
    return turn.after_cancel and turn.stop_reason == "end_turn" and empty
