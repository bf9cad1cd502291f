"""Turns: first chunk, routing, generation-scoped timers, scoped cancel, backpressure, errors.

Each hazard is tested against the in-process simulated agent on virtual time (both backends),
and checked against the agent's ground-truth trace. Where a hazard's handling is one overridable
method, a subclass that breaks it shows that the test can fail.
"""

from __future__ import annotations

import math
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from acp_sim.agent import InProcessAgent
from acp_sim.errors import AcpSimError
from acp_sim.orchestrator import (
    Orchestrator,
    Session,
    SessionClosed,
    TurnFailed,
    TurnInProgress,
    TurnLifecycle,
    TurnStream,
    Update,
)
from acp_sim.orchestrator.session import SessionOps

from .test_orchestrator_support import check_delivery, chunk_texts, make_profile, open_many, sent_updates

pytestmark = pytest.mark.anyio


# -- 1. pending queue / first chunk ------------------------------------------------------------------


async def test_first_chunk_sent_in_the_same_tick_as_the_prompt_is_delivered_to_a_late_consumer() -> None:
    launcher = InProcessAgent(make_profile(first=0.0, empty_first_chunk=True, chunks=3), seed=1)
    async with Orchestrator(launcher) as orch:
        session = await orch.open_session(cwd="/w")
        turn = session.prompt("go")
        await anyio.sleep(10)  # the whole turn is over before anyone iterates
        assert turn.done
        assert turn.buffered == len(sent_updates(launcher.current, session.id, 1))
        delivered = await turn.collect()
    check_delivery(launcher, turn, delivered)
    assert delivered[0].text == ""  # Claude Code's empty first chunk, written with the prompt's tick
    assert len(chunk_texts(delivered)) == 3


class _RegistersLate(TurnLifecycle):
    def _register_turn(self, session: Session, turn: TurnStream) -> None:
        async def later() -> None:
            while not turn.accepting:
                await anyio.lowlevel.checkpoint()
            await anyio.sleep(0.001)  # some bookkeeping awaited after the write
            session.turn = turn

        self._spawn(later)

    def _mark_sent(self, turn: TurnStream) -> None:
        super()._mark_sent(turn)
        turn.session.turn = None


class RegistersAfterThePromptIsOut(Orchestrator):
    """The classic bug: the turn's continuation is registered once the prompt has been written."""

    turns_class = _RegistersLate


async def test_a_turn_registered_after_the_prompt_loses_the_first_chunk() -> None:
    launcher = InProcessAgent(make_profile(first=0.0, chunks=3), seed=1)
    async with RegistersAfterThePromptIsOut(launcher) as orch:
        session = await orch.open_session(cwd="/w")
        turn = session.prompt("go")
        delivered = await turn.collect()
    with pytest.raises(AssertionError):
        check_delivery(launcher, turn, delivered)
    assert session.out_of_turn_count >= 1


# -- 2. routing ----------------------------------------------------------------------------------------


async def test_interleaved_sessions_each_get_exactly_their_own_updates() -> None:
    profile = make_profile(
        chunks=20, interval={"kind": "uniform", "low": 0.001, "high": 0.01}, thought_chunks=2
    )
    launcher = InProcessAgent(profile, seed=4)
    async with Orchestrator(launcher) as orch:
        sessions = await open_many(orch, 8)
        turns = [s.prompt(f"task {s.label}") for s in sessions]
        delivered = {}
        async with anyio.create_task_group() as tg:

            async def consume(turn: TurnStream) -> None:
                delivered[turn.session.label] = await turn.collect()

            for turn in turns:
                tg.start_soon(consume, turn)
    for turn in turns:
        check_delivery(launcher, turn, delivered[turn.session.label])
        assert all(
            t.startswith(f"[{turn.agent_session_id[:8]} t1 ")
            for t in chunk_texts(delivered[turn.session.label])
        )  # type: ignore[index]
    assert orch.unrouted.count == 0


