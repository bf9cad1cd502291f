"""Scenario files: a regression case as data (YAML), validated, with errors that point at the file.

A scenario names one hazard and pins it: the simulated agent (profile and seed), faults scheduled
on it, a client script of timed actions, and what must come out (properties that must hold, stop
reasons, delivered chunk counts, process counts). ``pytest_acp`` collects ``scenarios/**/*.yaml``
as test items and runs each against the bridge under test; ``acp-sim run FILE`` runs one outside
pytest. This module is only the format and its loader (``acp_sim`` never imports pytest or
``pytest_acp``); the runner is ``pytest_acp.scenario_run``.

A bad file fails with every problem as ``file:line: field: what is wrong (got value)``: unknown
keys, wrong types, actions on sessions never opened, time going backwards, duplicate keys.
``acp-sim schema scenario`` prints the JSON Schema.

Time: ``at`` is virtual seconds since the run started (when the bridge was up). A step without
``at`` runs as soon as the step before it is done (its waits included); a step whose ``at`` has
already passed (a wait took longer) runs at once. ``at`` never goes below what the script already
reached (earlier ``at`` plus ``advance`` seconds since).
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BeforeValidator,
    Discriminator,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    StringConstraints,
    Tag,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from acp_sim.distributions import Strict
from acp_sim.errors import AcpSimError, ProfileError
from acp_sim.faults import Fault
from acp_sim.profile import BUILTIN_PROFILES, AgentProfile, load_profile

PROPERTIES = ("P1", "P2", "P3", "P4", "P5", "P6", "P7", "P8", "P9")
PropertyName = Literal["P1", "P2", "P3", "P4", "P5", "P6", "P7", "P8", "P9"]
SessionName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_.-]*$")]
"""A session's name in the script (the bridge's session key); ``all`` is reserved for ``wait``."""
ScenarioName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]*$")]
Outcome = Literal["end_turn", "max_tokens", "max_turn_requests", "refusal", "cancelled", "timeout", "error"]
"""How a turn ended for its caller: the stop reason, or ``timeout`` (the bridge's own timer) or
``error`` (the bridge reported a failure)."""
Requirement = Literal["timeouts", "reconnect", "prewarm", "change_cwd"]
# Seconds a step may wait (an open to settle, a turn to end) before the script moves on; the
# harness's own limits, so replays of state-machine runs wait exactly as the machine did.
SETTLE_LIMIT = 120.0
DRAIN_LIMIT = 900.0
# Recorded times are rounded to the microsecond: an ``at`` this close to now is now.
TIME_SLACK = 1e-6


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


# -- MCP servers -------------------------------------------------------------------------------------


class McpServerSpec(Strict):
    """An MCP server a session asks for.

    Without ``command`` and ``url`` it is acp-sim's own MCP server (``python -m acp_sim
    mcp-server``, a real process) and ``args`` are its options (``--fail-at-start``,
    ``--crash-after S``, ``--hang``); with ``command`` any stdio server; with ``url`` an HTTP or
    SSE server (``type``).
    """

    name: str
    command: str | None = None
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    url: str | None = None
    type: Literal["stdio", "http", "sse"] = "stdio"

    @model_validator(mode="after")
    def _transport(self) -> McpServerSpec:
        if self.type == "stdio" and self.url is not None:
            raise ValueError(f"a url needs type http or sse (url={self.url!r})")
        if self.type != "stdio" and self.url is None:
            raise ValueError(f"type {self.type} needs a url")
        return self

    def to_wire(self, python: str) -> dict[str, Any]:
        """The ACP ``mcpServers`` entry; ``python`` runs the built-in server (the current interpreter)."""
        if self.type != "stdio":
            return {"type": self.type, "name": self.name, "url": self.url, "headers": []}
        if self.command is None:
            command, args = python, ["-m", "acp_sim", "mcp-server", *self.args]
        else:
            command, args = self.command, list(self.args)
        env = [{"name": k, "value": v} for k, v in self.env.items()]
        return {"name": self.name, "command": command, "args": args, "env": env}


# -- the script ---------------------------------------------------------------------------------------


def _one_session(model: Any) -> Any:
    """``open: a`` is ``open: {session: a}`` (the JSON Schema says so too)."""

    def convert(value: Any) -> Any:
        return {"session": value} if isinstance(value, str) else value

    return BeforeValidator(convert, json_schema_input_type=model | SessionName)


def _sessions(value: Any) -> Any:
    """``prompt: a`` and ``prompt: [a, b]`` are ``{sessions: [...]}``."""
    if isinstance(value, str):
        return {"sessions": [value]}
    if isinstance(value, list):
        return {"sessions": value}
    return value


def _wait_target(value: Any) -> Any:
    if value == "all":
        return {"sessions": "all"}
    return _sessions(value)


def _no_arguments(value: Any) -> Any:
    """``crash: {}``, ``crash: true`` and ``crash:`` (null) mean the same."""
    return {} if value is None or value is True else value


def _no_arguments_input(model: Any) -> Any:
    return BeforeValidator(_no_arguments, json_schema_input_type=model | Literal[True] | None)


class OpenArgs(Strict):
    """Open a conversation (``session``: its name in this script) and, by default, wait until the
    bridge returns from ``open_session``."""

    session: SessionName
    cwd: str = "/workspace"
    mcp_servers: list[McpServerSpec] = Field(default_factory=list)
    model: str | None = None
    wait: bool = True


class PromptArgs(Strict):
    """Start the next turn of each session, all at once; ``wait``: until every one has ended."""

    sessions: Annotated[list[SessionName], Field(min_length=1)]
    wait: bool = False


class SessionArgs(Strict):
    session: SessionName


class CloseArgs(Strict):
    """Close a conversation; ``wait``: until the bridge returns from ``close``."""

    session: SessionName
    wait: bool = False


class WaitArgs(Strict):
    """Wait until these sessions (or ``all``: every session and pending action) are idle."""

    sessions: Annotated[list[SessionName], Field(min_length=1)] | Literal["all"]
    limit: PositiveFloat = DRAIN_LIMIT


class ChangeCwdArgs(Strict):
    """The project at ``old`` changed (its files, or it moved to ``new``); waits for the bridge."""

    old: str
    new: str | None = None


class PrewarmArgs(Strict):
    """Ask the bridge for one warm session of this configuration; waits until it is ready."""

    cwd: str = "/workspace"
    mcp_servers: list[McpServerSpec] = Field(default_factory=list)
    model: str | None = None


class NoArgs(Strict):
    pass


class ReconnectArgs(Strict):
    """Wait until the bridge has started a new agent after the last crash and it answered initialize."""

    limit: PositiveFloat = SETTLE_LIMIT


class SlowReaderArgs(Strict):
    """Make a session's caller read its updates slowly (``on: false``: normally again)."""

    session: SessionName
    on: bool = True


