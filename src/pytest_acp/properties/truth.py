"""The ground truth, indexed: what each agent instance received and sent, from its trace.

The oracle never looks inside a bridge; this model is half of what it compares (the other half is
``client_log``: what the client asked and the bridge delivered). It is read from the traces alone:
each instance's turns (found by the correlation token every prompt carries, ``TOKEN_RE``), what it
sent in each turn and how it answered, its sessions (created, resumed, cancelled, closed, their
cwd and MCP set), its faults, spawned and reaped processes, and when it ended. A send whose write
failed is not what the agent sent; the last send of an instance killed mid-write may not be either
(``AgentUpdate.maybe_unsent``).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from acp_sim.trace import TraceEvent
from pytest_acp.adapter import mcp_config, normalize_usage

EPS = 1e-5
TOKEN_RE = re.compile(r"\btask-\d{4,}\b")
# Faults after which the agent connection is gone: a turn that fails then is explained.
FATAL_FAULTS = frozenset({"crash", "disconnect", "exit", "kill"})
SESSION_KINDS: frozenset[str] = frozenset({"available_commands_update", "current_mode_update"})
"""Update kinds that belong to a session, not to a turn: judged by ``properties.session_updates``,
never by the turn checks."""


PendingNew = tuple[float, str | None, tuple[str, ...], str, str | None]
"""A session/new, load or resume awaiting its answer: (t, cwd, MCP set, method, session id)."""


@dataclass(frozen=True)
class InstanceTrace:
    """The trace of one agent instance; ``offset`` maps its times onto the delivery log's clock."""

    name: str
    events: Sequence[TraceEvent]
    offset: float = 0.0


@dataclass
class AgentUpdate:
    t: float
    seq: int
    kind: str | None
    text: str | None
    maybe_unsent: bool = False
    """The last send of an instance that did not exit cleanly: recorded before its write, which the
    agent's death may have cut short (see ``acp_sim.trace``); a bridge need not have delivered it."""


@dataclass
class AgentTurn:
    """One agent turn: (instance, session, turn), what it sent and how the agent answered it."""

    instance: int
    session: str
    turn: int
    received: float
    prompt_text: str
    updates: list[AgentUpdate] = field(default_factory=list)
    response_t: float | None = None
    response_seq: int | None = None
    stop_reason: str | None = None
    usage: dict[str, int] | None = None
    error: dict[str, Any] | None = None

    @property
    def ref(self) -> tuple[int, str, int]:
        return (self.instance, self.session, self.turn)

    def label(self) -> str:
        return f"agent#{self.instance} session {self.session[:8]} turn {self.turn}"


@dataclass
class AgentSession:
    instance: int
    id: str
    created: float  # when the agent answered session/new (or load/resume)
    requested: float
    cwd: str | None
    mcp: tuple[str, ...]
    via: str  # session/new, session/load, session/resume
    cwd_history: list[tuple[float, str | None, tuple[str, ...]]] = field(default_factory=list)
    prompts: list[float] = field(default_factory=list)
    cancels: list[float] = field(default_factory=list)
    cancel_seqs: list[int] = field(default_factory=list)
    closed: float | None = None


