"""A bridge's own exception is its own short report (issue 24 items 3-4): an exception that escapes
the bridge's task group, its start or its stop is a finding headed "the bridge raised ...", with the
bridge's own frames, the shrunk steps and the replay command, never the raw state-machine listing."""

from __future__ import annotations

import re
import shlex
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from pytest_acp.adapter import AgentUnderTest
from pytest_acp.harness.machine import BridgeViolation
from pytest_acp.harness.machine_run import machine_for, run_machine
from tests.wire_client import StreamingBridge

pytest_plugins = ["pytester"]

# A bridge written on the raw wire: its own reader task routes the agent's messages by session id,
# and (the one defect) raises KeyError on an update for a session it does not know, which the
# simulated agent's foreign_session_update fault sends (and an agent that announces a session before
# answering session/new).
RAW_BRIDGE = """
import json
from contextlib import asynccontextmanager

import anyio

from pytest_acp.adapter import BridgeCapabilities


class RawBridge:
    capabilities = BridgeCapabilities(reconnects=False)  # one agent for the bridge's life

    def __init__(self, link):
        self.link, self.buffer = link, b""
        self.next_id, self.waiting, self.turns, self.sids = 0, {}, {}, {}

    async def send(self, message):
        await self.link.send.send(json.dumps({"jsonrpc": "2.0", **message}).encode() + b"\\n")

    async def request(self, method, params):
        self.next_id += 1
        ident, done = self.next_id, anyio.Event()
        self.waiting[ident] = [done, None]
        await self.send({"id": ident, "method": method, "params": params})
        await done.wait()
        return self.waiting.pop(ident)[1]

    async def reader(self):
        while True:
            while b"\\n" not in self.buffer:
                try:
                    self.buffer += await self.link.receive.receive()
                except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
                    return
            line, self.buffer = self.buffer.split(b"\\n", 1)
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if "id" in msg and "method" not in msg and msg["id"] in self.waiting:
                self.waiting[msg["id"]][1] = msg
                self.waiting[msg["id"]][0].set()
            elif msg.get("method") == "session/update":
                params = msg["params"]
                out = self.turns[params["sessionId"]]  # the defect: an unknown id raises
                if out is not None:
                    await out.update(params["update"])

    async def open_session(self, key, *, cwd, mcp_servers, model):
        reply = await self.request("session/new", {"cwd": cwd, "mcpServers": mcp_servers})
        self.sids[key] = sid = reply["result"]["sessionId"]
        self.turns[sid] = None

    async def prompt(self, key, text, out):
        sid = self.sids[key]
        self.turns[sid] = out
        prompt = [{"type": "text", "text": text}]
        reply = await self.request("session/prompt", {"sessionId": sid, "prompt": prompt})
        if "error" in reply:
            raise RuntimeError(reply["error"].get("message"))
        return reply["result"]["stopReason"]

    async def cancel(self, key):
        await self.send({"method": "session/cancel", "params": {"sessionId": self.sids[key]}})

    async def close(self, key):
        await self.request("session/close", {"sessionId": self.sids.pop(key)})


@asynccontextmanager
async def bridge(agent):
    async with agent.launcher.launch() as link, anyio.create_task_group() as tg:
        raw = RawBridge(link)
        tg.start_soon(raw.reader)
        await raw.request("initialize", {"protocolVersion": 1, "clientCapabilities": {}})
        yield raw
        tg.cancel_scope.cancel()
"""

# A bridge whose start fails in its own code (a configuration it cannot parse).
START_BRIDGE = """
from contextlib import asynccontextmanager


def parse_config(agent):
    return {"port": int(agent.extra.get("port", "not-a-port"))}


@asynccontextmanager
async def bridge(agent):
    config = parse_config(agent)
    yield config
"""

PYPROJECT = """
[tool.pytest.ini_options]
pythonpath = ["."]
"""


def _line(source: str, text: str) -> int:
    """The line of ``text`` in a module written by ``pytester.makepyfile`` (which strips ``source``)."""
    return next(n for n, line in enumerate(source.strip().splitlines(), 1) if text in line)


def _replay(output: str) -> list[str]:
    line = next(line for line in output.splitlines() if line.strip().startswith("replay:"))
    return shlex.split(line.split("replay:", 1)[1])


def _readme_block(heading: str) -> str:
    """The first fenced block after ``heading`` in the README."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index(heading) :]
    return section.split("```\n", 2)[1].rstrip("\n")


def _quiet_machinery(out: str) -> None:
    """None of the machinery around the bridge shows: no traceback, no frames of ours or anyio's."""
    assert "Traceback" not in out
    assert "event loop is not running" not in out
    for noise in ("hypothesis/", "anyio/", "pluggy/", "_pytest/", "pytest_acp/", "ExceptionGroup"):
        assert noise not in out, noise