class CheckArgs(Strict):
    """Assert, at this point of the run, what the agent's ground truth says."""

    mcp_processes: NonNegativeInt | None = None
    """Live stdio MCP server processes of every agent instance (spawned minus reaped)."""
    agent_launches: PositiveInt | None = None
    """Agent instances started so far."""


class _Step(Strict):
    at: NonNegativeFloat | None = None
    """Virtual seconds since the run started; absent: right after the previous step."""

    @property
    def action(self) -> str:
        return next(name for name in ACTIONS if name in type(self).model_fields)

    @property
    def args(self) -> Any:
        return getattr(self, self.action)


class _WaitingStep(_Step):
    wait: bool | None = None
    """Wait for this action to finish (open: returned; prompt: every turn ended; close: returned);
    the same as the action's own ``wait``, which it overrides."""

    @property
    def waits(self) -> bool:
        return self.wait if self.wait is not None else bool(self.args.wait)


class OpenStep(_WaitingStep):
    open: Annotated[OpenArgs, _one_session(OpenArgs)]


class PromptStep(_WaitingStep):
    prompt: Annotated[
        PromptArgs,
        BeforeValidator(_sessions, json_schema_input_type=PromptArgs | SessionName | list[SessionName]),
    ]


class CancelStep(_Step):
    cancel: Annotated[SessionArgs, _one_session(SessionArgs)]