class Truth:
    """The traces of every agent instance, indexed for the checks."""

    def __init__(self, instances: Sequence[InstanceTrace], kinds: frozenset[str], empty_text: bool) -> None:
        self.instances = instances
        self.turns: dict[tuple[int, str, int], AgentTurn] = {}
        self.by_token: dict[str, list[AgentTurn]] = defaultdict(list)
        self.origins: dict[str, list[tuple[int, str, int]]] = defaultdict(list)
        self.replayed: set[str] = set()
        """Texts the agent sent while answering ``session/load``: history replayed, said before."""
        self._loading: set[tuple[int, str]] = set()
        self.sessions: dict[tuple[int, str], AgentSession] = {}
        self.prompt_seqs: dict[tuple[int, str, int], int] = {}
        self.resumes: list[tuple[int, str, str, float]] = []  # (instance, method, session, t)
        self.faults: list[tuple[int, float, dict[str, Any]]] = []
        self.ended: dict[int, float] = {}  # instance -> time its connection ended (crash, exit)
        self.estimated: set[int] = set()
        """Instances whose end no event of theirs says: ``ended`` has their last event's time (a later
        instance started, so they were gone by then; they may have lived on until it did)."""
        self.spawned: dict[tuple[int, str], list[dict[str, Any]]] = defaultdict(list)
        self.reaped: dict[tuple[int, str], int] = defaultdict(int)
        self.session_new_durations: list[float] = []
        self.close_capable: dict[int, bool] = {}
        self._kinds = kinds
        self._empty_text = empty_text
        # Kept between ``index`` calls, so a run's trace is read once however often it is judged:
        self._pending_new: dict[int, dict[Any, PendingNew]] = defaultdict(dict)
        self._ended: dict[int, float] = {}  # what the events say; ``settle`` adds what they cannot
        self._last_send: dict[int, int | None] = {}  # each instance's last send (None: a clean exit since)
        self._last_item: dict[int, AgentUpdate | None] = {}  # the update that last send made, if any
        self._flagged: list[AgentUpdate] = []
        for index, instance in enumerate(instances):
            self.index(index, instance, 0, len(instance.events), unsent_sends(instance.events)[0])
        self.settle(instances)

    def settle(self, instances: Sequence[InstanceTrace]) -> None:
        """What only the whole trace so far decides: which last send may be unsent (no clean exit
        after it yet) and when each instance ended (a later instance exists: it is gone by then)."""
        self.instances = instances
        for item in self._flagged:
            item.maybe_unsent = False
        self._flagged = []
        for i, seq in self._last_send.items():
            item = self._last_item.get(i)
            if seq is not None and item is not None and item.seq == seq:
                item.maybe_unsent = True
                self._flagged.append(item)
        self.ended = {}
        self.estimated = set()
        for i, instance in enumerate(instances):
            if i in self._ended:
                self.ended[i] = self._ended[i]
            elif instance.events and i + 1 < len(instances):
                self.ended[i] = round(instance.events[-1].t + instance.offset, 6)
                self.estimated.add(i)

    def _keep(self, kind: str | None, text: str | None) -> bool:
        if kind not in self._kinds or kind in SESSION_KINDS:  # session-level: properties.session_updates
            return False
        return self._empty_text or text != ""

    def index(self, i: int, instance: InstanceTrace, start: int, end: int, unsent: set[int]) -> None:
        """Index instance ``i``'s events ``start:end``; ``unsent`` names the sends among them
        whose write failed (an earlier one cannot be retracted here: the caller re-reads the run).
        Instances are indexed in order: a list here keeps the order of a read from scratch."""
        pending_new = self._pending_new[i]
        for event in instance.events[start:end]:
            if event.seq in unsent:
                continue  # its write failed or was cancelled: never on the wire
            if event.kind == "send":
                self._last_send[i], self._last_item[i] = event.seq, None
            elif event.kind == "exit" and (event.detail or {}).get("reason") in ("eof", "stopped"):
                self._last_send[i] = None  # everything before a clean exit was written
            t = round(event.t + instance.offset, 6)
            message = event.message or {}
            params = message.get("params") if isinstance(message.get("params"), dict) else {}
            if event.kind == "recv" and event.method is not None and "method" in message:
                self._on_request(i, t, event, params, pending_new)
            elif event.kind == "send" and "method" in message:
                if event.method == "session/update" and event.session is not None:
                    update = params.get("update", {}) if isinstance(params, dict) else {}
                    kind = update.get("sessionUpdate")
                    content = update.get("content")
                    text = content.get("text") if isinstance(content, dict) else None
                    turn = self.turns.get((i, event.session, event.turn or 0))
                    if self._keep(kind, text):
                        item = AgentUpdate(t, event.seq, kind, text if isinstance(text, str) else None)
                        self._last_item[i] = item
                        if turn is not None:
                            turn.updates.append(item)
                        if isinstance(text, str) and text:
                            self.origins[text].append((i, event.session, event.turn or 0))
                            if (i, event.session) in self._loading:
                                self.replayed.add(text)
            elif event.kind == "send" and event.id is not None:
                self._on_response(i, t, event, message, pending_new)
            elif event.kind not in ("send", "recv", "bad_input"):
                self._on_semantic(i, t, event)

    def _on_request(
        self,
        i: int,
        t: float,
        event: TraceEvent,
        params: dict[str, Any],
        pending_new: dict[Any, PendingNew],
    ) -> None:
        method = event.method
        sid = params.get("sessionId") if isinstance(params.get("sessionId"), str) else None
        if method == "session/prompt" and sid is not None:
            text = " ".join(
                str(block.get("text", "")) for block in params.get("prompt", []) if isinstance(block, dict)
            )
            turn = AgentTurn(i, sid, event.turn or 0, t, text)
            self.turns[turn.ref] = turn
            self.prompt_seqs[turn.ref] = event.seq
            for token in TOKEN_RE.findall(text):
                self.by_token[token].append(turn)
            session = self.sessions.get((i, sid))
            if session is not None:
                session.prompts.append(t)
        elif method in ("session/new", "session/load", "session/resume"):
            cwd = params.get("cwd") if isinstance(params.get("cwd"), str) else None
            mcp = mcp_config(params.get("mcpServers") or [])
            pending_new[event.id] = (t, cwd, mcp, method, sid)
            if method != "session/new" and sid is not None:
                self.resumes.append((i, method, sid, t))
                if method == "session/load":
                    self._loading.add((i, sid))
        elif method == "session/cancel" and sid is not None:
            session = self.sessions.get((i, sid))
            if session is None:
                session = self.sessions[(i, sid)] = AgentSession(i, sid, t, t, None, (), "unknown")
            session.cancels.append(t)
            session.cancel_seqs.append(event.seq)
        elif method == "session/close" and sid is not None:
            session = self.sessions.get((i, sid))
            if session is not None and session.closed is None:
                session.closed = t

    def _on_response(
        self,
        i: int,
        t: float,
        event: TraceEvent,
        message: dict[str, Any],
        pending_new: dict[Any, PendingNew],
    ) -> None:
        result = message.get("result")
        if event.method == "session/prompt" and event.session is not None:
            turn = self.turns.get((i, event.session, event.turn or 0))
            if turn is None or turn.response_t is not None:
                return
            turn.response_t, turn.response_seq = t, event.seq
            if isinstance(result, dict):
                turn.stop_reason = str(result.get("stopReason"))
                turn.usage = normalize_usage(result.get("usage"))
            else:
                turn.error = message.get("error") or {"message": "no result"}
        elif event.method == "initialize" and isinstance(result, dict):
            caps = result.get("agentCapabilities", {}) or {}
            self.close_capable[i] = (caps.get("sessionCapabilities") or {}).get("close") is not None
        elif event.id in pending_new:
            requested, cwd, mcp, method, sid = pending_new.pop(event.id)
            if sid is not None:
                self._loading.discard((i, sid))
            if "error" in message:
                return
            if method == "session/new" and isinstance(result, dict):
                sid = result.get("sessionId") if isinstance(result.get("sessionId"), str) else None
                self.session_new_durations.append(t - requested)
            if sid is None:
                return
            existing = self.sessions.get((i, sid))
            if existing is None or existing.via == "unknown":
                session = AgentSession(i, sid, t, requested, cwd, mcp, method)
                if existing is not None:
                    session.cancels, session.cancel_seqs = existing.cancels, existing.cancel_seqs
                self.sessions[(i, sid)] = session
                existing = session
            existing.cwd_history.append((t, cwd, mcp))

    def _on_semantic(self, i: int, t: float, event: TraceEvent) -> None:
        detail = event.detail or {}
        if event.kind == "fault":
            self.faults.append((i, t, {"session": event.session, **detail}))
            if str(detail.get("kind", detail.get("fault", ""))) in FATAL_FAULTS:
                self._ended.setdefault(i, t)
        elif event.kind in ("crash", "exit", "disconnect"):
            self._ended.setdefault(i, t)
        elif event.kind == "spawn":
            sid = detail.get("session", event.session)
            if isinstance(sid, str):
                self.spawned[(i, sid)].append(detail)
        elif event.kind == "reap":
            sid = detail.get("session", event.session)
            if isinstance(sid, str):
                count = detail.get("count", 1)
                self.reaped[(i, sid)] += int(count) if isinstance(count, int) else 1

    def session_of(self, turn: AgentTurn) -> AgentSession | None:
        return self.sessions.get((turn.instance, turn.session))

    def cwd_at(self, turn: AgentTurn) -> tuple[str | None, tuple[str, ...]] | None:
        """The cwd and MCP set the agent session had when this turn's prompt arrived."""
        session = self.session_of(turn)
        if session is None:
            return None
        current = None
        for t, cwd, mcp in session.cwd_history:
            if t <= turn.received + EPS:
                current = (cwd, mcp)
        return current


def unsent_sends(events: Sequence[TraceEvent]) -> tuple[set[int], int | None]:
    """The seqs of sends whose write failed or was cancelled (``unsent`` events), and the seq of the
    instance's last send when no clean exit follows it (its write may have been cut by a kill)."""
    unsent = {
        e.detail["seq"] for e in events if e.kind == "unsent" and isinstance((e.detail or {}).get("seq"), int)
    }
    last: int | None = None
    for event in events:
        if event.kind == "send" and event.seq not in unsent:
            last = event.seq
        elif event.kind == "exit" and (event.detail or {}).get("reason") in ("eof", "stopped"):
            last = None  # everything before a clean exit was written
    return unsent, last
