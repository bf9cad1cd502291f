"""Running scenarios: the shipped ones against the reference and the seeded-bug catalog (the
matrix), what expectations catch, skips, and determinism.

Every run is on virtual time: a scenario costs milliseconds to a few tenths of a second of wall
time (the MCP one starts twelve real processes).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from acp_sim.orchestrator import Orchestrator
from acp_sim.scenario import ScenarioFile, load_scenario, load_scenario_text
from acp_sim.trace import VOLATILE_DETAIL_KEYS
from pytest_acp.adapter import AgentUnderTest
from pytest_acp.bugs import CATALOG
from pytest_acp.reference import ReferenceAdapter, bridge
from pytest_acp.scenarios.run import EXPECTATION, ScenarioResult, run_scenario

REPO = Path(__file__).resolve().parent.parent
SHIPPED = {path.stem: path for path in sorted((REPO / "scenarios").glob("*.yaml"))}
BACKENDS = ["asyncio", "trio"]
# The scenario that pins each bug's hazard; a bug missing here is looked for in every scenario.
PINNED_BY = {
    "first_chunk_dropped": "first-chunk-same-tick",
    "shared_continuation": "two-sessions-interleaved",
    "global_timeout": "stale-timeout-after-fast-turn",
    "cancel_all": "cancel-one-of-three",
    "sticky_interrupt": "late-updates-after-cancel",
    "pool_ignores_cwd": "cwd-change-with-warm-pool",
    "phantom_resumed": "phantom-session-after-reconnect",
    "mcp_leak_on_close": "mcp-3x4-process-count",
    "tokens_double_counted": "agent-crash-mid-turn-reconnect",
    "duplicated_after_reconnect": "agent-crash-mid-turn-reconnect",
    "slow_session_stalls_others": "slow-reader-does-not-stall-others",
}


def scenario(name: str) -> ScenarioFile:
    return load_scenario(SHIPPED[name])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_every_shipped_scenario_passes_against_the_reference_orchestrator(name: str, backend: str) -> None:
    result = run_scenario(scenario(name), bridge, backend=backend)  # type: ignore[arg-type]
    assert result.skipped is None
    assert result.passed, result.report()
    assert result.violations == [], "not even an unjudged property may break on the reference"


@pytest.mark.parametrize("bug", sorted(CATALOG))
def test_every_seeded_bug_fails_at_least_one_scenario_on_its_property(bug: str) -> None:
    entry = CATALOG[bug]
    pinned = PINNED_BY.get(bug)
    order = ([pinned] if pinned else []) + [name for name in sorted(SHIPPED) if name != pinned]
    caught: list[tuple[str, list[str]]] = []
    for name in order:
        result = run_scenario(
            scenario(name), entry.bridge, backend="asyncio", bridge=f"pytest_acp.bugs:{bug}"
        )
        properties = sorted({v.property for v in result.failures})
        if entry.catches[0] in properties:  # the property that names the bug, not a side effect
            assert name == pinned or pinned is None, f"{bug} is no longer caught by {pinned}"
            return
        caught.append((name, properties))
    pytest.fail(f"no scenario catches {bug} on {entry.catches[0]}: {caught}")


def test_a_failure_is_reported_like_the_state_machines_with_the_file_lines() -> None:
    result = run_scenario(
        scenario("first-chunk-same-tick"),
        CATALOG["first_chunk_dropped"].bridge,
        bridge="pytest_acp.bugs:first_chunk_dropped",
    )
    assert [v.property for v in result.failures] == ["P1", "P1", EXPECTATION]
    report = result.report(replay="acp-sim run first-chunk-same-tick.yaml")
    lines = report.splitlines()
    assert lines[0].startswith("scenario first-chunk-same-tick (")
    assert lines[2].startswith(
        "P1 first chunk delivered violated: P1 first chunk delivered: the first chunk '["
    )
    assert "text chunks delivered to a per turn: expected [4, 4], got [3, 3]" in report
    assert "bridge:  pytest_acp.bugs:first_chunk_dropped (asyncio, virtual time)" in lines
    assert "seed:    7" in lines
    assert "replay:  acp-sim run first-chunk-same-tick.yaml" in lines
    assert "steps (virtual seconds since the run started):" in lines
    assert any(line.endswith("prompt a turn 1 (task-0001)  [script[1], line 16]") for line in lines)
    assert any(line.startswith("timeline around t=2.000000") for line in lines)


HEAD = (
    "name: expectations\ndescription: wrong on purpose\n"
    "profile: {models: {default: {session_new_cold: 1, turn: {chunk_count: 3}}}}\n"
)


def test_every_kind_of_expectation_and_check_is_compared() -> None:
    file = load_scenario_text(
        HEAD + "script:\n"
        "  - open: a\n"
        "  - {check: {mcp_processes: 2, agent_launches: 2}}\n"
        "  - {prompt: a, wait: true}\n"
        "expect:\n"
        "  stop_reasons: {a: [cancelled]}\n"
        "  chunks: {a: [5]}\n"
        "  mcp_processes: {spawned: 1}\n"
        "  agent_launches: 3\n"
    )
    result = run_scenario(file, bridge)  # type: ignore[arg-type]
    assert result.violations == []
    assert [v.message for v in result.failures] == [
        "script[1] check: 0 MCP server process(es) alive, expected 2",
        "script[1] check: 1 agent launch(es), expected 2",
        "stop reasons of a: expected ['cancelled'], got ['end_turn']",
        "text chunks delivered to a per turn: expected [5], got [3]",
        "MCP server processes spawned: expected 1, got 0",
        "agent launches: expected 3, got 1",
    ]
    assert result.failures[0].t == 1.0


def test_only_the_listed_properties_are_judged() -> None:
    text = (SHIPPED["first-chunk-same-tick"]).read_text(encoding="utf-8")
    unjudged = load_scenario_text(
        text.replace("properties: [P1, P2, P3]", "properties: [P2, P3]").replace("chunks: {a: [4, 4]}", "")
    )
    result = run_scenario(unjudged, CATALOG["first_chunk_dropped"].bridge)
    assert {v.property for v in result.violations} == {"P1"}
    assert result.passed


def test_a_reconnect_that_never_comes_fails_the_step() -> None:
    file = load_scenario_text(HEAD + "script:\n  - open: a\n  - {reconnect: {limit: 5}}\n")
    result = run_scenario(file, bridge)  # type: ignore[arg-type]
    assert [v.message for v in result.failures] == []  # the agent is alive: nothing to wait for
    file = load_scenario_text(
        HEAD + "script:\n  - open: a\n  - advance: 0.5\n  - crash\n  - {reconnect: {limit: 5}}\n"
    )

    @asynccontextmanager
    async def no_reconnect(agent: AgentUnderTest) -> AsyncIterator[ReferenceAdapter]:
        async with Orchestrator(agent.launcher, max_restarts=0) as orch:
            yield ReferenceAdapter(orch)

    result = run_scenario(file, no_reconnect)  # type: ignore[arg-type]
    assert [v.message for v in result.failures] == [
        "script[3] reconnect: the bridge started no new agent within 5 s"
    ]
    assert result.failures[0].t == 6.5  # opened at 1 s, crashed at 1.5 s, then 5 s of waiting


def test_a_bridge_without_what_the_scenario_needs_skips_it_with_the_reason() -> None:
    @asynccontextmanager
    async def plain(agent: AgentUnderTest) -> AsyncIterator[ReferenceAdapter]:
        async with Orchestrator(agent.launcher) as orch:  # no timeouts, no prewarm adapter methods
            yield ReferenceAdapter(orch)

    result = run_scenario(scenario("cold-vs-warm-start"), plain)  # type: ignore[arg-type]
    assert result.skipped == "the bridge does not offer what this scenario needs: prewarm"
    assert result.verdict == "skipped"
    result = run_scenario(scenario("hang-then-timeout"), plain)  # type: ignore[arg-type]
    assert result.skipped == "the bridge does not offer what this scenario needs: timeouts"


def _wire(result: ScenarioResult) -> list[str]:
    lines = [entry.model_dump_json() for entry in result.log]
    for trace in result.traces:
        for event in trace.events:
            detail = {k: v for k, v in (event.detail or {}).items() if k not in VOLATILE_DETAIL_KEYS}
            lines.append(f"{trace.name} {event.seq} {event.t} {event.kind} {event.message} {detail}")
    return lines


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_scenario_run_is_reproducible(backend: str) -> None:
    file = scenario("agent-crash-mid-turn-reconnect")
    first = run_scenario(file, bridge, backend=backend)  # type: ignore[arg-type]
    second = run_scenario(file, bridge, backend=backend)  # type: ignore[arg-type]
    assert len(first.traces) == 2
    assert _wire(first) == _wire(second)


def test_the_readme_example_passes_on_the_reference() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Scenario files\n", 1)[1]
    example = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    result = run_scenario(load_scenario_text(example), bridge)  # type: ignore[arg-type]
    assert result.passed, result.report()


def test_a_timed_step_that_runs_late_because_the_step_before_took_longer_is_said() -> None:
    file = load_scenario_text(
        HEAD + "script:\n"
        "  - open: a\n"  # 1 s of session/new
        "  - {at: 0.5, prompt: a, wait: true}\n"  # cannot run before t=1
        "  - {at: 30, close: a}\n"  # in the future: waits, on time
    )
    result = run_scenario(file, bridge)  # type: ignore[arg-type]
    assert result.passed
    assert result.late == [
        "script[1] (line 6) is timed at=0.5 s but ran at t=1.000 s: the steps before it took longer"
    ]
