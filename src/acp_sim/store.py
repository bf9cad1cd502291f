"""The simulated agent's "disk": sessions that survive a restart.

Claude Code keeps a transcript per session under ``$HOME/.claude/projects/`` and writes it when
the session has a turn; after a restart only those sessions can be resumed or loaded, and one
that never had a turn (a *phantom*) is gone (shared/reference/claude-code-adapter.md). The
simulated agent does the same with a ``SessionStore``: it saves a session when a prompt arrives
and when the turn ends, and reads it back on ``session/resume``/``session/load`` of an id its
process does not hold.

One store is shared by every instance an ``InProcessAgent`` launches (kept in memory, as JSON
text, so both kinds behave alike); the stdio agent keeps it in a directory: ``--state-dir``, or
by default the user's state directory (``default_state_dir``), as the real adapter keeps its
sessions under ``$HOME`` whoever starts it. The store also counts launches, so a relaunched agent
knows it is one (fresh seed, faults of launch 0 not repeated).

On the default directory (``shared=True``) every client shares one disk, so launches are not
counted there: every start is launch 0, exactly as without a disk (same seed, same draws, faults
of launch 0 fire), and a bridge that restarts the agent gets the same faults again, as before.
Sessions are shared, as on the real adapter's disk, and every id the agent mints is remembered
(``ids/``), so a new session never takes the id of an earlier run's session, stored or phantom
(``SimAgent`` draws again): a phantom stays unknown to every later process.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, NonNegativeFloat, NonNegativeInt, ValidationError

# Ids come from clients: only these may name a file (no path separators, no leading dot).
_SAFE_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")


APP_DIR = "acp-sim"


def default_state_dir(env: dict[str, str] | None = None) -> Path:
    """Where ``acp-sim agent`` keeps sessions without ``--state-dir``.

    Sessions are state in the XDG Base Directory sense (data that should survive a restart but is
    neither configuration nor a document the user would back up): ``$XDG_STATE_HOME/acp-sim``,
    else ``~/.local/state/acp-sim``. On Windows, ``%LOCALAPPDATA%\\acp-sim``. macOS command-line
    tools commonly follow XDG too, and one rule for every Unix keeps the path predictable.
    """
    env = dict(os.environ) if env is None else env
    if sys.platform == "win32" and env.get("LOCALAPPDATA"):
        return Path(env["LOCALAPPDATA"]) / APP_DIR
    xdg = env.get("XDG_STATE_HOME", "")
    if os.path.isabs(xdg):  # the spec: a relative path is invalid and is ignored
        return Path(xdg) / APP_DIR
    home = env.get("HOME") or str(Path.home())
    return Path(home) / ".local" / "state" / APP_DIR


class StoredSession(BaseModel):
    """What the disk holds of one session."""

    model_config = ConfigDict(extra="forbid")

    session_id: str
    cwd: str
    model: str
    mode: str
    turns: NonNegativeInt
    history: list[tuple[Literal["user", "agent"], str]]
    context_tokens: NonNegativeInt
    cached_tokens: NonNegativeInt
    cost: NonNegativeFloat
    title: str | None = None
    updated: NonNegativeInt = 0
    """Logical time of the last write (the store's counter), so listings sort reproducibly."""


class SessionStore:
    """Sessions by id, in memory or in ``directory`` (one JSON file per session)."""

    def __init__(self, directory: str | Path | None = None, *, shared: bool = False) -> None:
        """``shared``: the user's default state directory (see the module docstring)."""
        self.directory = Path(directory) if directory is not None else None
        self.shared = shared and self.directory is not None
        self._memory: dict[str, str] = {}
        self._launches = 0
        self._clock = 0
        if self.directory is not None:
            (self.directory / "sessions").mkdir(parents=True, exist_ok=True)
            if self.shared:
                (self.directory / "ids").mkdir(exist_ok=True)
            else:
                self._launches = self._read_int("launches")
            self._clock = max((s.updated for s in self.list()), default=0)

    # -- launches --------------------------------------------------------------------------------

    def next_launch(self) -> int:
        """Count one more agent launch on this disk; returns its number (0 for the first)."""
        if self.shared:
            return 0
        n = self._launches
        self._launches += 1
        if self.directory is not None:
            self._write_text(self.directory / "launches", str(self._launches))
        return n

    # -- ids -------------------------------------------------------------------------------------

    def taken(self, session_id: str) -> bool:
        """Whether a session with this id exists on the disk or was minted by an earlier run."""
        if self.shared and _SAFE_ID.fullmatch(session_id):
            assert self.directory is not None
            if (self.directory / "ids" / session_id).exists():
                return True
        return session_id in self

    def claim(self, session_id: str) -> None:
        """Remember a minted id (shared disk only: elsewhere the launch number varies the draws)."""
        if self.shared and _SAFE_ID.fullmatch(session_id):
            assert self.directory is not None
            (self.directory / "ids" / session_id).touch()

    # -- sessions --------------------------------------------------------------------------------

    def save(self, record: StoredSession) -> None:
        self._clock += 1
        record.updated = self._clock
        text = record.model_dump_json()
        if self.directory is None:
            self._memory[record.session_id] = text
        else:
            self._write_text(self._path(record.session_id), text)

    def load(self, session_id: str) -> StoredSession | None:
        """The stored session, or None (never saved, an unsafe id, or an unreadable file)."""
        if not _SAFE_ID.fullmatch(session_id):
            return None
        if self.directory is None:
            text = self._memory.get(session_id)
        else:
            try:
                text = self._path(session_id).read_text(encoding="utf-8")
            except OSError:
                text = None
        if text is None:
            return None
        try:
            return StoredSession.model_validate_json(text)
        except ValidationError:
            return None

    def list(self, cwd: str | None = None) -> list[StoredSession]:
        """Stored sessions, most recently updated first, optionally only those of ``cwd``."""
        if self.directory is None:
            ids = list(self._memory)
        else:
            ids = sorted(p.stem for p in (self.directory / "sessions").glob("*.json"))
        records = [r for r in map(self.load, ids) if r is not None and (cwd is None or r.cwd == cwd)]
        return sorted(records, key=lambda r: (-r.updated, r.session_id))

    def __contains__(self, session_id: str) -> bool:
        return self.load(session_id) is not None

    # -- files -----------------------------------------------------------------------------------

    def _path(self, session_id: str) -> Path:
        assert self.directory is not None
        assert _SAFE_ID.fullmatch(session_id)
        return self.directory / "sessions" / f"{session_id}.json"

    def _read_int(self, name: str) -> int:
        assert self.directory is not None
        try:
            return int((self.directory / name).read_text(encoding="utf-8").strip() or 0)
        except (OSError, ValueError):
            return 0

    @staticmethod
    def _write_text(path: Path, text: str) -> None:
        # Write then rename: a crash (os._exit) mid-write never leaves half a file behind.
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
