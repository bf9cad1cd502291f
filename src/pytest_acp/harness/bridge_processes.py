"""The processes of a bridge that is a process: its own, its descendants', and the agents it started.

A bridge process starts agents (and they MCP servers) as its children; once it dies they are
re-parented away from its tree, so the tree is noted while the bridge runs: every process group
seen in it, and the agents' groups (from the launcher's pids). The leak guard watches those groups
(``agent.extra["leak_guard"]``); without a guard what is left when the bridge stopped is killed
here and returned.
"""

from __future__ import annotations

import os

import anyio

from acp_sim import proctree
from pytest_acp.adapter import AgentUnderTest


class BridgeProcesses:
    """The process groups of one bridge process and of the agents it started."""

    def __init__(self, agent: AgentUnderTest) -> None:
        self.agent = agent
        self.groups: set[int] = set()
        self.scanning = False
        """A scan (``scan``) is under way in a worker thread: one at a time."""

    def started(self, pid: int) -> None:
        """The bridge process started (in a session, hence a process group, of its own)."""
        self.groups.add(pid)
        self.share()

    def note(self, pid: int | None) -> None:
        """Remember the process groups of the bridge's (``pid``) descendants and of the agents it
        started, so orphans (re-parented away once the bridge dies) are still found."""
        self._add(proctree.descendants(pid) if pid is not None else [])

    async def scan(self, pid: int | None) -> None:
        """``note``, with the process table read in a worker thread; ends ``scanning``."""
        try:
            found = await anyio.to_thread.run_sync(proctree.descendants, pid) if pid is not None else []
            self._add(found)
        finally:
            self.scanning = False

    def _add(self, descendants: list[proctree.ProcInfo]) -> None:
        """The groups of the bridge's ``descendants`` and of the agents it started, shared."""
        self.groups.update(proc.pgid for proc in descendants)
        for agent_pid in self.agent_pids():
            info = proctree.info(agent_pid)
            if info is not None:
                self.groups.add(info.pgid)
        self.groups.discard(os.getpgid(0))  # never our own group: it holds the test runner
        self.share()

    def agent_pids(self) -> list[int]:
        pids = getattr(self.agent.launcher, "pids", None)
        return list(pids()) if callable(pids) else []

    def share(self) -> None:
        guard = self.agent.extra.get("leak_guard")
        if guard is not None:
            guard.groups.update(self.groups)

    def survivors(self) -> list[proctree.ProcInfo]:
        """Processes of the bridge's groups, and agents it started, that are still alive."""
        found = {p.pid: p for pgid in self.groups for p in proctree.group_members(pgid)}
        for info in proctree.alive(self.agent_pids()):
            found.setdefault(info.pid, info)
        return sorted(found.values(), key=lambda p: p.pid)

    async def settle(self, exit_grace: float) -> list[proctree.ProcInfo] | None:
        """Give the agents a moment to exit after their bridge did (they read EOF), so their traces
        are complete; without a leak guard, kill what is left and return it (None: a guard has it)."""
        agents = [p.pid for p in proctree.alive(self.agent_pids())]
        if agents:
            await anyio.to_thread.run_sync(proctree.wait_gone, agents, exit_grace)
        if self.agent.extra.get("leak_guard") is not None:
            return None
        leftovers = self.survivors()
        killed = [pid for proc in leftovers for pid in proctree.kill_tree(proc.pid)]
        await anyio.to_thread.run_sync(proctree.wait_gone, killed, exit_grace)
        return leftovers
