"""The oracle: a pure function of (ground-truth traces, delivery log) -> violations of P1-P9.

It never looks inside a bridge. The ground truth is what each agent instance sent and received (its
trace, one per launch); the delivery log is what the client asked the bridge to do and what the
bridge delivered, under the client's own session keys and turn numbers.

Correlation without trusting the bridge: every prompt the client sends carries a unique token
(``task-0017``). The agent records the ``session/prompt`` params it received, so the oracle maps
(bridge key, bridge turn) -> (agent instance, agent session id, agent turn) from the trace alone,
across reconnects and relaunches. Chunks are attributed by send order, not by unique text: what a
turn delivered must match, as a sequence, what the agent sent in the correlated agent turn(s), so
ordinary text (``.``, `` the``, the same chunk twice) is judged like the simulator's tagged text. A
delivered chunk that its own turn cannot account for (its text never sent there, or sent fewer times)
but that another session sent and its own caller lacks is cross-session bleed, named by its origin.

Properties (see the README for the full statements): P1 first chunk, P2 integrity, P3 no
cross-session bleed (and no stall caused by another session), P4 generation-scoped timeouts, P5
scoped interrupts, P6 no leaked processes or sessions, P7 pre-warm, P8 no resumed phantoms, P9 token
accounting.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from acp_sim.conformance import PROPERTIES
from acp_sim.trace import TraceEvent
from pytest_acp.adapter import BridgeCapabilities, LogEntry, mcp_config, normalize_usage
from pytest_acp.properties import failed_opens
from pytest_acp.properties.after_end import check_after_end
from pytest_acp.properties.conversation import check_continuity, check_resent_prompts
from pytest_acp.properties.session_updates import SESSION_KINDS, check_session_updates
from pytest_acp.properties.text_only import check_text_only_end, judges_text_only

EPS = 1e-5
TOKEN_RE = re.compile(r"\btask-\d{4,}\b")
# The properties' names are part of the conformance report's format (one list for both).
PROPERTY_NAMES = PROPERTIES
# Faults after which the agent connection is gone: a turn that fails then is explained.
FATAL_FAULTS = frozenset({"crash", "disconnect", "exit", "kill"})


@dataclass(frozen=True)
class Violation:
    """One broken property: which, where (bridge key and turn, agent session), when, and what."""

    property: str
    message: str
    key: str | None = None
    turn: int | None = None
    t: float | None = None
    session: str | None = None
    cause: bool = False
    """A bridge call that never returned: reported before the violations it brings about."""

    @property
    def title(self) -> str:
        return f"{self.property} {PROPERTY_NAMES.get(self.property, '')}".strip()

    def __str__(self) -> str:
        where = []
        if self.key is not None:
            where.append(f"key {self.key}" + (f" turn {self.turn}" if self.turn is not None else ""))
        if self.session is not None:
            where.append(f"agent session {self.session[:8]}")
        if self.t is not None:
            where.append(f"t={self.t:.6f}")
        return f"{self.title}: {self.message}" + (f" [{', '.join(where)}]" if where else "")


@dataclass(frozen=True)
class InstanceTrace:
    """The trace of one agent instance; ``offset`` maps its times onto the delivery log's clock."""

    name: str
    events: Sequence[TraceEvent]
    offset: float = 0.0


