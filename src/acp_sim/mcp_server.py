"""``acp-sim mcp-server``: a small, real MCP server (official ``mcp`` package) on stdio.

Point a simulated or a real agent's ``mcpServers`` at it. It answers ``initialize``, ``tools/list``
and ``tools/call`` for a couple of fake tools, and can be told to misbehave the ways real MCP
servers do (shared/reference/known-client-bugs.md rows 7, 8, 10):

- ``--fail-at-start``: exits with ``FAIL_EXIT_CODE`` before reading anything (a broken install);
- ``--crash-after S``: serves normally, then dies abruptly ``S`` seconds after it is ready to
  serve (its imports done), so a client can always complete a handshake first;
- ``--hang``: never answers the handshake and ignores stdin (a wedged server; the client must
  kill it, closing stdin is not enough);
- ``--wrapper``: does not serve itself but runs the real server as its own child, like ``npx``
  does, so an agent holding it holds a grandchild too. Like ``npx`` it does not forward signals:
  killing only the wrapper orphans the real server, which only a tree or process-group kill reaps.

The in-process simulated agent cannot talk to a real process on virtual time (DESIGN.md hazard),
so it predicts this server's behaviour from its command line (``options_from_argv``) instead.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, NonNegativeFloat

SERVER_NAME = "acp-sim-mcp"
SUBCOMMAND = "mcp-server"
# (name, description) of the fake tools; the simulated agent reports them for this server.
TOOLS: tuple[tuple[str, str], ...] = (
    ("sim_echo", "Echo the given text back."),
    ("sim_add", "Add two numbers."),
)
TOOL_NAMES: tuple[str, ...] = tuple(name for name, _ in TOOLS)
FAIL_EXIT_CODE = 1
CRASH_EXIT_CODE = 3


class ServerOptions(BaseModel):
    """What one ``acp-sim mcp-server`` process does; parsed from its command line."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = SERVER_NAME
    fail_at_start: bool = False
    crash_after: NonNegativeFloat | None = None
    hang: bool = False
    wrapper: bool = False


def _seconds(text: str) -> float:
    value = float(text)
    if not value >= 0:  # also rejects nan
        raise argparse.ArgumentTypeError(f"must be a number of seconds >= 0, got {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``mcp-server`` options, on the ``acp-sim`` subcommand parser."""
    parser.add_argument(
        "--name", default=SERVER_NAME, help=f"server name reported in the handshake (default: {SERVER_NAME})"
    )
    parser.add_argument(
        "--fail-at-start",
        action="store_true",
        help=f"exit with code {FAIL_EXIT_CODE} at once, before reading anything",
    )
    parser.add_argument(
        "--crash-after",
        type=_seconds,
        metavar="S",
        help=f"serve, then exit abruptly with code {CRASH_EXIT_CODE} S seconds after being ready",
    )
    parser.add_argument(
        "--hang", action="store_true", help="never answer the handshake; ignore stdin, wait to be killed"
    )
    parser.add_argument(
        "--wrapper",
        action="store_true",
        help="run the real server (same options) as a child, like npx; signals are not forwarded",
    )


DESCRIPTION = (
    "A real MCP server (official mcp package): answers initialize, tools/list and tools/call for "
    "two fake tools; options make it fail, crash or hang like real servers do."
)


def cli_main(argv: Sequence[str]) -> int:
    """``python -m acp_sim mcp-server ARGS``: parse ``argv`` (the arguments after the subcommand), run."""
    parser = argparse.ArgumentParser(prog=f"acp-sim {SUBCOMMAND}", description=DESCRIPTION)
    add_arguments(parser)
    return main(options_from_namespace(parser.parse_args(argv)), argv)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"acp-sim {SUBCOMMAND}", add_help=False, exit_on_error=False)
    add_arguments(parser)
    return parser


def options_from_namespace(args: argparse.Namespace) -> ServerOptions:
    return ServerOptions(
        name=args.name,
        fail_at_start=args.fail_at_start,
        crash_after=args.crash_after,
        hang=args.hang,
        wrapper=args.wrapper,
    )


