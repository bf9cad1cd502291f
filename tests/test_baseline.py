"""The baseline file of accepted violations (``--acp-baseline``, ``pytest_acp.report.baseline``): accepted
violations do not fail the run and the suite explores past them, the rest still fails it, stale
entries are reported, and a mistake in the file is a usage error naming the file and field."""

from __future__ import annotations

import re
import shlex
import shutil

import pytest

from .conftest import REPO

pytest_plugins = ["pytester"]

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


# The independent bug's own violation: CancelAll's cancel of one session ends another caller's turn.
CANCEL_ALL = (
    "P5 scoped interrupts violated: P5 scoped interrupts: "
    "turn ended 'cancelled' although its caller never cancelled it"
)


def _section(out: str) -> str:
    return out[out.index("acp baseline") :]


def _readme_example() -> tuple[dict[str, str], list[str], str]:
    """The README's worked example, as a reader would copy it: its files (each named by its first
    line), the arguments of its ``$ pytest`` command and the output printed under it."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    start = text.index("### Accepting known violations: the baseline file")
    section = text[start : text.index("\n### ", start + 1)]
    files = {
        body.splitlines()[0].removeprefix("# "): body
        for body in re.findall(r"```(?:python|yaml)\n(.*?)```", section, re.S)
    }
    run = re.search(r"```\n\$ (pytest .*?)\n(.*?)```", section, re.S)
    assert run is not None, "the README section lost its run"
    return files, shlex.split(run.group(1))[1:], run.group(2)


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
    """The README's worked example, run as written: two catalog bugs in one bridge, a session leak
    (P6) that the baseline accepts and a global cancel (P5) that the run reports."""
    files, args, printed = _readme_example()
    assert set(files) == {"two_bugs.py", "acp-baseline.yaml"}
    for name, body in files.items():
        (pytester.path / name).write_text(body, encoding="utf-8")
    pytester.makepyprojecttoml('[tool.pytest.ini_options]\npythonpath = ["."]\n')
    at = args.index("--acp-baseline")
    assert args[at + 1] == "acp-baseline.yaml"
    without_baseline = args[:at] + args[at + 2 :]

    def headline(out: str) -> str:
        return next(line for line in out.splitlines() if "violated:" in line)

    # Without the baseline the leak is all the run shows.
    hidden = pytester.runpytest(*without_baseline)
    hidden.assert_outcomes(failed=1)
    assert headline(hidden.stdout.str()).startswith("P6 no leaked processes or sessions violated")
    assert "was never closed (session/close not sent)" in headline(hidden.stdout.str())

    result = pytester.runpytest(*args)
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert headline(out).startswith(CANCEL_ALL), headline(out)
    assert headline(printed).startswith(CANCEL_ALL), "the README shows another violation"
    assert "--acp-baseline acp-baseline.yaml" in next(line for line in out.splitlines() if "replay:" in line)
    summary = _section(out)
    assert "stale" not in summary
    accepted = [line.rsplit(": ", 1)[0] for line in printed.splitlines() if line.startswith("  accepted ")]
    assert accepted == [
        "  accepted P6 /session/close not sent/ (close() forgets the session but never tells the agent "
        "(ticket #12))"
    ]
    assert accepted[0] in summary

    # The control: the accepted bug alone passes under the same baseline, so the P5 is the other bug's.
    bridge = args.index("--acp-bridge") + 1
    alone = pytester.runpytest(*args[:bridge], "pytest_acp.bugs:mcp_leak_on_close", *args[bridge + 1 :])
    alone.assert_outcomes(passed=1)
    assert accepted[0] in _section(alone.stdout.str())


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
