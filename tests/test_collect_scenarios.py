"""Scenario files as pytest items, from the outside (pytester): collection, -k, a bad file failing
alone, the failure report, HTML timelines on failure, skips, and counterexample export.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parent.parent
FIRST_CHUNK = (REPO / "scenarios" / "first-chunk-same-tick.yaml").read_text(encoding="utf-8")
COLD_WARM = (REPO / "scenarios" / "cold-vs-warm-start.yaml").read_text(encoding="utf-8")
BAD = """\
name: bad-one
description: a typo in a key
script:
  - open: a
  - {prompt: a, waitt: true}
"""
TESTPATHS = '[tool.pytest.ini_options]\ntestpaths = ["tests"]\n'
ASYNCIO = ("-p", "no:cacheprovider", "--acp-backend", "asyncio")


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    """A project with a test, two good scenarios and a bad one, testpaths = tests."""
    pytester.makepyprojecttoml(TESTPATHS)
    (pytester.path / "tests").mkdir()
    (pytester.path / "tests" / "test_plain.py").write_text("def test_plain():\n    pass\n")
    scenarios = pytester.path / "scenarios"
    (scenarios / "more").mkdir(parents=True)
    (scenarios / "first-chunk-same-tick.yaml").write_text(FIRST_CHUNK)
    (scenarios / "more" / "cold-vs-warm-start.yaml").write_text(COLD_WARM)
    (scenarios / "more" / "bad.yml").write_text(BAD)
    return pytester


def test_scenarios_are_collected_next_to_the_tests_and_a_bad_file_fails_alone(
    project: pytest.Pytester,
) -> None:
    result = project.runpytest(*ASYNCIO, "-v")
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(
        [
            "tests/test_plain.py::test_plain PASSED*",
            "scenarios/first-chunk-same-tick.yaml::first-chunk-same-tick[[]asyncio[]] PASSED*",
            "scenarios/more/bad.yml::bad FAILED*",
            "scenarios/more/cold-vs-warm-start.yaml::cold-vs-warm-start[[]asyncio[]] PASSED*",
        ]
    )
    bad = project.path / "scenarios" / "more" / "bad.yml"
    result.stdout.fnmatch_lines(
        [f"invalid scenario file {bad}:", f"  {bad}:5: script[1].waitt: unknown key (got True)"]
    )


def test_both_backends_by_default_and_k_selects_by_scenario_name(project: pytest.Pytester) -> None:
    result = project.runpytest("-p", "no:cacheprovider", "-k", "first-chunk", "--co", "-q")
    result.stdout.fnmatch_lines(
        [
            "scenarios/first-chunk-same-tick.yaml::first-chunk-same-tick[[]asyncio[]]",
            "scenarios/first-chunk-same-tick.yaml::first-chunk-same-tick[[]trio[]]",
            "2/6 tests collected (4 deselected)*",
        ]
    )


def test_a_failure_gets_the_state_machine_report_and_an_html_timeline(project: pytest.Pytester) -> None:
    html = project.path / "timelines"
    result = project.runpytest(
        *ASYNCIO,
        "-k",
        "first-chunk",
        "--acp-bridge",
        "pytest_acp.bugs:first_chunk_dropped",
        "--acp-timeline-html",
        str(html),
    )
    result.assert_outcomes(failed=1, deselected=3)
    result.stdout.fnmatch_lines(
        [
            "scenario first-chunk-same-tick (*first-chunk-same-tick.yaml): The agent writes its first chunk*",
            "P1 first chunk delivered violated: P1 first chunk delivered: the first chunk '[[]*",
            "bridge:  pytest_acp.bugs:first_chunk_dropped (asyncio, virtual time)",
            "seed:    7",
            "replay:  pytest 'scenarios/first-chunk-same-tick.yaml::first-chunk-same-tick[[]asyncio[]]' "
            "--acp-bridge pytest_acp.bugs:first_chunk_dropped   or: acp-sim run *",
            "steps (virtual seconds since the run started):",
            "*prompt a turn 1 (task-0001)  [[]script[[]1[]], line 16[]]",
            "timeline around t=2.000000 *",
            f"HTML timeline: {html / 'first-chunk-same-tick-asyncio.html'}",
        ]
    )
    assert "Traceback" not in result.stdout.str()
    assert (html / "first-chunk-same-tick-asyncio.html").read_text().startswith("<!DOCTYPE html>")


BRIDGE_WITHOUT_PREWARM = """
from contextlib import asynccontextmanager
from acp_sim.orchestrator import Orchestrator
from pytest_acp.reference import ReferenceAdapter

@asynccontextmanager
async def bridge(agent):
    async with Orchestrator(agent.launcher, turn_timeout=40, idle_timeout=15) as orch:
        yield ReferenceAdapter(orch)
