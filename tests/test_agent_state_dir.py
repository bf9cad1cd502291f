"""Where ``acp-sim agent`` keeps sessions: the user's state directory by default (shared by every
run: launches not counted, minted ids remembered), ``--state-dir``, or nowhere (``--memory-only``)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from acp_sim.store import default_state_dir

from .conftest import AGENT_CMD

FAST = ["--session-new-latency", "0.01", "--chunk-interval", "0.01"]


def test_default_state_dir_follows_xdg_then_home() -> None:
    assert default_state_dir({"XDG_STATE_HOME": "/x/state", "HOME": "/h"}) == Path("/x/state/acp-sim")
    # The XDG spec: a relative value is invalid and ignored.
    assert default_state_dir({"XDG_STATE_HOME": "rel", "HOME": "/h"}) == Path("/h/.local/state/acp-sim")
    assert default_state_dir({"HOME": "/h"}) == Path("/h/.local/state/acp-sim")


class Agent:
    """One ``acp-sim agent`` process, spoken to line by line."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        argv = [*AGENT_CMD, *FAST, *args]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        self.next_id = 0

    def call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.next_id += 1
        line = {"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params}
        self.proc.stdin.write(json.dumps(line).encode() + b"\n")
        self.proc.stdin.flush()
        while True:
            message = json.loads(self.proc.stdout.readline())
            if message.get("id") == self.next_id and "method" not in message:
                return message

    def close(self) -> int:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        code = self.proc.wait(timeout=30)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        return code

    def session_with_a_turn(self) -> str:
        self.call("initialize", {"protocolVersion": 1})
        sid = self.call("session/new", {"cwd": "/w", "mcpServers": []})["result"]["sessionId"]
        prompt = {"sessionId": sid, "prompt": [{"type": "text", "text": "hi"}]}
        assert self.call("session/prompt", prompt)["result"]["stopReason"] == "end_turn"
        return sid


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir()
    return {**{k: v for k, v in os.environ.items() if k != "XDG_STATE_HOME"}, "HOME": str(home)}


def test_every_start_is_launch_zero_and_never_reuses_an_id(env: dict[str, str]) -> None:
    first = Agent(env)
    sid = first.session_with_a_turn()
    phantom = first.call("session/new", {"cwd": "/w", "mcpServers": []})["result"]["sessionId"]
    assert first.close() == 0
    # Same seed, launch 0 again (the same draws), yet neither earlier id is minted again.
    second = Agent(env)
    other = second.session_with_a_turn()
    assert other not in (sid, phantom)
    restore = {"cwd": "/w", "mcpServers": []}
    assert "result" in second.call("session/resume", {"sessionId": sid, **restore})
    assert second.call("session/resume", {"sessionId": phantom, **restore})["error"]["code"] == -32002
    assert second.close() == 0
    state = Path(env["HOME"]) / ".local" / "state" / "acp-sim"
    assert sorted(p.stem for p in (state / "sessions").glob("*.json")) == sorted([sid, other])
    assert not (state / "launches").exists()  # not counted on the shared disk


def test_faults_of_launch_zero_fire_on_every_start(env: dict[str, str]) -> None:
    for _ in range(2):
        agent = Agent(env, "--fault", "error_reply:method=session/list,message=boom")
        agent.call("initialize", {"protocolVersion": 1})
        assert agent.call("session/list", {})["error"]["message"] == "boom"
        assert agent.close() == 0


def test_memory_only_keeps_nothing(env: dict[str, str]) -> None:
    agent = Agent(env, "--memory-only")
    sid = agent.session_with_a_turn()
    assert agent.close() == 0
    again = Agent(env, "--memory-only")
    again.call("initialize", {"protocolVersion": 1})
    refused = again.call("session/resume", {"sessionId": sid, "cwd": "/w", "mcpServers": []})
    assert refused["error"]["code"] == -32002
    assert again.close() == 0
    assert list(Path(env["HOME"]).iterdir()) == []  # nothing written under HOME


def test_memory_only_and_state_dir_exclude_each_other(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from acp_sim.cli import main

    assert main(["agent", "--memory-only", "--state-dir", str(tmp_path)]) == 2
    assert "exclude each other" in capsys.readouterr().err
