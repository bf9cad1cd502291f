"""The README's first command: several sessions, one turn each, a short timeline."""

from __future__ import annotations

import anyio

from acp_sim.agent import InProcessAgent
from acp_sim.orchestrator import Orchestrator, Session
from acp_sim.profile import AgentProfile


def describe_update(raw: dict[str, object], text: str | None) -> str:
    """A timeline's words for one update: the text of a chunk, the other fields of anything else
    (a ``usage_update`` has no text: its context use and cost are what it says)."""
    if text is not None:
        return repr(text)
    fields = {k: v for k, v in raw.items() if k != "sessionUpdate"}
    return ", ".join(f"{k}={v}" for k, v in fields.items()) or "(no fields)"


async def demo(profile: AgentProfile, seed: int, n_sessions: int) -> tuple[list[str], float]:
    """Open ``n_sessions`` concurrently, prompt each, and return (timeline lines, simulated seconds)."""
    lines: list[str] = []
    origin = anyio.current_time()

    def log(label: str, what: str) -> None:
        lines.append(f"{anyio.current_time() - origin:9.3f}s  {label:<4} {what}")

    async with Orchestrator(InProcessAgent(profile, seed)) as orch:
        sessions: list[Session] = []

        async def open_one(label: str) -> None:
            log(label, "session/new ->")
            session = await orch.open_session(cwd="/workspace")
            sessions.append(session)
            log(label, f"<- session {session.id[:8]}")

        async with anyio.create_task_group() as tg:
            for i in range(n_sessions):
                tg.start_soon(open_one, f"S{i}")

        async def run_turn(label: str, session: Session) -> None:
            log(label, "session/prompt ->")
            turn = session.prompt(f"task {label}: fix the failing test")
            async for update in turn:
                log(label, f"  {update.kind}: {describe_update(update.raw, update.text)}")
            log(label, f"<- stopReason {turn.stop_reason}")

        async with anyio.create_task_group() as tg:
            for i, session in enumerate(sessions):
                tg.start_soon(run_turn, f"S{i}", session)
        return lines, anyio.current_time() - origin
