"""``acp-sim run FILE [--bridge module:factory] [--html OUT]``: a scenario outside pytest."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from acp_sim.cli import main

REPO = Path(__file__).resolve().parent.parent
SCENARIOS = REPO / "scenarios"


def test_run_prints_a_timeline_per_session_and_writes_the_html(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "timeline.html"
    code = main(["run", str(SCENARIOS / "cancel-one-of-three.yaml"), "--html", str(out)])
    text = capsys.readouterr().out
    assert code == 0
    assert text.startswith("scenario cancel-one-of-three\n")
    for lane in ("agent (launches, faults, pool)", "a: agent#0 ", "b: agent#0 ", "c: agent#0 "):
        assert lane in text
    assert "end cancelled" in text
    assert "end end_turn" in text
    assert "\nPASSED\n" in text
    assert f"HTML timeline written to {out}" in text
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert '<span class="verdict passed">PASSED</span>' in page


def test_run_against_a_broken_bridge_fails_with_the_report(capsys: pytest.CaptureFixture[str]) -> None:
    path = SCENARIOS / "cancel-one-of-three.yaml"
    code = main(["run", str(path), "--bridge", "pytest_acp.bugs:cancel_all", "--quiet", "--backend", "trio"])
    text = capsys.readouterr().out
    assert code == 1
    assert "┏" not in text  # --quiet: no timeline tables
    assert "P5 scoped interrupts violated: " in text
    assert "bridge:  pytest_acp.bugs:cancel_all (trio, virtual time)" in text
    assert f"replay:  acp-sim run {path} --bridge pytest_acp.bugs:cancel_all --backend trio" in text


def test_run_of_a_bad_file_or_bridge_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\ndescription: x\nscript:\n  - prompt: a\n", encoding="utf-8")
    assert main(["run", str(bad)]) == 2
    assert (
        f"{bad}:4: script[0].prompt: session 'a' was never opened (opened so far: none) (got 'a')"
        in capsys.readouterr().err
    )
    good = str(SCENARIOS / "first-chunk-same-tick.yaml")
    assert main(["run", good, "--bridge", "no_such_module:bridge"]) == 2
    assert "cannot import 'no_such_module'" in capsys.readouterr().err


def test_run_skips_a_scenario_the_bridge_cannot_serve(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "run",
            str(SCENARIOS / "cold-vs-warm-start.yaml"),
            "--bridge",
            "examples.reference_adapter:bridge",
            "--quiet",
        ]
    )
    assert code == 3
    assert "skipped: the bridge does not offer what this scenario needs: prewarm" in capsys.readouterr().out


def test_a_bad_bridge_error_names_the_commands_own_option(capsys: pytest.CaptureFixture[str]) -> None:
    good = str(SCENARIOS / "first-chunk-same-tick.yaml")
    assert main(["run", good, "--bridge", "no_such_module:bridge"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("acp-sim: --bridge no_such_module:bridge: cannot import 'no_such_module'")
    assert "--acp-bridge" not in err


def test_run_imports_the_bridge_with_the_projects_pytest_pythonpath(tmp_path: Path) -> None:
    # The replay command a failing scenario item prints, run from the project directory: the
    # bridge module lives under the project's pythonpath (src/), as pytest found it.
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "my_adapter.py").write_text("from pytest_acp.reference import bridge\n")
    (tmp_path / "pyproject.toml").write_text('[tool.pytest.ini_options]\npythonpath = ["src"]\n')
    (tmp_path / "scenarios").mkdir()
    scenario = tmp_path / "scenarios" / "one.yaml"
    scenario.write_text((SCENARIOS / "first-chunk-same-tick.yaml").read_text(encoding="utf-8"))
    elsewhere = tmp_path / "elsewhere"  # run from a directory that is not the project's
    elsewhere.mkdir()
    command = [sys.executable, "-c", "from acp_sim.cli import main; raise SystemExit(main())"]
    done = subprocess.run(
        [*command, "run", str(scenario), "--bridge", "my_adapter:bridge", "--quiet"],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr + done.stdout
