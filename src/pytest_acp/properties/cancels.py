"""P5 scoped interrupts: ``session/cancel`` goes where the caller cancelled, and only there.

Every ``session/cancel`` the agent received must be its caller's doing (a cancel or close since
the key's latest prompt, or a turn the bridge gave up on: an error or a timeout); and a cancel the
caller asked while its turn ran must reach the agent within ``cancel_slack``, after the prompt it
targets (one that overtook its prompt cancelled nothing).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pytest_acp.properties.truth import EPS, AgentSession

if TYPE_CHECKING:
    from pytest_acp.properties.context import CheckContext


def check_cancels_sent(ctx: CheckContext) -> None:
    for (instance, sid), session in ctx.truth.sessions.items():
        keys = ctx.served.get((instance, sid), set())
        for t in session.cancels:
            if keys and not ctx.final and any(_running_unended(ctx, k, t) for k in keys):
                continue  # judged once that turn's end is known (the bridge may yet fail it)
            if keys and not any(_cancel_justified(ctx, k, t) for k in keys):
                ctx.add(
                    "P5",
                    f"session/cancel sent for agent session {sid[:8]} (key {', '.join(sorted(keys))}), "
                    "which its caller never cancelled",
                    key=sorted(keys)[0],
                    t=t,
                    session=sid,
                )
    for turn in ctx.client.turns.values():
        attempts = ctx.attempts[(turn.key, turn.turn)]
        if not turn.cancels or not attempts:
            continue
        last = attempts[-1]
        asked = turn.cancels[0]
        if last.response_t is not None and last.response_t <= asked + EPS:
            continue  # the agent had already finished: nothing to cancel
        ended = ctx.truth.ended.get(last.instance)
        if ended is not None and ended <= asked + ctx.caps.cancel_slack:
            continue
        session = ctx.truth.sessions.get((last.instance, last.session))
        # A cancel the bridge sent on its own for this turn (a timeout) before its caller asked
        # counts: the agent was told to stop this turn. One the agent received before the prompt
        # (by its own order, even in the same instant) found nothing running: it cancelled nothing.
        got, early = cancels_around(session, ctx.truth.prompt_seqs.get(last.ref, -1), asked)
        deadline = asked + ctx.caps.cancel_slack
        if got and got[0] <= deadline + EPS:
            continue
        if got or ctx.final or ctx.client.end_time > deadline:
            late = f"only at t={got[0]:.6f}" if got else "never"
            if early and not got:
                late = (
                    f"at t={early[0]:.6f} before the prompt it targets (which arrived at "
                    f"t={last.received:.6f}), so it cancelled nothing and the agent ran the whole turn"
                )
            ctx.add(
                "P5",
                f"cancelled at t={asked:.6f}, but the agent received session/cancel {late}",
                key=turn.key,
                turn=turn.turn,
                t=asked,
                session=last.session,
            )


def _running_unended(ctx: CheckContext, key: str, t: float) -> bool:
    return any(turn.started <= t + EPS and turn.end is None for turn in ctx.client.keys[key].turns)


def _cancel_justified(ctx: CheckContext, key: str, t: float) -> bool:
    """A ``session/cancel`` at ``t`` is the bridge's business if its caller cancelled or closed the
    key since its latest prompt, or the turn running then ended in an error or a timeout (the
    bridge gave up on it and told the agent to stop)."""
    ck = ctx.client.keys[key]
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
