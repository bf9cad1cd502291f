"""The ``acp-sim`` command: demo, stdio agent, help and bad profiles."""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from acp_sim.cli import build_parser, main, run_demo
from acp_sim.profile import DEFAULT

from .conftest import AGENT_CMD


def test_demo_prints_a_timeline_of_every_session() -> None:
    out = io.StringIO()
    assert run_demo(DEFAULT, seed=0, backend="asyncio", sessions=4, out=out) == 0
    text = out.getvalue()
    for label in ("S0", "S1", "S2", "S3"):
        assert f"{label}   <- stopReason end_turn" in text
        assert text.count(f"{label}     agent_message_chunk") == 5
    assert "4 sessions, 4.200 simulated seconds" in text


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


@pytest.mark.parametrize("command", sorted(_subcommands()))
def test_every_subcommand_help_documents_every_option_it_takes(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Read from the parser itself: an option added without help text (or hidden) fails here."""
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0
    help_text = capsys.readouterr().out
    for action in _subcommands()[command]._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        names = action.option_strings or [action.metavar or action.dest]
        assert action.help, f"{command} {names[0]} has no help"
        assert action.help != argparse.SUPPRESS, f"{command} {names[0]} is hidden"
        for name in action.option_strings:
            assert name in help_text, f"acp-sim {command} --help does not show {name}"


def test_a_bad_profile_names_file_field_and_value(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("models:\n  default:\n    session_new_cold: -1\n")
    assert main(["demo", "--profile", str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err
    assert "models.default.session_new_cold.fixed.seconds" in err
    assert "-1" in err


def test_stdio_agent_answers_and_exits_on_eof(tmp_path: Path) -> None:
    requests = (
        b'{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":1}}\n'
        b"not json\n"
        b'{"jsonrpc":"2.0","id":2,"method":"nope","params":{}}\n'
    )
    done = subprocess.run(
        [*AGENT_CMD, "--trace", str(tmp_path / "t.jsonl")], input=requests, capture_output=True, timeout=30
    )
    assert done.returncode == 0
    replies = {r["id"]: r for r in map(json.loads, done.stdout.decode().splitlines())}
    assert replies[1]["result"]["protocolVersion"] == 1
    assert replies[None]["error"]["code"] == -32700
    assert replies[2]["error"] == {
        "code": -32601,
        "message": '"Method not found": nope',
        "data": {"method": "nope"},
    }
    assert (tmp_path / "t.jsonl").read_text().count('"kind":"bad_input"') == 1


def test_module_entry_point_runs() -> None:
    done = subprocess.run([sys.executable, "-m", "acp_sim", "--help"], capture_output=True, timeout=30)
    assert done.returncode == 0
    assert b"agent" in done.stdout
    assert b"demo" in done.stdout


def test_the_demo_shows_what_an_update_without_text_says() -> None:
    # A usage_update has no text: the demo printed "usage_update: None".
    out = io.StringIO()
    assert run_demo(DEFAULT, seed=0, backend="asyncio", sessions=1, out=out) == 0
    text = out.getvalue()
    assert "None" not in text
    (line,) = [line for line in text.splitlines() if "usage_update" in line]
    assert "used=" in line
    assert "size=" in line