async def test_updates_for_unknown_sessions_are_counted_and_never_delivered() -> None:
    profile = make_profile(
        chunks=4,
        agent={
            "faults": [
                {
                    "kind": "foreign_session_update",
                    "after": 2,
                    "direction": "send",
                    "method": "session/update",
                }
            ]
        },
    )
    launcher = InProcessAgent(profile, seed=2)
    async with Orchestrator(launcher) as orch:
        session = await orch.open_session(cwd="/w")
        turn = session.prompt("go")
        delivered = await turn.collect()
    check_delivery(launcher, turn, delivered)
    assert len(orch.unrouted.unknown) == 1
    assert "[foreign]" in orch.unrouted.unknown[0]["update"]["content"]["text"]


async def test_late_updates_for_a_closed_session_are_counted_as_closed() -> None:
    launcher = InProcessAgent(make_profile(chunks=10, interval=0.1, late_updates_after_cancel=3), seed=2)
    async with Orchestrator(launcher) as orch:
        session, other = await open_many(orch, 2)
        turn, other_turn = session.prompt("go"), other.prompt("go")
        await anyio.sleep(0.35)
        await session.close()
        assert isinstance(turn.error, TurnFailed)
        assert "closed" in str(turn.error)
        other_delivered = await other_turn.collect()
        await anyio.sleep(1)
    check_delivery(launcher, other_turn, other_delivered)
    late = [p for p in orch.unrouted.closed if p["sessionId"] == session.id]
    assert len(late) == 3
    with pytest.raises(SessionClosed, match=session.label):
        session.prompt("again")


async def test_an_update_queued_before_the_session_was_renamed_keeps_the_id_it_was_routed_under() -> None:
    # The queue keeps raw updates and makes each ``Update`` when the consumer takes it; a restore
    # that gives the session a new id in between must not relabel what was routed before it.
    def unused(*args: Any) -> Any:
        raise AssertionError("not called")

    ops = SessionOps(start_turn=unused, cancel=unused, close=unused, on_buffer_full=unused, blocking=unused)
    session = Session(ops, "old-id", "/w", None, [])
    turn = TurnStream(session, 1, max_buffered=10, created_at=0.0)
    first, second = {"sessionUpdate": "agent_message_chunk"}, {"sessionUpdate": "usage_update"}
    turn.push(first, 0.0)
    session.id = "new-id"
    turn.push(second, 0.0)
    turn.finish("end_turn", None)
    assert await turn.collect() == [Update("old-id", 1, first), Update("new-id", 1, second)]


# -- 3. generation-scoped timers ------------------------------------------------------------------------


async def test_turn_timeout_ends_only_the_turn_that_armed_it_at_its_exact_deadline() -> None:
    slow = make_profile(chunks=5, interval=1.0)  # a turn takes 4 s
    launcher = InProcessAgent(slow, seed=1)
    async with Orchestrator(launcher, turn_timeout=3.0) as orch:
        session = await orch.open_session(cwd="/w")
        turn = session.prompt("long")
        with pytest.raises(TurnFailed, match=rf"turn 1 of session {session.label}.*turn timeout") as info:
            await turn.collect()
        assert turn.sent_at is not None
        assert anyio.current_time() - turn.sent_at == pytest.approx(3.0, abs=1e-6)
        assert info.value.session_id == turn.agent_session_id
    cancels = [e for e in launcher.current.trace.events if e.kind == "recv" and e.method == "session/cancel"]
    assert [e.session for e in cancels] == [turn.agent_session_id]


async def test_a_stale_timer_never_ends_a_later_turn() -> None:
    # Turn 1 ends at 2 s; turn 2 starts right after and ends at 4 s: past turn 1's 3 s deadline,
    # well inside its own.
    launcher = InProcessAgent(make_profile(chunks=5, interval=0.5), seed=1)
    async with Orchestrator(launcher, turn_timeout=3.0, idle_timeout=0.75) as orch:
        session = await orch.open_session(cwd="/w")
        for _ in range(3):
            turn = session.prompt("again")
            delivered = await turn.collect()
            assert turn.stop_reason == "end_turn"
            check_delivery(launcher, turn, delivered)


