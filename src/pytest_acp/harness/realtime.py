"""Real-time runs: the property suite against a bridge that starts the agent itself.

A bridge in another language (``pytest_acp.harness.subprocess_bridge``) launches ``acp-sim agent`` as its
own child, so the agent is a real process on the real clock, never the in-process simulator on
virtual time (a virtual clock jumps while anything waits on a real pipe: the design notes'
hazard). This module wires such a run:

- ``subprocess_agent`` makes a ``TraceCollector`` run directory and the agent command that writes
  every instance's trace there (``acp-sim agent --trace-to``), so the oracle sees each agent the
  bridge starts, restarts included, mapped onto the run's clock by each instance's monotonic
  time origin.
- ``REALTIME_PROFILE`` is the state machine's agent profile with every latency scaled down
  (``scale_profile``), so a run of examples takes seconds rather than minutes.
- ``RealTimeMachine`` is ``pytest_acp.harness.machine.AcpStateMachine`` on a real-time loop with that
  agent: the same rules, invariants and oracle, with real-time step sizes, a slow reader that is
  slow in real seconds, crashes that kill the newest agent process (bridges that do not
  reconnect included), and reports that say "real time". Faults cannot be handed to another
  process at run time: each example draws a schedule of the same fault kinds and gives it to each
  agent launch on its command line (``pytest_acp.harness.realtime_faults``; ``agent_faults`` adds fixed
  ones).
- ``run_scenario_realtime`` plays a scenario file (``scenarios/``) against such a bridge, its
  times scaled the same way, with the scenario runner's player, oracle and expectations.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn

import anyio
from hypothesis import strategies as st
from hypothesis.errors import Flaky
from hypothesis.stateful import initialize, invariant, precondition, rule

from acp_sim.clock import Backend
from acp_sim.profile import AgentProfile, ToolCallSpec, load_profile_data
from acp_sim.scenario import FaultStep, ScenarioFile
from acp_sim.trace_collector import TraceCollector
from pytest_acp.adapter import AdapterFactory, AgentUnderTest, supports
from pytest_acp.harness.bridge_raised import BridgeFailure
from pytest_acp.harness.harness import SLOW_READ_DELAY, Harness, WaitLimits
from pytest_acp.harness.loop import LoopThread
from pytest_acp.harness.machine import (
    DEFAULT_FAULTS,
    MACHINE_PROFILE,
    PICK,
    AcpStateMachine,
    PropertyViolation,
)
from pytest_acp.harness.machine_run import RunStats, judge_effect, machine_for, run_seeded
from pytest_acp.harness.realtime_faults import FAULT_DRAWS, ScheduledFault, compact_spec, schedule_faults
from pytest_acp.harness.realtime_limits import RealTimeLimits, derive_limits
from pytest_acp.harness.realtime_scaling import SCENARIO_SCALE, scale_profile, scale_scenario, shift_scenario
from pytest_acp.properties.violation import Violation
from pytest_acp.report.exercised import Exercised
from pytest_acp.report.failure import RunContext
from pytest_acp.report.progress import Progress

if TYPE_CHECKING:
    from pytest_acp.scenarios.run import ScenarioResult

# The machine's agent, 30 times faster: session/new ~0.1 s, turns of 0.1-1 s.
REALTIME_SCALE = 1 / 30
# Real seconds the machine's ``advance`` rule may wait at most (it ends early when a turn or an
# action ends). No millisecond waits: on real time a step's own overhead is longer, so such a
# wait did nothing but spend one of an example's few steps.
REALTIME_ADVANCE = (0.05, 0.2, 0.5, 1.0)
# Real seconds per update for a caller that reads slowly.
REALTIME_SLOW_READ = 0.25
# Real seconds to wait before believing a violation seen mid-run: an agent writes its trace line
# just after the message itself, so a delivery can be logged a moment before its ground truth.
CONFIRM_AFTER = 0.3
REALTIME_EXAMPLES = 5
# Real seconds shrinking may spend after the first failure: each replay costs a bridge and an agent.
SHRINK_BUDGET = 60.0
REALTIME_STEPS = 20
# Sessions every example starts with (see RealTimeMachine.start).
INITIAL_SESSIONS = 2
# Agent crashes per example: each restart costs the bridge a second of real time, and a bridge
# may rightly give up on an agent that dies again and again.
MAX_CRASHES = 2
# Real seconds between killing an agent and the machine's next action. A bridge learns of the
# death from its child's exit and its pipes closing, which takes a moment on real time; a prompt
# written in that moment goes to a dead agent and fails, which the oracle (built for virtual time,
# where a crash is seen in the same instant) would take for a bridge that never reconnects.
CRASH_NOTICE = 0.2

REALTIME_PROFILE: AgentProfile = scale_profile(
    MACHINE_PROFILE, REALTIME_SCALE, name="property-suite-realtime"
)


def with_tool_calls(profile: AgentProfile, *, permission: bool = True, after_chunk: int = 2) -> AgentProfile:
    """``profile`` whose every turn runs one tool call after ``after_chunk`` chunks, asking the
    client's permission first (``session/request_permission``) when ``permission``: so a bridge
    that relays tool calls to its app and waits for the answer is exercised on real time."""
    models = {}
    for name, model in profile.models.items():
        duration = model.turn.chunk_interval
        tool = ToolCallSpec(after_chunk=after_chunk, kind="edit", permission=permission, duration=duration)
        turn = model.turn.model_copy(update={"tool_calls": [*model.turn.tool_calls, tool]})
        models[name] = model.model_copy(update={"turn": turn})
    data = profile.model_copy(update={"models": models}).model_dump(mode="json", exclude_none=True)
    data["name"] = f"{profile.name}+tools"
    return load_profile_data(data, source=f"with_tool_calls({profile.name})")


@contextmanager
def subprocess_agent(
    *,
    seed: int = 0,
    profile: AgentProfile | str | None = REALTIME_PROFILE,
    faults: Sequence[str] = (),
    backend: Backend = "asyncio",
    directory: str | Path | None = None,
    keep: bool = False,
) -> Iterator[AgentUnderTest]:
    """An ``AgentUnderTest`` whose ``command`` is ``acp-sim agent --trace-to`` a fresh run directory.

    ``launcher`` is the ``TraceCollector``: the harness reads every instance's trace from it and
    its ``crash()`` kills the newest instance. The directory is removed at exit unless ``keep``.
    """
    with TraceCollector(directory, keep=keep) as collector:
        command = collector.agent_command(seed=seed, profile=profile, faults=faults)
        yield AgentUnderTest(
            collector,  # type: ignore[arg-type]  # a launcher for the harness; the bridge launches
            command=command,
            backend=backend,
            virtual_time=False,
            seed=seed,
            extra={"collector": collector},
        )


def realtime_harness(factory: AdapterFactory, agent: AgentUnderTest, **options: Any) -> Harness:
    """A harness for a real-time run whose leak guard also watches the bridge's process groups."""
    options.setdefault("slow_read_delay", REALTIME_SLOW_READ)
    harness = Harness(factory, agent, **options)
    if harness.guard is not None:
        agent.extra["leak_guard"] = harness.guard
    return harness


