"""The scenario format: what a scenario file says, as pydantic models (its JSON Schema is theirs).

A scenario names one hazard and pins it: the simulated agent (profile and seed), faults scheduled
on it, a client script of timed actions (``Step``: one model per action, ``OpenStep`` ...
``CheckStep``), and what must come out (``Expect``). Reading a file is ``acp_sim.scenario.load``'s,
writing one ``acp_sim.scenario.write``'s.

Time: ``at`` is virtual seconds since the run started (when the bridge was up). A step without
``at`` runs as soon as the step before it is done (its waits included); a step whose ``at`` has
already passed (a wait took longer) runs at once. ``at`` never goes below what the script already
reached (earlier ``at`` plus ``advance`` seconds since).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

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
    model_validator,
)

from acp_sim.distributions import Strict
from acp_sim.faults import Fault
from acp_sim.profile import AgentProfile

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
