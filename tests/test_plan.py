"""``acp-sim plan``: figures checked against hand-computed expectations, and the rubric's verdict.

Workload A (N agents win) and B (one session wins) use only HTTP MCP servers or none, so every
session/new takes exactly ``startup_seconds`` and every figure is exact on virtual time.
"""

from __future__ import annotations

import pytest

from acp_sim.cli import main
from acp_sim.plan import (
    OptionSpec,
    Workload,
    WorkloadError,
    html_page,
    judge,
    load_workload,
    load_workload_data,
    make_plan,
    run_option,
    schedule,
    text_table,
)

pytestmark = pytest.mark.anyio

# A: two independent 200 s tasks, wall-clock is the constraint, no caching (every token full price).
WORKLOAD_A = {
    "name": "parallel-features",
    "agents": [2],
    "startup_seconds": 4,
    "system_tokens": 10_000,
    "explore_tokens": 0,
    "file_tokens": 1_000,
    "cache": "none",
    "constraint": "wall_clock",
    "mcp_servers": [{"name": "docs", "transport": "http", "tool_tokens": 2_000, "memory_mb": 40}],
    "tasks": [
        {"name": "api", "turns": 2, "turn_seconds": 100, "prompt_tokens": 500, "output_tokens": 1_000, "files": ["api.py"]},  # noqa: E501
        {"name": "ui", "turns": 2, "turn_seconds": 100, "prompt_tokens": 500, "output_tokens": 1_000, "files": ["ui.py"]},  # noqa: E501
    ],
}  # fmt: skip

# B: two 30 s fixes of one file, tokens are the constraint, per-session prompt caching.
WORKLOAD_B = {
    "name": "two-fixes",
    "agents": [2],
    "startup_seconds": 4,
    "system_tokens": 10_000,
    "explore_tokens": 10_000,
    "file_tokens": 2_000,
    "cache": "session",
    "constraint": "tokens",
    "tasks": [
        {"name": "fix-a", "turns": 1, "turn_seconds": 30, "prompt_tokens": 1_000, "output_tokens": 500, "files": ["core.py"]},  # noqa: E501
        {"name": "fix-b", "turns": 1, "turn_seconds": 30, "prompt_tokens": 1_000, "output_tokens": 500, "files": ["core.py"]},  # noqa: E501
    ],
}  # fmt: skip


def by_label(plan_results: list, label: str):  # type: ignore[no-untyped-def]
    return next(r for r in plan_results if r.label == label)


async def test_workload_a_one_session_by_hand() -> None:
    # Prefix P = 10,000 system + 2,000 tool catalog = 12,000. Turns (before + prompt + output):
    # api t0: 12,000 + (500 + 1,000 file) + 1,000 = 14,500; api t1: 14,500 + 500 + 1,000 = 16,000;
    # ui t0: 16,000 + 1,500 + 1,000 = 18,500; ui t1: 18,500 + 1,500 = 20,000. Sum 69,000.
    wl = load_workload_data(WORKLOAD_A)
    one = await run_option(wl, OptionSpec(1))
    assert one.wall_clock == 404.0  # 4 s start-up + 4 turns x 100 s
    assert one.usage == {
        "inputTokens": 65_000,
        "outputTokens": 4_000,
        "cachedReadTokens": 0,
        "cachedWriteTokens": 0,
        "totalTokens": 69_000,
    }
    assert one.cost == pytest.approx((65_000 * 3 + 4_000 * 15) / 1e6)
    assert one.peak_processes == 3  # adapter + one session's CLI + the orchestrator-run HTTP server
    assert one.peak_memory_mb == 75 + 200 + 40
    assert one.startup_hidden == 0


