"""The bridge adapter API: how a library author puts their bridge under test.

A bridge is whatever sits between an application and an ACP agent and keeps per-session
bookkeeping (the reference orchestrator, an editor's client, a chat bot). The suite drives it only
through a ``BridgeAdapter``, a handful of async methods keyed by the *application's* session key
(never the agent's session id), and records what the bridge delivered in a ``DeliveryLog``. The
adapter never sees the agent's ground-truth trace; the oracle compares the two afterwards.

A factory receives the agent to use and returns an async context manager yielding the adapter::

    @asynccontextmanager
    async def bridge(agent: AgentUnderTest) -> AsyncIterator[BridgeAdapter]:
        async with Orchestrator(agent.launcher, turn_timeout=120) as orch:
            yield MyAdapter(orch)

See ``examples/reference_adapter.py`` for a complete adapter in under 30 lines.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, get_args, runtime_checkable

import anyio
from pydantic import BaseModel, ConfigDict, Field

from acp_sim.live.redact import Redactor
from acp_sim.loop_primitives import loop_clock
from acp_sim.orchestrator.launcher import AgentLauncher

TEXT_CHUNK = "agent_message_chunk"

# What the client (the state machine or a scenario) did, and what the bridge answered or delivered.
ClientAction = Literal[
    "open",
    "prompt",
    "cancel",
    "close",
    "change_cwd",
    "prewarm",
    "crash",
    "fault",
    "advance",
    "slow_consumer",
]
EntryKind = Literal[
    ClientAction,
    # the bridge's answers and deliveries
    "opened",
    "open_failed",
    "closed",
    "cwd_changed",
    "prewarmed",
    "action_failed",
    "update",
    "end",
    "usage_total",
    # what the harness saw after the bridge stopped
    "leaked_processes",
    # the end-of-run drain gave up on turns still running (``Harness.stop``)
    "drain_expired",
    # bridge output tied to no key (``pytest_acp.harness.unattributed``)
    "unattributed",
]
CLIENT_ACTIONS: frozenset[str] = frozenset(get_args(ClientAction))


class LogEntry(BaseModel):
    """One line of the delivery log; ``t`` is virtual seconds since the run started.

    Keys are the bridge's session keys (``key``) and the bridge's turn index per key (``turn``,
    from 1); agent session ids never appear here: mapping them is the oracle's job.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    seq: int
    t: float
    kind: EntryKind
    key: str | None = None
    turn: int | None = None
    text: str | None = None
    update_kind: str | None = None
    raw: dict[str, Any] | None = None
    stop_reason: str | None = None
    usage: dict[str, int] | None = None
    error: str | None = None
    timed_out: bool | None = None
    detail: dict[str, Any] | None = None

    def describe(self) -> str:
        """A one-line, human form for timelines."""
        parts = [self.kind]
        if self.kind == "update":
            parts = [self.update_kind or "update"]
        if self.text is not None:
            parts.append(repr(_shorten(self.text)))
        if self.stop_reason is not None:
            parts.append(f"stopReason={self.stop_reason}")
        if self.error is not None:
            parts.append(("TIMEOUT " if self.timed_out else "error ") + repr(_shorten(self.error, 70)))
        if self.usage:
            parts.append(f"usage={self.usage}")
        if self.detail:
            # Shown, never stored redacted: the oracle compares the client's MCP configs with the
            # agent's as given, but a timeline must not print an MCP server's secret env values.
            shown = _REDACTOR.value(self.detail)
            parts.append(" ".join(f"{k}={v}" for k, v in shown.items()))
        return " ".join(parts)


_REDACTOR = Redactor.from_env()


def _shorten(text: str, limit: int = 48) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def normalize_usage(usage: Any) -> dict[str, int] | None:
    """Token usage as ``{camelCaseField: int}`` from a wire dict, snake_case dict or pydantic model."""
    if usage is None:
        return None
    if isinstance(usage, BaseModel):
        usage = usage.model_dump(by_alias=True, exclude_none=True)
    if not isinstance(usage, Mapping):
        return None
    out: dict[str, int] = {}
    for name, value in usage.items():
        if isinstance(value, int) and not isinstance(value, bool):
            head, *rest = str(name).split("_")
            out[head + "".join(part.title() for part in rest)] = value
    return out


