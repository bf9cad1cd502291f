"""Failed opens, judged: an ``open_session`` that told its caller "no" must have had a reason.

Two ways a failed open is wrong (issue: a bridge that could not open one session passed):

- the agent created a session for it (answered ``session/new``) and the bridge still failed the
  open, with the session not closed by then: the caller was told "no" for a session that exists
  (P2), and unless the bridge closes it, the session lives on with nobody to use it (P6);
- nothing at the agent explains the failure: no error answer, no crash or end of the agent, no
  fault, no ``session/new`` left unanswered (the bridge's timeout), no declared session limit (P2).

Correlating a failed open with the agent's sessions must be sound without trusting the bridge: the
opens of one cwd whose windows overlap form a cluster, and its sessions are the ``session/new``
requests of that cwd sent inside the cluster's window. A cluster is judged only when nothing else
could have asked for such a session then: no other action on a key of that cwd in the window, no
pre-warm or cwd change so far (a pool refills when it likes), and no crash so far while another key
of that cwd was open (a restart recreates its sessions). Anything else stays unjudged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_acp.adapter import BridgeCapabilities
    from pytest_acp.properties.oracle import Client, ClientKey, Truth

EPS = 1e-5
INF = float("inf")


@dataclass(frozen=True)
class NewRequest:
    """One ``session/new`` the agent received: when, for which cwd, and how it was answered."""

    instance: int
    t: float
    cwd: str | None
    answered: float | None
    session: str | None  # the id the agent created (None: an error or no answer)


@dataclass(frozen=True)
class Finding:
    property: str
    message: str
    key: str | None
    t: float
    session: str | None = None


class AgentSide:
    """What the failed-open judgement needs from the traces: session/new requests, error answers,
    when each instance started and ended, faults."""

    def __init__(self, truth: Truth, crashes: Sequence[float]) -> None:
        from pytest_acp.properties.oracle import FATAL_FAULTS  # the oracle imports this module

        self.truth = truth
        self.news: list[NewRequest] = []
        self.errors: list[tuple[int, float]] = []
        self.started: dict[int, float] = {}
        self.killed: list[float] = []  # the agent died of its own (crash, fault), not of EOF
        for i, instance in enumerate(truth.instances):
            pending: dict[Any, tuple[float, str | None]] = {}
            for event in instance.events:
                t = round(event.t + instance.offset, 6)
                self.started.setdefault(i, t)
                message = event.message or {}
                detail = event.detail or {}
                if (
                    event.kind == "crash"
                    or (event.kind == "exit" and detail.get("reason") not in ("eof", "stopped"))
                    or (event.kind == "fault" and str(detail.get("kind", "")) in FATAL_FAULTS)
                ):
                    self.killed.append(t)
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
                        self.news.append(NewRequest(i, sent, cwd, t, sid if isinstance(sid, str) else None))
            for sent, cwd in pending.values():
                self.news.append(NewRequest(i, sent, cwd, None, None))
        self.killed.extend(crashes)  # the harness's own record of killing an instance

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


def judge(
    agent: AgentSide, client: Client, served: set[tuple[int, str]], caps: BridgeCapabilities, *, final: bool
) -> list[Finding]:
    """Every failed open that told its caller "no" wrongly; see the module docstring."""
    failed = sorted(
        (ck for ck in client.keys.values() if ck.open_failed and ck.open_done is not None),
        key=lambda ck: ck.opened_at,
    )
    out: list[Finding] = []
    for cluster in _clusters(failed):
        lo = min(ck.opened_at for ck in cluster)
        hi = max(ck.open_done or INF for ck in cluster)
        if _limited(client, cluster, caps):
            continue
        if _ambiguous(client, agent, cluster, lo, hi):
            continue
        cwd = cluster[0].cwd
        made = [
            n
            for n in agent.news
            if n.cwd == cwd
            and lo - EPS <= n.t <= hi + EPS
            and n.session is not None
            and (n.instance, n.session) not in served
        ]
        if made:
            out.extend(_created(agent, cluster, made, lo, hi, final=final))
        else:
            out.extend(_uncaused(agent, cluster))
    return out


def _clusters(failed: Sequence[ClientKey]) -> list[list[ClientKey]]:
    """Failed opens of one cwd whose windows overlap, grouped."""
    by_cwd: dict[str, list[list[ClientKey]]] = {}
    for ck in failed:
        groups = by_cwd.setdefault(ck.cwd, [])
        if groups and ck.opened_at <= max(o.open_done or INF for o in groups[-1]) + EPS:
            groups[-1].append(ck)
        else:
            groups.append([ck])
    return [group for groups in by_cwd.values() for group in groups]


def _limited(client: Client, cluster: list[ClientKey], caps: BridgeCapabilities) -> bool:
    """The bridge declared a session limit and was at it (the failure is the declared cost)."""
    limit = caps.max_sessions
    if limit is None:
        return False
    at = max(ck.opened_at for ck in cluster)
    open_keys = [
        ck
        for ck in client.keys.values()
        if ck not in cluster
        and ck.opened_at <= at + EPS
        and not ck.open_failed
        and (ck.closed is None or ck.closed > at + EPS)
    ]
    return len(open_keys) >= limit


def _ambiguous(client: Client, agent: AgentSide, cluster: list[ClientKey], lo: float, hi: float) -> bool:
    """Something besides these opens could have asked the agent for a session of this cwd then."""
    if any(start.t <= hi + EPS for start, _ in client.prewarms) or any(
        start.t <= hi + EPS for start, _ in client.cwd_changes
    ):
        return True
    cwd = cluster[0].cwd
    others = [ck for ck in client.keys.values() if ck.cwd == cwd and ck not in cluster]
    for ck in others:
        if _overlaps(ck.opened_at, ck.open_done, lo, hi):
            return True
        if ck.close_requested is not None and _overlaps(ck.close_requested, ck.closed, lo, hi):
            return True
        for turn in ck.turns:
            if _overlaps(turn.started, turn.ended_at, lo, hi) or any(
                lo - EPS <= c <= hi + EPS for c in turn.cancels
            ):
                return True
    deaths = [t for t in agent.deaths() if t <= hi + EPS]
    for death in deaths:
        alive = [
            ck
            for ck in others
            if ck.opened_at <= death + EPS
            and not ck.open_failed
            and (ck.closed is None or ck.closed >= death - EPS)
        ]
        if alive:
            return True  # restoring that key after the crash may create a session of this cwd
    return False


def _overlaps(start: float, end: float | None, lo: float, hi: float) -> bool:
    return start <= hi + EPS and (end if end is not None else INF) >= lo - EPS


def _created(
    agent: AgentSide, cluster: list[ClientKey], made: list[NewRequest], lo: float, hi: float, *, final: bool
) -> list[Finding]:
    out: list[Finding] = []
    one = cluster[0] if len(cluster) == 1 else None
    key = one.key if one is not None else None
    names = ", ".join(ck.key for ck in cluster)
    cause = agent.cause(lo, hi) if agent.cause(lo, hi) != "the agent had not answered session/new" else None
    told_no = [
        n
        for n in made
        if n.answered is not None and n.answered <= hi + EPS and _closed_at(agent, n) > hi + EPS
    ]
    if told_no and cause is None:
        first = told_no[0]
        assert first.session is not None
        assert first.answered is not None
        what = (
            f"open_session failed ({cluster[0].open_error})"
            if one is not None
            else f"{len(cluster)} opens ({names}) failed"
        )
        out.append(
            Finding(
                "P2",
                f"{what}, although the agent created session {first.session[:8]} for it at "
                f"t={first.answered:.6f} and nothing at the agent went wrong: the caller was told no for a "
                "session that exists",
                key,
                hi,
                first.session,
            )
        )
    if not final:
        return out
    for n in made:
        assert n.session is not None
        if not agent.truth.close_capable.get(n.instance, False):
            continue
        closed = _closed_at(agent, n)
        if closed < INF or agent.ended(n.instance) <= hi + EPS:
            continue  # the bridge closed it, or the agent died with it
        out.append(
            Finding(
                "P6",
                f"open of {names} failed, but agent session {n.session[:8]} the agent created for it "
                f"(t={n.t:.6f}) was never closed: its process and MCP servers live on, with nobody "
                "to use them",
                key,
                hi,
                n.session,
            )
        )
    return out


def _closed_at(agent: AgentSide, n: NewRequest) -> float:
    session = agent.truth.sessions.get((n.instance, n.session or ""))
    return session.closed if session is not None and session.closed is not None else INF


def _uncaused(agent: AgentSide, cluster: list[ClientKey]) -> list[Finding]:
    out = []
    for ck in cluster:
        done = ck.open_done if ck.open_done is not None else INF
        if agent.cause(ck.opened_at, done) is not None:
            continue
        out.append(
            Finding(
                "P2",
                f"open_session failed ({ck.open_error}) with no cause at the agent: no session/new error, "
                "no crash, no fault, no unanswered request, no declared session limit",
                ck.key,
                done,
            )
        )
    return out
