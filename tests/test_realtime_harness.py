"""The real-time harness against a small JSON-lines sidecar written for these tests.

The sidecar (``tests/sidecars/acp_sidecar.py``) starts ``acp-sim agent`` itself, reads it on its
own thread and routes by ``sessionId`` like a desktop-app sidecar; each test switches on the one
defect it is about. Real processes on real time: each test keeps its waits to a few seconds.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any, ClassVar

import anyio
import pytest

from acp_sim import proctree
from acp_sim.profile import with_overrides
from acp_sim.scenario import load_scenario
from pytest_acp.harness.harness import Harness
from pytest_acp.harness.machine import DEFAULT_FAULTS, PropertyViolation
from pytest_acp.harness.realtime import (
    REALTIME_ADVANCE,
    REALTIME_PROFILE,
    realtime_harness,
    realtime_machine_for,
    run_realtime_machine,
    run_scenario_realtime,
    subprocess_agent,
    with_tool_calls,
)
from pytest_acp.harness.realtime_limits import RealTimeLimits, derive_limits
from pytest_acp.harness.subprocess_bridge import (
    REAL_TIME_CAPABILITIES,
    Ack,
    Action,
    Delta,
    End,
    Observation,
    Reply,
    SubprocessBridge,
    Update,
)
from pytest_acp.properties.violation import Violation
from pytest_acp.report.failure import RunContext
from pytest_acp.report.progress import Progress

pytestmark = pytest.mark.anyio
pytest_plugins = ["pytester"]
ONE_BACKEND = pytest.mark.parametrize("anyio_backend", ["asyncio"])
SIDECAR = Path(__file__).resolve().parent / "sidecars" / "acp_sidecar.py"
ACKS = {"ready": "start", "opened": "open", "interrupted": "cancel", "closed": "close"}


class Sidecar(SubprocessBridge):
    """The sidecar's mapping, as its user would write it. It never restarts its agent."""

    command = (sys.executable, str(SIDECAR))
    agent_env = "ACP_AGENT_CMD"
    acks = frozenset(ACKS.values())
    capabilities = REAL_TIME_CAPABILITIES.model_copy(update={"reconnects": False})
    exit_grace = 2.0
    ack_timeout = 10.0

    def request(self, action: Action) -> dict[str, Any] | None:
        kinds = {"open": "open", "prompt": "query", "cancel": "interrupt", "close": "close"}
        if action.kind not in kinds:
            return None
        return {"type": kinds[action.kind], "session": action.key, "cwd": action.cwd, "prompt": action.text}

    def observe(self, m: dict[str, Any]) -> Observation | None:
        key, kind = m.get("session"), m.get("type")
        if kind in ACKS:
            return Ack(ACKS[kind], key)  # type: ignore[arg-type]
        if kind == "text":
            return Delta(key, m["delta"])  # type: ignore[arg-type]
        if kind == "tool":
            status = {"status": m["status"]} if m.get("status") else {}
            return Update(key, {"sessionUpdate": m["phase"], "toolCallId": m["id"], **status})  # type: ignore[arg-type]
        if kind == "result":
            return End(key, m.get("stopReason"), error=m.get("error"))  # type: ignore[arg-type]
        if kind == "error" and key is not None:
            return Ack("open", key, error=m["message"])
        return None


def context(name: str) -> RunContext:
    return RunContext(seed=0, backend="asyncio", bridge="acp_sidecar", replay=f"pytest -k {name}")


# -- real-time wait limits (issue 16 item 9) -----------------------------------------------------


