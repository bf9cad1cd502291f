"""Counterexample export: a failing state-machine example, written as a scenario file, replays to the
same violation (same property, key, turn, time and message) and passes on the reference.

Most machines here search without shrinking and without faults or crashes, so a seeded bug is found
in a few examples (tenths of a second); one test runs the default rules (faults and crashes,
unshrunk) so fault and crash steps are exported and replayed too. The option that exports from
pytest is in test_collect.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from acp_sim.scenario import load_scenario
from pytest_acp.adapter import LogEntry
from pytest_acp.bugs import CATALOG
from pytest_acp.harness.machine import PropertyViolation
from pytest_acp.harness.machine_run import machine_for, run_machine
from pytest_acp.reference import bridge
from pytest_acp.scenarios.export import export_failure, mcp_spec, steps_from_log
from pytest_acp.scenarios.run import run_scenario


def failing_example(bug: str, backend: str, seed: int) -> PropertyViolation:
    machine = machine_for(
        CATALOG[bug].bridge,
        backend=backend,
        fault_kinds=(),
        crashes=False,
        slow_readers=False,  # type: ignore[arg-type]
    )
    with pytest.raises(PropertyViolation) as caught:
        run_machine(machine, examples=30, seed=seed, shrink=False)
    return caught.value


@pytest.mark.parametrize(
    ("bug", "backend", "seed"),
    [
        ("first_chunk_dropped", "asyncio", 1),
        ("shared_continuation", "trio", 0),
        ("pool_ignores_cwd", "asyncio", 1),
    ],
)
def test_an_exported_counterexample_replays_to_the_same_violation(
    bug: str, backend: str, seed: int, tmp_path: Path
) -> None:
    error = failing_example(bug, backend, seed)
    original = error.violations[0]
    path = export_failure(error, tmp_path, bridge=f"pytest_acp.bugs:{bug}")
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# A counterexample exported by pytest-acp (--acp-export-failures).\n")
    assert f"# replay: pytest <this file> --acp-bridge pytest_acp.bugs:{bug}\n" in text
    loaded = load_scenario(path)
    assert loaded.scenario.backend == backend
    assert loaded.scenario.seed == error.machine.h.agent.launcher.seed  # type: ignore[attr-defined]
    replay = run_scenario(loaded, CATALOG[bug].bridge, backend=backend, bridge=f"pytest_acp.bugs:{bug}")
    assert original in replay.violations, replay.report()
    assert original.property in {v.property for v in replay.failures}
    fixed = run_scenario(loaded, bridge, backend=backend)  # type: ignore[arg-type]
    assert fixed.passed, fixed.report()


def test_the_waits_of_the_machine_are_read_back_from_the_log() -> None:
    def entry(seq: int, t: float, kind: str, **fields: object) -> LogEntry:
        return LogEntry(seq=seq, t=t, kind=kind, **fields)  # type: ignore[arg-type]

    log = [
        entry(0, 0.0, "open", key="s1", detail={"cwd": "/w", "mcp_servers": [], "model": None}),
        entry(1, 0.0, "open", key="s2", detail={"cwd": "/w", "mcp_servers": [], "model": None}),
        entry(2, 3.0, "opened", key="s1"),
        entry(3, 3.0, "opened", key="s2"),
        entry(4, 3.0, "prompt", key="s1", turn=1, detail={"token": "task-0001"}),
        entry(5, 3.0, "prompt", key="s2", turn=1, detail={"token": "task-0002"}),
        entry(6, 3.0, "advance", detail={"seconds": 1.0}),
        entry(7, 4.0, "update", key="s1", turn=1, update_kind="agent_message_chunk", text="x"),
        entry(8, 4.0, "cancel", key="s1", turn=1),
        entry(9, 5.0, "end", key="s2", turn=1, stop_reason="end_turn"),
        entry(10, 5.0, "prompt", key="s2", turn=2, detail={"token": "task-0003"}),
        entry(11, 6.0, "end", key="s2", turn=2, stop_reason="end_turn"),
        entry(12, 6.0, "crash"),
        entry(13, 6.0, "close", key="s1"),  # written by the teardown: left out below
    ]
    steps = steps_from_log(log, end=13)
    assert [(s.action, s.at) for s in steps] == [
        ("open", 0.0),
        ("open", 0.0),
        ("prompt", 3.0),
        ("prompt", 3.0),
        ("advance", 3.0),
        ("cancel", 4.0),
        ("prompt", 5.0),
        ("crash", 6.0),
    ]
    # s1's open was not waited for (s2 was opened in the same instant); s2's was (time passed);
    # the prompts before the advance did not wait; s2's second prompt did (its end came first).
    assert [getattr(s, "waits", None) for s in steps] == [False, True, False, False, None, None, True, None]


def test_acp_sim_s_own_mcp_server_is_written_as_such() -> None:
    import sys

    builtin = mcp_spec(
        {
            "name": "fs",
            "command": sys.executable,
            "args": ["-m", "acp_sim", "mcp-server", "--hang"],
            "env": [],
        }
    )
    assert builtin.command is None
    assert builtin.args == ["--hang"]
    other = mcp_spec({"name": "x", "command": "/bin/x", "args": ["-v"], "env": [{"name": "K", "value": "v"}]})
    assert (other.command, other.args, other.env) == ("/bin/x", ["-v"], {"K": "v"})
    http = mcp_spec({"type": "http", "name": "web", "url": "http://127.0.0.1:9/mcp", "headers": []})
    assert http.to_wire("python") == {
        "type": "http",
        "name": "web",
        "url": "http://127.0.0.1:9/mcp",
        "headers": [],
    }


@pytest.mark.parametrize(
    ("bug", "backend", "seed"), [("phantom_resumed", "asyncio", 0), ("cancel_all", "trio", 1)]
)
def test_a_counterexample_with_faults_and_crashes_replays_too(
    bug: str, backend: str, seed: int, tmp_path: Path
) -> None:
    with pytest.raises(PropertyViolation) as caught:
        run_machine(machine_for(CATALOG[bug].bridge, backend=backend), examples=200, seed=seed, shrink=False)
    error = caught.value
    path = export_failure(error, tmp_path, bridge=f"pytest_acp.bugs:{bug}")
    script = load_scenario(path).scenario.script
    assert any(type(step).__name__ in ("CrashStep", "FaultStep") for step in script), path.read_text()
    replay = run_scenario(load_scenario(path), CATALOG[bug].bridge, backend=backend)
    assert error.violations[0] in replay.violations, replay.report()
    fixed = run_scenario(load_scenario(path), bridge, backend=backend)  # type: ignore[arg-type]
    assert fixed.passed, fixed.report()
