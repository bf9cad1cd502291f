"""Session-level updates: what a bridge that delivers them owes its callers.

Real agents send updates that belong to a session, not to a turn (``available_commands_update``,
``current_mode_update``), and several send them for a new session *before* answering
``session/new``: a bridge that drops updates for ids it does not know yet loses them. The simulated
agent does this with ``AgentProfile.updates_before_new_response`` (or the ``early_session_updates``
fault). Such updates belong to no turn, so the per-turn checks leave them out (``SESSION_KINDS``);
this module judges them, for the kinds a bridge declares it delivers (``BridgeCapabilities.kinds``):

- P2: every one the agent sent for a session before the first prompt of a key reached it (before
  or after the ``session/new`` answer) is delivered to that key at the latest by the end of the key's
  first turn in that session that ends with a stop reason (a bridge hands them over with that turn,
  through its ``TurnOutput``; the delivery log has no turn-less updates);
- P3: a key never gets more of them than the agent sessions its prompts reached sent: the rest
  belong to another session (P2, duplicates, when no other session sent that kind).

A bridge that crashes on them is reported by ``pytest_acp.harness.bridge_raised``. Called by the oracle's
oracle (``oracle.run``).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import TYPE_CHECKING

from pytest_acp.properties.truth import SESSION_KINDS, unsent_sends

if TYPE_CHECKING:
    from pytest_acp.properties.client_log import ClientKey, ClientTurn
    from pytest_acp.properties.context import CheckContext


class SessionSends:
    """The session-level updates each agent session was sent: (instance, id) -> [(seq, kind)]."""

    def __init__(self, ctx: CheckContext, kinds: frozenset[str]) -> None:
        self.sent: dict[tuple[int, str], list[tuple[int, str]]] = defaultdict(list)
        for i, instance in enumerate(ctx.truth.instances):
            unsent, maybe_unsent = unsent_sends(instance.events)
            for event in instance.events:
                if event.kind != "send" or event.method != "session/update" or event.session is None:
                    continue
                if event.seq in unsent or event.seq == maybe_unsent or event.id is not None:
                    continue  # never (or maybe never) on the wire: nothing to deliver
                params = (event.message or {}).get("params")
                update = params.get("update") if isinstance(params, dict) else None
                kind = update.get("sessionUpdate") if isinstance(update, dict) else None
                if kind in kinds:
                    self.sent[(i, event.session)].append((event.seq, str(kind)))


def check_session_updates(ctx: CheckContext) -> None:
    """P2 and P3 for the session-level kinds the bridge declares (see the module's docstring)."""
    kinds = SESSION_KINDS & ctx.caps.kinds
    if not kinds:
        return
    sends = SessionSends(ctx, kinds)
    for ck in ctx.client.keys.values():
        turns = sorted(ck.turns, key=lambda t: t.turn)
        if turns:
            _check_delivered(ctx, sends, ck, turns)
            _check_not_foreign(ctx, sends, ck, turns)


def _delivered(turns: list[ClientTurn], kinds: frozenset[str]) -> Counter[str]:
    return Counter(str(e.update_kind) for turn in turns for e in turn.delivered if e.update_kind in kinds)


def _check_delivered(ctx: CheckContext, sends: SessionSends, ck: ClientKey, turns: list[ClientTurn]) -> None:
    """P2: the key's first agent session's session-level updates reach it with its first turn there."""
    first = next((t for t in turns if ctx.attempts[(t.key, t.turn)]), None)
    if first is None:
        return
    attempt = ctx.attempts[(first.key, first.turn)][0]
    ref = (attempt.instance, attempt.session)
    session = ctx.truth.sessions.get(ref)
    if session is None or session.via != "session/new":
        return  # a restored session: what it announces again was delivered before
    prompt_seq = ctx.truth.prompt_seqs.get(attempt.ref)
    if prompt_seq is None:
        return
    owed = Counter(kind for seq, kind in sends.sent.get(ref, []) if seq < prompt_seq)
    if not owed:
        return
    # The first turn in that session that ended with a stop reason: the bridge had the session
    # and a caller to hand the updates to, and told that caller the turn was over.
    done = next(
        (
            t
            for t in turns
            if t.turn >= first.turn
            and t.end is not None
            and t.end.error is None
            and not t.end.timed_out
            and any((a.instance, a.session) == ref for a in ctx.attempts[(t.key, t.turn)])
        ),
        None,
    )
    if done is None:
        return
    assert done.end is not None
    got = _delivered([t for t in turns if t.turn <= done.turn], frozenset(owed))
    for kind, count in sorted(owed.items()):
        if got[kind] >= count:
            continue
        ctx.add(
            "P2",
            f"the agent sent {count} {kind} for agent session {attempt.session[:8]} before the key's "
            f"first prompt reached it (session-level updates; the agent may send them before it answers "
            f"session/new), but the key got {got[kind]} by the end of its turn {done.turn}: a bridge "
            f"that delivers {kind} must hand them to the session's key once the session is known",
            key=ck.key,
            turn=done.turn,
            t=done.end.t,
            session=attempt.session,
        )


def _check_not_foreign(
    ctx: CheckContext, sends: SessionSends, ck: ClientKey, turns: list[ClientTurn]
) -> None:
    """P3: no more session-level updates than the key's own agent sessions sent."""
    kinds = ctx.caps.kinds & SESSION_KINDS
    got = _delivered(turns, kinds)
    if not got:
        return
    carriers = [t for t in turns if any(e.update_kind in kinds for e in t.delivered)]
    if any(not ctx.attempts[(t.key, t.turn)] for t in carriers):
        return  # handed over with a turn whose prompt reached no agent: whose session it held is unknown
    # The same session id on another instance is the same conversation (resumed or loaded).
    own_ids = {sid for (_, sid), keys in ctx.served.items() if ck.key in keys}
    own = Counter(kind for (_, sid), items in sends.sent.items() if sid in own_ids for _, kind in items)
    for kind, count in sorted(got.items()):
        if count <= own[kind]:
            continue
        others = sorted(
            {sid[:8] for (_, sid), items in sends.sent.items() if sid not in own_ids and _has(items, kind)}
        )
        entry = [e for t in turns for e in t.delivered if e.update_kind == kind][own[kind]]
        where = {"key": ck.key, "turn": entry.turn, "t": entry.t}
        if others:
            ctx.add(
                "P3",
                f"delivered {count} {kind} but the agent sessions this key's prompts reached sent "
                f"{own[kind]}: the rest belong to another session (agent session {', '.join(others)})",
                **where,
            )
        else:
            ctx.add("P2", f"delivered {count} {kind} but the agent sent {own[kind]} (duplicates)", **where)


def _has(items: list[tuple[int, str]], kind: str) -> bool:
    return any(k == kind for _, k in items)
