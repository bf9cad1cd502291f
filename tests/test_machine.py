"""The state machine against the reference orchestrator: it passes, it is reproducible, and its
harness keeps the order of client actions on both backends."""

from __future__ import annotations

import importlib
import re
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, ClassVar

import anyio
import pytest
from hypothesis import strategies as st
from hypothesis.stateful import precondition, rule

from acp_sim.clock import BACKENDS
from pytest_acp.adapter import AgentUnderTest, TurnOutput
from pytest_acp.bugs import CATALOG
from pytest_acp.harness.harness import Harness
from pytest_acp.harness.loop import LoopThread
from pytest_acp.harness.machine import AcpStateMachine, PropertyViolation
from pytest_acp.harness.machine_run import machine_for, run_machine
from pytest_acp.reference import bridge as reference_bridge
from pytest_acp.report.conformance import run_conformance


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_reference_orchestrator_passes_1000_examples(backend: str, record_property: Any) -> None:
    started = time.perf_counter()
    stats = run_machine(machine_for(reference_bridge, backend=backend), examples=1000, seed=0)
    record_property("wall_seconds", round(time.perf_counter() - started, 2))
    assert stats.examples >= 1000


def test_a_rule_and_the_invariant_after_it_share_one_hand_over_to_the_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Not timed: the count of hand-overs between Hypothesis's thread and the loop's, each about
    # 75 us of waking threads. The invariant after a rule reads what the rule's own call judged;
    # only the one after ``start`` (no rule's call before it) hands over by itself.
    whats: Counter[str] = Counter()
    call = LoopThread.call

    def counting(self: LoopThread, fn: Any, **kwargs: Any) -> Any:
        whats[kwargs.get("what", "")] += 1
        return call(self, fn, **kwargs)

    monkeypatch.setattr(LoopThread, "call", counting)
    stats = run_machine(machine_for(reference_bridge, backend="asyncio"), examples=30, seed=0)
    rules = sum(
        n
        for what, n in whats.items()
        if what not in ("checking", "starting the bridge", "stopping the bridge")
    )
    assert rules > 10 * stats.examples, whats  # the examples did run rules
    assert whats["checking"] <= whats["starting the bridge"], whats


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_loop_thread_stands_still_between_calls(backend: str) -> None:
    loop = LoopThread(backend)  # type: ignore[arg-type]
    try:
        fired: list[float] = []

        async def start() -> float:
            async def tick() -> None:
                while True:
                    await anyio.sleep(1)
                    fired.append(anyio.current_time())

            tg = anyio.create_task_group()
            await tg.__aenter__()
            tg.start_soon(tick)
            holder.append(tg)
            return anyio.current_time()

        holder: list[Any] = []
        t0 = loop.call(start)
        time.sleep(0.05)  # real time passes on this thread; none passes on the loop's clock

        async def now() -> float:
            return anyio.current_time()

        assert loop.call(now) == t0
        assert fired == []

        async def advance() -> float:
            await anyio.sleep(2.5)
            return anyio.current_time() - t0

        assert loop.call(advance) == pytest.approx(2.5)
        assert len(fired) == 2

        async def stop() -> None:
            holder[0].cancel_scope.cancel()
            await holder[0].__aexit__(None, None, None)

        loop.call(stop)
    finally:
        loop.close()


def test_the_same_seed_finds_the_same_counterexample() -> None:
    bug = CATALOG["shared_continuation"]
    reports = []
    for _ in range(2):
        with pytest.raises(PropertyViolation) as caught:
            run_machine(machine_for(bug.bridge, backend="trio"), examples=200, seed=5, shrink=False)
        reports.append(str(caught.value))
    assert reports[0] == reports[1]


class Numbered(AcpStateMachine):
    """A machine with a rule of its own, as a user adds one, that draws numbers from a wide range;
    each example's steps are kept (``kept``, set per machine), to compare two runs by."""

    kept: ClassVar[list[list[str]]]

    @precondition(lambda self: self.h is not None)
    @rule(numbers=st.lists(st.integers(0, 2**16), min_size=10, max_size=10))
    def numbers(self, numbers: list[int]) -> None:
        self._step(f"numbers {numbers}", rule=False)

    def teardown(self) -> None:
        try:
            super().teardown()
        finally:
            type(self).kept.append(list(self.steps))