class DeliveryLog:
    """What the client did and what the bridge delivered, in order, on the run's clock."""

    def __init__(self, now: Callable[[], float] | None = None) -> None:
        if now is None:
            clock = loop_clock()  # what anyio.current_time() reads, looked up once: read per entry
            origin = clock()
            now = lambda: clock() - origin  # noqa: E731
        self._now = now
        self.entries: list[LogEntry] = []

    def now(self) -> float:
        return round(self._now(), 6)

    def record(self, kind: EntryKind, **fields: Any) -> LogEntry:
        entry = LogEntry(seq=len(self.entries), t=self.now(), kind=kind, **fields)
        self.entries.append(entry)
        return entry

    def to_jsonl(self) -> str:
        return "".join(entry.model_dump_json(exclude_none=True) + "\n" for entry in self.entries)


@dataclass(frozen=True)
class TurnEnd:
    """How a turn ended, as the bridge reported it to its caller.

    ``timed_out`` marks an end caused by the bridge's own timeout (the oracle checks P4 on those);
    a ``TimeoutError`` raised from ``prompt`` means the same.
    """

    stop_reason: str | None = None
    usage: Any = None
    error: str | None = None
    timed_out: bool = False


class TurnOutput:
    """Handed to ``BridgeAdapter.prompt``: call it for every update the bridge delivers, as it arrives.

    The harness may make this slow for one session on purpose (a caller that reads slowly), so a
    bridge that lets one slow reader hold up the others is caught.
    """

    def __init__(
        self, log: DeliveryLog, key: str, turn: int, *, delay: Callable[[], float] = lambda: 0.0
    ) -> None:
        self.key = key
        self.turn = turn
        self._log = log
        self._delay = delay
        self.count = 0

    async def update(self, update: Any) -> None:
        """Deliver one ``session/update`` ``update`` object (wire dict, or an ``acp.schema`` model)."""
        raw = _as_wire(update)
        kind = raw.get("sessionUpdate")
        content = raw.get("content")
        text = content.get("text") if isinstance(content, dict) else None
        self._record(str(kind) if kind is not None else None, text if isinstance(text, str) else None, raw)
        await self._wait()

    async def text(self, text: str, kind: str = TEXT_CHUNK) -> None:
        """Deliver a text delta, for bridges that hand their callers plain strings."""
        self._record(kind, text, None)
        await self._wait()

    def _record(self, kind: str | None, text: str | None, raw: dict[str, Any] | None) -> None:
        self.count += 1
        self._log.record("update", key=self.key, turn=self.turn, update_kind=kind, text=text, raw=raw)

    async def _wait(self) -> None:
        delay = self._delay()
        if delay > 0:
            await anyio.sleep(delay)


def _as_wire(update: Any) -> dict[str, Any]:
    if isinstance(update, BaseModel):
        return update.model_dump(mode="json", by_alias=True, exclude_none=True)
    if isinstance(update, Mapping):
        return dict(update)
    raise TypeError(f"TurnOutput.update() takes a session update dict or model, not {type(update).__name__}")


