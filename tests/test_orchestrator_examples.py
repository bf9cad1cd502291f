"""The orchestrator's README section and examples run as written (on virtual time, in process)."""

from __future__ import annotations

import re
import runpy
import subprocess
import sys

import pytest

from .conftest import REPO


def readme_example() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Using the orchestrator on its own") :]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None, "the README section lost its example"
    return match.group(1)


def test_the_readme_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    exec(compile(readme_example(), "README.md", "exec"), {"__name__": "readme"})
    out = capsys.readouterr().out
    assert "end_turn cancelled" in out
    assert "pool: 1 hits (+1 waited for a warm-up)" in out


@pytest.mark.parametrize("name", ["orchestrator_basic", "orchestrator_reconnect"])
def test_the_examples_run(
    name: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "argv", [name])
    runpy.run_path(str(REPO / "examples" / f"{name}.py"), run_name="__main__")
    out = capsys.readouterr().out
    if name == "orchestrator_basic":
        assert "stop reason cancelled" in out
        assert out.count("stop reason end_turn") == 2
    else:
        match = re.search(r"tokens: orchestrator (\d+), agents reported (\d+)", out)
        assert match is not None
        assert match.group(1) == match.group(2)
        assert "restored by ['new']" in out
        assert "went away" in out


def test_the_orchestrator_knows_nothing_of_the_simulated_agent() -> None:
    """The reference orchestrator is a client of any ACP agent: importing it (and starting one on a
    subprocess agent) must not import the simulator, or it could lean on simulator internals."""
    code = (
        "import sys, acp_sim.orchestrator as o\n"
        "o.Orchestrator(o.SubprocessAgent(['true']))\n"
        "print(sorted(m for m in sys.modules if m.startswith(('acp_sim.agent', 'acp_sim.profile', "
        "'acp_sim.faults', 'acp_sim.clock', 'pytest_acp'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