class RealTimeMachine(AcpStateMachine):
    """``AcpStateMachine`` for bridges that start ``acp-sim agent`` themselves, on real time.

    Extra class attributes: ``agent_faults`` (``--fault`` specs for every agent instance),
    ``advance_steps`` (real seconds), ``slow_read_delay``, ``prewarms`` (the pre-warm rule; off by
    default: P7 wants a warm open within 1% of a cold ``session/new``, a virtual-time bound that
    a round trip through two processes cannot meet on a loaded machine; pre-warm is still tested
    directly), ``confirm_after``, ``initial_sessions``, ``max_crashes`` and ``crash_notice``.
    """

    profile: ClassVar[AgentProfile] = REALTIME_PROFILE
    judge_lazily: ClassVar[bool] = False  # a check is confirmed after a pause (real time passes)
    agent_faults: ClassVar[tuple[str, ...]] = ()
    advance_steps: ClassVar[tuple[float, ...]] = REALTIME_ADVANCE
    slow_read_delay: ClassVar[float] = REALTIME_SLOW_READ
    prewarms: ClassVar[bool] = False
    confirm_after: ClassVar[float] = CONFIRM_AFTER
    initial_sessions: ClassVar[int] = INITIAL_SESSIONS
    max_crashes: ClassVar[int] = MAX_CRASHES
    crash_notice: ClassVar[float] = CRASH_NOTICE
    limits: ClassVar[RealTimeLimits | None] = None
    """Wait limits the user set (``--acp-realtime-limits``); the rest are derived (``wait_limits``)."""
    distinct_cwds: ClassVar[bool] = True
    """Each open gets a directory of its own under the cwd it asks for (``Harness.distinct_cwds``)."""
    tool_calls: ClassVar[bool] = False
    """Every turn runs a tool call that asks permission (``with_tool_calls``): for bridges that relay
    tool calls to their app (map the app's answer with ``pytest_acp.harness.subprocess_bridge.Reply``)."""
    fault_scale: ClassVar[float] = REALTIME_SCALE
    """Seconds in a scheduled fault (a stall) are virtual-time seconds times this."""
    _crashed: int = 0
    _scheduled: Sequence[ScheduledFault] = ()
    _skipped: bool = False
    shrink_budget: ClassVar[float] = SHRINK_BUDGET
    """Real seconds shrinking may take after the first failure (``shrink=True``)."""
    shrink_deadline: ClassVar[float | None] = None
    latest_violation: ClassVar[PropertyViolation | None] = None
    first_violation: ClassVar[PropertyViolation | None] = None

    def wait_limits(self, harness: Harness) -> WaitLimits:
        """How long this example's harness waits: derived from the agent's profile and the bridge's
        declared timeouts (``pytest_acp.harness.realtime_limits``), never the virtual-time constants."""
        return derive_limits(
            self.agent_profile(),
            harness.capabilities,
            slow_read_delay=self.slow_read_delay,
            fault_seconds=max((f.seconds for f in self._scheduled), default=0.0),
            given=type(self).limits,
        )

    @initialize(agent_seed=st.integers(0, 2**16), faults=FAULT_DRAWS)
    def start(self, agent_seed: int, faults: Sequence[tuple[int, int, int]] = ()) -> None:
        factory = type(self).bridge
        if factory is None:
            raise TypeError(
                f"{type(self).__name__}.bridge is not set: build it with realtime_machine_for(factory)"
            )
        if self._shrink_budget_spent():
            self._skipped = True  # see shrinking_budget_spent
            return
        self._scheduled = self.schedule(faults)
        self._agent_cm = self.agent_context(agent_seed)
        agent = self._agent_cm.__enter__()
        self.cwds = self.run_cwds(agent)
        self.loop = LoopThread(self.backend, virtual=False, name="acp-realtime-loop")
        harness = realtime_harness(factory, agent, slow_read_delay=self.slow_read_delay)
        try:
            self._start_bridge(harness)
        except BaseException:
            self.loop.close()
            self.loop = None
            cm, self._agent_cm = self._agent_cm, None
            cm.__exit__(None, None, None)
            raise
        harness.limits = self.wait_limits(harness)
        # A directory per open ties every agent session to its key; sessions of one project share
        # a cwd only where the bridge keeps per-project state (pre-warm, cwd changes).
        harness.distinct_cwds = (
            self.distinct_cwds and not self.prewarms and not supports(harness.adapter, "change_cwd")
        )
        self.h = harness
        self._faults = ()  # another process: no run-time injection (see agent_faults)
        self._step(f"start(agent_seed={agent_seed}) on real time")
        for fault in self._scheduled:
            self._step(f"agent fault scheduled: {fault.describe()}")
        if self.initial_sessions:
            # Real time affords few examples: start each with sessions to work on, so no example
            # is spent opening them (every later rule still applies, opening more included).
            cwd = self.cwds[0]
            servers = [dict(s) for s in self.mcp_sets[0]]

            async def open_initial(h: Harness) -> list[str]:
                keys = [h.open(cwd=cwd, mcp_servers=servers) for _ in range(self.initial_sessions)]
                # The bridge's first agent may still be starting: that wait includes its start.
                await h.wait_for(lambda: all(h.keys[k].status != "opening" for k in keys), h.limits.start)
                return keys

            keys = self._call(open_initial, "opening the first sessions")
            names = ",".join(s.get("name", "?") for s in servers)
            self._step(f"open {', '.join(keys)} cwd={cwd}" + (f" mcp=[{names}]" if servers else ""))

    def agent_context(self, agent_seed: int) -> AbstractContextManager[AgentUnderTest]:
        """The agent of one example: ``acp-sim agent`` processes the bridge starts (``subprocess_agent``)."""
        faults = [*self.agent_faults, *(f.compact() for f in self._scheduled)]
        return subprocess_agent(
            seed=agent_seed, profile=self.agent_profile(), faults=faults, backend=self.backend
        )

    def agent_profile(self) -> AgentProfile:
        """The profile the agent runs: ``profile``, with a permission tool call when ``tool_calls``."""
        return with_tool_calls(self.profile) if self.tool_calls else self.profile

    def run_cwds(self, agent: AgentUnderTest) -> tuple[str, ...]:
        """The machine's cwds moved under this example's own run directory (and created there): a
        real bridge may create or require them, and must never touch ``/work/alpha`` on the host."""
        collector = agent.extra.get("collector")
        if collector is None:
            return self.cwds  # not our agent (the live machine places its own)
        root = Path(collector.path) / "cwd"
        cwds = []
        for cwd in type(self).cwds:
            path = root / cwd.lstrip("/")
            path.mkdir(parents=True, exist_ok=True)
            cwds.append(str(path))
        return tuple(cwds)

    def schedule(self, draws: Sequence[tuple[int, int, int]]) -> list[ScheduledFault]:
        """This example's agent faults (``pytest_acp.harness.realtime_faults``): ``fault_kinds``, or the
        faults every correct bridge copes with; on the first launch, or the one after a crash."""
        kinds = self.fault_kinds if self.fault_kinds is not None else DEFAULT_FAULTS
        launches = 2 if self.crashes and self.max_crashes > 0 else 1
        return schedule_faults(kinds, draws, scale=self.fault_scale, launches=launches)

    # Waiting only while something runs: on real time an idle wait costs seconds and finds nothing.
    @precondition(lambda self: self.h is not None and self.h.busy())
    @rule(pick=st.integers(0, 63))
    def advance(self, pick: int) -> None:  # type: ignore[override]
        seconds = self.advance_steps[pick % len(self.advance_steps)]
        waited, changed = self._call(lambda h: h.advance_until_change(seconds), "advance")
        self._step(
            f"wait {waited:.3g} s (up to {seconds:g} s"
            + ("; until a turn or action ended)" if changed else ")")
        )

    # Bridges that do not reconnect are crashed too: they must then fail the key's turns promptly.
    @precondition(
        lambda self: (
            self.crashes
            and self.h is not None
            and self._crashed < self.max_crashes
            and _newest_agent_alive(self.h)
        )
    )
    @rule()
    def crash_agent(self) -> None:
        # Only a live agent: killing one the bridge is still restarting would be a no-op step.
        self._crashed += 1
        AcpStateMachine.crash_agent(self)
        notice = self.crash_notice

        async def notice_it(h: Harness) -> None:
            await anyio.sleep(notice)

        self._call(notice_it, "after the crash")

    @precondition(lambda self: self.prewarms and self.h is not None and self.h._pending_prewarms == 0)
    @rule(cwd=PICK, mcp=PICK, model=PICK)
    def prewarm(self, cwd: int, mcp: int, model: int) -> None:
        if self.h is not None and getattr(self.h.adapter, "prewarm", None) is not None:
            AcpStateMachine.prewarm(self, cwd, mcp, model)

    @invariant()
    def properties_hold(self) -> None:
        if self.h is None or self._failed:
            return
        violations: list[Violation] = self._call(lambda h: h.check(final=False), "checking")
        if violations:
            confirm = self.confirm_after

            async def again(h: Harness) -> list[Violation]:
                await anyio.sleep(confirm)
                return h.check(final=False)

            violations = self._call(again, "checking again")
        if violations:
            self._record_and_fail(violations)

    def teardown(self) -> None:
        try:
            super().teardown()
        except PropertyViolation as exc:
            self._note_failure(exc)
            raise
        finally:
            cm, self._agent_cm = getattr(self, "_agent_cm", None), None
            if cm is not None:
                cm.__exit__(None, None, None)

    def _bridge_failed(self, failure: BridgeFailure, harness: Harness | None = None) -> NoReturn:
        try:
            super()._bridge_failed(failure, harness)
        except PropertyViolation as exc:
            if type(self).first_violation is None:
                type(self).first_violation = exc
            raise

    def _record_and_fail(self, violations: list[Violation]) -> None:
        try:
            self._fail(violations)
        except PropertyViolation as exc:
            self._note_failure(exc)
            raise

    def _note_failure(self, exc: PropertyViolation) -> None:
        """Keep the first failure, and the latest one of the same property (while shrinking, each
        is smaller than the one before); the first starts the shrinking budget's clock."""
        cls = type(self)
        exc.steps = list(self.steps)  # type: ignore[attr-defined]
        if cls.first_violation is None:
            cls.first_violation = exc
            cls.shrink_deadline = time.monotonic() + cls.shrink_budget
        elif exc.property == cls.first_violation.property:
            cls.latest_violation = exc

    def _shrink_budget_spent(self) -> bool:
        deadline = type(self).shrink_deadline
        return deadline is not None and time.monotonic() > deadline

    @precondition(lambda self: self.h is None and self._skipped)
    @rule()
    def shrinking_budget_spent(self) -> None:
        """Shrinking ran out of its real-time budget: examples from now on do nothing (Hypothesis then
        stops shrinking), so an example with no bridge still has a step to take."""


