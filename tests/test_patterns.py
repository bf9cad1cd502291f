"""The orchestration patterns on the reference orchestrator (both backends, virtual time; the
worktree merge on a real temporary git repository), each with a seeded bug its property catches."""

from __future__ import annotations

import subprocess
from pathlib import Path

import anyio
import pytest

from acp_sim.agent import InProcessAgent
from acp_sim.faults import parse_fault_spec
from acp_sim.orchestrator import Orchestrator
from acp_sim.orchestrator.patterns import fan_out, merge_worktrees, race
from acp_sim.profile import AgentProfile, Fixed, ModelProfile, TurnProfile
from pytest_acp.bugs.patterns import PATTERN_BUGS
from pytest_acp.properties.patterns import check_fan_out, check_merge, check_race

pytestmark = pytest.mark.anyio

PROFILE = AgentProfile(
    models={
        "default": ModelProfile(
            session_new_cold=Fixed(seconds=4.0),
            session_new_warm=Fixed(seconds=4.0),
            turn=TurnProfile(chunk_count=10, chunk_interval=Fixed(seconds=1.0)),
        )
    }
)
# The agent's sessions 0 and 2 (creation order) pause 3 s after their 3rd update: session 1 wins
# at 4 + 9 s, the others would end at 16 s.
SLOW_0_AND_2 = [
    parse_fault_spec("stall:seconds=3,after=3,session=0"),
    parse_fault_spec("stall:seconds=3,after=3,session=2"),
]
PROMPTS = ["hypothesis A task-0001", "hypothesis B task-0002", "hypothesis C task-0003"]


def index(launcher: InProcessAgent, session: object) -> int:
    """The agent's creation index of a session (what a fault's ``session`` names): sessions are
    opened at once, so the scheduler, not the prompt order, decides it."""
    return launcher.current.sessions[session.id].index  # type: ignore[attr-defined]


def agent(faults: list | None = None) -> InProcessAgent:  # type: ignore[type-arg]
    return InProcessAgent(PROFILE, seed=3, faults=faults or [])


async def test_race_first_to_finish_wins_and_losers_are_cancelled() -> None:
    launcher = agent(SLOW_0_AND_2)
    async with Orchestrator(launcher) as orch:
        start = anyio.current_time()
        result = await race(orch, PROMPTS, cwd="/w")
        assert result.winner is not None
        assert index(launcher, result.winner) == 1
        assert result.won_at == start + 4.0 + 9.0  # opened at once; chunks 0 s, then 1 s apart
        assert sorted(t.stop_reason or "" for t in result.turns) == ["cancelled", "cancelled", "end_turn"]
        assert all(s.closed for s in result.losers)
        assert not result.winner.closed
        assert result.text().count(f"[{result.winner.id[:8]} t1 c") == 10
        assert check_race(result, launcher.current.trace.events) == []


async def test_race_without_a_winner_ends_when_every_turn_failed() -> None:
    faults = [parse_fault_spec(f"error_reply:method=session/prompt,session={i}") for i in range(2)]
    launcher = agent(faults)
    async with Orchestrator(launcher) as orch:
        result = await race(orch, PROMPTS[:2], cwd="/w")
        assert result.winner is None
        assert all(t.error is not None for t in result.turns)


@pytest.mark.parametrize("bug", ["race_forgets_losers", "race_leaks_loser_output"])
async def test_seeded_race_bugs_are_caught(bug: str) -> None:
    seeded = PATTERN_BUGS[bug]
    launcher = agent(SLOW_0_AND_2)
    async with Orchestrator(launcher) as orch:
        result = await race(orch, PROMPTS, cwd="/w", race_class=seeded.pattern)
        violations = check_race(result, launcher.current.trace.events)
        assert {v.property for v in violations} == set(seeded.catches), violations
        assert all(v.key in {s.label for s in result.losers} for v in violations)


async def test_fan_out_collects_each_result_once_and_reports_the_failure() -> None:
    launcher = agent([parse_fault_spec("error_reply:method=session/prompt,session=1,message=boom")])
    async with Orchestrator(launcher) as orch:
        results = await fan_out(orch, PROMPTS, cwd="/w")
        assert [r.prompt for r in results] == PROMPTS
        failed = [r for r in results if not r.ok]
        assert len(failed) == 1
        assert index(launcher, failed[0].session) == 1
        assert "boom" in (failed[0].error or "")
        assert anyio.current_time() == 4.0 + 9.0  # opened at once, the turns ran in parallel
        assert check_fan_out(PROMPTS, results, launcher.current.trace.events) == []


