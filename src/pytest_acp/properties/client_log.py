"""The client's side, indexed: what the client asked the bridge and what the bridge delivered.

The other half of what the oracle compares (the first is ``truth``), read from the harness's
delivery log under the client's own session keys and turn numbers: each key's open and close,
each turn's prompt (with its correlation token), deliveries, end, cancels and closes, slow
readers, crashes the harness caused, pre-warms, cwd changes, leaked processes, an end-of-run
drain that gave up, and what the bridge said with no session key.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import compress
from operator import is_not
from typing import Any

from pytest_acp.adapter import LogEntry, mcp_config
from pytest_acp.properties.truth import EPS


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
    open_done_seq: int | None = None
    open_failed: bool = False
    open_error: str | None = None
    close_requested: float | None = None
    closed: float | None = None
    closed_seq: int | None = None
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
        self.faults: list[LogEntry] = []
        """Faults the harness injected into the agent."""
        self.drains: list[LogEntry] = []
        """The harness's end-of-run drain gave up: what was still running then (real time)."""
        self.unattributed: list[LogEntry] = []
        """What the bridge said with no session key (its output the harness could tie to no key)."""
        self.end_time = 0.0
        # Kept between ``extend`` calls, so a run's log is read once however often it is judged:
        self._seen: list[LogEntry] = []
        self._stamped: dict[int, list[tuple[list[float], int]]] = {}  # cancel/close seq -> its times
        self._spans: dict[str, list[tuple[float, float]]] = defaultdict(list)  # closed slow spans
        self._slow_since: dict[str, float] = {}
        self._pending_prewarm: dict[Any, int] = {}
        self._pending_change: dict[Any, int] = {}
        if not self.extend(log):
            raise AssertionError("a log read from scratch always extends an empty model")

    def extend(self, log: Sequence[LogEntry]) -> bool:
        """Read the entries after those read before; False when the log is not the one read before
        plus new entries (the caller reads it from scratch). The harness replaces an entry in place
        only to stamp when a cancel or close reached the bridge, or how long an advance took: the
        first moves the times that entry gave its turns, the second is nothing this model reads."""
        seen = self._seen
        if len(log) < len(seen):
            return False
        for index in compress(range(len(seen)), map(is_not, log, seen)):
            was, now = seen[index], log[index]
            if (was.kind, was.key, was.turn, was.t) != (now.kind, now.key, now.turn, now.t):
                return False
            if was.kind in ("cancel", "close"):
                at = float((now.detail or {}).get("received", now.t))
                for times, position in self._stamped.get(now.seq, []):
                    times[position] = at
            elif was.kind != "advance":
                return False
            seen[index] = now
        for entry in log[len(seen) :]:
            self._read(entry)
        seen.extend(log[len(seen) :])
        self.end_time = log[-1].t if log else 0.0
        self.slow_spans = defaultdict(list, {key: list(spans) for key, spans in self._spans.items()})
        for key, since in self._slow_since.items():
            self.slow_spans[key].append((since, float("inf")))
        return True

    def _read(self, entry: LogEntry) -> None:
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
            self._on_key_entry(self.keys[key], entry, self._slow_since)
        elif entry.kind == "crash":
            self.crashes.append(entry.t)
            self.crash_seqs.append(entry.seq)
            instance = (entry.detail or {}).get("instance")
            self.crash_instances.append(instance if isinstance(instance, int) else None)
        elif entry.kind == "prewarm":
            _begun(self.prewarms, self._pending_prewarm, entry)
        elif entry.kind == "prewarmed":
            _ended(self.prewarms, self._pending_prewarm, entry)
        elif entry.kind == "change_cwd":
            _begun(self.cwd_changes, self._pending_change, entry)
        elif entry.kind == "cwd_changed":
            _ended(self.cwd_changes, self._pending_change, entry)
        elif entry.kind == "fault":
            self.faults.append(entry)
        elif entry.kind == "leaked_processes":
            self.leaks.append(entry)
        elif entry.kind == "drain_expired":
            self.drains.append(entry)
        elif entry.kind == "unattributed" and (entry.detail or {}).get("what") != "noise":
            self.unattributed.append(entry)

    def _on_key_entry(self, ck: ClientKey, entry: LogEntry, slow_since: dict[str, float]) -> None:
        kind = entry.kind
        if kind in ("opened", "open_failed"):
            ck.open_done, ck.open_done_seq = entry.t, entry.seq
            if kind == "open_failed":
                ck.open_failed, ck.open_error = True, entry.error
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
            stamped = self._stamped.setdefault(entry.seq, [])
            for turn in ck.turns:
                if turn.end is None:
                    times = turn.cancels if kind == "cancel" else turn.closes
                    stamped.append((times, len(times)))
                    times.append(at)
            if kind == "close":
                ck.close_requested = entry.t
        elif kind == "closed":
            ck.closed, ck.closed_seq = entry.t, entry.seq
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
                self._spans[ck.key].append((slow_since.pop(ck.key), entry.t))

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


def _begun(calls: list[tuple[LogEntry, LogEntry | None]], pending: dict[Any, int], entry: LogEntry) -> None:
    """A call the client began (a pre-warm, a cwd change): kept, unanswered, under its id."""
    pending[(entry.detail or {}).get("id")] = len(calls)
    calls.append((entry, None))


def _ended(calls: list[tuple[LogEntry, LogEntry | None]], pending: dict[Any, int], entry: LogEntry) -> None:
    """The end of a call ``_begun`` kept, matched by its id (an end with no beginning is ignored)."""
    index = pending.pop((entry.detail or {}).get("id"), None)
    if index is not None:
        calls[index] = (calls[index][0], entry)
