"""A git worktree per agent session (item 10), against a real temporary git repository.

The simulated agent edits files through the client's ``fs/write_text_file`` (a tool call in its
profile), which the session's handler serves inside the session's cwd: the worktree.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from acp_sim.agent import InProcessAgent
from acp_sim.orchestrator import ClientHandler, Orchestrator, WorktreeError
from acp_sim.profile import ToolCallSpec

from .test_orchestrator_support import make_profile

pytestmark = pytest.mark.anyio

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
    (path / "README.md").write_text("hello\n")
    git(path, "add", "README.md")
    git(path, "commit", "--quiet", "-m", "initial")
    return path


def writer(path: str = "notes.txt") -> InProcessAgent:
    """An agent whose every turn writes ``path`` (relative to its cwd) through the client."""
    return InProcessAgent(make_profile(chunks=2, tool_calls=[ToolCallSpec(fs="write", path=path)]), seed=1)


def branches(repo: Path) -> list[str]:
    return git(repo, "for-each-ref", "--format=%(refname:short)", "refs/heads/").splitlines()


def worktrees(repo: Path) -> int:
    return git(repo, "worktree", "list", "--porcelain").count("worktree ")


async def test_the_session_runs_in_its_own_worktree_and_merge_brings_its_work_home(repo: Path) -> None:
    launcher = writer()
    async with Orchestrator(launcher, handler=ClientHandler(fs=True)) as orch:
        session = await orch.open_session(cwd=str(repo), worktree=True)
        tree = session.worktree
        assert tree is not None
        assert Path(session.cwd) == tree.path != repo
        assert git(tree.path, "branch", "--show-current") == tree.branch == "acp/s1-1"
        new = [e for e in launcher.current.trace.events if e.kind == "recv" and e.method == "session/new"]
        assert new[0].message["params"]["cwd"] == session.cwd  # type: ignore[index]
        await session.prompt("write notes").result()
        assert (tree.path / "notes.txt").read_text().startswith(f"[{session.id[:8]} t1 tool0]")
        assert not (repo / "notes.txt").exists()  # the user's checkout is untouched
        commit = await session.merge()
        assert tree.state == "merged"
        assert git(repo, "rev-parse", "HEAD") == commit
        assert (repo / "notes.txt").exists()
        assert git(repo, "status", "--porcelain") == ""
        assert not tree.path.exists()
        assert tree.branch not in branches(repo)
        assert worktrees(repo) == 1
        await session.close()


async def test_discard_throws_the_work_and_the_branch_away(repo: Path) -> None:
    async with Orchestrator(writer(), handler=ClientHandler(fs=True)) as orch:
        session = await orch.open_session(cwd=str(repo), worktree=True)
        await session.prompt("write").result()
        head = git(repo, "rev-parse", "HEAD")
        await session.discard()
        tree = session.worktree
        assert tree is not None
        assert tree.state == "discarded"
        assert not tree.path.exists()
        assert branches(repo) == ["main"]
        assert worktrees(repo) == 1
        assert git(repo, "rev-parse", "HEAD") == head
        assert not (repo / "notes.txt").exists()
        with pytest.raises(WorktreeError, match="session s1: worktree already discarded"):
            await session.merge()


async def test_close_without_a_decision_keeps_the_work_on_its_branch_and_removes_the_checkout(
    repo: Path,
) -> None:
    async with Orchestrator(writer(), handler=ClientHandler(fs=True)) as orch:
        busy = await orch.open_session(cwd=str(repo), worktree=True)
        idle = await orch.open_session(cwd=str(repo), worktree=True)
        await busy.prompt("write").result()
        await busy.close()
        await idle.close()
    assert busy.worktree is not None
    assert idle.worktree is not None
    assert busy.worktree.kept_branch
    assert not idle.worktree.kept_branch
    assert branches(repo) == ["acp/s1-1", "main"]
    assert "notes.txt" in git(repo, "show", "--stat", "acp/s1-1")
    assert not busy.worktree.path.exists()
    assert not idle.worktree.path.exists()
    assert worktrees(repo) == 1


async def test_worktrees_still_open_are_cleaned_when_the_orchestrator_exits(repo: Path) -> None:
    async with Orchestrator(writer(), handler=ClientHandler(fs=True)) as orch:
        session = await orch.open_session(cwd=str(repo), worktree=True)
        await session.prompt("write").result()
    assert session.worktree is not None
    assert session.worktree.state == "closed"
    assert worktrees(repo) == 1
    assert session.worktree.kept_branch


async def test_a_conflicting_merge_changes_nothing_and_names_the_session(repo: Path) -> None:
    async with Orchestrator(writer("README.md"), handler=ClientHandler(fs=True)) as orch:
        session = await orch.open_session(cwd=str(repo), worktree=True)
        await session.prompt("rewrite the readme").result()
        (repo / "README.md").write_text("changed at home\n")
        git(repo, "commit", "--quiet", "-am", "home change")
        head = git(repo, "rev-parse", "HEAD")
        with pytest.raises(
            WorktreeError, match=r"session s1: merging acp/s1-1 into main failed; nothing was changed"
        ):
            await session.merge()
        assert git(repo, "rev-parse", "HEAD") == head
        assert git(repo, "status", "--porcelain") == ""
        assert session.worktree is not None
        assert session.worktree.state == "active"
        await session.discard()
    assert worktrees(repo) == 1
    assert branches(repo) == ["main"]


async def test_a_worktree_outside_a_repository_fails_before_any_session_is_made(tmp_path: Path) -> None:
    launcher = writer()
    async with Orchestrator(launcher) as orch:
        with pytest.raises(WorktreeError, match="is not inside a git repository"):
            await orch.open_session(cwd=str(tmp_path), worktree=True)
    assert not [e for e in launcher.current.trace.events if e.method == "session/new"]


async def test_the_handler_refuses_files_outside_the_worktree(repo: Path) -> None:
    launcher = InProcessAgent(
        make_profile(chunks=1, tool_calls=[ToolCallSpec(fs="write", path="../escape.txt")]), seed=1
    )
    async with Orchestrator(launcher, handler=ClientHandler(fs=True)) as orch:
        session = await orch.open_session(cwd=str(repo), worktree=True)
        await session.prompt("escape").result()
        assert session.worktree is not None
        assert not (session.worktree.path.parent / "escape.txt").exists()
        await session.discard()
    errors = [
        e for e in launcher.current.trace.events
        if e.kind == "recv" and e.method == "fs/write_text_file" and "error" in (e.message or {})
    ]  # fmt: skip
    assert len(errors) == 1
    assert "outside the session's working directory" in errors[0].message["error"]["message"]


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_worktrees_with_the_stdio_agent_on_real_time(repo: Path, tmp_path: Path) -> None:
    import json

    import anyio

    from acp_sim.orchestrator import SubprocessAgent

    from .conftest import AGENT_CMD

    turn = {"chunk_count": 1, "tool_calls": [{"fs": "write", "path": "notes.txt"}]}
    profile = {"models": {"default": {"session_new_cold": 0.05, "session_new_warm": 0.05, "turn": turn}}}
    (tmp_path / "profile.json").write_text(json.dumps(profile))
    launcher = SubprocessAgent([*AGENT_CMD, "--profile", str(tmp_path / "profile.json")])
    with anyio.fail_after(60):
        async with Orchestrator(launcher, handler=ClientHandler(fs=True)) as orch:
            kept, merged = [await orch.open_session(cwd=str(repo), worktree=True) for _ in range(2)]
            for s in (kept, merged):
                assert await s.prompt("write notes").result() == "end_turn"
            await merged.merge()
    assert (repo / "notes.txt").read_text().startswith(f"[{merged.id[:8]} t1 tool0]")
    assert branches(repo) == ["acp/s1-1", "main"]  # the other one's work, kept at exit
    assert worktrees(repo) == 1
