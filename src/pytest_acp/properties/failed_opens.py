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
from typing import TYPE_CHECKING

from pytest_acp.properties.agent_side import INF, AgentSide, NewRequest
from pytest_acp.properties.truth import EPS

if TYPE_CHECKING:
    from pytest_acp.adapter import BridgeCapabilities
    from pytest_acp.properties.client_log import Client, ClientKey
    from pytest_acp.properties.context import CheckContext


@dataclass(frozen=True)
class Finding:
    property: str
    message: str
    key: str | None
    t: float
    session: str | None = None


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


def check_failed_opens(ctx: CheckContext) -> None:
    """Every wrongly failed open of the run (``judge``), as violations."""
    found = judge(ctx.agent_side, ctx.client, set(ctx.served), ctx.caps, final=ctx.final)
    for f in found:
        ctx.add(f.property, f.message, key=f.key, t=f.t, session=f.session)
