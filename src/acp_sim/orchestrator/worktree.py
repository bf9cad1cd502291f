"""A git worktree per agent session (opt-in): the agent edits its own checkout, never yours.

``Worktree.create(repo, name)`` runs a real ``git worktree add -b acp/<name>-<n>`` off the
repository's current commit, in a fresh temporary directory; the session's cwd is set to it.
The caller then decides, explicitly:

- ``merge()``: commit whatever the agent left uncommitted, merge the session's branch into the
  branch that was checked out when the worktree was made (``--no-ff``), remove the worktree and the
  branch. A conflict aborts the merge, leaves everything as it was and raises ``WorktreeError``.
- ``discard()``: remove the worktree and delete the branch, changes and all.
- neither, then ``close()`` (what closing the session does): uncommitted work is committed to the
  branch (nothing is lost), the worktree directory is removed, and the branch is kept only if it
  holds commits (``kept_branch``).

Git runs as a blocking subprocess: on virtual time that is the only safe way (awaiting a real
process would let the clock jump, see the design notes); the orchestrator moves the calls to a
worker thread when it runs on real time.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from acp_sim.errors import AcpSimError

State = Literal["active", "merged", "discarded", "closed"]

# Used only when the user has no git identity configured (CI machines, fresh containers).
FALLBACK_IDENTITY = {
    "GIT_AUTHOR_NAME": "acp-sim",
    "GIT_AUTHOR_EMAIL": "acp-sim@localhost",
    "GIT_COMMITTER_NAME": "acp-sim",
    "GIT_COMMITTER_EMAIL": "acp-sim@localhost",
}


class WorktreeError(AcpSimError):
    """A git operation on a session's worktree failed; names the session and git's own message."""


def git(cwd: str | Path, *args: str, check: bool = True, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        ["git", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {}), "GIT_TERMINAL_PROMPT": "0"},
        check=False,
    )
    if check and proc.returncode != 0:
        message = (proc.stderr or proc.stdout).strip()
        raise WorktreeError(f"git {' '.join(args)} failed in {cwd}: {message}")
    return proc.stdout.strip()


def _identity_env(cwd: Path) -> dict[str, str]:
    if git(cwd, "config", "user.email", check=False) and git(cwd, "config", "user.name", check=False):
        return {}
    return dict(FALLBACK_IDENTITY)


@dataclass(eq=False)
class Worktree:
    """One agent's own checkout (hazard: two agents editing one tree overwrite each other's files).

    Each session gets a ``git worktree`` on a fresh ``acp/<session>`` branch from the repository's
    HEAD, so its edits never touch another agent's files or the main checkout until an explicit
    ``merge``; ``remove`` deletes the tree (keeping the branch if it has unmerged commits).
    """

    session: str
    """The label of the session it belongs to (named in every error)."""
    repo: Path
    path: Path
    branch: str
    base_commit: str
    base_branch: str | None
    state: State = "active"
    kept_branch: bool = False
    merge_commit: str | None = None

    @classmethod
    def create(cls, repo: str | Path, session: str, *, root: str | Path | None = None) -> Worktree:
        """A new worktree for ``session`` off ``repo``'s HEAD, on a branch no other session holds.

        Hazard prevented: reusing one branch (or one directory) for two sessions would let the
        second agent check out the first one's half-done edits; the branch name is made unique.
        """
        repo_path = Path(repo)
        try:
            top = Path(git(repo_path, "rev-parse", "--show-toplevel"))
        except (WorktreeError, OSError) as exc:
            raise WorktreeError(f"session {session}: {repo} is not inside a git repository ({exc})") from None
        base = git(top, "rev-parse", "--verify", "HEAD")
        base_branch = git(top, "symbolic-ref", "--quiet", "--short", "HEAD", check=False) or None
        holder = Path(tempfile.mkdtemp(prefix=f"acp-wt-{session}-", dir=root))
        path = holder / top.name
        branch = cls._free_branch(top, f"acp/{session}")
        try:
            git(top, "worktree", "add", "--quiet", "-b", branch, str(path), base)
        except WorktreeError as exc:
            shutil.rmtree(holder, ignore_errors=True)
            raise WorktreeError(f"session {session}: {exc}") from None
        return cls(session, top, path, branch, base, base_branch)

    @staticmethod
    def _free_branch(top: Path, stem: str) -> str:
        existing = set(git(top, "for-each-ref", "--format=%(refname:short)", "refs/heads/").splitlines())
        n = 1
        while f"{stem}-{n}" in existing:
            n += 1
        return f"{stem}-{n}"

    # -- queries ----------------------------------------------------------------------------------

    def dirty(self) -> bool:
        return bool(git(self.path, "status", "--porcelain"))

    def commits_ahead(self) -> int:
        return int(git(self.repo, "rev-list", "--count", f"{self.base_commit}..{self.branch}"))

    # -- decisions ----------------------------------------------------------------------------------

    def commit_pending(self, message: str) -> bool:
        """Commit everything uncommitted in the worktree; False when there was nothing."""
        self._require_active()
        if not self.dirty():
            return False
        git(self.path, "add", "--all")
        git(self.path, "commit", "--quiet", "--no-verify", "-m", message, env=_identity_env(self.path))
        return True

    def merge(self, message: str | None = None) -> str:
        """Merge the session's work into ``base_branch``; returns the resulting commit of that branch."""
        self._require_active()
        self.commit_pending(f"acp session {self.session}: uncommitted work")
        if self.base_branch is None:
            raise WorktreeError(
                f"session {self.session}: the repository was on a detached HEAD when the worktree was "
                f"made; merge branch {self.branch} yourself"
            )
        current = git(self.repo, "symbolic-ref", "--quiet", "--short", "HEAD", check=False)
        if current != self.base_branch:
            raise WorktreeError(
                f"session {self.session}: {self.repo} has {current or 'a detached HEAD'} checked out, "
                f"not {self.base_branch}; check out {self.base_branch} and call merge() again"
            )
        if self.commits_ahead():
            text = message or f"Merge work of acp session {self.session} ({self.branch})"
            try:
                git(
                    self.repo,
                    "merge",
                    "--no-ff",
                    "--quiet",
                    "-m",
                    text,
                    self.branch,
                    env=_identity_env(self.repo),
                )
            except WorktreeError as exc:
                git(self.repo, "merge", "--abort", check=False)
                raise WorktreeError(
                    f"session {self.session}: merging {self.branch} into {self.base_branch} failed; "
                    f"nothing was changed ({exc})"
                ) from None
        self.merge_commit = git(self.repo, "rev-parse", "HEAD")
        self._remove(delete_branch=True)
        self.state = "merged"
        return self.merge_commit

    def discard(self) -> None:
        self._require_active()
        self._remove(delete_branch=True)
        self.state = "discarded"

    def close(self) -> None:
        """Cleanup without a decision: keep the work on the branch, remove the checkout."""
        if self.state != "active":
            return
        if self.path.exists():
            self.commit_pending(f"acp session {self.session}: work left at close")
        self.kept_branch = self.commits_ahead() > 0
        self._remove(delete_branch=not self.kept_branch)
        self.state = "closed"

    def _require_active(self) -> None:
        if self.state != "active":
            raise WorktreeError(f"session {self.session}: worktree already {self.state}")

    def _remove(self, *, delete_branch: bool) -> None:
        git(self.repo, "worktree", "remove", "--force", str(self.path), check=False)
        git(self.repo, "worktree", "prune", check=False)
        shutil.rmtree(self.path.parent, ignore_errors=True)
        if delete_branch:
            git(self.repo, "branch", "--quiet", "-D", self.branch, check=False)
