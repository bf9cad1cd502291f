"""The leak guard: which child processes appeared during a test (or a run) and are still alive.

An agent or MCP server left running after a test is exactly the bug class P6 is about (65
orphaned agents, 945 MCP processes: see the known client bugs), so the plugin checks it around
every test that asks for it and around every state-machine example. It reads the live system
(psutil, through ``acp_sim.proctree``) and never waits on a pipe, so it is safe next to a
simulation on virtual time.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from dataclasses import dataclass, field

from acp_sim import proctree
from acp_sim.proctree import ProcInfo

# How long (real seconds) a process that was just killed gets to disappear before it counts.
SETTLE_SECONDS = 2.0


# Every process started from here inherits this variable (set once, to this process's pid), so an
# orphan re-parented to init is still recognisable as ours: by what it carries, not by its parent.
OWNER_ENV = "ACP_SIM_LEAKGUARD_OWNER"
_OWNER = str(os.getpid())
os.environ[OWNER_ENV] = _OWNER


@dataclass
class LeakGuard:
    """Remembers the live descendants of this process (and its group) at ``start``; ``leaked`` names
    the new ones still alive. Processes re-parented away from us (orphans) are found through the
    process groups of the children we saw and, with ``orphans=True``, through the owner variable
    every process started from here inherits (one scan of the process table: per test, not per
    state-machine example)."""

    before: set[int] = field(default_factory=set)
    groups: set[int] = field(default_factory=set)
    orphans: bool = False

    @classmethod
    def start(cls, *, orphans: bool = False) -> LeakGuard:
        guard = cls(orphans=orphans)
        guard.before = {p.pid for p in _ours()}
        if orphans:
            guard.before |= {p.pid for p in proctree.carrying(OWNER_ENV, _OWNER)}
        return guard

    def observe(self) -> None:
        """Note the process groups of the current new children, so their orphans can be found later."""
        own_group = os.getpgid(0)
        for proc in _ours():
            if proc.pid not in self.before and proc.pgid != own_group:
                self.groups.add(proc.pgid)

    def new_alive(self) -> list[ProcInfo]:
        found = {p.pid: p for p in _ours() if p.pid not in self.before}
        for pgid in self.groups:
            for proc in proctree.group_members(pgid):
                if proc.pid not in self.before:
                    found.setdefault(proc.pid, proc)
        if self.orphans:
            me = os.getpid()
            for proc in proctree.carrying(OWNER_ENV, _OWNER):
                if proc.pid not in self.before and proc.pid != me:
                    found.setdefault(proc.pid, proc)
        return sorted(found.values(), key=lambda p: p.pid)

    def leaked(self, settle: float = SETTLE_SECONDS) -> list[ProcInfo]:
        """New processes still alive after giving just-killed ones ``settle`` real seconds to go."""
        candidates = self.new_alive()
        if not candidates:
            return []
        survivors = {p.pid for p in proctree.wait_gone([p.pid for p in candidates], timeout=settle)}
        return [p for p in candidates if p.pid in survivors]


def _ours() -> list[ProcInfo]:
    return proctree.descendants(os.getpid())


def describe(procs: Iterable[ProcInfo]) -> str:
    return "\n".join(f"  pid {p.pid}: {p.command or '<no command line>'}" for p in procs)


def kill(procs: Iterable[ProcInfo]) -> None:
    """Kill leaked processes (and their trees) so one test's leak does not fail the next one."""
    pids = []
    for proc in procs:
        pids.extend(proctree.kill_tree(proc.pid))
    proctree.wait_gone(pids, timeout=SETTLE_SECONDS)
    # Our own children must be reaped, or they stay as zombies until this process exits.
    for pid in pids:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
