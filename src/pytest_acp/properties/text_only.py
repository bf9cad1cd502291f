"""Judging a bridge by the limits it declares (``BridgeCapabilities.stop_reasons`` and friends).

A bridge whose callers get text only (no stop reason) cannot be told apart by how a turn ended, but
what remains meaningful is still judged: a cancelled turn must end promptly once the agent stopped,
and must deliver nothing the agent sent after it received the cancel (a caller with no stop reason
would take it for the answer). Called for each such turn by ``turn_end`` (the
end) and ``chunks`` (what was delivered before it was stopped).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pytest_acp.properties.client_log import ClientTurn
    from pytest_acp.properties.context import CheckContext
    from pytest_acp.properties.truth import AgentTurn

EPS = 1e-5


def judges_text_only(ctx: CheckContext, turn: ClientTurn) -> bool:
    """The turn ended with no stop reason and no error, from a bridge that declares it gives none."""
    end = turn.end
    return (
        not ctx.caps.stop_reasons
        and end is not None
        and end.stop_reason is None
        and end.error is None
        and not end.timed_out
    )


def check_text_only_end(ctx: CheckContext, turn: ClientTurn, last: AgentTurn | None) -> None:
    """The end of a turn that carries no stop reason: judged on what the caller can still see."""
    end = turn.end
    assert end is not None
    where = {"key": turn.key, "turn": turn.turn, "t": end.t}
    if last is None:
        if not turn.cancels and not turn.closes:
            ctx.add("P2", f"turn ended but no agent ever received its prompt ({turn.token})", **where)
        return
    where["session"] = last.session
    if turn.cancels or turn.closes:
        _check_cancelled(ctx, turn, last)
    elif last.response_t is None:
        ctx.add("P2", f"turn ended before the agent answered its prompt ({last.label()})", **where)
    elif last.error is not None:
        ctx.add(
            "P2",
            f"turn ended as if it succeeded, but the agent answered with error {last.error.get('message')!r}",
            **where,
        )


def _check_cancelled(ctx: CheckContext, turn: ClientTurn, last: AgentTurn) -> None:
    end = turn.end
    assert end is not None
    where = {"key": turn.key, "turn": turn.turn, "session": last.session}
    session = ctx.truth.session_of(last)
    prompt_seq = ctx.truth.prompt_seqs.get(last.ref, -1)
    pairs = zip(session.cancels, session.cancel_seqs, strict=True) if session is not None else ()
    received = [(t, seq) for t, seq in pairs if seq > prompt_seq]
    if received:
        # By the agent's own order: on virtual time the cancel and what follows share an instant.
        at, seq = received[0]
        after = {u.text for u in last.updates if u.text and u.seq > seq}
        leaked = [e for e in turn.delivered if e.text in after]
        if leaked:
            ctx.add(
                "P5",
                f"delivered {leaked[0].text!r}, which the agent sent after it received session/cancel at "
                f"t={at:.6f}: with no stop reason the caller takes it for the turn's answer",
                t=leaked[0].t,
                **where,
            )
    if last.response_t is None:
        return  # the agent never stopped: how long to wait for it is the bridge's own business
    slack = ctx.caps.delivery_slack
    since = max(turn.cancels[0] if turn.cancels else turn.closes[0], last.response_t)
    if end.t - since > slack + EPS:
        ctx.add(
            "P5",
            f"cancelled, but the turn ended only {end.t - since:.3f} s after the agent stopped it at "
            f"t={last.response_t:.6f} (allowed: {slack:g} s): the caller waited on a finished turn",
            t=end.t,
            **where,
        )
