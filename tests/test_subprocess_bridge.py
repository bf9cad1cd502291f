"""The subprocess-bridge adapter and the trace collector, against small bridges written here.

The fake bridge below is a real process speaking a JSON-lines protocol (stdlib only), with
switches for the ways a bridge goes wrong: dying mid-turn, ignoring EOF, leaving a child behind,
writing noise. The real cross-language example is tested in ``test_ts_bridge.py``. Real
processes: real time, both backends.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import anyio
import pytest

from acp_sim import proctree
from acp_sim.trace_collector import START_KIND, TraceCollector
from pytest_acp.adapter import AgentUnderTest, DeliveryLog, TurnOutput
from pytest_acp.harness.realtime import REALTIME_PROFILE, realtime_harness, scale_profile, subprocess_agent
from pytest_acp.harness.subprocess_bridge import (
    Ack,
    Action,
    BridgeActionFailed,
    BridgeExited,
    Delta,
    End,
    Observation,
    SubprocessBridge,
)

pytestmark = pytest.mark.anyio
REAL_TIME = pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
# Tests that wait out grace periods (real seconds) run on one backend: the waiting is not backend code.
ONE_BACKEND = pytest.mark.parametrize("anyio_backend", ["asyncio"])

FAKE_BRIDGE = textwrap.dedent(
    """
    import json, os, subprocess, sys, time
    modes = set(sys.argv[1:])
    def out(**m):
        sys.stdout.write(json.dumps(m) + "\\n"); sys.stdout.flush()
    print("fake bridge up", file=sys.stderr, flush=True)
    agent = os.environ.get("ACP_AGENT_CMD")
    out(type="ready", agent=agent, argv=sys.argv[1:])
    if "noise" in modes:
        print("not json at all", flush=True)
    children = []
    for line in sys.stdin:
        m = json.loads(line)
        kind, key = m["type"], m.get("session")
        if kind == "open":
            if m["cwd"] == "/refused":
                out(type="error", session=key, message="no such project")
                continue
            if "leak" in modes:
                children.append(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]))
            out(type="opened", session=key)
        elif kind == "query":
            if "silent" in modes:  # lost its agent: says nothing for the key again (a hung turn)
                continue
            out(type="text", session=key, delta=key + ":a")
            if "die-mid-turn" in modes:
                print("boom: out of memory", file=sys.stderr, flush=True)
                os._exit(3)
            out(type="text", session=key, delta=key + ":b")
            out(type="result", session=key, stopReason="end_turn", usage={"input_tokens": 2})
            if "stray" in modes:
                out(type="text", session=key, delta=key + ":late")
        elif kind == "interrupt":
            out(type="interrupted", session=key)
        elif kind == "close":
            out(type="closed", session=key)
    if "ignore-eof" in modes:
        time.sleep(60)
    """
)


class FakeBridge(SubprocessBridge):
    """The adapter of the fake bridge: its mapping, as a user would write it."""

    agent_env = "ACP_AGENT_CMD"
    acks = frozenset({"start", "open", "cancel", "close"})
    exit_grace = 1.0
    ack_timeout = 20.0

    def request(self, action: Action) -> dict[str, Any] | None:
        kinds = {"open": "open", "prompt": "query", "cancel": "interrupt", "close": "close"}
        if action.kind not in kinds:
            return None
        return {"type": kinds[action.kind], "session": action.key, "cwd": action.cwd, "prompt": action.text}

    def observe(self, m: dict[str, Any]) -> Observation | None:
        key = m.get("session")
        acks = {"ready": "start", "opened": "open", "interrupted": "cancel", "closed": "close"}
        if m["type"] in acks:
            return Ack(acks[m["type"]], key)  # type: ignore[arg-type]
        if m["type"] == "error":
            return Ack("open", key, error=m["message"])
        if m["type"] == "text":
            return Delta(key, m["delta"])
        if m["type"] == "result":
            return End(key, m["stopReason"], m.get("usage"))
        return None


@pytest.fixture
def fake_bridge(tmp_path: Path) -> type[FakeBridge]:
    script = tmp_path / "fake_bridge.py"
    script.write_text(FAKE_BRIDGE, encoding="utf-8")
    return type("Fake", (FakeBridge,), {"command": (sys.executable, str(script))})


def agent_for_fake(tmp_path: Path, **extra: Any) -> AgentUnderTest:
    from acp_sim.agent import InProcessAgent

    # The fake bridge never runs the agent: any command will do, and no trace is expected.
    return AgentUnderTest(
        InProcessAgent(), command=["agent-cmd", "--flag", "two words"], virtual_time=False, extra=dict(extra)
    )


async def run_turn(adapter: SubprocessBridge, key: str, log: DeliveryLog, turn: int = 1) -> Any:
    return await adapter.prompt(key, f"prompt {turn}", TurnOutput(log, key, turn))


def texts(log: DeliveryLog, key: str | None = None) -> list[tuple[str | None, int | None, str | None]]:
    return [
        (e.key, e.turn, e.text) for e in log.entries if e.kind == "update" and (key is None or e.key == key)
    ]


# -- the adapter --------------------------------------------------------------------------------------


@REAL_TIME
async def test_maps_actions_and_messages_per_key(fake_bridge: type[FakeBridge], tmp_path: Path) -> None:
    log = DeliveryLog()
    async with fake_bridge.factory(args=["stray"])(agent_for_fake(tmp_path)) as adapter:
        await adapter.open_session("a", cwd="/w", mcp_servers=[], model=None)
        await adapter.open_session("b", cwd="/w", mcp_servers=[], model=None)
        async with anyio.create_task_group() as tg:
            for key in ("a", "b"):
                tg.start_soon(run_turn, adapter, key, log)
        # The bridge writes a stray delta after each result; let both arrive before turn 2 starts.
        with anyio.fail_after(20):
            while len([t for t in texts(log) if str(t[2]).endswith(":late")]) < 2:  # noqa: ASYNC110
                await anyio.sleep(0.01)  # another process writes it: nothing here to wait on
        end = await run_turn(adapter, "a", log, turn=2)
        await adapter.cancel("a")
        await adapter.close("a")
        # The bridge's own argv and the injected agent command, as the bridge saw them.
        assert adapter.stderr_tail[0] == "fake bridge up"
    assert end.stop_reason == "end_turn"
    assert end.usage == {"input_tokens": 2}
    assert [t for t in texts(log, "a") if t[2] and not t[2].endswith(":late")] == [
        ("a", 1, "a:a"),
        ("a", 1, "a:b"),
        ("a", 2, "a:a"),
        ("a", 2, "a:b"),
    ]
    # A delta after the turn's result goes to that turn (where an app would show it), never the next.
    late = [t for t in texts(log) if t[2] and t[2].endswith(":late")]
    assert ("b", 1, "b:late") in late
    assert ("a", 1, "a:late") in late
    assert ("a", 2, "a:late") in late  # turn 2's stray came after the adapter had left it
    assert adapter.returncode == 0
    assert not adapter.forced_stop


@REAL_TIME
async def test_agent_command_injected_by_environment_or_argument(tmp_path: Path) -> None:
    script = tmp_path / "echo_bridge.py"
    script.write_text(
        "import json, os, sys\n"
        "ready = {'type': 'ready', 'env': os.environ.get('AGENT'), 'argv': sys.argv[1:]}\n"
        "print(json.dumps(ready), flush=True)\n"
        "sys.stdin.read()\n",
        encoding="utf-8",
    )
    seen: list[dict[str, Any]] = []

    class Echo(FakeBridge):
        command = (sys.executable, str(script))
        agent_env = "AGENT"
        agent_arg = "--agent"
        agent_format = "shell"
        acks = frozenset({"start"})

        def observe(self, m: dict[str, Any]) -> Observation | None:
            seen.append(m)
            return Ack("start")

    async with Echo.factory(args=["--verbose"])(agent_for_fake(tmp_path)):
        pass
    shell = "agent-cmd --flag 'two words'"
    assert seen == [{"type": "ready", "env": shell, "argv": ["--verbose", "--agent", shell]}]


@REAL_TIME
async def test_an_action_the_bridge_refuses_fails_with_its_message(
    fake_bridge: type[FakeBridge], tmp_path: Path
) -> None:
    async with fake_bridge.factory(args=["noise"])(agent_for_fake(tmp_path)) as adapter:
        with pytest.raises(BridgeActionFailed, match="no such project"):
            await adapter.open_session("a", cwd="/refused", mcp_servers=[], model=None)
    assert adapter.noise == ["not json at all"]


@REAL_TIME
async def test_bridge_dying_mid_turn_fails_the_turn_and_later_actions(
    fake_bridge: type[FakeBridge], tmp_path: Path
) -> None:
    log = DeliveryLog()
    async with fake_bridge.factory(args=["die-mid-turn"])(agent_for_fake(tmp_path)) as adapter:
        await adapter.open_session("a", cwd="/w", mcp_servers=[], model=None)
        end = await run_turn(adapter, "a", log)
        with pytest.raises(BridgeExited, match="code 3"):
            await adapter.open_session("b", cwd="/w", mcp_servers=[], model=None)
        late = await run_turn(adapter, "a", log, turn=2)
    assert texts(log) == [("a", 1, "a:a")]
    assert end.error is not None
    assert "exited with code 3" in end.error
    assert "boom: out of memory" in end.error  # the bridge's last stderr lines name the cause
    assert late.error == end.error


@REAL_TIME
async def test_killed_bridge_is_reported_with_the_signal(
    fake_bridge: type[FakeBridge], tmp_path: Path
) -> None:
    async with fake_bridge.factory()(agent_for_fake(tmp_path)) as adapter:
        await adapter.open_session("a", cwd="/w", mcp_servers=[], model=None)
        adapter.kill()
        end = await run_turn(adapter, "a", DeliveryLog())
    assert end.error is not None
    assert "killed by SIGKILL" in end.error


@ONE_BACKEND
async def test_bridge_ignoring_eof_is_stopped_by_force(fake_bridge: type[FakeBridge], tmp_path: Path) -> None:
    async with fake_bridge.factory(args=["ignore-eof"])(agent_for_fake(tmp_path)) as adapter:
        pid = adapter.process.pid if adapter.process else 0
    assert adapter.forced_stop
    assert adapter.returncode == -signal.SIGTERM
    assert proctree.info(pid) is None


@ONE_BACKEND
async def test_children_left_by_the_bridge_are_killed_and_listed_without_a_guard(
    fake_bridge: type[FakeBridge], tmp_path: Path
) -> None:
    async with fake_bridge.factory(args=["leak"])(agent_for_fake(tmp_path)) as adapter:
        await adapter.open_session("a", cwd="/w", mcp_servers=[], model=None)
    assert [p.cmdline[-1] for p in adapter.leftovers] == ["import time; time.sleep(60)"]
    assert proctree.alive([p.pid for p in adapter.leftovers]) == []


@ONE_BACKEND
async def test_children_left_by_the_bridge_are_a_p6_violation_under_the_harness(
    fake_bridge: type[FakeBridge], tmp_path: Path
) -> None:
    with subprocess_agent() as agent:
        harness = realtime_harness(fake_bridge.factory(args=["leak"]), agent)
        await harness.start()
        harness.open(cwd="/w")
        await harness.wait_idle(20)
        await harness.stop()
        violations = [v for v in harness.check(final=True) if v.property == "P6"]
    assert len(violations) == 1
    assert "left running after the bridge stopped" in violations[0].message
    assert "time.sleep(60)" in violations[0].message


@ONE_BACKEND
async def test_a_turn_only_the_harness_teardown_ended_never_ended(
    fake_bridge: type[FakeBridge], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The turn hangs; after the drain the harness closes the key and stops the bridge, whose exit
    # ends the turn ("the bridge exited"). The caller would still be waiting: never ended (P4).
    monkeypatch.setattr("pytest_acp.harness.harness.STOP_LIMIT", 0.5)
    with subprocess_agent() as agent:
        harness = realtime_harness(fake_bridge.factory(args=["silent"]), agent)
        harness.drain_limit = lambda: 0.5  # type: ignore[method-assign]
        await harness.start()
        key = harness.open(cwd="/w")
        await harness.wait_idle(20)
        harness.prompt(key)
        await harness.stop()
        found = harness.check(final=True)
    (end,) = [e for e in harness._log.entries if e.kind == "end"]
    assert end.error is not None
    assert "the bridge exited" in end.error
    assert end.detail == {"teardown": True}
    (v,) = found
    assert v.property == "P4"
    assert v.message.startswith("never ended (no timeout ended it); still running when the end-of-run drain")
    assert "; only the harness's teardown ended it (the bridge exited" in v.message


def test_refuses_virtual_time_and_a_missing_agent_command(fake_bridge: type[FakeBridge]) -> None:
    from acp_sim.agent import InProcessAgent

    with pytest.raises(TypeError, match="real time"):
        fake_bridge(AgentUnderTest(InProcessAgent(), command=["x"], virtual_time=True))
    with pytest.raises(TypeError, match="needs an agent command"):
        fake_bridge(AgentUnderTest(InProcessAgent(), command=None, virtual_time=False))


@REAL_TIME
async def test_a_bridge_that_cannot_start_says_why(tmp_path: Path) -> None:
    class Missing(FakeBridge):
        command = (str(tmp_path / "no-such-bridge"),)

    with pytest.raises(BridgeExited, match="cannot start the bridge"):
        async with Missing.factory()(agent_for_fake(tmp_path)):
            pass

    class Crashing(FakeBridge):
        command = (sys.executable, "-c", "import sys; sys.exit('node_modules missing: run npm install')")

    with pytest.raises(BridgeExited, match="node_modules missing"):
        async with Crashing.factory()(agent_for_fake(tmp_path)):
            pass


# -- the trace collector and --trace-to ----------------------------------------------------------------

AGENT_FAST = ["--session-new-latency", "0.01", "--chunks", "3", "--chunk-interval", "0.01"]


def speak(command: list[str], messages: list[dict[str, Any]], replies: int) -> subprocess.Popen[str]:
    """Start an agent, send ``messages``, read ``replies`` lines; the caller ends the process."""
    proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdin is not None
    assert proc.stdout is not None
    for message in messages:
        proc.stdin.write(json.dumps(message) + "\n")
    proc.stdin.flush()
    for _ in range(replies):
        proc.stdout.readline()
    return proc


HELLO = [
    {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": 1, "clientCapabilities": {}},
    },
    {"jsonrpc": "2.0", "id": 2, "method": "session/new", "params": {"cwd": "/w", "mcpServers": []}},
]


def test_every_instance_reaches_its_own_run_even_when_killed(tmp_path: Path) -> None:
    with TraceCollector(run_id="run-a") as a, TraceCollector(tmp_path / "b", run_id="run-b") as b:
        first = speak(a.agent_command(extra=AGENT_FAST), HELLO, 2)
        other = speak(b.agent_command(extra=AGENT_FAST), HELLO, 2)
        second = speak(a.agent_command(extra=AGENT_FAST), HELLO[:1], 1)
        # The reply is on the wire a moment before its trace line: wait for the line, then kill.
        assert proctree.wait_for(lambda: len(a.agents) == 2 and len(a.agents[1].trace.events) == 3, 30)
        killed = a.crash()  # the newest instance of run a: SIGKILL, no chance to clean up
        assert killed == second.pid
        second.wait()
        assert a.crash() is None  # nothing alive to crash any more
        for proc in (first, other):
            assert proc.stdin is not None
            proc.stdin.close()
            proc.wait()
        # A file claimed in run a's directory by another run's agent is ignored, not mixed in.
        stray = a.path / "agent-0007.jsonl"
        stray.write_text(
            json.dumps({"seq": 0, "t": 0.0, "kind": START_KIND, "detail": {"run": "run-b"}}) + "\n"
        )
        runs_a, runs_b = a.agents, b.agents
        assert [i.pid for i in runs_a] == [first.pid, second.pid]
        assert [i.pid for i in runs_b] == [other.pid]
        assert a.foreign == [stray]
        assert [i.exit_reason for i in runs_a] == ["eof", "killed"]
        kinds = [[e.kind for e in i.trace.events] for i in runs_a]
        assert kinds[0] == [START_KIND, "recv", "recv", "send", "send", "exit"]
        # Killed right after answering initialize: everything it wrote is there, nothing torn.
        assert kinds[1] == [START_KIND, "recv", "send"]
        assert runs_a[1].torn == b""
        assert [e.seq for e in runs_a[0].trace.events] == list(range(6))
        # Same events as the agent's own --trace file would hold: the collector adds nothing.
        start = runs_a[0].trace.events[0].detail or {}
        assert start["run"] == "run-a"
        assert start["instance"] == 0
        assert start["launch"] == 0
        assert runs_a[1].trace.events[0].detail["launch"] == 1  # type: ignore[index]
        path = a.path
    assert not path.exists()  # the run directory goes with the collector
    assert (tmp_path / "b").exists()  # a directory the caller named stays


def test_instance_clock_maps_onto_this_process(tmp_path: Path) -> None:
    import time

    with TraceCollector(tmp_path) as collector:
        before = time.monotonic()
        proc = speak(collector.agent_command(extra=AGENT_FAST), HELLO, 2)
        after = time.monotonic()
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait()
        (instance,) = collector.agents
        # The agent's time origin (from its agent_start) lies between our start and its answers.
        assert before <= instance.clock.origin <= after
        last = instance.trace.events[-1]
        assert instance.clock.origin + last.t <= time.monotonic()


def test_trace_to_refuses_a_directory_that_is_not_a_run(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "acp_sim", "agent", "--trace-to", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "not a trace run directory" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_trace_to_from_the_environment_and_alongside_trace(tmp_path: Path) -> None:
    with TraceCollector(tmp_path / "run") as collector:
        own = tmp_path / "own.jsonl"
        command = [sys.executable, "-m", "acp_sim", "agent", "--trace", str(own), *AGENT_FAST]
        env = {**os.environ, **collector.env}
        proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        assert proc.stdin is not None
        assert proc.stdout is not None
        for message in HELLO:
            proc.stdin.write(json.dumps(message) + "\n")
        proc.stdin.close()
        proc.stdout.read()
        proc.wait()
        (instance,) = collector.agents
        lines = own.read_text().splitlines()
        assert [e.to_json() for e in instance.trace.events] == lines


def test_partial_lines_wait_for_their_end(tmp_path: Path) -> None:
    with TraceCollector(tmp_path) as collector:
        path = tmp_path / "agent-0000.jsonl"
        start = {
            "seq": 0,
            "t": 0.0,
            "kind": START_KIND,
            "detail": {"run": collector.run_id, "pid": 1, "monotonic": 1},
        }
        event = json.dumps({"seq": 1, "t": 0.5, "kind": "recv", "method": "initialize"})
        path.write_text(json.dumps(start) + "\n" + event[:10])
        (instance,) = collector.agents
        assert len(instance.trace.events) == 1
        assert instance.torn == event[:10].encode()
        with path.open("a") as stream:
            stream.write(event[10:] + "\n")
        assert [e.method for e in collector.agents[0].trace.events] == [None, "initialize"]
        assert instance.torn == b""


def test_scale_profile_scales_every_latency() -> None:
    fast = scale_profile(REALTIME_PROFILE, 0.5)
    model, base = fast.models["default"], REALTIME_PROFILE.models["default"]
    assert model.session_new_cold.median == pytest.approx(base.session_new_cold.median * 0.5)  # type: ignore[union-attr]
    assert model.turn.chunk_interval.high == pytest.approx(base.turn.chunk_interval.high * 0.5)  # type: ignore[union-attr]
    assert model.turn.chunk_count == base.turn.chunk_count
    assert fast.name.endswith("x0.5")


# -- the README section ------------------------------------------------------------------------------


def readme_section() -> str:
    from .conftest import REPO

    text = (REPO / "README.md").read_text(encoding="utf-8")
    start = text.index("## Testing a bridge written in another language")
    return text[start : text.index("\n## ", start + 1)]


def test_readme_section_runs_and_matches_the_code(capsys: pytest.CaptureFixture[str]) -> None:
    import re

    from .conftest import REPO

    section = readme_section()
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    namespace: dict[str, Any] = {"subprocess_agent": subprocess_agent}
    exec(compile(blocks[0], "README.md", "exec"), namespace)  # the agent command, as printed
    out = capsys.readouterr().out
    assert "--trace-to" in out
    assert "--state-dir" in out
    assert "[]" in out  # no instance yet: nothing was started
    # The install line is the one .ci/run runs, and the example adapter is as short as promised.
    assert "npm install --prefix examples/ts-bridge --no-audit --no-fund --no-package-lock" in section
    assert '--prefix "$PWD/examples/ts-bridge"' in (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert len((REPO / "examples" / "ts_bridge_adapter.py").read_text(encoding="utf-8").splitlines()) < 60
    from pytest_acp.harness import realtime

    for name in ("realtime_machine_for", "run_realtime_machine", "run_scenario_realtime", "scale_profile"):
        assert name in section
        assert hasattr(realtime, name)
