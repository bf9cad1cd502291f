"""The oracle: a pure function of (ground-truth traces, delivery log) -> violations of P1-P9.

It never looks inside a bridge. The ground truth is what each agent instance sent and received (its
trace, one per launch); the delivery log is what the client asked the bridge to do and what the
bridge delivered, under the client's own session keys and turn numbers.

Correlation without trusting the bridge: every prompt the client sends carries a unique token
(``task-0017``). The agent records the ``session/prompt`` params it received, so the oracle maps
(bridge key, bridge turn) -> (agent instance, agent session id, agent turn) from the trace alone,
across reconnects and relaunches. Chunks are attributed by send order, not by unique text: what a
turn delivered must match, as a sequence, what the agent sent in the correlated agent turn(s), so
ordinary text (``.``, `` the``, the same chunk twice) is judged like the simulator's tagged text. A
delivered chunk that its own turn cannot account for (its text never sent there, or sent fewer times)
but that another session sent and its own caller lacks is cross-session bleed, named by its origin.

Properties (see the README for the full statements): P1 first chunk, P2 integrity, P3 no
cross-session bleed (and no stall caused by another session), P4 generation-scoped timeouts, P5
scoped interrupts, P6 no leaked processes or sessions, P7 pre-warm, P8 no resumed phantoms, P9 token
accounting.

This module is the one place that compares the two: ``check`` builds both models once (``truth``,
``client_log``), correlates them (``context.CheckContext``) and runs every property module on
them in a fixed order (``run``); each module says what it asserts and why. A new property is a new
module here and one call in ``run``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from pytest_acp.adapter import BridgeCapabilities, LogEntry
from pytest_acp.properties import (
    after_end,
    attribution,
    cancels,
    chunks,
    conversation,
    failed_opens,
    leaks,
    liveness,
    phantoms,
    session_updates,
    timeliness,
    turn_end,
    usage,
    warm_sessions,
)
from pytest_acp.properties.client_log import Client, ClientTurn
from pytest_acp.properties.context import CheckContext
from pytest_acp.properties.models import Models
from pytest_acp.properties.truth import InstanceTrace, Truth
from pytest_acp.properties.violation import Violation


def check(
    traces: Sequence[InstanceTrace],
    log: Sequence[LogEntry],
    capabilities: BridgeCapabilities | None = None,
    *,
    final: bool = True,
    models: Models | None = None,
) -> list[Violation]:
    """Every violation of P1-P9 in a run, in a stable order (by property, then time).

    ``final=False`` checks a run in progress: only what is already decided (ended turns, bleed,
    cancels whose deadline has passed); ``final=True`` also requires every turn, open and close to
    have finished. ``models`` keeps the models of one run between its checks (each then reads only
    what is new); the verdict is the same without it.
    """
    caps = capabilities or BridgeCapabilities()
    truth, client, agent_side = (models or Models()).update(traces, log, caps)
    ctx = CheckContext(truth, client, caps, final, agent_side)
    violations = run(ctx)
    by_time = sorted(ctx.hung, key=lambda v: v.t if v.t is not None else float("inf"))
    return by_time + sorted(violations, key=lambda v: (v.property, v.t if v.t is not None else float("inf")))


def run(ctx: CheckContext) -> list[Violation]:
    """Every property on one correlated run, in the order their violations were always found."""
    for turn in ctx.client.turns.values():
        check_turn(ctx, turn)
    cancels.check_cancels_sent(ctx)
    conversation.check_resent_prompts(ctx)
    conversation.check_continuity(ctx)
    session_updates.check_session_updates(ctx)
    leaks.check_sessions_closed(ctx)
    failed_opens.check_failed_opens(ctx)
    phantoms.check_phantoms(ctx)
    warm_sessions.check_prewarm(ctx)
    if ctx.caps.usage:
        usage.check_usage_totals(ctx)
    leaks.check_processes(ctx)
    if ctx.final:
        liveness.check_liveness(ctx)
    return ctx.out


def check_turn(ctx: CheckContext, turn: ClientTurn) -> None:
    """P1-P5, P7 and P9 for one client turn: whose chunks it got, when, how it ended, in what order,
    and in which agent session it ran."""
    attempts = ctx.attempts[(turn.key, turn.turn)]
    last = attempts[-1] if attempts else None
    own = attribution.own_deliveries(ctx, turn, attempts)
    held = timeliness.check_timeliness(ctx, turn, own, attempts)
    if turn.end is None:
        return
    turn_end.check_end(ctx, turn, last, attempts, held)
    after_end.check_after_end(ctx, turn, own, last)
    if last is not None:
        chunks.check_sequence(ctx, turn, own, last, held)
        warm_sessions.check_cwd(ctx, turn, last)


def correlate(
    traces: Sequence[InstanceTrace], log: Sequence[LogEntry], capabilities: BridgeCapabilities | None = None
) -> dict[str, set[tuple[int, str]]]:
    """Bridge key -> the (agent instance, agent session id) pairs its prompts reached (by token)."""
    caps = capabilities or BridgeCapabilities()
    ctx = CheckContext(Truth(traces, caps.kinds, caps.empty_text), Client(log), caps, False)
    out: dict[str, set[tuple[int, str]]] = defaultdict(set)
    for ref, keys in ctx.served.items():
        for key in keys:
            out[key].add(ref)
    return dict(out)
