"""What the caller was told, in order: nothing of a turn arrives after its caller was told it ended.

Delivery slack bounds *when* a chunk may reach its caller, never *order*: a chunk handed over after
the turn's end (a callback that fires after ``prompt()`` returned) reaches a caller who has moved on
(shown under the next answer, or not at all). A chunk the agent itself sent after its answer (a
misbehaving agent) is exempt: the bridge could not have had it in time. Called by the oracle's
oracle per turn (``oracle.check_turn``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pytest_acp.adapter import LogEntry
    from pytest_acp.properties.client_log import ClientTurn
    from pytest_acp.properties.context import CheckContext
    from pytest_acp.properties.truth import AgentTurn


def check_after_end(ctx: CheckContext, turn: ClientTurn, own: list[LogEntry], last: AgentTurn | None) -> None:
    """P2: a chunk the agent sent within the turn, delivered after the turn's end."""
    end = turn.end
    if end is None or last is None:
        return
    in_turn = {
        u.text for u in last.updates if u.text and (last.response_seq is None or u.seq < last.response_seq)
    }
    late = next((e for e in own if e.seq > end.seq and e.text in in_turn), None)
    if late is None:
        return
    ctx.add(
        "P2",
        f"delivered {late.text!r} {late.t - end.t:.3f} s after its caller was told the turn had ended "
        f"(at t={end.t:.6f}): a chunk of the turn's answer handed over after its end, out of order",
        key=turn.key,
        turn=turn.turn,
        t=late.t,
        session=last.session,
    )
