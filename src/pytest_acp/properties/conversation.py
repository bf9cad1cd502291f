"""Checks across a key's prompts and agent sessions: a prompt sent again after the agent answered it
(it ran twice), and a conversation that moved to an agent session with none of its history.

Called by the oracle (``oracle.run``) with the run's ``CheckContext``: it holds the ground truth
(``truth``), the client's log (``client``), each client turn's agent attempts (``attempts``, found
by correlation token) and the bridge's capabilities (``caps``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pytest_acp.properties.context import CheckContext
    from pytest_acp.properties.truth import AgentTurn

EPS = 1e-5


def check_resent_prompts(ctx: CheckContext) -> None:
    """P2: a prompt that reaches the agent again after the agent answered it ran twice (tokens,
    tools); a retry after a failed attempt (an error answer, a crash, no answer) is fine."""
    if ctx.caps.resends_answered:
        return
    for (key, n), attempts in ctx.attempts.items():
        for index, again in enumerate(attempts[1:], start=1):
            answered = next((a for a in attempts[:index] if _answered_before(ctx, a, again)), None)
            if answered is None:
                continue
            ctx.add(
                "P2",
                f"its prompt was sent again after the agent had answered it ({answered.label()} ended "
                f"{answered.stop_reason!r} at t={answered.response_t:.6f}); it reached {again.label()} at "
                f"t={again.received:.6f} and ran a second time (tokens spent twice, tools run twice)",
                key=key,
                turn=n,
                t=again.received,
                session=again.session,
            )
            break


def _answered_before(ctx: CheckContext, first: AgentTurn, again: AgentTurn) -> bool:
    if first.response_t is None or first.error is not None:
        return False
    if first.instance == again.instance and first.response_seq is not None:
        return first.response_seq < ctx.truth.prompt_seqs.get(again.ref, -1)
    return first.response_t <= again.received + EPS


def check_continuity(ctx: CheckContext) -> None:
    """P2 (conversation continuity): turn n+1 of a key runs in the agent session turn n ran in, or
    in one restored from it (the same session id on a later instance: resumed or loaded; or a fork of
    it); "turn n" is the last one the agent answered. A fresh session there has none of the
    conversation: the user's history is lost. Exempt: a
    bridge that declares ``continuity=False``, and one whose restore of that session the agent refused
    (the history was lost on the agent's side)."""
    if not ctx.caps.continuity:
        return
    forks, refused = ctx.agent_side.forks, ctx.agent_side.refused
    for ck in ctx.client.keys.values():
        before: AgentTurn | None = None
        for turn in sorted(ck.turns, key=lambda t: t.turn):
            attempts = ctx.attempts[(ck.key, turn.turn)]
            if not attempts:
                continue
            now = attempts[0]
            if before is not None and not _continues(before, now, forks, refused):
                ctx.add(
                    "P2",
                    f"conversation continuity: the turn ran in agent session {now.session[:8]} "
                    f"(agent#{now.instance}), a fresh session, not in {before.session[:8]} where the key's "
                    "previous turn ran, nor one restored from it: the agent has lost the conversation's "
                    "history (declare continuity=False if starting over is intended)",
                    key=ck.key,
                    turn=turn.turn,
                    t=now.received,
                    session=now.session,
                )
                break
            # What the agent may have kept of the conversation: the last turn it answered (a prompt
            # lost in a crash may have left nothing a restore could find).
            answered = [a for a in attempts if a.response_t is not None and a.error is None]
            before = answered[-1] if answered else before


def _continues(
    before: AgentTurn, now: AgentTurn, forks: dict[tuple[int, str], str], refused: set[str]
) -> bool:
    if now.session == before.session or before.session in refused:
        return True
    return forks.get((now.instance, now.session)) == before.session