class BridgeCapabilities(BaseModel):
    """What the bridge promises, so the oracle judges it by its own contract.

    Declare the bridge's timeouts (virtual seconds, ``None`` for none): P4 checks a timed-out turn
    against them. ``kinds`` are the update kinds the bridge delivers to its callers (P2 compares
    those); ``empty_text`` says whether empty text chunks are delivered too.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    turn_timeout: float | None = None
    idle_timeout: float | None = None
    kinds: frozenset[str] = Field(default_factory=lambda: frozenset({TEXT_CHUNK}))
    empty_text: bool = True
    delivery_slack: float = 1.0
    """Virtual seconds a delivery may lag the agent's send (a bridge that batches may need more)."""
    cancel_slack: float = 1.0
    """Virtual seconds from ``cancel()`` to the agent receiving ``session/cancel``."""
    reconnects: bool = Field(
        True,
        json_schema_extra={
            "limit_cost": "when the agent dies, every conversation ends with an error: the caller must "
            "open new ones (and their history is gone)"
        },
    )
    """The bridge starts a new agent when the old one dies (the harness may crash the agent). ``False``:
    it must fail each running and later turn of the dead agent at once, with an error."""
    # Declared limits: each field's ``limit_cost`` says what the limit costs the bridge's users (the
    # failure report and the README list the ones a bridge declares, see ``declared_limits``).
    resends_answered: bool = Field(
        False,
        json_schema_extra={
            "limit_cost": "a prompt the agent already answered may be sent again: that turn runs twice at "
            "the agent (tokens spent twice, tools run twice)"
        },
    )
    """The bridge may send a prompt again after the agent answered it (e.g. after an empty answer,
    into a fresh session). Without this, P2 flags a prompt that reaches the agent after an answer to
    it; a retry after a failed attempt (an error, a crash, no answer) is always fine."""
    continuity: bool = Field(
        True,
        json_schema_extra={
            "limit_cost": "a key's next turn may start in a fresh agent session: the agent has lost the "
            "conversation so far (history lost)"
        },
    )
    """Turn n+1 of a key runs in the agent session of turn n, or in one restored from it (the same
    session id on a later agent instance, or a ``session/load``, ``session/resume`` or ``session/fork``
    of it). ``False`` for a bridge that chooses to start over (e.g. drops the session on cancel)."""
    mcp_servers: tuple[dict[str, Any], ...] | None = Field(
        None,
        json_schema_extra={
            "limit_cost": "the caller's MCP servers are ignored: every session gets the bridge's own set"
        },
    )
    """The MCP servers the bridge attaches to every session itself (``None``: it passes the caller's).
    P7 then judges each session against this set, not against what the key asked for."""
    stop_reasons: bool = Field(
        True,
        json_schema_extra={
            "limit_cost": "the caller is never told why a turn ended (finished, cancelled, refused, out "
            "of tokens): it gets the text only"
        },
    )
    """The bridge tells its caller each turn's stop reason. ``False``: turns end with no stop reason;
    the oracle still requires a cancelled turn to end promptly and deliver nothing after the cancel."""
    usage: bool = Field(
        True,
        json_schema_extra={
            "limit_cost": "the caller gets no token usage: what a conversation costs cannot be tracked"
        },
    )
    """The bridge reports token usage (per turn or as a running total); ``False`` skips P9."""
    session_close: bool = Field(
        True,
        json_schema_extra={
            "limit_cost": "the caller cannot end a conversation: its agent session (and its MCP "
            "servers) live until the bridge stops"
        },
    )
    """The bridge can close one session key. ``False``: closing a key is forgetting it (no P6 on the
    key's agent session); stopping the bridge must still leave no process behind."""

    def declared_limits(self) -> list[tuple[str, str]]:
        """Each declared limit (a field set away from its default) and what it costs the user."""
        out = []
        for name, info in type(self).model_fields.items():
            extra = info.json_schema_extra
            cost = extra.get("limit_cost") if isinstance(extra, dict) else None
            value = getattr(self, name)
            if isinstance(cost, str) and value != info.default:
                shown = "own set" if name == "mcp_servers" else value
                out.append((f"{name}={shown}", cost))
        return out

    max_sessions: int | None = Field(
        None,
        json_schema_extra={
            "limit_cost": "a caller cannot hold more conversations than this at a time: an open beyond "
            "it fails"
        },
    )
    """At most this many sessions open at once; an open beyond it may fail (not a violation)."""


