"""What ``pytest --acp-live`` runs, against real Claude Code offline (adapter, CLI, model stub).

The property suite (``LiveMachine``) and scenario files played live must pass against the reference
orchestrator and catch seeded bugs of the catalog with the same oracle, from the tap's traces.
Skipped with one line saying how to install the adapter when node or the adapter is absent.
Real time: about a minute of the suite's wall time on a 2-core machine, spread over xdist workers.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Any, ClassVar

import jsonschema
import pytest

from acp_sim.live.adapter import AdapterNotFound, find_adapter
from acp_sim.scenario import load_scenario
from pytest_acp.bugs.catalog import CATALOG
from pytest_acp.harness.machine import PropertyViolation
from pytest_acp.live.budget import BudgetMeter, LiveBudget
from pytest_acp.live.run import LiveMachine, live_machine_for, run_live_machine, run_scenario_live
from pytest_acp.reference import bridge
from pytest_acp.scenarios.export import export_failure

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parent.parent
try:
    ADAPTER = find_adapter(project_root=REPO)
except AdapterNotFound as exc:
    pytest.skip(f"live mode: {exc}", allow_module_level=True)

PLANTED = "sk-ant-api03-PLANTED-live-suite-key-0123456789"
# Not shaped like any provider's key: only its secret-looking name gets it redacted.
MCP_SECRET = "plain-mcp-secret-value-424242"
# 60 s of wall time: on a 2-core CI machine running the rest of the suite beside it, each Claude Code
# start alone took several seconds, and 30 s sometimes ended the run before a turn was billed.
BUDGET = LiveBudget(sessions=10, prompts=30, seconds=60)


def test_the_live_suite_passes_against_the_reference_orchestrator() -> None:
    # asyncio here; trio in test_pytest_acp_live_runs_the_suite_and_the_scenarios (same machine).
    machine = live_machine_for(bridge, ADAPTER, backend="asyncio", budget=BUDGET)
    stats = run_live_machine(machine, examples=3, seed=4)
    meter = machine.meter
    assert meter is not None
    # Real turns were sent and judged.
    assert stats.examples >= 1
    assert meter.prompts >= 2
    assert meter.sessions <= BUDGET.sessions
    # And Claude Code billed them. Not asked of the run above: whether a turn ends before that run's
    # next cancel or crash (1-90 ms after its prompt, for seed 4) is a race in real time, and on a
    # loaded CI machine every turn lost it. Here nothing cuts a turn short: each ends and is billed.
    billed = live_machine_for(
        bridge, ADAPTER, backend="asyncio", budget=BUDGET, cancels=False, crashes=False, closes=False
    )
    run_live_machine(billed, examples=1, seed=4)
    assert billed.meter is not None
    assert billed.meter.prompts >= 1
    assert billed.meter.tokens > 0


# Each scenario is the script that names its bug's property; played live on real Claude Code.
LIVE_CATCHES = [
    ("shared_continuation", "two-sessions-interleaved", "P3"),
    ("cancel_all", "cancel-one-of-three", "P5"),
    ("phantom_resumed", "phantom-session-after-reconnect", "P8"),
]


@pytest.mark.parametrize(("bug", "scenario", "prop"), LIVE_CATCHES, ids=[c[0] for c in LIVE_CATCHES])
def test_seeded_bugs_are_caught_live_and_the_reference_passes(bug: str, scenario: str, prop: str) -> None:
    file = load_scenario(REPO / "scenarios" / f"{scenario}.yaml")
    reference = run_scenario_live(file, bridge, ADAPTER, bridge="reference")
    assert reference.skipped is None
    assert reference.passed, reference.report()
    broken = run_scenario_live(file, CATALOG[bug].bridge, ADAPTER, bridge=bug)
    assert not broken.passed
    assert prop in {v.property for v in broken.failures}, broken.report()


def test_scenarios_that_inject_faults_are_skipped_live_with_the_reason() -> None:
    file = load_scenario(REPO / "scenarios" / "hang-then-timeout.yaml")
    result = run_scenario_live(file, bridge, ADAPTER)
    assert result.skipped is not None
    assert "injects agent faults" in result.skipped


def test_a_scenario_over_the_budget_is_skipped_before_starting_anything() -> None:
    file = load_scenario(REPO / "scenarios" / "cancel-one-of-three.yaml")  # three sessions
    result = run_scenario_live(file, bridge, ADAPTER, budget=LiveBudget(sessions=2))
    assert result.skipped == (
        "needs 3 sessions and 3 prompts, over the live budget "
        "(sessions=2,prompts=40,tokens=200000,seconds=120)"
    )
    assert result.log == []


def test_a_scenario_past_the_time_cap_stops_is_still_judged_and_leaves_nothing() -> None:
    file = load_scenario(REPO / "scenarios" / "cancel-one-of-three.yaml")
    result = run_scenario_live(file, bridge, ADAPTER, budget=LiveBudget(seconds=1))
    assert not result.passed
    messages = [v.message for v in result.failures]
    assert "stopped after 1 s of real time: the live budget's time cap" in messages
    # Drained, closed and stopped all the same: no leaked process, no other broken property.
    assert [v for v in result.violations if v.property == "P6"] == []
    assert [e for e in result.log if e.kind == "leaked_processes"] == []


class SecretKeepingMachine(LiveMachine):
    """Keeps what the CLI wrote to its debug log, read before each example's HOME is removed."""

    debug_logs: ClassVar[list[str]] = []

    def teardown(self) -> None:
        if self.h is not None:
            home = self.h.agent.extra["live"].home
            for path in sorted((home / ".claude" / "debug").rglob("*")):
                if path.is_file():
                    type(self).debug_logs.append(path.read_text(errors="replace"))
        super().teardown()


