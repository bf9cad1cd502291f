"""Finding the real Claude Code ACP adapter, and the environment that runs it offline.

The pinned adapter is ``@zed-industries/claude-agent-acp@0.23.1`` (it bundles the Claude Code CLI
2.1.83 through ``@anthropic-ai/claude-agent-sdk`` 0.2.83: node is the only other requirement).
Lookup order, as the plugin's ``--acp-live`` uses it: an explicit command (``--acp-agent-cmd``, or
the ``ACP_AGENT_CMD`` environment variable), then a project-local npm install
(``<project>/node_modules``), then ``claude-agent-acp`` on ``PATH``. When none is there,
``AdapterNotFound`` says in one line how to install it.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

ADAPTER_PACKAGE = "@zed-industries/claude-agent-acp"
ADAPTER_VERSION = "0.23.1"
ADAPTER_BIN = "claude-agent-acp"
ADAPTER_ENTRY = Path("node_modules", "@zed-industries", "claude-agent-acp", "dist", "index.js")
NPM_INSTALL = f"npm install --no-save --no-package-lock {ADAPTER_PACKAGE}@{ADAPTER_VERSION}"
INSTALL_HINT = (
    f"the Claude Code ACP adapter is not installed: run `{NPM_INSTALL}` in the project root "
    "(needs node >= 18), or pass --acp-agent-cmd"
)
AGENT_CMD_ENV = "ACP_AGENT_CMD"
DUMMY_API_KEY = "sk-ant-acp-sim-offline-dummy-key"

# Inherited variables that would point a live run at real credentials or at the user's own Claude
# Code configuration (CLAUDE_CONFIG_DIR escapes the temporary HOME): never passed on.
_INHERITED_PREFIXES = ("ANTHROPIC_", "CLAUDE_", "DEBUG_CLAUDE")
_INHERITED_NAMES = ("AWS_BEARER_TOKEN_BEDROCK", "DISABLE_TELEMETRY", "IS_SANDBOX")


class AdapterNotFound(LookupError):
    """No usable adapter; ``str()`` is the one-line reason a live test is skipped with."""


@dataclass(frozen=True)
class AdapterCommand:
    """How to start the adapter: ``argv``, where it was found, and its version when known."""

    argv: tuple[str, ...]
    source: Literal["option", "env", "project", "path"]
    version: str | None = None

    def describe(self) -> str:
        version = f" {self.version}" if self.version else ""
        return f"{ADAPTER_PACKAGE}{version} ({self.source}): {shlex.join(self.argv)}"


def _package_version(entry: Path) -> str | None:
    try:
        data = json.loads((entry.parent.parent / "package.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    version = data.get("version") if isinstance(data, dict) else None
    return version if isinstance(version, str) else None


def _explicit(
    command: str | Sequence[str], source: Literal["option", "env"], path: str | None
) -> AdapterCommand:
    argv = tuple(shlex.split(command) if isinstance(command, str) else command)
    where = "--acp-agent-cmd" if source == "option" else AGENT_CMD_ENV
    if not argv:
        raise AdapterNotFound(f"{where} is empty; {INSTALL_HINT}")
    if shutil.which(argv[0], path=path) is None:
        raise AdapterNotFound(f"{where}: {argv[0]!r} is not an executable on PATH")
    missing = [a for a in argv[1:] if a.endswith((".js", ".mjs")) and not Path(a).is_file()]
    if missing:
        raise AdapterNotFound(f"{where}: {missing[0]} does not exist; {INSTALL_HINT}")
    version = next((_package_version(Path(a)) for a in argv[1:] if a.endswith("index.js")), None)
    return AdapterCommand(argv, source, version)


MIN_NODE = (18, 0)


def _check_node(node: str) -> None:
    """Raise ``AdapterNotFound`` when ``node --version`` names a version below ``MIN_NODE``."""
    try:
        out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return  # cannot tell: let the adapter itself report
    match = re.match(r"v?(\d+)\.(\d+)", out.strip())
    if match is not None and (int(match[1]), int(match[2])) < MIN_NODE:
        raise AdapterNotFound(f"node {out.strip()} at {node} is too old for the adapter (needs >= 18)")


def find_adapter(
    agent_cmd: str | Sequence[str] | None = None,
    *,
    project_root: str | Path | None = None,
    env: Mapping[str, str] | None = None,
) -> AdapterCommand:
    """The adapter to run, or ``AdapterNotFound`` with the one line to show when skipping.

    ``agent_cmd`` is ``--acp-agent-cmd`` (a shell-quoted string or an argv); ``project_root`` is
    where a project-local ``npm install`` put ``node_modules`` (pytest's rootdir).
    """
    env = os.environ if env is None else env
    path = env.get("PATH")
    if agent_cmd:
        return _explicit(agent_cmd, "option", path)
    if env.get(AGENT_CMD_ENV):
        return _explicit(env[AGENT_CMD_ENV], "env", path)
    node = shutil.which("node", path=path)
    if project_root is not None:
        entry = Path(project_root).resolve() / ADAPTER_ENTRY
        if entry.is_file():
            if node is None:
                raise AdapterNotFound(f"node is not on PATH (needed to run {entry}); install node >= 18")
            _check_node(node)
            return AdapterCommand((node, str(entry)), "project", _package_version(entry))
    on_path = shutil.which(ADAPTER_BIN, path=path)
    if on_path is not None:
        if node is None:
            raise AdapterNotFound(f"node is not on PATH (needed to run {on_path}); install node >= 18")
        _check_node(node)
        real = Path(on_path).resolve()
        return AdapterCommand((on_path,), "path", _package_version(real) if real.name == "index.js" else None)
    if node is None:
        raise AdapterNotFound(f"node is not on PATH; install node >= 18, then {INSTALL_HINT}")
    raise AdapterNotFound(INSTALL_HINT)


def inherited_to_drop(base: Mapping[str, str] | None = None) -> list[str]:
    """Names in ``base`` (default: this process's environment) a live adapter must not inherit."""
    base = os.environ if base is None else base
    return sorted(n for n in base if n.startswith(_INHERITED_PREFIXES) or n in _INHERITED_NAMES)


def adapter_env(
    home: str | Path,
    *,
    base_url: str | None,
    api_key: str = DUMMY_API_KEY,
    debug: bool = False,
    hermetic: bool = True,
) -> dict[str, str]:
    """Variables to set for the adapter (on top of the inherited environment minus ``inherited_to_drop``).

    With ``base_url`` (the model stub) the run is offline: a dummy key, no non-essential traffic,
    no telemetry and, with ``hermetic``, every other outbound HTTP(S) request sent to a dead
    loopback proxy (the CLI 2.1.83 fetches a plugin blocklist from GitHub even with
    ``CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC``). As root, ``IS_SANDBOX=1``: without it the CLI
    refuses to skip permissions and ``session/new`` fails with -32603 "Query closed before response
    received". ``debug`` makes the CLI log to ``$HOME/.claude/debug/``.
    """
    home = str(home)
    env = {
        "HOME": home,
        "ANTHROPIC_API_KEY": api_key,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_TELEMETRY": "1",
        "XDG_CONFIG_HOME": os.path.join(home, ".config"),
        "XDG_CACHE_HOME": os.path.join(home, ".cache"),
        "XDG_DATA_HOME": os.path.join(home, ".local", "share"),
    }
    if base_url is not None:
        env["ANTHROPIC_BASE_URL"] = base_url
        if hermetic:
            dead = "http://127.0.0.1:9"  # the discard port: nothing listens, connections are refused
            no_proxy = "127.0.0.1,localhost,::1"
            env.update(HTTPS_PROXY=dead, HTTP_PROXY=dead, https_proxy=dead, http_proxy=dead)
            env.update(NO_PROXY=no_proxy, no_proxy=no_proxy)
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        env["IS_SANDBOX"] = "1"
    if debug:
        env["DEBUG_CLAUDE_AGENT_SDK"] = "1"
    return env


def launch_argv(adapter: AdapterCommand, drop: Sequence[str] = ()) -> list[str]:
    """The adapter's argv, prefixed with ``env -u NAME ...`` for inherited variables to drop.

    (``SubprocessAgent`` layers its ``env`` over the inherited environment; ``env -u`` removes a
    variable in the child without touching this process.)
    """
    if not drop:
        return list(adapter.argv)
    env_bin = shutil.which("env") or "/usr/bin/env"
    prefix = [env_bin]
    for name in drop:
        prefix += ["-u", name]
    return [*prefix, *adapter.argv]