def _newest_agent_alive(h: Harness) -> bool:
    agents = getattr(h.agent.launcher, "agents", None)
    return bool(agents) and bool(agents[-1].alive())


def realtime_machine_for(
    factory: AdapterFactory,
    *,
    backend: Backend = "asyncio",
    name: str | None = None,
    base: type[RealTimeMachine] = RealTimeMachine,
    **attributes: Any,
) -> type[RealTimeMachine]:
    """A real-time state machine class for this bridge factory (``attributes``: class attributes)."""
    cls_name = name or f"{getattr(factory, '__name__', 'Bridge')}RealTimeMachine"
    machine = machine_for(factory, backend=backend, name=cls_name, base=base, **attributes)
    return machine  # type: ignore[return-value]  (a subclass of ``base``)


def run_realtime_machine(
    machine: type[RealTimeMachine],
    *,
    examples: int = REALTIME_EXAMPLES,
    seed: int = 0,
    steps: int = REALTIME_STEPS,
    shrink: bool = False,
    context: RunContext | None = None,
    limits: RealTimeLimits | None = None,
    progress: Progress | None = None,
    shrink_budget: float | None = None,
    export_dir: str | Path | None = None,
) -> RunStats:
    """Run ``machine`` on real time; raises the ``PropertyViolation`` of the first failure.

    Shrinking is off by default: every replay costs real seconds (and a replay on real time may
    take another path, which Hypothesis would call flaky); the report then shows the steps as
    generated. With ``shrink=True`` a replay that does not fail the same way ends the search and
    the first failure is reported. ``limits``: wait limits to use instead of the derived ones;
    ``progress``: where to say which example and step a long run is at (default: stderr, after
    ``PROGRESS_AFTER`` seconds). A failure's example is exported as a scenario file in
    ``export_dir`` (``pytest_acp.scenarios.realtime_export``), and the report's replay line plays that file.
    """
    bridge = getattr(machine.bridge, "__name__", "bridge")
    ctx = context or RunContext(seed=seed, backend=machine.backend, bridge=bridge)
    ctx.virtual_time = False
    from pytest_acp.scenarios.realtime_export import make_replay_the_export

    run_cls = type(
        machine.__name__,
        (machine,),
        {
            "context": ctx,
            "_hypothesis_internal_use_seed": seed,
            "examples_run": 0,
            "first_violation": None,
            "exercised": Exercised(),
            "limits": limits if limits is not None else machine.limits,
            "shrink_deadline": None,
            "latest_violation": None,
            "shrink_budget": machine.shrink_budget if shrink_budget is None else shrink_budget,
            "progress": progress
            or Progress(examples, steps, after=machine.progress_after, what="acp real time"),
            "__module__": machine.__module__,
        },
    )
    started = time.perf_counter()
    try:
        run_seeded(run_cls, examples=examples, steps=steps, shrink=shrink)
    except PropertyViolation as exc:
        exc.examples = run_cls.examples_run  # type: ignore[attr-defined]
        say_how_shrunk(exc, run_cls, shrink=shrink)
        make_replay_the_export(exc, export_dir)
        raise
    except Flaky as exc:
        # A replay on real time took another path, or the budget stopped the replays: the smallest
        # failure seen of the first one's property is the counterexample.
        found = run_cls.latest_violation or run_cls.first_violation
        if found is None:
            raise
        found.examples = run_cls.examples_run  # type: ignore[attr-defined]
        say_how_shrunk(found, run_cls, shrink=shrink)
        make_replay_the_export(found, export_dir)
        raise found from exc
    exercised = judge_effect(run_cls, ctx)
    return RunStats(run_cls.examples_run, time.perf_counter() - started, exercised=exercised)