def test_real_time_limits_come_from_the_profile_and_the_bridges_timeouts() -> None:
    limits = derive_limits(REALTIME_PROFILE, REAL_TIME_CAPABILITIES, slow_read_delay=0.25)
    # Seconds, not the virtual-time constants (120 s per wait, 900 s drain) waited in real seconds.
    assert limits.settle < 30
    assert limits.drain < 60
    assert limits.settle < limits.start < 60  # the first opens also wait for the agent to start
    assert "derived" in limits.why
    # A bridge that declares a turn timeout is owed it (twice, plus a settle) before the drain gives up.
    timed = REAL_TIME_CAPABILITIES.model_copy(update={"turn_timeout": 40.0})
    harness = Harness(
        Sidecar.factory(), None, guard_processes=False, limits=derive_limits(REALTIME_PROFILE, timed)
    )  # type: ignore[arg-type]
    harness.capabilities = timed
    assert harness.drain_limit() == pytest.approx(80.0 + harness.limits.settle)
    # A slower agent gets longer limits; a user's setting wins over the derived one.
    slower = derive_limits(REALTIME_PROFILE.model_copy(), REAL_TIME_CAPABILITIES, slow_read_delay=1.0)
    assert slower.settle > limits.settle
    given = derive_limits(REALTIME_PROFILE, REAL_TIME_CAPABILITIES, given=RealTimeLimits.parse("drain=3"))
    assert (given.drain, given.settle) == (
        3.0,
        derive_limits(REALTIME_PROFILE, REAL_TIME_CAPABILITIES).settle,
    )
    assert "--acp-realtime-limits drain=3" in given.why
    with pytest.raises(ValueError, match="settle=S"):
        RealTimeLimits.parse("wait=3")


@ONE_BACKEND
async def test_a_hung_turn_ends_the_run_at_the_drain_limit_with_a_violation() -> None:
    """The sidecar never answers its first query. The drain gives up at its limit (not 900 s), and
    the turn is reported as never ended, although stopping the bridge then ended it."""
    limits = derive_limits(
        REALTIME_PROFILE, Sidecar.capabilities, given=RealTimeLimits(settle=1, drain=1.5, stop=2)
    )
    with subprocess_agent(seed=0) as agent:
        h = realtime_harness(Sidecar.factory(args=["hang-first-turn"]), agent, limits=limits)
        await h.start()
        try:
            key = h.open(cwd="/w")
            assert await h.wait_for(lambda: h.keys[key].status == "idle", 30)  # the agent starting
            h.prompt(key)
            assert not await h.wait_for(lambda: h.keys[key].running == 0)  # gives up after settle=1
        finally:
            await h.stop()
        violations = h.check(final=True)
    expired = [e for e in h.log.entries if e.kind == "drain_expired"]
    assert len(expired) == 1
    assert expired[0].detail["running"] == [{"key": key, "turn": 1}]  # type: ignore[index]
    hung = [v for v in violations if v.key == key and v.turn == 1 and v.property == "P4"]
    assert len(hung) == 1, violations
    assert "drain gave up after 1.5 s" in hung[0].message
    assert "--acp-realtime-limits" in hung[0].message


def test_a_long_machine_run_prints_its_progress() -> None:
    """Example n of N, the step number and the step, while the run goes on (here from the start)."""
    lines: list[str] = []
    progress = Progress(1, 6, write=lines.append, after=0, every=0, what="acp real time")
    # About progress lines, not about what a 6-step example exercised (min_effect=0).
    machine = realtime_machine_for(Sidecar.factory(), crashes=False, initial_sessions=1, min_effect=0)
    run_realtime_machine(machine, examples=1, steps=6, seed=3, context=context("progress"), progress=progress)
    assert lines, "no progress printed"
    assert lines[0].startswith("acp real time: example 1 of 1, step 1 of up to 6 (")
    assert "start(agent_seed=" in lines[0]
    assert any("open s1" in line for line in lines)


# -- cancel timing from when the bridge had the cancel (issue 16 item 7) ------------------------------

# Turns of six chunks 0.2 s apart: a cancel asked after the first chunk lands mid-turn.
STEADY = with_overrides(REALTIME_PROFILE, chunk_count=6, chunk_interval=0.2)


