"""Checks across a key's prompts and agent sessions: a prompt sent again after the agent answered it
(it ran twice), and a conversation that moved to an agent session with none of its history.

Called by the oracle's checker (``pytest_acp.oracle._Checker``) with itself: it holds the ground
truth (``truth``), the client's log (``client``), each client turn's agent attempts (``attempts``,
found by correlation token) and the bridge's capabilities (``caps``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pytest_acp.oracle import AgentTurn, _Checker

EPS = 1e-5


def check_resent_prompts(checker: _Checker) -> None:
    """P2: a prompt that reaches the agent again after the agent answered it ran twice (tokens,
    tools); a retry after a failed attempt (an error answer, a crash, no answer) is fine."""
    if checker.caps.resends_answered:
        return
    for (key, n), attempts in checker.attempts.items():
        for index, again in enumerate(attempts[1:], start=1):
            answered = next((a for a in attempts[:index] if _answered_before(checker, a, again)), None)
            if answered is None:
                continue
            checker.add(
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


def _answered_before(checker: _Checker, first: AgentTurn, again: AgentTurn) -> bool:
    if first.response_t is None or first.error is not None:
        return False
    if first.instance == again.instance and first.response_seq is not None:
        return first.response_seq < checker.truth.prompt_seqs.get(again.ref, -1)
    return first.response_t <= again.received + EPS
