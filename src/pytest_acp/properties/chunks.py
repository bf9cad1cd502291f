"""P1 first chunk and P2 integrity: what a turn delivered is, in order, what its agent turn sent.

Compared as sequences (``sequences``): a text may occur several times, so a chunk is missing or
duplicated by position and count. A turn that ran to its end must deliver everything the agent
sent before answering; after a cancel, an error or a timeout the bridge may stop early, but not
before the moment it was stopped. A missing first chunk is P1 (the classic: the bridge subscribes
to the session's updates only after the first one went by).
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from pytest_acp.adapter import LogEntry
from pytest_acp.properties.client_log import ClientTurn
from pytest_acp.properties.sequences import subsequence
from pytest_acp.properties.text_only import judges_text_only
from pytest_acp.properties.truth import EPS, AgentTurn, AgentUpdate

if TYPE_CHECKING:
    from pytest_acp.properties.context import CheckContext


def check_sequence(
    ctx: CheckContext, turn: ClientTurn, own: list[LogEntry], last: AgentTurn, held: float | None
) -> None:
    """The turn's own deliveries against its last attempt's sends (``held``: see ``timeliness``)."""
    end = turn.end
    assert end is not None
    by_attempt = {u.text for u in last.updates}
    # Sent after this attempt's prompt arrived: an earlier attempt's delivery is not this one's
    # even where their texts are alike.
    got = [e.text for e in own if e.text in by_attempt and e.t >= last.received - EPS]
    if last.response_seq is not None:
        in_turn = [u for u in last.updates if u.seq < last.response_seq]
        tail_updates = [u for u in last.updates if u.seq > last.response_seq]
    else:
        in_turn, tail_updates = list(last.updates), []
    tail = [u.text for u in tail_updates]
    expected = [u.text for u in in_turn]
    where = {"key": turn.key, "turn": turn.turn, "session": last.session}
    stopped = judges_text_only(ctx, turn) and bool(turn.cancels or turn.closes)
    if end.error is not None or end.stop_reason == "cancelled" or end.timed_out or stopped:
        # After a cancel, an error or a timeout the bridge may stop early, but everything the
        # agent sent before that moment must have been delivered.
        cut = min([end.t, *turn.cancels, *turn.closes])
        must = sum(1 for u in in_turn if u.t < cut - EPS and not u.maybe_unsent)
        if held is not None:
            return  # explained (and reported) as a stall caused by another session
        _compare(ctx, got, in_turn + tail_updates, must, where, last, why="before the turn was stopped")
    else:
        # Updates the agent sent after its response (a misbehaving agent) may be delivered
        # at the end of the turn or dropped, never elsewhere.
        n = len(expected)
        if got[:n] == expected and got[n:] == tail[: len(got) - n]:
            return
        _compare(ctx, got, in_turn, n, where, last, why="")


def _compare(
    ctx: CheckContext,
    got: list[str | None],
    sent: list[AgentUpdate],
    must: int,
    where: dict[str, Any],
    last: AgentTurn,
    *,
    why: str,
) -> None:
    """``got`` must be a prefix of what was ``sent``, at least ``must`` long; name the first way it
    is not. Compared as sequences: a text may occur several times (natural text), so a chunk is
    missing or duplicated by position and count, never by its text alone."""
    expected = [u.text for u in sent]
    counts = Counter(got)
    times = Counter(u.text for u in last.updates)
    dup = next((text for text in got if text and counts[text] > times[text]), None)
    if dup is not None:
        also = f" (the agent sent it {times[dup]} times)" if times[dup] > 1 else ""
        ctx.add("P2", f"delivered {dup!r} {counts[dup]} times{also}", **where)
        return
    prefix = got == expected[: len(got)]
    if prefix and len(got) >= must:
        return
    matched = subsequence(got, expected)
    if (
        expected
        and (not got or (matched is not None and matched[0] != 0))
        and got == expected[1 : len(got) + 1]
    ):
        first = sent[0]
        ctx.add(
            "P1",
            f"the first chunk {first.text!r} (sent at t={first.t:.6f}, "
            f"{first.t - last.received:.6f} s after the prompt reached the agent) "
            "was never delivered",
            t=first.t,
            **where,
        )
        return
    if prefix:
        missing = sent[len(got) : must]
        ctx.add(
            "P2",
            f"{len(missing)} chunk(s) sent {why or 'in the turn'} never delivered, first "
            f"{missing[0].text!r} (sent at t={missing[0].t:.6f})".replace("  ", " "),
            t=missing[0].t,
            **where,
        )
        return
    if matched is not None:
        hit = set(matched)
        missing = [sent[j] for j in range(matched[-1]) if j not in hit]
        ctx.add(
            "P2",
            f"{len(missing)} chunk(s) missing from the middle of the turn, first {missing[0].text!r} "
            f"(sent at t={missing[0].t:.6f})",
            t=missing[0].t,
            **where,
        )
        return
    ctx.add("P2", f"chunks delivered out of order: got {got!r}, sent {expected!r}", **where)
