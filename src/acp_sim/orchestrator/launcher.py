"""How the orchestrator reaches an agent: a launcher starts one agent instance and yields its streams.

The orchestrator only sees this protocol, so it runs unchanged against the in-process simulated
agent (``acp_sim.agent.InProcessAgent``), the stdio simulated agent, or any ACP agent command.
A launcher is called again after a crash: each call is a fresh agent process.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Protocol

import anyio
from anyio.abc import ByteReceiveStream, ByteSendStream, Process

# How long a child gets to leave after its stdin closes, before SIGTERM, then SIGKILL.
EXIT_GRACE_SECONDS = 2.0


@dataclass
class AgentLink:
    """One running agent instance as the orchestrator sees it."""

    receive: ByteReceiveStream
    send: ByteSendStream
    name: str
    pid: int | None = None
    process: Process | None = field(default=None, repr=False)

    async def wait_exit_code(self) -> int | None:
        """The process's exit code once it has gone (None for in-process agents)."""
        if self.process is None:
            return None
        with anyio.move_on_after(EXIT_GRACE_SECONDS):
            return await self.process.wait()
        return self.process.returncode


class AgentLauncher(Protocol):
    """Starts one agent instance per call; leaving the context stops it and reaps everything."""

    name: str
    virtual_time: bool
    """True when the agent may run on a virtual clock (it never does real I/O the clock must wait for)."""

    def launch(self) -> AbstractAsyncContextManager[AgentLink]: ...


@dataclass
class SubprocessAgent:
    """Any ACP agent command on stdio: ``acp-sim agent``, Claude Code's adapter, a bridge's agent."""

    argv: Sequence[str]
    env: Mapping[str, str] | None = None
    cwd: str | None = None
    name: str = ""
    virtual_time: bool = False
    stderr: int | None = subprocess.DEVNULL
    launches: int = 0

    def __post_init__(self) -> None:
        if not self.argv:
            raise ValueError("SubprocessAgent needs a command")
        self.name = self.name or os.path.basename(self.argv[0])

    @asynccontextmanager
    async def launch(self) -> AsyncIterator[AgentLink]:
        env = {**os.environ, **self.env} if self.env is not None else None
        self.launches += 1
        try:
            process = await anyio.open_process(
                list(self.argv), env=env, cwd=self.cwd, stderr=self.stderr, start_new_session=True
            )
        except OSError as exc:
            raise FileNotFoundError(f"cannot start agent {' '.join(self.argv)!r}: {exc.strerror}") from None
        assert process.stdin is not None
        assert process.stdout is not None
        link = AgentLink(
            process.stdout, process.stdin, f"{self.name}[pid {process.pid}]", process.pid, process
        )
        try:
            yield link
        finally:
            with anyio.CancelScope(shield=True):
                await stop_process(process)


async def stop_process(process: Process) -> None:
    """Close stdin, wait, TERM, then KILL the whole process group: nothing the agent started survives."""
    try:
        if process.stdin is not None:
            await process.stdin.aclose()
    except (anyio.BrokenResourceError, OSError):
        pass
    with anyio.move_on_after(EXIT_GRACE_SECONDS):
        await process.wait()
    if process.returncode is None:
        _signal_group(process.pid, signal.SIGTERM)
        with anyio.move_on_after(EXIT_GRACE_SECONDS):
            await process.wait()
    # Children that outlive the leader (MCP servers, an npx wrapper's grandchildren) share its group.
    _signal_group(process.pid, signal.SIGKILL)
    await process.wait()
    if process.stdout is not None:
        await process.stdout.aclose()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)  # the agent leads its own group (start_new_session=True)
