"""The ``acp-sim`` command: the stdio simulated agent and a demo of the orchestrator."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from typing import IO

from acp_sim import clock
from acp_sim.errors import ProfileError
from acp_sim.profile import BUILTIN_PROFILES, AgentProfile, load_profile, with_overrides


def _add_profile_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=0, help="seed of every random draw (default: 0)")
    parser.add_argument(
        "--profile",
        default="default",
        metavar="FILE|NAME",
        help=f"agent profile file (.yaml, .toml, .json) or built-in name ({', '.join(BUILTIN_PROFILES)})",
    )
    parser.add_argument("--session-new-latency", type=float, metavar="S", help="override session/new latency")
    parser.add_argument("--first-chunk-delay", type=float, metavar="S", help="override time to first chunk")
    parser.add_argument("--chunks", type=int, metavar="N", help="override chunks per turn")
    parser.add_argument("--chunk-interval", type=float, metavar="S", help="override time between chunks")
    parser.add_argument(
        "--backend", choices=clock.BACKENDS, default="asyncio", help="anyio backend (default: asyncio)"
    )


def _profile(args: argparse.Namespace) -> AgentProfile:
    return with_overrides(
        load_profile(args.profile),
        session_new=args.session_new_latency,
        first_chunk_delay=args.first_chunk_delay,
        chunk_count=args.chunks,
        chunk_interval=args.chunk_interval,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="acp-sim", description="Deterministic simulated ACP agent.")
    commands = parser.add_subparsers(dest="command", required=True)

    agent = commands.add_parser(
        "agent",
        help="run the simulated agent on stdio (real time)",
        description="Serve ACP (newline-delimited JSON-RPC 2.0) on stdin/stdout until stdin closes.",
    )
    _add_profile_options(agent)
    agent.add_argument("--trace", metavar="FILE", help="write the ground-truth trace here as JSON lines")

    demo = commands.add_parser(
        "demo",
        help="open several sessions on the in-process agent and stream a turn in each",
        description="Runs on virtual time: seconds of simulated latency cost microseconds.",
    )
    _add_profile_options(demo)
    demo.add_argument("--sessions", type=int, default=3, metavar="N", help="sessions to open (default: 3)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        profile = _profile(args)
    except ProfileError as exc:
        print(f"acp-sim: {exc}", file=sys.stderr)
        return 2
    if args.command == "agent":
        return run_stdio_agent(profile, args.seed, args.backend, args.trace)
    return run_demo(profile, args.seed, args.backend, args.sessions, sys.stdout)


def run_stdio_agent(profile: AgentProfile, seed: int, backend: clock.Backend, trace_path: str | None) -> int:
    from acp_sim.agent import SimAgent
    from acp_sim.streams import FdReceiveStream, FdSendStream

    trace_file = open(trace_path, "w", encoding="utf-8", buffering=1) if trace_path else None  # noqa: SIM115
    sink = (lambda event: trace_file.write(event.to_json() + "\n")) if trace_file else None
    agent = SimAgent(profile, seed=seed, trace_sink=sink)

    async def serve() -> None:
        await agent.serve(FdReceiveStream(0), FdSendStream(1))

    try:
        clock.run(serve, backend=backend, virtual=False)
    except KeyboardInterrupt:
        return 130
    finally:
        if trace_file is not None:
            trace_file.close()
    return 0


def run_demo(profile: AgentProfile, seed: int, backend: clock.Backend, sessions: int, out: IO[str]) -> int:
    from acp_sim.demo import demo

    wall = time.perf_counter()
    lines, simulated = clock.run(demo, profile, seed, sessions, backend=backend)
    wall = time.perf_counter() - wall
    for line in lines:
        print(line, file=out)
    print(
        f"\n{sessions} sessions, {simulated:.3f} simulated seconds in {wall * 1000:.1f} ms of wall time "
        f"({simulated / wall:,.0f}x) on {backend}, seed {seed}",
        file=out,
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
