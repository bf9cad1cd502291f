"""Which processes a real agent runs for each of its sessions, read from the process tree.

The simulated agent records its MCP children itself ("spawn"/"reap" trace events). A real agent
does not, so the tap asks the system. Claude Code's adapter starts one CLI process per session
(``session/new``, and ``session/resume``/``load`` after a restart); that CLI starts the session's
stdio MCP servers as its children and has them up before the adapter answers. The CLI overwrites
its argv with ``claude`` (no session id to read), so a new direct child of the agent is credited
to the session whose start the agent answers next (the earliest-started one first, when several
sessions start at once). Its descendants that match the ``mcpServers`` the client asked for are
that session's MCP servers; other descendants (tools the session runs) are not counted.

It reads the live system (psutil) and never waits: safe to call from the tap's observer.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
import psutil

from acp_sim import proctree
from acp_sim.live.redact import Redactor
from acp_sim.trace import Trace

# Requests after whose answer a session's processes exist (session/new waits for MCP handshakes).
SESSION_STARTS = frozenset({"session/new", "session/load", "session/resume", "session/fork"})


@dataclass(frozen=True, slots=True)
class McpSpec:
    name: str
    command: str
    args: tuple[str, ...]

    def matches(self, cmdline: Sequence[str]) -> bool:
        """The process runs this server: the same program (by name) and the same trailing arguments."""
        if not cmdline or not cmdline[0]:
            return False
        program = os.path.basename(self.command)
        runs = any(os.path.basename(part) == program for part in cmdline[: len(cmdline) - len(self.args)])
        return runs and (not self.args or tuple(cmdline[-len(self.args) :]) == self.args)


def stdio_servers(servers: Any) -> list[McpSpec]:
    """The stdio entries of an ACP ``mcpServers`` list (http/sse servers start no process)."""
    specs = []
    for entry in servers if isinstance(servers, list) else []:
        if (
            isinstance(entry, dict)
            and isinstance(entry.get("command"), str)
            and entry.get("type") in (None, "stdio")
        ):
            args = tuple(str(a) for a in entry.get("args") or [])
            specs.append(McpSpec(str(entry.get("name", "")), entry["command"], args))
    return specs


@dataclass
class _Tracked:
    session: str
    name: str
    role: str  # "session" (the session's own process) or "mcp"


def _now() -> float:
    try:
        return anyio.current_time()
    except RuntimeError:  # called outside an event loop (a final check after the run)
        return float("-inf")


def _started(pid: int) -> float:
    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return float("inf")


@dataclass
class SessionProcessProbe:
    """Attributes an agent's processes to its sessions and records them in the agent's trace.

    Trace events: ``session_process`` / ``session_process_exit`` (detail: ``pid``) for a session's
    own process; ``spawn`` / ``reap`` (detail: ``name``, ``transport``, ``pid``, ``command``, as the
    simulated agent writes them) for its stdio MCP servers.
    """

    root_pid: int
    trace: Trace
    redactor: Redactor = field(default_factory=Redactor)
    servers: dict[str, list[McpSpec]] = field(default_factory=dict)
    _requested: dict[Any, tuple[list[McpSpec], str | None]] = field(default_factory=dict)
    _tracked: dict[int, _Tracked] = field(default_factory=dict)
    interval: float | None = None
    """When set, any message re-reads the tree if the last read is older than this (seconds)."""
    _last_update: float = float("-inf")

    def on_message(self, direction: str, message: dict[str, Any]) -> None:
        """Feed every wire message (agent's point of view); probes when a session has started."""
        if self.interval is not None and _now() - self._last_update >= self.interval:
            self.update()
        method = message.get("method")
        if direction == "recv" and method in SESSION_STARTS and "id" in message:
            params = message.get("params")
            params = params if isinstance(params, dict) else {}
            requested = params.get("sessionId") if method != "session/fork" else None
            self._requested[message["id"]] = (stdio_servers(params.get("mcpServers")), requested)
        elif direction == "send" and method is None and message.get("id") in self._requested:
            specs, requested = self._requested.pop(message["id"])
            result = message.get("result")
            if isinstance(result, dict):
                session = result.get("sessionId", requested)
                if isinstance(session, str):
                    self.servers[session] = specs
                    self.update(started=session)

    def update(self, started: str | None = None) -> None:
        """Compare the process tree with what was recorded; record new and vanished processes.

        ``started``: the session the agent has just answered the start of (its process is new).
        """
        self._last_update = _now()
        tree = proctree.descendants(self.root_pid)
        # Checked one by one, not by tree membership: a child orphaned by its parent's death has
        # left the tree but is still running (a leak), and must not be recorded as reaped.
        alive = {p.pid for p in proctree.alive(self._tracked)}
        for pid in [pid for pid in self._tracked if pid not in alive]:
            gone = self._tracked.pop(pid)
            if gone.role == "mcp":
                self.trace.record("reap", session=gone.session, detail={"name": gone.name, "pid": pid})
            else:
                self.trace.record("session_process_exit", session=gone.session, detail={"pid": pid})
        if started is not None:
            new = [p for p in tree if p.ppid == self.root_pid and p.pid not in self._tracked]
            specs = self.servers.get(started, [])
            own = [p for p in new if not any(s.matches(p.cmdline) for s in specs)]
            if own and started not in {t.session for t in self._tracked.values() if t.role == "session"}:
                first = min(own, key=lambda p: _started(p.pid))
                self._tracked[first.pid] = _Tracked(started, "", "session")
                self.trace.record("session_process", session=started, detail={"pid": first.pid})
            # An agent that runs MCP servers itself (no per-session process) has them as direct children.
            for proc in new:
                spec = next((s for s in specs if s.matches(proc.cmdline)), None)
                if spec is not None:
                    self._spawned(proc, started, spec)
        parents = {p.pid: p.ppid for p in tree}
        for proc in tree:
            if proc.pid in self._tracked or proc.ppid == self.root_pid:
                continue
            owner = self._owner(proc.ppid, parents)
            if owner is None:
                continue
            spec = next((s for s in self.servers.get(owner, []) if s.matches(proc.cmdline)), None)
            if spec is not None:
                self._spawned(proc, owner, spec)

    def _spawned(self, proc: proctree.ProcInfo, session: str, spec: McpSpec) -> None:
        self._tracked[proc.pid] = _Tracked(session, spec.name, "mcp")
        command = [self.redactor.text(part) for part in proc.cmdline]
        self.trace.record(
            "spawn",
            session=session,
            detail={"name": spec.name, "transport": "stdio", "pid": proc.pid, "command": command},
        )

    def _owner(self, pid: int, parents: dict[int, int]) -> str | None:
        """The session whose process is an ancestor of ``pid``; None below an MCP server already
        counted (a wrapper's child is not a second server) and outside every session."""
        seen: set[int] = set()
        while pid not in seen:
            seen.add(pid)
            tracked = self._tracked.get(pid)
            if tracked is not None:
                return tracked.session if tracked.role == "session" else None
            if pid not in parents:
                return None
            pid = parents[pid]
        return None

    def count(self, session: str | None = None) -> int:
        """MCP server processes recorded alive (for one session, or all)."""
        return sum(1 for t in self._tracked.values() if t.role == "mcp" and session in (None, t.session))

    def session_processes(self) -> dict[str, int]:
        """Each session's own process (pid), among those recorded alive."""
        return {t.session: pid for pid, t in self._tracked.items() if t.role == "session"}