def _numbered_run(runner: str) -> list[list[str]]:
    """Every example's steps of one seeded run, through ``run_machine`` or ``run_conformance``."""
    machine = machine_for(reference_bridge, base=Numbered, kept=[])
    if runner == "run_machine":
        run_machine(machine, examples=5, seed=3)
    else:
        run_conformance(machine, examples=5, seed=3, shrink_budget=0)
    return machine.kept


@pytest.mark.parametrize(("runner", "literals"), [("run_machine", 1000), ("run_conformance", 2000)])
def test_the_same_seed_draws_the_same_examples_whatever_the_process_imported(
    runner: str, literals: int, tmp_path: Path
) -> None:
    # Hypothesis draws some integers from the literals of the local modules loaded at the time: an
    # xdist worker that ran other tests first drew other examples from seed 0 than a one-test run.
    first = _numbered_run(runner)
    # Literals new to this process (Hypothesis keeps those of a module it saw for good), in a module
    # not named like a test file (Hypothesis skips those).
    name = f"acp_literals_from_{literals}"
    (tmp_path / f"{name}.py").write_text(f"NUMBERS = {tuple(range(literals, literals + 500))}\n")
    sys.path.insert(0, str(tmp_path))
    try:
        importlib.import_module(name)  # a local module full of literals in the rule's range
        second = _numbered_run(runner)
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop(name, None)
    assert len(first) == len(second)
    for example, (a, b) in enumerate(zip(first, second, strict=True), 1):
        assert a == b, f"example {example} differs"


class Recorder:
    """An adapter that only records the order in which the bridge is called."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def open_session(self, key: str, **kwargs: Any) -> None:
        self.calls.append(f"open {key}")

    async def prompt(self, key: str, text: str, out: TurnOutput) -> str:
        self.calls.append(f"prompt {key}")
        await anyio.sleep(1)
        return "end_turn"

    async def cancel(self, key: str) -> None:
        self.calls.append(f"cancel {key}")

    async def close(self, key: str) -> None:
        self.calls.append(f"close {key}")


@pytest.mark.anyio
async def test_client_actions_reach_the_bridge_in_the_order_they_were_asked() -> None:
    recorder = Recorder()

    @asynccontextmanager
    async def factory(agent: AgentUnderTest) -> AsyncIterator[Recorder]:
        yield recorder

    from acp_sim.agent import InProcessAgent

    harness = Harness(factory, AgentUnderTest(InProcessAgent()), guard_processes=False)
    await harness.start()
    key = harness.open(cwd="/w")
    await harness.wait_idle(10)
    for _ in range(3):  # trio shuffles the start order of tasks; the harness must not
        harness.prompt(key)
        harness.cancel(key)
        await harness.wait_idle(10)
    harness.close(key)
    await harness.stop()
    assert recorder.calls == ["open s1", *["prompt s1", "cancel s1"] * 3, "close s1"]


def _mcp_server(name: str, *extra: str) -> dict[str, Any]:
    import sys

    return {
        "name": name,
        "command": sys.executable,
        "args": ["-m", "acp_sim", "mcp-server", "--name", name, *extra],
        "env": [],
    }


@pytest.mark.parametrize("backend", BACKENDS)
def test_sessions_with_real_mcp_server_processes_pass_and_leave_nothing(backend: str) -> None:
    """Each session's stdio MCP servers are real child processes (one behind an npx-like wrapper);
    the run closes them all, and the leak check at the end of every example finds none."""
    sets = ((), (_mcp_server("fs"),), (_mcp_server("fs"), _mcp_server("git", "--wrapper")))
    faults = ("mcp_child_crash", "mcp_spawn_failure", "stall", "error_reply")
    machine = machine_for(reference_bridge, backend=backend, mcp_sets=sets, fault_kinds=faults)
    assert run_machine(machine, examples=30, seed=0).examples >= 30


def test_a_process_the_bridge_leaves_behind_is_a_p6_violation_naming_it() -> None:
    import subprocess
    import sys

    @asynccontextmanager
    async def leaky(agent: AgentUnderTest) -> AsyncIterator[Any]:
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)  # leaky-bridge-helper"])  # noqa: ASYNC220
        async with reference_bridge(agent) as adapter:
            yield adapter

    with pytest.raises(PropertyViolation) as caught:
        run_machine(machine_for(leaky, backend="asyncio"), examples=5, seed=0, shrink=False)
    assert caught.value.property == "P6"
    assert re.search(
        r"process\(es\) left running after the bridge stopped: pid \d+: .*leaky-bridge-helper",
        str(caught.value),
    )
