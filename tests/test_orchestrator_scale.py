"""The floor of the property suite: 100 sessions, concurrent prompts, cancels and one agent crash.

Per session and turn, what the orchestrator delivered is compared with what the ground-truth trace
of the agent instance that ran the turn says it sent: no loss (a turn that ended normally got all
of it; a cancelled or crashed one a prefix), no duplicate, no reordering, no bleed (each update
carries its own session's id and turn, in its text too). Phantoms are recreated, never resumed,
and token accounting equals what every instance reported.
"""

from __future__ import annotations

import random

import anyio
import anyio.lowlevel
import pytest

from acp_sim.agent import InProcessAgent
from acp_sim.orchestrator import Orchestrator, Session, TurnFailed, TurnStream, Update

from .test_orchestrator_support import check_delivery, chunk_texts, make_profile, open_many

pytestmark = pytest.mark.anyio

SESSIONS = 100


async def run_round(
    sessions: list[Session],
    rng: random.Random,
    *,
    cancels: int,
    crash: InProcessAgent | None = None,
    crash_at: float = 0.0,
) -> list[tuple[TurnStream, list[Update]]]:
    """Prompt every session at once, consume each turn in its own task, cancel some, maybe crash."""
    turns = [s.prompt(f"round task for {s.label} #{rng.randrange(10**9)}") for s in sessions]
    delivered: dict[int, list[Update]] = {}

    async def consume(i: int, turn: TurnStream) -> None:
        got = delivered[i] = []
        try:
            async for update in turn:
                got.append(update)
                if rng.random() < 0.05:
                    await anyio.lowlevel.checkpoint()  # consumers of uneven speed
        except TurnFailed:
            pass

    async def cancel_later(session: Session, delay: float) -> None:
        await anyio.sleep(delay)
        await session.cancel()

    async def crash_later() -> None:
        await anyio.sleep(crash_at)
        assert crash is not None
        crash.crash()

    async with anyio.create_task_group() as tg:
        for i, turn in enumerate(turns):
            tg.start_soon(consume, i, turn)
        for session in rng.sample(sessions, cancels):
            tg.start_soon(cancel_later, session, rng.uniform(0.0, 1.5))
        if crash is not None:
            tg.start_soon(crash_later)
    return [(turn, delivered[i]) for i, turn in enumerate(turns)]


async def test_100_sessions_with_prompts_cancels_and_a_crash_match_the_ground_truth() -> None:
    rng = random.Random(2024)
    profile = make_profile(
        chunks=20,
        interval={"kind": "uniform", "low": 0.01, "high": 0.15},
        session_new={"kind": "uniform", "low": 0.5, "high": 2.0},
        empty_first_chunk=True,
        late_updates_after_cancel=2,
    )
    launcher = InProcessAgent(profile, seed=77)
    async with Orchestrator(launcher, max_buffered=1000) as orch:
        sessions = await open_many(orch, SESSIONS)
        prompted = sessions[:70]  # the other 30 stay phantoms until the crash
        phantoms = {s.label: s.id for s in sessions[70:]}
        results = await run_round(prompted, rng, cancels=10)
        results += await run_round(prompted, rng, cancels=10, crash=launcher, crash_at=0.8)
        assert len(launcher.agents) == 1 or orch.epoch == 1
        await anyio.sleep(5)  # restored by now
        results += await run_round(sessions, rng, cancels=15)
        results += await run_round(sessions, rng, cancels=5)
    assert len(launcher.agents) == 2
    assert orch.epoch == 1

    outcomes = {"end_turn": 0, "cancelled": 0, "failed": 0}
    texts: list[str] = []
    for turn, delivered in results:
        check_delivery(launcher, turn, delivered)
        outcomes["failed" if turn.error else str(turn.stop_reason)] += 1
        for text in chunk_texts(delivered):
            assert text.startswith(f"[{turn.agent_session_id[:8]} t{turn.wire_turn} c")  # type: ignore[index]
            texts.append(text)
        if turn.error is not None:
            assert turn.session.label in str(turn.error)
            assert "went away" in str(turn.error)
    assert len(texts) == len(set(texts)), "a chunk was delivered twice"
    assert outcomes["end_turn"] > 200
    assert outcomes["cancelled"] >= 30
    assert outcomes["failed"] > 20

    second = launcher.agents[1]
    resumed = {
        e.session
        for e in second.trace.events
        if e.kind == "recv" and e.method in ("session/resume", "session/load")
    }
    assert resumed.isdisjoint(phantoms.values())  # P8: phantoms never resumed
    for s in sessions:
        assert s.restores == (["new"] if s.label in phantoms else ["resume"])
    assert {s.label for s in sessions if s.id != s.agent_ids[0]} == set(phantoms)
    assert orch.unrouted.unknown == []
    assert orch.unrouted.malformed == []

    reported = sum(
        (e.message["result"].get("usage") or {}).get("totalTokens", 0)  # type: ignore[index]
        for agent in launcher.agents
        for e in agent.trace.events
        if e.kind == "send" and e.method == "session/prompt" and e.message and "result" in e.message
    )
    assert orch.usage["totalTokens"] == reported > 0
