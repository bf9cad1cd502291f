"""The simulated agent's token model: each session pays its own prefix (system prompt + the tool
catalog of its MCP servers) on every turn, unless a cross-session cache shares the prefix write."""

from __future__ import annotations

import pytest

from acp_sim.agent import InProcessAgent
from acp_sim.orchestrator import Orchestrator
from acp_sim.profile import (
    CLAUDE_CODE,
    AgentProfile,
    ModelProfile,
    TurnProfile,
    UsageProfile,
    load_profile_data,
)

pytestmark = pytest.mark.anyio

HTTP = [
    {"type": "http", "name": n, "url": f"http://127.0.0.1:9/{n}", "headers": []} for n in ("docs", "browser")
]


def profile(**usage: object) -> AgentProfile:
    spec = UsageProfile(
        system_tokens=1_000, mcp_tool_tokens=300, mcp_tool_tokens_by_name={"browser": 700}, **usage
    )
    turn = TurnProfile(chunk_count=2, chunk_words=5)  # 10 output tokens per turn
    return AgentProfile(
        models={"default": ModelProfile(session_new_cold=0.5, session_new_warm=0.5, turn=turn, usage=spec)}
    )


async def test_the_prefix_grows_with_the_sessions_mcp_servers() -> None:
    async with Orchestrator(InProcessAgent(profile(), seed=1)) as orch:
        bare = await orch.open_session(cwd="/w")
        tooled = await orch.open_session(cwd="/w", mcp_servers=HTTP)
        one, two = bare.prompt("x" * 40), tooled.prompt("x" * 40)  # 10 prompt tokens each
        await one.result()
        await two.result()
        # No cache: the whole prefix at the input price; docs 300 + browser 700 tools.
        assert one.usage["inputTokens"] == 1_000 + 10
        assert two.usage["inputTokens"] == 1_000 + 300 + 700 + 10
        second = tooled.prompt("y" * 40)
        await second.result()
        assert second.usage["inputTokens"] == 2_000 + 10 + 10 + 10  # prefix again, plus the context


async def test_session_cache_writes_each_prefix_and_shared_cache_writes_it_once() -> None:
    for scope, writes in (("session", [1_000, 1_000]), ("shared", [1_000, 0])):
        async with Orchestrator(InProcessAgent(profile(cache=True, cache_scope=scope), seed=1)) as orch:
            a = await orch.open_session(cwd="/w")
            b = await orch.open_session(cwd="/w")
            first = a.prompt("x" * 40)
            await first.result()
            second = b.prompt("x" * 40)
            await second.result()
            assert [first.usage["cachedWriteTokens"], second.usage["cachedWriteTokens"]] == writes, scope
            assert second.usage["cachedReadTokens"] == 1_000 - writes[1]
            assert second.usage["totalTokens"] == first.usage["totalTokens"] == 1_000 + 10 + 10


async def test_a_different_prefix_is_not_shared() -> None:
    async with Orchestrator(InProcessAgent(profile(cache=True, cache_scope="shared"), seed=1)) as orch:
        a = await orch.open_session(cwd="/w")
        b = await orch.open_session(cwd="/w", mcp_servers=HTTP[:1])
        for s in (a, b):
            turn = s.prompt("x" * 40)
            await turn.result()
            assert turn.usage["cachedReadTokens"] == 0


def test_profiles_written_before_the_token_model_are_unchanged() -> None:
    old = load_profile_data({"models": {"default": {"usage": {"system_tokens": 15000, "cache": True}}}})
    assert old.models["default"].usage.mcp_tool_tokens == 0
    assert old.models["default"].usage.cache_scope == "session"
    assert CLAUDE_CODE.models["default"].usage.tool_tokens(["a", "b"]) == 0
    with pytest.raises(Exception, match="cache_scope"):
        load_profile_data({"models": {"default": {"usage": {"cache_scope": "global"}}}})
