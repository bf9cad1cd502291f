"""Whose chunk is it: every chunk a turn delivered must be one the agent sent in that turn.

Chunks are attributed by send order and count, not by unique text: a text the turn's own agent
turn(s) sent is the turn's own while the count of it lasts. A chunk its own turn cannot account for
but another session sent (and that session's caller lacks) is cross-session bleed, named by its
origin (P3): the bridge routed by something other than the session. A chunk the agent never sent
is invented (P2); history the agent replayed on ``session/load``, or text of an earlier turn,
delivered again is a duplicate (P2).
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from pytest_acp.adapter import LogEntry
from pytest_acp.properties.client_log import ClientTurn
from pytest_acp.properties.sequences import composed_of
from pytest_acp.properties.truth import AgentTurn

if TYPE_CHECKING:
    from pytest_acp.properties.context import CheckContext


def own_deliveries(ctx: CheckContext, turn: ClientTurn, attempts: list[AgentTurn]) -> list[LogEntry]:
    """What the turn delivered that is its own (the rest is reported here: P3 bleed, P2 text never
    sent or history delivered again), for the checks of timing, order and completeness."""
    own_refs = {a.ref for a in attempts}
    # How often each text was sent to this turn: a text may repeat (natural text), so a delivery
    # is the turn's own while the turn's count of that text lasts.
    sent = Counter(u.text for a in attempts for u in a.updates if u.text)
    seen: Counter[str] = Counter()
    own: list[LogEntry] = []
    for entry in turn.delivered:
        if not ctx.kept(entry):
            continue
        text = entry.text
        origins = ctx.truth.origins.get(text, []) if text else []
        if text:
            seen[text] += 1
        if text and sent[text] and seen[text] > sent[text]:
            bled = _unclaimed_elsewhere(ctx, text, own_refs)
            if bled:
                _foreign(ctx, turn, entry, bled)  # one too many, and another caller lacks one
            else:
                own.append(entry)  # one too many of its own text: the sequence check names it
        elif text and origins and not sent[text]:
            _foreign(ctx, turn, entry, origins)
        elif text and not origins:
            ctx.add(
                "P2",
                f"delivered {entry.text!r}, which the agent never sent",
                key=turn.key,
                turn=turn.turn,
                t=entry.t,
            )
        else:
            own.append(entry)
    return own


def _unclaimed_elsewhere(
    ctx: CheckContext, text: str, own_refs: set[tuple[int, str, int]]
) -> list[tuple[int, str, int]]:
    """Agent turns outside ``own_refs`` that sent ``text`` more often than their own callers got it:
    where an extra copy of a text a turn also sent itself can have come from (identical texts
    in two sessions: only the counts tell bleed from a duplicate)."""
    out = []
    for ref, times in Counter(ctx.truth.origins.get(text, [])).items():
        if ref in own_refs:
            continue
        got = sum(
            1
            for (k, n), attempts in ctx.attempts.items()
            if any(a.ref == ref for a in attempts)
            for e in ctx.client.turns[(k, n)].delivered
            if e.text == text and ctx.kept(e)
        )
        if got < times:
            out.append(ref)
    return out


def _foreign(
    ctx: CheckContext, turn: ClientTurn, entry: LogEntry, origins: list[tuple[int, str, int]]
) -> None:
    _instance, session, agent_turn = origins[0]
    # The same agent session id across instances is the same conversation (resumed or loaded).
    sids = {sid for _, sid, _ in origins}
    owners = {k for (_, sid), keys in ctx.served.items() if sid in sids for k in keys}
    where = {"key": turn.key, "turn": turn.turn, "t": entry.t, "session": session}
    if turn.key in owners:
        if entry.text in ctx.truth.replayed:
            ctx.add(
                "P2",
                f"delivered {entry.text!r} as new, but it is history the agent replayed in answer to "
                "session/load (said before the reconnect): a duplicate",
                **where,
            )
            return
        earlier = [
            e.text
            for t in ctx.client.keys[turn.key].turns
            if t.turn < turn.turn
            for e in t.delivered
            if e.text and ctx.kept(e)
        ]
        if entry.text and composed_of(entry.text, earlier):
            ctx.add(
                "P2",
                f"delivered {entry.text!r} again: its text was delivered in an earlier turn already "
                "(a duplicate)",
                **where,
            )
            return
        source = f"comes from an earlier turn of the same conversation (agent turn {agent_turn})"
    elif owners:
        source = f"belongs to key {', '.join(sorted(owners))} (agent session {session[:8]} turn {agent_turn})"
    else:
        source = f"belongs to agent session {session[:8]} turn {agent_turn}, "
        source += "which no prompt of this key reached"
    ctx.add("P3", f"delivered {entry.text!r}, which {source}", **where)
