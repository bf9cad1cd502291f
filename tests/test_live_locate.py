"""Finding the real adapter (option, env, project-local install, PATH) and its offline environment.

No node needed: fake installs and fake executables in a temporary directory.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from acp_sim.live.adapter import (
    ADAPTER_ENTRY,
    ADAPTER_VERSION,
    AGENT_CMD_ENV,
    DUMMY_API_KEY,
    INSTALL_HINT,
    NPM_INSTALL,
    AdapterNotFound,
    adapter_env,
    find_adapter,
    inherited_to_drop,
    launch_argv,
)


def executable(directory: Path, name: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    return path


def install(project: Path, version: str = ADAPTER_VERSION) -> Path:
    entry = project / ADAPTER_ENTRY
    entry.parent.mkdir(parents=True)
    entry.write_text("// the adapter\n")
    (entry.parent.parent / "package.json").write_text(json.dumps({"version": version}))
    return entry


def test_the_install_hint_is_one_line_with_the_pinned_npm_command() -> None:
    assert "\n" not in INSTALL_HINT
    assert NPM_INSTALL == "npm install --no-save --no-package-lock @zed-industries/claude-agent-acp@0.23.1"
    assert NPM_INSTALL in INSTALL_HINT
    assert "--acp-agent-cmd" in INSTALL_HINT


def test_nothing_installed_and_no_node(tmp_path: Path) -> None:
    with pytest.raises(AdapterNotFound) as info:
        find_adapter(project_root=tmp_path, env={"PATH": str(tmp_path / "bin")})
    assert "node is not on PATH" in str(info.value)
    assert NPM_INSTALL in str(info.value)


def test_node_but_no_adapter(tmp_path: Path) -> None:
    executable(tmp_path / "bin", "node")
    with pytest.raises(AdapterNotFound) as info:
        find_adapter(project_root=tmp_path, env={"PATH": str(tmp_path / "bin")})
    assert str(info.value) == INSTALL_HINT


def test_a_project_local_install(tmp_path: Path) -> None:
    node = executable(tmp_path / "bin", "node")
    entry = install(tmp_path / "project")
    found = find_adapter(project_root=tmp_path / "project", env={"PATH": str(tmp_path / "bin")})
    assert found.argv == (str(node), str(entry.resolve()))
    assert found.source == "project"
    assert found.version == ADAPTER_VERSION
    assert "0.23.1 (project)" in found.describe()


def test_a_node_too_old_for_the_adapter(tmp_path: Path) -> None:
    old = tmp_path / "bin" / "node"
    old.parent.mkdir()
    old.write_text("#!/bin/sh\necho v16.20.2\n")
    old.chmod(0o755)
    install(tmp_path / "project")
    with pytest.raises(AdapterNotFound, match=r"node v16\.20\.2 .* is too old"):
        find_adapter(project_root=tmp_path / "project", env={"PATH": str(tmp_path / "bin")})


def test_a_project_local_install_without_node(tmp_path: Path) -> None:
    install(tmp_path / "project")
    with pytest.raises(AdapterNotFound, match="node is not on PATH"):
        find_adapter(project_root=tmp_path / "project", env={"PATH": str(tmp_path / "bin")})


def test_the_adapter_on_path(tmp_path: Path) -> None:
    executable(tmp_path / "bin", "node")
    binary = executable(tmp_path / "bin", "claude-agent-acp")
    found = find_adapter(project_root=tmp_path / "empty", env={"PATH": str(tmp_path / "bin")})
    assert found.argv == (str(binary),)
    assert found.source == "path"


def test_the_option_wins_then_the_environment_variable(tmp_path: Path) -> None:
    executable(tmp_path / "bin", "node")
    entry = install(tmp_path / "project", version="9.9.9")
    env = {"PATH": str(tmp_path / "bin"), AGENT_CMD_ENV: f"node {entry}"}
    from_env = find_adapter(project_root=tmp_path / "project", env=env)
    assert from_env.source == "env"
    assert from_env.argv == ("node", str(entry))
    assert from_env.version == "9.9.9"
    explicit = find_adapter(["node", str(entry), "--flag"], project_root=tmp_path / "project", env=env)
    assert explicit.source == "option"
    assert explicit.argv == ("node", str(entry), "--flag")


@pytest.mark.parametrize(
    ("command", "message"),
    [
        ("", None),
        ("no-such-program --x", "'no-such-program' is not an executable on PATH"),
        ("node /missing/dist/index.js", "/missing/dist/index.js does not exist"),
    ],
)
def test_a_bad_explicit_command_says_what_is_wrong(tmp_path: Path, command: str, message: str | None) -> None:
    executable(tmp_path / "bin", "node")
    env = {"PATH": str(tmp_path / "bin"), AGENT_CMD_ENV: command}
    if not command:
        # An empty variable is not a choice: the lookup goes on (and finds nothing here).
        with pytest.raises(AdapterNotFound, match="not installed"):
            find_adapter(project_root=tmp_path, env=env)
        return
    with pytest.raises(AdapterNotFound) as info:
        find_adapter(command, project_root=tmp_path, env=env)
    assert message is not None
    assert message in str(info.value)
    assert str(info.value).startswith("--acp-agent-cmd")


def test_the_offline_environment(tmp_path: Path) -> None:
    env = adapter_env(tmp_path, base_url="http://127.0.0.1:4321")
    assert env["HOME"] == str(tmp_path)
    assert env["ANTHROPIC_BASE_URL"] == "http://127.0.0.1:4321"
    assert env["ANTHROPIC_API_KEY"] == DUMMY_API_KEY
    assert env["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] == "1"
    assert env["DISABLE_TELEMETRY"] == "1"
    assert env["HTTPS_PROXY"] == "http://127.0.0.1:9"
    assert "127.0.0.1" in env["NO_PROXY"].split(",")
    assert ("IS_SANDBOX" in env) == (os.geteuid() == 0)
    assert "DEBUG_CLAUDE_AGENT_SDK" not in env
    assert adapter_env(tmp_path, base_url="http://127.0.0.1:1", debug=True)["DEBUG_CLAUDE_AGENT_SDK"] == "1"
    real = adapter_env(tmp_path, base_url=None, api_key="real-key")
    assert "ANTHROPIC_BASE_URL" not in real
    assert "HTTPS_PROXY" not in real
    assert real["ANTHROPIC_API_KEY"] == "real-key"


def test_inherited_credentials_and_config_are_dropped(tmp_path: Path) -> None:
    base = {
        "ANTHROPIC_AUTH_TOKEN": "t",
        "CLAUDE_CONFIG_DIR": "/home/me/.claude",
        "PATH": "/bin",
        "HOME": "/h",
    }
    drop = inherited_to_drop(base)
    assert drop == ["ANTHROPIC_AUTH_TOKEN", "CLAUDE_CONFIG_DIR"]
    executable(tmp_path / "bin", "node")
    found = find_adapter("node x.mjs.txt", env={"PATH": str(tmp_path / "bin")})
    argv = launch_argv(found, drop)
    assert argv[1:] == ["-u", "ANTHROPIC_AUTH_TOKEN", "-u", "CLAUDE_CONFIG_DIR", "node", "x.mjs.txt"]
    assert os.path.basename(argv[0]) == "env"
    assert launch_argv(found) == ["node", "x.mjs.txt"]


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_live_set_up_with_the_stub_or_the_real_api(tmp_path: Path) -> None:
    from acp_sim.live.adapter import AdapterCommand
    from acp_sim.live.harness import live_agent

    adapter = AdapterCommand(("node", "index.js"), "option")
    async with live_agent(adapter) as live:
        assert live.stub is not None
        assert live.base_url is not None
        assert live.base_url.startswith("http://127.0.0.1:")
        assert live.env["ANTHROPIC_BASE_URL"] == live.base_url
        assert live.workspace.is_dir()
        assert live.workspace.parent == live.home
        assert live.command[-2:] == ["node", "index.js"]
        assert live.launcher.agents == []
        home = live.home
    assert not home.exists()  # the temporary HOME (Claude Code's sessions) is gone
    async with live_agent(adapter, real_model=True, api_key="real-key-0123456789", home=tmp_path) as live:
        assert live.stub is None
        assert live.model_requests == []
        assert "ANTHROPIC_BASE_URL" not in live.env
        assert "HTTPS_PROXY" not in live.env
        assert live.env["ANTHROPIC_API_KEY"] == "real-key-0123456789"
        assert live.launcher.redactor.text("key real-key-0123456789") == "key [REDACTED]"
    with pytest.raises(ValueError, match="real api_key"):
        async with live_agent(adapter, real_model=True):
            pass  # pragma: no cover
