"""Session lifecycle (ACP schema v1.19): new, load, resume, list, close, set_mode, set_config_option,
the store ("disk") across restarts, phantom sessions, prompt queueing; in-process and over stdio."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from acp_sim.agent import InProcessAgent
from acp_sim.profile import CLAUDE_CODE, AgentProfile, ModelProfile, TurnProfile, load_profile_data
from acp_sim.trace import chunk_text, load_jsonl

from .test_agent_support import connect, schema_problems, stdio

pytestmark = pytest.mark.anyio

WS = {"cwd": "/w", "mcpServers": []}
NOT_FOUND = {"code": -32603, "message": "Internal error", "data": {"details": "Session not found"}}


def quick(**changes: Any) -> AgentProfile:
    turn = TurnProfile(chunk_count=3, chunk_interval=0.1)
    return AgentProfile(
        models={"default": ModelProfile(session_new_cold=1.0, session_new_warm=0.5, turn=turn)}, **changes
    )


def store_ops(launcher: InProcessAgent, n: int = -1) -> list[dict[str, Any]]:
    return [e.detail for e in launcher.agents[n].trace.of_kind("store") if e.detail is not None]


async def test_session_new_answers_like_the_adapter_then_announces_commands() -> None:
    launcher = InProcessAgent(CLAUDE_CODE, seed=1)
    async with connect(launcher) as client:
        result = await client.c.request("session/new", WS)
    sid = result["sessionId"]
    assert list(result) == ["sessionId", "models", "modes", "configOptions"]
    assert result["models"]["currentModelId"] == "default"
    assert [m["modelId"] for m in result["models"]["availableModels"]] == [
        "default",
        "sonnet[1m]",
        "opus[1m]",
        "haiku",
    ]
    assert result["modes"]["currentModeId"] == "default"
    assert [c["id"] for c in result["configOptions"]] == ["mode", "model"]
    events = [e for e in launcher.current.trace.events if e.session == sid and e.kind == "send"]
    assert [e.method for e in events] == ["session/new", "session/update"]
    assert events[1].update_kind == "available_commands_update"
    assert events[1].t == events[0].t  # right behind the response
    commands = events[1].message["params"]["update"]["availableCommands"]  # type: ignore[index]
    assert [c["name"] for c in commands][:3] == ["update-config", "debug", "simplify"]
    assert schema_problems(launcher.current.trace.events) == []


async def test_load_of_a_held_session_replays_its_history_before_responding() -> None:
    launcher = InProcessAgent(quick(), seed=2)
    async with connect(launcher) as client:
        sid = await client.new_session()
        await client.prompt(sid, "first question")
        await client.prompt(sid, "second question")
        turn_texts = [client.texts(sid)[:3], client.texts(sid)[3:]]
        client.updates.clear()
        start = anyio.current_time()
        result = await client.c.request("session/load", {"sessionId": sid, **WS})
        assert anyio.current_time() == start  # a session the process holds loads at once
    assert result["sessionId"] == sid
    replay = [(u["sessionUpdate"], u["content"]["text"]) for _, u in client.updates]
    assert replay == [
        ("user_message_chunk", "first question"),
        ("agent_message_chunk", "".join(turn_texts[0])),
        ("user_message_chunk", "second question"),
        ("agent_message_chunk", "".join(turn_texts[1])),
    ]
    trace = launcher.current.trace
    load_response = next(e for e in trace.events if e.method == "session/load" and e.kind == "send" and e.id)
    assert all(e.seq < load_response.seq for e in trace.updates(sid) if e.update_kind == "user_message_chunk")


async def test_resume_and_load_of_a_held_phantom_succeed_at_once() -> None:
    launcher = InProcessAgent(CLAUDE_CODE, seed=3)
    async with connect(launcher) as client:
        sid = await client.new_session()
        start = anyio.current_time()
        resumed = await client.c.request("session/resume", {"sessionId": sid, **WS})
        loaded = await client.c.request("session/load", {"sessionId": sid, **WS})
        assert anyio.current_time() == start
        assert client.of(sid, "user_message_chunk") == []  # nothing to replay
    assert resumed["sessionId"] == loaded["sessionId"] == sid
    assert list(resumed) == ["sessionId", "modes", "models", "configOptions"]
    assert store_ops(launcher) == []  # never touched the disk: the process holds it


async def test_list_shows_sessions_with_a_turn_newest_first_filtered_and_paged() -> None:
    launcher = InProcessAgent(quick(list_page_size=2), seed=4)
    async with connect(launcher) as client:
        a = await client.new_session("/a")
        b = await client.new_session("/a")
        c = await client.new_session("/b")
        await client.new_session("/a")  # a phantom: not on disk, not listed
        for sid, text in ((a, "alpha"), (c, "charlie"), (b, "bravo")):
            await client.prompt(sid, text)
        first = await client.c.request("session/list", {})
        second = await client.c.request("session/list", {"cursor": first["nextCursor"]})
        only_a = await client.c.request("session/list", {"cwd": "/a"})
        bad = await client.error_of("session/list", {"cursor": "x"})
    listed = [s["sessionId"] for s in first["sessions"] + second["sessions"]]
    assert listed == [b, c, a]  # newest first
    assert "nextCursor" not in second
    assert [s["sessionId"] for s in only_a["sessions"]] == [b, a]
    assert [s["title"] for s in first["sessions"]] == ["bravo", "charlie"]
    stamps = [s["updatedAt"] for s in first["sessions"] + second["sessions"]]
    assert stamps == sorted(stamps, reverse=True)
    assert all(s.endswith("Z") for s in stamps)
    assert bad["code"] == -32602
    assert [d["count"] for d in store_ops(launcher) if d["op"] == "list"] == [2, 1, 2]
    assert schema_problems(launcher.current.trace.events) == []


async def test_close_cancels_the_turn_and_a_second_close_or_prompt_fails_like_the_adapter() -> None:
    launcher = InProcessAgent(quick(), seed=5)
    async with connect(launcher) as client:
        sid = await client.new_session()
        async with anyio.create_task_group() as tg:
            outcome: dict[str, Any] = {}

            async def run() -> None:
                outcome.update(await client.prompt(sid))

            tg.start_soon(run)
            await client.wait_updates(sid, 1)
            assert await client.c.request("session/close", {"sessionId": sid}) == {}
        again = await client.error_of("session/close", {"sessionId": sid})
        prompt = await client.error_of("session/prompt", {"sessionId": sid, "prompt": []})
        unknown = await client.error_of("session/close", {"sessionId": "nope"})
    assert outcome == {"stopReason": "cancelled"}
    assert again == prompt == unknown == NOT_FOUND
    assert len(client.texts(sid)) == 1


async def test_set_mode_and_config_options_switch_mode_and_per_model_settings() -> None:
    launcher = InProcessAgent(CLAUDE_CODE, seed=6)
    async with connect(launcher) as client:
        sid = await client.new_session()
        assert await client.c.request("session/set_mode", {"sessionId": sid, "modeId": "plan"}) == {}
        bad_mode = await client.error_of("session/set_mode", {"sessionId": sid, "modeId": "yolo"})
        first = await client.prompt(sid, "same prompt")
        options = await client.c.request(
            "session/set_config_option", {"sessionId": sid, "configId": "model", "value": "haiku"}
        )
        bad_model = await client.error_of(
            "session/set_config_option", {"sessionId": sid, "configId": "model", "value": "gpt"}
        )
        second = await client.prompt(sid, "same prompt")
        resumed = await client.c.request("session/resume", {"sessionId": sid, **WS})
    assert bad_mode["code"] == bad_model["code"] == -32602
    assert bad_mode["data"]["modeId"] == "yolo"
    current = {o["id"]: o["currentValue"] for o in options["configOptions"]}
    assert current == {"mode": "plan", "model": "haiku"}
    assert resumed["modes"]["currentModeId"] == "plan"
    assert resumed["models"]["currentModelId"] == "haiku"
    costs = [u["cost"]["amount"] for u in client.of(sid, "usage_update")]
    u1, u2 = first["usage"], second["usage"]
    # Turn 1 on the default model ($3/$15, cache write $3.75); turn 2 on haiku ($1/$5, $0.1/$1.25).
    assert costs[0] == round(
        (u1["inputTokens"] * 3 + u1["outputTokens"] * 15 + u1["cachedWriteTokens"] * 3.75) / 1e6, 9
    )
    haiku = (
        u2["inputTokens"] * 1
        + u2["outputTokens"] * 5
        + u2["cachedReadTokens"] * 0.1
        + u2["cachedWriteTokens"] * 1.25
    ) / 1e6
    assert costs[1] == round(costs[0] + haiku, 9)
    assert schema_problems(launcher.current.trace.events) == []


async def test_after_a_restart_sessions_with_a_turn_come_back_and_phantoms_are_gone() -> None:
    launcher = InProcessAgent(CLAUDE_CODE, seed=7)
    async with connect(launcher) as client:
        real = await client.new_session()
        phantom = await client.new_session()
        await client.prompt(real, "remember this")
        launcher.crash()
    first_texts = client.texts(real)
    async with connect(launcher) as client:
        start = anyio.current_time()
        gone = await client.error_of("session/resume", {"sessionId": phantom, **WS})
        waited = anyio.current_time() - start
        await client.c.request("session/resume", {"sessionId": real, **WS})
        result = await client.prompt(real, "and now?")
        prompt_phantom = await client.error_of("session/prompt", {"sessionId": phantom, "prompt": []})
        fresh = await client.new_session()
    assert gone == {"code": -32002, "message": f"Resource not found: {phantom}", "data": {"uri": phantom}}
    assert 1.0 <= waited <= 1.7
    assert prompt_phantom == NOT_FOUND
    assert result["stopReason"] == "end_turn"
    assert first_texts[1].startswith(f"[{real[:8]} t1 c0]")
    assert client.texts(real)[1].startswith(f"[{real[:8]} t2 c0]")  # numbering continues from disk
    second = launcher.agents[1].trace
    assert {e.turn for e in second.updates(real) if e.update_kind == "agent_message_chunk"} == {2}
    assert fresh not in (real, phantom)  # a relaunch draws other ids
    assert [(d["op"], d.get("found")) for d in store_ops(launcher, 1) if d["op"] == "load"] == [
        ("load", False),
        ("load", True),
    ]
    assert [d["turns"] for d in store_ops(launcher, 0) if d["op"] == "save"] == [1, 1]
    # The usage of turn 2 includes turn 1's context, restored from disk.
    responses = [
        e for e in second.events if e.method == "session/prompt" and e.kind == "send" and e.session == real
    ]
    usage = responses[0].message["result"]["usage"]  # type: ignore[index]
    assert usage["cachedReadTokens"] == 15_000  # the system prompt, cached by turn 1 before the restart
    assert usage["cachedWriteTokens"] > 0  # turn 1's prompt and answer


async def test_fork_starts_a_new_session_from_the_source_conversation() -> None:
    launcher = InProcessAgent(quick(), seed=10)
    async with connect(launcher) as client:
        source = await client.new_session()
        await client.prompt(source, "the original question")
        forked = (await client.c.request("session/fork", {"sessionId": source, **WS}))["sessionId"]
        await client.prompt(forked, "a branch")
        branch = client.texts(forked)
        client.updates.clear()
        await client.c.request("session/load", {"sessionId": forked, **WS})
        unknown = await client.error_of("session/fork", {"sessionId": "nope", **WS})
    assert forked != source
    replayed = [u["content"]["text"] for _, u in client.updates if u["sessionUpdate"] == "user_message_chunk"]
    assert replayed == ["the original question", "a branch"]
    assert [t.split("]")[0] for t in branch] == [
        f"[{forked[:8]} t1 c{i}" for i in range(3)
    ]  # its own numbering
    assert unknown == {"code": -32002, "message": "Resource not found: nope", "data": {"uri": "nope"}}
    assert schema_problems(launcher.current.trace.events) == []


async def test_prompts_queue_one_turn_at_a_time_per_session() -> None:
    launcher = InProcessAgent(quick(), seed=8)
    async with connect(launcher) as client:
        sid = await client.new_session()
        results: list[dict[str, Any]] = []
        async with anyio.create_task_group() as tg:
            for text in ("one", "two"):
                tg.start_soon(lambda t=text: _append(results, client.prompt(sid, t)))
                await anyio.lowlevel.checkpoint()
    trace = launcher.current.trace
    sends = [e for e in trace.events if e.kind == "send" and e.session == sid]
    first_response = next(e.seq for e in sends if e.method == "session/prompt")
    texts = [(e.seq, chunk_text(e)) for e in sends if e.update_kind == "agent_message_chunk"]
    assert [t[:14] for _, t in texts] == [f"[{sid[:8]} t1 c"] * 3 + [f"[{sid[:8]} t2 c"] * 3  # type: ignore[index]
    assert all(seq > first_response for seq, text in texts if " t2 " in text)  # type: ignore[operator]
    assert [r["stopReason"] for r in results] == ["end_turn", "end_turn"]


async def _append(results: list[dict[str, Any]], awaitable: Any) -> None:
    results.append(await awaitable)


async def test_bad_params_are_rejected_naming_the_field() -> None:
    async with connect(InProcessAgent(seed=9)) as client:
        no_cwd = await client.error_of("session/new", {"mcpServers": []})
        no_servers = await client.error_of("session/load", {"sessionId": "x", "cwd": "/w"})
    assert no_cwd["code"] == no_servers["code"] == -32602
    assert "cwd" in no_cwd["message"]
    assert "mcpServers" in no_servers["message"]


async def test_the_first_session_new_is_cold_later_ones_warm_and_lifecycle_latencies_apply() -> None:
    profile = load_profile_data(
        {
            "not_found_latency": 0.5,
            "close_latency": 0.25,
            "models": {"default": {"session_new_cold": 3.0, "session_new_warm": 1.0}},
        }
    )
    launcher = InProcessAgent(profile, seed=9)
    took: list[float] = []

    async def timed(method: str, params: dict[str, Any], *, error: bool = False) -> Any:
        start = anyio.current_time()
        out = await (client.error_of(method, params) if error else client.c.request(method, params))
        took.append(round(anyio.current_time() - start, 6))
        return out

    async with connect(launcher) as client:
        first = (await timed("session/new", WS))["sessionId"]
        await timed("session/new", WS)  # the same model again: warm
        missing = await timed("session/resume", {"sessionId": "no-such", **WS}, error=True)
        await timed("session/close", {"sessionId": first})
    # Virtual seconds: the cold latency for the model's first session, then the warm one; not-found and close
    # take the profile's own latencies.
    assert took == [3.0, 1.0, 0.5, 0.25]
    assert missing["code"] == -32002


# -- over stdio (real time) ---------------------------------------------------------------------------

FAST = ("--session-new-latency", "0.01", "--chunk-interval", "0.001", "--chunks", "3")


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_stdio_state_dir_keeps_sessions_across_processes(tmp_path: Path) -> None:
    state = tmp_path / "state"
    traces = [tmp_path / "one.jsonl", tmp_path / "two.jsonl"]
    with anyio.fail_after(20):
        async with connect(stdio(*FAST, "--state-dir", str(state), "--trace", str(traces[0]))) as client:
            real = await client.new_session()
            phantom = await client.new_session()
            await client.prompt(real, "remember")
        async with connect(stdio(*FAST, "--state-dir", str(state), "--trace", str(traces[1]))) as client:
            gone = await client.error_of("session/load", {"sessionId": phantom, **WS})
            await client.c.request("session/load", {"sessionId": real, **WS})
            await client.prompt(real, "again")
            listed = await client.c.request("session/list", {})
            fresh = await client.new_session()
    assert gone["code"] == -32002
    assert gone["data"] == {"uri": phantom}
    assert [u["content"]["text"] for u in client.of(real, "user_message_chunk")] == ["remember"]
    assert client.texts(real)[-1].startswith(f"[{real[:8]} t2 c2]")
    assert [s["sessionId"] for s in listed["sessions"]] == [real]
    assert fresh not in (real, phantom)
    assert (state / "launches").read_text() == "2"
    one, two = (load_jsonl(p.read_text().splitlines()) for p in traces)
    assert [e.detail["reason"] for e in one + two if e.kind == "exit"] == ["eof", "eof"]  # type: ignore[index]
    assert [e.detail["op"] for e in two if e.kind == "store"][:2] == ["load", "load"]  # type: ignore[index]
    assert schema_problems(one) == schema_problems(two) == []
