"""How a turn ended (P2, P4, P5): the end its caller was told matches what the agent answered.

A turn that failed must have had a reason at the agent or the client (a timeout, a close, an error
answer, a crash, a fatal fault, a hung session); one that timed out must have reached its own
deadline, not one armed by another turn (P4); one that ended ``cancelled`` must have been
cancelled by its caller, and one its caller cancelled in time must end ``cancelled`` (P5); any
other end must be the agent's own stop reason (P2). A bridge that declares it does not reconnect
must fail a turn its dead agent cannot run at once (P4). Turns with no stop reason, from a bridge
that declares it gives none, are judged by ``text_only``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pytest_acp.properties.client_log import ClientTurn
from pytest_acp.properties.text_only import check_text_only_end, judges_text_only
from pytest_acp.properties.truth import EPS, FATAL_FAULTS, AgentTurn
from pytest_acp.properties.usage import check_turn_usage

if TYPE_CHECKING:
    from pytest_acp.properties.context import CheckContext


def check_end(
    ctx: CheckContext, turn: ClientTurn, last: AgentTurn | None, attempts: list[AgentTurn], held: float | None
) -> None:
    """The end of a turn that ended (``held``: when a chunk of it was held up by another session's
    slow reader, from ``timeliness``; that explains a timeout)."""
    end = turn.end
    assert end is not None
    where = {"key": turn.key, "turn": turn.turn, "t": end.t}
    if end.error is not None or end.timed_out:
        _check_timeout(ctx, turn, last, held)
        _check_failed_promptly(ctx, turn, last)
        if _explained_failure(ctx, turn, last) is None:
            crashed_before = [t for t in ctx.client.crashes if t < turn.started]
            if crashed_before and not attempts:
                ctx.add(
                    "P6",
                    f"turn failed ({end.error}) and the prompt never reached an agent: no reconnect "
                    f"after the agent died at t={crashed_before[-1]:.6f}",
                    **where,
                )
            else:
                agent = "never received the prompt"
                if last is not None:
                    agent = f"answered {last.stop_reason!r}" if last.response_t else "was still running it"
                ctx.add("P2", f"turn failed with {end.error!r} although the agent {agent}", **where)
        return
    if judges_text_only(ctx, turn):
        check_text_only_end(ctx, turn, last)
        return
    stop = end.stop_reason
    if stop == "cancelled" and not turn.cancels and not turn.closes:
        agent = (
            f"the agent answered {last.stop_reason!r}"
            if last is not None
            else "its prompt never reached the agent"
        )
        ctx.add("P5", f"turn ended 'cancelled' although its caller never cancelled it ({agent})", **where)
        return
    if last is None and stop == "cancelled":
        return  # cancelled before the bridge sent the prompt: nothing reached the agent
    if last is None:
        ctx.add(
            "P2",
            f"turn ended {stop!r} but no agent ever received its prompt ({turn.token})",
            **where,
        )
        return
    cancelled_in_time = [t for t in turn.cancels if last.response_t is None or t < last.response_t - EPS]
    if turn.cancels and not cancelled_in_time and last.response_seq is not None:
        # Asked in the very instant the agent answered: the agent's own order decides.
        session = ctx.truth.session_of(last)
        prompt_seq = ctx.truth.prompt_seqs.get(last.ref, -1)
        if session is not None and any(prompt_seq < seq < last.response_seq for seq in session.cancel_seqs):
            cancelled_in_time = turn.cancels[:1]
    if stop == "cancelled":
        pass
    elif cancelled_in_time:
        ctx.add(
            "P5",
            f"cancelled at t={cancelled_in_time[0]:.6f} while running, but the turn ended {stop!r}",
            session=last.session,
            **where,
        )
    elif last.response_t is None:
        ctx.add(
            "P2",
            f"turn ended {stop!r} before the agent answered its prompt ({last.label()})",
            session=last.session,
            **where,
        )
    elif last.error is not None:
        ctx.add(
            "P2",
            f"turn ended {stop!r} but the agent answered with error {last.error.get('message')!r}",
            session=last.session,
            **where,
        )
    elif stop != last.stop_reason:
        ctx.add(
            "P2",
            f"turn ended {stop!r} but the agent answered {last.stop_reason!r}",
            session=last.session,
            **where,
        )
    # P9: per-turn usage, when the bridge reports it.
    check_turn_usage(ctx, turn, last, where)


def _explained_failure(ctx: CheckContext, turn: ClientTurn, last: AgentTurn | None) -> str | None:
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
    if any(window[0] <= t <= window[1] for t in ctx.client.crashes):
        return "the agent crashed"
    for instance, t, detail in ctx.truth.faults:
        if not window[0] <= t <= window[1]:
            continue
        kind = str(detail.get("kind", detail.get("fault", "")))
        if kind in FATAL_FAULTS:
            return f"agent fault {kind}"
        if last is not None and detail.get("session") in (None, last.session) and instance == last.instance:
            return f"agent fault {kind}"
    # The agent had not answered this key's previous prompt (a cancel or timeout it ignored): a
    # bridge may refuse to send the next one into a session the agent is still busy with.
    earlier = [
        a
        for t in ctx.client.keys[turn.key].turns
        if t.turn < turn.turn
        for a in ctx.attempts[(t.key, t.turn)]
    ]
    if earlier and (earlier[-1].response_t is None or earlier[-1].response_t > end.t - EPS):
        return "the agent had not answered the previous prompt"
    # An agent session that hangs (never answers a prompt) wedges every later turn of it.
    sessions = {
        (a.instance, a.session)
        for t in ctx.client.keys[turn.key].turns
        for a in ctx.attempts[(t.key, t.turn)]
    }
    for instance, t, detail in ctx.truth.faults:
        if detail.get("kind") == "hang" and t <= end.t + EPS:
            target = detail.get("session")
            if target is None or (instance, target) in sessions:
                return "the agent hung"
    if last is not None and last.instance in ctx.truth.ended:
        ended = ctx.truth.ended[last.instance]
        if ended <= end.t + EPS:
            return "the agent connection ended"
    if not ctx.caps.reconnects and ctx.unreplaced_death(end.t) is not None:
        return "the agent died, and the bridge declares it does not reconnect"
    return None


def _check_failed_promptly(ctx: CheckContext, turn: ClientTurn, last: AgentTurn | None) -> None:
    """A bridge that does not reconnect must fail a turn its dead agent cannot run at once, with
    an error: never leave its caller waiting on a timer."""
    end = turn.end
    if ctx.caps.reconnects or end is None or turn.cancels or turn.closes:
        return
    death = ctx.unreplaced_death(end.t)
    if death is None:
        return
    if last is not None and ctx.truth.ended.get(last.instance, float("inf")) > end.t + EPS:
        return  # it ran on an agent that was alive until the end
    late = end.t - max(death, turn.started)
    if late > ctx.caps.delivery_slack + EPS:
        ctx.add(
            "P4",
            f"failed only {late:.3f} s after the agent died at t={death:.6f}: a bridge that does not "
            f"reconnect must fail the turns its dead agent cannot run at once (allowed: "
            f"{ctx.caps.delivery_slack:g} s), not leave the caller waiting",
            key=turn.key,
            turn=turn.turn,
            t=end.t,
        )


def _check_timeout(ctx: CheckContext, turn: ClientTurn, last: AgentTurn | None, held: float | None) -> None:
    end = turn.end
    assert end is not None
    if not end.timed_out:
        return
    where = {"key": turn.key, "turn": turn.turn, "t": end.t}
    if last is not None and last.response_t is not None and last.response_t < end.t - EPS and not turn.slow:
        ctx.add(
            "P4",
            f"timed out at t={end.t:.6f} although the agent completed the turn at "
            f"t={last.response_t:.6f} ({last.stop_reason!r})",
            session=last.session,
            **where,
        )
        return
    tt, it = ctx.caps.turn_timeout, ctx.caps.idle_timeout
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
    if not allowed and held is None:
        limits = ", ".join(
            f"{name} {value:g} s" for name, value in (("turn timeout", tt), ("idle timeout", it)) if value
        )
        ctx.add(
            "P4",
            f"timed out {age:.3f} s after it started and {idle:.3f} s after its last update, before "
            f"its own deadline ({limits}): a timer armed by another turn fired",
            **where,
        )
