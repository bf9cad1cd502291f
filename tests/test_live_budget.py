"""The live budget: parsing ``--acp-live-budget``, and what the meter lets a live run still do."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from acp_sim.trace import TraceEvent
from pytest_acp.live.budget import BudgetMeter, LiveBudget, tokens_reported

pytest_plugins = ["pytester"]


def test_a_budget_is_any_subset_of_its_keys() -> None:
    assert LiveBudget.parse("") == LiveBudget()
    budget = LiveBudget.parse(" sessions=4, seconds=20 ")
    assert (budget.sessions, budget.prompts, budget.tokens, budget.seconds) == (4, 40, 200_000, 20.0)
    assert budget.compact() == "sessions=4,prompts=40,tokens=200000,seconds=20"
    assert LiveBudget.parse(budget.compact()) == budget


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("sessions=0", "sessions: Input should be greater than or equal to 1 (got '0')"),
        ("seconds=soon", "seconds: Input should be a valid number"),
        ("bogus=1", "bogus: Extra inputs are not permitted (got '1')"),
        ("sessions", "--acp-live-budget: expected key=value, got 'sessions'"),
    ],
)
def test_a_bad_budget_names_the_key_and_the_value(text: str, says: str) -> None:
    with pytest.raises(ValueError, match="keys: sessions, prompts, tokens, seconds") as info:
        LiveBudget.parse(text)
    assert says in str(info.value)


def test_a_bad_budget_on_the_command_line_is_a_usage_error(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--acp-live-budget", "prompts=-3")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*invalid --acp-live-budget 'prompts=-3':*", "*prompts: Input should be*"])


def test_the_real_model_needs_a_key(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    result = pytester.runpytest("--acp-live", "--acp-live-model", "real")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--acp-live-model real needs ANTHROPIC_API_KEY in the environment*"])


def usage_reply(total: int) -> TraceEvent:
    message = {
        "jsonrpc": "2.0",
        "id": 3,
        "result": {"stopReason": "end_turn", "usage": {"totalTokens": total}},
    }
    return TraceEvent(0, 0.0, "send", id=3, message=message)


@dataclass
class FakeTrace:
    events: list[TraceEvent]


@dataclass
class FakeInstance:
    trace: FakeTrace


@dataclass
class FakeLauncher:
    agents: list[FakeInstance] = field(default_factory=list)


@dataclass
class FakeAgent:
    launcher: FakeLauncher


@dataclass
class FakeHarness:
    """What the meter reads of a ``Harness``: its keys, prompts sent and the agent's traces."""

    agent: FakeAgent
    keys: dict[str, Any] = field(default_factory=dict)
    prompts_sent: int = 0


def test_tokens_are_what_the_agent_reported_in_its_responses() -> None:
    other = TraceEvent(1, 0.0, "send", method="session/update", message={"params": {}})
    assert tokens_reported([usage_reply(30), other, usage_reply(12)]) == 42


def test_the_meter_stops_opening_and_prompting_at_each_cap() -> None:
    meter = BudgetMeter(LiveBudget(sessions=2, prompts=3, tokens=100))
    instance = FakeInstance(FakeTrace([usage_reply(40)]))
    harness = FakeHarness(FakeAgent(FakeLauncher([instance])), keys={"s1": None})
    meter.watch(harness)
    assert (meter.sessions, meter.prompts, meter.tokens) == (1, 0, 40)
    assert meter.may_open()
    assert meter.may_prompt(3)
    assert not meter.may_prompt(4)  # three at once would be fine, four is over
    assert meter.stopped_by == "prompts (3)"  # the first cap that held something back
    harness.keys["s2"] = None
    assert not meter.may_open()
    meter.settle()  # the example ended: what it spent stays spent
    assert (meter.sessions, meter.prompts, meter.tokens) == (2, 0, 40)
    fresh = FakeHarness(FakeAgent(FakeLauncher([FakeInstance(FakeTrace([usage_reply(70)]))])))
    meter.watch(fresh)
    assert meter.tokens == 110
    assert not meter.may_prompt()
    assert meter.summary().startswith("2/2 sessions, 0/3 prompts, 110/100 tokens, ")
    assert meter.summary().endswith("; stopped by the prompts (3) cap")


def test_the_time_cap_ends_the_run() -> None:
    meter = BudgetMeter(LiveBudget(seconds=5), started=0.0)  # started long ago
    assert meter.out_of_time()
    assert not meter.may_open()
    assert not meter.may_prompt()
    assert meter.stopped_by == "wall time (5 s)"
