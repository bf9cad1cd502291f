"""The guard that keeps Hypothesis's own pytest plugin from importing Hypothesis at the end of every
run (pytest_acp.hypothesis_guard, pytester): a run that never used Hypothesis does not import it,
and everything Hypothesis's terminal summary prints is still printed, with pytest-xdist too."""

from __future__ import annotations

import pytest

from .test_plugin_citizenship import PLAIN_PROJECT, _looptime_guard_args

pytest_plugins = ["pytester"]

# Says at the very end of the run (in the process that prints the summary) whether Hypothesis
# was imported.
IMPORTED_AT_THE_END = """
import sys


def pytest_unconfigure(config):
    if getattr(config, "workerinput", None) is None:
        print("hypothesis imported:", "hypothesis" in sys.modules)
"""

# Says before the summary whether this process imported Hypothesis: the tests of the xdist
# controller check that it did not (else the guard would not be what lets its summary through).
IMPORTED_BEFORE_THE_SUMMARY = """
import sys


def pytest_sessionfinish(session):
    if getattr(session.config, "workerinput", None) is None:
        print("hypothesis imported before the summary:", "hypothesis" in sys.modules)
"""

GIVEN_TESTS = """
from hypothesis import given, settings, strategies as st


@settings(database=None)
@given(st.integers())
def test_{name}(n):
    assert n {op} 10
"""

# Hypothesis writes its patch of failing examples with libcst (``hypothesis[codemods]``); where
# libcst is missing, a stand-in for its patching module takes the same path through the plugin
# (an example found by a worker, carried to the controller in the report, a patch saved there).
PATCHING_STAND_IN = """
import importlib.util
import json
import sys
import types
from pathlib import Path

if importlib.util.find_spec("libcst") is None:
    patching = types.ModuleType("hypothesis.extra._patching")
    patching.FAIL_MSG = "discovered failure"
    patching.get_patch_for = lambda func, examples: (func.__code__.co_filename, "before", "after")
    patching.make_patch = lambda triples: json.dumps(triples)
    patching.gc_patches = lambda: None

    def save_patch(patch):
        path = Path("stand-in.patch").resolve()
        path.write_text(patch)
        return path

    patching.save_patch = save_patch
    sys.modules["hypothesis.extra._patching"] = patching
"""


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    # A fresh interpreter: this test process has imported Hypothesis already.
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *_looptime_guard_args(), *args)


def test_a_run_that_never_uses_hypothesis_does_not_import_it(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(IMPORTED_AT_THE_END)
    pytester.makepyfile(PLAIN_PROJECT)
    result = _run(pytester, "-s")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["hypothesis imported: False"])
    assert "Hypothesis" not in result.stdout.str()


def test_nor_with_xdist(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(IMPORTED_AT_THE_END)
    pytester.makepyfile(PLAIN_PROJECT)
    result = _run(pytester, "-s", "-n", "2")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["hypothesis imported: False"])


def test_statistics_are_still_printed(pytester: pytest.Pytester) -> None:
    # No test of Hypothesis's here: its summary prints the (empty) section all the same.
    pytester.makepyfile(PLAIN_PROJECT)
    result = _run(pytester, "--hypothesis-show-statistics")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*= Hypothesis Statistics =*"])


def test_statistics_from_xdist_workers_are_still_printed(pytester: pytest.Pytester) -> None:
    # The statistics come in the workers' reports. (Any Hypothesis option has the controller
    # import Hypothesis at configure time, so the guard stands aside for two reasons here.)
    pytester.makepyfile(
        test_plain=PLAIN_PROJECT, test_small=GIVEN_TESTS.format(name="small", op="< 10 or n >=")
    )
    result = _run(pytester, "-s", "-n", "2", "--hypothesis-show-statistics")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*= Hypothesis Statistics =*", "*test_small*", "*100 passing*"])


def test_failing_examples_from_xdist_workers_still_make_a_patch(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(PATCHING_STAND_IN + IMPORTED_BEFORE_THE_SUMMARY)
    pytester.makepyfile(test_fails=GIVEN_TESTS.format(name="fails", op="<"))
    result = _run(pytester, "-s", "-n", "2")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*hypothesis imported before the summary: False",
            "*= Hypothesis =*",
            "`git apply *` to add failing test cases to your code.",
        ]
    )


def test_observations_written_in_the_run_are_still_listed(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HYPOTHESIS_EXPERIMENTAL_OBSERVABILITY", "1")
    pytester.makepyfile(test_small=GIVEN_TESTS.format(name="small", op="< 10 or n >="))
    result = _run(pytester)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*= Hypothesis =*", "observations written to *"])


def test_the_guard_comes_with_the_entry_point_that_no_acp_keeps() -> None:
    import pytest_acp.hypothesis_guard
    import pytest_acp.looptime_guard

    assert pytest_acp.hypothesis_guard.__name__ in pytest_acp.looptime_guard.COMPANIONS
