"""The property suite and scenario files against the real agent: what ``pytest --acp-live`` runs.

The agent is Claude Code's ACP adapter behind the stdio tap (``acp_sim.live.tap``), talking to the
model stub on loopback (``acp-sim model-stub``) or, with ``--acp-live-model real``, to the real
API. The tap records every line both ways in the simulated agent's trace format, so the oracle
judges a live run exactly as it judges a simulated one; only the clock (real) and the budget
(``pytest_acp.live.budget``) differ.

- ``live_environment`` is one live set-up as a plain context manager: the model stub runs on a
  loop of its own in a thread (a blocking portal), so it streams on its own cadence whatever the
  harness's loop is doing, and the launcher starts a fresh adapter per (re)connect on one HOME.
- ``LiveMachine`` is ``pytest_acp.harness.realtime.RealTimeMachine`` with that agent: every example gets
  a fresh HOME and stub, sessions open in real directories inside it, a crash kills the adapter's
  process tree, and no rule opens or prompts past the budget.
- ``run_scenario_live`` plays a scenario file's client actions against the real agent. The
  file's agent script cannot be imposed on a real agent, so its turn profile becomes the stub's
  (chunks become text deltas, same cadence), its cwds move into the run's HOME, files that inject
  faults are skipped, and only the properties are judged (``expect``'s counts describe the
  simulated agent).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from anyio.from_thread import start_blocking_portal
from hypothesis import strategies as st
from hypothesis.stateful import initialize, precondition, rule

from acp_sim.clock import Backend
from acp_sim.live.adapter import DUMMY_API_KEY, AdapterCommand
from acp_sim.live.harness import LiveAgent, live_agent
from acp_sim.live.stub_profile import StubProfile, StubReply
from acp_sim.profile import AgentProfile
from acp_sim.scenario import ChangeCwdStep, FaultStep, OpenStep, PrewarmStep, PromptStep, ScenarioFile
from pytest_acp.adapter import AdapterFactory, AgentUnderTest
from pytest_acp.harness.harness import SLOW_READ_DELAY, Harness, WaitLimits
from pytest_acp.harness.loop import LoopThread
from pytest_acp.harness.machine import PICK, AcpStateMachine
from pytest_acp.harness.machine_run import RunStats
from pytest_acp.harness.realtime import (
    RealTimeMachine,
    realtime_harness,
    realtime_machine_for,
    run_realtime_machine,
)
from pytest_acp.harness.realtime_limits import with_given
from pytest_acp.harness.realtime_scaling import shift_scenario
from pytest_acp.live.budget import BudgetMeter, LiveBudget
from pytest_acp.report.failure import RunContext
from pytest_acp.report.progress import Progress

if TYPE_CHECKING:
    from pytest_acp.scenarios.run import ScenarioResult

ModelChoice = Literal["stub", "real"]

# The model behind the property suite's turns: six text deltas 0.05-0.3 s apart (turns of about a
# second on top of the adapter's own ~0.3 s), long enough for cancels, crashes and a second
# session's turn to land mid-stream.
LIVE_STUB = StubProfile.model_validate(
    {
        "name": "live-suite",
        "reply": {
            "deltas": 6,
            "first_delta_delay": {"kind": "uniform", "low": 0.0, "high": 0.1},
            "delta_interval": {"kind": "uniform", "low": 0.05, "high": 0.3},
        },
    }
)
LIVE_EXAMPLES = 3
LIVE_STEPS = 15
# Claude Code's session/new takes ~1.5 s offline: two sessions per example (opened side by side)
# are enough for interleaving, bleed and scoped cancels; rules may open one more.
LIVE_INITIAL_SESSIONS = 2
LIVE_MAX_SESSIONS = 3


@contextmanager
def live_environment(
    adapter: AdapterCommand,
    *,
    seed: int = 0,
    model: ModelChoice = "stub",
    api_key: str | None = None,
    stub: StubProfile = LIVE_STUB,
    trace_dir: str | Path | None = None,
    debug: bool = False,
) -> Iterator[LiveAgent]:
    """``acp_sim.live.live_agent`` from synchronous code: the stub serves from its own thread."""
    real = model == "real"
    if real and not api_key:
        raise ValueError("--acp-live-model real needs ANTHROPIC_API_KEY (a real key) in the environment")
    with (
        start_blocking_portal("asyncio") as portal,
        portal.wrap_async_context_manager(
            live_agent(
                adapter,
                profile=stub,
                seed=seed,
                trace_dir=trace_dir,
                # On the stub any key works (tests plant one to prove it is redacted everywhere).
                api_key=api_key or DUMMY_API_KEY,
                real_model=real,
                debug=debug,
            )
        ) as live,
    ):
        yield live


@contextmanager
def live_agent_under_test(
    adapter: AdapterCommand,
    *,
    seed: int,
    backend: Backend,
    model: ModelChoice = "stub",
    api_key: str | None = None,
    stub: StubProfile = LIVE_STUB,
    debug: bool = False,
) -> Iterator[tuple[AgentUnderTest, LiveAgent]]:
    """An ``AgentUnderTest`` on the real adapter (real time), and the live set-up behind it."""
    with live_environment(adapter, seed=seed, model=model, api_key=api_key, stub=stub, debug=debug) as live:
        agent = AgentUnderTest(
            live.launcher,  # type: ignore[arg-type]
            command=list(live.command),
            backend=backend,
            virtual_time=False,
            seed=seed,
            extra={"live": live},
        )
        yield agent, live


class LiveMachine(RealTimeMachine):
    """``RealTimeMachine`` against Claude Code's ACP adapter, within a ``BudgetMeter``.

        Class attributes (``live_machine_for`` sets them): ``adapter`` (``AdapterCommand``), ``model``
        (``stub`` or ``real``), ``api_key`` (the real model's; on the stub any key, redacted like a real
    one), ``stub`` (the stub's profile),
        ``meter`` (shared by the run's examples), ``initial_turns`` (prompt the first sessions at once)
        and ``debug`` (the CLI logs under ``$HOME/.claude/debug``).
    """

    adapter: ClassVar[AdapterCommand | None] = None
    model: ClassVar[ModelChoice] = "stub"
    api_key: ClassVar[str | None] = None
    stub: ClassVar[StubProfile] = LIVE_STUB
    debug: ClassVar[bool] = False
    meter: ClassVar[BudgetMeter | None] = None
    initial_sessions: ClassVar[int] = LIVE_INITIAL_SESSIONS
    initial_turns: ClassVar[bool] = True
    max_sessions: ClassVar[int] = LIVE_MAX_SESSIONS
    # Real Claude Code takes ~2 s to come back after a kill (spawn, initialize, resume): one crash
    # per example keeps an example within seconds.
    max_crashes: ClassVar[int] = 1
    _said_spent: bool = False

    # One directory per open would make each session a new project to Claude Code (its per-project
    # state lives by cwd): live sessions keep sharing the example's workspace directories.
    distinct_cwds: ClassVar[bool] = False

    def wait_limits(self, harness: Harness) -> WaitLimits:
        # Claude Code's latencies are in no profile of ours: the generous defaults, unless set.
        return with_given(WaitLimits(why="the defaults for a real agent"), type(self).limits)

    def agent_context(self, agent_seed: int) -> AbstractContextManager[AgentUnderTest]:
        adapter = type(self).adapter
        if adapter is None:
            raise TypeError(f"{type(self).__name__}.adapter is not set: build it with live_machine_for")
        return self._live(adapter, agent_seed)

    @contextmanager
    def _live(self, adapter: AdapterCommand, agent_seed: int) -> Iterator[AgentUnderTest]:
        with live_agent_under_test(
            adapter,
            seed=agent_seed,
            backend=self.backend,
            model=self.model,
            api_key=self.api_key,
            stub=self.stub,
            debug=self.debug,
        ) as (agent, live):
            # Claude Code needs real directories: the machine's cwds, moved into this example's HOME.
            self.cwds = tuple(_inside(live.workspace, cwd) for cwd in type(self).cwds)
            yield agent

    @initialize(agent_seed=st.integers(0, 2**16))
    def start(self, agent_seed: int) -> None:  # type: ignore[override]
        meter = self._meter()
        if meter.out_of_time():
            self._step(f"not started: the live budget is spent ({meter.summary()})")
            return
        room = meter.budget.sessions - meter.sessions
        self.initial_sessions = max(0, min(type(self).initial_sessions, room))
        RealTimeMachine.start(self, agent_seed)
        if self.h is None:
            return
        meter.watch(self.h)
        idle = self.h.status("idle")
        if self.initial_turns and idle and meter.may_prompt(len(idle)):
            # Every example starts with a turn streaming in each session, so the few examples a
            # live run affords all land their rules (cancel, crash, close, prompt) mid-stream.
            tokens = self._call(lambda h: [h.prompt(key) for key in idle], "the first turns")
            self._step("prompt at once " + ", ".join(f"{k} ({t})" for k, t in zip(idle, tokens, strict=True)))

    @precondition(
        lambda self: self.h is None or not self._meter().may_open() or not self._meter().may_prompt()
    )
    @rule()
    def budget_spent(self) -> None:
        """A cap is reached (or the example did not start): a step that does nothing, so an example
        whose other rules all need what the budget no longer allows can still end."""
        if not self._said_spent:  # once per example: the step list should read like the run
            self._said_spent = True
            self._step(f"the live budget is spent ({self._meter().summary()}): no more sessions or prompts")

    def _meter(self) -> BudgetMeter:
        cls = type(self)
        if cls.meter is None:
            cls.meter = BudgetMeter(LiveBudget())
        return cls.meter

    # The budget gates every rule that opens or prompts (open, prompt, prompt several; cwd changes
    # are off live).
    @precondition(lambda self: self._can_open() and self._meter().may_open())
    @rule(cwd=PICK, mcp=PICK, model=PICK, wait=st.booleans())
    def open_session(self, cwd: int, mcp: int, model: int, wait: bool) -> None:  # type: ignore[override]
        AcpStateMachine.open_session(self, cwd, mcp, model, wait)

    @precondition(
        lambda self: self.h is not None and bool(self.h.status("idle")) and self._meter().may_prompt()
    )
    @rule(pick=PICK, wait=st.booleans())
    def prompt(self, pick: int, wait: bool) -> None:  # type: ignore[override]
        AcpStateMachine.prompt(self, pick, wait)

    @precondition(
        lambda self: (
            self.h is not None
            and len(self.h.status("idle")) >= 2
            and self._meter().may_prompt(len(self.h.status("idle")))
        )
    )
    @rule(mask=st.integers(0, 255), one_slow=st.booleans())
    def prompt_several(self, mask: int, one_slow: bool) -> None:  # type: ignore[override]
        AcpStateMachine.prompt_several(self, mask, one_slow)

    @precondition(lambda self: False)
    @rule(old=PICK, new=PICK, moved=st.booleans(), then_open=st.booleans())
    def change_cwd(self, old: int, new: int, moved: bool, then_open: bool) -> None:  # type: ignore[override]
        """Off live: a real agent's project cannot be changed under it by the harness."""

    def teardown(self) -> None:
        try:
            super().teardown()
        finally:
            self._meter().settle()


def _inside(root: Path, cwd: str) -> str:
    path = root / cwd.lstrip("/")
    path.mkdir(parents=True, exist_ok=True)
    return os.fspath(path)


def live_machine_for(
    factory: AdapterFactory,
    adapter: AdapterCommand,
    *,
    backend: Backend = "asyncio",
    budget: LiveBudget | None = None,
    meter: BudgetMeter | None = None,
    model: ModelChoice = "stub",
    api_key: str | None = None,
    base: type[LiveMachine] = LiveMachine,
    **attributes: Any,
) -> type[LiveMachine]:
    """A live state machine for this bridge factory on ``adapter`` (one meter for all its examples)."""
    return realtime_machine_for(  # type: ignore[return-value]
        factory,
        backend=backend,
        base=base,
        name=f"{getattr(factory, '__name__', 'Bridge')}LiveMachine",
        adapter=adapter,
        model=model,
        api_key=api_key,
        meter=meter or BudgetMeter(budget or LiveBudget()),
        **attributes,
    )


def run_live_machine(
    machine: type[LiveMachine],
    *,
    examples: int = LIVE_EXAMPLES,
    seed: int = 0,
    steps: int = LIVE_STEPS,
    context: RunContext | None = None,
    progress: Progress | None = None,
) -> RunStats:
    """Run ``machine`` against the real agent; raises the ``PropertyViolation`` of the first failure."""
    return run_realtime_machine(
        machine, examples=examples, seed=seed, steps=steps, context=context, progress=progress
    )


# -- scenario files against the real agent ------------------------------------------------------------------


def stub_for(profile: AgentProfile) -> StubProfile:
    """The model stub that makes the real agent stream like ``profile``'s default model turns."""
    turn = profile.models[profile.default_model].turn
    return StubProfile(
        name=f"{profile.name}-as-model",
        reply=StubReply(
            deltas=turn.chunk_count,
            first_delta_delay=turn.first_chunk_delay,
            delta_interval=turn.chunk_interval,
        ),
    )


def relocate_cwds(file: ScenarioFile, root: Path) -> ScenarioFile:
    """``file`` with every cwd of its script moved under ``root`` (and created there)."""
    script = []
    for step in file.scenario.script:
        if isinstance(step, OpenStep):
            step = step.model_copy(
                update={"open": step.open.model_copy(update={"cwd": _inside(root, step.open.cwd)})}
            )
        elif isinstance(step, PrewarmStep):
            step = step.model_copy(
                update={"prewarm": step.prewarm.model_copy(update={"cwd": _inside(root, step.prewarm.cwd)})}
            )
        elif isinstance(step, ChangeCwdStep):
            args = step.change_cwd
            moved = {"old": _inside(root, args.old), "new": _inside(root, args.new) if args.new else None}
            step = step.model_copy(update={"change_cwd": args.model_copy(update=moved)})
        script.append(step)
    return dataclasses.replace(file, scenario=file.scenario.model_copy(update={"script": script}))


def run_scenario_live(
    file: ScenarioFile,
    factory: AdapterFactory,
    adapter: AdapterCommand,
    *,
    backend: Backend = "asyncio",
    bridge: str = "bridge",
    model: ModelChoice = "stub",
    api_key: str | None = None,
    budget: LiveBudget | None = None,
) -> ScenarioResult:
    """Play ``file``'s client actions against the real agent; a ``ScenarioResult`` judged on properties.

    The budget caps its sessions and prompts (counted in the file, before anything starts) and its
    wall time (the script stops there, the run is drained and judged, and the file fails saying so)."""
    from pytest_acp.scenarios.run import ScenarioResult, play

    sc = file.scenario
    result = ScenarioResult(file, backend, bridge)
    if sc.faults or any(isinstance(step, FaultStep) for step in sc.script):
        result.skipped = (
            "injects agent faults, which a real agent cannot take (crash and reconnect steps can)"
        )
        return result
    budget = budget or LiveBudget()
    opens = sum(isinstance(step, OpenStep) for step in sc.script)
    prompts = sum(len(step.prompt.sessions) for step in sc.script if isinstance(step, PromptStep))
    if opens > budget.sessions or prompts > budget.prompts:
        result.skipped = (
            f"needs {opens} sessions and {prompts} prompts, over the live budget ({budget.compact()})"
        )
        return result
    with live_agent_under_test(
        adapter, seed=sc.seed, backend=backend, model=model, api_key=api_key, stub=stub_for(file.profile)
    ) as (agent, live):
        # The cwds move inside the live HOME, removed with it.
        moved = relocate_cwds(file, live.workspace)
        harness = realtime_harness(factory, agent, slow_read_delay=SLOW_READ_DELAY)
        loop = LoopThread(backend, virtual=False, name=f"acp-live-scenario-{sc.name}")

        def count_from_now(player: Any) -> None:
            # ``at`` counts from the start of the run: here starting the adapter took real seconds.
            player.file = shift_scenario(moved, harness._log.now())

        return play(
            moved,
            harness,
            result,
            loop,
            on_started=count_from_now,
            expectations=False,
            time_limit=budget.seconds,
        )
