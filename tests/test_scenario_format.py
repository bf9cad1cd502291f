"""The scenario file format: what loads, what it means, and the message a bad file gets.

Every bad-file case names the file, the line, the field and the offending value.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from acp_sim.faults import Stall
from acp_sim.profile import CLAUDE_CODE
from acp_sim.scenario import (
    CloseStep,
    OpenStep,
    PromptStep,
    Scenario,
    ScenarioError,
    WaitStep,
    dump_scenario,
    load_scenario,
    load_scenario_text,
    scenario_json_schema,
)

REPO = Path(__file__).resolve().parent.parent
SHIPPED = sorted((REPO / "scenarios").glob("*.yaml"))

HEAD = "name: bad\ndescription: a file with one mistake\n"


def problem_lines(tmp_path: Path, body: str) -> tuple[str, list[str]]:
    """Load ``HEAD + body`` from a file; the file name and the problem lines of the error."""
    path = tmp_path / "case.yaml"
    path.write_text(HEAD + body, encoding="utf-8")
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    lines = str(caught.value).splitlines()
    assert lines[0] == f"invalid scenario file {path}:"
    return str(path), [line.strip() for line in lines[1:]]


# -- the four bad-file cases of the issue --------------------------------------------------------------


def test_an_unknown_key_names_file_line_field_and_value(tmp_path: Path) -> None:
    path, problems = problem_lines(
        tmp_path,
        "script:\n  - open: a\n  - {open: {session: b, cwdd: /work/b}}\n",  # line 5
    )
    assert problems == [f"{path}:5: script[1].open.cwdd: unknown key (got '/work/b')"]


def test_an_unknown_top_level_key(tmp_path: Path) -> None:
    path, problems = problem_lines(tmp_path, "seeed: 3\nscript: [open: a]\n")
    assert problems == [f"{path}:3: seeed: unknown key (got 3)"]


def test_a_wrong_type_names_file_line_field_and_value(tmp_path: Path) -> None:
    path, problems = problem_lines(
        tmp_path,
        "seed: seven\n"  # line 3
        "script:\n"
        "  - open: a\n"
        "  - {at: soon, prompt: a}\n"  # line 6
        "  - advance: -2\n",  # line 7
    )
    assert problems == [
        f"{path}:3: seed: Input should be a valid integer, unable to parse string as an integer "
        "(got 'seven')",
        f"{path}:6: script[1].at: Input should be a valid number, unable to parse string as a number "
        "(got 'soon')",
        f"{path}:7: script[2].advance: Input should be greater than 0 (got -2)",
    ]


def test_an_action_on_a_session_never_opened(tmp_path: Path) -> None:
    path, problems = problem_lines(
        tmp_path,
        "script:\n"
        "  - open: a\n"
        "  - prompt: [a, c]\n"  # line 5
        "  - {cancel: d}\n",  # line 6
    )
    assert problems == [
        f"{path}:5: script[1].prompt: session 'c' was never opened (opened so far: a) (got 'c')",
        f"{path}:6: script[2].cancel: session 'd' was never opened (opened so far: a) (got 'd')",
    ]


def test_a_typo_elsewhere_does_not_hide_the_scripts_own_mistakes(tmp_path: Path) -> None:
    path, problems = problem_lines(
        tmp_path,
        "seeed: 3\n"  # line 3
        "script:\n"
        "  - open: a\n"
        "  - prompt: b\n",  # line 6
    )
    assert problems == [
        f"{path}:3: seeed: unknown key (got 3)",
        f"{path}:6: script[1].prompt: session 'b' was never opened (opened so far: a) (got 'b')",
    ]


def test_a_broken_script_step_is_not_followed_by_guesses_about_later_steps(tmp_path: Path) -> None:
    # The open step is invalid, so "a" may or may not have been meant as opened: only the real
    # problem is reported, never "session 'a' was never opened".
    path, problems = problem_lines(
        tmp_path,
        "script:\n"
        "  - {open: {session: a, cwd: 5}}\n"  # line 4
        "  - prompt: a\n",
    )
    assert len(problems) == 1
    assert problems[0].startswith(f"{path}:4: script[0].open.cwd: ")


def test_time_going_backwards(tmp_path: Path) -> None:
    path, problems = problem_lines(
        tmp_path,
        "script:\n"
        "  - {at: 5, open: a}\n"  # line 4
        "  - advance: 3\n"  # line 5: the script is at t >= 8 now
        "  - {at: 6, prompt: a}\n",  # line 6
    )
    assert problems == [
        f"{path}:6: script[2].at: time goes backwards: the script already reached t=8 by script[1] "
        "(line 5) (got 6.0)"
    ]


# -- more mistakes, each pointed at ---------------------------------------------------------------------


def test_a_use_after_close_and_a_second_open(tmp_path: Path) -> None:
    path, problems = problem_lines(
        tmp_path,
        "script:\n  - open: a\n  - close: a\n  - prompt: a\n  - open: a\n",
    )
    assert problems == [
        f"{path}:6: script[2].prompt: session 'a' used after it was closed (closed at script[1], "
        "line 5) (got 'a')",
        f"{path}:7: script[3].open.session: session 'a' is already open (script[0], line 4) (got 'a')",
    ]


def test_a_step_without_an_action_or_with_two(tmp_path: Path) -> None:
    path, problems = problem_lines(
        tmp_path, "script:\n  - {at: 1, opn: a}\n  - {open: a, cancel: a}\n  - 12\n"
    )
    assert problems[0].startswith(f"{path}:4: script[0]: a step needs one action (open, prompt, ")
    assert problems[0].endswith("its keys: opn (got {'at': 1, 'opn': 'a'})")
    assert problems[1] == (
        f"{path}:5: script[1]: a step has one action, this one has 2: open, cancel "
        "(got {'open': 'a', 'cancel': 'a'})"
    )
    assert (
        problems[2] == f"{path}:6: script[2]: a step is a mapping such as {{at: 1.5, prompt: a}} "
        "(or crash or reconnect) (got 12)"
    )


def test_errors_inside_an_inline_profile_and_a_fault(tmp_path: Path) -> None:
    path, problems = problem_lines(
        tmp_path,
        "profile:\n"
        "  models:\n"
        "    default:\n"
        "      session_new_cold: -1\n"  # line 6
        "faults:\n"
        "  - {kind: stall}\n"  # line 8
        "script: [open: a]\n",
    )
    assert problems == [
        f"{path}:6: profile.models.default.session_new_cold: Input should be greater than or equal to 0 "
        "(got -1)",
        f"{path}:8: faults[0].seconds: required key missing",
    ]


def test_a_missing_profile_file_and_a_duplicate_key(tmp_path: Path) -> None:
    path, problems = problem_lines(tmp_path, "profile: nowhere.yaml\nscript: [open: a]\n")
    assert len(problems) == 1
    assert problems[0].startswith(
        f"{path}:3: profile: not a built-in profile (default, claude-code) nor a usable"
    )
    assert problems[0].endswith("(got 'nowhere.yaml')")
    path, problems = problem_lines(tmp_path, "seed: 1\nseed: 2\nscript: [open: a]\n")
    assert problems == [f"{path}:4: seed: duplicate key (got 'seed')"]


def test_expectations_must_match_the_script(tmp_path: Path) -> None:
    path, problems = problem_lines(
        tmp_path,
        "script:\n  - open: a\n  - prompt: a\n"
        "expect:\n  chunks: {a: [3, 3], z: [1]}\n  stop_reasons: {a: [done]}\n",
    )
    assert problems == [
        f"{path}:8: expect.stop_reasons.a[0]: Input should be 'end_turn', 'max_tokens', 'max_turn_requests', "
        "'refusal', 'cancelled', 'timeout' or 'error' (got 'done')",
    ]
    path, problems = problem_lines(
        tmp_path, "script:\n  - open: a\n  - prompt: a\nexpect:\n  chunks: {a: [3, 3], z: [1]}\n"
    )
    assert problems == [
        f"{path}:7: expect.chunks.a: lists 2 turn(s), but the script prompts 'a' 1 time(s) (got [3, 3])",
        f"{path}:7: expect.chunks.z: the script never opens this session (got 'z')",
    ]


def test_yaml_syntax_errors_and_non_mappings(tmp_path: Path) -> None:
    path, problems = problem_lines(tmp_path, "script: [open: a\n")
    assert len(problems) == 1
    assert problems[0].startswith(f"{path}:4: <file>: not valid YAML: ")
    bare = tmp_path / "list.yaml"
    bare.write_text("- open: a\n", encoding="utf-8")
    with pytest.raises(
        ScenarioError, match=r"list.yaml:1: <file>: a scenario file is a mapping .* \(got 'list'\)"
    ):
        load_scenario(bare)


# -- what a good file means ------------------------------------------------------------------------------


def test_shorthands_mean_the_long_forms() -> None:
    loaded = load_scenario_text(
        HEAD + "profile: claude-code\n"
        "script:\n"
        "  - open: a\n"
        "  - {open: {session: b, cwd: /w, mcp_servers: [{name: fs}, {name: x, command: /bin/x, args: [-q]}]},"
        " wait: false}\n"
        "  - {prompt: [a, b], wait: true}\n"
        "  - {prompt: a, wait: false}\n"
        "  - wait: all\n"
        "  - crash\n"
        "  - reconnect\n"
        "  - close: a\n"
    )
    steps = loaded.scenario.script
    assert isinstance(steps[0], OpenStep)
    assert steps[0].open.session == "a"
    assert steps[0].waits
    assert isinstance(steps[1], OpenStep)
    assert not steps[1].waits
    assert steps[1].open.cwd == "/w"
    assert steps[1].open.mcp_servers[0].to_wire("/py") == {
        "name": "fs",
        "command": "/py",
        "args": ["-m", "acp_sim", "mcp-server"],
        "env": [],
    }
    assert steps[1].open.mcp_servers[1].to_wire("/py") == {
        "name": "x",
        "command": "/bin/x",
        "args": ["-q"],
        "env": [],
    }
    assert isinstance(steps[2], PromptStep)
    assert steps[2].prompt.sessions == ["a", "b"]
    assert steps[2].waits
    assert isinstance(steps[3], PromptStep)
    assert steps[3].prompt.sessions == ["a"]
    assert not steps[3].waits
    assert isinstance(steps[4], WaitStep)
    assert steps[4].wait.sessions == "all"
    assert [s.action for s in steps[5:]] == ["crash", "reconnect", "close"]
    assert isinstance(steps[7], CloseStep)
    assert not steps[7].waits
    assert loaded.profile is CLAUDE_CODE
    assert loaded.step_line(2) == 7
    assert loaded.scenario.requirements() == ["reconnect"]


def test_a_profile_file_is_found_next_to_the_scenario(tmp_path: Path) -> None:
    (tmp_path / "agent.yaml").write_text("name: from-file\ninitialize_latency: 0.5\n", encoding="utf-8")
    (tmp_path / "s.yaml").write_text(HEAD + "profile: agent.yaml\nscript: [open: a]\n", encoding="utf-8")
    assert load_scenario(tmp_path / "s.yaml").profile.name == "from-file"


def test_dump_then_load_gives_the_same_scenario() -> None:
    scenario = Scenario(
        name="round-trip",
        description="every kind of step",
        seed=4,
        profile=load_scenario_text(
            HEAD + "profile: {models: {default: {session_new_cold: 2.5}}}\nscript: [open: a]\n"
        ).scenario.profile,
        faults=[Stall(kind="stall", seconds=3.0, after=2)],
        backend="trio",
        script=[
            {"at": 0.5, "open": {"session": "a", "mcp_servers": [{"name": "fs", "args": ["--hang"]}]}},
            {"open": "b", "wait": False},
            {"prompt": ["a", "b"], "wait": True},
            {"cancel": "a"},
            {"slow_reader": {"session": "b", "on": False}},
            {"change_cwd": {"old": "/w", "new": "/v"}},
            {"prewarm": {"cwd": "/v", "model": "haiku"}},
            {"advance": 1.25},
            {"fault": {"kind": "crash", "at": 2.0}},
            "crash",
            {"reconnect": {"limit": 30}},
            {"check": {"mcp_processes": 0}},
            {"wait": ["a", "b"]},
            {"close": "a", "wait": True},
        ],
        expect={
            "properties": ["P1", "P3"],
            "stop_reasons": {"a": ["cancelled"]},
            "mcp_processes": {"end": 0},
        },
    )
    text = dump_scenario(scenario, header="a header\nof two lines")
    assert text.startswith("# a header\n# of two lines\nname: round-trip\n")
    assert "  - {prompt: [a, b], wait: true}\n" in text
    assert "  - {open: b, wait: false}\n" in text
    assert load_scenario_text(text).scenario == scenario


def test_the_json_schema_accepts_every_shipped_scenario() -> None:
    schema = scenario_json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    assert len(SHIPPED) >= 12
    for path in SHIPPED:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        # Inline profiles are the profile schema's business (its latencies are written as bare
        # numbers, which acp_sim.distributions accepts but does not put in its schema).
        if isinstance(data.get("profile"), dict):
            data["profile"] = "default"
        errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(data)]
        assert not errors, f"{path.name}: {errors}"


def test_acp_sim_schema_scenario_prints_it(capsys: pytest.CaptureFixture[str]) -> None:
    from acp_sim.cli import main

    assert main(["schema", "scenario"]) == 0
    assert json.loads(capsys.readouterr().out) == scenario_json_schema()


def test_acp_sim_never_imports_pytest_for_the_format() -> None:
    import subprocess

    code = (
        "import sys, acp_sim.scenario, acp_sim.timeline; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pytest', '_pytest', 'pytest_acp')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_every_shipped_scenario_names_its_hazard_describes_it_and_says_what_must_hold() -> None:
    names = set()
    for path in SHIPPED:
        scenario = load_scenario(path).scenario
        assert scenario.name == path.stem, f"{path.name}: the file is named after its scenario"
        assert len(scenario.description.split()) >= 15, (
            f"{path.name}: the description says what the hazard is"
        )
        expect = scenario.expect
        assert expect.stop_reasons or expect.chunks or expect.mcp_processes, f"{path.name}: expects outcomes"
        names.add(scenario.name)
    issue = {
        "first-chunk-same-tick",
        "two-sessions-interleaved",
        "cancel-one-of-three",
        "stale-timeout-after-fast-turn",
        "late-updates-after-cancel",
        "cold-vs-warm-start",
        "cwd-change-with-warm-pool",
        "mcp-3x4-process-count",
        "mcp-spawn-failure",
        "agent-crash-mid-turn-reconnect",
        "phantom-session-after-reconnect",
        "hang-then-timeout",
    }
    assert issue <= names
