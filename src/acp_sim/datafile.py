"""Reading a validated data file (profile, workload): YAML, TOML or JSON, with errors that name the
file, the field and the bad value."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError


def describe_validation_error(exc: ValidationError, what: str, source: str) -> str:
    """``invalid <what> <source>:`` then one line per problem: field path, message, value."""
    lines = [f"invalid {what} {source}:"]
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "<root>"
        if err["type"] == "value_error":
            lines.append(f"  {loc}: {err['msg']}")  # our validators' messages name the value already
        else:
            lines.append(f"  {loc}: {err['msg']} (got {err.get('input')!r})")
    return "\n".join(lines)


def read_data_file(path: Path, what: str, error: type[Exception]) -> Any:
    """The parsed content of ``path`` by its suffix (``.toml``, ``.json``, else YAML); ``{}`` if empty."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror}") from None
    try:
        if path.suffix == ".toml":
            data = tomllib.loads(text)
        elif path.suffix == ".json":
            data = json.loads(text)
        else:
            data = yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise error(f"cannot parse {what} {path}: {exc}") from None
    return data if data is not None else {}
