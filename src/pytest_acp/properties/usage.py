"""P9 token accounting: the usage a bridge reports is what the agent reported.

Per turn (a turn that ran to its end, with usage on both sides) and per key (a running total,
counting the turns the bridge was done with when it reported it). Judged only for a bridge that
declares it reports usage.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any

from pytest_acp.properties.client_log import ClientTurn
from pytest_acp.properties.truth import EPS, AgentTurn

if TYPE_CHECKING:
    from pytest_acp.properties.context import CheckContext


def check_turn_usage(ctx: CheckContext, turn: ClientTurn, last: AgentTurn, where: dict[str, Any]) -> None:
    """Per turn: the usage the bridge reported for a turn that ran to its end is the agent's."""
    end = turn.end
    assert end is not None
    stop = end.stop_reason
    if end.usage is not None and last.usage is not None and stop != "cancelled":
        reported = {k: v for k, v in end.usage.items() if k in last.usage}
        if reported != last.usage:
            ctx.add(
                "P9",
                f"turn usage {end.usage} differs from what the agent reported, {last.usage}",
                session=last.session,
                **where,
            )


def check_usage_totals(ctx: CheckContext) -> None:
    for ck in ctx.client.keys.values():
        for entry in ck.usage_totals:
            if entry.usage is None:
                continue
            expected: dict[str, int] = defaultdict(int)
            for turn in ck.turns:
                if turn.end is None or turn.end.seq > entry.seq:
                    continue  # the bridge was not done with this turn when it reported the total
                for attempt in ctx.attempts[(ck.key, turn.turn)]:
                    if (
                        attempt.usage
                        and attempt.response_t is not None
                        and attempt.response_t <= entry.t + EPS
                    ):
                        for name, value in attempt.usage.items():
                            expected[name] += value
            reported = {k: v for k, v in entry.usage.items() if k in expected}
            if expected and reported != dict(expected):
                ctx.add(
                    "P9",
                    f"the bridge's token total for the key is {reported}, but the agent reported "
                    f"{dict(expected)} over {len(ck.turns)} turn(s)",
                    key=ck.key,
                    t=entry.t,
                )
                return
