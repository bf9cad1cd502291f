"""The live-mode subcommands of ``acp-sim``: ``model-stub`` and ``tap`` (wired in ``acp_sim.cli``)."""

from __future__ import annotations

import argparse
import signal
import sys
from typing import IO

import anyio

from acp_sim import clock
from acp_sim.errors import ProfileError

TAP_EPILOG = """\
The tap forwards every byte both ways unchanged and writes each JSON-RPC line, from the agent's
point of view (client->agent is "recv", agent->client is "send"), to the trace in the format of
`acp-sim agent --trace`; secrets (API keys, tokens, auth headers, env values with secret names)
are redacted in the trace only. "{pid}" in FILE is replaced by the tap's pid, for bridges that
restart the agent. SIGTERM/SIGINT to the tap are passed on to the agent; the tap exits with the
agent's exit code.

example (what a bridge would spawn instead of the adapter):
  acp-sim tap --trace /tmp/trace-{pid}.jsonl -- \\
      node node_modules/@zed-industries/claude-agent-acp/dist/index.js
"""

STUB_EPILOG = """\
Prints "ANTHROPIC_BASE_URL=http://127.0.0.1:PORT" on its first line of output, then serves until
interrupted. Only loopback IP literals are accepted for --host (the stub accepts any API key).
Point the Claude Code CLI (or the ACP adapter) at it with ANTHROPIC_BASE_URL, a dummy
ANTHROPIC_API_KEY, CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 and DISABLE_TELEMETRY=1.
Built-in profiles: default (one text delta echoing the prompt), transcript (5 deltas 200 ms apart).
"""


def add_model_stub_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = STUB_EPILOG
    parser.add_argument(
        "--host", default="127.0.0.1", help="loopback address to listen on (default: 127.0.0.1)"
    )
    parser.add_argument("--port", type=int, default=0, help="port (default: 0, a free one)")
    parser.add_argument(
        "--profile",
        default="default",
        metavar="FILE|NAME",
        help="model stub profile (YAML/TOML/JSON) or built-in name",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of every random draw (default: 0)")
    parser.add_argument("--log", metavar="FILE", help="write one JSON line per request answered (no secrets)")
    parser.add_argument("--backend", choices=clock.BACKENDS, default="asyncio", help="anyio backend")


def model_stub_main(args: argparse.Namespace, out: IO[str] | None = None) -> int:
    from acp_sim.live.model_stub import ModelStub, NonLoopbackAddress, StubRecord, require_loopback
    from acp_sim.live.redact import Redactor
    from acp_sim.live.stub_profile import load_stub_profile

    out = out or sys.stdout
    try:
        require_loopback(args.host)
        profile = load_stub_profile(args.profile)
    except (NonLoopbackAddress, ProfileError) as exc:
        print(f"acp-sim model-stub: {exc}", file=sys.stderr)
        return 2
    log = open(args.log, "w", encoding="utf-8", buffering=1) if args.log else None  # noqa: SIM115

    def sink(record: StubRecord) -> None:
        if log is not None:
            log.write(record.model_dump_json(exclude_none=True) + "\n")

    stub = ModelStub(profile, seed=args.seed, redactor=Redactor.from_env(), sink=sink)

    async def serve() -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with stub.serve(args.host, args.port) as url:
                print(f"ANTHROPIC_BASE_URL={url}", file=out, flush=True)
                async for _ in signals:
                    return

    try:
        clock.run(serve, backend=args.backend, virtual=False)
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        print(
            f"acp-sim model-stub: cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr
        )
        return 1
    finally:
        if log is not None:
            log.close()
    return 0


def add_tap_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = TAP_EPILOG
    parser.add_argument("--trace", required=True, metavar="FILE", help="write the trace here as JSON lines")
    parser.add_argument("--backend", choices=clock.BACKENDS, default="asyncio", help="anyio backend")
    parser.add_argument(
        "agent_argv",
        nargs=argparse.REMAINDER,
        metavar="-- CMD ...",
        help="the agent command and its arguments",
    )


def tap_command(args: argparse.Namespace) -> int:
    from acp_sim.live.tap import tap_main

    command = list(args.agent_argv)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        print(
            "acp-sim tap: no agent command; usage: acp-sim tap --trace FILE -- CMD [ARG...]", file=sys.stderr
        )
        return 2
    return tap_main(command, args.trace, backend=args.backend)
