"""The JSON-RPC wire: correlation, concurrency, and every bad-input case with its error."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from acp import schema
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from acp_sim.dispatch import Dispatcher
from acp_sim.errors import (
    ConnectionClosed,
    InvalidParams,
    InvalidRequest,
    LineTooLong,
    MethodNotFound,
    ParseError,
    RemoteError,
)
from acp_sim.orchestrator.launcher import SubprocessAgent
from acp_sim.streams import memory_duplex, memory_pipe
from acp_sim.wire import Connection

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def pair(
    server: Dispatcher | None = None, client: Dispatcher | None = None, **kw: Any
) -> AsyncIterator[tuple[Connection, Connection]]:
    duplex = memory_duplex()
    async with (
        Connection(duplex.agent, duplex.agent, peer="client", dispatcher=server, **kw) as srv,
        Connection(duplex.client, duplex.client, peer="agent", dispatcher=client) as cli,
    ):
        yield srv, cli


@asynccontextmanager
async def raw_peer(
    server: Dispatcher, **kw: Any
) -> AsyncIterator[tuple[Connection, Any, list[dict[str, Any]]]]:
    """A Connection on one side, raw bytes on the other: for input no well-behaved peer sends."""
    duplex = memory_duplex()
    replies: list[dict[str, Any]] = []

    async def read_replies() -> None:
        buf = b""
        async for data in duplex.client:
            buf += data
            *lines, buf = buf.split(b"\n")
            replies.extend(json.loads(line) for line in lines if line)

    async with (
        Connection(duplex.agent, duplex.agent, peer="raw", dispatcher=server, **kw) as conn,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(read_replies)
        yield conn, duplex.client, replies
        tg.cancel_scope.cancel()


async def settle() -> None:
    for _ in range(20):
        await anyio.lowlevel.checkpoint()


def echo_dispatcher() -> Dispatcher:
    d = Dispatcher()

    async def echo(params: Any) -> Any:
        return {"echo": params}

    async def slow(params: Any) -> Any:
        await anyio.sleep(params["delay"])
        return {"slept": params["delay"]}

    async def cancel_note(params: schema.CancelNotification) -> None:
        pass

    d.add_request("echo", echo)
    d.add_request("slow", slow)
    d.add_request("session/cancel_req", echo, schema.CancelNotification)
    d.add_notification("session/cancel", cancel_note, schema.CancelNotification)
    return d


async def test_request_response_and_notifications() -> None:
    seen: list[Any] = []
    client = Dispatcher()
    client.add_notification("note", seen.append)
    async with pair(echo_dispatcher(), client) as (srv, cli):
        assert await cli.request("echo", {"a": 1}) == {"echo": {"a": 1}}
        await srv.notify("note", {"n": 1})
        await srv.notify("note", {"n": 2})
        await settle()
    assert seen == [{"n": 1}, {"n": 2}]


async def test_concurrent_requests_in_both_directions_complete_out_of_order() -> None:
    server = echo_dispatcher()
    client = echo_dispatcher()
    async with pair(server, client) as (srv, cli):
        results: dict[str, Any] = {}
        order: list[float] = []

        async def call(conn: Connection, label: str, delay: float) -> None:
            results[label] = await conn.request("slow", {"delay": delay})
            order.append(delay)

        async with anyio.create_task_group() as tg:
            tg.start_soon(call, cli, "c3", 3.0)
            tg.start_soon(call, cli, "c1", 1.0)
            tg.start_soon(call, srv, "s2", 2.0)
            tg.start_soon(call, srv, "s0", 0.5)
    assert results == {"c3": {"slept": 3.0}, "c1": {"slept": 1.0}, "s2": {"slept": 2.0}, "s0": {"slept": 0.5}}
    assert order == [0.5, 1.0, 2.0, 3.0]


async def test_unknown_method_names_the_method() -> None:
    async with pair(echo_dispatcher()) as (_, cli):
        with pytest.raises(RemoteError) as info:
            await cli.request("session/frobnicate", {})
    assert info.value.code == -32601
    assert info.value.kind is MethodNotFound
    assert "session/frobnicate" in info.value.message
    assert info.value.data == {"method": "session/frobnicate"}


async def test_invalid_params_give_the_pydantic_field_path() -> None:
    async with pair(echo_dispatcher()) as (_, cli):
        with pytest.raises(RemoteError) as info:
            await cli.request("session/cancel_req", {"sessionId": 42})
    assert info.value.kind is InvalidParams
    assert (
        info.value.message
        == "Invalid params for session/cancel_req: sessionId: Input should be a valid string"
    )
    assert info.value.data["errors"][0]["loc"] == "sessionId"


async def test_invalid_notification_params_are_reported_not_answered() -> None:
    async with raw_peer(echo_dispatcher()) as (conn, raw, replies):
        await raw.send(b'{"jsonrpc":"2.0","method":"session/cancel","params":{}}\n')
        await settle()
        assert replies == []  # notifications are never answered
        assert isinstance(conn.protocol_errors[-1], InvalidParams)
        assert "session/cancel: sessionId: Field required" in conn.protocol_errors[-1].message


async def test_parse_error_carries_an_excerpt_and_the_connection_survives() -> None:
    async with raw_peer(echo_dispatcher()) as (conn, raw, replies):
        await raw.send(b"this is {not json" + b"x" * 200 + b"\n")
        await raw.send(b'{"jsonrpc":"2.0","id":7,"method":"echo","params":1}\n')
        await settle()
    error, answer = replies
    assert error["id"] is None
    assert error["error"]["code"] == -32700
    assert error["error"]["message"] == "Parse error: Expecting value: line 1 column 1 (char 0)"
    assert error["error"]["data"]["excerpt"].startswith("this is {not json")
    assert error["error"]["data"]["excerpt"].endswith("(217 chars)")
    assert answer == {"jsonrpc": "2.0", "id": 7, "result": {"echo": 1}}
    assert isinstance(conn.protocol_errors[0], ParseError)


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        (b"[1, 2]", "got a batch"),
        (b"42", "got a int"),
        (b'{"jsonrpc":"2.0","id":3}', "neither a request"),
        (b'{"jsonrpc":"2.0","id":[1],"method":"echo"}', "id must be a string or an integer"),
    ],
)
async def test_json_that_is_not_json_rpc_is_an_invalid_request(line: bytes, fragment: str) -> None:
    async with raw_peer(echo_dispatcher()) as (conn, raw, replies):
        await raw.send(line + b"\n")
        await settle()
    assert replies[0]["error"]["code"] == -32600
    assert fragment in replies[0]["error"]["message"]
    assert isinstance(conn.protocol_errors[0], InvalidRequest)


async def test_end_of_stream_inside_a_line_closes_the_connection_naming_the_excerpt() -> None:
    async with raw_peer(echo_dispatcher()) as (conn, raw, _):
        pending: list[BaseException] = []

        async def ask() -> None:
            try:
                await conn.request("echo", 1)
            except ConnectionClosed as exc:
                pending.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(ask)
            await settle()
            await raw.send(b'{"jsonrpc":"2.0","id":1,"method":"echo"')  # and no newline, ever
            await raw.send_eof()  # our sending side only: replies may still be read
            with anyio.fail_after(5):
                await conn.closed.wait()
    error = conn.close_error
    assert isinstance(error, ConnectionClosed)
    assert str(error) == (
        'connection to raw closed: end of stream inside a line: \'{"jsonrpc":"2.0","id":1,"method":"echo"\''
    )
    assert pending == [error]  # the request in flight failed with it, at once


async def test_line_over_the_limit_is_discarded_and_reading_goes_on() -> None:
    async with raw_peer(echo_dispatcher(), max_line_bytes=1000) as (conn, raw, replies):
        # Sent in pieces, as a pipe would: the reader must not buffer it whole.
        head = b'{"jsonrpc":"2.0","id":1,"method":"echo","params":"'
        await raw.send(head + b"a" * 600)
        await raw.send(b"a" * 600)
        await raw.send(b"a" * 600 + b'"}\n{"jsonrpc":"2.0","id":2,"method":"echo","params":2}\n')
        await settle()
    too_long, ok = replies
    assert too_long["error"]["code"] == -32600
    size = len(head) + 1800 + 2
    assert too_long["error"]["message"] == (
        f"Line of {size} bytes exceeds the limit of 1000 bytes; it was discarded"
    )
    assert too_long["error"]["data"]["excerpt"].startswith('{"jsonrpc":"2.0","id":1')
    assert ok["result"] == {"echo": 2}
    assert isinstance(conn.protocol_errors[0], LineTooLong)


async def test_peer_eof_fails_every_pending_request_at_once() -> None:
    to_srv_send, _ = memory_pipe()
    to_cli_send, to_cli_recv = memory_pipe()
    async with Connection(to_cli_recv, to_srv_send, peer="the-agent") as cli:
        errors: list[BaseException] = []

        async def call() -> None:
            try:
                await cli.request("never/answered")
            except ConnectionClosed as exc:
                errors.append(exc)

        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(call)
            await settle()
            await to_cli_send.aclose()  # the agent's stdout ends
    assert len(errors) == 3
    assert all(str(e) == "connection to the-agent closed: end of stream" for e in errors)
    with pytest.raises(ConnectionClosed, match="the-agent"):
        await cli.request("after/close")


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_crashed_process_peer_is_named_with_its_exit_code() -> None:
    code = "import sys; sys.stdin.readline(); sys.exit(3)"
    launcher = SubprocessAgent([sys.executable, "-c", code], name="crasher")
    async with (
        launcher.launch() as link,
        Connection(link.receive, link.send, peer=link.name, peer_exit_code=link.wait_exit_code) as conn,
    ):
        with pytest.raises(ConnectionClosed) as info:
            with anyio.fail_after(10):
                await conn.request("initialize", {"protocolVersion": 1})
    assert info.value.exit_code == 3
    assert f"crasher[pid {link.pid}]" in str(info.value)
    assert str(info.value).endswith("(exit code 3)")


async def test_error_reply_from_a_handler_and_a_handler_bug() -> None:
    d = Dispatcher()

    async def broken(params: Any) -> Any:
        raise KeyError("oops")

    d.add_request("broken", broken)
    async with pair(d) as (_, cli):
        with pytest.raises(RemoteError) as info:
            await cli.request("broken")
    assert info.value.code == -32603
    assert info.value.data == {"details": "'oops'"}


async def test_response_for_an_unknown_id_is_reported() -> None:
    async with raw_peer(echo_dispatcher()) as (conn, raw, replies):
        await raw.send(b'{"jsonrpc":"2.0","id":99,"result":{}}\n')
        await settle()
    assert replies == []
    assert "unknown request id 99" in conn.protocol_errors[0].message


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    chunks=st.lists(
        st.one_of(
            st.binary(max_size=300),
            st.sampled_from(
                [
                    b"\n",
                    b'{"jsonrpc":"2.0","id":1,"method":"echo","params":{}}\n',
                    b'{"jsonrpc":"2.0","method":"session/cancel","params":{"sessionId":1}}\n',
                    b'{"jsonrpc":"2.0","id":2,"result":null}\n',
                    b'{"jsonrpc":"2.0","id":"x","method":"slow","params":{"delay":0.5}}',
                    b"[]\n",
                    b'"str"\n',
                    b"null\n",
                    b"\xff\xfe\n",
                    b"{" * 500 + b"\n",
                ]
            ),
            st.builds(lambda n: b"z" * n, st.integers(0, 3000)),
        ),
        max_size=12,
    )
)
def test_fuzzed_input_never_hangs_and_only_raises_documented_errors(chunks: list[bytes]) -> None:
    async def main() -> None:
        async with raw_peer(echo_dispatcher(), max_line_bytes=1024) as (conn, raw, replies):
            for chunk in chunks:
                await raw.send(chunk)
            await raw.send(b'\n{"jsonrpc":"2.0","id":"probe","method":"echo","params":"alive"}\n')
            with anyio.fail_after(5):
                while not any(r.get("id") == "probe" for r in replies):  # noqa: ASYNC110 (polling a list)
                    await anyio.sleep(0.01)
            assert not conn.closed.is_set()
            for error in conn.protocol_errors:
                assert error.code in (-32700, -32600, -32601, -32602)

    anyio.run(main, backend="trio", backend_options={})


async def test_a_notification_handler_that_waits_is_awaited_in_order_and_its_error_recorded() -> None:
    # The reader acts on most lines without awaiting; a handler that waits is awaited before the
    # next line is read, and a JSON-RPC error it raises after waiting is recorded, not fatal.
    seen: list[Any] = []
    client = Dispatcher()

    async def waits(params: Any) -> None:
        await anyio.lowlevel.checkpoint()
        if params.get("bad"):
            raise InvalidParams("Invalid params for waits: bad", data={"n": params["n"]})
        seen.append(params["n"])

    client.add_notification("waits", waits)
    client.add_notification("note", lambda params: seen.append(params["n"]))
    async with pair(echo_dispatcher(), client) as (srv, cli):
        for n in range(3):
            await srv.notify("waits", {"n": n, "bad": n == 1})
            await srv.notify("note", {"n": n + 10})
        await settle()
    assert seen == [0, 10, 11, 2, 12]
    assert [(type(e), e.data) for e in cli.protocol_errors] == [(InvalidParams, {"n": 1})]
