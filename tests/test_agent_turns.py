"""What a turn streams: chunks, thoughts, plans, tool calls, permission requests, client fs and
terminal calls, usage with context growth, cancel (late updates), and the first chunk's timing."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from acp_sim.agent import InProcessAgent
from acp_sim.profile import AgentProfile, ModelProfile, ToolCallSpec, TurnProfile, UsageProfile
from acp_sim.trace import chunk_text

from .test_agent_support import ALL_CAPS, NO_CAPS, connect, schema_problems

pytestmark = pytest.mark.anyio


def profile(turn: TurnProfile, usage: UsageProfile | None = None) -> AgentProfile:
    model = ModelProfile(session_new_cold=0.5, session_new_warm=0.5, turn=turn, usage=usage or UsageProfile())
    return AgentProfile(models={"default": model})


EDIT = ToolCallSpec(after_chunk=1, kind="edit", title="Edit app", permission=True, fs="write", duration=0.3)
READ = ToolCallSpec(after_chunk=0, kind="read", title="Read app", fs="read", duration=0.1)
RUN = ToolCallSpec(after_chunk=2, kind="execute", title="Run tests", terminal="pytest -q", duration=0.2)
RICH = TurnProfile(
    chunk_count=3, chunk_interval=0.1, thought_chunks=2, plan_entries=2, tool_calls=[EDIT, READ, RUN]
)


def kinds(client: Any, sid: str) -> list[str]:
    out = []
    for update in client.of(sid):
        kind = update["sessionUpdate"]
        if kind == "tool_call_update":
            kind += ":" + update["status"]
        out.append(kind)
    return out


async def test_a_rich_turn_streams_thoughts_plan_tools_and_usage_in_order() -> None:
    launcher = InProcessAgent(profile(RICH), seed=1)
    async with connect(launcher, capabilities=ALL_CAPS) as client:
        sid = await client.new_session()
        result = await client.prompt(sid, "fix it")
    assert kinds(client, sid) == [
        "agent_thought_chunk", "agent_thought_chunk", "plan",
        "tool_call", "tool_call_update:in_progress", "tool_call_update:completed",  # READ, at chunk 0
        "agent_message_chunk",
        "tool_call", "tool_call_update:in_progress", "tool_call_update:completed",  # EDIT (permission)
        "agent_message_chunk",
        "tool_call", "tool_call_update:in_progress", "tool_call_update:completed",  # RUN (terminal)
        "agent_message_chunk", "plan", "usage_update",
    ]  # fmt: skip
    assert result["stopReason"] == "end_turn"
    plans = client.of(sid, "plan")
    assert [e["status"] for e in plans[0]["entries"]] == ["in_progress", "pending"]
    assert [e["status"] for e in plans[1]["entries"]] == ["completed", "completed"]
    assert [m for m, _ in client.requests] == [
        "fs/read_text_file", "session/request_permission", "fs/write_text_file",
        "terminal/create", "terminal/wait_for_exit", "terminal/output", "terminal/release",
    ]  # fmt: skip
    permission = client.requests[1][1]
    assert permission["toolCall"]["toolCallId"] == f"call_{sid[:8]}_t1_0"
    assert [o["optionId"] for o in permission["options"]] == ["allow_always", "allow", "reject"]
    assert client.requests[2][1]["path"] == "/w/src/app.py"
    terminal_update = client.of(sid, "tool_call_update")[-1]
    assert terminal_update["content"][0] == {"type": "terminal", "terminalId": "term-1"}
    # Ground truth: requests both ways and their responses, in the trace.
    trace = launcher.current.trace
    agent_requests = [
        e.method for e in trace.events if e.kind == "send" and e.id is not None and "method" in e.message
    ]  # type: ignore[operator]
    client_answers = [
        e.method for e in trace.events if e.kind == "recv" and e.message and "result" in e.message
    ]
    assert agent_requests == client_answers == [m for m, _ in client.requests]
    assert all(e.session == sid and e.turn == 1 for e in trace.events if e.method in agent_requests)
    assert schema_problems(trace.events) == []
    # Output tokens count thoughts and message chunks (3 words each).
    assert result["usage"]["outputTokens"] == (2 + 3) * 3


async def test_without_advertised_capabilities_the_agent_never_calls_the_client() -> None:
    launcher = InProcessAgent(profile(RICH.model_copy(update={"tool_calls": [READ, RUN]})), seed=2)
    async with connect(launcher, capabilities=NO_CAPS) as client:
        sid = await client.new_session()
        result = await client.prompt(sid)
    assert client.requests == []
    assert result["stopReason"] == "end_turn"
    assert [u["status"] for u in client.of(sid, "tool_call_update")] == ["in_progress", "completed"] * 2
    own_requests = [
        e
        for e in launcher.current.trace.events
        if e.kind == "send" and e.message and "method" in e.message and e.id
    ]
    assert own_requests == []  # the agent sent no request at all


async def test_a_failing_terminal_command_fails_its_tool_call() -> None:
    turn = TurnProfile(chunk_count=1, tool_calls=[RUN.model_copy(update={"after_chunk": 0})])
    launcher = InProcessAgent(profile(turn), seed=3)
    async with connect(launcher, capabilities=ALL_CAPS, terminal_exit=2) as client:
        sid = await client.new_session()
        await client.prompt(sid)
    assert [u["status"] for u in client.of(sid, "tool_call_update")] == ["in_progress", "failed"]


@pytest.mark.parametrize("outcome", ["reject", "cancelled"])
async def test_permission_reject_fails_the_tool_and_a_cancelled_outcome_ends_the_turn(outcome: str) -> None:
    turn = TurnProfile(chunk_count=3, chunk_interval=0.1, tool_calls=[EDIT])
    launcher = InProcessAgent(profile(turn), seed=4)
    async with connect(launcher, capabilities=ALL_CAPS, permission=outcome) as client:
        sid = await client.new_session()
        result = await client.prompt(sid)
    failed = client.of(sid, "tool_call_update")
    if outcome == "reject":
        assert result["stopReason"] == "end_turn"
        assert [u["status"] for u in failed] == ["failed"]
        assert "rejected" in failed[0]["content"][0]["content"]["text"]
        assert len(client.texts(sid)) == 3  # the turn goes on
    else:
        assert result == {"stopReason": "cancelled"}
        assert failed == []
        assert len(client.texts(sid)) == 1  # stopped at the tool call, after chunk 1
        assert client.of(sid, "usage_update") == []
    assert [m for m, _ in client.requests] == ["session/request_permission"]  # no fs write either way


async def test_cancel_while_a_permission_request_is_pending_ends_the_turn_cancelled() -> None:
    turn = TurnProfile(chunk_count=3, chunk_interval=0.1, tool_calls=[EDIT])
    launcher = InProcessAgent(profile(turn), seed=5)
    async with connect(launcher, capabilities=ALL_CAPS, permission="hold") as client:
        sid = await client.new_session()
        async with anyio.create_task_group() as tg:
            result: dict[str, Any] = {}

            async def run() -> None:
                result.update(await client.prompt(sid))

            tg.start_soon(run)
            await client.wait_until(lambda: bool(client.requests))
            await client.cancel(sid)
        cancelled_at = anyio.current_time()
        client.release_permissions("cancelled")  # the client answers late, as the spec asks
        client.permission = "allow"
        await anyio.sleep(1)
        again = await client.prompt(sid, "next")
    assert result == {"stopReason": "cancelled"}
    assert again["stopReason"] == "end_turn"
    trace = launcher.current.trace
    cancel = next(e for e in trace.events if e.method == "session/cancel")
    response = next(e for e in trace.events if e.kind == "send" and e.method == "session/prompt")
    assert response.t == cancel.t <= cancelled_at  # answered in the same instant
    late = next(e for e in trace.events if e.kind == "recv" and e.method == "session/request_permission")
    assert late.seq > response.seq
    assert late.message["result"]["outcome"] == {"outcome": "cancelled"}
    assert late.session == sid
    assert late.turn == 1
    assert trace.of_kind("bad_input") == []  # the late answer found its request


async def test_late_updates_after_cancel_arrive_before_the_cancelled_response() -> None:
    turn = TurnProfile(chunk_count=10, chunk_interval=0.1, late_updates_after_cancel=3)
    launcher = InProcessAgent(profile(turn), seed=6)
    async with connect(launcher) as client:
        sid = await client.new_session()
        await client.prompt_and_cancel(sid, 2)
    trace = launcher.current.trace
    cancel = next(e for e in trace.events if e.method == "session/cancel")
    response = next(e for e in trace.events if e.kind == "send" and e.method == "session/prompt")
    late = [e for e in trace.updates(sid, 1) if e.seq > cancel.seq]
    assert [chunk_text(e).split("]")[0] for e in late] == [f"[{sid[:8]} t1 c{i}" for i in (2, 3, 4)]  # type: ignore[union-attr]
    assert all(e.seq < response.seq for e in late)
    assert response.message["result"] == {"stopReason": "cancelled"}  # type: ignore[index]


async def test_usage_is_deterministic_and_grows_with_the_context() -> None:
    usage = UsageProfile(system_tokens=1000, cache=True, context_window=8000)
    launcher = InProcessAgent(profile(TurnProfile(chunk_count=4, chunk_words=5), usage), seed=7)
    async with connect(launcher) as client:
        sid = await client.new_session()
        results = [await client.prompt(sid, "x" * 40) for _ in range(3)]
    usages = [r["usage"] for r in results]
    prompt, output = 10, 20  # 40 chars / 4; 4 chunks x 5 words
    assert usages[0] == {"inputTokens": prompt, "outputTokens": output, "cachedReadTokens": 0,
                         "cachedWriteTokens": 1000, "totalTokens": 1030}  # fmt: skip
    assert usages[1] == {"inputTokens": prompt, "outputTokens": output, "cachedReadTokens": 1000,
                         "cachedWriteTokens": 30, "totalTokens": 1060}  # fmt: skip
    assert usages[2]["totalTokens"] == 1090  # every turn costs more than the last
    updates = client.of(sid, "usage_update")
    assert [u["used"] for u in updates] == [1030, 1060, 1090]
    assert {u["size"] for u in updates} == {8000}
    costs = [u["cost"]["amount"] for u in updates]
    assert costs == sorted(costs)
    assert costs[0] == round((10 * 3 + 20 * 15 + 1000 * 3.75) / 1e6, 9)
    trace = launcher.current.trace
    for n in (1, 2, 3):  # the usage_update is the last update before the response
        updates_n = list(trace.updates(sid, n))
        response = next(
            e for e in trace.events if e.kind == "send" and e.method == "session/prompt" and e.turn == n
        )
        assert updates_n[-1].update_kind == "usage_update"
        assert updates_n[-1].seq == response.seq - 1


async def test_a_cancelled_turn_reports_no_usage_but_its_context_stays() -> None:
    launcher = InProcessAgent(profile(TurnProfile(chunk_count=5, chunk_interval=0.1, chunk_words=2)), seed=8)
    async with connect(launcher) as client:
        sid = await client.new_session()
        assert await client.prompt_and_cancel(sid, 2, "abcd") == {"stopReason": "cancelled"}
        after = await client.prompt(sid, "abcd")
    assert client.of(sid, "usage_update")[0]["used"] == after["usage"]["totalTokens"]
    assert after["usage"]["inputTokens"] == (1 + 2 * 2) + 1  # turn 1's prompt and 2 chunks, then this prompt


async def test_first_chunk_at_zero_delay_is_written_in_the_instant_the_prompt_arrives() -> None:
    launcher = InProcessAgent(
        profile(TurnProfile(first_chunk_delay=0, chunk_count=2, chunk_interval=1.0)), seed=9
    )
    async with connect(launcher) as client:
        sid = await client.new_session()
        await client.prompt(sid)
    trace = launcher.current.trace
    prompt = next(e for e in trace.events if e.kind == "recv" and e.method == "session/prompt")
    first = next(trace.updates(sid, 1))
    assert first.t == prompt.t
    assert first.seq == prompt.seq + 2  # right after the recv and its store write; nothing in between


async def test_chunk_texts_are_unique_across_sessions_and_turns() -> None:
    launcher = InProcessAgent(profile(TurnProfile(chunk_count=4, chunk_interval=0.01)), seed=10)
    async with connect(launcher) as client:
        sids = [await client.new_session() for _ in range(3)]
        for _ in range(2):
            async with anyio.create_task_group() as tg:
                for sid in sids:
                    tg.start_soon(client.prompt, sid)
    texts = [
        chunk_text(e) for e in launcher.current.trace.updates() if e.update_kind == "agent_message_chunk"
    ]
    assert len(texts) == len(set(texts)) == 24
    for sid in sids:
        assert [t.split("]")[0] for t in client.texts(sid)] == [
            f"[{sid[:8]} t{n} c{i}" for n in (1, 2) for i in range(4)
        ]