def options_from_argv(argv: Sequence[str]) -> ServerOptions | None:
    """The options of an ``acp-sim mcp-server`` command line, or None for any other command.

    Recognises ``acp-sim mcp-server ...`` and ``python -m acp_sim mcp-server ...``. Unknown options
    make it None too: a command we cannot predict is treated like any other program.
    """
    argv = list(argv)
    for i in range(1, len(argv)):
        if argv[i] != SUBCOMMAND:
            continue
        before = argv[i - 1]
        launcher = os.path.basename(before) in ("acp-sim", "acp_sim") or (
            before == "acp_sim" and i >= 2 and argv[i - 2] == "-m"
        )
        if not launcher:
            continue
        try:
            args, unknown = _parser().parse_known_args(argv[i + 1 :])
        except (argparse.ArgumentError, SystemExit):  # a bad value: not a command we can predict
            return None
        return None if unknown else options_from_namespace(args)
    return None


def child_argv(argv: Sequence[str]) -> list[str]:
    """The real server's command line for a wrapper: the same options without ``--wrapper``."""
    return [sys.executable, "-m", "acp_sim", SUBCOMMAND, *(a for a in argv if a != "--wrapper")]


# -- running ---------------------------------------------------------------------------------------


def main(options: ServerOptions, argv: Sequence[str]) -> int:
    """Run the server as ``options`` say; ``argv`` is this subcommand's own arguments."""
    if options.fail_at_start:
        print(f"acp-sim {SUBCOMMAND}: failing at start (--fail-at-start)", file=sys.stderr, flush=True)
        return FAIL_EXIT_CODE
    if options.wrapper:
        return _run_wrapper(argv)
    if options.hang:
        if options.crash_after is not None:
            _schedule_crash(options.crash_after)
        _hang()
    import anyio

    anyio.run(_serve, options.name, options.crash_after)
    return 0


def _run_wrapper(argv: Sequence[str]) -> int:
    # Inherits stdin/stdout and the process group, as npx's child does; no signal forwarding.
    child = subprocess.Popen(child_argv(argv))
    return child.wait()


def _schedule_crash(after: float) -> None:
    # A thread, not a task: it must fire even while the event loop is busy or blocked.
    def crash() -> None:
        time.sleep(after)
        print(f"acp-sim {SUBCOMMAND}: crashing (--crash-after {after})", file=sys.stderr, flush=True)
        os._exit(CRASH_EXIT_CODE)  # abrupt: no cleanup, no goodbye on the pipe, like a real crash

    threading.Thread(target=crash, name="crash-timer", daemon=True).start()


def _hang() -> None:
    # Wedged, not merely slow: it does not even notice stdin closing.
    while True:
        time.sleep(3600)


async def _serve(name: str, crash_after: float | None) -> None:
    import mcp_types as types
    from mcp.server import Server, ServerRequestContext
    from mcp.server.stdio import stdio_server

    async def list_tools(ctx: ServerRequestContext[Any], params: Any) -> types.ListToolsResult:
        return types.ListToolsResult(tools=[_tool(types, n, d) for n, d in TOOLS])

    async def call_tool(ctx: ServerRequestContext[Any], params: types.CallToolRequestParams) -> Any:
        args = params.arguments or {}
        if params.name == "sim_echo":
            text = str(args.get("text", ""))
        elif params.name == "sim_add":
            text = str(float(args.get("a", 0)) + float(args.get("b", 0)))
        else:
            return types.CallToolResult(
                content=[types.TextContent(type="text", text=f"unknown tool {params.name}")], is_error=True
            )
        return types.CallToolResult(content=[types.TextContent(type="text", text=text)])

    server: Server[Any] = Server(name, version="0.1.0", on_list_tools=list_tools, on_call_tool=call_tool)
    if crash_after is not None:
        _schedule_crash(crash_after)
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


def _tool(types: Any, name: str, description: str) -> Any:
    properties = (
        {"text": {"type": "string"}}
        if name == "sim_echo"
        else {"a": {"type": "number"}, "b": {"type": "number"}}
    )
    return types.Tool(
        name=name,
        description=description,
        input_schema={"type": "object", "properties": properties, "required": list(properties)},
    )
