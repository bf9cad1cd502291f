"""One live run: the model (the stub, or the real API), a temporary HOME, the real adapter behind the tap.

``live_agent`` is what ``pytest --acp-live`` needs to hand a bridge: an ``AgentLauncher``
(``TappedAgent`` over ``SubprocessAgent``) whose every launch is a fresh adapter process on the same
HOME (so sessions with a turn survive a restart on "disk", as in the field), with the traces the
oracle reads in ``launcher.agents``. Real time only: the agent is a real process.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from acp_sim.live.adapter import DUMMY_API_KEY, AdapterCommand, adapter_env, inherited_to_drop, launch_argv
from acp_sim.live.model_stub import ModelStub, StubRecord
from acp_sim.live.redact import Redactor
from acp_sim.live.stub_profile import DEFAULT_STUB, StubProfile
from acp_sim.live.tap import TappedAgent
from acp_sim.orchestrator.launcher import SubprocessAgent


@dataclass
class LiveAgent:
    """A running live set-up."""

    launcher: TappedAgent
    stub: ModelStub | None
    """The model stub, or None when the run uses the real API."""
    base_url: str | None
    home: Path
    workspace: Path
    """A directory inside ``home`` to use as a session's ``cwd``."""
    env: dict[str, str] = field(repr=False)
    """Variables the adapter runs with (on top of the inherited environment, minus what ``command`` drops)."""
    command: list[str] = field(default_factory=list)
    """The adapter's argv (``env -u`` prefix included), for bridges that spawn the agent themselves."""

    @property
    def model_requests(self) -> list[StubRecord]:
        return self.stub.records if self.stub is not None else []


@asynccontextmanager
async def live_agent(
    adapter: AdapterCommand,
    *,
    profile: StubProfile = DEFAULT_STUB,
    seed: int = 0,
    home: str | Path | None = None,
    trace_dir: str | Path | None = None,
    api_key: str = DUMMY_API_KEY,
    real_model: bool = False,
    debug: bool = False,
    stderr: int | None = subprocess.DEVNULL,
    probe_processes: bool = True,
) -> AsyncIterator[LiveAgent]:
    """Yield a launcher for the real adapter, pointed at a fresh model stub (default) or the real API.

    ``real_model=True`` needs a real ``api_key`` and spends real tokens: no stub is started and the
    adapter talks to Anthropic (the caller caps sessions, prompts and time). Either way ``api_key``
    is redacted from every trace and log. ``home`` defaults to a fresh temporary directory, removed
    afterwards (Claude Code keeps its session transcripts there, under ``.claude/projects/``).
    """
    if real_model and api_key == DUMMY_API_KEY:
        raise ValueError("real_model=True needs a real api_key")
    redactor = Redactor([api_key])
    async with AsyncExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="acp-live-home-"))
        root = Path(home) if home is not None else Path(tmp)
        workspace = root / "ws"
        workspace.mkdir(parents=True, exist_ok=True)
        stub = None if real_model else ModelStub(profile, seed=seed, redactor=redactor)
        base_url = None if stub is None else await stack.enter_async_context(stub.serve())
        env = adapter_env(root, base_url=base_url, api_key=api_key, debug=debug)
        drop = [name for name in inherited_to_drop() if name not in env]
        argv = launch_argv(adapter, drop)
        inner = SubprocessAgent(argv, env=env, cwd=str(root), name="claude-agent-acp", stderr=stderr)
        launcher = TappedAgent(
            inner,
            redactor=redactor,
            trace_dir=os.fspath(trace_dir) if trace_dir is not None else None,
            probe_processes=probe_processes,
        )
        yield LiveAgent(launcher, stub, base_url, root, workspace, env, argv)
