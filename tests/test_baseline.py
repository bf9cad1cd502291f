"""The baseline file of accepted violations (``--acp-baseline``, ``pytest_acp.report.baseline``): accepted
violations do not fail the run and the suite explores past them, the rest still fails it, stale
entries are reported, and a mistake in the file is a usage error naming the file and field."""

from __future__ import annotations

import shutil

import pytest

from .conftest import REPO

pytest_plugins = ["pytester"]

# Two independent seeded bugs in one bridge: every turn loses its first chunk (P1, with its P2
# consequences: the turn's text is incomplete), and one cancel interrupts every session (P5).
TWO_BUGS = """
from pytest_acp.bugs.catalog import CancelAll, FirstChunkDropped
from pytest_acp.reference import make_bridge


class TwoBugs(FirstChunkDropped, CancelAll):
    pass


bridge = make_bridge(TwoBugs)
"""

# What the team behind a bridge with a late-registered continuation commits next to its tests.
LATE_CONTINUATION = """
accept:
  - property: P1
    pattern: "first chunk .* was never delivered"
    why: "the continuation is registered after the prompt is sent (ticket #3)"
  - property: P2
    pattern: "chunk"
    why: "the same bug: the turn's text is incomplete (ticket #3)"
"""


def _section(out: str) -> str:
    return out[out.index("acp baseline") :]


def test_a_catalog_bug_accepted_by_the_baseline_passes_and_is_reported_as_accepted(
    pytester: pytest.Pytester,
) -> None:
    pytester.makefile(
        ".yaml",
        baseline="""
        accept:
          - property: P9
            pattern: "token total for the key"
            why: "a restored session re-adds its usage (ticket #7)"
        """,
    )
    args = ["--acp-sim", "--acp-bridge", "pytest_acp.bugs:tokens_double_counted", "--acp-backend", "asyncio"]
    without = pytester.runpytest(*args, "--acp-examples", "40")
    without.assert_outcomes(failed=1)
    assert "P9 token accounting violated" in without.stdout.str()
    result = pytester.runpytest(*args, "--acp-examples", "40", "--acp-baseline", "baseline.yaml")
    result.assert_outcomes(passed=1)
    summary = _section(result.stdout.str())
    assert (
        "accepted P9 /token total for the key/ (a restored session re-adds its usage (ticket #7))" in summary
    )
    assert "e.g. P9 token accounting: the bridge's token total for the key" in summary
    assert "stale" not in summary


def test_a_baselined_bug_does_not_hide_an_independent_one(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(two_bugs=TWO_BUGS)
    pytester.makepyprojecttoml(
        '[tool.pytest.ini_options]\npythonpath = ["."]\nacp_baseline = "baseline.yaml"\n'
    )
    pytester.makefile(".yaml", baseline=LATE_CONTINUATION)
    result = pytester.runpytest(
        "--acp-sim", "--acp-bridge", "two_bugs:bridge", "--acp-backend", "asyncio", "--acp-examples", "60"
    )
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    first = next(line for line in out.splitlines() if "violated:" in line)
    assert first.startswith("P5 scoped interrupts violated"), first
    assert "--acp-baseline baseline.yaml" in next(line for line in out.splitlines() if "replay:" in line)
    assert "accepted P1 /first chunk .* was never delivered/" in _section(out)


def test_an_entry_that_matches_nothing_is_reported_stale(pytester: pytest.Pytester) -> None:
    pytester.makefile(
        ".toml",
        baseline='[[accept]]\nproperty = "P5"\npattern = "cancel"\nwhy = "fixed in 2.1, kept by mistake"\n',
    )
    result = pytester.runpytest(
        "--acp-sim", "--acp-backend", "asyncio", "--acp-examples", "15", "--acp-baseline", "baseline.toml"
    )
    result.assert_outcomes(passed=1)
    summary = _section(result.stdout.str())
    stale = "stale: P5 /cancel/ (fixed in 2.1, kept by mistake) matched nothing in this run: remove it"
    assert stale in summary


def test_a_scenario_file_accepts_the_same_baseline(pytester: pytest.Pytester) -> None:
    shutil.copy(REPO / "scenarios" / "first-chunk-same-tick.yaml", pytester.path / "scenario.yaml")
    expectation = (
        "  - property: expectation\n"
        '    pattern: "text chunks delivered"\n'
        '    why: "the file counts every chunk"\n'
    )
    pytester.makefile(".yaml", baseline=LATE_CONTINUATION.rstrip("\n") + "\n" + expectation)
    args = ["scenario.yaml", "--acp-bridge", "pytest_acp.bugs:first_chunk_dropped", "--acp-backend", "trio"]
    pytester.runpytest(*args).assert_outcomes(failed=1)
    result = pytester.runpytest(*args, "--acp-baseline", "baseline.yaml")
    result.assert_outcomes(passed=1)
    assert "accepted P1" in _section(result.stdout.str())


def test_a_mistake_in_the_file_is_a_usage_error_naming_file_and_field(pytester: pytest.Pytester) -> None:
    pytester.makefile(".json", baseline='{"accept": [{"property": "P11", "patern": "x", "why": "?"}]}')
    result = pytester.runpytest("--acp-baseline", "baseline.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "*--acp-baseline: invalid baseline file baseline.json:",
            "*accept.0.property: Value error, unknown property 'P11'; one of P1, P2, *",
            "*accept.0.pattern: Field required*",
            "*accept.0.patern: Extra inputs are not permitted*",
        ]
    )
