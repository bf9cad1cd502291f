"""Proof that we speak real ACP: the official SDK's client drives ``acp-sim agent`` over stdio."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from acp import PROTOCOL_VERSION, RequestError, spawn_agent_process, text_block
from acp.schema import AgentMessageChunk

from acp_sim.trace import chunk_text, load_jsonl

FLAGLESS = (sys.executable, "-m", "acp_sim", "agent")  # the default command line: no flags at all


class RecordingClient:
    """The smallest SDK ``Client``: records every update by session id."""

    def __init__(self) -> None:
        self.updates: dict[str, list[str]] = {}

    async def session_update(self, session_id: str, update: Any, **kwargs: Any) -> None:
        if isinstance(update, AgentMessageChunk):
            self.updates.setdefault(session_id, []).append(update.content.text)

    async def request_permission(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    def on_connect(self, conn: Any) -> None:
        pass


def test_official_sdk_client_streams_three_concurrent_sessions(tmp_path: Path) -> None:
    trace_file = tmp_path / "trace.jsonl"
    client = RecordingClient()

    async def main() -> list[str]:
        async with spawn_agent_process(
            client,
            sys.executable,
            "-m",
            "acp_sim",
            "agent",
            "--seed",
            "4",
            "--session-new-latency",
            "0.2",
            "--chunks",
            "20",
            "--chunk-interval",
            "0.01",
            "--trace",
            str(trace_file),
        ) as (conn, _process):
            init = await conn.initialize(protocol_version=PROTOCOL_VERSION)
            assert init.protocol_version == PROTOCOL_VERSION
            sessions = await asyncio.gather(*(conn.new_session(cwd=str(tmp_path)) for _ in range(3)))
            ids = [s.session_id for s in sessions]
            responses = await asyncio.wait_for(
                asyncio.gather(*(conn.prompt(session_id=i, prompt=[text_block(f"go {i}")]) for i in ids)),
                timeout=30,
            )
            assert [r.stop_reason for r in responses] == ["end_turn"] * 3
            return ids

    ids = asyncio.run(main())
    trace = load_jsonl(trace_file.read_text().splitlines())
    assert len(set(ids)) == 3
    for session_id in ids:
        sent = [
            chunk_text(e)
            for e in trace
            if e.kind == "send" and e.session == session_id and chunk_text(e) is not None
        ]
        assert len(sent) == 20
        assert client.updates[session_id] == sent  # every chunk, in order, to the right session
    # The agent validated and recorded every request it got from the SDK.
    methods = [e.method for e in trace if e.kind == "recv"]
    assert methods.count("session/prompt") == 3
    assert json.loads(trace[0].to_json())["method"] == "initialize"


def test_official_sdk_client_restarts_the_flagless_agent_and_resumes_a_session_with_a_turn(
    tmp_path: Path,
) -> None:
    """``acp-sim agent`` with no flags keeps sessions on disk (the user's state directory, here a
    temporary HOME), as the real adapter does: a session that had a turn survives a restart, a
    phantom (never prompted) does not."""
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "XDG_STATE_HOME"}
    env["HOME"] = str(home)  # the default: ~/.local/state/acp-sim under this HOME
    client = RecordingClient()
    cwd = str(tmp_path)

    async def first() -> tuple[str, str]:
        async with spawn_agent_process(client, *FLAGLESS, env=env) as (
            conn,
            _,
        ):
            await conn.initialize(protocol_version=PROTOCOL_VERSION)
            talked, phantom = await asyncio.gather(conn.new_session(cwd=cwd), conn.new_session(cwd=cwd))
            done = await conn.prompt(session_id=talked.session_id, prompt=[text_block("remember me")])
            assert done.stop_reason == "end_turn"
            return talked.session_id, phantom.session_id

    async def second(talked: str, phantom: str) -> None:
        async with spawn_agent_process(client, *FLAGLESS, env=env) as (
            conn,
            _,
        ):
            await conn.initialize(protocol_version=PROTOCOL_VERSION)
            resumed = await conn.resume_session(session_id=talked, cwd=cwd)
            assert resumed is not None
            again = await conn.prompt(session_id=talked, prompt=[text_block("still there?")])
            assert again.stop_reason == "end_turn"
            with pytest.raises(RequestError) as refused:
                await conn.resume_session(session_id=phantom, cwd=cwd)
            assert refused.value.code == -32002

    talked, phantom = asyncio.run(first())
    asyncio.run(second(talked, phantom))
    stored = home / ".local" / "state" / "acp-sim" / "sessions"
    assert sorted(p.stem for p in stored.glob("*.json")) == [talked]
