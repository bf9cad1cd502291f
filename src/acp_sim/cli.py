"""The ``acp-sim`` command: the stdio simulated agent and a demo of the orchestrator."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING

import anyio

from acp_sim import clock, mcp_server
from acp_sim.conformance import report_json_schema
from acp_sim.errors import ProfileError
from acp_sim.faults import FAULT_ADAPTER, Fault, parse_fault_spec
from acp_sim.live import cli as live_cli
from acp_sim.plan import cli as plan_cli
from acp_sim.profile import BUILTIN_PROFILES, AgentProfile, load_profile, profile_json_schema, with_overrides
from acp_sim.scenario import scenario_json_schema
from acp_sim.trace_collector import ENV_TRACE_TO, InstanceFile, TraceToError

if TYPE_CHECKING:
    from acp_sim.agent import SimAgent

# run_stdio_agent's state_dir when none is given: the user's state directory (acp_sim.store).
DEFAULT_STATE = Path("<default state directory>")

AGENT_EPILOG = """\
faults (--fault SPEC, repeatable; also `faults:` in a profile file):
  SPEC is KIND[:KEY=VALUE,...]; a VALUE is JSON when it parses (numbers, true/false/null,
  "a, quoted string", {"kind": "uniform", "low": 1, "high": 3}), else plain text.
  trigger keys (any kind):
    at=SECONDS        fire at this time since the agent started (a number or a distribution)
    after=N           fire at the Nth matching message; matching: direction=recv|send (default
                      recv), method=METHOD, session=INDEX (sessions numbered from 0 in the order
                      the agent created or restored them)
                      (neither: at once; a behaviour then applies to the next matching message)
    probability=P     fire only with this probability, drawn from --seed
    launch=N|null     the launch it belongs to on --state-dir (default 0: not after a relaunch)
  kinds:
    crash[:code=1,orphan_mcp=false]        exit at once (os._exit), trace flushed first
    hang[:method=M]                        go silent (without method) / never answer one request
    disconnect                             close stdin/stdout and exit 0
    malformed_line[:line=TEXT]             write a line that is not JSON-RPC
    foreign_session_update[:session_id=ID,text=TEXT]   an update for a session nobody opened
    mcp_child_crash[:server=NAME]          kill MCP children (of session=INDEX, or all)
    error_reply:method=M[,code=-32603,message=TEXT,data=JSON]   answer a request with an error
    slow_session_new:seconds=S             the next session/new takes S longer
    mcp_spawn_failure[:server=NAME,method=session/new]   its stdio MCP servers fail to start
    stall:seconds=S                        pause S before the next chunk
    ignore_cancel                          the next session/cancel has no effect
    wrong_stop_reason[:stop_reason=end_turn,method=session/cancel|session/prompt]
    one_turn_behind                        Claude Code 0.23.1's defect after the next cancel
    updates_after_response[:count=2,interval=0]   chunks after the prompt's response
    empty_turn                             the next turn ends end_turn at once, without a chunk
    early_session_updates                  the next session/new sends its session's updates first
  examples:
    --fault crash:at=2.5
    --fault error_reply:method=session/new,after=2
    --fault stall:seconds=3,after=2,direction=send,method=session/update,session=0