class CloseStep(_WaitingStep):
    close: Annotated[CloseArgs, _one_session(CloseArgs)]


class WaitStep(_Step):
    wait: Annotated[
        WaitArgs,
        BeforeValidator(
            _wait_target, json_schema_input_type=WaitArgs | SessionName | list[SessionName] | Literal["all"]
        ),
    ]


class ChangeCwdStep(_Step):
    change_cwd: ChangeCwdArgs


class PrewarmStep(_Step):
    prewarm: PrewarmArgs


class AdvanceStep(_Step):
    advance: PositiveFloat
    """Let this many virtual seconds pass."""


class CrashStep(_Step):
    crash: Annotated[NoArgs, _no_arguments_input(NoArgs)]
    """Kill the current agent instance (its streams close abruptly; MCP children die with it)."""


class ReconnectStep(_Step):
    reconnect: Annotated[ReconnectArgs, _no_arguments_input(ReconnectArgs)]


class FaultStep(_Step):
    fault: Fault
    """Inject a fault into the current agent instance (``acp_sim.faults``)."""


class SlowReaderStep(_Step):
    slow_reader: Annotated[SlowReaderArgs, _one_session(SlowReaderArgs)]


class CheckStep(_Step):
    check: CheckArgs


STEP_CLASSES: dict[str, type[_Step]] = {
    "open": OpenStep,
    "prompt": PromptStep,
    "cancel": CancelStep,
    "close": CloseStep,
    "wait": WaitStep,
    "change_cwd": ChangeCwdStep,
    "prewarm": PrewarmStep,
    "advance": AdvanceStep,
    "crash": CrashStep,
    "reconnect": ReconnectStep,
    "fault": FaultStep,
    "slow_reader": SlowReaderStep,
    "check": CheckStep,
}
ACTIONS: tuple[str, ...] = tuple(STEP_CLASSES)
BARE_ACTIONS = ("crash", "reconnect")
"""Actions that may be written as a bare word (``- crash``)."""


def _actions_in(value: Mapping[Any, Any]) -> list[str]:
    found = [k for k in value if k in ACTIONS]
    # ``{prompt: a, wait: true}``: here ``wait`` is the prompt's modifier, not the wait action.
    if len(found) > 1 and "wait" in found and isinstance(value.get("wait"), bool):
        found.remove("wait")
    return found


def _step_shape(value: Any) -> Any:
    """Name the action of a step, or say why there is none, before the union picks its model."""
    if isinstance(value, str) and value in BARE_ACTIONS:
        return {value: {}}
    if isinstance(value, Mapping):
        found = _actions_in(value)
        if len(found) == 1:
            return value
        if not found:
            others = ", ".join(str(k) for k in value if k != "at") or "none"
            raise ValueError(f"a step needs one action ({', '.join(ACTIONS)}); its keys: {others}")
        raise ValueError(f"a step has one action, this one has {len(found)}: {', '.join(found)}")
    if isinstance(value, _Step):
        return value
    raise ValueError(f"a step is a mapping such as {{at: 1.5, prompt: a}} (or {' or '.join(BARE_ACTIONS)})")


def _step_tag(value: Any) -> str | None:
    if isinstance(value, _Step):
        return f"{value.action} step"
    if isinstance(value, Mapping):
        found = _actions_in(value)
        return f"{found[0]} step" if found else None
    return None