@runtime_checkable
class BridgeAdapter(Protocol):
    """The bridge under test, seen through its application's session keys.

    Required: ``open_session``, ``prompt``, ``cancel``, ``close``. Optional (found with
    ``getattr``; the state machine only uses what exists): ``prewarm(*, cwd, mcp_servers, model)``
    (make one warm session ready for a later ``open_session`` with that configuration; return
    once it is ready), ``change_cwd(old, new)`` (the project at ``old`` changed: its files, or it
    moved to ``new``; sessions prepared for it before must not serve conversations opened after),
    ``usage(key)`` (the bridge's running token total for ``key``), and a ``capabilities``
    attribute (``BridgeCapabilities``).
    """

    async def open_session(
        self, key: str, *, cwd: str, mcp_servers: list[dict[str, Any]], model: str | None
    ) -> None: ...

    async def prompt(self, key: str, text: str, out: TurnOutput) -> TurnEnd | str | None:
        """Send ``text`` as the next turn of ``key``; deliver updates with ``out``; return at its end.

        Return a ``TurnEnd`` (or just the stop reason); raise, or return ``TurnEnd(error=...)``,
        when the bridge reports the turn as failed.
        """
        ...

    async def cancel(self, key: str) -> None: ...

    async def close(self, key: str) -> None: ...


@dataclass
class AgentUnderTest:
    """The agent a bridge factory must use.

    ``launcher`` starts an agent instance per call (in-process on virtual time for the simulator);
    bridges that spawn the agent themselves use ``command`` instead (a real process: real time).
    """

    launcher: AgentLauncher
    command: list[str] | None = None
    backend: str = "asyncio"
    virtual_time: bool = True
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


AdapterFactory = Callable[[AgentUnderTest], AbstractAsyncContextManager[BridgeAdapter]]


def capabilities_of(adapter: Any) -> BridgeCapabilities:
    caps = getattr(adapter, "capabilities", None)
    if caps is None:
        return BridgeCapabilities()
    if isinstance(caps, BridgeCapabilities):
        return caps
    return BridgeCapabilities.model_validate(caps)


def check_adapter(adapter: Any) -> None:
    """Fail early, naming what is missing, when an object is not a ``BridgeAdapter``."""
    missing = [
        name
        for name in ("open_session", "prompt", "cancel", "close")
        if not callable(getattr(adapter, name, None))
    ]
    if missing:
        raise TypeError(
            f"{type(adapter).__name__} is not a BridgeAdapter: it has no {', '.join(missing)}; "
            "see pytest_acp.adapter.BridgeAdapter"
        )


def supports(adapter: Any, method: str) -> bool:
    return callable(getattr(adapter, method, None))


def token_for(index: int) -> str:
    """The correlation token carried by the index-th prompt of a run (never a prefix of another)."""
    return f"task-{index:04d}"


def mcp_config(servers: Sequence[Mapping[str, Any]] | None) -> tuple[str, ...]:
    """A comparable form of an MCP server list: what decides whether two sessions are interchangeable."""
    out = []
    for server in servers or ():
        name = server.get("name", "")
        target = server.get("command") or server.get("url") or ""
        args = " ".join(str(a) for a in server.get("args", []) or [])
        out.append(f"{name}={target} {args}".strip())
    return tuple(sorted(out))


BACKENDS_ATTRIBUTE = "backends"
"""An adapter factory may declare the anyio backends its bridge runs on: ``factory.backends =
("asyncio",)`` for a bridge built on asyncio-only code (the official SDK's streams, asyncio
primitives). The suite, the scenario items and the fixtures then skip the other backends with
one line saying so, instead of failing there. Without it, a bridge runs on every backend."""


def unsupported_backend(factory: Any, backend: str, *, name: str | None = None) -> str | None:
    """Why ``factory``'s bridge does not run on ``backend`` (a skip reason), or None if it does."""
    declared = getattr(factory, BACKENDS_ATTRIBUTE, None)
    if declared is None:
        return None
    backends = (declared,) if isinstance(declared, str) else tuple(declared)
    if backend in backends:
        return None
    label = name or getattr(factory, "__qualname__", None) or repr(factory)
    return f"{label} declares backends={', '.join(backends) or '(none)'}: not run on {backend}"