class _OneDeadlinePerSession(TurnLifecycle):
    def _turn_deadline(self, turn: TurnStream) -> tuple[float, str, float]:
        first = turn.session.__dict__.setdefault("first_sent", turn.sent_at)
        return first + self.turn_timeout, "turn", self.turn_timeout


class GlobalTimeout(Orchestrator):
    """The classic bug: one deadline per session, armed at its first turn, never re-armed."""

    turns_class = _OneDeadlinePerSession


async def test_a_global_timeout_is_caught_by_the_stale_timer_test() -> None:
    launcher = InProcessAgent(make_profile(chunks=5, interval=0.5), seed=1)
    async with GlobalTimeout(launcher, turn_timeout=3.0) as orch:
        session = await orch.open_session(cwd="/w")
        await session.prompt("one").collect()
        with pytest.raises(TurnFailed, match="turn timeout"):
            await session.prompt("two").collect()


async def test_idle_timeout_fires_after_silence_and_leaves_other_sessions_alone() -> None:
    stall = {"kind": "stall", "seconds": 5.0, "session": 0, "after": 2}
    launcher = InProcessAgent(make_profile(chunks=6, interval=0.2, agent={"faults": [stall]}), seed=1)
    async with Orchestrator(launcher, idle_timeout=1.0) as orch:
        stalled, fine = await open_many(orch, 2)
        t_stalled, t_fine = stalled.prompt("a"), fine.prompt("b")
        with pytest.raises(TurnFailed, match=rf"session {stalled.label}.*idle timeout"):
            await t_stalled.collect()
        assert anyio.current_time() == pytest.approx(t_stalled.last_activity + 1.0, abs=1e-6)
        delivered = await t_fine.collect()
        assert t_fine.stop_reason == "end_turn"
    check_delivery(launcher, t_fine, delivered)


async def test_a_turn_that_finishes_in_time_is_never_timed_out_even_when_the_limit_equals_its_length() -> (
    None
):
    launcher = InProcessAgent(make_profile(chunks=3, interval=1.0), seed=1)
    async with Orchestrator(launcher, turn_timeout=2.5, idle_timeout=1.5) as orch:
        session = await orch.open_session(cwd="/w")
        turn = session.prompt("x")
        await turn.collect()
        assert turn.stop_reason == "end_turn"
        await anyio.sleep(10)  # the watcher of the ended turn must not fire later
        assert turn.error is None


# -- 4. scoped interrupts ----------------------------------------------------------------------------------


async def test_cancel_is_scoped_drops_late_updates_and_the_next_turn_works() -> None:
    launcher = InProcessAgent(make_profile(chunks=10, interval=0.1, late_updates_after_cancel=3), seed=6)
    async with Orchestrator(launcher) as orch:
        a, b, c = await open_many(orch, 3)
        turns = [s.prompt("work") for s in (a, b, c)]
        await anyio.sleep(0.45)
        await b.cancel()
        assert turns[1].done
        assert turns[1].stop_reason == "cancelled"
        assert turns[1].dropped_late == 3
        delivered = [await t.collect() for t in turns]
        again = b.prompt("next")
        delivered_again = await again.collect()
    trace = launcher.current.trace
    cancels = [e.session for e in trace.events if e.kind == "recv" and e.method == "session/cancel"]
    assert cancels == [b.id]
    for turn, got in zip(turns, delivered, strict=True):
        check_delivery(launcher, turn, got)
    assert [t.stop_reason for t in turns] == ["end_turn", "cancelled", "end_turn"]
    assert len(delivered[1]) == 5  # chunks at 0 .. 0.4 s; the 3 late ones were dropped
    assert len(sent_updates(launcher.current, b.id, 1)) > 5
    assert again.stop_reason == "end_turn"
    assert not again.interrupted
    check_delivery(launcher, again, delivered_again)
    assert len(chunk_texts(delivered_again)) == 10


