"""The agent's side of opening sessions, from the traces: every ``session/new`` it received and how it
answered, its error answers, when each instance started and when it died of its own.

Read from the ground truth (``truth``) and the harness's record of the instances it killed; what
the failed-open judgement (``failed_opens``) and the turn checks ask of the agent's life: did it
die, was it replaced, was anything at the agent a cause for an open to fail. Also the sessions it
restored (forked, or refused to load, resume or fork), for conversation continuity (``conversation``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pytest_acp.properties.truth import EPS, FATAL_FAULTS, InstanceTrace, Truth

INF = float("inf")
RESTORES = ("session/fork", "session/load", "session/resume")


@dataclass(frozen=True)
class NewRequest:
    """One ``session/new`` the agent received: when, for which cwd, and how it was answered."""

    instance: int
    t: float
    cwd: str | None
    answered: float | None
    session: str | None  # the id the agent created (None: an error or no answer)


class AgentSide:
    """What the failed-open judgement needs from the traces: session/new requests, error answers,
    when each instance started and ended, faults; and what continuity needs: restores."""

    def __init__(self, truth: Truth, crashes: Sequence[float]) -> None:
        self.truth = truth
        self.news: list[NewRequest] = []
        self.errors: list[tuple[int, float]] = []
        self.started: dict[int, float] = {}
        self.killed: list[float] = []  # the agent died of its own (crash, fault), not of EOF
        # Kept between ``index`` calls (each reads only new events); ``settle`` makes the lists above.
        self._answered: dict[int, list[NewRequest]] = {}
        self._pending: dict[int, dict[Any, tuple[float, str | None]]] = {}
        self._killed: list[float] = []
        # Restores: (instance, forked session) -> the session it was forked from; the sessions whose
        # ``session/load``, ``session/resume`` or ``session/fork`` the agent answered with an error.
        self.forks: dict[tuple[int, str], str] = {}
        self.refused: set[str] = set()
        self._restoring: dict[int, dict[Any, tuple[str, str]]] = {}  # per instance: id -> (method, session)
        for i, instance in enumerate(truth.instances):
            self.index(i, instance, 0, len(instance.events))
        self.settle(crashes)

    def index(self, i: int, instance: InstanceTrace, start: int, end: int) -> None:
        """Read instance ``i``'s events ``start:end`` (instances in order, as from scratch)."""
        answered = self._answered.setdefault(i, [])
        pending = self._pending.setdefault(i, {})
        restoring = self._restoring.setdefault(i, {})
        for event in instance.events[start:end]:
            t = round(event.t + instance.offset, 6)
            self.started.setdefault(i, t)
            message = event.message or {}
            detail = event.detail or {}
            if (
                event.kind == "crash"
                or (event.kind == "exit" and detail.get("reason") not in ("eof", "stopped"))
                or (event.kind == "fault" and str(detail.get("kind", "")) in FATAL_FAULTS)
            ):
                self._killed.append(t)
            if event.kind == "recv" and event.method == "session/new" and "method" in message:
                params = message.get("params") if isinstance(message.get("params"), dict) else {}
                cwd = params.get("cwd") if isinstance(params.get("cwd"), str) else None
                pending[event.id] = (t, cwd)
            elif event.kind == "send" and "method" not in message and event.id is not None:
                if "error" in message:
                    self.errors.append((i, t))
                if event.id in pending:
                    sent, cwd = pending.pop(event.id)
                    result = message.get("result")
                    sid = result.get("sessionId") if isinstance(result, dict) else None
                    answered.append(NewRequest(i, sent, cwd, t, sid if isinstance(sid, str) else None))
            if event.kind == "recv" and event.method in RESTORES:
                params = message.get("params")
                restored = params.get("sessionId") if isinstance(params, dict) else None
                if isinstance(restored, str) and event.id is not None:
                    restoring[event.id] = (event.method, restored)
            elif event.kind == "send" and event.id in restoring and "method" not in message:
                method, restored = restoring.pop(event.id)
                result = message.get("result")
                if "error" in message:
                    self.refused.add(restored)
                elif method == "session/fork" and isinstance(result, dict):
                    self.forks[(i, str(result.get("sessionId")))] = restored

    def settle(self, crashes: Sequence[float]) -> None:
        """The requests so far (each instance's answered ones, then its unanswered ones) and the
        deaths, with the harness's own record of killing an instance."""
        self.news = []
        for i, answered in self._answered.items():
            self.news += answered
            self.news += [NewRequest(i, sent, cwd, None, None) for sent, cwd in self._pending[i].values()]
        self.killed = [*self._killed, *crashes]

    def ended(self, instance: int) -> float:
        return self.truth.ended.get(instance, INF)

    def deaths(self) -> list[float]:
        """When an agent instance died of its own (not because its bridge closed its stdin)."""
        return sorted(self.killed)

    def unserved(self, lo: float, hi: float) -> bool:
        """Some moment in [lo, hi] with no live agent instance (dead and not restarted yet)."""
        spans = sorted((start, self.ended(i)) for i, start in self.started.items())
        covered = lo
        for start, end in spans:
            if start <= covered + EPS and end > covered + EPS:
                covered = end
        return covered <= lo + EPS or covered < hi - EPS

    def cause(self, lo: float, hi: float) -> str | None:
        """Something at the agent, in [lo, hi], that may make an open fail; None if nothing."""
        if any(lo - EPS <= t <= hi + EPS for _, t in self.errors):
            return "the agent answered with an error"
        if any(lo - EPS <= t <= hi + EPS for t in self.deaths()) or self.unserved(lo, hi):
            return "the agent was gone"
        if any(lo - EPS <= t <= hi + EPS for _, t, _ in self.truth.faults):
            return "an agent fault"
        if any(n.t <= hi + EPS and (n.answered is None or n.answered > hi + EPS) for n in self.news):
            return "the agent had not answered session/new"
        return None
