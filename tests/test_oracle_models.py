"""The oracle's models kept between checks (``properties.models``) judge exactly like models read
from scratch: on machine runs (every check of the reference and of seeded bugs, both backends) and
on the inputs it must re-read from scratch (a late ``unsent``, an older instance speaking after a
newer one, a replaced log entry) or settle at each check (a possibly-unsent last send)."""

from __future__ import annotations

from typing import Any

import pytest

from acp_sim.clock import Backend
from pytest_acp.adapter import BridgeCapabilities
from pytest_acp.bugs.catalog import CATALOG
from pytest_acp.harness import harness
from pytest_acp.harness.machine import PropertyViolation
from pytest_acp.harness.machine_run import machine_for, run_machine
from pytest_acp.properties.models import Models
from pytest_acp.properties.oracle import check
from pytest_acp.reference import bridge as reference_bridge
from pytest_acp.report import exercised
from tests.test_oracle import A, B, World, two_sessions


class Twin:
    """Every check of a World, with kept models and from scratch: the two must agree."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.models = Models()

    def check(self, caps: BridgeCapabilities | None = None, *, final: bool = False) -> list[Any]:
        w = self.world
        kept = check(w.instances(), w.log.entries, caps, final=final, models=self.models)
        assert kept == check(w.instances(), w.log.entries, caps, final=final)
        return kept


@pytest.fixture
def both_ways(monkeypatch: pytest.MonkeyPatch) -> dict[int, Models]:
    """The harness's checks, each also made from scratch and compared; the harnesses' models."""
    seen: dict[int, Models] = {}

    def twin(traces: Any, log: Any, caps: Any = None, *, final: bool = True, models: Any = None) -> Any:
        kept = check(traces, log, caps, final=final, models=models)
        fresh = check(traces, log, caps, final=final)
        assert [str(v) for v in kept] == [str(v) for v in fresh]
        assert kept == fresh
        seen[id(models)] = models
        return kept

    monkeypatch.setattr(harness, "check", twin)
    return seen


BRIDGES = ["reference", "cancel_all", "duplicated_after_reconnect", "pool_ignores_cwd"]


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.parametrize("bridge", BRIDGES)
def test_kept_models_judge_machine_runs_like_fresh_ones(
    backend: Backend, bridge: str, both_ways: dict[int, Models]
) -> None:
    factory = reference_bridge if bridge == "reference" else CATALOG[bridge].bridge
    try:
        run_machine(machine_for(factory, backend=backend), examples=8, seed=3, shrink=False)
    except PropertyViolation:
        assert bridge != "reference"
    assert both_ways


def test_a_machine_run_reads_its_trace_and_log_once(both_ways: dict[int, Models]) -> None:
    """No check of the reference's run had to re-read from scratch: each read only what was new."""
    run_machine(machine_for(reference_bridge), examples=8, seed=5, shrink=False)
    assert len(both_ways) >= 8
    assert {m.rebuilds for m in both_ways.values()} == {1}


@pytest.mark.parametrize("bridge", ["reference", "cancel_all"])
def test_what_an_example_exercised_is_counted_from_the_kept_models_as_from_scratch(
    bridge: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The count at the end of each example reads the oracle's kept models (no second reading of the
    run): the same counts as from scratch, and the models were still read once."""
    kept_models: list[Models] = []

    def twin(traces: Any, log: Any, caps: Any = None, *, models: Any = None) -> Any:
        kept = exercised.count(traces, log, caps, models=models)
        assert kept == exercised.count(traces, log, caps)
        kept_models.append(models)
        return kept

    monkeypatch.setattr(harness, "count", twin)
    factory = reference_bridge if bridge == "reference" else CATALOG[bridge].bridge
    try:
        run_machine(machine_for(factory), examples=8, seed=3, shrink=False)
    except PropertyViolation:
        assert bridge != "reference"
    assert len(kept_models) >= 3
    assert {m.rebuilds for m in kept_models} == {1}


def _two_chunks_sent() -> tuple[World, Twin]:
    """Key s1's first turn, two chunks sent, judged both ways from here on."""
    w = two_sessions()
    twin = Twin(w)
    w.at(1.0).prompt("s1", 1, A)
    w.chunk(A, "[A t1 c0]")
    w.chunk(A, "[A t1 c1]")
    return w, twin


def test_an_unsent_event_retracts_a_send_an_earlier_check_read() -> None:
    w, twin = _two_chunks_sent()
    sent = w.trace.events[-1].seq
    twin.check()
    w.trace.record("unsent", session=A, detail={"seq": sent})
    w.deliver("s1", 1, "[A t1 c0]")
    w.at(2.0).answer("s1", 1)
    w.end("s1", 1)
    assert twin.check(final=True) == []
    assert twin.models.rebuilds == 2


def test_the_last_send_is_possibly_unsent_until_a_clean_exit_follows() -> None:
    w, twin = _two_chunks_sent()
    w.deliver("s1", 1, "[A t1 c0]")
    w.at(2.0).end("s1", 1, error="agent gone")
    twin.check(final=True)
    last = twin.models.truth.turns[(0, A, 1)].updates[-1]
    assert last.maybe_unsent
    w.trace.record("exit", detail={"reason": "eof"})
    twin.check(final=True)
    assert not last.maybe_unsent
    assert twin.models.rebuilds == 1


def test_an_older_instance_speaking_after_a_newer_one_is_read_again() -> None:
    w = two_sessions()
    twin = Twin(w)
    w.relaunch()
    w.initialize()
    w.open("s3")
    w.agent_session("cccccccc-0000-4000-8000-000000000003")
    w.opened("s3")
    twin.check()
    w.traces[0].on_message("send", {"jsonrpc": "2.0", "id": 99, "result": {}})
    w.traces[0].record("crash")
    twin.check(final=True)
    assert twin.models.rebuilds == 2


def test_a_cancel_stamped_later_moves_the_times_it_gave_its_turns() -> None:
    w = two_sessions()
    twin = Twin(w)
    w.at(1.0).prompt("s1", 1, A)
    w.prompt("s2", 1, B)
    w.at(1.5).client("cancel", key="s1", turn=1)
    twin.check()
    entry = w.log.entries[-1]
    w.log.entries[entry.seq] = entry.model_copy(update={"detail": {"received": 1.75}})
    w.at(20.0).answer("s1", 1, "cancelled")
    w.end("s1", 1, "cancelled")
    w.answer("s2", 1)
    w.end("s2", 1)
    twin.check(final=True)
    assert twin.models.rebuilds == 1
    assert twin.models.client.turns[("s1", 1)].cancels == [1.75]