def test_an_exception_in_the_bridges_own_task_is_a_short_report_of_its_own(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(raw_bridge=RAW_BRIDGE)
    pytester.makepyprojecttoml(PYPROJECT)
    args = ["--acp-sim", "--acp-bridge", "raw_bridge:bridge", "--acp-backend", "asyncio"]
    result = pytester.runpytest(*args, "--acp-examples", "30")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert len(out.splitlines()) < 80, out
    head = next(line for line in out.splitlines() if line.startswith("the bridge raised"))
    assert head.startswith("the bridge raised KeyError: '")
    assert "in its task" in head
    line = _line(RAW_BRIDGE, "self.turns[params")
    assert head.endswith(f"(raw_bridge.py:{line})"), head
    assert f"raw_bridge.py:{line} in reader" in out
    assert 'out = self.turns[params["sessionId"]]' in out
    # What provoked it, in the shrunk steps: an update for a session the bridge does not know, from the
    # foreign-update fault or from the agent's updates before its session/new answer.
    assert "foreign_session_update" in out or "session updates before session/new's answer" in out
    assert "steps (shrunk; virtual seconds since the run started):" in out
    # The step the bridge raised in (what provoked it) is among them, though it never finished.
    steps = out.split("steps (shrunk; virtual seconds since the run started):\n", 1)[1].split("\n\n", 1)[0]
    last = steps.splitlines()[-1]
    assert last.endswith(
        (
            "(under way when the bridge raised)",
            "end of run: drained, closed every session, stopped the bridge",
        )
    ), steps
    _quiet_machinery(out)
    # The README's "When the bridge itself raises" shows this very report.
    lines = out.splitlines()
    report = lines[
        lines.index(head) : next(n for n, line in enumerate(lines) if "short test summary" in line)
    ]
    assert _readme_block("### When the bridge itself raises") == "\n".join(report).rstrip("\n")
    replay = _replay(out)
    assert replay[:3] == ["pytest", "-k", "acp_properties and asyncio"]
    again = pytester.runpytest(*replay[1:])
    again.assert_outcomes(failed=1)
    assert head in again.stdout.str()


def test_a_bridge_that_raises_while_starting_gets_a_few_lines(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(start_bridge=START_BRIDGE)
    pytester.makepyprojecttoml(PYPROJECT)
    result = pytester.runpytest("--acp-sim", "--acp-bridge", "start_bridge:bridge", "--acp-backend", "trio")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    start = out.index("the bridge raised")
    report = out[start : out.index("short test summary")].strip().splitlines()
    assert len(report) < 20, report
    raised, called = _line(START_BRIDGE, "int(agent"), _line(START_BRIDGE, "= parse_config(")
    assert report[0] == (
        "the bridge raised ValueError: invalid literal for int() with base 10: 'not-a-port' "
        f"while starting (start_bridge.py:{raised})"
    )
    assert "bridge:  start_bridge:bridge (trio, virtual time)" in report
    assert f"  start_bridge.py:{called} in bridge" in report
    assert f"  start_bridge.py:{raised} in parse_config" in report
    assert any(line.startswith("replay:  pytest -k 'acp_properties and trio'") for line in report)
    _quiet_machinery(out)


def _save_state(bridge: StreamingBridge) -> None:
    raise OSError(f"read-only file system: could not save {len(bridge.sids)} session(s)")


@asynccontextmanager
async def _saves_on_stop(agent: AgentUnderTest) -> AsyncIterator[StreamingBridge]:
    """A raw-wire bridge whose own clean-up raises when it stops."""
    async with StreamingBridge.factory()(agent) as inner:
        yield inner
        _save_state(inner)


def test_a_bridge_that_raises_while_stopping_is_a_report_of_its_own() -> None:
    with pytest.raises(BridgeViolation) as caught:
        run_machine(machine_for(_saves_on_stop, backend="trio"), examples=2, seed=0, steps=12)
    report = str(caught.value)
    head = report.splitlines()[0]
    assert head.startswith("the bridge raised OSError: read-only file system: could not save 0 session(s) ")
    assert "while stopping" in head
    assert head.endswith(f"test_bridge_raised.py:{_save_state.__code__.co_firstlineno + 1})"), head
    assert "in _save_state" in report
    assert "in _saves_on_stop" in report
    steps = report.split("steps (shrunk; virtual seconds since the run started):\n", 1)[1].split("\n\n", 1)[0]
    assert steps.splitlines()[-1].endswith("end of run: drained, closed every session, stopped the bridge")
    # The failure needs every step before the end, which Hypothesis shrinks to its simplest rule:
    # that filler is one line saying how many, not a dozen identical ones.
    assert len(steps.splitlines()) <= 4, steps
    assert re.search(r"advance 0\.001 s  \(\d+ times, the last at \d+\.\d{6}\)$", steps, re.M), steps
    _quiet_machinery(report)