class _InterruptsEverySession(TurnLifecycle):
    async def _interrupt(self, session: Session) -> None:
        for other in [s for s in self.registry.live() if not s.warm]:
            await super()._interrupt(other)


class InterruptsEverySession(Orchestrator):
    turns_class = _InterruptsEverySession


class _NeverResetsTheInterruptedFlag(TurnLifecycle):
    def _reset_interrupt(self, session: Session) -> None:
        pass


class NeverResetsTheInterruptedFlag(Orchestrator):
    turns_class = _NeverResetsTheInterruptedFlag


async def test_the_cancel_test_catches_a_global_interrupt_and_a_flag_never_reset() -> None:
    launcher = InProcessAgent(make_profile(chunks=10, interval=0.1), seed=6)
    async with InterruptsEverySession(launcher) as orch:
        a, b = await open_many(orch, 2)
        ta, tb = a.prompt("x"), b.prompt("y")
        await anyio.sleep(0.25)
        await b.cancel()
        await ta.collect()
        assert tb.stop_reason == "cancelled"
        assert ta.stop_reason == "cancelled"  # would be end_turn with a scoped interrupt
    launcher = InProcessAgent(make_profile(chunks=10, interval=0.1), seed=6)
    async with NeverResetsTheInterruptedFlag(launcher) as orch:
        (a,) = await open_many(orch, 1)
        ta = a.prompt("x")
        await anyio.sleep(0.25)
        await a.cancel()
        again = await a.prompt("y").collect()
        assert again == []  # every update of the next turn dropped


async def test_cancel_between_turns_and_twice_is_harmless() -> None:
    launcher = InProcessAgent(make_profile(chunks=3), seed=1)
    async with Orchestrator(launcher) as orch:
        session = await orch.open_session(cwd="/w")
        await session.cancel()
        turn = session.prompt("x")
        await anyio.sleep(0.06)
        await session.cancel()
        await session.cancel()
        assert await turn.result() == "cancelled"
        assert (await session.prompt("y").result()) == "end_turn"
    cancels = [e for e in launcher.current.trace.events if e.kind == "recv" and e.method == "session/cancel"]
    assert len(cancels) == 1


async def test_an_agent_that_ignores_cancel_still_ends_the_turn_cancelled_for_the_caller() -> None:
    profile = make_profile(chunks=10, interval=0.1, agent={"faults": [{"kind": "ignore_cancel"}]})
    launcher = InProcessAgent(profile, seed=1)
    async with Orchestrator(launcher) as orch:
        session = await orch.open_session(cwd="/w")
        turn = session.prompt("x")
        await anyio.sleep(0.25)
        await session.cancel()
        assert turn.stop_reason == "cancelled"
        assert turn.agent_stop_reason == "end_turn"
        delivered = await turn.collect()
    check_delivery(launcher, turn, delivered)
    assert len(delivered) == 3  # chunks at 0, 0.1, 0.2 s
    assert turn.dropped_late == len(sent_updates(launcher.current, session.id, 1)) - 3 > 0


async def test_a_cancel_the_agent_never_answers_ends_locally_and_the_next_prompt_reports_the_wedge() -> None:
    profile = make_profile(
        chunks=10, interval=0.1, agent={"faults": [{"kind": "hang", "method": "session/prompt", "after": 1}]}
    )
    launcher = InProcessAgent(profile, seed=1)
    async with Orchestrator(launcher, cancel_grace=2.0) as orch:
        session = await orch.open_session(cwd="/w")
        turn = session.prompt("x")
        await anyio.sleep(1.5)  # the turn streamed everything; its response never comes
        started = anyio.current_time()
        await session.cancel()
        assert anyio.current_time() - started == pytest.approx(2.0, abs=1e-6)
        assert turn.stop_reason == "cancelled"
        assert turn.agent_stop_reason is None
        assert turn.note
        with pytest.raises(TurnFailed, match=rf"{session.label}.*wedged"):
            await session.prompt("y").result()