`acp-sim schema profile` prints the JSON Schema of profile files (`acp-sim schema fault`: of a fault).
"""


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
        "--text",
        choices=("tagged", "natural"),
        help="chunk text: tagged (unique, the profile's default) or natural (ordinary model output)",
    )
    parser.add_argument(
        "--coalesce-writes",
        action="store_true",
        help="write a turn's last chunk, usage_update and prompt response together, in one write",
    )
    parser.add_argument(
        "--updates-before-new-response",
        action="store_true",
        help="send a new session's available_commands_update and current_mode_update before the "
        "session/new response",
    )
    parser.add_argument(
        "--backend", choices=clock.BACKENDS, default="asyncio", help="anyio backend (default: asyncio)"
    )


def _profile(args: argparse.Namespace) -> AgentProfile:
    profile = _overridden(args)
    if getattr(args, "text", None):
        profile = profile.model_copy(update={"text_mode": args.text})
    if getattr(args, "coalesce_writes", False):
        profile = profile.model_copy(update={"coalesce_writes": True})
    if getattr(args, "updates_before_new_response", False):
        profile = profile.model_copy(update={"updates_before_new_response": True})
    return profile


def _overridden(args: argparse.Namespace) -> AgentProfile:
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
        description="Serve ACP (newline-delimited JSON-RPC 2.0) on stdin/stdout until stdin closes. "
        "Same seed, profile, faults and client messages give the same trace (times aside).",
        epilog=AGENT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_profile_options(agent)
    agent.add_argument("--trace", metavar="FILE", help="write the ground-truth trace here as JSON lines")
    agent.add_argument(
        "--trace-to",
        metavar="DIR",
        default=os.environ.get(ENV_TRACE_TO) or None,
        help="write the trace into a run directory made by acp_sim.trace_collector.TraceCollector, "
        f"one file per agent instance (for bridges that start the agent themselves; env {ENV_TRACE_TO})",
    )
    agent.add_argument(
        "--state-dir",
        metavar="DIR",
        help="the agent's disk: sessions that had a turn survive a restart here (resume/load), "
        "and launches are counted (a relaunch gets a derived seed); default: the user's state "
        "directory ($XDG_STATE_HOME/acp-sim, else ~/.local/state/acp-sim), shared by every run: "
        "sessions persist, launches are not counted (every start is launch 0)",
    )
    agent.add_argument(
        "--memory-only",
        action="store_true",
        help="keep sessions in memory only: nothing survives a restart (no disk is read or written)",
    )
    agent.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="SPEC",
        help="inject a fault, e.g. crash:at=2.5 (repeatable; syntax below)",
    )

    schema_cmd = commands.add_parser(
        "schema", help="print a JSON Schema", description="Print the JSON Schema of a file format."
    )
    schema_cmd.add_argument(
        "what",
        choices=("profile", "fault", "scenario", "report"),
        help="profile files, one fault, scenario files, or conformance reports (conformance.json)",
    )
    _add_run_parser(commands)
    plan_cli.add_parser(commands)

    demo = commands.add_parser(
        "demo",
        help="open several sessions on the in-process agent and stream a turn in each",
        description="Runs on virtual time: seconds of simulated latency cost microseconds.",
    )
    _add_profile_options(demo)
    demo.add_argument("--sessions", type=int, default=3, metavar="N", help="sessions to open (default: 3)")

    server = commands.add_parser(
        "mcp-server",
        help="run a small real MCP server on stdio (to put in an agent's mcpServers)",
        description=mcp_server.DESCRIPTION,
    )
    mcp_server.add_arguments(server)

    live_cli.add_model_stub_arguments(
        commands.add_parser(
            "model-stub",
            help="serve a loopback fake of the Anthropic Messages API (live mode, offline)",
            description="A seeded fake of the Anthropic Messages API on 127.0.0.1, for running the real "
            "Claude Code CLI and ACP adapter offline.",
        )
    )
    live_cli.add_tap_arguments(
        commands.add_parser(
            "tap",
            help="run an agent command with its stdio recorded as a trace (live mode)",
            description="A transparent stdio tap between a bridge and a real agent.",
        )
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "schema":
        schemas = {
            "profile": profile_json_schema,
            "fault": FAULT_ADAPTER.json_schema,
            "scenario": scenario_json_schema,
            "report": report_json_schema,
        }
        schema = schemas[args.what]()
        print(json.dumps(schema, indent=2))
        return 0
    if args.command == "mcp-server":
        own_argv = list(sys.argv[1:] if argv is None else argv)
        own_argv = own_argv[own_argv.index("mcp-server") + 1 :]
        return mcp_server.main(mcp_server.options_from_namespace(args), own_argv)
    if args.command == "model-stub":
        return live_cli.model_stub_main(args)
    if args.command == "tap":
        return live_cli.tap_command(args)
    if args.command == "plan":
        return plan_cli.main(args)
    if args.command == "run":
        return run_scenario_command(args)
    try:
        profile = _profile(args)
        faults = [parse_fault_spec(spec) for spec in getattr(args, "fault", [])]
    except ProfileError as exc:
        print(f"acp-sim: {exc}", file=sys.stderr)
        return 2
    if args.command == "agent":
        if args.memory_only and args.state_dir:
            print("acp-sim: --memory-only and --state-dir exclude each other", file=sys.stderr)
            return 2
        state: str | Path | None = args.state_dir or (None if args.memory_only else DEFAULT_STATE)
        return run_stdio_agent(profile, args.seed, args.backend, args.trace, state, faults, args.trace_to)
    return run_demo(profile, args.seed, args.backend, args.sessions, sys.stdout)


def run_stdio_agent(
    profile: AgentProfile,
    seed: int,
    backend: clock.Backend,
    trace_path: str | None,
    state_dir: str | Path | None = None,
    faults: Sequence[Fault] = (),
    trace_to: str | None = None,
) -> int:
    from acp_sim.agent import SimAgent
    from acp_sim.store import SessionStore, default_state_dir
    from acp_sim.streams import FdReceiveStream, FdSendStream

    try:  # before the store: a bad address must not count a launch
        collected = InstanceFile.create(trace_to) if trace_to else None
    except TraceToError as exc:
        print(f"acp-sim: {exc}", file=sys.stderr)
        return 2
    """``state_dir``: a directory, ``DEFAULT_STATE`` (the user's state directory) or None (memory)."""
    if state_dir is DEFAULT_STATE:
        store = SessionStore(default_state_dir(), shared=True)
    else:
        store = SessionStore(state_dir)
    launch = store.next_launch()
    # A relaunch on the same disk must not mint the first run's session ids again.
    seed = seed if launch == 0 else clock.derive_seed(seed, "launch", launch)
    trace_file = open(trace_path, "w", encoding="utf-8", buffering=1) if trace_path else None  # noqa: SIM115
    sink = (lambda event: trace_file.write(event.to_json() + "\n")) if trace_file else None
    if collected is not None:  # --trace-to: its own file, and --trace's too when both are given
        collected.tee, sink = sink, collected.write

    def exit_process(code: int) -> None:
        # A crash: the trace is complete up to the crash, then the process dies without cleanup.
        if trace_file is not None:
            trace_file.flush()
        if collected is not None:
            collected.flush()
        os._exit(code)

    agent = SimAgent(
        profile,
        seed=seed,
        trace_sink=sink,
        store=store,
        launch=launch,
        faults=faults,
        exit_process=exit_process,
    )

    async def serve() -> None:
        if collected is not None:  # seq 0: run id, pid and time origin, for the collector
            collected.announce(agent.trace, agent.clock.now(), launch=launch, seed=seed, argv=sys.argv[1:])
        async with anyio.create_task_group() as tg:
            tg.start_soon(_terminate_on_signal, agent)
            await agent.serve(FdReceiveStream(0), FdSendStream(1))
            tg.cancel_scope.cancel()

    try:
        clock.run(serve, backend=backend, virtual=False)
    except KeyboardInterrupt:
        return 130
    finally:
        if trace_file is not None:
            trace_file.close()
        if collected is not None:
            collected.close()
    return 0


async def _terminate_on_signal(agent: SimAgent) -> None:
    """SIGTERM or SIGINT: the agent records its exit and reaps its MCP children before it dies
    (without this the signal's default action ends it with no ``exit`` event, children orphaned)."""
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            agent.terminate(signum)
            return


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


def _add_run_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    run_cmd = commands.add_parser(
        "run",
        help="run a scenario file against a bridge and print its timeline",
        description="Run a scenario file (see `acp-sim schema scenario`) on the in-process simulated agent "
        "(virtual time) against a bridge, judge it like pytest does, and print a per-session timeline. "
        "Exit code: 0 passed, 1 failed, 2 bad file or bridge, 3 skipped (the bridge lacks what it needs).",
    )
    run_cmd.add_argument("file", metavar="FILE", help="the scenario file (YAML)")
    run_cmd.add_argument(
        "--bridge",
        default="pytest_acp.reference:bridge",
        metavar="MODULE:FACTORY",
        help="the bridge under test, an adapter factory (default: the reference orchestrator)",
    )
    run_cmd.add_argument("--html", metavar="OUT", help="also write the timeline as a standalone HTML file")
    run_cmd.add_argument(
        "--backend",
        choices=clock.BACKENDS,
        default=None,
        help="anyio backend (default: the scenario's own, else asyncio)",
    )
    run_cmd.add_argument("--quiet", action="store_true", help="no timeline, only the verdict (and report)")


def run_scenario_command(args: argparse.Namespace, out: IO[str] | None = None) -> int:
    # pytest_acp (the harness and the oracle) is imported here only: acp_sim stays usable without it.
    from rich.console import Console

    from acp_sim.scenario import ScenarioError, load_scenario
    from acp_sim.timeline import print_timeline, write_html

    out = out or sys.stdout
    try:
        loaded = load_scenario(args.file)
    except ScenarioError as exc:
        print(f"acp-sim: {exc}", file=sys.stderr)
        return 2
    from pytest_acp.config import load_bridge
    from pytest_acp.scenarios.project import add_import_paths
    from pytest_acp.scenarios.run import run_scenario

    # The bridge is imported as pytest run from the project would import it (its pythonpath).
    add_import_paths(Path(args.file))
    try:
        factory = load_bridge(args.bridge, option="--bridge")
    except Exception as exc:  # pytest.UsageError: names the bad module or attribute
        print(f"acp-sim: {exc}", file=sys.stderr)
        return 2
    backend = args.backend or loaded.scenario.backend or "asyncio"
    result = run_scenario(loaded, factory, backend=backend, bridge=args.bridge)
    timeline = result.timeline()
    console = Console(file=out, width=max(100, Console().width), highlight=False)
    if not args.quiet:
        print_timeline(timeline, console)
    if args.html:
        write_html(timeline, args.html)
        print(f"HTML timeline written to {args.html}", file=out)
    for late in result.late:
        print(f"warning: {late}", file=out)
    if result.skipped:
        print(f"skipped: {result.skipped}", file=out)
        return 3
    if not result.passed:
        replay = f"acp-sim run {args.file} --bridge {args.bridge} --backend {backend}"
        print(result.report(replay=replay), file=out)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
