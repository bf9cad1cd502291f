"""Liveness, at the end of a run: every turn ended, and every open and close returned.

A turn never ended although its agent answered (P2); although its agent died and no new one
started (P6 for a bridge that declares it reconnects; P4 for one that declares it does not: it
must fail the turn at once); after it was cancelled (P5); with no timeout ending it (P4). An open or
close that never returned is a cause (``CheckContext.hung``): reported before its consequences.
What the end-of-run drain and the bridge's unattributed output say is added to each report.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pytest_acp.properties.violation import Violation

if TYPE_CHECKING:
    from pytest_acp.properties.context import CheckContext


def check_liveness(ctx: CheckContext) -> None:
    for turn in ctx.client.turns.values():
        if turn.end is not None:
            continue
        attempts = ctx.attempts[(turn.key, turn.turn)]
        last = attempts[-1] if attempts else None
        # Ended only by the harness's teardown: the caller would still be waiting.
        torn = turn.teardown_end
        by_teardown = f"; only the harness's teardown ended it ({torn.error})" if torn is not None else ""
        by_teardown = ctx.client.drain_note(turn.key, turn.turn) + by_teardown
        death = ctx.unreplaced_death(ctx.client.end_time)
        if last is not None and last.response_t is not None:
            ctx.add(
                "P2",
                f"never ended, although the agent answered {last.stop_reason or 'an error'} at "
                f"t={last.response_t:.6f}{by_teardown}",
                key=turn.key,
                turn=turn.turn,
                session=last.session,
            )
        elif death is not None and (last is None or last.instance in ctx.truth.ended):
            # Declared reconnects: none happened. Declared none: the turn had to fail at once.
            if ctx.caps.reconnects:
                prop = "P6"
                message = f"never ended: no reconnect after the agent died at t={death:.6f} (no new "
                message += "agent was started), and the turn was left waiting"
            else:
                prop = "P4"
                message = f"never ended, although the agent died at t={death:.6f}: a bridge that does "
                message += (
                    "not reconnect must fail the turn at once with an error, not leave the caller waiting"
                )
            ctx.add(prop, message + by_teardown, key=turn.key, turn=turn.turn, t=max(death, turn.started))
        else:
            prop = "P5" if turn.cancels else "P4"
            why = "after it was cancelled (a wedged session)" if turn.cancels else "(no timeout ended it)"
            ctx.add(prop, f"never ended {why}{by_teardown}", key=turn.key, turn=turn.turn, t=turn.started)
    for ck in ctx.client.keys.values():
        # A bridge call that never returned is a cause: reported before its consequences.
        if ck.open_done is None:
            ctx.hung.append(
                Violation(
                    "P4",
                    "open_session never returned" + ctx.client.drain_note(ck.key),
                    key=ck.key,
                    t=ck.opened_at,
                    cause=True,
                )
            )
        if ck.close_requested is not None and ck.closed is None:
            ctx.hung.append(
                Violation("P6", "close never returned", key=ck.key, t=ck.close_requested, cause=True)
            )