# -- 11. backpressure --------------------------------------------------------------------------------------


async def test_a_slow_consumer_fails_its_own_turn_and_never_delays_another_session() -> None:
    launcher = InProcessAgent(make_profile(chunks=40, interval=0.01), seed=1)
    async with Orchestrator(launcher, max_buffered=10) as orch:
        slow, fast = await open_many(orch, 2)
        t_slow, t_fast = slow.prompt("a"), fast.prompt("b")
        agent = launcher.current
        times: list[float] = []
        delivered: list[Update] = []
        async for update in t_fast:
            delivered.append(update)
            times.append(agent.clock.now())
        with pytest.raises(TurnFailed, match=rf"session {slow.label}.*fell 10 updates behind"):
            await t_slow.result()
    check_delivery(launcher, t_fast, delivered)
    sent_at = [e.t for e in agent.trace.updates(fast.id, 1)]
    assert times == sent_at  # each update reached the consumer at the virtual instant it was sent
    cancels = [e.session for e in agent.trace.events if e.kind == "recv" and e.method == "session/cancel"]
    assert cancels == [slow.id]


class StallsOnASlowConsumer(Orchestrator):
    def _backpressure(self, session: Session) -> Any:
        turn = session.turn
        if turn is None or turn.buffered < 5:
            return None

        async def wait() -> None:
            with anyio.move_on_after(0.5):  # "give the consumer a moment"
                while not turn.done and turn.buffered >= 5:  # noqa: ASYNC110 - the bug on purpose
                    await anyio.sleep(0.1)

        return wait()


async def test_the_backpressure_test_catches_a_reader_that_waits_for_a_consumer() -> None:
    launcher = InProcessAgent(make_profile(chunks=40, interval=0.01), seed=1)
    async with StallsOnASlowConsumer(launcher, max_buffered=10) as orch:
        slow, fast = await open_many(orch, 2)
        slow.prompt("a")
        t_fast = fast.prompt("b")
        agent = launcher.current
        times = [agent.clock.now() async for _ in t_fast]
        await slow.cancel()
    assert times != [e.t for e in agent.trace.updates(fast.id, 1)]


# -- errors ---------------------------------------------------------------------------------------------


async def test_errors_name_the_session_and_a_second_prompt_is_refused() -> None:
    profile = make_profile(
        agent={"faults": [{"kind": "error_reply", "method": "session/prompt", "code": -32603}]}
    )
    launcher = InProcessAgent(profile, seed=1)
    async with Orchestrator(launcher) as orch:
        session = await orch.open_session(cwd="/w")
        turn = session.prompt("x")
        with pytest.raises(TurnInProgress, match=session.label):
            session.prompt("y")
        with pytest.raises(TurnFailed, match=rf"turn 1 of session {session.label} .*-32603"):
            await turn.result()
        assert (await session.prompt("y").result()) == "end_turn"  # the session still works


async def test_session_new_refused_names_the_cwd() -> None:
    profile = make_profile(
        agent={"faults": [{"kind": "error_reply", "method": "session/new", "message": "nope"}]}
    )
    async with Orchestrator(InProcessAgent(profile, seed=1)) as orch:
        with pytest.raises(AcpSimError, match=r"session s1: the agent refused session/new for cwd /w.*nope"):
            await orch.open_session(cwd="/w")
        assert (await orch.open_session(cwd="/w")).label == "s2"


