"""The adapter for the reference orchestrator: the default bridge under test, and the base of the
seeded-bug catalog (each bug is this adapter over an orchestrator subclass with one mistake).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from acp_sim.orchestrator import Orchestrator, Session, TurnFailed
from pytest_acp.adapter import AgentUnderTest, BridgeCapabilities, TurnEnd, TurnOutput

# Suited to the state machine's agent (turns of up to 30 s, gaps of up to 6 s between chunks):
# only a stall or a hang makes them fire.
TURN_TIMEOUT = 40.0
IDLE_TIMEOUT = 15.0
# The reference orchestrator delivers every update kind to its caller, empty chunks included.
ALL_KINDS = frozenset(
    {
        "agent_message_chunk",
        "agent_thought_chunk",
        "tool_call",
        "tool_call_update",
        "plan",
    }
)


class ReferenceAdapter:
    """``pytest_acp.adapter.BridgeAdapter`` for ``acp_sim.orchestrator.Orchestrator``."""

    def __init__(self, orch: Orchestrator) -> None:
        self.orch = orch
        self.sessions: dict[str, Session] = {}
        self.capabilities = BridgeCapabilities(
            turn_timeout=orch.turn_timeout, idle_timeout=orch.idle_timeout, kinds=ALL_KINDS
        )

    async def open_session(
        self, key: str, *, cwd: str, mcp_servers: list[dict[str, Any]], model: str | None
    ) -> None:
        self.sessions[key] = await self.orch.open_session(cwd=cwd, mcp_servers=mcp_servers, model=model)

    async def prompt(self, key: str, text: str, out: TurnOutput) -> TurnEnd:
        turn = self.sessions[key].prompt(text)
        try:
            async for update in turn:
                await out.update(update.raw)
        except TurnFailed as exc:
            return TurnEnd(error=exc.reason, timed_out="timeout" in exc.reason)
        return TurnEnd(stop_reason=turn.stop_reason, usage=turn.usage)

    async def cancel(self, key: str) -> None:
        await self.sessions[key].cancel()

    async def close(self, key: str) -> None:
        await self.sessions.pop(key).close()

    def usage(self, key: str) -> dict[str, int] | None:
        session = self.sessions.get(key)
        return dict(session.usage) if session is not None else None


def _has(obj: Any, name: str) -> bool:
    return callable(getattr(obj, name, None))


class ReferenceAdapterFull(ReferenceAdapter):
    """Adds pre-warm and cwd changes when the orchestrator offers them."""

    async def prewarm(self, *, cwd: str, mcp_servers: list[dict[str, Any]], model: str | None) -> None:
        await self.orch.prewarm(cwd=cwd, mcp_servers=mcp_servers, model=model, wait=True)  # type: ignore[attr-defined]

    async def change_cwd(self, old: str, new: str | None = None) -> None:
        await self.orch.change_cwd(old, new)  # type: ignore[attr-defined]


def adapter_for(orch: Orchestrator) -> ReferenceAdapter:
    if _has(orch, "prewarm") and _has(orch, "change_cwd"):
        return ReferenceAdapterFull(orch)
    return ReferenceAdapter(orch)


def make_bridge(orchestrator: type[Orchestrator] = Orchestrator, **options: Any) -> Any:
    """An adapter factory for ``orchestrator`` (the reference, or a subclass) built with ``options``."""
    options = {"turn_timeout": TURN_TIMEOUT, "idle_timeout": IDLE_TIMEOUT, **options}

    @asynccontextmanager
    async def bridge(agent: AgentUnderTest) -> AsyncIterator[ReferenceAdapter]:
        async with orchestrator(agent.launcher, **options) as orch:
            yield adapter_for(orch)

    bridge.__name__ = f"{orchestrator.__name__}_bridge"
    bridge.__qualname__ = bridge.__name__
    return bridge


bridge = make_bridge()
"""The reference orchestrator as a bridge under test (``--acp-bridge pytest_acp.reference:bridge``)."""