async def test_workload_a_two_agents_by_hand() -> None:
    # Each agent: 14,500 + 16,000 = 30,500 tokens; 61,000 in all (0.88x): no context carried over.
    wl = load_workload_data(WORKLOAD_A)
    cold = await run_option(wl, OptionSpec(2))
    assert cold.assignments == [["api"], ["ui"]]
    assert cold.wall_clock == 204.0
    assert cold.tokens == 61_000
    assert cold.peak_processes == 4  # one HTTP server shared by both sessions
    assert cold.peak_memory_mb == 75 + 2 * 200 + 40
    warm = await run_option(wl, OptionSpec(2, prewarm=True))
    assert warm.wall_clock == 200.0  # the 4 s start-up happened before the work arrived
    assert warm.startup_hidden == 8.0  # two sessions x 4 s
    assert warm.tokens == 61_000
    assert min(s.t for s in warm.timeline) == -4.0


async def test_workload_b_by_hand() -> None:
    # One session, P = 10,000. fix-a: prompt 1,000 + 2,000 (core.py) + 10,000 (explore) = 13,000:
    # write 10,000, fresh 13,000, out 500 -> 23,500. fix-b: core.py already read, prompt 1,000:
    # read 10,000, write 13,500, fresh 1,000, out 500 -> 25,000. Total 48,500.
    wl = load_workload_data(WORKLOAD_B)
    one = await run_option(wl, OptionSpec(1))
    assert one.wall_clock == 64.0
    assert one.usage == {
        "inputTokens": 14_000,
        "outputTokens": 1_000,
        "cachedReadTokens": 10_000,
        "cachedWriteTokens": 23_500,
        "totalTokens": 48_500,
    }
    assert one.cost == pytest.approx((14_000 * 3 + 1_000 * 15 + 10_000 * 0.3 + 23_500 * 3.75) / 1e6)
    # Two agents: each writes its own prefix and explores and reads core.py again: 2 x 23,500.
    two = await run_option(wl, OptionSpec(2))
    assert two.wall_clock == 34.0
    assert two.usage == {
        "inputTokens": 26_000,
        "outputTokens": 1_000,
        "cachedReadTokens": 0,
        "cachedWriteTokens": 20_000,
        "totalTokens": 47_000,
    }
    assert two.cost / one.cost == pytest.approx(168_000 / 148_125)  # 1.13x the cost


async def test_shared_cache_writes_the_common_prefix_once() -> None:
    # cache: shared -> the second agent reads the 10,000-token prefix the first one wrote.
    wl = load_workload_data({**WORKLOAD_B, "cache": "shared"})
    two = await run_option(wl, OptionSpec(2))
    assert two.usage["cachedWriteTokens"] == 10_000
    assert two.usage["cachedReadTokens"] == 10_000
    assert two.tokens == 47_000  # same tokens, cheaper


def test_verdict_a_is_n_agents_and_b_is_one_session() -> None:
    plan_a = make_plan(load_workload_data(WORKLOAD_A))
    assert [a.yes for a in plan_a.verdict.answers] == [True, True, True, True]
    assert plan_a.verdict.choice.label == "2 agents"  # pre-warm not possible in A
    assert plan_a.verdict.summary.startswith("2 agents: 204.0 s instead of 404.0 s")

    plan_b = make_plan(load_workload_data(WORKLOAD_B))
    split, wall, amortized, merge = plan_b.verdict.answers
    assert not split.yes
    assert split.why == "core.py: fix-a, fix-b"
    assert not wall.yes
    assert wall.why == "declared: tokens"
    assert not amortized.yes
    assert amortized.why == "4 s start-up > 0.1 x 30 s of work per agent, no pre-warm"
    assert merge.yes
    assert plan_b.verdict.choice.label == "one session"
    assert plan_b.verdict.summary.startswith("one session; split without shared files: no (core.py")