async def test_the_callers_exception_is_not_wrapped_in_an_exception_group() -> None:
    class Boom(Exception):
        pass

    async def body() -> None:
        async with Orchestrator(InProcessAgent(make_profile(chunks=50), seed=1)) as orch:
            session = await orch.open_session(cwd="/w")
            session.prompt("x")
            await anyio.sleep(0.1)
            raise Boom("mine")

    with pytest.raises(Boom) as info:
        await body()
    assert type(info.value) is Boom


async def test_a_turn_failed_by_closing_the_orchestrator_says_so() -> None:
    async with Orchestrator(InProcessAgent(make_profile(chunks=50), seed=1)) as orch:
        session = await orch.open_session(cwd="/w")
        turn = session.prompt("x")
        await anyio.sleep(0.1)
    with pytest.raises(TurnFailed, match="orchestrator was closed"):
        await turn.result()


async def test_updates_are_validated_only_on_demand() -> None:
    async with Orchestrator(InProcessAgent(make_profile(chunks=2), seed=1)) as orch:
        session = await orch.open_session(cwd="/w")
        updates = await session.prompt("x").collect()
    model = updates[0].model()
    assert model.session_update == "agent_message_chunk"
    assert model.content.text == updates[0].text


async def test_token_usage_equals_what_the_agent_reported() -> None:
    launcher = InProcessAgent(make_profile(chunks=4, interval=0.1), seed=3)
    async with Orchestrator(launcher) as orch:
        sessions = await open_many(orch, 3)
        turns = [s.prompt(f"prompt {i} " * (i + 1)) for i, s in enumerate(sessions)]
        await anyio.sleep(0.15)
        await sessions[0].cancel()
        for t in turns:
            await t.result()
        await sessions[1].prompt("more").result()
    reported: dict[str, int] = {}
    for e in launcher.current.trace.events:
        if e.kind == "send" and e.method == "session/prompt" and e.message and "result" in e.message:
            usage = e.message["result"].get("usage") or {}
            reported[e.session] = reported.get(e.session, 0) + usage.get("totalTokens", 0)  # type: ignore[index]
    assert sum(reported.values()) > 0
    assert orch.usage["totalTokens"] == sum(reported.values())
    for s in sessions:
        assert s.usage.get("totalTokens", 0) == reported.get(s.id, 0)
    assert sessions[0].usage.get("totalTokens", 0) == 0  # a cancelled turn reports no usage


def test_timeouts_default_to_none() -> None:
    orch = Orchestrator(InProcessAgent())
    assert orch.turn_timeout == math.inf
    assert orch.idle_timeout == math.inf


async def test_the_one_turn_behind_defect_is_flagged_on_the_turn_it_shows_in() -> None:
    profile = make_profile(chunks=6, interval=0.1, agent={"faults": [{"kind": "one_turn_behind"}]})
    launcher = InProcessAgent(profile, seed=1)
    async with Orchestrator(launcher) as orch:
        session = await orch.open_session(cwd="/w")
        turn = session.prompt("x")
        await anyio.sleep(0.25)
        await session.cancel()
        hollow = session.prompt("y")
        assert await hollow.collect() == []
        assert hollow.stop_reason == "end_turn"
        assert hollow.note is not None
        assert "one-turn-behind" in hollow.note
        healthy = session.prompt("z")
        await healthy.collect()
        assert healthy.note is None
    assert turn.note is None


async def test_a_malformed_line_mid_turn_is_reported_and_the_turn_goes_on() -> None:
    fault = {"kind": "malformed_line", "after": 3, "direction": "send", "method": "session/update"}
    launcher = InProcessAgent(make_profile(chunks=6, agent={"faults": [fault]}), seed=1)
    async with Orchestrator(launcher) as orch:
        session = await orch.open_session(cwd="/w")
        turn = session.prompt("x")
        delivered = await turn.collect()
        assert orch.link is not None
        assert len(orch.conn.protocol_errors) == 1
    check_delivery(launcher, turn, delivered)
    assert turn.stop_reason == "end_turn"
