"""The agent's one chunk timer (``acp_sim.agent.ticker``) and the pre-encoded chunk lines it writes.

The ticker must change nothing a turn did: same lines, byte for byte, as ``wire.encode``; chunks
of many sessions in due order; a chunk it cannot write without waiting written by the turn itself;
chunks due at once still let the client's messages in between (a cancel is not starved), and are
written a batch at a time, each read by the client before the next.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import anyio
import pytest

from acp_sim.agent import InProcessAgent, ticker
from acp_sim.agent.ticker import BATCH, ChunkStream, ChunkTicker, chunk_message
from acp_sim.clock import BACKENDS, run
from acp_sim.message_template import MessageTemplate
from acp_sim.orchestrator import Orchestrator
from acp_sim.profile import AgentProfile, ModelProfile, TurnProfile
from acp_sim.wire import encode

TEXTS = [
    "",
    "plain words ",
    'quotes " and \\ backslashes',
    "new\nline\ttab\r\x00\x1f control",
    "café naïve 日本語 🙂",
    "\u2028\u2029\x85 line breaks",
    "\ue000slot\ue000 the slot text itself",
]


@pytest.mark.parametrize("text", TEXTS)
def test_a_filled_template_is_byte_for_byte_the_encoded_message(text: str) -> None:
    template = MessageTemplate(chunk_message("sess-1", MessageTemplate.SLOT))
    assert template.fill(text) == encode(chunk_message("sess-1", text))


def test_a_text_utf8_cannot_hold_is_left_to_encode() -> None:
    template = MessageTemplate(chunk_message("sess-1", MessageTemplate.SLOT))
    assert template.fill("lone \ud800 surrogate") is None
    line = encode(chunk_message("sess-1", "lone \ud800 surrogate"))
    assert json.loads(line)["params"]["update"]["content"]["text"] == "lone \ud800 surrogate"


def test_a_template_needs_exactly_one_slot() -> None:
    with pytest.raises(ValueError, match="exactly one slot"):
        MessageTemplate({"a": "no slot"})
    with pytest.raises(ValueError, match="exactly one slot"):
        MessageTemplate({"a": MessageTemplate.SLOT, "b": MessageTemplate.SLOT})


def _profile(chunks: int, interval: float) -> AgentProfile:
    turn = TurnProfile(chunk_count=chunks, chunk_interval=interval, first_chunk_delay=0.5)
    return AgentProfile(
        models={"default": ModelProfile(session_new_cold=1.0, session_new_warm=1.0, turn=turn)}
    )


async def _lockstep(sessions: int, profile: AgentProfile) -> tuple[list[list[str]], str]:
    launcher = InProcessAgent(profile, seed=5)
    async with Orchestrator(launcher) as orch:
        opened = [await orch.open_session(cwd="/w") for _ in range(sessions)]
        turns = [s.prompt("go") for s in opened]
        texts = [[u.text or "" for u in await t.collect() if u.kind == "agent_message_chunk"] for t in turns]
    return texts, launcher.current.trace.to_jsonl()


def _indices(chunks: list[str]) -> list[int]:
    """The chunk numbers the tagged texts carry (``... c7]``), in the order delivered."""
    return [int(c.split(" c", 1)[1].split("]")[0]) for c in chunks]


@pytest.mark.parametrize("backend", BACKENDS)
def test_sessions_streaming_in_lockstep_each_get_their_chunks_in_order(backend: str) -> None:
    texts, trace = run(_lockstep, 30, _profile(20, 0.05), backend=backend)  # type: ignore[arg-type]
    for chunks in texts:
        assert len(chunks) == 20
        assert _indices(chunks) == list(range(20))
    assert trace == run(_lockstep, 30, _profile(20, 0.05), backend=backend)[1]  # type: ignore[arg-type]


@pytest.mark.parametrize("backend", BACKENDS)
def test_chunks_due_at_once_still_let_a_cancel_in(backend: str) -> None:
    """A zero chunk interval: each chunk is due as soon as the last is out. The turn still yields
    between chunks (as ``sleep(0)`` did), so the client's cancel ends it part way."""

    async def main() -> tuple[str, int]:
        async with Orchestrator(InProcessAgent(_profile(5000, 0.0), seed=1)) as orch:
            session = await orch.open_session(cwd="/w")
            turn = session.prompt("go")
            async with anyio.create_task_group() as tg:
                async for _ in turn:  # every chunk falls due at one virtual instant
                    if turn.delivered == 1:
                        tg.start_soon(session.cancel)
            return await turn.result(), turn.delivered

    stop, delivered = run(main, backend=backend)  # type: ignore[arg-type]
    assert stop == "cancelled"
    assert 0 < delivered < 5000


@pytest.mark.parametrize("backend", BACKENDS)
def test_more_sessions_in_lockstep_than_the_pipe_holds(backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """More chunks due at once than the in-memory pipe holds: the ticker hands the first that would
    wait to its turn, which writes it once the reader made room; nothing is lost or reordered.
    (Batches larger than the pipe, so the pipe fills as it would under a slow reader.)"""
    monkeypatch.setattr(ticker, "BATCH", 2000)
    texts, _ = run(_lockstep, 1100, _profile(3, 0.05), backend=backend)  # type: ignore[arg-type]
    assert all(len(chunks) == 3 for chunks in texts)
    assert all(_indices(chunks) == [0, 1, 2] for chunks in texts)


@pytest.mark.parametrize("backend", BACKENDS)
def test_chunks_due_at_once_are_written_a_batch_at_a_time(
    backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Four batches' worth of sessions with chunks due at one instant: the client reads and routes
    in between, not after the whole instant's chunks are out, and every chunk arrives once, in order.
    (The reader and the ticker wake together: on trio either may run first, so two batches can go
    out back to back.)"""
    order: list[str] = []
    emit, route = ChunkTicker._emit, Orchestrator._route_update

    def emitting(self: ChunkTicker, stream: ChunkStream, now: float) -> bool:
        order.append("written")
        return emit(self, stream, now)

    def routing(self: Orchestrator, session: Any, update: dict[str, Any]) -> None:
        if update.get("sessionUpdate") == "agent_message_chunk":
            order.append("routed")
        route(self, session, update)

    monkeypatch.setattr(ChunkTicker, "_emit", emitting)
    monkeypatch.setattr(Orchestrator, "_route_update", routing)
    sessions = 4 * BATCH
    texts, _ = run(_lockstep, sessions, _profile(3, 0.05), backend=backend)  # type: ignore[arg-type]
    assert all(_indices(chunks) == [0, 1, 2] for chunks in texts)
    assert order.count("routed") == 3 * sessions
    assert order.count("written") >= 2 * sessions  # the ticker's (a turn may write its first itself)
    writes_in_a_row = [len(list(group)) for what, group in itertools.groupby(order) if what == "written"]
    assert BATCH <= max(writes_in_a_row) <= 2 * BATCH
