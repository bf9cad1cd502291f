"""Three orchestration shapes that pay off, each a small API over the reference orchestrator.

- ``race``: competing hypotheses. Every prompt runs in its own session (optionally its own
  worktree); the first turn to end ``end_turn`` wins; every other one is cancelled with a scoped
  interrupt (``session/cancel`` for that session only), its worktree discarded and its session
  closed. Nothing a loser sends after the winner is known reaches the caller.
- ``fan_out``: parallel exploration with an explicit merge point. Every prompt runs in its own
  session; ``collect`` returns one ``Collected`` per prompt, in prompt order, a failed session
  reported with its error, never silently dropped.
- ``merge_worktrees``: independent feature work merged back explicitly. The files each session
  changed are read from git first; a file changed by two sessions is a conflict, reported before
  anything is merged (real git), never merged silently.

As in ``core``, each hazard has its own small method whose docstring names it, so a seeded bug
(``pytest_acp.bugs.patterns``) can break exactly one; ``pytest_acp.properties.patterns`` checks the
properties against the agent's trace and the repository.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio

from acp_sim.orchestrator.session import Session, TurnFailed, TurnStream, Update
from acp_sim.orchestrator.worktree import WorktreeError, git

OnUpdate = Callable[[Session, Update], None]


@dataclass
class Delivered:
    """One update handed to the caller: when, from which session."""

    t: float
    session: Session
    update: Update


# -- race ---------------------------------------------------------------------------------------------


@dataclass
class RaceResult:
    winner: Session | None
    """None when no session ended ``end_turn``."""
    won_at: float | None
    sessions: list[Session]
    turns: list[TurnStream]
    delivered: list[Delivered] = field(default_factory=list)

    @property
    def losers(self) -> list[Session]:
        return [s for s in self.sessions if s is not self.winner]

    def text(self, session: Session | None = None) -> str:
        who = self.winner if session is None else session
        return "".join(d.update.text or "" for d in self.delivered if d.session is who)


class Race:
    """One race; ``run`` once. Subclasses (seeded bugs) override one hazard method."""

    def __init__(self, orchestrator: Any, on_update: OnUpdate | None = None) -> None:
        self.orch = orchestrator
        self.on_update = on_update
        self.winner: Session | None = None
        self.won_at: float | None = None
        self.delivered: list[Delivered] = []
        self._decided = anyio.Event()

    async def run(
        self,
        prompts: Sequence[str],
        *,
        cwd: str,
        worktree: bool = False,
        mcp_servers: Sequence[Any] | None = None,
    ) -> RaceResult:
        sessions = await open_sessions(
            self.orch, len(prompts), cwd=cwd, worktree=worktree, mcp_servers=mcp_servers
        )
        turns = [s.prompt(p) for s, p in zip(sessions, prompts, strict=True)]
        async with anyio.create_task_group() as tg:
            for session, turn in zip(sessions, turns, strict=True):
                tg.start_soon(self._consume, session, turn)
            tg.start_soon(self._after_decision, sessions)
        # The winner's session and worktree are the caller's (merge, discard, prompt again).
        return RaceResult(self.winner, self.won_at, sessions, turns, self.delivered)

    async def _consume(self, session: Session, turn: TurnStream) -> None:
        try:
            async for update in turn:
                self._deliver(session, update)
        except TurnFailed:
            pass
        if turn.stop_reason == "end_turn" and self.winner is None:
            self.winner, self.won_at = session, anyio.current_time()
            self._decided.set()

    async def _after_decision(self, sessions: list[Session]) -> None:
        # The race is decided by a winner, or over when every turn ended without one.
        async with anyio.create_task_group() as tg:

            async def all_ended() -> None:
                await _all_done(sessions)
                self._decided.set()

            tg.start_soon(all_ended)
            await self._decided.wait()
            tg.cancel_scope.cancel()
        if self.winner is not None:
            await self._stop_losers([s for s in sessions if s is not self.winner])

    def _deliver(self, session: Session, update: Update) -> None:
        """Hazard prevented (a loser's output reaching the caller after the winner): once there is
        a winner, updates of other sessions are dropped here."""
        if self.winner is not None and session is not self.winner:
            return
        self.delivered.append(Delivered(anyio.current_time(), session, update))
        if self.on_update is not None:
            self.on_update(session, update)

    async def _stop_losers(self, losers: list[Session]) -> None:
        """Hazard prevented (losers left running, burning tokens and holding processes): each loser
        gets a scoped cancel, its worktree is discarded and its session closed."""
        for session in losers:
            await session.cancel()
            if session.worktree is not None and session.worktree.state == "active":
                await session.discard()
            await session.close()


async def open_sessions(orchestrator: Any, count: int, **options: Any) -> list[Session]:
    """``count`` sessions opened at once (start-up is paid once, not ``count`` times), in order."""
    opened: list[Session | None] = [None] * count

    async def open_one(i: int) -> None:
        opened[i] = await orchestrator.open_session(**options)

    async with anyio.create_task_group() as tg:
        for i in range(count):
            tg.start_soon(open_one, i)
    return [s for s in opened if s is not None]


async def _all_done(sessions: list[Session]) -> None:
    for session in sessions:
        turn = session.turn
        if turn is not None:
            await turn.finished.wait()


async def race(
    orchestrator: Any,
    prompts: Sequence[str],
    *,
    cwd: str,
    worktree: bool = False,
    mcp_servers: Sequence[Any] | None = None,
    on_update: OnUpdate | None = None,
    race_class: type[Race] = Race,
) -> RaceResult:
    """Run ``prompts`` as competing sessions; the first to end ``end_turn`` wins (see module doc)."""
    return await race_class(orchestrator, on_update).run(
        prompts, cwd=cwd, worktree=worktree, mcp_servers=mcp_servers
    )


# -- fan out / collect ----------------------------------------------------------------------------------


@dataclass
class Collected:
    """The outcome of one prompt of a fan-out."""

    index: int
    prompt: str
    session: Session
    text: str
    stop_reason: str | None
    error: str | None
    usage: dict[str, Any] | None

    @property
    def ok(self) -> bool:
        return self.error is None and self.stop_reason == "end_turn"


class FanOut:
    """Parallel sessions with one explicit merge point, ``collect``."""

    def __init__(self, orchestrator: Any) -> None:
        self.orch = orchestrator
        self.results: list[Collected] = []
        self.sessions: list[Session] = []

    async def collect(
        self,
        prompts: Sequence[str],
        *,
        cwd: str,
        mcp_servers: Sequence[Any] | None = None,
        close: bool = True,
    ) -> list[Collected]:
        self.sessions = await open_sessions(self.orch, len(prompts), cwd=cwd, mcp_servers=mcp_servers)
        async with anyio.create_task_group() as tg:
            for i, (session, prompt) in enumerate(zip(self.sessions, prompts, strict=True)):
                tg.start_soon(self._run_one, i, session, prompt)
        if close:
            for session in self.sessions:
                await session.close()
        return sorted(self.results, key=lambda c: c.index)

    async def _run_one(self, index: int, session: Session, prompt: str) -> None:
        turn = session.prompt(prompt)
        texts: list[str] = []
        error: str | None = None
        try:
            async for update in turn:
                if update.kind == "agent_message_chunk" and update.text:
                    texts.append(update.text)
        except TurnFailed as exc:
            error = str(exc)
        self._record(Collected(index, prompt, session, "".join(texts), turn.stop_reason, error, turn.usage))

    def _record(self, result: Collected) -> None:
        """Hazard prevented (a failed session silently dropped at the merge point): every prompt's
        outcome is recorded, failures with their error."""
        self.results.append(result)


async def fan_out(
    orchestrator: Any,
    prompts: Sequence[str],
    *,
    cwd: str,
    mcp_servers: Sequence[Any] | None = None,
    fan_out_class: type[FanOut] = FanOut,
) -> list[Collected]:
    """Run every prompt in its own session at once; collect each outcome exactly once, in order."""
    return await fan_out_class(orchestrator).collect(prompts, cwd=cwd, mcp_servers=mcp_servers)


# -- worktree merge -------------------------------------------------------------------------------------


@dataclass
class MergeReport:
    touched: dict[str, list[str]]
    """Session label -> files its branch changed (relative to the commit it started from)."""
    conflicts: dict[str, list[str]]
    """File -> labels of the sessions that changed it (only files changed by two or more)."""
    merged: list[str] = field(default_factory=list)
    held: list[str] = field(default_factory=list)
    """Sessions not merged because of a conflict; their worktrees are still active."""
    commit: str | None = None

    @property
    def clean(self) -> bool:
        return not self.conflicts


class WorktreeMerge:
    def __init__(self, orchestrator: Any) -> None:
        self.orch = orchestrator

    async def run(self, sessions: Sequence[Session], *, strict: bool = True) -> MergeReport:
        for session in sessions:
            if session.worktree is None:
                raise WorktreeError(f"session {session.label}: has no worktree (open_session(worktree=True))")
        touched: dict[str, list[str]] = {}
        for session in sessions:
            touched[session.label] = await self.orch._blocking(_changed_files, session)
        conflicts = self._find_conflicts(touched)
        report = MergeReport(touched, conflicts)
        involved = {label for labels in conflicts.values() for label in labels}
        for session in sessions:
            if conflicts and (strict or session.label in involved):
                report.held.append(session.label)
                continue
            report.commit = await session.merge()
            report.merged.append(session.label)
        return report

    def _find_conflicts(self, touched: dict[str, list[str]]) -> dict[str, list[str]]:
        """Hazard prevented (two sessions' changes to one file merged silently, even where git
        would merge them without a textual conflict): every file changed by two or more sessions
        is a conflict, found before anything is merged."""
        owners: dict[str, list[str]] = {}
        for label, files in touched.items():
            for path in files:
                owners.setdefault(path, []).append(label)
        return {path: labels for path, labels in sorted(owners.items()) if len(labels) > 1}


def _changed_files(session: Session) -> list[str]:
    tree = session.worktree
    assert tree is not None
    tree.commit_pending(f"acp session {session.label}: uncommitted work")
    out = git(tree.repo, "diff", "--name-only", f"{tree.base_commit}..{tree.branch}")
    return sorted(line for line in out.splitlines() if line)


async def merge_worktrees(
    orchestrator: Any,
    sessions: Sequence[Session],
    *,
    strict: bool = True,
    merge_class: type[WorktreeMerge] = WorktreeMerge,
) -> MergeReport:
    """Merge the sessions' worktrees back, conflicts first (see ``WorktreeMerge``).

    ``strict`` (default): any conflict holds every merge back. Otherwise sessions not involved in a
    conflict are merged and the conflicting ones held (their worktrees stay active).
    """
    return await merge_class(orchestrator).run(sessions, strict=strict)


__all__ = [
    "Collected",
    "Delivered",
    "FanOut",
    "MergeReport",
    "Race",
    "RaceResult",
    "WorktreeMerge",
    "fan_out",
    "merge_worktrees",
    "race",
]