# Tags are not keys of the file ("open step", not "open"), so error locations stay unambiguous.
Step = Annotated[
    Annotated[OpenStep, Tag("open step")]
    | Annotated[PromptStep, Tag("prompt step")]
    | Annotated[CancelStep, Tag("cancel step")]
    | Annotated[CloseStep, Tag("close step")]
    | Annotated[WaitStep, Tag("wait step")]
    | Annotated[ChangeCwdStep, Tag("change_cwd step")]
    | Annotated[PrewarmStep, Tag("prewarm step")]
    | Annotated[AdvanceStep, Tag("advance step")]
    | Annotated[CrashStep, Tag("crash step")]
    | Annotated[ReconnectStep, Tag("reconnect step")]
    | Annotated[FaultStep, Tag("fault step")]
    | Annotated[SlowReaderStep, Tag("slow_reader step")]
    | Annotated[CheckStep, Tag("check step")],
    Discriminator(_step_tag),
    BeforeValidator(
        _step_shape,
        json_schema_input_type=OpenStep
        | PromptStep
        | CancelStep
        | CloseStep
        | WaitStep
        | ChangeCwdStep
        | PrewarmStep
        | AdvanceStep
        | CrashStep
        | ReconnectStep
        | FaultStep
        | SlowReaderStep
        | CheckStep
        | Literal["crash", "reconnect"],
    ),
]


# -- expectations --------------------------------------------------------------------------------------


class McpExpect(Strict):
    """Stdio MCP server processes, from the agents' ground truth (``spawn`` / ``reap`` events)."""

    spawned: NonNegativeInt | None = None
    peak: NonNegativeInt | None = None
    """The most alive at once."""
    end: NonNegativeInt | None = None
    """Alive when the run is over (the bridge stopped)."""


class Expect(Strict):
    properties: list[PropertyName] | Literal["all"] = "all"
    """Properties that must hold (P1-P9, see the README); violations of others are not judged."""
    stop_reasons: dict[SessionName, list[Outcome]] = Field(default_factory=dict)
    """Per session, how each of its turns ended for the caller, in order."""
    chunks: dict[SessionName, list[NonNegativeInt]] = Field(default_factory=dict)
    """Per session and turn, the ``agent_message_chunk`` updates with text the bridge delivered."""
    mcp_processes: McpExpect | None = None
    agent_launches: PositiveInt | None = None
    """Agent instances started over the run (1 + reconnects)."""
    mcp_isolated: bool = False
    """The sessions must be isolated: none may read state another session left in a stateful MCP
    server (``ToolCallSpec.mcp``); a shared server that lets one do so fails the file."""

    def required(self) -> tuple[str, ...]:
        return PROPERTIES if self.properties == "all" else tuple(self.properties)


def _profile_tag(value: Any) -> str:
    return "file or built-in name" if isinstance(value, str) else "inline profile"


ProfileRef = Annotated[
    Annotated[str, Tag("file or built-in name")] | Annotated[AgentProfile, Tag("inline profile")],
    Discriminator(_profile_tag),
]


class Scenario(Strict):
    """One scenario file."""

    name: ScenarioName
    """Names the hazard the file pins; the test item's name (``-k`` selects by it)."""
    description: Annotated[str, StringConstraints(min_length=1)]
    seed: NonNegativeInt = 0
    profile: ProfileRef = "default"
    """The simulated agent: a built-in name, a profile file (relative to this file) or inline."""
    faults: list[Fault] = Field(default_factory=list)
    """Faults scheduled on the agent besides the profile's (each with its trigger)."""
    backend: Literal["asyncio", "trio"] | None = None
    """Run on this anyio backend only (an exported counterexample records the one it failed on)."""
    requires: list[Requirement] = Field(default_factory=list)
    """What the bridge must offer for this scenario to apply; a bridge without it skips the file.
    Prewarm, cwd changes and reconnects are also inferred from the script."""
    script: Annotated[list[Step], Field(min_length=1)]
    expect: Expect = Expect()

    def requirements(self) -> list[str]:
        needs = dict.fromkeys(self.requires)
        for step in self.script:
            if isinstance(step, PrewarmStep):
                needs["prewarm"] = None
            elif isinstance(step, ChangeCwdStep):
                needs["change_cwd"] = None
            elif isinstance(step, (CrashStep, ReconnectStep)):
                needs["reconnect"] = None
        if any("timeout" in outcomes for outcomes in self.expect.stop_reasons.values()):
            needs["timeouts"] = None
        return list(needs)


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


