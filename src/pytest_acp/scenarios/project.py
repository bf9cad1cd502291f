"""The pytest project a command outside pytest runs in: its ini file, rootdir and import paths.

``acp-sim run FILE --bridge module:factory`` imports the bridge the way ``pytest --acp-bridge``
run from the project would: with the project's ``pythonpath`` ini entries (relative to the
rootdir, the ini file's directory), the rootdir and the working directory on ``sys.path``.
The ini file is found as pytest finds it: upward from the scenario file's directory, then from
the working directory; the first of ``pytest.ini``, ``.pytest.ini``, ``pyproject.toml`` (with a
``[tool.pytest.ini_options]`` or ``[tool.pytest]`` table), ``tox.ini`` (``[pytest]``) and
``setup.cfg`` (``[tool:pytest]``) in a directory wins.
"""

from __future__ import annotations

import configparser
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Project:
    rootdir: Path
    inifile: Path | None = None
    pythonpath: list[Path] = field(default_factory=list)

    def import_paths(self, cwd: Path) -> list[Path]:
        """What goes on ``sys.path``, first first: ``pythonpath`` entries, the rootdir, the cwd."""
        paths: list[Path] = []
        for path in [*self.pythonpath, self.rootdir, cwd]:
            if path not in paths:
                paths.append(path)
        return paths


def _ini_pythonpath(path: Path) -> list[str] | None:
    """The ``pythonpath`` entries of a pytest ini file (``[]`` if none), or None if the file does
    not configure pytest."""
    if path.name == "pyproject.toml":
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError):
            return None
        tool = data.get("tool", {}).get("pytest")
        if not isinstance(tool, dict):
            return None
        table = tool.get("ini_options", tool)
        value = table.get("pythonpath", []) if isinstance(table, dict) else []
        return value.split() if isinstance(value, str) else [str(v) for v in value]
    section = {"setup.cfg": "tool:pytest"}.get(path.name, "pytest")
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(path, encoding="utf-8")
    except (OSError, configparser.Error):
        return None
    if not parser.has_section(section):
        return [] if path.name in ("pytest.ini", ".pytest.ini") else None
    return parser.get(section, "pythonpath", fallback="").split()


INI_NAMES = ("pytest.ini", ".pytest.ini", "pyproject.toml", "tox.ini", "setup.cfg")


def find_project(*starts: Path) -> Project | None:
    """The project whose pytest ini file is nearest above the first start that has one."""
    for start in starts:
        directory = start.resolve()
        if directory.is_file():
            directory = directory.parent
        for candidate in (directory, *directory.parents):
            for name in INI_NAMES:
                path = candidate / name
                if not path.is_file():
                    continue
                entries = _ini_pythonpath(path)
                if entries is not None:
                    return Project(candidate, path, [(candidate / entry).resolve() for entry in entries])
    return None


def add_import_paths(file: Path, cwd: Path | None = None) -> Project | None:
    """Put the project's import paths (see the module) on ``sys.path``; returns the project found."""
    cwd = (cwd or Path.cwd()).resolve()
    project = find_project(file, cwd)
    paths = project.import_paths(cwd) if project is not None else [cwd]
    for path in reversed(paths):
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))
    return project