def test_keys_never_reach_reports_traces_exports_or_debug_logs(tmp_path: Path) -> None:
    server = {
        "name": "sim",
        "command": sys.executable,
        "args": ["-m", "acp_sim", "mcp-server"],
        "env": [{"name": "SERVICE_API_KEY", "value": MCP_SECRET}],
    }
    machine = live_machine_for(
        CATALOG["shared_continuation"].bridge,
        ADAPTER,
        base=SecretKeepingMachine,
        api_key=PLANTED,
        debug=True,
        meter=BudgetMeter(BUDGET),
        mcp_sets=((server,),),
        crashes=False,  # a crash in the first instants would end the turns that show the bug
    )
    with pytest.raises(PropertyViolation) as caught:
        run_live_machine(machine, examples=3, seed=1)
    error: Any = caught.value
    report = str(error)
    traces = json.dumps([[e.to_json() for e in t.events] for t in error.machine.h.instances()])
    exported = export_failure(error, tmp_path).read_text()
    assert "P3" in report
    # The secret really went over the wire (the MCP server's env in session/new), redacted in the record.
    assert "SERVICE_API_KEY" in traces
    assert "[REDACTED]" in traces
    assert SecretKeepingMachine.debug_logs, "the CLI wrote no debug log (DEBUG_CLAUDE_AGENT_SDK)"
    for name, text in [("report", report), ("traces", traces), ("exported scenario", exported)]:
        assert PLANTED not in text, name
        assert MCP_SECRET not in text, name
    # The CLI's own debug log is Claude Code's, not ours: it records the MCP servers' env as given
    # (in the run's temporary HOME, removed afterwards), but never the API key.
    for i, log in enumerate(SecretKeepingMachine.debug_logs):
        assert PLANTED not in log, f"debug log {i}"


def test_pytest_acp_live_runs_the_suite_and_the_scenarios(pytester: pytest.Pytester) -> None:
    scenarios = pytester.mkdir("scenarios")
    (scenarios / "two-sessions-interleaved.yaml").write_text(
        (REPO / "scenarios" / "two-sessions-interleaved.yaml").read_text()
    )
    pytester.makepyprojecttoml('[tool.pytest.ini_options]\nacp_scenarios = ["scenarios"]\n')
    # The fixtures follow --acp-live: the harness drives the bridge on the real adapter and the
    # traces are the tap's.
    pytester.makepyfile(
        test_by_hand="""
        import pytest

        @pytest.mark.anyio
        async def test_a_turn_by_hand(acp_harness, acp_trace, acp_agent_under_test):
            h = acp_harness
            key = h.open(cwd=str(acp_agent_under_test.extra["live"].workspace))
            assert await h.wait_for(lambda: h.keys[key].status == "idle", 30)
            h.prompt(key)
            assert await h.wait_for(lambda: h.keys[key].running == 0, 30)
            await h.stop()
            assert h.check(final=True) == []
            assert any(e.method == "session/prompt" for e in acp_trace.current.events)
            assert acp_trace.launcher.name.startswith("tap:claude-agent-acp")
        """
    )
    result = pytester.runpytest(
        "-rA",
        "-p",
        "no:cacheprovider",
        "--acp-live",
        "--acp-backend",
        "trio",
        "--acp-examples",
        "1",
        "--acp-live-budget",
        "sessions=4,seconds=20",
        "--acp-agent-cmd",
        shlex.join(ADAPTER.argv),
    )
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(
        [
            "acp: live agent, seed 0, property suite on pytest_acp.reference:bridge (1 examples per backend, "
            "model stub, budget sessions=4,prompts=40,tokens=200000,seconds=20 per backend)",
            "*acp live budget*",
            "*/4 sessions, * prompts, * tokens, */20 s*",
        ]
    )
    result.stdout.fnmatch_lines_random(
        [
            "PASSED *acp_properties[[]trio[]]",
            # a scenario item's line names the bridge it ran on
            "PASSED on pytest_acp.reference:bridge scenarios/two-sessions-interleaved.yaml::*[[]trio[]]",
            "PASSED test_by_hand.py::test_a_turn_by_hand[[]trio[]]",
        ]
    )


def test_pytest_acp_live_writes_the_conformance_report(pytester: pytest.Pytester) -> None:
    from acp_sim.conformance import report_json_schema

    result = pytester.runpytest(
        "-p", "no:cacheprovider", "--acp-live", "--acp-backend", "asyncio", "--acp-examples", "1",
        "--acp-live-budget", "sessions=4,seconds=20", "--acp-agent-cmd", shlex.join(ADAPTER.argv),
        "--acp-report", "out",
    )  # fmt: skip
    result.assert_outcomes(passed=1)
    report = json.loads((pytester.path / "out" / "conformance.json").read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator(report_json_schema()).validate(report)
    (run,) = report["runs"]
    assert (run["bridge"], run["clock"]) == ("pytest_acp.reference:bridge", "real")
    assert "fail" not in {p["verdict"] for p in run["properties"]}
    assert run["effect"]["prompts_reached"] > 0  # real turns on Claude Code were judged
    result.stdout.fnmatch_lines(["acp conformance: pytest_acp.reference:bridge (asyncio, real time)*"])
    assert (pytester.path / "out" / "conformance.html").is_file()
