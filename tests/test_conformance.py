"""The conformance report (``--acp-report DIR``, ``pytest_acp.report.conformance``, ``acp_sim.conformance``):
every property judged in one run, each distinct failure shrunk and exported, hazards counted (a
property never provoked is "not exercised", never "pass"), tiers, JSON against its published
schema, a standalone HTML page, and the same bytes for the same seed."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from acp_sim.conformance import (
    HAZARDS,
    ConformanceRun,
    PropertyResult,
    cause_of,
    report_json_schema,
    tier_of,
    verdict_for,
)
from pytest_acp.bugs.catalog import CancelAll, FirstChunkDropped
from pytest_acp.harness.machine import DEFAULT_FAULTS, RECONNECT_FAULTS, TIMEOUT_FAULTS
from pytest_acp.harness.machine_run import machine_for
from pytest_acp.reference import bridge as reference
from pytest_acp.reference import make_bridge
from pytest_acp.report import conformance
from pytest_acp.report.baseline import AcceptedViolation, Baseline
from pytest_acp.report.conformance import describe, run_conformance

from .test_timeline import CHROMIUM_FLAGS, chromium, colour_counts, count_colour, read_png
from .wire_client import StreamingBridge

pytest_plugins = ["pytester"]


def _report(directory: Path) -> dict:
    return json.loads((directory / "conformance.json").read_text(encoding="utf-8"))


def _verdicts(run: dict) -> dict[str, str]:
    return {p["property"]: p["verdict"] for p in run["properties"]}


def test_the_reference_passes_every_property_with_every_hazard_exercised(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest(
        "-p", "no:randomly", "--acp-sim", "--acp-backend", "asyncio", "--acp-report", "out"
    )  # fmt: skip
    result.assert_outcomes(passed=1)
    (run,) = _report(pytester.path / "out")["runs"]
    assert set(_verdicts(run).values()) == {"pass"}
    assert run["tier"] == "complete"
    for prop, names in HAZARDS.items():
        for name in names:
            assert run["hazards"].get(name, 0) > 0, f"{prop}: hazard {name} never happened"
    # Each fault kind the machine injects into a reconnecting, timing-out bridge, and crashes.
    for kind in (*DEFAULT_FAULTS, *RECONNECT_FAULTS, *TIMEOUT_FAULTS, "crash"):
        assert run["faults"].get(kind, 0) > 0, f"fault {kind} never injected"
    result.stdout.fnmatch_lines(
        [
            "*acp conformance*",
            "P1 first chunk delivered*| pass *| 2*|*times*| -",
            "report: */out/conformance.json*",
        ]
    )


def test_a_catalog_bug_fails_its_property_with_a_replayable_counterexample_the_rest_still_judged(
    pytester: pytest.Pytester,
) -> None:
    result = pytester.runpytest(
        "-p", "no:randomly", "--acp-sim", "--acp-backend", "asyncio", "--acp-examples", "40",
        "--acp-bridge", "pytest_acp.bugs:cancel_all", "--acp-report", "out",
    )  # fmt: skip
    result.assert_outcomes(failed=1)
    (run,) = _report(pytester.path / "out")["runs"]
    verdicts = _verdicts(run)
    assert verdicts["P5"] == "fail"
    # Judged all the same: the run went on after the first P5.
    assert {verdicts[p] for p in ("P3", "P4", "P6", "P7", "P8")} == {"pass"}
    (p5,) = [p for p in run["properties"] if p["property"] == "P5"]
    example = p5["counterexamples"][0]
    assert example["shrunk"] is True
    scenario = Path(example["scenario"])
    assert scenario.is_file()
    replay = pytester.runpytest(
        "-p", "no:randomly", str(scenario), "--acp-bridge", "pytest_acp.bugs:cancel_all"
    )
    replay.assert_outcomes(failed=1)
    replay.stdout.fnmatch_lines(["*P5 scoped interrupts*"])
    assert "P5 scoped interrupts" in result.stdout.str()


class TwoBugs(FirstChunkDropped, CancelAll):
    """Two independent seeded bugs: every turn loses its first chunk (P1), one cancel interrupts
    every session (P5)."""


def test_two_independent_bugs_are_both_reported_in_one_run() -> None:
    # Not shrunk here (shrink_budget=0): what is asserted is that both are found in one run.
    machine = machine_for(make_bridge(TwoBugs), backend="asyncio")
    run = run_conformance(machine, examples=40, seed=0, shrink_budget=0)
    verdicts = {p.property: p.verdict for p in run.properties}
    assert verdicts["P1"] == "fail"
    assert verdicts["P5"] == "fail"
    assert run.tier == "none"
    assert run.failed


def test_a_bridge_without_prewarm_is_not_applicable_for_p7_not_a_pass(pytester: pytest.Pytester) -> None:
    # A raw-wire bridge with no prewarm(), through the command line as a user runs it.
    source = "from tests.wire_client import StreamingBridge\nbridge = StreamingBridge.factory()\n"
    pytester.makepyfile(no_prewarm=source)
    pytester.syspathinsert()
    result = pytester.runpytest(
        "-p", "no:randomly", "--acp-sim", "--acp-backend", "asyncio", "--acp-examples", "15",
        "--acp-bridge", "no_prewarm:bridge", "--acp-report", "out",
    )  # fmt: skip
    # Its pass or fail is the other properties' business (this client does not end a turn the agent
    # ignores a cancel in as cancelled, a P5 when the run draws that fault); P7 is this test's.
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) + outcomes.get("failed", 0) == 1, outcomes
    (run,) = _report(pytester.path / "out")["runs"]
    (p7,) = [p for p in run["properties"] if p["property"] == "P7"]
    assert p7["verdict"] == "not_applicable"
    assert "prewarm" in (p7["reason"] or "")
    assert run["tier"] != "complete"
    result.stdout.fnmatch_lines(["P7 *| not applicable*"])


class OneAtATime(StreamingBridge):
    """Holds one conversation at a time (declared: ``max_sessions=1``) and refuses the rest."""

    async def open_session(
        self, key: str, *, cwd: str, mcp_servers: list[dict[str, Any]], model: str | None
    ) -> None:
        if self.sids:
            raise ValueError("one conversation at a time")
        await super().open_session(key, cwd=cwd, mcp_servers=mcp_servers, model=model)


def test_a_run_where_too_little_took_effect_passes_nothing() -> None:
    # Its turns provoke hazards, but most opens are refused: below the threshold the user set, a
    # property that would pass is "not exercised" (issue 24 item 2), whatever its hazard counts.
    refusing = OneAtATime.factory(max_sessions=1, reconnects=False)
    machine = machine_for(refusing, backend="asyncio", min_effect=0.9)
    run = run_conformance(machine, examples=15, seed=0, shrink_budget=0)
    verdicts = {p.property: p for p in run.properties}
    assert "pass" not in {p.verdict for p in run.properties}, verdicts
    for prop in ("P1", "P2", "P3"):
        assert verdicts[prop].verdict == "not_exercised", verdicts[prop]
        assert (verdicts[prop].reason or "").startswith("too little took effect ("), verdicts[prop]
        assert "; short on: opens" in (verdicts[prop].reason or "")
    assert run.tier == "none"


def test_a_property_never_provoked_is_not_exercised_and_blocks_its_tier() -> None:
    assert (
        verdict_for("P1", applicable=True, hazards={}, failed_examples=0, accepted=False) == "not_exercised"
    )
    assert verdict_for("P1", applicable=True, hazards={"first_chunk_same_tick": 1}, failed_examples=0,
                       accepted=False) == "pass"  # fmt: skip
    assert verdict_for("P1", applicable=True, hazards={}, failed_examples=2, accepted=True) == "fail"
    results = [
        PropertyResult(property=p, name=p, verdict="pass", examples=1) for p in ("P1", "P2", "P3", "P5", "P4")
    ]
    results.append(PropertyResult(property="P6", name="P6", verdict="not_exercised", examples=1))
    assert tier_of(results) == "core"


def test_causes_tell_failures_apart_by_kind_not_by_ids_or_times() -> None:
    a = cause_of("P2", "delivered '[e3e70682 t1 c0] a b', which the agent never sent")
    b = cause_of("P2", "delivered '[0a1b2c3d t4 c2] x', which the agent never sent")
    c = cause_of("P2", "never ended, although the agent answered end_turn at t=3.000000")
    assert a == b != c


def test_the_json_validates_against_the_published_schema_and_is_the_same_for_a_seed(tmp_path: Path) -> None:
    schema = report_json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    runs = []
    for _ in range(2):
        run = run_conformance(machine_for(reference, backend="asyncio"), examples=12, seed=3)
        runs.append(run)
    report = {"version": 1, "tool": "pytest-acp", "runs": [json.loads(runs[0].model_dump_json())]}
    jsonschema.Draft202012Validator(schema).validate(report)
    # Times aside, byte for byte.
    first, second = (
        r.model_copy(update={"timing": r.timing.model_copy(update={"wall_seconds": 0})}) for r in runs
    )
    assert first.model_dump_json() == second.model_dump_json()
    assert ConformanceRun.model_validate_json(first.model_dump_json()) == first


def test_acp_sim_schema_report_prints_the_schema() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "acp_sim", "schema", "report"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    assert json.loads(out)["title"] == "pytest-acp conformance report"


def test_headless_chromium_renders_the_report(pytester: pytest.Pytester, tmp_path: Path) -> None:
    pytester.runpytest(
        "-p", "no:randomly", "--acp-sim", "--acp-backend", "asyncio", "--acp-examples", "30",
        "--acp-bridge", "pytest_acp.bugs:cancel_all", "--acp-report", "out",
    )  # fmt: skip
    page = pytester.path / "out" / "conformance.html"
    text = page.read_text(encoding="utf-8")
    assert "<script" not in text  # standalone: nothing to fetch, nothing to run
    assert "http" not in text
    assert ">fail</span>" in text
    assert ">pass</span>" in text
    browser = chromium()
    if browser is None:
        pytest.skip(
            "no Chromium on PATH (Debian: apt-get install -y chromium); the structural check still ran"
        )
    png = tmp_path / "report.png"
    flags = [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    subprocess.run(
        [browser, *flags, f"--screenshot={png}", "--window-size=1100,900", page.as_uri()],
        check=True,
        capture_output=True,
        timeout=120,
        env={**os.environ, "HOME": str(tmp_path)},
    )
    width, height, rows = read_png(png)
    assert (width, height) == (1100, 900)
    counts = colour_counts(rows)
    assert count_colour(counts, "#cf222e") >= 40, "no red 'fail' badge on screen"
    assert count_colour(counts, "#1a7f37") >= 40, "no green 'pass' badge on screen"


def test_the_baseline_accepts_in_the_report_and_names_an_entry_that_matched_nothing() -> None:
    accept = AcceptedViolation(property="P1", pattern="was never delivered", why="ticket #3")
    side = AcceptedViolation(property="P2", pattern=".", why="the same bug: text incomplete (ticket #3)")
    # A cancel sent before the late listener registered never reaches the agent: the bug's too.
    cancel = AcceptedViolation(property="P5", pattern="received session/cancel never", why="ticket #3")
    gone = AcceptedViolation(property="P4", pattern="fired for turn", why="fixed long ago")
    machine = type("Accepting", (machine_for(make_bridge(FirstChunkDropped), backend="asyncio"),), {
        "baseline": Baseline([accept, side, cancel, gone]), "__module__": __name__,
    })  # fmt: skip
    run = run_conformance(machine, examples=8, seed=0, shrink_budget=0)
    (p1,) = [p for p in run.properties if p.property == "P1"]
    assert p1.verdict == "accepted"
    assert p1.accepted == [accept.describe()]
    assert not run.failed
    assert run.stale_baseline == [gone.describe()]


def test_secrets_never_reach_the_report(monkeypatch: pytest.MonkeyPatch) -> None:
    machine = machine_for(make_bridge(FirstChunkDropped), backend="asyncio")
    plain = run_conformance(machine, examples=3, seed=0, shrink_budget=0)
    (p1,) = [p for p in plain.properties if p.property == "P1"]
    # The first chunk's id stands in for a key the agent echoed: the same run, now with it as the key.
    found = re.search(r"\[([0-9a-f]{8}) ", p1.counterexamples[0].message)
    assert found is not None
    secret = found.group(1)
    monkeypatch.setenv("ANTHROPIC_API_KEY", secret)
    run = run_conformance(machine, examples=3, seed=0, shrink_budget=0)
    for text in (run.model_dump_json(), describe(run)):
        assert secret not in text
        assert "[REDACTED]" in text


def test_a_real_time_subprocess_bridge_gets_its_report_too(pytester: pytest.Pytester) -> None:
    from .test_realtime_entry import SIDECAR, SIDECAR_MAIN

    pytester.makepyfile(sidecar=SIDECAR, sidecar_main=SIDECAR_MAIN)
    pytester.makepyprojecttoml('[tool.pytest.ini_options]\npythonpath = ["."]\n')
    result = pytester.runpytest(
        "-p", "no:randomly", "--acp-sim", "--acp-bridge", "sidecar:bridge", "--acp-backend", "asyncio",
        "--acp-examples", "3", "--acp-report", "out",
    )  # fmt: skip
    result.assert_outcomes(failed=1)
    report = _report(pytester.path / "out")
    jsonschema.Draft202012Validator(report_json_schema()).validate(report)
    (run,) = report["runs"]
    assert run["clock"] == "real"
    assert _verdicts(run)["P2"] == "fail"
    (p2,) = [p for p in run["properties"] if p["property"] == "P2"]
    example = p2["counterexamples"][0]
    assert "from the cache" in example["message"]
    assert example["shrunk"] is False  # a replay on real time may take another path: said so
    assert example["steps"]
    result.stdout.fnmatch_lines(
        ["acp conformance: sidecar:bridge (asyncio, real time)*", "P2 integrity*| fail *"]
    )


def test_each_counterexample_of_a_property_has_a_scenario_file_of_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One cancel interrupts every session: three distinct P5 failures in 20 examples, each replayed
    # and exported; none may overwrite another's file. (Not shrunk here: shrinking three of them
    # takes minutes; what is written is the same either way.)
    replay = conformance._run
    monkeypatch.setattr(conformance, "_run", lambda *a, **kw: replay(*a, **{**kw, "shrink": False}))
    machine = machine_for(make_bridge(CancelAll), backend="asyncio")
    run = run_conformance(machine, examples=20, seed=0, export_dir=tmp_path)
    (p5,) = [p for p in run.properties if p.property == "P5"]
    paths = [c.scenario for c in p5.counterexamples]
    assert len(paths) >= 2, "this run is meant to find several P5 counterexamples"
    assert None not in paths, paths
    assert len(set(paths)) == len(paths), paths
    assert sorted(tmp_path.glob("counterexample-p5-*.yaml")) == sorted(Path(p) for p in paths if p)
    for path in paths:
        assert f"name: {Path(str(path)).stem}" in Path(str(path)).read_text(encoding="utf-8")
