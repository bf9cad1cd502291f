"""Injected faults: what can go wrong with an agent, as validated data, and when it fires.

A fault is a pydantic model, one class per ``kind`` (a discriminated union), scheduled by a
profile (``faults:``), by ``--fault`` on the command line, or at run time with
``SimAgent.inject``. Every fault has a trigger:

- ``at``: a virtual time (seconds since the agent started; a number or a distribution drawn from
  the seed), or
- ``after``: the Nth message that matches ``direction`` (``recv``: the client's messages,
  ``send``: the agent's), ``method`` and ``session`` (the index of a session in the order this
  agent created or restored them, from 0);
- neither: at once (at start, or when injected).

``probability`` below 1 makes a triggered fault fire only sometimes, drawn from the seed. Each
fault fires at most once; ``launch`` says which agent launch (process) it belongs to (0: the
first; ``null``: every launch), so a relaunch after a crash does not crash again.

Two families: *actions* happen when triggered (crash, hang, disconnect, malformed_line,
foreign_session_update, mcp_child_crash); *behaviours* are armed when triggered and change how
the agent handles the next matching message (error_reply, slow_session_new, mcp_spawn_failure,
stall, ignore_cancel, wrong_stop_reason, one_turn_behind, updates_after_response, empty_turn,
early_session_updates).

``FaultPlan`` does the bookkeeping (counting, arming, taking); the agent performs the effects
and records each in its trace as a ``fault`` event.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from acp_sim.distributions import OptionalLatency, Strict
from acp_sim.errors import ProfileError

Direction = Literal["recv", "send"]
StopReason = Literal["end_turn", "max_tokens", "max_turn_requests", "refusal", "cancelled"]


class FaultBase(Strict):
    at: OptionalLatency = None
    """Fire at this virtual time (seconds since the agent started)."""
    after: PositiveInt | None = None
    """Fire at the Nth matching message (1 = the first)."""
    direction: Direction = "recv"
    """Which messages count for ``after``: ``recv`` (from the client) or ``send`` (from the agent)."""
    method: str | None = None
    """Only messages of this JSON-RPC method count (responses carry their request's method)."""
    session: NonNegativeInt | None = None
    """Only this session counts: its index in the order the agent created or restored sessions."""
    probability: Annotated[float, Field(ge=0.0, le=1.0)] = 1.0
    """Chance that a triggered fault fires, drawn from the seeded RNG."""
    launch: NonNegativeInt | None = 0
    """The agent launch (process) this fault belongs to: 0 is the first; null means every launch."""

    action: ClassVar[bool] = True
    """Actions happen when triggered; behaviours are armed and change the next matching handling."""

    @model_validator(mode="after")
    def _one_trigger(self) -> FaultBase:
        if self.at is not None and self.after is not None:
            raise ValueError(f"give either 'at' or 'after', not both (at={self.at!r}, after={self.after})")
        return self

    def describe(self, at: float | None = None) -> dict[str, Any]:
        """The fault as it goes into the trace's ``detail``: kind first, defaults left out, ``at``
        as the time drawn for this run."""
        detail = {"kind": getattr(self, "kind"), **self.model_dump(mode="json", exclude_defaults=True)}  # noqa: B009
        if at is not None:
            detail["at"] = at
        return detail


# -- actions ---------------------------------------------------------------------------------------


class Crash(FaultBase):
    """The agent dies: in-process, both streams close abruptly; over stdio the process exits ``code``."""

    kind: Literal["crash"]
    code: int = 1
    """Exit code of the stdio agent."""
    orphan_mcp: bool = False
    """Leave the MCP children running (a leak to provoke); by default they die with the agent."""


class Hang(FaultBase):
    """Stop answering and keep the pipe open.

    Without ``method`` the whole agent goes silent: no update, no response, cancels ignored.
    With ``method`` it is a behaviour: the next matching request is never answered (a prompt
    still streams its turn, then its response never comes and later prompts queue behind it).
    """

    kind: Literal["hang"]


class Disconnect(FaultBase):
    """Close both streams cleanly (stdio: exit 0); MCP children are stopped."""

    kind: Literal["disconnect"]


class MalformedLine(FaultBase):
    """Write a line that is not a JSON-RPC message."""

    kind: Literal["malformed_line"]
    line: str = '{"jsonrpc":"2.0","method":"session/update","params":{"sessionId":'


class ForeignSessionUpdate(FaultBase):
    """An ``agent_message_chunk`` for a session id the client never opened."""

    kind: Literal["foreign_session_update"]
    session_id: str | None = None
    """The foreign id; drawn from the seed when absent."""
    text: str = "[foreign] this update belongs to no session of yours "


class McpChildCrash(FaultBase):
    """Kill MCP children: those of session ``session`` (or of the triggering message's session, or
    of every session), only server ``server`` when given."""

    kind: Literal["mcp_child_crash"]
    server: str | None = None


# -- behaviours ------------------------------------------------------------------------------------


class _Behaviour(FaultBase):
    action: ClassVar[bool] = False


class ErrorReply(_Behaviour):
    """Answer the next matching request with this JSON-RPC error instead of handling it."""

    kind: Literal["error_reply"]
    method: str  # type: ignore[assignment]
    code: int = -32603
    message: str = "Internal error"
    data: Any = None


class SlowSessionNew(_Behaviour):
    """The next ``session/new`` takes ``seconds`` longer."""

    kind: Literal["slow_session_new"]
    method: Literal["session/new"] = "session/new"
    seconds: NonNegativeFloat


class McpSpawnFailure(_Behaviour):
    """The stdio MCP servers of the next matching request (``server`` only, when given) fail to start."""

    kind: Literal["mcp_spawn_failure"]
    method: Literal["session/new", "session/load", "session/resume"] = "session/new"
    server: str | None = None


class Stall(_Behaviour):
    """Pause ``seconds`` before the next chunk (after the Nth update the agent sent, with ``after``)."""

    kind: Literal["stall"]
    direction: Literal["send"] = "send"
    method: Literal["session/update"] = "session/update"
    seconds: PositiveFloat


class IgnoreCancel(_Behaviour):
    """The next ``session/cancel`` has no effect: the turn runs on and ends ``end_turn``."""

    kind: Literal["ignore_cancel"]
    method: Literal["session/cancel"] = "session/cancel"


class WrongStopReason(_Behaviour):
    """A turn answers ``stop_reason``: the turn the next cancel stops (method ``session/cancel``),
    or the next prompt's turn (method ``session/prompt``)."""

    kind: Literal["wrong_stop_reason"]
    method: Literal["session/cancel", "session/prompt"] = "session/cancel"
    stop_reason: StopReason = "end_turn"


class OneTurnBehind(_Behaviour):
    """Claude Code adapter 0.23.1's defect, armed by the next ``session/cancel``.

    That session's next prompt answers ``end_turn`` at once with zero usage and no update while
    its real turn runs in the background; every later prompt streams the previous turn's chunks
    and usage, so the session stays one turn behind (shared/reference/claude-code-adapter.md).
    """

    kind: Literal["one_turn_behind"]
    method: Literal["session/cancel"] = "session/cancel"


class UpdatesAfterResponse(_Behaviour):
    """The next prompt's turn sends ``count`` more chunks after its response (tail truncation bait)."""

    kind: Literal["updates_after_response"]
    method: Literal["session/prompt"] = "session/prompt"
    count: PositiveInt = 2
    interval: NonNegativeFloat = 0.0


class EmptyTurn(_Behaviour):
    """The next prompt's turn ends ``end_turn`` at once without a single chunk (usage as usual)."""

    kind: Literal["empty_turn"]
    method: Literal["session/prompt"] = "session/prompt"


class EarlySessionUpdates(_Behaviour):
    """The next ``session/new`` sends the new session's session-level updates
    (``available_commands_update``, ``current_mode_update``) before its response, not after it."""

    kind: Literal["early_session_updates"]
    method: Literal["session/new"] = "session/new"


Fault = Annotated[
    Crash
    | Hang
    | Disconnect
    | MalformedLine
    | ForeignSessionUpdate
    | McpChildCrash
    | ErrorReply
    | SlowSessionNew
    | McpSpawnFailure
    | Stall
    | IgnoreCancel
    | WrongStopReason
    | OneTurnBehind
    | UpdatesAfterResponse
    | EmptyTurn
    | EarlySessionUpdates,
    Field(discriminator="kind"),
]
FAULT_ADAPTER: TypeAdapter[Fault] = TypeAdapter(Fault)
FAULT_CLASSES: tuple[type[FaultBase], ...] = (
    Crash, Hang, Disconnect, MalformedLine, ForeignSessionUpdate, McpChildCrash, ErrorReply, SlowSessionNew,
    McpSpawnFailure, Stall, IgnoreCancel, WrongStopReason, OneTurnBehind, UpdatesAfterResponse, EmptyTurn,
    EarlySessionUpdates,
)  # fmt: skip
FAULT_KINDS: tuple[str, ...] = tuple(cls.model_fields["kind"].annotation.__args__[0] for cls in FAULT_CLASSES)  # type: ignore[union-attr]


def is_action(fault: FaultBase) -> bool:
    """Actions happen when triggered; behaviours are armed (a hang with a method is a behaviour)."""
    if isinstance(fault, Hang):
        return fault.method is None
    return fault.action


# -- the compact command-line syntax ---------------------------------------------------------------


def _split_top_level(text: str) -> list[str]:
    """Split on commas outside double quotes, brackets and braces (so JSON values keep theirs)."""
    parts, depth, quoted, current = [], 0, False, []
    escaped = False
    for ch in text:
        if quoted:
            current.append(ch)
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                quoted = False
            continue
        if ch == '"':
            quoted = True
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    parts.append("".join(current))
    return parts


def _value(text: str) -> Any:
    # JSON when it parses (numbers, true/false/null, "quoted", {...}); otherwise the bare string.
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_fault_spec(spec: str) -> Fault:
    """Parse ``KIND[:KEY=VALUE[,KEY=VALUE...]]``, e.g. ``crash:at=2.5`` or
    ``error_reply:method=session/new,code=-32603,after=2``; values are JSON when they parse."""
    kind, _, rest = spec.partition(":")
    data: dict[str, Any] = {"kind": kind.strip()}
    for part in _split_top_level(rest) if rest.strip() else []:
        key, eq, value = part.partition("=")
        if not eq or not key.strip():
            raise ProfileError(f"invalid fault {spec!r}: expected KEY=VALUE, got {part!r}")
        data[key.strip()] = _value(value.strip())
    try:
        return FAULT_ADAPTER.validate_python(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'][1:]) or 'fault'}: {err['msg']} (got {err.get('input')!r})"
            for err in exc.errors(include_url=False)
        )
        raise ProfileError(f"invalid fault {spec!r}: {problems}") from None


# -- scheduling ------------------------------------------------------------------------------------


@dataclass(eq=False)
class Scheduled:
    """One fault of a plan and where it stands."""

    fault: Fault
    at: float | None = None  # the drawn time, for ``at`` triggers
    seen: int = 0  # matching messages counted so far, for ``after`` triggers
    state: Literal["pending", "armed", "done"] = "pending"


@dataclass
class FaultPlan:
    """Counts, arms and hands out the faults of one agent instance (no I/O here)."""

    rng: random.Random
    launch: int = 0
    entries: list[Scheduled] = field(default_factory=list)
    counting: list[Scheduled] = field(default_factory=list)
    armed: list[Scheduled] = field(default_factory=list)

    def add(self, fault: Fault, *, any_launch: bool = False) -> Scheduled | None:
        """Schedule a fault; None when it belongs to another launch (unless ``any_launch``: injected)."""
        if not any_launch and fault.launch is not None and fault.launch != self.launch:
            return None
        entry = Scheduled(fault)
        if fault.at is not None:
            entry.at = fault.at.draw(self.rng)
        self.entries.append(entry)
        if fault.after is not None:
            self.counting.append(entry)
        return entry

    def observe(self, direction: str, method: str | None, session: int | None) -> list[Scheduled]:
        """Count one message; return the entries it triggers (in schedule order)."""
        fired: list[Scheduled] = []
        for entry in self.counting:
            f = entry.fault
            if (
                f.direction == direction
                and (f.method is None or f.method == method)
                and (f.session is None or f.session == session)
            ):
                entry.seen += 1
                if entry.seen == f.after:
                    fired.append(entry)
        if fired:
            self.counting = [e for e in self.counting if e not in fired]
        return [e for e in fired if self.roll(e)]

    def roll(self, entry: Scheduled) -> bool:
        """The probability draw of a triggered entry (always drawn when below 1: reproducible)."""
        p = entry.fault.probability
        if p < 1.0 and self.rng.random() >= p:
            entry.state = "done"
            return False
        return True

    def arm(self, entry: Scheduled) -> None:
        entry.state = "armed"
        self.armed.append(entry)

    def take(self, kind: str, session: int | None, method: str | None = None) -> Fault | None:
        """Consume the first armed behaviour of ``kind`` that applies to this session (and method)."""
        for entry in self.armed:
            f = entry.fault
            if (
                f.kind == kind
                and (f.session is None or f.session == session)
                and (method is None or f.method == method)
            ):
                entry.state = "done"
                self.armed.remove(entry)
                return f
        return None

    @property
    def watching(self) -> bool:
        """True while some fault counts messages (the agent then observes every message)."""
        return bool(self.counting)