async def test_seeded_fan_out_bug_is_caught() -> None:
    launcher = agent([parse_fault_spec("error_reply:method=session/prompt,session=1")])
    async with Orchestrator(launcher) as orch:
        bug = PATTERN_BUGS["fan_out_drops_failures"]
        results = await fan_out(orch, PROMPTS, cwd="/w", fan_out_class=bug.pattern)
        violations = check_fan_out(PROMPTS, results, launcher.current.trace.events)
        assert {v.property for v in violations} == set(bug.catches)


# -- worktree merge (real git) -------------------------------------------------------------------------

IDENTITY = ["-c", "user.name=test", "-c", "user.email=test@example.invalid"]


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *IDENTITY, *args], cwd=repo, check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "project"
    path.mkdir()
    git(path, "init", "--quiet", "-b", "main")
    (path / "app.py").write_text("a = 1\n\n\n\n\n\n\nb = 2\n")
    git(path, "add", "app.py")
    git(path, "commit", "--quiet", "-m", "initial")
    return path


async def _edit(orch: Orchestrator, repo: Path, edits: list[tuple[str, str]]):  # type: ignore[no-untyped-def]
    """One worktree session per edit; the "agent's" work is written into its checkout."""
    sessions = []
    for path, text in edits:
        session = await orch.open_session(cwd=str(repo), worktree=True)
        assert session.worktree is not None
        target = session.worktree.path / path
        target.write_text(text)
        sessions.append(session)
    return sessions


async def test_disjoint_worktrees_merge_cleanly(repo: Path) -> None:
    base = git(repo, "rev-parse", "HEAD")
    async with Orchestrator(agent()) as orch:
        a, b = await _edit(orch, repo, [("api.py", "api\n"), ("ui.py", "ui\n")])
        report = await merge_worktrees(orch, [a, b])
        assert report.clean
        assert report.merged == [a.label, b.label]
        assert report.touched == {a.label: ["api.py"], b.label: ["ui.py"]}
    assert sorted(git(repo, "ls-files").split()) == ["api.py", "app.py", "ui.py"]
    assert check_merge(repo, base) == []


async def test_a_conflict_is_reported_before_anything_is_merged(repo: Path) -> None:
    base = git(repo, "rev-parse", "HEAD")
    async with Orchestrator(agent()) as orch:
        # Edits at both ends of app.py: git would merge them without a textual conflict.
        a, b, c = await _edit(
            orch,
            repo,
            [
                ("app.py", "a = 10\n\n\n\n\n\n\nb = 2\n"),
                ("app.py", "a = 1\n\n\n\n\n\n\nb = 20\n"),
                ("ui.py", "ui\n"),
            ],
        )
        report = await merge_worktrees(orch, [a, b, c])
        assert report.conflicts == {"app.py": [a.label, b.label]}
        assert report.merged == []
        assert report.held == [a.label, b.label, c.label]
        assert git(repo, "rev-parse", "HEAD") == base  # nothing merged
        lenient = await merge_worktrees(orch, [a, b, c], strict=False)
        assert lenient.merged == [c.label]
        assert lenient.held == [a.label, b.label]
        assert a.worktree is not None
        assert a.worktree.state == "active"
    assert check_merge(repo, base) == []


async def test_seeded_silent_merge_is_caught(repo: Path) -> None:
    base = git(repo, "rev-parse", "HEAD")
    bug = PATTERN_BUGS["silent_merge"]
    async with Orchestrator(agent()) as orch:
        a, b = await _edit(
            orch, repo, [("app.py", "a = 10\n\n\n\n\n\n\nb = 2\n"), ("app.py", "a = 1\n\n\n\n\n\n\nb = 20\n")]
        )
        report = await merge_worktrees(orch, [a, b], merge_class=bug.pattern)
        assert report.merged == [a.label, b.label]  # git merged both, nobody was told
    violations = check_merge(repo, base)
    assert [v.property for v in violations] == ["W1"]
    assert "app.py" in violations[0].message
