"""P2 timeliness and P3 stalls: a chunk reaches its caller within ``delivery_slack`` of its send.

A chunk held back (late, or never delivered although the turn ran on for longer) while another
session's caller was reading slowly is one session stalling another (P3): a bridge that serves
every session from one queue or one reader. That stall explains the turn's other symptoms (a
timeout with no update seen, chunks missing), so the turn checks are told (``check_timeliness``
returns when the held chunk was sent) and do not report them again. A bridge call that never
returned before the chunk was due is the likelier cause, and is reported first instead.

A chunk never delivered while a later chunk of its turn was is no stall but a drop, which the
sequence checks name (P1, P2).
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING

from pytest_acp.adapter import LogEntry
from pytest_acp.properties.client_log import ClientTurn
from pytest_acp.properties.sequences import align
from pytest_acp.properties.truth import EPS, AgentTurn

if TYPE_CHECKING:
    from pytest_acp.properties.context import CheckContext


def check_timeliness(
    ctx: CheckContext, turn: ClientTurn, own: list[LogEntry], attempts: list[AgentTurn]
) -> float | None:
    """Deliveries must follow the agent's sends within ``delivery_slack``. A chunk held back (late,
    or never delivered although the turn ran on for longer) while another session's caller was
    reading slowly is one session stalling another (P3); it explains the turn's other symptoms
    (a timeout with no update seen, chunks missing), which are then not reported again. Returns
    when the chunk held up by another session was sent (None: none was)."""
    held = None
    if turn.slow or not attempts:
        return None
    slack = ctx.caps.delivery_slack
    last = attempts[-1]
    mine = [e for e in own if e.text and e.t >= last.received - EPS]
    matched = align([e.text for e in mine], [u.text for u in last.updates])
    delivered_at = {j: e.t for e, j in zip(mine, matched, strict=True) if j is not None}
    last_delivered = max(delivered_at, default=-1)
    horizon = turn.end.t if turn.end is not None else (ctx.client.end_time if ctx.final else None)
    for j, update in enumerate(last.updates):
        if not update.text:
            continue
        got = delivered_at.get(j)
        if got is not None:
            late = got - update.t > slack + EPS
            until = got
        elif j < last_delivered:
            continue  # a later chunk got through: nothing held this one up, it was dropped (P1/P2)
        else:
            late = horizon is not None and update.t < horizon - slack - EPS
            until = horizon if horizon is not None else update.t
        if not late:
            continue
        # A bridge call that never returned before this update was due is the likelier cause
        # (reported first, as a cause): a slow reader is not blamed for what it may have blocked.
        slow = [] if _hung_before(ctx, until) else _backlogged(ctx, turn.key, update.t, until)
        when = (
            f"reached its caller {got - update.t:.3f} s after the agent sent it"
            if got is not None
            else "was never delivered, though the turn went on"
        )
        if slow:
            held = update.t
            ctx.add(
                "P3",
                f"{update.text!r} {when}, while the caller of key {', '.join(slow)} was reading slowly "
                "(one slow session held up another)",
                key=turn.key,
                turn=turn.turn,
                t=round(update.t + slack, 6),
            )
        elif got is not None:
            ctx.add(
                "P2",
                f"{update.text!r} {when} (allowed: {slack:g} s)",
                key=turn.key,
                turn=turn.turn,
                t=round(update.t + slack, 6),
            )
        else:
            continue  # a missing chunk: the sequence check names it
        return held  # one lateness report per turn is enough
    return None


def _hung_before(ctx: CheckContext, t: float) -> bool:
    """Whether an open or close the client asked for by ``t`` never returned (final runs only)."""
    if not ctx.final:
        return False
    return any(
        (ck.open_done is None and ck.opened_at <= t + EPS)
        or (ck.close_requested is not None and ck.closed is None and ck.close_requested <= t + EPS)
        for ck in ctx.client.keys.values()
    )


def _backlogged(ctx: CheckContext, key: str, start: float, end: float) -> list[str]:
    """Other keys whose slow callers had updates waiting (sent, not yet delivered) in [start, end]."""
    if ctx.waits is None:
        ctx.waits = defaultdict(list)
        for (k, n), attempts in ctx.attempts.items():
            sent = [u for a in attempts for u in a.updates if u.text]
            delivered = [e for e in ctx.client.turns[(k, n)].delivered if e.text]
            matched = align([e.text for e in delivered], [u.text for u in sent])
            for entry, j in zip(delivered, matched, strict=True):
                if j is not None:
                    ctx.waits[k].append((sent[j].t, entry.t))
    slack = ctx.caps.delivery_slack
    # Held up *behind* it: the slow caller had an update waiting already when this one was
    # sent (queued ahead of it), still undelivered then; an update sent later held up nothing.
    return [
        other
        for other in ctx.client.slow_during(key, start, end)
        if any(s <= start + EPS and d >= start - EPS and d - s > slack for s, d in ctx.waits[other])
    ]
