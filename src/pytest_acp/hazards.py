"""What a run actually provoked: how often each hazard the properties judge really happened.

A property judged on nothing is not a pass: a run in which no cancel ever raced a first chunk says
nothing about scoped interrupts under that race. These counts come from the same two inputs as the
oracle (the agent's traces and the delivery log), so they describe the run, not the rules drawn.
The names are the keys of ``acp_sim.conformance.HAZARDS``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from pytest_acp.adapter import BridgeCapabilities, LogEntry
from pytest_acp.oracle import EPS, FATAL_FAULTS, AgentTurn, Client, InstanceTrace, Truth


def count_hazards(
    traces: Sequence[InstanceTrace], log: Sequence[LogEntry], capabilities: BridgeCapabilities
) -> Counter[str]:
    truth = Truth(traces, capabilities.kinds, capabilities.empty_text)
    return hazards_of(truth, Client(log), capabilities)


def hazards_of(truth: Truth, client: Client, caps: BridgeCapabilities) -> Counter[str]:
    out: Counter[str] = Counter()
    turns = list(truth.turns.values())
    for turn in turns:
        if turn.updates and abs(turn.updates[0].t - turn.received) <= EPS:
            out["first_chunk_same_tick"] += 1
        if turn.response_t is not None and turn.error is None:
            out["turn_completed"] += 1
        if turn.usage:
            out["usage_reported"] += 1
    out["concurrent_streams"] += _overlapping_streams(turns)
    _cancels(truth, client, out)
    _slow_readers(truth, client, out)
    _timeouts(client, caps, out)
    _crashes(truth, client, out)
    for ck in client.keys.values():
        if ck.closed is not None:
            out["session_closed"] += 1
    for request, ready in client.prewarms:
        if ready is None:
            continue
        detail = request.detail or {}
        # A warm open: a conversation opened on the pre-warmed configuration once it was ready.
        if any(
            ck.opened_at >= ready.t - EPS and ck.cwd == str(detail.get("cwd")) for ck in client.keys.values()
        ):
            out["warm_open"] += 1
    for _instance, _t, detail in truth.faults:
        out[f"fault:{detail.get('kind', detail.get('fault', '?'))}"] += 1
    return +out


def _overlapping_streams(turns: list[AgentTurn]) -> int:
    """Pairs of turns of different sessions whose streams overlapped in time."""
    spans = sorted(
        (t.updates[0].t, t.updates[-1].t, (t.instance, t.session)) for t in turns if len(t.updates) >= 2
    )
    count = 0
    for i, (_start, end, session) in enumerate(spans):
        for other_start, _other_end, other in spans[i + 1 :]:
            if other_start > end:
                break
            if other != session and other_start < end:
                count += 1
    return count


def _cancels(truth: Truth, client: Client, out: Counter[str]) -> None:
    for session in truth.sessions.values():
        for t, seq in zip(session.cancels, session.cancel_seqs, strict=False):
            out["cancel_reached_agent"] += 1
            turn = _turn_running(truth, session.instance, session.id, t)
            if turn is None:
                continue
            # Late: sent after the agent read the cancel (by trace order: often in the same tick).
            if any(u.seq > seq for u in turn.updates):
                out["late_updates_after_cancel"] += 1
    for turn in client.turns.values():
        if not turn.cancels:
            continue
        cancel = turn.cancels[0]
        first_delivered = turn.delivered[0].t if turn.delivered else None
        # The race: the caller cancels before the turn's first chunk reached it (or it never did).
        if first_delivered is None or cancel <= first_delivered + EPS:
            out["cancel_races_first_chunk"] += 1


def _turn_running(truth: Truth, instance: int, sid: str, t: float) -> AgentTurn | None:
    for turn in truth.turns.values():
        ours = turn.instance == instance and turn.session == sid and turn.received <= t + EPS
        if ours and (turn.response_t is None or turn.response_t >= t - EPS):
            return turn
    return None


def _slow_readers(truth: Truth, client: Client, out: Counter[str]) -> None:
    for turn in client.turns.values():
        if turn.end is None or not turn.delivered:
            continue
        if client.slow_during(turn.key, turn.started, turn.end.t):
            out["slow_reader_while_streaming"] += 1


def _timeouts(client: Client, caps: BridgeCapabilities, out: Counter[str]) -> None:
    limit = caps.turn_timeout
    for ck in client.keys.values():
        for before, after in zip(ck.turns, ck.turns[1:], strict=False):
            # The next turn began while the earlier turn's timer could still fire: a stale timer's chance.
            if limit is not None and after.started < before.started + limit:
                out["timeout_armed_during_other_turn"] += 1
        for turn in ck.turns:
            if turn.end is not None and turn.end.timed_out:
                out["turn_hung"] += 1


def _crashes(truth: Truth, client: Client, out: Counter[str]) -> None:
    ends = sorted(truth.ended.items())
    fatal = [t for _i, t, detail in truth.faults if str(detail.get("kind", "")) in FATAL_FAULTS]
    crash_times = sorted({*client.crashes, *fatal})
    instances = len(truth.instances)
    for t in crash_times:
        running = [
            turn for turn in truth.turns.values() if turn.received <= t and (turn.response_t or 1e18) > t
        ]
        later = any(ended_at >= t - EPS and i + 1 < instances for i, ended_at in ends)
        if running and later:
            out["crash_mid_turn_reconnected"] += 1
        if later and any(
            not session.prompts and session.closed is None and session.created <= t
            for session in truth.sessions.values()
        ):
            out["phantom_resume_possible"] += 1