"""


def test_a_bridge_without_what_a_scenario_needs_skips_it(project: pytest.Pytester) -> None:
    project.makepyfile(plainbridge=BRIDGE_WITHOUT_PREWARM)
    project.syspathinsert()
    result = project.runpytest(*ASYNCIO, "-rs", "-k", "warm", "--acp-bridge", "plainbridge:bridge")
    result.assert_outcomes(skipped=1, deselected=3)
    result.stdout.fnmatch_lines(["SKIPPED*the bridge does not offer what this scenario needs: prewarm"])


def test_live_scenarios_without_the_adapter_are_skipped_with_the_reason(project: pytest.Pytester) -> None:
    result = project.runpytest(
        *ASYNCIO, "-rs", "-k", "first-chunk", "--acp-live", "--acp-agent-cmd", "/nonexistent"
    )
    assert result.parseoutcomes()["skipped"] == 1
    result.stdout.fnmatch_lines(
        ["SKIPPED*--acp-live: --acp-agent-cmd: '/nonexistent' is not an executable on PATH*"]
    )


def test_which_yaml_files_are_scenarios(pytester: pytest.Pytester) -> None:
    pytester.makepyprojecttoml(TESTPATHS + 'acp_scenarios = ["regressions"]\n')
    (pytester.path / "tests").mkdir()
    (pytester.path / "tests" / "ci.yaml").write_text("jobs: {build: {runs-on: linux}}\n")  # not a scenario
    (pytester.path / "tests" / "keep.yaml").write_text(FIRST_CHUNK.replace("first-chunk-same-tick", "kept"))
    (pytester.path / "regressions").mkdir()
    (pytester.path / "regressions" / "r.yaml").write_text(
        FIRST_CHUNK.replace("first-chunk-same-tick", "from-ini")
    )
    (pytester.path / "elsewhere").mkdir()
    (pytester.path / "elsewhere" / "e.yaml").write_text(
        FIRST_CHUNK.replace("first-chunk-same-tick", "by-option")
    )
    (pytester.path / "elsewhere" / "junk.yaml").write_text("not: [a, scenario\n")
    out = pytester.runpytest(*ASYNCIO, "--co", "-q").stdout.str()
    assert re.findall(r"^\S+::\S+", out, re.MULTILINE) == [
        "tests/keep.yaml::kept[asyncio]",
        "regressions/r.yaml::from-ini[asyncio]",
    ]
    out = pytester.runpytest(*ASYNCIO, "--co", "-q", "--acp-scenarios", "elsewhere").stdout.str()
    assert "elsewhere/e.yaml::by-option[asyncio]" in out
    assert "elsewhere/junk.yaml::junk" in out
    # a file named on the command line is collected wherever it is, and only it
    out = pytester.runpytest(*ASYNCIO, "--co", "-q", "elsewhere/e.yaml").stdout.str()
    assert re.findall(r"^\S+::\S+", out, re.MULTILINE) == ["elsewhere/e.yaml::by-option[asyncio]"]


EXPORTING_TEST = """
from pytest_acp.bugs import CATALOG
from pytest_acp.harness.machine_run import machine_for, run_machine

def test_property_suite():
    bug = CATALOG["first_chunk_dropped"].bridge
    machine = machine_for(bug, fault_kinds=(), crashes=False, slow_readers=False)
    run_machine(machine, examples=30, seed=1, shrink=False)
"""


def test_a_failing_state_machine_example_is_exported_and_replays(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_suite=EXPORTING_TEST)
    out_dir = pytester.path / "exported"
    html = pytester.path / "html"
    result = pytester.runpytest(
        *ASYNCIO, "--acp-export-failures", str(out_dir), "--acp-timeline-html", str(html), "test_suite.py"
    )
    result.assert_outcomes(failed=1)
    (path,) = out_dir.glob("*.yaml")
    assert path.name.startswith("counterexample-p1-first-chunk-dropped-asyncio-seed")
    result.stdout.fnmatch_lines(
        [
            "P1 first chunk delivered violated: *",
            f"counterexample written to {path}",
            f"replay it: pytest {path} --acp-bridge MODULE:FACTORY (the bridge it failed on)",
            f"HTML timeline: {html}/property-suite-P1-asyncio-seed*.html",
        ]
    )
    replay = pytester.runpytest(*ASYNCIO, str(path), "--acp-bridge", "pytest_acp.bugs:first_chunk_dropped")
    replay.assert_outcomes(failed=1)
    replay.stdout.fnmatch_lines(["P1 first chunk delivered violated: *"])
    pytester.runpytest(*ASYNCIO, str(path)).assert_outcomes(passed=1)  # the reference is not fooled


def test_every_scenario_result_line_names_the_bridge_that_ran(
    project: pytest.Pytester, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # A file named on the command line from outside the project ran against the default bridge,
    # and nothing said so.
    outside = tmp_path_factory.mktemp("elsewhere") / "first-chunk-same-tick.yaml"
    outside.write_text(FIRST_CHUNK)
    result = project.runpytest(*ASYNCIO, "-v", str(outside))
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*same-tick[[]asyncio[]] PASSED on pytest_acp.reference:bridge*"])
    result = project.runpytest(*ASYNCIO, "-v", "--acp-bridge", "pytest_acp.bugs:cancel_all", str(outside))
    result.stdout.fnmatch_lines(["*first-chunk-same-tick[[]asyncio[]] * on pytest_acp.bugs:cancel_all*"])
