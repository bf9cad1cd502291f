"""P6 no leaked sessions or processes: what the bridge closed or stopped is gone at the agent.

A key closed on a bridge with per-session close must close its agent sessions (``session/close``
sent, where the agent can close): otherwise its process and MCP servers live on. A closed
session's MCP processes must be reaped, and nothing the run started may be running after the
bridge stopped (the harness's leak guard). Failed opens whose session lives on are
``failed_opens``'.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pytest_acp.properties.truth import EPS, FATAL_FAULTS

if TYPE_CHECKING:
    from pytest_acp.properties.client_log import ClientKey
    from pytest_acp.properties.context import CheckContext


def check_sessions_closed(ctx: CheckContext) -> None:
    for ck in ctx.client.keys.values():
        if ck.closed is None or not ctx.caps.session_close:
            continue  # a bridge with no per-session close forgets the key (its stop is judged)
        for (instance, sid), keys in ctx.served.items():
            if ck.key not in keys or not ctx.truth.close_capable.get(instance, False):
                continue
            if _gone_before_close(ctx, instance, ck):
                continue  # the whole agent is gone; nothing of it can leak
            session = ctx.truth.sessions.get((instance, sid))
            if session is None or session.closed is not None:
                continue
            if not ctx.final and instance not in ctx.truth.ended:
                continue  # a close may still come (there is no deadline): decided when its agent ends
            ctx.add(
                "P6",
                f"key closed at t={ck.closed:.6f}, but its agent session {sid[:8]} was never closed "
                "(session/close not sent): its process and MCP servers live on",
                key=ck.key,
                t=ck.closed,
                session=sid,
            )
    for (instance, sid), spawned in ctx.truth.spawned.items():
        session = ctx.truth.sessions.get((instance, sid))
        if session is None or session.closed is None or not ctx.final:
            continue
        live = len(spawned) - ctx.truth.reaped.get((instance, sid), 0)
        if live > 0 and instance not in ctx.truth.ended:
            ctx.add(
                "P6",
                f"{live} MCP process(es) of agent session {sid[:8]} still running after session/close",
                t=session.closed,
                session=sid,
            )


def _gone_before_close(ctx: CheckContext, instance: int, ck: ClientKey) -> bool:
    """The agent instance ended by the time the key's close returned. In the same instant the log
    orders them: an end the harness caused (its kill, an injected fatal fault) logged after the close
    came after it, so the agent was there to be told and the session leaked (a check of the run up
    to the close says so; the kill logged next must not undo it). An end the log does not explain
    (the agent's own fault) may have come first."""
    assert ck.closed is not None
    assert ck.closed_seq is not None
    client = ctx.client
    ended = ctx.truth.ended.get(instance)
    if ended is not None and instance in ctx.truth.estimated:
        # Its last event is no proof it was gone: a kill the harness logged since is when it was.
        kills = [
            t
            for t, killed in zip(client.crashes, client.crash_instances, strict=True)
            if killed == instance and t >= ended - EPS
        ]
        ended = min(kills, default=ended)
    if ended is None or ended > ck.closed + EPS:
        return False
    if ended < ck.closed - EPS:
        return True
    causes = [
        seq
        for t, seq, killed in zip(client.crashes, client.crash_seqs, client.crash_instances, strict=True)
        if killed in (instance, None) and abs(t - ended) <= EPS
    ]
    causes += [
        entry.seq
        for entry in client.faults
        if abs(entry.t - ended) <= EPS and str((entry.detail or {}).get("kind")) in FATAL_FAULTS
    ]
    return not causes or min(causes) < ck.closed_seq


def check_processes(ctx: CheckContext) -> None:
    for entry in ctx.client.leaks:
        procs = (entry.detail or {}).get("processes", [])
        listing = "; ".join(f"pid {p.get('pid')}: {p.get('cmdline')}" for p in procs)
        ctx.add("P6", f"{len(procs)} process(es) left running after the bridge stopped: {listing}", t=entry.t)
