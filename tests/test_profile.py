"""Profile files: YAML, TOML and JSON; typos named by file, field and value; the JSON Schema."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from acp_sim.errors import ProfileError
from acp_sim.faults import Crash
from acp_sim.profile import (
    BUILTIN_PROFILES,
    CLAUDE_CODE,
    load_profile,
    load_profile_data,
    profile_json_schema,
    with_faults,
    with_overrides,
)

README = Path(__file__).resolve().parents[1] / "README.md"

TYPOS = [
    # (yaml text, field path, bad value)
    ("models:\n  default:\n    turn:\n      chunk_cont: 3\n", "models.default.turn.chunk_cont", "3"),
    (
        "models:\n  default:\n    turn:\n      chunk_count: lots\n",
        "models.default.turn.chunk_count",
        "'lots'",
    ),
    (
        "models:\n  default:\n    session_new_cold: -4\n",
        "models.default.session_new_cold.fixed.seconds",
        "-4",
    ),
    ("initialize_latency: {kind: uniform, low: -1, high: 2}\n", "initialize_latency.uniform.low", "-1"),
    ("faults:\n  - {kind: crash, at: -2}\n", "faults.0.crash.at.fixed.seconds", "-2"),
    ("faults:\n  - {kind: stal, seconds: 1}\n", "faults.0", "'stal'"),
    (
        "models:\n  default:\n    turn:\n      tool_calls: [{fs: delete}]\n",
        "models.default.turn.tool_calls.0.fs",
        "'delete'",
    ),
    ("models:\n  default:\n    usage: {context_window: 0}\n", "models.default.usage.context_window", "0"),
    ("default_model: opus\n", "default_model", "'opus'"),
]


@pytest.mark.parametrize(("text", "field", "value"), TYPOS, ids=[t[1] for t in TYPOS])
def test_a_typo_fails_naming_the_file_the_field_and_the_value(
    tmp_path: Path, text: str, field: str, value: str
) -> None:
    path = tmp_path / "profile.yaml"
    path.write_text(text)
    with pytest.raises(ProfileError) as info:
        load_profile(path)
    message = str(info.value)
    assert str(path) in message
    line = next(line for line in message.splitlines() if field in line)
    assert value in line


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ('"fast"', "a latency is a number of seconds, or {kind: fixed, seconds}"),
        ("{low: 1, high: 2}", "this latency has no kind; a latency is a number of seconds"),
        ("[1, 2]", "a latency is a number of seconds"),
    ],
)
def test_a_latency_that_is_not_one_says_what_a_latency_may_be(tmp_path: Path, value: str, says: str) -> None:
    path = tmp_path / "profile.yaml"
    path.write_text(f"models:\n  default:\n    session_new_cold: {value}\n")
    with pytest.raises(ProfileError) as info:
        load_profile(path)
    (line,) = [line for line in str(info.value).splitlines() if "models.default.session_new_cold" in line]
    assert says in line
    assert "{kind: uniform, low, high} or {kind: lognormal, median, sigma, max}" in line
    assert "valid dictionary" not in line
    assert "discriminator" not in line


def test_toml_and_json_typos_name_the_file_too(tmp_path: Path) -> None:
    toml = tmp_path / "p.toml"
    toml.write_text("[models.default.turn]\nchunk_interval = -0.5\n")
    as_json = tmp_path / "p.json"
    as_json.write_text(json.dumps({"models": {"default": {"turn": {"late_updates_after_cancel": -1}}}}))
    for path, field, value in (
        (toml, "chunk_interval.fixed.seconds", "-0.5"),
        (as_json, "late_updates_after_cancel", "-1"),
    ):
        with pytest.raises(ProfileError) as info:
            load_profile(path)
        assert str(path) in str(info.value)
        assert field in str(info.value)
        assert value in str(info.value)


def test_unreadable_and_unparsable_files_say_so(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="cannot read"):
        load_profile(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(ProfileError, match=f"cannot parse agent profile {re.escape(str(broken))}"):
        load_profile(broken)


def test_the_readme_profile_loads_with_its_faults(tmp_path: Path) -> None:
    block = re.search(r"```yaml\n(name: slow-start\n.*?)```", README.read_text(), re.S)
    assert block is not None
    path = tmp_path / "readme.yaml"
    path.write_text(block.group(1))
    profile = load_profile(path)
    assert [f.kind for f in profile.faults] == ["crash", "stall", "error_reply", "one_turn_behind"]
    assert [t.kind for t in profile.models["default"].turn.tool_calls] == ["edit", "execute"]
    assert profile.models["haiku"].usage.input_price == 1


def test_builtins_round_trip_through_their_json_form() -> None:
    for name, profile in BUILTIN_PROFILES.items():
        assert load_profile(name) is profile
        assert load_profile_data(json.loads(profile.model_dump_json())) == profile


def test_the_json_schema_covers_every_section() -> None:
    schema = profile_json_schema()
    assert {"models", "faults", "modes", "available_commands", "restore_latency"} <= set(schema["properties"])
    defs = schema["$defs"]
    assert {"TurnProfile", "UsageProfile", "ToolCallSpec", "Crash", "OneTurnBehind"} <= set(defs)
    assert defs["TurnProfile"]["additionalProperties"] is False


def test_overrides_keep_faults_and_apply_to_every_model() -> None:
    profile = with_faults(CLAUDE_CODE, [Crash(kind="crash", at=3)])  # type: ignore[arg-type]
    changed = with_overrides(profile, chunk_count=2, session_new=0.1)
    assert {m.turn.chunk_count for m in changed.models.values()} == {2}
    assert {m.session_new_cold.seconds for m in changed.models.values()} == {0.1}  # type: ignore[union-attr]
    assert [f.kind for f in changed.faults] == ["crash"]


def test_published_json_schema_accepts_a_bare_number_as_a_latency() -> None:
    """The schema must describe what the loader accepts: ``session_new_cold: 2.0`` is a fixed latency."""
    schema = profile_json_schema()
    model = schema["$defs"]["ModelProfile"]["properties"]["session_new_cold"]
    choices = model.get("anyOf", [])
    assert {"minimum": 0, "type": "number"} in choices
    assert any("oneOf" in choice for choice in choices)  # and the distributions, by `kind`


def test_a_profile_giving_only_the_cold_session_new_latency_makes_warm_the_same() -> None:
    # Setting only session_new_cold left warm at its 4 s default: the second session opened slower
    # than the first.
    profile = load_profile_data({"models": {"default": {"session_new_cold": 0.5}}})
    model = profile.models["default"]
    assert model.session_new_warm == model.session_new_cold
    apart = load_profile_data({"models": {"default": {"session_new_cold": 0.5, "session_new_warm": 0.1}}})
    assert apart.models["default"].session_new_warm.seconds == 0.1  # type: ignore[union-attr]


def test_overriding_only_the_cold_latency_moves_warm_with_it_unless_the_profile_set_it_apart() -> None:
    changed = with_overrides(load_profile_data({}), session_new_cold=0.5)
    assert changed.models["default"].session_new_warm.seconds == 0.5  # type: ignore[union-attr]
    apart = load_profile_data({"models": {"default": {"session_new_cold": 2, "session_new_warm": 0.1}}})
    changed = with_overrides(apart, session_new_cold=0.5)
    assert changed.models["default"].session_new_warm.seconds == 0.1  # type: ignore[union-attr]