# -- writing -------------------------------------------------------------------------------------------


def _flow(value: Any) -> str:
    """One YAML line in flow style (for a script step)."""
    return yaml.safe_dump(value, default_flow_style=True, width=math.inf, sort_keys=False).strip()


def step_data(step: _Step) -> dict[str, Any]:
    """A step as it is written in a file: shorthands where they say the same, defaults left out."""
    data: dict[str, Any] = {}
    if step.at is not None:
        data["at"] = round(step.at, 6)
    args = step.args
    if isinstance(args, float):
        data[step.action] = round(args, 6)
        return data
    if isinstance(step, FaultStep):
        dumped = fault_data(args)
    else:
        dumped = args.model_dump(mode="json", exclude_defaults=True)
    waits = step.waits if isinstance(step, _WaitingStep) else None
    if waits is not None:
        dumped.pop("wait", None)
    if isinstance(step, PromptStep) and set(dumped) == {"sessions"}:
        sessions = dumped["sessions"]
        dumped = sessions[0] if len(sessions) == 1 else sessions
    elif isinstance(step, WaitStep) and set(dumped) == {"sessions"}:
        dumped = dumped["sessions"]
    elif set(dumped) == {"session"}:
        dumped = dumped["session"]
    data[step.action] = dumped
    # the wait modifier only where it differs from the action's default (open waits, others not)
    if waits is not None and waits != isinstance(step, OpenStep):
        data["wait"] = waits
    return data


def _compact(value: Any) -> Any:
    """Fixed latencies as bare numbers (``2.5``, not ``{kind: fixed, seconds: 2.5}``)."""
    if isinstance(value, dict):
        if set(value) == {"kind", "seconds"} and value["kind"] == "fixed":
            return value["seconds"]
        return {k: _compact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_compact(v) for v in value]
    return value


def fault_data(fault: Any) -> dict[str, Any]:
    """A fault as written in a file: its kind first, then only what was given (latencies keep
    their ``kind``, which ``exclude_defaults`` would drop)."""
    return _compact({"kind": fault.kind, **fault.model_dump(mode="json", exclude_unset=True)})


def profile_data(profile: AgentProfile) -> dict[str, Any]:
    """An agent profile as written in a file (only what was given when it was made)."""
    return _compact(profile.model_dump(mode="json", exclude_unset=True))


def describe_step(step: _Step) -> str:
    """A step in one line, as it would be written in the file (without its ``at``)."""
    data = step_data(step)
    data.pop("at", None)
    return _flow(data).removeprefix("{").removesuffix("}")


def dump_scenario(scenario: Scenario, *, header: str = "") -> str:
    """The scenario as a YAML file: block style, one flow-style line per script step."""
    out = [f"# {line}".rstrip() for line in header.splitlines()]
    top = scenario.model_dump(
        mode="json", exclude_defaults=True, exclude={"script", "expect", "faults", "profile"}
    )
    top = {"name": scenario.name, "description": scenario.description, **top}
    out.append(yaml.safe_dump(top, sort_keys=False, width=100, allow_unicode=True).rstrip())
    if isinstance(scenario.profile, AgentProfile):
        out.append(
            yaml.safe_dump({"profile": profile_data(scenario.profile)}, sort_keys=False, width=100).rstrip()
        )
    elif scenario.profile != "default":
        out.append(f"profile: {json.dumps(scenario.profile)}")
    if scenario.faults:
        out.append("faults:")
        out += [f"  - {_flow(fault_data(f))}" for f in scenario.faults]
    out.append("script:")
    out += [f"  - {_flow(step_data(step))}" for step in scenario.script]
    expect = scenario.expect.model_dump(mode="json", exclude_defaults=True)
    if expect:
        out.append(
            yaml.safe_dump({"expect": expect}, sort_keys=False, width=100, default_flow_style=None).rstrip()
        )
    return "\n".join(out) + "\n"
