"""Reading a scenario file: YAML to a validated ``ScenarioFile``, or a ``ScenarioError`` with every
problem as ``file:line: field: what is wrong (got value)`` (unknown keys, wrong types, actions on
sessions never opened, time going backwards, duplicate keys); and the format's JSON Schema.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter, ValidationError

from acp_sim.errors import AcpSimError, ProfileError
from acp_sim.profile import BUILTIN_PROFILES, AgentProfile, load_profile
from acp_sim.scenario.model import (
    TIME_SLACK,
    AdvanceStep,
    CancelStep,
    CloseStep,
    Expect,
    OpenStep,
    PromptStep,
    Scenario,
    SlowReaderStep,
    Step,
    WaitStep,
)


class ScenarioError(AcpSimError):
    """A scenario file that cannot be used; ``problems`` has one entry per mistake."""

    def __init__(self, path: str, problems: Sequence[Problem]) -> None:
        self.path = path
        self.problems = list(problems)
        lines = [f"invalid scenario file {path}:"] + [f"  {p}" for p in self.problems]
        super().__init__("\n".join(lines))


@dataclass(frozen=True)
class Problem:
    """One mistake in a scenario file: where (file, line, field), what, and the offending value."""

    path: str
    line: int | None
    field: str
    message: str
    value: Any = None
    has_value: bool = True

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line is not None else self.path
        text = f"{where}: {self.field or '<file>'}: {self.message}"
        if self.has_value:
            text += f" (got {_show(self.value)})"
        return text


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# -- loading -------------------------------------------------------------------------------------------

PathKey = tuple[str | int, ...]


@dataclass
class ScenarioFile:
    """A loaded scenario: the model, where it came from, its resolved agent profile, and the line of
    every step (for reports)."""

    scenario: Scenario
    path: str
    profile: AgentProfile
    lines: dict[PathKey, int] = field(default_factory=dict)

    def line_of(self, *path: str | int) -> int | None:
        return self.lines.get(tuple(path))

    def step_line(self, index: int) -> int | None:
        return self.line_of("script", index)


class _Lines:
    """Line numbers (1-based) of every key and item of a YAML document, and its duplicate keys."""

    def __init__(self) -> None:
        self.lines: dict[PathKey, int] = {}
        self.duplicates: list[tuple[PathKey, int]] = []

    def walk(self, node: yaml.Node, path: PathKey) -> None:
        if isinstance(node, yaml.MappingNode):
            seen: set[Any] = set()
            for key_node, value_node in node.value:
                key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node.start_mark)
                here = (*path, key)
                if key in seen:
                    self.duplicates.append((here, key_node.start_mark.line + 1))
                seen.add(key)
                self.lines[here] = key_node.start_mark.line + 1
                self.walk(value_node, here)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                here = (*path, index)
                self.lines[here] = item.start_mark.line + 1
                self.walk(item, here)


def _field_name(path: Sequence[str | int]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _locate(loc: Sequence[str | int], lines: Mapping[PathKey, int]) -> tuple[PathKey, list[str | int]]:
    """The longest path of the file that ``loc`` (pydantic's error location) goes through; the
    parts of ``loc`` that are not in the file (union tags, fields left out) are skipped."""
    path: PathKey = ()
    rest: list[str | int] = []
    for part in loc:
        if (*path, part) in lines:
            path = (*path, part)
            rest = []
        else:
            rest.append(part)
    return path, rest


def _pydantic_problems(exc: ValidationError, source: str, lines: Mapping[PathKey, int]) -> list[Problem]:
    problems = []
    for err in exc.errors(include_url=False):
        loc = err["loc"]
        path, rest = _locate(loc, lines)
        line = lines.get(path, 1 if not path else None)
        kind = err["type"]
        if kind == "extra_forbidden":
            problems.append(Problem(source, line, _field_name(path), "unknown key", err.get("input")))
            continue
        if kind == "missing":
            name = next((p for p in reversed(rest) if isinstance(p, str) and " " not in p), None)
            field_name = _field_name([*path, name] if name else path)
            problems.append(Problem(source, line, field_name, "required key missing", has_value=False))
            continue
        message = err["msg"]
        if kind == "value_error":
            message = message.removeprefix("Value error, ")
        problems.append(Problem(source, line, _field_name(path), message, err.get("input")))
    return problems


@functools.cache
def _script_adapter() -> TypeAdapter[list[Any]]:
    return TypeAdapter(list[Step])


def _script_alone(data: Mapping[str, Any]) -> list[Any] | None:
    """The file's script validated on its own, or None if the script itself has errors (then the
    checks below would report sessions an invalid ``open`` step did open as never opened)."""
    try:
        return _script_adapter().validate_python(data.get("script"))
    except ValidationError:
        return None


def _check_script(
    script: Sequence[Any], expect: Expect | None, source: str, lines: Mapping[PathKey, int]
) -> list[Problem]:
    """What the schema cannot say: sessions used before they are opened, time going backwards, and
    (given ``expect``) expectations about sessions or turns the script does not have."""
    problems: list[Problem] = []
    opened: dict[str, int] = {}
    closed: dict[str, int] = {}
    prompts: dict[str, int] = {}
    earliest, reached_by = 0.0, None

    def problem(index: int, where: Sequence[str | int], message: str, value: Any) -> None:
        path = ("script", index, *where)
        line = lines.get(path) or lines.get(("script", index))
        problems.append(Problem(source, line, _field_name(path), message, value))

    def use(index: int, action: str, session: str, *, closing: bool = False, waiting: bool = False) -> None:
        where = [action] if (("script", index, action, "session") not in lines) else [action, "session"]
        if session == "all":
            problem(index, where, "'all' is reserved for wait: name a session", session)
        elif session not in opened:
            known = ", ".join(opened) or "none"
            problem(index, where, f"session {session!r} was never opened (opened so far: {known})", session)
        elif session in closed and not waiting:
            line = lines.get(("script", closed[session]))
            what = "closed twice" if closing else "used after it was closed"
            problem(
                index,
                where,
                f"session {session!r} {what} (closed at script[{closed[session]}], line {line})",
                session,
            )

    for index, step in enumerate(script):
        if step.at is not None:
            if step.at < earliest - TIME_SLACK:
                before = (
                    f" by script[{reached_by}] (line {lines.get(('script', reached_by))})"
                    if reached_by is not None
                    else ""
                )
                problem(
                    index,
                    ["at"],
                    f"time goes backwards: the script already reached t={earliest:g}{before}",
                    step.at,
                )
            if step.at >= earliest:
                earliest, reached_by = step.at, index
        args = step.args
        if isinstance(step, OpenStep):
            name = args.session
            if name == "all":
                problem(index, ["open", "session"], "'all' is reserved for wait: pick another name", name)
            elif name in opened:
                line = lines.get(("script", opened[name]))
                problem(
                    index,
                    ["open", "session"],
                    f"session {name!r} is already open (script[{opened[name]}], line {line})",
                    name,
                )
            else:
                opened[name] = index
        elif isinstance(step, PromptStep):
            for name in args.sessions:
                use(index, "prompt", name)
                prompts[name] = prompts.get(name, 0) + 1
        elif isinstance(step, (CancelStep, SlowReaderStep)):
            use(index, step.action, args.session)
        elif isinstance(step, CloseStep):
            use(index, "close", args.session, closing=True)
            closed.setdefault(args.session, index)
        elif isinstance(step, WaitStep) and args.sessions != "all":
            for name in args.sessions:
                use(index, "wait", name, waiting=True)
        elif isinstance(step, AdvanceStep):
            earliest += args
            reached_by = index
    for what in ("stop_reasons", "chunks") if expect is not None else ():
        for name, per_turn in getattr(expect, what).items():
            path = ("expect", what, name)
            if name not in opened:
                problems.append(
                    Problem(
                        source,
                        lines.get(path),
                        _field_name(path),
                        "the script never opens this session",
                        name,
                    )
                )
            elif len(per_turn) != prompts.get(name, 0):
                problems.append(
                    Problem(
                        source,
                        lines.get(path),
                        _field_name(path),
                        f"lists {len(per_turn)} turn(s), but the script prompts {name!r} "
                        f"{prompts.get(name, 0)} time(s)",
                        per_turn,
                    )
                )
    return problems


def _resolve_profile(
    scenario: Scenario, path: Path | None, source: str, lines: Mapping[PathKey, int]
) -> AgentProfile:
    ref = scenario.profile
    if isinstance(ref, AgentProfile):
        return ref
    if ref in BUILTIN_PROFILES:
        return BUILTIN_PROFILES[ref]
    file = Path(ref)
    if not file.is_absolute() and path is not None:
        file = path.parent / file
    try:
        return load_profile(file)
    except ProfileError as exc:
        known = ", ".join(BUILTIN_PROFILES)
        message = f"not a built-in profile ({known}) nor a usable profile file: {exc}"
        raise ScenarioError(
            source, [Problem(source, lines.get(("profile",)), "profile", message, ref)]
        ) from None


def load_scenario_text(text: str, *, source: str = "<scenario>", path: Path | None = None) -> ScenarioFile:
    """Parse and validate a scenario; raises ``ScenarioError`` listing every problem."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = f"not valid YAML: {exc.problem or exc}"
        raise ScenarioError(source, [Problem(source, line, "", problem, has_value=False)]) from None
    except yaml.YAMLError as exc:
        raise ScenarioError(
            source, [Problem(source, None, "", f"not valid YAML: {exc}", has_value=False)]
        ) from None
    if not isinstance(data, dict):
        kind = "empty" if data is None else type(data).__name__
        message = "a scenario file is a mapping (name, description, script, ...)"
        raise ScenarioError(source, [Problem(source, 1, "", message, kind)])
    found = _Lines()
    if node is not None:
        found.walk(node, ())
    problems = [Problem(source, line, _field_name(p), "duplicate key", p[-1]) for p, line in found.duplicates]
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        problems += _pydantic_problems(exc, source, found.lines)
        # Every problem at once: if the script is valid on its own, its own checks run too, so a
        # typo elsewhere does not hide a session used before it is opened.
        script = _script_alone(data)
        if script is not None:
            problems += _check_script(script, None, source, found.lines)
        raise ScenarioError(source, problems) from None
    problems += _check_script(scenario.script, scenario.expect, source, found.lines)
    if problems:
        raise ScenarioError(source, problems)
    profile = _resolve_profile(scenario, path, source, found.lines)
    return ScenarioFile(scenario, source, profile, found.lines)


def load_scenario(path: str | Path) -> ScenarioFile:
    """Load a scenario file (YAML); raises ``ScenarioError`` naming file, line, field and value."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(
            str(path), [Problem(str(path), None, "", f"cannot read: {exc.strerror}", has_value=False)]
        ) from None
    return load_scenario_text(text, source=str(path), path=path)


def scenario_json_schema() -> dict[str, Any]:
    return Scenario.model_json_schema()
