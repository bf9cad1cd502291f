"""``acp-sim mcp-server`` is a real MCP server: the official ``mcp`` client talks to it over stdio.

Real processes and their pipes, so these run on real time (never under the virtual clock).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest
from mcp.client import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.shared.exceptions import MCPError

from acp_sim import mcp_server, proctree
from acp_sim.cli import main as cli_main

pytestmark = pytest.mark.anyio
real_time = pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
SERVER = [sys.executable, "-m", "acp_sim", "mcp-server"]
# Generous bound for a Python process to start and answer; only a hang should ever reach it.
START_BOUND = 30.0

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "t", "version": "1"},
    },
}


@asynccontextmanager
async def client(*options: str) -> AsyncIterator[ClientSession]:
    params = StdioServerParameters(command=SERVER[0], args=[*SERVER[1:], *options])
    with open("/dev/null", "w") as errlog:  # noqa: ASYNC230 (the server's stderr, not ours)
        async with (
            stdio_client(params, errlog=errlog) as (read, write),
            ClientSession(read, write) as session,
        ):
            yield session


@real_time
@pytest.mark.parametrize("options", [(), ("--wrapper",)], ids=["direct", "wrapper"])
async def test_official_client_handshake_and_tools(options: tuple[str, ...]) -> None:
    async with client("--name", "srv-x", *options) as session:
        with anyio.fail_after(START_BOUND):
            init = await session.initialize()
        assert init.server_info.name == "srv-x"
        assert init.capabilities.tools is not None
        tools = await session.list_tools()
        assert [t.name for t in tools.tools] == list(mcp_server.TOOL_NAMES)
        echoed = await session.call_tool("sim_echo", {"text": "hello"})
        assert [c.text for c in echoed.content] == ["hello"]  # type: ignore[union-attr]
        added = await session.call_tool("sim_add", {"a": 2, "b": 3})
        assert [c.text for c in added.content] == ["5.0"]  # type: ignore[union-attr]


@real_time
async def test_hang_never_answers_the_handshake() -> None:
    async with client("--hang") as session:
        with anyio.move_on_after(1.5) as scope:
            await session.initialize()
        assert scope.cancelled_caught, "a --hang server answered initialize"


@real_time
async def test_fail_at_start_gives_the_client_a_closed_connection() -> None:
    with pytest.RaisesGroup(pytest.RaisesExc(MCPError, match="Connection closed"), flatten_subgroups=True):
        async with client("--fail-at-start") as session:
            with anyio.fail_after(START_BOUND):
                await session.initialize()


def _start(*options: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*SERVER, *options], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def test_fail_at_start_exits_with_its_code_before_reading() -> None:
    proc = _start("--fail-at-start")
    out, err = proc.communicate(timeout=START_BOUND)  # stdin closed unread: it never waits for it
    assert proc.returncode == mcp_server.FAIL_EXIT_CODE
    assert out == b""
    assert b"--fail-at-start" in err


def test_crash_after_answers_then_dies_with_its_code() -> None:
    proc = _start("--crash-after", "3.0")
    assert proc.stdin is not None
    assert proc.stdout is not None
    proc.stdin.write((json.dumps(INITIALIZE) + "\n").encode())
    proc.stdin.flush()
    answer = json.loads(proc.stdout.readline())
    assert answer["id"] == 1
    assert answer["result"]["serverInfo"]["name"] == mcp_server.SERVER_NAME
    # stdin stays open: it dies on its own timer, not because its client went away.
    assert proc.wait(timeout=START_BOUND) == mcp_server.CRASH_EXIT_CODE
    assert b"--crash-after" in (proc.stderr.read() if proc.stderr else b"")
    proc.stdin.close()
    proc.stdout.close()
    if proc.stderr:
        proc.stderr.close()


def test_healthy_server_exits_cleanly_when_stdin_closes() -> None:
    proc = _start()
    out, _ = proc.communicate((json.dumps(INITIALIZE) + "\n").encode(), timeout=START_BOUND)
    assert proc.returncode == 0
    assert json.loads(out.splitlines()[0])["id"] == 1


def test_hang_ignores_stdin_closing_until_killed() -> None:
    proc = _start("--hang")
    assert proc.stdin is not None
    proc.stdin.close()
    with pytest.raises(subprocess.TimeoutExpired):
        proc.wait(timeout=1.0)
    proc.kill()
    assert proc.wait() == -9
    for pipe in (proc.stdout, proc.stderr):
        assert pipe is not None
        assert pipe.read() == b""
        pipe.close()


def test_wrapper_runs_the_server_as_its_own_child_and_passes_its_exit_code() -> None:
    proc = _start("--wrapper", "--hang")
    try:
        assert proctree.wait_for(lambda: proctree.count_mcp_servers(proc.pid) == 1)
        (child,) = proctree.descendants(proc.pid)
        assert child.cmdline[-1] == "--hang"
        assert "--wrapper" not in child.cmdline
        assert child.pgid == proctree.info(proc.pid).pgid  # type: ignore[union-attr]
    finally:
        proctree.kill_tree(proc.pid)
        proc.communicate()
    failing = _start("--wrapper", "--fail-at-start")
    failing.communicate(timeout=START_BOUND)
    assert failing.returncode == mcp_server.FAIL_EXIT_CODE


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["acp-sim", "mcp-server"], mcp_server.ServerOptions()),
        (
            [sys.executable, "-m", "acp_sim", "mcp-server", "--crash-after", "2.5", "--wrapper"],
            mcp_server.ServerOptions(crash_after=2.5, wrapper=True),
        ),
        (
            ["/x/acp-sim", "mcp-server", "--hang", "--name", "n"],
            mcp_server.ServerOptions(hang=True, name="n"),
        ),
        (["acp-sim", "mcp-server", "--fail-at-start"], mcp_server.ServerOptions(fail_at_start=True)),
        (["acp-sim", "mcp-server", "--crash-after", "soon"], None),
        (["acp-sim", "mcp-server", "--crash-after", "-1"], None),
        (["acp-sim", "mcp-server", "--bogus"], None),
        (["npx", "some-mcp-server"], None),
        (["python3", "-m", "acp_sim", "agent"], None),
    ],
)
def test_options_from_argv(argv: list[str], expected: mcp_server.ServerOptions | None) -> None:
    assert mcp_server.options_from_argv(argv) == expected


def test_child_argv_drops_only_the_wrapper_flag() -> None:
    assert mcp_server.child_argv(["--wrapper", "--crash-after", "3"]) == [
        sys.executable, "-m", "acp_sim", "mcp-server", "--crash-after", "3",
    ]  # fmt: skip


def test_cli_rejects_a_negative_crash_delay(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli_main(["mcp-server", "--crash-after", "-1"])
    assert info.value.code == 2
    assert "--crash-after" in capsys.readouterr().err


def test_help_documents_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli_main(["mcp-server", "--help"])
    text = capsys.readouterr().out
    for option in ("--name", "--fail-at-start", "--crash-after", "--hang", "--wrapper"):
        assert option in text
