"""P8 no resumed phantoms: a bridge resumes (``session/load``, ``session/resume``) only sessions
that had a turn.

A session that never had a turn has nothing an agent restart keeps; resuming it after a
reconnect resumes a phantom (an error at best, an empty conversation the caller thinks is theirs
at worst). Exempt: a session a prompt may have been written to just before the agent died (the
bridge cannot tell it from one that had a turn).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pytest_acp.properties.truth import EPS

if TYPE_CHECKING:
    from pytest_acp.properties.context import CheckContext


def check_phantoms(ctx: CheckContext) -> None:
    for instance, method, sid, t in ctx.truth.resumes:
        if (instance, sid) in ctx.truth.sessions and ctx.truth.sessions[(instance, sid)].via == "session/new":
            continue  # created by this very instance: resuming it in-process is fine
        prompted_before = any(
            turn.session == sid and turn.instance < instance for turn in ctx.truth.turns.values()
        )
        if not prompted_before and not _lost_prompt_for(ctx, instance, sid, t):
            keys = {k for (i, s), ks in ctx.served.items() if s == sid for k in ks}
            ctx.add(
                "P8",
                f"{method} of agent session {sid[:8]}, which never had a turn (a phantom: nothing of it "
                "survives an agent restart)",
                key=sorted(keys)[0] if keys else None,
                t=t,
                session=sid,
            )


def _lost_prompt_for(ctx: CheckContext, instance: int, sid: str, resumed: float) -> bool:
    """A prompt that may have been written to ``sid`` but never reached the agent (the agent died
    first): the bridge cannot tell that session from one that had a turn, so resuming it is fair.
    Only a prompt begun before the resume: one begun later cannot excuse it (nor undo a verdict)."""
    created = next((s for (i, s_id), s in ctx.truth.sessions.items() if s_id == sid and i < instance), None)
    if created is None:
        return False
    for turn in ctx.client.turns.values():
        ck = ctx.client.keys[turn.key]
        if ctx.attempts[(turn.key, turn.turn)] or ck.cwd != created.cwd:
            continue
        if created.requested - EPS <= turn.started <= resumed + EPS:
            return True
    return False
