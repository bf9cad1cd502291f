"""``pytest_acp.sdk``: the official SDK's own ``ClientSideConnection`` drives the simulated agent the
suite launched, over ``LinkTransport``."""

from __future__ import annotations

from typing import Any

import anyio
from acp import PROTOCOL_VERSION, text_block
from acp.schema import AgentMessageChunk

from acp_sim.agent import InProcessAgent
from acp_sim.clock import run
from acp_sim.profile import DEFAULT
from acp_sim.trace import chunk_text
from pytest_acp.sdk import LinkTransport, connect


class RecordingClient:
    """The smallest SDK ``Client``: records every text chunk by session id."""

    def __init__(self) -> None:
        self.updates: dict[str, list[str]] = {}

    async def session_update(self, session_id: str, update: Any, **kwargs: Any) -> None:
        if isinstance(update, AgentMessageChunk):
            self.updates.setdefault(session_id, []).append(update.content.text)

    async def request_permission(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    def on_connect(self, conn: Any) -> None:
        pass


def test_the_sdk_client_streams_two_sessions_over_the_suites_agent() -> None:
    launcher = InProcessAgent(DEFAULT, seed=3)
    client = RecordingClient()

    async def main() -> list[str]:
        async with launcher.launch() as link, connect(client, link) as conn:
            init = await conn.initialize(protocol_version=PROTOCOL_VERSION)
            assert init.protocol_version == PROTOCOL_VERSION
            ids = []
            for _ in range(2):
                ids.append((await conn.new_session(cwd="/w", mcp_servers=[])).session_id)
            ends = {}

            async def ask(session_id: str) -> None:
                response = await conn.prompt(session_id=session_id, prompt=[text_block(f"go {session_id}")])
                ends[session_id] = response.stop_reason

            async with anyio.create_task_group() as tg:
                for session_id in ids:
                    tg.start_soon(ask, session_id)
            assert ends == dict.fromkeys(ids, "end_turn")
            return ids

    ids = run(main, backend="asyncio")
    trace = launcher.agents[0].trace.events
    for session_id in ids:
        sent = [chunk_text(e) for e in trace if e.kind == "send" and e.session == session_id]
        sent = [text for text in sent if text is not None]
        assert sent, session_id
        assert client.updates[session_id] == sent  # every chunk, in order, to its own session


def test_the_transport_skips_lines_that_are_not_json_and_ends_with_the_stream() -> None:
    async def main() -> list[Any]:
        send, receive = anyio.create_memory_object_stream[bytes](10)
        sink, _unused = anyio.create_memory_object_stream[bytes](10)
        link: Any = type("Link", (), {"receive": receive, "send": sink})()
        transport = LinkTransport(link)
        await send.send(b'not json\n{"jsonrpc": "2.0", "method": "a"}\n{"jsonrpc"')
        await send.send(b': "2.0", "id": 1, "result": {}}\n[1, 2]\n')
        await send.aclose()
        got = [await transport.receive(), await transport.receive(), await transport.receive()]
        _unused.close()
        return got

    first, second, end = run(main, backend="asyncio")
    assert first == {"jsonrpc": "2.0", "method": "a"}
    assert second == {"jsonrpc": "2.0", "id": 1, "result": {}}
    assert end is None
