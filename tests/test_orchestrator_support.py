"""Helpers for the orchestrator tests: profiles, concurrent opening, and the ground-truth check.

The check compares what a ``TurnStream`` delivered with what the agent's own trace says it sent
for that turn (the agent instance the prompt went to, the agent session id, the agent's turn
number), so loss, duplicates, reordering and bleed all show up as a difference.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import anyio
import pytest

from acp_sim.orchestrator import Orchestrator, Session, TurnStream, Update
from acp_sim.profile import AgentProfile, ModelProfile, TurnProfile

pytestmark = pytest.mark.anyio


def make_profile(
    *,
    chunks: int = 5,
    interval: float = 0.05,
    session_new: float = 1.0,
    first: float = 0.0,
    agent: dict[str, Any] | None = None,
    models: Sequence[str] = ("default",),
    **turn: Any,
) -> AgentProfile:
    """A profile with fixed latencies (exact virtual times in assertions); every model alike."""
    turn_profile = TurnProfile(chunk_count=chunks, chunk_interval=interval, first_chunk_delay=first, **turn)
    model = ModelProfile(session_new_cold=session_new, session_new_warm=session_new, turn=turn_profile)
    return AgentProfile(models=dict.fromkeys(models, model), default_model=models[0], **(agent or {}))


async def open_many(orch: Orchestrator, n: int, *, cwd: str = "/w", **kwargs: Any) -> list[Session]:
    """Open ``n`` sessions concurrently; returned in label order (s1, s2, ...)."""
    sessions: list[Session] = []

    async def one() -> None:
        sessions.append(await orch.open_session(cwd=cwd, **kwargs))

    async with anyio.create_task_group() as tg:
        for _ in range(n):
            tg.start_soon(one)
    return sorted(sessions, key=lambda s: int(s.label[1:]))


def sent_updates(agent: Any, session_id: str, turn: int) -> list[dict[str, Any]]:
    """The update objects the agent's trace says it sent for (session id, agent turn), in order."""
    return [e.message["params"]["update"] for e in agent.trace.updates(session_id, turn)]  # type: ignore[index]


def ground_truth(launcher: Any, turn: TurnStream) -> list[dict[str, Any]]:
    assert turn.agent_session_id is not None, f"{turn!r} was never sent"
    return sent_updates(launcher.agents[turn.epoch], turn.agent_session_id, turn.wire_turn)


def check_delivery(launcher: Any, turn: TurnStream, delivered: Sequence[Update]) -> None:
    """Delivered == sent for a turn that ended normally or failed; for a cancelled one, what was
    sent before the cancel (the late updates it dropped are counted in ``dropped_late``).

    Also no bleed: every delivered update carries this turn's session id and generation.
    """
    sent = ground_truth(launcher, turn)
    got = [u.raw for u in delivered]
    where = f"agent {turn.epoch}, {turn.agent_session_id}, t{turn.wire_turn}"
    label = f"{turn.session.label} turn {turn.generation} ({where})"
    assert all(
        u.session_id == turn.agent_session_id and u.generation == turn.generation for u in delivered
    ), label
    if turn.stop_reason == "cancelled":
        # Everything sent before the cancel is delivered; only the late updates after it are dropped,
        # and the turn counts each one it dropped.
        assert got == sent[: len(got)], f"{label}: delivered updates are not a prefix of what the agent sent"
        assert len(got) + turn.dropped_late == len(sent), (
            f"{label}: delivered {len(got)} + dropped late {turn.dropped_late} != sent {len(sent)}"
        )
    else:
        # A normal end, and a turn failed by a crash or an error reply alike: whatever the agent
        # managed to send before the end is delivered, all of it, in order.
        assert got == sent, f"{label}: delivered {len(got)} updates, the agent sent {len(sent)}"


def chunk_texts(updates: Sequence[Update]) -> list[str]:
    return [u.text for u in updates if u.kind == "agent_message_chunk" and u.text]  # type: ignore[misc]


async def test_check_delivery_catches_loss_duplicates_and_bleed() -> None:
    """The ground-truth check itself can fail: feed it wrong deliveries."""
    from acp_sim.agent import InProcessAgent

    launcher = InProcessAgent(make_profile(chunks=4), seed=3)
    async with Orchestrator(launcher) as orch:
        a, b = await open_many(orch, 2)
        ta, tb = a.prompt("x"), b.prompt("y")
        da, db = await ta.collect(), await tb.collect()
    check_delivery(launcher, ta, da)
    check_delivery(launcher, tb, db)
    for wrong in (da[1:], da + da[-1:], da[::-1]):
        with pytest.raises(AssertionError):
            check_delivery(launcher, ta, wrong)
    with pytest.raises(AssertionError):  # bleed: b's updates delivered as a's
        check_delivery(launcher, ta, db)
