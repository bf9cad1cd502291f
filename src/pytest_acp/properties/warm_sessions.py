"""P7 pre-warm: a warm session is used only when it fits, and makes opening fast when it does.

A prompt must run in an agent session made for its key's cwd and MCP set (the bridge's own set
when it declares one): a pooled or reused session for another project runs the user's prompt in
the wrong directory. A session made before its project's cwd changed must not serve a
conversation opened after. And when a warm session for a configuration was ready, opening that
configuration must take at most 1% of a cold ``session/new`` (else the pool is not used).
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any

from pytest_acp.adapter import mcp_config
from pytest_acp.properties.client_log import ClientTurn
from pytest_acp.properties.truth import EPS, AgentTurn

if TYPE_CHECKING:
    from pytest_acp.properties.context import CheckContext


def check_cwd(ctx: CheckContext, turn: ClientTurn, last: AgentTurn) -> None:
    ck = ctx.client.keys.get(turn.key)
    state = ctx.truth.cwd_at(last)
    if ck is None or state is None:
        return
    cwd, mcp = state
    want = ck.cwd
    if cwd is not None and cwd != want:
        ctx.add(
            "P7",
            f"prompt ran in an agent session created for cwd {cwd!r}, but the session was opened "
            f"for {want!r} (a warm or reused session that did not match)",
            key=turn.key,
            turn=turn.turn,
            t=turn.started,
            session=last.session,
        )
    elif mcp != ctx.mcp_wanted(ck.mcp):
        wanted = "the bridge's own set is" if ctx.caps.mcp_servers is not None else "the key asked for"
        ctx.add(
            "P7",
            f"prompt ran in an agent session with MCP servers {list(mcp)}, but {wanted} "
            f"{list(ctx.mcp_wanted(ck.mcp))}",
            key=turn.key,
            turn=turn.turn,
            t=turn.started,
            session=last.session,
        )


def check_prewarm(ctx: CheckContext) -> None:
    _check_stale_warm(ctx)
    if not ctx.client.prewarms:
        return
    cold = ctx.truth.session_new_durations
    cold_latency = max(cold) if cold else None
    # Whether a warm session for a configuration is ready: set when a pre-warm returns, used up
    # by the next open of that configuration, lost on a cwd change of its cwd or a crash.
    ready: dict[tuple[str, tuple[str, ...], Any], bool] = defaultdict(bool)
    events: list[tuple[int, int, Any]] = []
    for start, done in ctx.client.prewarms:
        if done is not None and done.error is None:
            detail = start.detail or {}
            config = (
                str(detail.get("cwd")),
                ctx.mcp_wanted(mcp_config(detail.get("mcp_servers") or [])),
                detail.get("model"),
            )
            events.append((done.seq, 1, config))
    for start, _done in ctx.client.cwd_changes:
        events.append((start.seq, 0, ("cwd", (start.detail or {}).get("old"))))
    for seq in ctx.client.crash_seqs:
        events.append((seq, 0, ("crash", None)))
    for ck in ctx.client.keys.values():
        events.append((ck.open_seq, 2, ck))
    for _seq, what, item in sorted(events, key=lambda e: e[0]):
        if what == 0:
            for config in list(ready):
                if item[0] == "crash" or config[0] == item[1]:
                    ready[config] = False
            continue
        if what == 1:
            ready[item] = True
            continue
        ck = item
        config = (ck.cwd, ctx.mcp_wanted(ck.mcp), ck.model)
        if not ready[config]:
            continue
        ready[config] = False
        if not _warm_exists(ctx, config, ck.opened_at):
            continue  # the agent holds no such session any more (it died with a crash)
        if ck.open_done is None or ck.open_failed or cold_latency is None:
            continue
        took = ck.open_done - ck.opened_at
        if took > 0.01 * cold_latency + EPS:
            ctx.add(
                "P7",
                f"a warm session for cwd {ck.cwd!r} was ready, but opening took {took:.3f} s "
                f"(cold session/new: {cold_latency:.3f} s; warm must be within 1%)",
                key=ck.key,
                t=ck.open_done,
            )


def _warm_exists(ctx: CheckContext, config: tuple[str, tuple[str, ...], Any], t: float) -> bool:
    """The ground truth: a live agent holds an unused session made for this configuration at ``t``."""
    cwd, mcp, _model = config
    for (instance, _sid), session in ctx.truth.sessions.items():
        ended = ctx.truth.ended.get(instance)
        if ended is not None and ended <= t + EPS:
            continue
        if session.via != "session/new" or session.cwd != cwd or session.mcp != mcp:
            continue
        if session.created > t + EPS or (session.closed is not None and session.closed <= t + EPS):
            continue
        if any(p <= t + EPS for p in session.prompts):
            continue
        if any(
            ck.cwd == cwd and ck.opened_at - EPS <= session.requested <= (ck.open_done or t) + EPS
            for ck in ctx.client.keys.values()
        ):
            continue  # made for an open_session call: that key's own session, not a warm one
        return True
    return False


def _check_stale_warm(ctx: CheckContext) -> None:
    """A session made before its project's cwd changed must not serve a conversation opened after."""
    done_changes = [(start, done) for start, done in ctx.client.cwd_changes if done is not None]
    if not done_changes:
        return
    for (key, n), attempts in ctx.attempts.items():
        if n != 1 or not attempts:
            continue
        ck = ctx.client.keys[key]
        session = ctx.truth.session_of(attempts[0])
        if session is None or session.via != "session/new":
            continue
        for start, done in done_changes:
            assert done is not None
            old = (start.detail or {}).get("old")
            if session.cwd == old and session.requested < start.t - EPS and ck.open_seq > done.seq:
                ctx.add(
                    "P7",
                    f"opened at t={ck.opened_at:.6f} on a session created for {old!r} at "
                    f"t={session.requested:.6f}, before that cwd changed at t={start.t:.6f} (a warm "
                    "session the cwd change should have invalidated)",
                    key=key,
                    t=ck.opened_at,
                    session=session.id,
                )
                break