def test_rubric_each_answer_flips_the_verdict() -> None:
    plan_a = make_plan(load_workload_data(WORKLOAD_A))
    wl = plan_a.workload
    cases = {
        "split": wl.model_copy(
            update={"tasks": [wl.tasks[0], wl.tasks[1].model_copy(update={"files": ["api.py"]})]}
        ),
        "wall": wl.model_copy(update={"constraint": None, "deadline_seconds": 500}),
        "startup": wl.model_copy(update={"startup_seconds": 25.0}),
        "merge": wl.model_copy(update={"merge_point": False}),
    }  # fmt: skip
    for name, changed in cases.items():
        verdict = judge(changed, plan_a.results)
        assert verdict.choice.label == "one session", name
        assert sum(not a.yes for a in verdict.answers) == 1, name
    # A deadline one session misses makes wall-clock the constraint.
    assert judge(wl.model_copy(update={"constraint": None, "deadline_seconds": 300}), plan_a.results).parallel
    # Start-up that work cannot amortize is fine when sessions can be pre-warmed; the pre-warmed
    # option is then the fastest.
    verdict = judge(wl.model_copy(update={"startup_seconds": 25.0, "prewarm": True}), plan_a.results)
    assert verdict.choice.label == "2 agents + pre-warm"


def test_schedule_is_list_scheduling_in_file_order() -> None:
    wl = Workload(
        tasks=[
            {"name": "a", "turn_seconds": 50},
            {"name": "b", "turn_seconds": 10},
            {"name": "c", "turn_seconds": 10},
            {"name": "d", "turn_seconds": 30},
        ]  # type: ignore[list-item]
    )
    assert schedule(wl, 2) == [[0], [1, 2, 3]]
    assert schedule(wl, 3) == [[0], [1, 3], [2]]


def test_stdio_mcp_servers_cost_a_process_per_session_unless_shared(tmp_path) -> None:  # type: ignore[no-untyped-def]
    data = {
        **WORKLOAD_A,
        "mcp_servers": [
            {"name": "github", "tool_tokens": 2_000},
            {"name": "browser", "tool_tokens": 1_000, "shareable": False},
        ],
    }
    plan = make_plan(load_workload_data(data))
    labels = [r.label for r in plan.results]
    assert labels == ["one session", "2 agents", "2 agents + pre-warm", "2 agents + pre-warm + shared MCP"]
    one, cold, warm, shared = plan.results
    assert one.peak_processes == 1 + 1 + 2  # adapter, CLI, two stdio servers
    assert cold.peak_processes == 1 + 2 + 2 * 2  # M x N
    assert shared.peak_processes == 1 + 2 + 2 + 1  # browser per session, github once over HTTP
    assert shared.peak_memory_mb == 75 + 2 * 200 + 3 * 50
    # Tool catalogs are in the prefix whichever transport: 13,000 instead of 12,000 per turn.
    assert one.tokens == 69_000 + 4 * 1_000
    assert {r.tokens for r in (cold, warm, shared)} == {61_000 + 4 * 1_000}


def test_cli_prints_the_table_and_writes_html(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    import yaml

    path = tmp_path / "a.yaml"
    path.write_text(yaml.safe_dump(WORKLOAD_A))
    out = tmp_path / "plan.html"
    assert main(["plan", str(path), "--html", str(out)]) == 0
    text = capsys.readouterr().out
    assert "| 2 agents + pre-warm" in text
    assert "verdict: 2 agents" in text
    page = out.read_text()
    assert page.count("<svg") == 2
    assert "http" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "<script" not in page


def test_workload_typos_name_the_field(tmp_path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad.yaml"
    bad.write_text("tasks: [{name: a, turnz: 3}]\nagents: [1]\n")
    with pytest.raises(WorkloadError) as err:
        load_workload(bad)
    assert "tasks.0.turnz" in str(err.value)
    assert "agents" in str(err.value)


def test_examples_load() -> None:
    from pathlib import Path

    files = sorted(Path(__file__).resolve().parent.parent.joinpath("examples", "workloads").glob("*.yaml"))
    assert files
    for f in files:
        load_workload(f)


def test_text_table_has_every_column() -> None:
    plan = make_plan(load_workload_data(WORKLOAD_B))
    table = text_table(plan)
    assert "x tokens" in table
    assert "start-up hidden s" in table
    assert "verdict: one session" in table
    assert html_page(plan).startswith("<!DOCTYPE html>")