GENERATED_HEADING = "steps (as generated, not shrunk; "


def say_how_shrunk(exc: PropertyViolation, machine: type[RealTimeMachine], *, shrink: bool) -> None:
    """Put the truth about shrinking in the report's steps heading: not asked for, not shrunk (and
    why), or shrunk from how many steps to how many (and whether the budget cut it short)."""
    first = machine.first_violation
    before = len(getattr(first, "steps", []) or [])
    after = len(getattr(exc, "steps", []) or [])
    spent = machine.shrink_deadline is not None and time.monotonic() > machine.shrink_deadline
    budget = f" (cut short by its real-time budget of {machine.shrink_budget:g} s)" if spent else ""
    if not shrink:
        note = "as generated, not shrunk"
    elif first is None or exc is first or after >= before:
        note = "as generated: shrinking found no smaller example failing the same way" + budget
    else:
        note = f"shrunk from {before} to {after} steps" + budget
    exc.shrunk = shrink and first is not None and exc is not first and after < before  # type: ignore[attr-defined]
    report = str(exc)
    if GENERATED_HEADING in report:
        exc.args = (report.replace(GENERATED_HEADING, f"steps ({note}; ", 1), *exc.args[1:])


# -- scenario files on real time (scaled by realtime_scaling) ----------------------------------------


