"""Running a scenario file against a bridge: the script through the harness, then the oracle.

Every client action goes through ``pytest_acp.harness.harness.Harness``, the same code the state machine
uses, on a virtual-time event loop (``pytest_acp.harness.loop.LoopThread``). The script plays in one task
with no extra checkpoint between steps, and waits with the state machine's own predicates, so a
state-machine run written out as a scenario (``pytest_acp.scenarios.export``) replays the same interleaving.
At the end the run is drained, every session closed, the bridge stopped and leaked processes
looked for (``Harness.stop``), and the oracle judges the whole run; then the file's expectations
(stop reasons, chunk counts, process counts, agent launches) are compared.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio

from acp_sim.agent import InProcessAgent
from acp_sim.clock import Backend
from acp_sim.scenario import (
    TIME_SLACK,
    AdvanceStep,
    CancelStep,
    ChangeCwdStep,
    CheckStep,
    CloseStep,
    CrashStep,
    FaultStep,
    OpenStep,
    PrewarmStep,
    PromptStep,
    ReconnectStep,
    ScenarioFile,
    SlowReaderStep,
    WaitStep,
    describe_step,
)
from acp_sim.timeline import Timeline
from pytest_acp.adapter import (
    TEXT_CHUNK,
    AdapterFactory,
    AgentUnderTest,
    BridgeCapabilities,
    LogEntry,
    supports,
)
from pytest_acp.harness.bridge_raised import BridgeFailure, BridgeRaised, bridge_report
from pytest_acp.harness.harness import Harness
from pytest_acp.harness.loop import LoopThread
from pytest_acp.properties.truth import InstanceTrace
from pytest_acp.properties.violation import Violation
from pytest_acp.report.failure import RunContext, format_failure
from pytest_acp.report.timeline import build_timeline

EXPECTATION = "expectation"
"""The ``property`` of a failed expectation of the file (as opposed to P1-P9)."""
# Real seconds a whole scenario may take: only a bridge blocked outside the simulation comes near.
REAL_TIME_LIMIT = 300.0
RECONNECT_POLL = 0.01


def outcome_of(entry: LogEntry) -> str:
    """How a turn ended for its caller, in the words of ``expect.stop_reasons``."""
    if entry.timed_out:
        return "timeout"
    if entry.error is not None:
        return "error"
    return str(entry.stop_reason)


@dataclass
class ScenarioResult:
    """What a run of one scenario did and how it was judged."""

    file: ScenarioFile
    backend: str
    bridge: str
    log: list[LogEntry] = field(default_factory=list)
    traces: list[InstanceTrace] = field(default_factory=list)
    capabilities: BridgeCapabilities = field(default_factory=BridgeCapabilities)
    violations: list[Violation] = field(default_factory=list)
    """Every violation the oracle found, judged or not."""
    failures: list[Violation] = field(default_factory=list)
    """What fails the scenario: violations of the required properties, then failed expectations."""
    steps: list[str] = field(default_factory=list)
    skipped: str | None = None
    late: list[str] = field(default_factory=list)
    """Timed steps (``at:``) that ran late because the steps before them took longer: the script
    did not run as written (a warning, not a failure)."""
    virtual_time: bool = True
    """Played on the virtual clock (the simulator), or on real time (a bridge's own agent process)."""
    bridge_failure: BridgeFailure | None = None
    """An exception that escaped the bridge (``pytest_acp.harness.bridge_raised``): the scenario's finding."""

    @property
    def passed(self) -> bool:
        return self.skipped is None and not self.failures

    @property
    def verdict(self) -> Literal["passed", "failed", "skipped"]:
        return "skipped" if self.skipped else ("passed" if self.passed else "failed")

    def report(self, replay: str | None = None) -> str:
        """The failure report, as the state machines write it (property, seed, steps, timeline)."""
        sc = self.file.scenario
        head = f"scenario {sc.name} ({self.file.path}): {sc.description.strip()}"
        if not self.failures:
            return f"{head}\npassed"
        context = RunContext(
            seed=sc.seed,
            backend=self.backend,
            bridge=self.bridge,
            replay=replay,
            virtual_time=self.virtual_time,
        )
        if self.bridge_failure is not None:
            body = bridge_report(
                self.bridge_failure,
                context=context,
                steps=self.steps,
                traces=self.traces,
                log=self.log,
                capabilities=self.capabilities,
            )
        else:
            body = format_failure(
                self.failures,
                context=context,
                steps=self.steps,
                traces=self.traces,
                log=self.log,
                capabilities=self.capabilities,
            )
        # format_failure speaks of shrunk (or unshrunk) steps, the state machine's; a script is as
        # written
        for machine_words in ("steps (shrunk; ", "steps (as generated, not shrunk; "):
            body = body.replace(machine_words, "steps (", 1)
        return f"{head}\n\n{body}"

    def timeline(self) -> Timeline:
        sc = self.file.scenario
        where = f"{self.file.path}; bridge {self.bridge}; {self.backend}, seed {sc.seed}"
        return build_timeline(
            self.traces,
            self.log,
            self.capabilities,
            title=f"scenario {sc.name}",
            subtitle=f"{sc.description.strip()}  [{where}]",
            violations=[v for v in self.failures if v.property != EXPECTATION] or self.violations,
            verdict=self.verdict,
            notes=self._notes(),
        )

    def _notes(self, limit: int = 5) -> list[str]:
        if self.skipped:
            return [self.skipped]
        notes = [str(v) for v in self.failures[:limit]]
        if len(self.failures) > limit:
            notes.append(f"... and {len(self.failures) - limit} more (the failure report lists them)")
        return notes


class _Player:
    """Plays a script through a started harness (inside the event loop)."""

    def __init__(self, file: ScenarioFile, harness: Harness) -> None:
        self.file = file
        self.h = harness
        self.steps: list[str] = []
        self.failures: list[Violation] = []
        self.late: list[str] = []

    def _note(self, index: int, text: str) -> None:
        line = self.file.step_line(index)
        where = f"  [script[{index}], line {line}]" if line is not None else ""
        self.steps.append(f"{self.h._log.now():12.6f}  {text}{where}")

    def _late(self, index: int, at: float) -> None:
        line = self.file.step_line(index)
        where = f" (line {line})" if line is not None else ""
        self.late.append(
            f"script[{index}]{where} is timed at={at:g} s but ran at t={self.h._log.now():.3f} s: "
            "the steps before it took longer"
        )

    def _fail(self, message: str, key: str | None = None) -> None:
        self.failures.append(Violation(EXPECTATION, message, key=key, t=self.h._log.now()))

    async def play(self) -> None:
        h = self.h
        for index, step in enumerate(self.file.scenario.script):
            if step.at is not None and step.at > h._log.now() + TIME_SLACK:
                # sleep_until(now) would still yield to other tasks: only sleep when time must pass
                await anyio.sleep(step.at - h._log.now())
            elif step.at is not None and h._log.now() > step.at + TIME_SLACK:
                self._late(index, step.at)
            await self._run(index, step)
            h._observe()

    async def _wait(self, predicate: Callable[[], bool], limit: float | None = None) -> bool:
        return await self.h.wait_for(predicate, limit)

    async def _run(self, index: int, step: Any) -> None:
        h = self.h
        args = step.args
        text = describe_step(step)
        if isinstance(step, OpenStep):
            servers = [s.to_wire(sys.executable) for s in args.mcp_servers]
            self._note(index, text)
            key = h.open(cwd=args.cwd, mcp_servers=servers, model=args.model, key=args.session)
            if step.waits:
                await self._wait(lambda: h.keys[key].status != "opening")
        elif isinstance(step, PromptStep):
            for name in args.sessions:
                ks = h.keys[name]
                if ks.status in ("opening", "busy"):
                    # The file says "prompt": wait (no time passes when it is ready already).
                    await self._wait(lambda ks=ks: ks.status not in ("opening", "busy"))
                if ks.status != "idle":
                    self._note(index, f"prompt {name} skipped: the session is {ks.status}")
                    self._fail(
                        f"script[{index}] could not prompt {name}: the session is {ks.status}", key=name
                    )
                    continue
                token = h.prompt(name)
                self._note(index, f"prompt {name} turn {ks.turns} ({token})")
            if step.waits:
                await self._wait(lambda: all(h.keys[n].running == 0 for n in args.sessions))
        elif isinstance(step, CancelStep):
            self._note(index, text)
            h.cancel(args.session)
        elif isinstance(step, CloseStep):
            self._note(index, text)
            h.close(args.session)
            if step.waits:
                await self._wait(lambda: h.keys[args.session].status == "closed")
        elif isinstance(step, WaitStep):
            self._note(index, text)
            if args.sessions == "all":
                await h.wait_idle(args.limit)
            else:
                names = list(args.sessions)
                await self._wait(
                    lambda: all(
                        h.keys[n].status not in ("opening", "busy", "closing") and h.keys[n].running == 0
                        for n in names
                    ),
                    args.limit,
                )
        elif isinstance(step, ChangeCwdStep):
            self._note(index, text)
            h.change_cwd(args.old, args.new)
            await self._wait(lambda: h._pending_changes == 0)
        elif isinstance(step, PrewarmStep):
            self._note(index, text)
            servers = [s.to_wire(sys.executable) for s in args.mcp_servers]
            h.prewarm(cwd=args.cwd, mcp_servers=servers, model=args.model)
            await self._wait(lambda: h._pending_prewarms == 0)
        elif isinstance(step, AdvanceStep):
            self._note(index, text)
            await h.advance(args)
        elif isinstance(step, CrashStep):
            self._note(index, "crash the agent")
            h.crash()
        elif isinstance(step, ReconnectStep):
            self._note(index, text)
            await self._reconnect(index, args.limit)
        elif isinstance(step, FaultStep):
            self._note(index, text)
            h.inject(args)
        elif isinstance(step, SlowReaderStep):
            self._note(index, text)
            h.set_slow(args.session, args.on)
        elif isinstance(step, CheckStep):
            self._note(index, text)
            self._check(index, args)

    async def _reconnect(self, index: int, limit: float) -> None:
        agents = self.h.agent.launcher.agents
        gone = bool(agents) and getattr(agents[-1], "exit_reason", None) is not None
        count = len(agents)

        def ready() -> bool:
            if gone and len(agents) <= count:
                return False
            return bool(agents) and any(
                e.kind == "send" and e.method == "initialize" and "result" in (e.message or {})
                for e in agents[-1].trace.events
            )

        with anyio.move_on_after(limit):
            # The launcher announces no launch: poll (virtual time, so polling costs no waiting).
            while not ready():  # noqa: ASYNC110
                await anyio.sleep(RECONNECT_POLL)
            return
        self._fail(f"script[{index}] reconnect: the bridge started no new agent within {limit:g} s")

    def _check(self, index: int, args: Any) -> None:
        traces = self.h.instances()
        if args.mcp_processes is not None:
            live = mcp_counts(traces)["live"]
            if live != args.mcp_processes:
                self._fail(
                    f"script[{index}] check: {live} MCP server process(es) alive, "
                    f"expected {args.mcp_processes}"
                )
        if args.agent_launches is not None and len(traces) != args.agent_launches:
            self._fail(
                f"script[{index}] check: {len(traces)} agent launch(es), expected {args.agent_launches}"
            )


def mcp_counts(traces: list[InstanceTrace]) -> dict[str, int]:
    """Stdio MCP server processes from the agents' ground truth: spawned, most alive at once, alive."""
    changes = []
    for trace in traces:
        for e in trace.events:
            if e.kind == "spawn" and (e.detail or {}).get("transport", "stdio") == "stdio":
                changes.append((e.t + trace.offset, 1))
            elif e.kind == "reap":
                changes.append((e.t + trace.offset, -1))
    live = peak = spawned = 0
    for _, change in sorted(changes, key=lambda c: (c[0], -c[1])):
        live += change
        spawned += change > 0
        peak = max(peak, live)
    return {"spawned": spawned, "peak": peak, "live": live}


def requirements_missing(file: ScenarioFile, harness: Harness) -> list[str]:
    caps = harness.capabilities
    have = {
        "timeouts": any(t is not None and math.isfinite(t) for t in (caps.turn_timeout, caps.idle_timeout)),
        "reconnect": caps.reconnects,
        "prewarm": supports(harness.adapter, "prewarm"),
        "change_cwd": supports(harness.adapter, "change_cwd"),
    }
    return [need for need in file.scenario.requirements() if not have.get(need, True)]


def check_expectations(
    file: ScenarioFile, log: list[LogEntry], traces: list[InstanceTrace]
) -> list[Violation]:
    expect = file.scenario.expect
    out: list[Violation] = []
    ends: dict[str, dict[int, LogEntry]] = {}
    chunks: dict[str, dict[int, int]] = {}
    for entry in log:
        if entry.key is None or entry.turn is None:
            continue
        if entry.kind == "end":
            ends.setdefault(entry.key, {}).setdefault(entry.turn, entry)
        elif entry.kind == "update" and entry.update_kind == TEXT_CHUNK and entry.text:
            per = chunks.setdefault(entry.key, {})
            per[entry.turn] = per.get(entry.turn, 0) + 1
    for name, wanted in expect.stop_reasons.items():
        got = [
            outcome_of(ends[name][n]) if n in ends.get(name, {}) else "never ended"
            for n in range(1, len(wanted) + 1)
        ]
        if got != list(wanted):
            out.append(
                Violation(
                    EXPECTATION, f"stop reasons of {name}: expected {list(wanted)}, got {got}", key=name
                )
            )
    for name, wanted_counts in expect.chunks.items():
        got_counts = [chunks.get(name, {}).get(n, 0) for n in range(1, len(wanted_counts) + 1)]
        if got_counts != list(wanted_counts):
            out.append(
                Violation(
                    EXPECTATION,
                    f"text chunks delivered to {name} per turn: "
                    f"expected {list(wanted_counts)}, got {got_counts}",
                    key=name,
                )
            )
    if expect.mcp_processes is not None:
        counts = mcp_counts(traces)
        counts["end"] = counts["live"]
        for what in ("spawned", "peak", "end"):
            wanted_n = getattr(expect.mcp_processes, what)
            if wanted_n is not None and counts[what] != wanted_n:
                out.append(
                    Violation(
                        EXPECTATION, f"MCP server processes {what}: expected {wanted_n}, got {counts[what]}"
                    )
                )
    if expect.agent_launches is not None and len(traces) != expect.agent_launches:
        out.append(
            Violation(EXPECTATION, f"agent launches: expected {expect.agent_launches}, got {len(traces)}")
        )
    if expect.mcp_isolated:
        from pytest_acp.properties.isolation import check_isolation

        out.extend(check_isolation(traces))
    return out


def run_scenario(
    file: ScenarioFile,
    factory: AdapterFactory,
    *,
    backend: Backend = "asyncio",
    bridge: str = "reference orchestrator",
    guard_processes: bool = True,
) -> ScenarioResult:
    """Run ``file`` against the bridge ``factory`` makes, on ``backend`` (virtual time)."""
    sc = file.scenario
    launcher = InProcessAgent(file.profile, seed=sc.seed, faults=list(sc.faults))
    agent = AgentUnderTest(launcher, backend=backend, virtual_time=True, seed=sc.seed)
    harness = Harness(factory, agent, guard_processes=guard_processes)
    loop = LoopThread(backend, name=f"acp-scenario-{sc.name}")
    return play(file, harness, ScenarioResult(file, backend, bridge), loop)


def play(
    file: ScenarioFile,
    harness: Harness,
    result: ScenarioResult,
    loop: LoopThread,
    *,
    on_started: Callable[[_Player], None] | None = None,
    expectations: bool = True,
    time_limit: float | None = None,
) -> ScenarioResult:
    """Start the harness on ``loop``, play ``file``, stop, and judge into ``result``.

    The one runner behind ``run_scenario`` (virtual time) and
    ``pytest_acp.harness.realtime.run_scenario_realtime`` (real time); ``on_started`` runs once the bridge
    is up, before the first step. ``expectations=False`` judges the properties alone (against a
    real agent the file's counts of chunks and stop reasons describe another agent). With
    ``time_limit`` the script stops after that many seconds (a live budget's cap) and the run is
    still drained, stopped and judged, so nothing is left running.
    """
    sc = file.scenario
    player = _Player(file, harness)

    async def go() -> list[Violation]:
        try:
            await harness.start()
        except BridgeRaised:  # reported from harness.failure
            return []
        if on_started is not None:
            on_started(player)
        missing = requirements_missing(file, harness)
        if missing:
            result.skipped = f"the bridge does not offer what this scenario needs: {', '.join(missing)}"
            await harness.stop(drain=False)
            return []
        try:
            with anyio.move_on_after(time_limit if time_limit is not None else math.inf) as budget:
                await player.play()
            if budget.cancelled_caught:
                player._fail(f"stopped after {time_limit:g} s of real time: the live budget's time cap")
        except Exception:
            if harness.failure is None:
                raise
            # the bridge raised an exception of its own: the script cannot go on (reported below)
        finally:
            await harness.stop(drain=True)
        return harness.check(final=True) if harness.failure is None else []

    try:
        violations = loop.call(go, limit=REAL_TIME_LIMIT, what=f"scenario {sc.name}")
    finally:
        loop.close()
    result.log = list(harness.log.entries) if harness.log is not None else []
    result.traces = harness.instances() if harness.truth is not None else []
    result.capabilities = harness.capabilities
    result.violations = violations
    result.steps = player.steps
    result.late = player.late
    result.bridge_failure = harness.failure
    if harness.failure is not None:
        result.failures = [harness.failure.violation()]
        return result
    if result.skipped:
        return result
    required = set(sc.expect.required())
    judged = [v for v in violations if v.property in required]
    judged.sort(key=lambda v: (v.t if v.t is not None else float("inf"), v.property))
    expected = check_expectations(file, result.log, result.traces) if expectations else []
    result.failures = judged + player.failures + expected
    return result