# -- the ground truth, indexed ----------------------------------------------------------------------


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
        self.spawned: dict[tuple[int, str], list[dict[str, Any]]] = defaultdict(list)
        self.reaped: dict[tuple[int, str], int] = defaultdict(int)
        self.session_new_durations: list[float] = []
        self.close_capable: dict[int, bool] = {}
        self._kinds = kinds
        self._empty_text = empty_text
        for index, instance in enumerate(instances):
            self._index(index, instance)

    def _keep(self, kind: str | None, text: str | None) -> bool:
        if kind not in self._kinds or kind in SESSION_KINDS:  # session-level: oracle_session_updates
            return False
        return self._empty_text or text != ""

    def _index(self, i: int, instance: InstanceTrace) -> None:
        pending_new: dict[Any, tuple[float, str | None, tuple[str, ...], str, str | None]] = {}
        unsent, maybe_unsent = _unsent(instance.events)
        for event in instance.events:
            if event.seq in unsent:
                continue  # its write failed or was cancelled: never on the wire
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
                        item = AgentUpdate(
                            t,
                            event.seq,
                            kind,
                            text if isinstance(text, str) else None,
                            event.seq == maybe_unsent,
                        )
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
        last = instance.events[-1] if instance.events else None
        if last is not None and i + 1 < len(self.instances):
            # A later instance exists, so this one is gone by then (crash, exit, disconnect).
            self.ended.setdefault(i, round(last.t + instance.offset, 6))

    def _on_request(
        self,
        i: int,
        t: float,
        event: TraceEvent,
        params: dict[str, Any],
        pending_new: dict[Any, tuple[float, str | None, tuple[str, ...], str, str | None]],
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
        pending_new: dict[Any, tuple[float, str | None, tuple[str, ...], str, str | None]],
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
                self.ended.setdefault(i, t)
        elif event.kind in ("crash", "exit", "disconnect"):
            self.ended.setdefault(i, t)
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


# -- the client side, indexed ----------------------------------------------------------------------


@dataclass
class ClientTurn:
    key: str
    turn: int
    started: float
    token: str | None
    text: str
    delivered: list[LogEntry] = field(default_factory=list)
    end: LogEntry | None = None
    cancels: list[float] = field(default_factory=list)
    closes: list[float] = field(default_factory=list)
    slow: bool = False
    teardown_end: LogEntry | None = None
    """An end only the harness's teardown brought (the caller would still be waiting): not an end."""

    @property
    def ended_at(self) -> float | None:
        return self.end.t if self.end is not None else None


@dataclass
class ClientKey:
    key: str
    opened_at: float
    open_seq: int
    cwd: str
    mcp: tuple[str, ...]
    model: str | None
    open_done: float | None = None
    open_failed: bool = False
    open_error: str | None = None
    close_requested: float | None = None
    closed: float | None = None
    turns: list[ClientTurn] = field(default_factory=list)
    usage_totals: list[LogEntry] = field(default_factory=list)


class Client:
    def __init__(self, log: Sequence[LogEntry]) -> None:
        self.keys: dict[str, ClientKey] = {}
        self.turns: dict[tuple[str, int], ClientTurn] = {}
        self.crashes: list[float] = []
        self.crash_seqs: list[int] = []
        self.crash_instances: list[int | None] = []  # which instance the harness killed, if it says
        self.prewarms: list[tuple[LogEntry, LogEntry | None]] = []
        self.cwd_changes: list[tuple[LogEntry, LogEntry | None]] = []
        self.slow_spans: dict[str, list[tuple[float, float]]] = defaultdict(list)
        self.leaks: list[LogEntry] = []
        self.drains: list[LogEntry] = []
        """The harness's end-of-run drain gave up: what was still running then (real time)."""
        self.unattributed: list[LogEntry] = []
        """What the bridge said with no session key (its output the harness could tie to no key)."""
        self.end_time = log[-1].t if log else 0.0
        slow_since: dict[str, float] = {}
        pending_prewarm: dict[Any, int] = {}
        pending_change: dict[Any, int] = {}
        for entry in log:
            key = entry.key
            if entry.kind == "open" and key is not None:
                detail = entry.detail or {}
                self.keys[key] = ClientKey(
                    key,
                    entry.t,
                    entry.seq,
                    str(detail.get("cwd")),
                    mcp_config(detail.get("mcp_servers") or []),
                    detail.get("model"),
                )
            elif key is not None and key in self.keys:
                self._on_key_entry(self.keys[key], entry, slow_since)
            elif entry.kind == "crash":
                self.crashes.append(entry.t)
                self.crash_seqs.append(entry.seq)
                instance = (entry.detail or {}).get("instance")
                self.crash_instances.append(instance if isinstance(instance, int) else None)
            elif entry.kind == "prewarm":
                pending_prewarm[(entry.detail or {}).get("id")] = len(self.prewarms)
                self.prewarms.append((entry, None))
            elif entry.kind == "prewarmed":
                index = pending_prewarm.pop((entry.detail or {}).get("id"), None)
                if index is not None:
                    self.prewarms[index] = (self.prewarms[index][0], entry)
            elif entry.kind == "change_cwd":
                pending_change[(entry.detail or {}).get("id")] = len(self.cwd_changes)
                self.cwd_changes.append((entry, None))
            elif entry.kind == "cwd_changed":
                index = pending_change.pop((entry.detail or {}).get("id"), None)
                if index is not None:
                    self.cwd_changes[index] = (self.cwd_changes[index][0], entry)
            elif entry.kind == "leaked_processes":
                self.leaks.append(entry)
            elif entry.kind == "drain_expired":
                self.drains.append(entry)
            elif entry.kind == "unattributed" and (entry.detail or {}).get("what") != "noise":
                self.unattributed.append(entry)
        for key, since in slow_since.items():
            self.slow_spans[key].append((since, float("inf")))

    def _on_key_entry(self, ck: ClientKey, entry: LogEntry, slow_since: dict[str, float]) -> None:
        kind = entry.kind
        if kind == "opened":
            ck.open_done = entry.t
        elif kind == "open_failed":
            ck.open_done, ck.open_failed, ck.open_error = entry.t, True, entry.error
        elif kind == "prompt" and entry.turn is not None:
            turn = ClientTurn(
                ck.key,
                entry.turn,
                entry.t,
                (entry.detail or {}).get("token"),
                entry.text or "",
                slow=ck.key in slow_since,
            )
            ck.turns.append(turn)
            self.turns[(ck.key, entry.turn)] = turn
        elif kind == "update" and entry.turn is not None:
            turn = self.turns.get((ck.key, entry.turn))
            if turn is not None:
                turn.delivered.append(entry)
        elif kind == "end" and entry.turn is not None:
            turn = self.turns.get((ck.key, entry.turn))
            if turn is not None and turn.end is None and (entry.detail or {}).get("teardown"):
                turn.teardown_end = entry
            elif turn is not None and turn.end is None:
                turn.end = entry
        elif kind in ("cancel", "close"):
            # From when the bridge had the action (the harness's own latency is not the bridge's).
            at = float((entry.detail or {}).get("received", entry.t))
            for turn in ck.turns:
                if turn.end is None:
                    (turn.cancels if kind == "cancel" else turn.closes).append(at)
            if kind == "close":
                ck.close_requested = entry.t
        elif kind == "closed":
            ck.closed = entry.t
        elif kind == "usage_total":
            ck.usage_totals.append(entry)
        elif kind == "slow_consumer":
            on = bool((entry.detail or {}).get("on", True))
            if on:
                slow_since.setdefault(ck.key, entry.t)
                for turn in ck.turns:
                    if turn.end is None:
                        turn.slow = True
            elif ck.key in slow_since:
                self.slow_spans[ck.key].append((slow_since.pop(ck.key), entry.t))

    def drain_note(self, key: str, turn: int | None = None) -> str:
        """Why a turn (or, ``turn=None``, an open) was still running when the run ended, and what the
        bridge said meanwhile with no session key (the likely reason it hung)."""
        note = ""
        for entry in self.drains:
            detail = entry.detail or {}
            running = {(item["key"], item["turn"]) for item in detail.get("running", [])}
            if (key, turn) in running or (turn is None and key in detail.get("opening", [])):
                note = (
                    f"; still running when the end-of-run drain gave up after {detail.get('limit', 0):g} s "
                    f"({detail.get('why', '?')})"
                )
        begun = self.turns[(key, turn)].started if turn is not None and (key, turn) in self.turns else None
        said = [e.text or "" for e in self.unattributed if begun is not None and e.t >= begun]
        if said:
            more = f" and {len(said) - 3} more" if len(said) > 3 else ""
            note += (
                ". Meanwhile the bridge said, with no session key: " + "; ".join(map(repr, said[:3])) + more
            )
        return note

    def slow_during(self, key: str, start: float, end: float) -> list[str]:
        """Other keys whose callers were reading slowly at some point in [start, end]."""
        return [
            other
            for other, spans in self.slow_spans.items()
            if other != key and any(a <= end + EPS and b >= start - EPS for a, b in spans)
        ]


# -- the checks ------------------------------------------------------------------------------------


class _Checker:
    def __init__(self, truth: Truth, client: Client, caps: BridgeCapabilities, final: bool) -> None:
        self.truth = truth
        self.client = client
        self.caps = caps
        self.final = final
        self.out: list[Violation] = []
        self.hung: list[Violation] = []  # bridge calls that never returned, reported first
        self._waits: dict[str, list[tuple[float, float]]] | None = None
        self._held: float | None = None
        # agent session -> the bridge keys whose prompts landed in it
        self.served: dict[tuple[int, str], set[str]] = defaultdict(set)
        self.attempts: dict[tuple[str, int], list[AgentTurn]] = {}
        for (key, n), turn in client.turns.items():
            found = truth.by_token.get(turn.token, []) if turn.token else []
            self.attempts[(key, n)] = found
            for agent_turn in found:
                self.served[(agent_turn.instance, agent_turn.session)].add(key)
        self._correlate_unprompted()
        self._end_killed_instances()
        self.agent_side = failed_opens.AgentSide(truth, client.crashes)

    def _end_killed_instances(self) -> None:
        """An instance the harness killed is over from then, whatever its trace says: a SIGKILLed
        process writes nothing more, and no later instance need start to show it is gone."""
        starts = {
            i: round(inst.events[0].t + inst.offset, 6)
            for i, inst in enumerate(self.truth.instances)
            if inst.events
        }
        for t, instance in zip(self.client.crashes, self.client.crash_instances, strict=True):
            if instance is None:  # a log without the instance: the newest one started by then
                started = [i for i, start in starts.items() if start <= t + EPS]
                instance = max(started) if started else None
            if instance is not None and instance in starts:
                self.truth.ended.setdefault(instance, t)

    def _correlate_unprompted(self) -> None:
        """A key no prompt reached yet is matched to the one session/new the agent got for it while
        its open_session ran (same cwd, no other candidate); ambiguous cases stay unmatched."""
        keyed = {k for keys in self.served.values() for k in keys}
        for ck in self.client.keys.values():
            if ck.key in keyed or ck.open_done is None or ck.open_failed:
                continue
            candidates = [
                ref
                for ref, session in self.truth.sessions.items()
                if session.via == "session/new"
                and session.cwd == ck.cwd
                and ck.opened_at - EPS <= session.requested <= ck.open_done + EPS
                and ref not in self.served
            ]
            rivals = [
                other
                for other in self.client.keys.values()
                if other is not ck
                and other.cwd == ck.cwd
                and other.opened_at <= ck.open_done + EPS
                and (other.open_done or float("inf")) >= ck.opened_at - EPS
            ]
            if len(candidates) == 1 and not rivals and not self.client.prewarms:
                self.served[candidates[0]].add(ck.key)

    def add(self, prop: str, message: str, **where: Any) -> None:
        self.out.append(Violation(prop, message, **where))

    def run(self) -> list[Violation]:
        self._held: float | None = None
        for turn in self.client.turns.values():
            self.check_turn(turn)
        self.check_cancels_sent()
        check_resent_prompts(self)
        check_continuity(self)
        check_session_updates(self)
        self.check_sessions_closed()
        self.check_failed_opens()
        self.check_phantoms()
        self.check_prewarm()
        if self.caps.usage:
            self.check_usage_totals()
        self.check_processes()
        if self.final:
            self.check_liveness()
        return self.out

    # P1 / P2 / P3 / P4 / P5 per turn ------------------------------------------------------------

    def check_turn(self, turn: ClientTurn) -> None:
        attempts = self.attempts[(turn.key, turn.turn)]
        last = attempts[-1] if attempts else None
        own_refs = {a.ref for a in attempts}
        # How often each text was sent to this turn: a text may repeat (natural text), so a delivery
        # is the turn's own while the turn's count of that text lasts.
        sent = Counter(u.text for a in attempts for u in a.updates if u.text)
        seen: Counter[str] = Counter()
        own: list[LogEntry] = []
        for entry in turn.delivered:
            if not self._kept(entry):
                continue
            text = entry.text
            origins = self.truth.origins.get(text, []) if text else []
            if text:
                seen[text] += 1
            if text and sent[text] and seen[text] > sent[text]:
                bled = self._unclaimed_elsewhere(text, own_refs)
                if bled:
                    self._foreign(turn, entry, bled)  # one too many, and another caller lacks one
                else:
                    own.append(entry)  # one too many of its own text: the sequence check names it
            elif text and origins and not sent[text]:
                self._foreign(turn, entry, origins)
            elif text and not origins:
                self.add(
                    "P2",
                    f"delivered {entry.text!r}, which the agent never sent",
                    key=turn.key,
                    turn=turn.turn,
                    t=entry.t,
                )
            else:
                own.append(entry)
        self._check_timeliness(turn, own, attempts)
        if turn.end is None:
            return
        self._check_end(turn, last, attempts)
        check_after_end(self, turn, own, last)
        if last is not None:
            self._check_sequence(turn, own, last)
            self._check_cwd(turn, last)

    def _unclaimed_elsewhere(
        self, text: str, own_refs: set[tuple[int, str, int]]
    ) -> list[tuple[int, str, int]]:
        """Agent turns outside ``own_refs`` that sent ``text`` more often than their own callers got it:
        where an extra copy of a text a turn also sent itself can have come from (identical texts
        in two sessions: only the counts tell bleed from a duplicate)."""
        out = []
        for ref, times in Counter(self.truth.origins.get(text, [])).items():
            if ref in own_refs:
                continue
            got = sum(
                1
                for (k, n), attempts in self.attempts.items()
                if any(a.ref == ref for a in attempts)
                for e in self.client.turns[(k, n)].delivered
                if e.text == text and self._kept(e)
            )
            if got < times:
                out.append(ref)
        return out

    def _kept(self, entry: LogEntry) -> bool:
        if entry.update_kind not in self.caps.kinds or entry.update_kind in SESSION_KINDS:
            return False
        return self.caps.empty_text or entry.text != ""

    def _foreign(self, turn: ClientTurn, entry: LogEntry, origins: list[tuple[int, str, int]]) -> None:
        _instance, session, agent_turn = origins[0]
        # The same agent session id across instances is the same conversation (resumed or loaded).
        sids = {sid for _, sid, _ in origins}
        owners = {k for (_, sid), keys in self.served.items() if sid in sids for k in keys}
        where = {"key": turn.key, "turn": turn.turn, "t": entry.t, "session": session}
        if turn.key in owners:
            if entry.text in self.truth.replayed:
                self.add(
                    "P2",
                    f"delivered {entry.text!r} as new, but it is history the agent replayed in answer to "
                    "session/load (said before the reconnect): a duplicate",
                    **where,
                )
                return
            earlier = [
                e.text
                for t in self.client.keys[turn.key].turns
                if t.turn < turn.turn
                for e in t.delivered
                if e.text and self._kept(e)
            ]
            if entry.text and _composed_of(entry.text, earlier):
                self.add(
                    "P2",
                    f"delivered {entry.text!r} again: its text was delivered in an earlier turn already "
                    "(a duplicate)",
                    **where,
                )
                return
            source = f"comes from an earlier turn of the same conversation (agent turn {agent_turn})"
        elif owners:
            source = (
                f"belongs to key {', '.join(sorted(owners))} (agent session {session[:8]} turn {agent_turn})"
            )
        else:
            source = f"belongs to agent session {session[:8]} turn {agent_turn}, "
            source += "which no prompt of this key reached"
        self.add("P3", f"delivered {entry.text!r}, which {source}", **where)

    def _check_timeliness(self, turn: ClientTurn, own: list[LogEntry], attempts: list[AgentTurn]) -> None:
        """Deliveries must follow the agent's sends within ``delivery_slack``. A chunk held back (late,
        or never delivered although the turn ran on for longer) while another session's caller was
        reading slowly is one session stalling another (P3); it explains the turn's other symptoms
        (a timeout with no update seen, chunks missing), which are then not reported again."""
        self._held = None
        if turn.slow or not attempts:
            return
        slack = self.caps.delivery_slack
        last = attempts[-1]
        mine = [e for e in own if e.text and e.t >= last.received - EPS]
        matched = align([e.text for e in mine], [u.text for u in last.updates])
        delivered_at = {j: e.t for e, j in zip(mine, matched, strict=True) if j is not None}
        horizon = turn.end.t if turn.end is not None else (self.client.end_time if self.final else None)
        for j, update in enumerate(last.updates):
            if not update.text:
                continue
            got = delivered_at.get(j)
            if got is not None:
                late = got - update.t > slack + EPS
                until = got
            else:
                late = horizon is not None and update.t < horizon - slack - EPS
                until = horizon if horizon is not None else update.t
            if not late:
                continue
            # A bridge call that never returned before this update was due is the likelier cause
            # (reported first, as a cause): a slow reader is not blamed for what it may have blocked.
            slow = [] if self._hung_before(until) else self._backlogged(turn.key, update.t, until)
            when = (
                f"reached its caller {got - update.t:.3f} s after the agent sent it"
                if got is not None
                else "was never delivered, though the turn went on"
            )
            if slow:
                self._held = update.t
                self.add(
                    "P3",
                    f"{update.text!r} {when}, while the caller of key {', '.join(slow)} was reading slowly "
                    "(one slow session held up another)",
                    key=turn.key,
                    turn=turn.turn,
                    t=round(update.t + slack, 6),
                )
            elif got is not None:
                self.add(
                    "P2",
                    f"{update.text!r} {when} (allowed: {slack:g} s)",
                    key=turn.key,
                    turn=turn.turn,
                    t=round(update.t + slack, 6),
                )
            else:
                continue  # a missing chunk: the sequence check names it
            return  # one lateness report per turn is enough

    def _hung_before(self, t: float) -> bool:
        """Whether an open or close the client asked for by ``t`` never returned (final runs only)."""
        if not self.final:
            return False
        return any(
            (ck.open_done is None and ck.opened_at <= t + EPS)
            or (ck.close_requested is not None and ck.closed is None and ck.close_requested <= t + EPS)
            for ck in self.client.keys.values()
        )

    def _backlogged(self, key: str, start: float, end: float) -> list[str]:
        """Other keys whose slow callers had updates waiting (sent, not yet delivered) in [start, end]."""
        if self._waits is None:
            self._waits = defaultdict(list)
            for (k, n), attempts in self.attempts.items():
                sent = [u for a in attempts for u in a.updates if u.text]
                delivered = [e for e in self.client.turns[(k, n)].delivered if e.text]
                matched = align([e.text for e in delivered], [u.text for u in sent])
                for entry, j in zip(delivered, matched, strict=True):
                    if j is not None:
                        self._waits[k].append((sent[j].t, entry.t))
        slack = self.caps.delivery_slack
        # Held up *behind* it: the slow caller had an update waiting already when this one was
        # sent (queued ahead of it), still undelivered then; an update sent later held up nothing.
        return [
            other
            for other in self.client.slow_during(key, start, end)
            if any(s <= start + EPS and d >= start - EPS and d - s > slack for s, d in self._waits[other])
        ]

    def _explained_failure(self, turn: ClientTurn, last: AgentTurn | None) -> str | None:
        """Why a turn may legitimately fail, or None."""
        end = turn.end
        assert end is not None
        if end.timed_out:
            return "timeout"
        if turn.closes:
            return "closed by the client"
        if last is not None and last.error is not None:
            return "the agent answered with an error"
        window = (turn.started - EPS, end.t + EPS)
        if any(window[0] <= t <= window[1] for t in self.client.crashes):
            return "the agent crashed"
        for instance, t, detail in self.truth.faults:
            if not window[0] <= t <= window[1]:
                continue
            kind = str(detail.get("kind", detail.get("fault", "")))
            if kind in FATAL_FAULTS:
                return f"agent fault {kind}"
            if (
                last is not None
                and detail.get("session") in (None, last.session)
                and instance == last.instance
            ):
                return f"agent fault {kind}"
        # The agent had not answered this key's previous prompt (a cancel or timeout it ignored): a
        # bridge may refuse to send the next one into a session the agent is still busy with.
        earlier = [
            a
            for t in self.client.keys[turn.key].turns
            if t.turn < turn.turn
            for a in self.attempts[(t.key, t.turn)]
        ]
        if earlier and (earlier[-1].response_t is None or earlier[-1].response_t > end.t - EPS):
            return "the agent had not answered the previous prompt"
        # An agent session that hangs (never answers a prompt) wedges every later turn of it.
        sessions = {
            (a.instance, a.session)
            for t in self.client.keys[turn.key].turns
            for a in self.attempts[(t.key, t.turn)]
        }
        for instance, t, detail in self.truth.faults:
            if detail.get("kind") == "hang" and t <= end.t + EPS:
                target = detail.get("session")
                if target is None or (instance, target) in sessions:
                    return "the agent hung"
        if last is not None and last.instance in self.truth.ended:
            ended = self.truth.ended[last.instance]
            if ended <= end.t + EPS:
                return "the agent connection ended"
        if not self.caps.reconnects and self._unreplaced_death(end.t) is not None:
            return "the agent died, and the bridge declares it does not reconnect"
        return None

    def _unreplaced_death(self, until: float) -> float | None:
        """When the agent last died of its own (crash, fatal fault, killed) by ``until``, if no new
        instance started after that by ``until``; None when it never died or was replaced."""
        deaths = [d for d in self.agent_side.deaths() if d <= until + EPS]
        if not deaths:
            return None
        death = deaths[-1]
        for i, start in self.agent_side.started.items():
            if death - EPS <= start <= until + EPS and self.truth.ended.get(i, float("inf")) > death + EPS:
                return None
        return death

    def _check_failed_promptly(self, turn: ClientTurn, last: AgentTurn | None) -> None:
        """A bridge that does not reconnect must fail a turn its dead agent cannot run at once, with
        an error: never leave its caller waiting on a timer."""
        end = turn.end
        if self.caps.reconnects or end is None or turn.cancels or turn.closes:
            return
        death = self._unreplaced_death(end.t)
        if death is None:
            return
        if last is not None and self.truth.ended.get(last.instance, float("inf")) > end.t + EPS:
            return  # it ran on an agent that was alive until the end
        late = end.t - max(death, turn.started)
        if late > self.caps.delivery_slack + EPS:
            self.add(
                "P4",
                f"failed only {late:.3f} s after the agent died at t={death:.6f}: a bridge that does not "
                f"reconnect must fail the turns its dead agent cannot run at once (allowed: "
                f"{self.caps.delivery_slack:g} s), not leave the caller waiting",
                key=turn.key,
                turn=turn.turn,
                t=end.t,
            )

    def _check_end(self, turn: ClientTurn, last: AgentTurn | None, attempts: list[AgentTurn]) -> None:
        end = turn.end
        assert end is not None
        where = {"key": turn.key, "turn": turn.turn, "t": end.t}
        if end.error is not None or end.timed_out:
            self._check_timeout(turn, last)
            self._check_failed_promptly(turn, last)
            if self._explained_failure(turn, last) is None:
                crashed_before = [t for t in self.client.crashes if t < turn.started]
                if crashed_before and not attempts:
                    self.add(
                        "P6",
                        f"turn failed ({end.error}) and the prompt never reached an agent: no reconnect "
                        f"after the agent died at t={crashed_before[-1]:.6f}",
                        **where,
                    )
                else:
                    agent = "never received the prompt"
                    if last is not None:
                        agent = (
                            f"answered {last.stop_reason!r}" if last.response_t else "was still running it"
                        )
                    self.add("P2", f"turn failed with {end.error!r} although the agent {agent}", **where)
            return
        if judges_text_only(self, turn):
            check_text_only_end(self, turn, last)
            return
        stop = end.stop_reason
        if stop == "cancelled" and not turn.cancels and not turn.closes:
            agent = (
                f"the agent answered {last.stop_reason!r}"
                if last is not None
                else "its prompt never reached the agent"
            )
            self.add(
                "P5", f"turn ended 'cancelled' although its caller never cancelled it ({agent})", **where
            )
            return
        if last is None and stop == "cancelled":
            return  # cancelled before the bridge sent the prompt: nothing reached the agent
        if last is None:
            self.add(
                "P2",
                f"turn ended {stop!r} but no agent ever received its prompt ({turn.token})",
                **where,
            )
            return
        cancelled_in_time = [t for t in turn.cancels if last.response_t is None or t < last.response_t - EPS]
        if turn.cancels and not cancelled_in_time and last.response_seq is not None:
            # Asked in the very instant the agent answered: the agent's own order decides.
            session = self.truth.session_of(last)
            prompt_seq = self.truth.prompt_seqs.get(last.ref, -1)
            if session is not None and any(
                prompt_seq < seq < last.response_seq for seq in session.cancel_seqs
            ):
                cancelled_in_time = turn.cancels[:1]
        if stop == "cancelled":
            pass
        elif cancelled_in_time:
            self.add(
                "P5",
                f"cancelled at t={cancelled_in_time[0]:.6f} while running, but the turn ended {stop!r}",
                session=last.session,
                **where,
            )
        elif last.response_t is None:
            self.add(
                "P2",
                f"turn ended {stop!r} before the agent answered its prompt ({last.label()})",
                session=last.session,
                **where,
            )
        elif last.error is not None:
            self.add(
                "P2",
                f"turn ended {stop!r} but the agent answered with error {last.error.get('message')!r}",
                session=last.session,
                **where,
            )
        elif stop != last.stop_reason:
            self.add(
                "P2",
                f"turn ended {stop!r} but the agent answered {last.stop_reason!r}",
                session=last.session,
                **where,
            )
        # P9: per-turn usage, when the bridge reports it.
        if end.usage is not None and last.usage is not None and stop != "cancelled":
            reported = {k: v for k, v in end.usage.items() if k in last.usage}
            if reported != last.usage:
                self.add(
                    "P9",
                    f"turn usage {end.usage} differs from what the agent reported, {last.usage}",
                    session=last.session,
                    **where,
                )

    def _check_timeout(self, turn: ClientTurn, last: AgentTurn | None) -> None:
        end = turn.end
        assert end is not None
        if not end.timed_out:
            return
        where = {"key": turn.key, "turn": turn.turn, "t": end.t}
        if (
            last is not None
            and last.response_t is not None
            and last.response_t < end.t - EPS
            and not turn.slow
        ):
            self.add(
                "P4",
                f"timed out at t={end.t:.6f} although the agent completed the turn at "
                f"t={last.response_t:.6f} ({last.stop_reason!r})",
                session=last.session,
                **where,
            )
            return
        tt, it = self.caps.turn_timeout, self.caps.idle_timeout
        if (tt is None and it is None) or turn.cancels:
            # After its caller cancelled it, a turn waiting for the agent to stop may end on any
            # timer of the bridge's (a cancel grace); updates it drops then are not activity.
            return
        age = end.t - turn.started
        last_activity = turn.started
        if last is not None:
            sent = [u.t for u in last.updates if u.t < end.t - EPS]
            last_activity = max([turn.started, *sent])
        idle = end.t - last_activity
        allowed = (tt is not None and age >= tt - 1e-3) or (it is not None and idle >= it - 1e-3)
        if not allowed and self._held is None:
            limits = ", ".join(
                f"{name} {value:g} s" for name, value in (("turn timeout", tt), ("idle timeout", it)) if value
            )
            self.add(
                "P4",
                f"timed out {age:.3f} s after it started and {idle:.3f} s after its last update, before "
                f"its own deadline ({limits}): a timer armed by another turn fired",
                **where,
            )

    def _check_sequence(self, turn: ClientTurn, own: list[LogEntry], last: AgentTurn) -> None:
        end = turn.end
        assert end is not None
        by_attempt = {u.text for u in last.updates}
        # Sent after this attempt's prompt arrived: an earlier attempt's delivery is not this one's
        # even where their texts are alike.
        got = [e.text for e in own if e.text in by_attempt and e.t >= last.received - EPS]
        if last.response_seq is not None:
            in_turn = [u for u in last.updates if u.seq < last.response_seq]
            tail_updates = [u for u in last.updates if u.seq > last.response_seq]
        else:
            in_turn, tail_updates = list(last.updates), []
        tail = [u.text for u in tail_updates]
        expected = [u.text for u in in_turn]
        where = {"key": turn.key, "turn": turn.turn, "session": last.session}
        stopped = judges_text_only(self, turn) and bool(turn.cancels or turn.closes)
        if end.error is not None or end.stop_reason == "cancelled" or end.timed_out or stopped:
            # After a cancel, an error or a timeout the bridge may stop early, but everything the
            # agent sent before that moment must have been delivered.
            cut = min([end.t, *turn.cancels, *turn.closes])
            must = sum(1 for u in in_turn if u.t < cut - EPS and not u.maybe_unsent)
            if self._held is not None:
                return  # explained (and reported) as a stall caused by another session
            self._compare(got, in_turn + tail_updates, must, where, last, why="before the turn was stopped")
        else:
            # Updates the agent sent after its response (a misbehaving agent) may be delivered
            # at the end of the turn or dropped, never elsewhere.
            n = len(expected)
            if got[:n] == expected and got[n:] == tail[: len(got) - n]:
                return
            self._compare(got, in_turn, n, where, last, why="")

    def _compare(
        self,
        got: list[str | None],
        sent: list[AgentUpdate],
        must: int,
        where: dict[str, Any],
        last: AgentTurn,
        *,
        why: str,
    ) -> None:
        """``got`` must be a prefix of what was ``sent``, at least ``must`` long; name the first way it
        is not. Compared as sequences: a text may occur several times (natural text), so a chunk is
        missing or duplicated by position and count, never by its text alone."""
        expected = [u.text for u in sent]
        counts = Counter(got)
        times = Counter(u.text for u in last.updates)
        dup = next((text for text in got if text and counts[text] > times[text]), None)
        if dup is not None:
            also = f" (the agent sent it {times[dup]} times)" if times[dup] > 1 else ""
            self.add("P2", f"delivered {dup!r} {counts[dup]} times{also}", **where)
            return
        prefix = got == expected[: len(got)]
        if prefix and len(got) >= must:
            return
        matched = subsequence(got, expected)
        if (
            expected
            and (not got or (matched is not None and matched[0] != 0))
            and got == expected[1 : len(got) + 1]
        ):
            first = sent[0]
            self.add(
                "P1",
                f"the first chunk {first.text!r} (sent at t={first.t:.6f}, "
                f"{first.t - last.received:.6f} s after the prompt reached the agent) "
                "was never delivered",
                t=first.t,
                **where,
            )
            return
        if prefix:
            missing = sent[len(got) : must]
            self.add(
                "P2",
                f"{len(missing)} chunk(s) sent {why or 'in the turn'} never delivered, first "
                f"{missing[0].text!r} (sent at t={missing[0].t:.6f})".replace("  ", " "),
                t=missing[0].t,
                **where,
            )
            return
        if matched is not None:
            hit = set(matched)
            missing = [sent[j] for j in range(matched[-1]) if j not in hit]
            self.add(
                "P2",
                f"{len(missing)} chunk(s) missing from the middle of the turn, first {missing[0].text!r} "
                f"(sent at t={missing[0].t:.6f})",
                t=missing[0].t,
                **where,
            )
            return
        self.add("P2", f"chunks delivered out of order: got {got!r}, sent {expected!r}", **where)

    def _check_cwd(self, turn: ClientTurn, last: AgentTurn) -> None:
        ck = self.client.keys.get(turn.key)
        state = self.truth.cwd_at(last)
        if ck is None or state is None:
            return
        cwd, mcp = state
        want = ck.cwd
        if cwd is not None and cwd != want:
            self.add(
                "P7",
                f"prompt ran in an agent session created for cwd {cwd!r}, but the session was opened "
                f"for {want!r} (a warm or reused session that did not match)",
                key=turn.key,
                turn=turn.turn,
                t=turn.started,
                session=last.session,
            )
        elif mcp != self._mcp_wanted(ck.mcp):
            wanted = "the bridge's own set is" if self.caps.mcp_servers is not None else "the key asked for"
            self.add(
                "P7",
                f"prompt ran in an agent session with MCP servers {list(mcp)}, but {wanted} "
                f"{list(self._mcp_wanted(ck.mcp))}",
                key=turn.key,
                turn=turn.turn,
                t=turn.started,
                session=last.session,
            )

    def _mcp_wanted(self, asked: tuple[str, ...]) -> tuple[str, ...]:
        """The MCP set a key's sessions must have: the bridge's own when it declares one."""
        own = self.caps.mcp_servers
        return mcp_config(own) if own is not None else asked

    # P5: session/cancel only where the client asked --------------------------------------------

    def check_cancels_sent(self) -> None:
        for (instance, sid), session in self.truth.sessions.items():
            keys = self.served.get((instance, sid), set())
            for t in session.cancels:
                if keys and not self.final and any(self._running_unended(k, t) for k in keys):
                    continue  # judged once that turn's end is known (the bridge may yet fail it)
                if keys and not any(self._cancel_justified(k, t) for k in keys):
                    self.add(
                        "P5",
                        f"session/cancel sent for agent session {sid[:8]} (key {', '.join(sorted(keys))}), "
                        "which its caller never cancelled",
                        key=sorted(keys)[0],
                        t=t,
                        session=sid,
                    )
        for turn in self.client.turns.values():
            attempts = self.attempts[(turn.key, turn.turn)]
            if not turn.cancels or not attempts:
                continue
            last = attempts[-1]
            asked = turn.cancels[0]
            if last.response_t is not None and last.response_t <= asked + EPS:
                continue  # the agent had already finished: nothing to cancel
            ended = self.truth.ended.get(last.instance)
            if ended is not None and ended <= asked + self.caps.cancel_slack:
                continue
            session = self.truth.sessions.get((last.instance, last.session))
            # A cancel the bridge sent on its own for this turn (a timeout) before its caller asked
            # counts: the agent was told to stop this turn. One the agent received before the prompt
            # (by its own order, even in the same instant) found nothing running: it cancelled nothing.
            got, early = cancels_around(session, self.truth.prompt_seqs.get(last.ref, -1), asked)
            deadline = asked + self.caps.cancel_slack
            if got and got[0] <= deadline + EPS:
                continue
            if got or self.final or self.client.end_time > deadline:
                late = f"only at t={got[0]:.6f}" if got else "never"
                if early and not got:
                    late = (
                        f"at t={early[0]:.6f} before the prompt it targets (which arrived at "
                        f"t={last.received:.6f}), so it cancelled nothing and the agent ran the whole turn"
                    )
                self.add(
                    "P5",
                    f"cancelled at t={asked:.6f}, but the agent received session/cancel {late}",
                    key=turn.key,
                    turn=turn.turn,
                    t=asked,
                    session=last.session,
                )

    def _running_unended(self, key: str, t: float) -> bool:
        return any(turn.started <= t + EPS and turn.end is None for turn in self.client.keys[key].turns)

    def _cancel_justified(self, key: str, t: float) -> bool:
        """A ``session/cancel`` at ``t`` is the bridge's business if its caller cancelled or closed the
        key since its latest prompt, or the turn running then ended in an error or a timeout (the
        bridge gave up on it and told the agent to stop)."""
        ck = self.client.keys[key]
        started = [turn.started for turn in ck.turns if turn.started <= t + EPS]
        since = started[-1] if started else ck.opened_at
        if ck.close_requested is not None and ck.close_requested <= t + EPS:
            return True
        for turn in ck.turns:
            if any(since - EPS <= c <= t + EPS for c in turn.cancels):
                return True
            failed = turn.end is not None and (turn.end.error is not None or turn.end.timed_out)
            if failed and turn.started <= t + EPS and turn.end.t >= since - EPS:  # type: ignore[union-attr]
                return True
        return False

    # P6: sessions and processes ------------------------------------------------------------------

    def check_sessions_closed(self) -> None:
        for ck in self.client.keys.values():
            if ck.closed is None or not self.caps.session_close:
                continue  # a bridge with no per-session close forgets the key (its stop is judged)
            for (instance, sid), keys in self.served.items():
                if ck.key not in keys or not self.truth.close_capable.get(instance, False):
                    continue
                ended = self.truth.ended.get(instance)
                if ended is not None and ended <= ck.closed + EPS:
                    continue  # the whole agent is gone; nothing of it can leak
                session = self.truth.sessions.get((instance, sid))
                if session is None or session.closed is not None:
                    continue
                self.add(
                    "P6",
                    f"key closed at t={ck.closed:.6f}, but its agent session {sid[:8]} was never closed "
                    "(session/close not sent): its process and MCP servers live on",
                    key=ck.key,
                    t=ck.closed,
                    session=sid,
                )
        for (instance, sid), spawned in self.truth.spawned.items():
            session = self.truth.sessions.get((instance, sid))
            if session is None or session.closed is None or not self.final:
                continue
            live = len(spawned) - self.truth.reaped.get((instance, sid), 0)
            if live > 0 and instance not in self.truth.ended:
                self.add(
                    "P6",
                    f"{live} MCP process(es) of agent session {sid[:8]} still running after session/close",
                    t=session.closed,
                    session=sid,
                )

    def check_processes(self) -> None:
        for entry in self.client.leaks:
            procs = (entry.detail or {}).get("processes", [])
            listing = "; ".join(f"pid {p.get('pid')}: {p.get('cmdline')}" for p in procs)
            self.add(
                "P6", f"{len(procs)} process(es) left running after the bridge stopped: {listing}", t=entry.t
            )

    def check_failed_opens(self) -> None:
        found = failed_opens.judge(
            self.agent_side, self.client, set(self.served), self.caps, final=self.final
        )
        for f in found:
            self.add(f.property, f.message, key=f.key, t=f.t, session=f.session)

    # P8 ---------------------------------------------------------------------------------------------

    def check_phantoms(self) -> None:
        for instance, method, sid, t in self.truth.resumes:
            if (instance, sid) in self.truth.sessions and self.truth.sessions[
                (instance, sid)
            ].via == "session/new":
                continue  # created by this very instance: resuming it in-process is fine
            prompted_before = any(
                turn.session == sid and turn.instance < instance for turn in self.truth.turns.values()
            )
            if not prompted_before and not self._lost_prompt_for(instance, sid):
                keys = {k for (i, s), ks in self.served.items() if s == sid for k in ks}
                self.add(
                    "P8",
                    f"{method} of agent session {sid[:8]}, which never had a turn (a phantom: nothing of it "
                    "survives an agent restart)",
                    key=sorted(keys)[0] if keys else None,
                    t=t,
                    session=sid,
                )

    def _lost_prompt_for(self, instance: int, sid: str) -> bool:
        """A prompt that may have been written to ``sid`` but never reached the agent (the agent died
        first): the bridge cannot tell that session from one that had a turn, so resuming it is fair."""
        created = next(
            (s for (i, s_id), s in self.truth.sessions.items() if s_id == sid and i < instance), None
        )
        if created is None:
            return False
        for turn in self.client.turns.values():
            ck = self.client.keys[turn.key]
            if self.attempts[(turn.key, turn.turn)] or ck.cwd != created.cwd:
                continue
            if turn.started >= created.requested - EPS:
                return True
        return False

    # P7 ---------------------------------------------------------------------------------------------

    def check_prewarm(self) -> None:
        self._check_stale_warm()
        if not self.client.prewarms:
            return
        cold = self.truth.session_new_durations
        cold_latency = max(cold) if cold else None
        # Whether a warm session for a configuration is ready: set when a pre-warm returns, used up
        # by the next open of that configuration, lost on a cwd change of its cwd or a crash.
        ready: dict[tuple[str, tuple[str, ...], Any], bool] = defaultdict(bool)
        events: list[tuple[int, int, Any]] = []
        for start, done in self.client.prewarms:
            if done is not None and done.error is None:
                detail = start.detail or {}
                config = (
                    str(detail.get("cwd")),
                    self._mcp_wanted(mcp_config(detail.get("mcp_servers") or [])),
                    detail.get("model"),
                )
                events.append((done.seq, 1, config))
        for start, _done in self.client.cwd_changes:
            events.append((start.seq, 0, ("cwd", (start.detail or {}).get("old"))))
        for seq in self.client.crash_seqs:
            events.append((seq, 0, ("crash", None)))
        for ck in self.client.keys.values():
            events.append((ck.open_seq, 2, ck))
        for _seq, what, item in sorted(events, key=lambda e: e[0]):
            if what == 0:
                for config in list(ready):
                    if item[0] == "crash" or config[0] == item[1]:
                        ready[config] = False
                continue
            if what == 1:
                ready[item] = True
                continue
            ck = item
            config = (ck.cwd, self._mcp_wanted(ck.mcp), ck.model)
            if not ready[config]:
                continue
            ready[config] = False
            if not self._warm_exists(config, ck.opened_at):
                continue  # the agent holds no such session any more (it died with a crash)
            if ck.open_done is None or ck.open_failed or cold_latency is None:
                continue
            took = ck.open_done - ck.opened_at
            if took > 0.01 * cold_latency + EPS:
                self.add(
                    "P7",
                    f"a warm session for cwd {ck.cwd!r} was ready, but opening took {took:.3f} s "
                    f"(cold session/new: {cold_latency:.3f} s; warm must be within 1%)",
                    key=ck.key,
                    t=ck.open_done,
                )

    def _warm_exists(self, config: tuple[str, tuple[str, ...], Any], t: float) -> bool:
        """The ground truth: a live agent holds an unused session made for this configuration at ``t``."""
        cwd, mcp, _model = config
        for (instance, _sid), session in self.truth.sessions.items():
            ended = self.truth.ended.get(instance)
            if ended is not None and ended <= t + EPS:
                continue
            if session.via != "session/new" or session.cwd != cwd or session.mcp != mcp:
                continue
            if session.created > t + EPS or (session.closed is not None and session.closed <= t + EPS):
                continue
            if any(p <= t + EPS for p in session.prompts):
                continue
            if any(
                ck.cwd == cwd and ck.opened_at - EPS <= session.requested <= (ck.open_done or t) + EPS
                for ck in self.client.keys.values()
            ):
                continue  # made for an open_session call: that key's own session, not a warm one
            return True
        return False

    def _check_stale_warm(self) -> None:
        """A session made before its project's cwd changed must not serve a conversation opened after."""
        done_changes = [(start, done) for start, done in self.client.cwd_changes if done is not None]
        if not done_changes:
            return
        for (key, n), attempts in self.attempts.items():
            if n != 1 or not attempts:
                continue
            ck = self.client.keys[key]
            session = self.truth.session_of(attempts[0])
            if session is None or session.via != "session/new":
                continue
            for start, done in done_changes:
                assert done is not None
                old = (start.detail or {}).get("old")
                if session.cwd == old and session.requested < start.t - EPS and ck.open_seq > done.seq:
                    self.add(
                        "P7",
                        f"opened at t={ck.opened_at:.6f} on a session created for {old!r} at "
                        f"t={session.requested:.6f}, before that cwd changed at t={start.t:.6f} (a warm "
                        "session the cwd change should have invalidated)",
                        key=key,
                        t=ck.opened_at,
                        session=session.id,
                    )
                    break

    # P9 ---------------------------------------------------------------------------------------------

    def check_usage_totals(self) -> None:
        for ck in self.client.keys.values():
            for entry in ck.usage_totals:
                if entry.usage is None:
                    continue
                expected: dict[str, int] = defaultdict(int)
                for turn in ck.turns:
                    if turn.end is None or turn.end.seq > entry.seq:
                        continue  # the bridge was not done with this turn when it reported the total
                    for attempt in self.attempts[(ck.key, turn.turn)]:
                        if (
                            attempt.usage
                            and attempt.response_t is not None
                            and attempt.response_t <= entry.t + EPS
                        ):
                            for name, value in attempt.usage.items():
                                expected[name] += value
                reported = {k: v for k, v in entry.usage.items() if k in expected}
                if expected and reported != dict(expected):
                    self.add(
                        "P9",
                        f"the bridge's token total for the key is {reported}, but the agent reported "
                        f"{dict(expected)} over {len(ck.turns)} turn(s)",
                        key=ck.key,
                        t=entry.t,
                    )
                    return

    # liveness, at the end of a run -------------------------------------------------------------

    def check_liveness(self) -> None:
        for turn in self.client.turns.values():
            if turn.end is not None:
                continue
            attempts = self.attempts[(turn.key, turn.turn)]
            last = attempts[-1] if attempts else None
            # Ended only by the harness's teardown: the caller would still be waiting.
            torn = turn.teardown_end
            by_teardown = f"; only the harness's teardown ended it ({torn.error})" if torn is not None else ""
            by_teardown = self.client.drain_note(turn.key, turn.turn) + by_teardown
            death = self._unreplaced_death(self.client.end_time)
            if last is not None and last.response_t is not None:
                self.add(
                    "P2",
                    f"never ended, although the agent answered {last.stop_reason or 'an error'} at "
                    f"t={last.response_t:.6f}{by_teardown}",
                    key=turn.key,
                    turn=turn.turn,
                    session=last.session,
                )
            elif death is not None and (last is None or last.instance in self.truth.ended):
                # Declared reconnects: none happened. Declared none: the turn had to fail at once.
                if self.caps.reconnects:
                    prop = "P6"
                    message = f"never ended: no reconnect after the agent died at t={death:.6f} (no new "
                    message += "agent was started), and the turn was left waiting"
                else:
                    prop = "P4"
                    message = f"never ended, although the agent died at t={death:.6f}: a bridge that does "
                    message += (
                        "not reconnect must fail the turn at once with an error, not leave the caller waiting"
                    )
                self.add(
                    prop, message + by_teardown, key=turn.key, turn=turn.turn, t=max(death, turn.started)
                )
            else:
                prop = "P5" if turn.cancels else "P4"
                why = "after it was cancelled (a wedged session)" if turn.cancels else "(no timeout ended it)"
                self.add(
                    prop, f"never ended {why}{by_teardown}", key=turn.key, turn=turn.turn, t=turn.started
                )
        for ck in self.client.keys.values():
            # A bridge call that never returned is a cause: reported before its consequences.
            if ck.open_done is None:
                self.hung.append(
                    Violation(
                        "P4",
                        "open_session never returned" + self.client.drain_note(ck.key),
                        key=ck.key,
                        t=ck.opened_at,
                        cause=True,
                    )
                )
            if ck.close_requested is not None and ck.closed is None:
                self.hung.append(
                    Violation("P6", "close never returned", key=ck.key, t=ck.close_requested, cause=True)
                )


def check(
    traces: Sequence[InstanceTrace],
    log: Sequence[LogEntry],
    capabilities: BridgeCapabilities | None = None,
    *,
    final: bool = True,
) -> list[Violation]:
    """Every violation of P1-P9 in a run, in a stable order (by property, then time).

    ``final=False`` checks a run in progress: only what is already decided (ended turns, bleed,
    cancels whose deadline has passed); ``final=True`` also requires every turn, open and close to
    have finished.
    """
    caps = capabilities or BridgeCapabilities()
    truth = Truth(traces, caps.kinds, caps.empty_text)
    client = Client(log)
    checker = _Checker(truth, client, caps, final)
    violations = checker.run()
    by_time = sorted(checker.hung, key=lambda v: v.t if v.t is not None else float("inf"))
    return by_time + sorted(violations, key=lambda v: (v.property, v.t if v.t is not None else float("inf")))


def cancels_around(
    session: AgentSession | None, prompt_seq: int, asked: float
) -> tuple[list[float], list[float]]:
    """The ``session/cancel`` times the agent received after a prompt (by trace order), and those it
    received before it but not before the caller asked (a cancel that overtook its own prompt)."""
    if session is None:
        return [], []
    after = [t for t, seq in zip(session.cancels, session.cancel_seqs, strict=True) if seq > prompt_seq]
    before = [
        t
        for t, seq in zip(session.cancels, session.cancel_seqs, strict=True)
        if seq < prompt_seq and t >= asked - EPS
    ]
    return after, before


def first_violations(violations: Iterable[Violation]) -> list[Violation]:
    """At most one violation per property, for a short report."""
    seen: set[str] = set()
    out = []
    for v in violations:
        if v.property not in seen:
            seen.add(v.property)
            out.append(v)
    return out


def _unsent(events: Sequence[TraceEvent]) -> tuple[set[int], int | None]:
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


def subsequence(got: Sequence[str | None], expected: Sequence[str | None]) -> list[int] | None:
    """Where each item of ``got`` occurs in ``expected`` as an ordered subsequence (the earliest such
    positions), or None when ``got`` is not one: repeated texts are matched by order, not by value."""
    out: list[int] = []
    j = 0
    for text in got:
        while j < len(expected) and expected[j] != text:
            j += 1
        if j == len(expected):
            return None
        out.append(j)
        j += 1
    return out


def align(got: Sequence[str | None], expected: Sequence[str | None]) -> list[int | None]:
    """Pair each delivered item with the sent item it is (index into ``expected``, or None): in order
    where the order holds, else the earliest unpaired sent item with that text. With unique texts
    this is matching by text; with repeated texts each copy is paired with its own send."""
    out: list[int | None] = []
    used: set[int] = set()
    j = 0
    for text in got:
        k = j
        while k < len(expected) and (expected[k] != text or k in used):
            k += 1
        if k == len(expected):
            k = next((i for i, e in enumerate(expected) if e == text and i not in used), -1)
        if k < 0:
            out.append(None)
            continue
        used.add(k)
        out.append(k)
        j = max(j, k + 1)
    return out


def _composed_of(text: str, pieces: Sequence[str]) -> bool:
    """``text`` is one or more of ``pieces`` joined (an agent replaying history joins a turn's chunks)."""
    options = sorted(set(pieces), key=len, reverse=True)
    rest = text
    while rest:
        piece = next((p for p in options if rest.startswith(p)), None)
        if piece is None:
            return False
        rest = rest[len(piece) :]
    return True


def correlate(
    traces: Sequence[InstanceTrace], log: Sequence[LogEntry], capabilities: BridgeCapabilities | None = None
) -> dict[str, set[tuple[int, str]]]:
    """Bridge key -> the (agent instance, agent session id) pairs its prompts reached (by token)."""
    caps = capabilities or BridgeCapabilities()
    checker = _Checker(Truth(traces, caps.kinds, caps.empty_text), Client(log), caps, False)
    out: dict[str, set[tuple[int, str]]] = defaultdict(set)
    for ref, keys in checker.served.items():
        for key in keys:
            out[key].add(ref)
    return dict(out)