def run_scenario_realtime(
    file: ScenarioFile,
    factory: AdapterFactory,
    *,
    backend: Backend = "asyncio",
    scale: float = SCENARIO_SCALE,
    bridge: str = "bridge",
) -> ScenarioResult:
    """Run a scenario file against a bridge that starts ``acp-sim agent`` itself, on real time.

    The same player, oracle and expectations as ``pytest_acp.scenarios.run.run_scenario``, with the
    agent behind ``subprocess_agent`` and every time scaled by ``scale``. The file's scheduled
    ``faults`` go on each agent launch's command line (their own times are not scaled); files that
    inject a fault at a script step are skipped (with the reason): a real agent process cannot take
    a fault at run time.
    """
    from pytest_acp.scenarios.run import ScenarioResult, play

    scaled = scale_scenario(file, scale)
    sc = scaled.scenario
    result = ScenarioResult(file, backend, bridge, virtual_time=False)
    if any(isinstance(step, FaultStep) for step in sc.script):
        result.skipped = "injects agent faults at run time: a real agent process cannot take them then"
        return result
    # Faults scheduled from the start (per launch) go on each agent's command line, as written.
    faults = [
        compact_spec({"kind": f.kind, **f.model_dump(mode="json", exclude_unset=True)}) for f in sc.faults
    ]
    with subprocess_agent(seed=sc.seed, profile=scaled.profile, faults=faults, backend=backend) as agent:
        harness = realtime_harness(factory, agent, slow_read_delay=SLOW_READ_DELAY * scale)
        loop = LoopThread(backend, virtual=False, name=f"acp-scenario-{sc.name}")

        def count_from_now(player: Any) -> None:
            # ``at`` counts from the start of the run, which on virtual time costs nothing; here
            # starting the bridge and its agent took real seconds: count from the end of that.
            player.file = shift_scenario(scaled, harness._log.now())

        return play(scaled, harness, result, loop, on_started=count_from_now)
