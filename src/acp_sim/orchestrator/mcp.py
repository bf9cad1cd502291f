"""MCP accounting and sharing: how many MCP processes each session causes, and who owns them.

Two kinds of MCP server reach an agent session:

- stdio servers (``{"name", "command", "args", "env"}``): the agent starts one child process *per
  session* (Claude Code's CLI does, measured: 3 sessions x 2 servers = 6 processes). The
  orchestrator cannot share them; it counts them, and closing the session is what stops them.
- HTTP servers: the agent connects to a URL. ``SharedHttpServer`` is an HTTP MCP server the
  orchestrator itself runs. With the ``share_http`` policy (the default) one process serves every
  session that names it, reference-counted and stopped when the last such session closes; with
  ``per_session`` every session gets its own copy. Either way nothing outlives its sessions.

Processes are started with ``subprocess.Popen`` and never awaited, so this works on virtual time
(see the design notes' hazard); readiness is the agent's business (its MCP client retries).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any, Literal

McpSharing = Literal["share_http", "per_session"]

# How long a managed server gets after SIGTERM before SIGKILL (real seconds; blocking, bounded).
STOP_GRACE_SECONDS = 2.0


def is_stdio(server: Mapping[str, Any]) -> bool:
    kind = server.get("type")
    return (kind is None or kind == "stdio") and "command" in server


def stdio_count(servers: Sequence[Mapping[str, Any]]) -> int:
    """Child processes the agent starts for a session with this configuration."""
    return sum(1 for s in servers if is_stdio(s))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True, init=False)
class SharedHttpServer:
    """An HTTP MCP server the orchestrator runs itself, e.g. ``acp-sim mcp-server --http {port}``.

    ``argv``, ``url`` and ``env`` values may contain ``{port}``, filled with a free local port.
    Put it in ``open_session(mcp_servers=[...])`` next to plain wire dicts.
    """

    name: str
    argv: tuple[str, ...]
    url: str = "http://127.0.0.1:{port}/mcp"
    env: tuple[tuple[str, str], ...] = ()

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        url: str = "http://127.0.0.1:{port}/mcp",
        env: Mapping[str, str] | None = None,
    ) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "argv", tuple(argv))
        object.__setattr__(self, "url", url)
        object.__setattr__(self, "env", tuple(sorted((env or {}).items())))


@dataclass(eq=False)
class RunningServer:
    spec: SharedHttpServer
    process: subprocess.Popen[bytes]
    url: str
    users: set[str] = field(default_factory=set)

    @property
    def pid(self) -> int:
        return self.process.pid

    def wire(self) -> dict[str, Any]:
        return {"type": "http", "name": self.spec.name, "url": self.url, "headers": []}


@dataclass
class McpReport:
    """What MCP costs right now, in processes: stdio servers as configured per session (one process
    each, the agent's to start), managed HTTP servers as really running here."""

    stdio_by_session: dict[str, int]
    """Live sessions (warm ones included) -> stdio server processes the agent runs for them."""
    managed: dict[str, int]
    """Orchestrator-run HTTP servers: name -> running processes."""

    @property
    def stdio_processes(self) -> int:
        return sum(self.stdio_by_session.values())

    @property
    def managed_processes(self) -> int:
        return sum(self.managed.values())

    @property
    def total(self) -> int:
        return self.stdio_processes + self.managed_processes


class McpManager:
    """Starts, shares and stops the orchestrator-run MCP servers; counts everyone's processes."""

    def __init__(self, sharing: McpSharing = "share_http") -> None:
        if sharing not in ("share_http", "per_session"):
            raise ValueError(f"mcp_sharing must be 'share_http' or 'per_session', not {sharing!r}")
        self.sharing = sharing
        self.running: list[RunningServer] = []
        self.started = 0
        self.stopped = 0

    def resolve(self, owner: str, servers: Sequence[Any]) -> list[dict[str, Any]]:
        """The wire list for a session: ``SharedHttpServer`` entries become ``http`` entries."""
        wire: list[dict[str, Any]] = []
        for server in servers:
            if isinstance(server, SharedHttpServer):
                wire.append(self._acquire(owner, server).wire())
            elif hasattr(server, "model_dump"):
                wire.append(server.model_dump(mode="json", by_alias=True, exclude_none=True))
            else:
                wire.append(dict(server))
        return wire

    def _acquire(self, owner: str, spec: SharedHttpServer) -> RunningServer:
        """A running server for ``owner``: with ``share_http``, one already running for the same spec.

        Hazard prevented: M servers x N sessions processes. Only HTTP servers are shared (a stdio
        server belongs to one client connection); a dead one is never handed out again.
        """
        if self.sharing == "share_http":
            for server in self.running:
                if server.spec == spec and server.process.poll() is None:
                    server.users.add(owner)
                    return server
        server = self._start(spec)
        server.users.add(owner)
        return server

    def _start(self, spec: SharedHttpServer) -> RunningServer:
        port = str(free_port())
        argv = [arg.replace("{port}", port) for arg in spec.argv]
        env = {**os.environ, **{k: v.replace("{port}", port) for k, v in spec.env}}
        try:
            process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
            )
        except OSError as exc:
            raise FileNotFoundError(
                f"cannot start MCP server {spec.name!r} ({argv[0]}): {exc.strerror}"
            ) from None
        server = RunningServer(spec, process, spec.url.replace("{port}", port))
        self.running.append(server)
        self.started += 1
        return server

    def release(self, owner: str) -> None:
        """``owner`` (a session label) is gone: stop every managed server nobody uses any more.

        Hazard prevented: leaked MCP processes. A shared server outlives the session that started
        it while another still uses it, and is stopped (terminated, then killed) with its last user.
        """
        for server in list(self.running):
            server.users.discard(owner)
            if not server.users:
                self._stop(server)

    def stop_all(self) -> None:
        for server in list(self.running):
            self._stop(server)

    def _stop(self, server: RunningServer) -> None:
        self.running.remove(server)
        self.stopped += 1
        process = server.process
        if process.poll() is None:
            with suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def owned_by(self, owner: str) -> list[RunningServer]:
        return [server for server in self.running if owner in server.users]

    def managed_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for server in self.running:
            if server.process.poll() is None:
                counts[server.spec.name] = counts.get(server.spec.name, 0) + 1
        return counts