async def first_update(h: Harness, key: str, limit: float = 30.0) -> None:
    with anyio.fail_after(limit):
        while not any(e.kind == "update" and e.key == key for e in h.log.entries):  # noqa: ASYNC110 (no per-update event)
            await anyio.sleep(0.01)


@ONE_BACKEND
async def test_a_slow_process_scan_does_not_delay_a_cancel_into_a_false_p5(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A loaded machine's process-table scan (forced here: 2.5 s, more than the cancel slack) must not
    stand between the client's cancel and the bridge: the sidecar drops an interrupt for a turn
    that already ended, which the oracle would take for a cancel that never reached the agent."""
    scan = proctree.descendants
    slow = {"on": False}

    def slow_scan(pid: int) -> Any:
        if slow["on"]:
            time.sleep(2.5)
        return scan(pid)

    monkeypatch.setattr(proctree, "descendants", slow_scan)
    with subprocess_agent(seed=0, profile=STEADY) as agent:
        h = realtime_harness(Sidecar.factory(), agent)
        await h.start()
        try:
            key = h.open(cwd="/w")
            assert await h.wait_for(lambda: h.keys[key].status == "idle", 30)
            h.prompt(key)
            await first_update(h, key)
            slow["on"] = True
            h.cancel(key)
            assert await h.wait_for(lambda: h.keys[key].running == 0, 30)
            slow["on"] = False
        finally:
            await h.stop()
        violations = h.check(final=True)
    assert violations == []
    cancel = next(e for e in h.log.entries if e.kind == "cancel")
    assert cancel.detail is not None
    assert cancel.detail["received"] >= cancel.t  # when the bridge had it, next to when it was asked


@ONE_BACKEND
async def test_a_cancel_that_reached_the_bridge_after_the_turn_ended_is_not_p5() -> None:
    """The cancel is asked mid-turn but reaches the bridge only after the agent answered (a mapping
    that takes its time): the bridge rightly drops it. The oracle times the cancel from when the
    bridge received it, so this is no "cancel never reached the agent"."""

    class Slow(Sidecar):
        async def cancel(self, key: str) -> None:
            await anyio.sleep(2.5)  # longer than the cancel slack; the turn ends meanwhile
            await super().cancel(key)

    with subprocess_agent(seed=0, profile=STEADY) as agent:
        h = realtime_harness(Slow.factory(), agent)
        await h.start()
        try:
            key = h.open(cwd="/w")
            assert await h.wait_for(lambda: h.keys[key].status == "idle", 30)
            h.prompt(key)
            await first_update(h, key)
            h.cancel(key)
            assert await h.wait_for(lambda: h.keys[key].running == 0, 30)
            await anyio.sleep(3)  # the mapping's cancel runs on (the harness does not wait for cancels)
        finally:
            await h.stop()
        violations = h.check(final=True)
        (instance,) = agent.launcher.agents  # type: ignore[attr-defined]
    assert not [e for e in instance.trace.events if e.method == "session/cancel"]  # dropped, rightly
    assert violations == []
    cancel = next(e for e in h.log.entries if e.kind == "cancel")
    assert cancel.detail is not None
    assert cancel.detail["received"] >= cancel.t + 2.5  # stamped when the bridge process had it


# -- agent faults and crashes on real time (issue 25 item 2) ---------------------------------------


def caught_foreign_update(tmp_path: Path) -> PropertyViolation:
    """One session, so nothing but the agent's fault can show the defect: the sidecar hands an
    update for a session it never opened to the key it prompted last."""
    machine = realtime_machine_for(
        Sidecar.factory(args=["ignore-session-id"]),
        crashes=False,
        initial_sessions=1,
        max_sessions=1,
        fault_kinds=("foreign_session_update",),
    )
    with pytest.raises(PropertyViolation) as caught:
        run_realtime_machine(
            machine, examples=3, steps=8, seed=1, context=context("foreign"), export_dir=tmp_path
        )
    report = str(caught.value)
    assert "agent fault scheduled: foreign_session_update at agent launch 0" in report, report
    assert "[foreign]" in report, report  # the foreign text, delivered to a key of the caller
    return caught.value


def test_a_reader_that_ignores_session_ids_is_caught_and_replays_from_its_exported_scenario(
    tmp_path: Path,
) -> None:
    """Caught by a scheduled foreign update (issue 25 item 2). A seed does not reproduce a
    real-time example: the report's replay line plays the example's own steps, exported as a
    scenario file with its agent faults, and it fails the same way (issue 25 item 4)."""
    error = caught_foreign_update(tmp_path)
    path = error.scenario_path  # type: ignore[attr-defined]
    report = str(error)
    assert f"replay:  pytest {path} --acp-bridge " in report, report
    assert "(on real time a seed does not replay the example)" in report
    file = load_scenario(path)
    assert [f.kind for f in file.scenario.faults] == ["foreign_session_update"] * len(file.scenario.faults)
    assert file.scenario.faults
    assert not any("/tmp" in str(step) for step in file.scenario.script)  # the configured cwds
    replayed = run_scenario_realtime(file, Sidecar.factory(args=["ignore-session-id"]), bridge="sidecar")
    assert replayed.verdict == "failed", replayed.report()
    assert error.violations[0].property in {v.property for v in replayed.failures}, replayed.report()


def test_scheduled_faults_are_command_line_specs_per_launch() -> None:
    from acp_sim.faults import parse_fault_spec
    from pytest_acp.harness.realtime_faults import schedule_faults

    faults = schedule_faults(("stall", "error_reply"), [(0, 1, 3), (1, 0, 2)], scale=0.5, launches=2)
    parsed = [parse_fault_spec(f.compact()) for f in faults]
    assert [(f.kind, f.launch, f.after, f.direction) for f in parsed] == [
        ("stall", 1, 3, "send"),
        ("error_reply", 0, 2, "recv"),
    ]
    assert parsed[0].seconds == 20.0  # type: ignore[union-attr]  # 40 virtual seconds, scaled
    assert parsed[1].method == "session/prompt"
    assert faults[0].seconds == 20.0
    assert schedule_faults(("stall",), [(0, 1, 3)], scale=1, launches=1)[0].spec["launch"] == 0
    # Every kind the machine injects makes a spec the agent accepts (a bad one would stop its start).
    for pick in range(len(DEFAULT_FAULTS)):
        for after in (1, 7):
            (fault,) = schedule_faults(DEFAULT_FAULTS, [(pick, 0, after)], scale=0.1, launches=2)
            parse_fault_spec(fault.compact())


def test_bridges_that_do_not_reconnect_are_crashed_too() -> None:
    """The crash rule no longer skips a bridge that declares ``reconnects=False`` (it must then fail
    the key's turns promptly, which the oracle judges)."""
    from types import SimpleNamespace

    from pytest_acp.adapter import BridgeCapabilities
    from pytest_acp.harness.realtime import RealTimeMachine

    (allowed,) = RealTimeMachine.crash_agent.hypothesis_stateful_rule.preconditions  # type: ignore[attr-defined]
    alive = SimpleNamespace(alive=lambda: True)
    for reconnects in (True, False):
        h = SimpleNamespace(
            capabilities=BridgeCapabilities(reconnects=reconnects),
            agent=SimpleNamespace(launcher=SimpleNamespace(agents=[alive])),
        )
        machine = SimpleNamespace(crashes=True, h=h, _crashed=0, max_crashes=2)
        assert allowed(machine), f"reconnects={reconnects}"


# -- cwds under the run's own temporary root (issue 16 item 12) ---------------------------------------------


def test_real_time_runs_open_sessions_in_the_runs_own_directories() -> None:
    seen: list[tuple[str, bool]] = []

    class Recording(Sidecar):
        def request(self, action: Action) -> dict[str, Any] | None:
            if action.kind == "open" and action.cwd is not None:
                seen.append((action.cwd, Path(action.cwd).is_dir()))
            return super().request(action)

    # About where sessions open, not about what a 2-step example exercised (min_effect=0).
    machine = realtime_machine_for(Recording.factory(), crashes=False, initial_sessions=2, min_effect=0)
    run_realtime_machine(machine, examples=1, steps=2, seed=0, context=context("cwds"))
    assert len(seen) >= 2
    for cwd, existed in seen:
        assert not cwd.startswith(("/work/alpha", "/work/beta")), cwd
        assert Path(cwd).is_relative_to(tempfile.gettempdir()), cwd
        assert existed, f"{cwd} did not exist when the bridge was asked to open it"
        assert not Path(cwd).exists()  # removed with the run


# -- a mapping that answers the bridge; tool calls on real time (issue 16 item 13) ---------------------------


class Relaying(Sidecar):
    """The sidecar relays the agent's permission requests to its app: the mapping answers as the
    app would (allow once), with a ``Reply``."""

    asked: ClassVar[list[dict[str, Any]]] = []

    def observe(self, m: dict[str, Any]) -> Observation | None:
        if m.get("type") == "permission":
            type(self).asked.append(m)
            allow = next(o for o in m["options"] if o.startswith("allow"))
            return Reply({"type": "permission_answer", "id": m["id"], "optionId": allow})
        return super().observe(m)


@ONE_BACKEND
async def test_a_bridge_that_relays_a_permission_request_gets_the_apps_answer() -> None:
    with subprocess_agent(seed=0, profile=with_tool_calls(STEADY)) as agent:
        h = realtime_harness(Relaying.factory(args=["relay-permission"]), agent)
        await h.start()
        try:
            key = h.open(cwd="/w")
            assert await h.wait_for(lambda: h.keys[key].status == "idle", 30)
            h.prompt(key)
            assert await h.wait_for(lambda: h.keys[key].running == 0, 30)
        finally:
            await h.stop()
        violations = h.check(final=True)
        (instance,) = agent.launcher.agents  # type: ignore[attr-defined]
    assert violations == []
    assert len(Relaying.asked) == 1
    end = next(e for e in h.log.entries if e.kind == "end")
    assert end.stop_reason == "end_turn"
    statuses = [(e.raw or {}).get("status") for e in h.log.entries if e.update_kind == "tool_call_update"]
    assert "completed" in statuses  # allowed: the tool ran (a reject would have failed it)
    answered = [
        e for e in instance.trace.events if e.kind == "recv" and e.method == "session/request_permission"
    ]
    assert answered, [(e.kind, e.method) for e in instance.trace.events]


def test_the_real_time_machine_can_run_tool_calls() -> None:
    machine = realtime_machine_for(Relaying.factory(args=["relay-permission"]), tool_calls=True)
    profile = machine().agent_profile()
    (tool,) = profile.models["default"].turn.tool_calls
    assert tool.permission
    assert not REALTIME_PROFILE.models["default"].turn.tool_calls  # off unless asked for


# -- shrinking on real time (issue 16 item 10) ---------------------------------------------------------------


def test_shrinking_on_real_time_is_bounded_and_says_what_it_did() -> None:
    """Every turn ends with the wrong stop reason. Shrinking runs within its real-time budget, and the
    report says whether the steps shown were shrunk (never "not shrunk" after a shrink)."""
    machine = realtime_machine_for(Sidecar.factory(args=["wrong-stop"]), crashes=False, initial_sessions=1)
    with pytest.raises(PropertyViolation) as caught:
        run_realtime_machine(
            machine, examples=2, steps=6, seed=2, shrink=True, shrink_budget=3, context=context("shrink")
        )
    report = str(caught.value)
    assert "not shrunk" not in report, report
    assert "cut short by its real-time budget of 3 s" in report, report
    if caught.value.shrunk:  # type: ignore[attr-defined]
        assert "steps (shrunk from " in report, report
    else:
        assert "steps (as generated: shrinking found no smaller example failing the same way" in report
    steps = report.split("steps (", 1)[1].split("\n\n", 1)[0]
    assert "not started" not in steps  # the budget's no-op examples never become the counterexample


# -- what the suite cannot attribute (issue 25 item 6) -------------------------------------------------


async def _crash_mid_turn(sidecar: type[Sidecar], **options: Any) -> tuple[Harness, str, list[Violation]]:
    """One key's turn under way when the agent is killed; the sidecar never restarts it, so the turn
    is still running when the harness stops the bridge. The harness, the key and the final verdict."""
    limits = derive_limits(STEADY, sidecar.capabilities, given=RealTimeLimits(settle=1, drain=1.5, stop=2))
    with subprocess_agent(seed=0, profile=STEADY) as agent:
        h = realtime_harness(sidecar.factory(**options), agent, limits=limits)
        await h.start()
        try:
            key = h.open(cwd="/w")
            assert await h.wait_for(lambda: h.keys[key].status == "idle", 30)
            h.prompt(key)
            await first_update(h, key)
            h.crash()
            assert not await h.wait_for(lambda: h.keys[key].running == 0)
        finally:
            await h.stop()
        return h, key, h.check(final=True)


@ONE_BACKEND
async def test_output_with_no_key_is_reported_with_the_turns_it_left_hanging() -> None:
    """The agent dies; the sidecar never restarts it, says so on a line with no session key (which
    its mapping, like most, maps to nothing) and leaves the running turn hanging. The banner line
    that is not JSON is logged too."""
    h, key, violations = await _crash_mid_turn(Sidecar, args=["noise"])
    notes = [(e.detail or {}).get("what") for e in h.log.entries if e.kind == "unattributed"]
    assert "noise" in notes
    said = [e.text for e in h.log.entries if e.kind == "unattributed" and e.detail == {"what": "ignored"}]
    assert '{"type":"error","message":"the agent exited"}' in said
    hung = [v for v in violations if v.key == key and v.turn == 1 and "drain gave up" in v.message]
    assert len(hung) == 1, violations
    assert (
        'Meanwhile the bridge said, with no session key: \'{"type":"error","message":"the agent exited"}\''
        in (hung[0].message)
    )
    from pytest_acp.report.failure import timeline

    shown = timeline(h.instances(), h.log.entries, h.capabilities)
    assert "no key: 'sidecar 1.0 starting'" in shown


# -- a sidecar that claims to reconnect and never does (issue 16 item 1) ---------------------------------


class ClaimsToReconnect(Sidecar):
    """The production bridge's defect: it declares ``reconnects=True`` but never starts a new agent,
    and its error line carries no session key, so the running turn waits until the harness stops
    the bridge (whose exit then ends the turn)."""

    capabilities = REAL_TIME_CAPABILITIES.model_copy(update={"reconnects": True})


@ONE_BACKEND
async def test_a_sidecar_that_never_restarts_its_agent_is_p6_though_its_exit_ended_the_turn() -> None:
    h, key, violations = await _crash_mid_turn(ClaimsToReconnect)
    (end,) = [e for e in h.log.entries if e.kind == "end"]
    assert end.error is not None  # the bridge's exit at teardown ended it: no pass for that
    assert end.detail == {"teardown": True}
    (v,) = [v for v in violations if v.key == key and v.turn == 1]
    assert v.property == "P6", violations
    assert "never ended: no reconnect after the agent died at t=" in v.message
    assert "only the harness's teardown ended it (the bridge exited" in v.message


# -- real-time steps spent on actions (issue 25 item 7) ------------------------------------------------------


@ONE_BACKEND
async def test_a_real_time_wait_ends_when_a_turn_ends() -> None:
    """A wait step is cut short by what it waits for (a turn ending), and logged as the time it took,
    so no step is a millisecond wait that let nothing happen."""
    assert min(REALTIME_ADVANCE) >= 0.05
    with subprocess_agent(seed=0, profile=STEADY) as agent:
        h = realtime_harness(Sidecar.factory(), agent)
        await h.start()
        try:
            key = h.open(cwd="/w")
            assert await h.wait_for(lambda: h.keys[key].status == "idle", 30)
            h.prompt(key)
            waited, changed = await h.advance_until_change(60)
        finally:
            await h.stop()
    assert changed
    assert h.keys[key].turns == 1
    end = next(e for e in h.log.entries if e.kind == "end")
    advance = next(e for e in h.log.entries if e.kind == "advance")
    assert advance.detail == {"seconds": waited}
    assert advance.t + waited >= end.t  # it waited for the end, and no longer than its own record


def test_the_timeline_puts_a_delivery_after_the_send_it_passes_on() -> None:
    """Stamped 0.5 ms before the agent's send (two processes' clocks): shown after it, with its own time."""
    from pytest_acp.report.failure import _by_cause

    rows = [
        (7.1000, 2, "bridge  t1 agent_message_chunk '[a t1 c0] one '"),
        (7.1005, 1, "agent<  t1 agent_message_chunk '[a t1 c0] one '"),
        (7.0990, 2, "client  t1 prompt task-0001"),
        (7.2000, 2, "bridge  t1 agent_message_chunk '[a t1 c1] two '"),
        (7.1900, 1, "agent<  t1 agent_message_chunk '[a t1 c1] two '"),
    ]
    ordered = [text for _, _, text in sorted(rows, key=_by_cause(rows))]
    assert ordered == [rows[2][2], rows[1][2], rows[0][2], rows[4][2], rows[3][2]]


@ONE_BACKEND
async def test_every_session_is_attributable_with_a_directory_per_open(tmp_path: Path) -> None:
    """Two opens at once in one project, never prompted, closed by a sidecar that never sends
    ``session/close``: with a directory per open each agent session is tied to its key by its cwd,
    so both leaks are judged (with one shared cwd neither could be)."""
    with subprocess_agent(seed=0) as agent:
        h = realtime_harness(Sidecar.factory(args=["no-session-close"]), agent)
        await h.start()
        h.distinct_cwds = True
        try:
            keys = [h.open(cwd=str(tmp_path)), h.open(cwd=str(tmp_path))]
            assert await h.wait_for(lambda: all(h.keys[k].status == "idle" for k in keys), 30)
            for key in keys:
                h.close(key)
            assert await h.wait_for(lambda: not h.busy(), 30)
        finally:
            await h.stop()
        violations = h.check(final=True)
    assert [h.keys[k].cwd for k in keys] == [str(tmp_path / k) for k in keys]
    assert all((tmp_path / k).is_dir() for k in keys)
    leaks = sorted(v.key for v in violations if v.property == "P6" and "never closed" in v.message)
    assert leaks == sorted(keys), violations


def test_real_time_limits_and_progress_are_options_and_ini_keys(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nacp_realtime_limits = settle=4\nacp_progress = 0\n")
    pytester.makepyfile(
        """
        def test_options(acp_options):
            print("LIMITS", acp_options.realtime_limits, acp_options.progress_after)
        """
    )
    result = pytester.runpytest("-s", "--acp-realtime-limits", "drain=30,stop=5")
    result.stdout.fnmatch_lines(["*LIMITS RealTimeLimits(settle=None, drain=30.0, stop=5.0) None*"])
    result = pytester.runpytest("-s")
    result.stdout.fnmatch_lines(["*LIMITS RealTimeLimits(settle=4.0, drain=None, stop=None) None*"])
    result = pytester.runpytest("--acp-realtime-limits", "wait=3")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--acp-realtime-limits: expected settle=S, drain=S or stop=S*"])
