"""Hypothesis state machines that drive a bridge against the simulated agent, judged by the oracle.

``AcpStateMachine`` is a ``RuleBasedStateMachine``: its rules open sessions (any cwd and MCP
set), prompt one or several sessions at once, cancel, advance virtual time, change a session's
cwd, pre-warm, make one caller read slowly, inject agent faults, crash the agent and close
sessions. At the end the run is drained, every session is closed, the bridge is stopped, leaked
processes are looked for, and the oracle judges the whole run; only when that finds something is
the run judged as it stood after each rule, to fail the example at the first rule after which it
was broken (``judge_lazily``, ``pytest_acp.harness.rule_ends``; or after every rule, as it runs).

Each example runs on its own event loop on virtual time (``pytest_acp.harness.loop``), so seconds of
simulated latency cost microseconds and a run is reproducible from its seed. Build a machine for
your bridge with ``machine_for(factory)`` and run it with ``run_machine`` (both in
``machine_run``), or subclass ``AcpStateMachine`` to add rules; ``bridge`` is the only thing you
must set.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, ClassVar, NoReturn

from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from acp_sim.agent import InProcessAgent
from acp_sim.clock import Backend
from acp_sim.profile import AgentProfile
from pytest_acp.adapter import AdapterFactory, AgentUnderTest, supports
from pytest_acp.harness.bridge_raised import BRIDGE, BridgeFailure, BridgeRaised, bridge_report
from pytest_acp.harness.harness import Harness
from pytest_acp.harness.loop import LoopThread, StepTimeout
from pytest_acp.harness.machine_agent import (
    DEFAULT_FAULTS,
    MACHINE_PROFILE,
    RECONNECT_FAULTS,
    TIMEOUT_FAULTS,
    fault_spec,
)
from pytest_acp.harness.rule_ends import RuleEnd, Verdict, judge
from pytest_acp.properties.violation import Violation
from pytest_acp.report.baseline import Baseline
from pytest_acp.report.coverage import RunCoverage, switched_off
from pytest_acp.report.exercised import DEFAULT_MIN_EFFECT, Exercised
from pytest_acp.report.failure import RunContext, format_failure
from pytest_acp.report.progress import PROGRESS_AFTER, Progress

TEXT_MODES: tuple[str, ...] = ("tagged", "natural")
"""Chunk text the agent streams, drawn per example (``AgentProfile.text_mode``)."""
ADVANCE_STEPS = (0.001, 0.05, 0.3, 1.0, 3.0, 10.0, 30.0, 90.0)
STEPS = 40
"""Rules per example (Hypothesis' ``stateful_step_count``)."""
PICK = st.integers(0, 7)


class PropertyViolation(AssertionError):
    """A bridge broke a property; the message is the full failure report."""

    property: ClassVar[str] = ""

    def __init__(self, report: str, violations: Sequence[Violation] = ()) -> None:
        super().__init__(report)
        self.violations = list(violations)


class BridgeViolation(PropertyViolation):
    """An exception escaped the bridge (its task, a callback, its start or stop): the message is
    its report (``pytest_acp.harness.bridge_raised``)."""

    property = BRIDGE


# One exception type per property, so Hypothesis keeps the property while it shrinks (it tells
# failures apart by exception type and location).
VIOLATIONS: dict[str, type[PropertyViolation]] = {
    p: type(f"{p}Violation", (PropertyViolation,), {"property": p, "__module__": __name__})
    for p in ("P1", "P2", "P3", "P4", "P5", "P6", "P7", "P8", "P9")
}


class AcpStateMachine(RuleBasedStateMachine):
    """Drive ``bridge`` through random interleavings of client actions and agent faults.

    Class attributes configure it (``machine_for`` sets them; a subclass may too): ``bridge``
    (the adapter factory), ``backend``, ``profile`` (the simulated agent), ``cwds``,
    ``mcp_sets`` (MCP server lists a session may ask for), ``max_sessions``, ``fault_kinds``,
    ``crashes`` (crash the agent mid-run), ``cancels``, ``closes``, ``slow_readers`` (switch rules
    off) and ``context`` (seed and replay command, for reports).
    """

    bridge: ClassVar[AdapterFactory | None] = None
    backend: ClassVar[Backend] = "asyncio"
    profile: ClassVar[AgentProfile] = MACHINE_PROFILE
    agent_command: ClassVar[list[str] | None] = None
    cwds: ClassVar[tuple[str, ...]] = ("/work/alpha", "/work/beta")
    models: ClassVar[tuple[str | None, ...]] = (None,)
    mcp_sets: ClassVar[tuple[tuple[dict[str, Any], ...], ...]] = ((),)
    max_sessions: ClassVar[int] = 3
    fault_kinds: ClassVar[tuple[str, ...] | None] = None
    crashes: ClassVar[bool] = True
    cancels: ClassVar[bool] = True
    closes: ClassVar[bool] = True
    slow_readers: ClassVar[bool] = True
    text_modes: ClassVar[tuple[str, ...]] = TEXT_MODES
    """The text modes an example may draw; ``("tagged",)`` keeps every chunk text unique."""
    coalesce: ClassVar[tuple[bool, ...]] = (False, True)
    """Whether the agent writes a turn's last updates and its response in one write, drawn per example
    (``AgentProfile.coalesce_writes``)."""
    early: ClassVar[tuple[bool, ...]] = (False, True)
    """Whether session/new sends the session's session-level updates before its response, drawn per
    example (``AgentProfile.updates_before_new_response``) from the same draw as ``coalesce``."""
    context: ClassVar[RunContext | None] = None
    examples_run: ClassVar[int] = 0
    coverage: ClassVar[RunCoverage | None] = None
    """What the run covered (rules run, faults, rules off and why), shared by its examples."""
    process_baseline: ClassVar[Any] = None
    baseline: ClassVar[Baseline | None] = None
    """Accepted violations (``pytest_acp.report.baseline``): they do not fail an example."""
    """The processes alive when the run started (``LeakGuard``), shared by its examples."""
    min_effect: ClassVar[float] = DEFAULT_MIN_EFFECT
    """The fraction of a run's opens, and of its prompts, that must take effect (``judge_effect``)."""
    exercised: ClassVar[Exercised | None] = None
    """What the run's examples exercised so far (set per run by ``run_machine``)."""
    judge_lazily: ClassVar[bool] = True
    """Judge an example once, at its end, and the run after each rule only when that finds something
    (``pytest_acp.harness.rule_ends``): the same failure, step and report as a check after every rule,
    without those checks in a passing example. False: check after every rule and stop an example at
    its first violation (for a bridge that must not go on once broken, say)."""
    progress: ClassVar[Progress | None] = None
    """Where a long run says which example and step it is at (set per run by ``run_machine``)."""
    progress_after: ClassVar[float | None] = PROGRESS_AFTER
    """Real seconds before ``progress`` speaks (None: never; ``--acp-progress``)."""

    def __init__(self) -> None:
        super().__init__()
        type(self).examples_run += 1
        self.loop: LoopThread | None = None
        self.h: Harness | None = None
        self.steps: list[str] = []
        self._failed = False
        self._faults: tuple[str, ...] = ()
        self._t = 0.0
        self.rules_end: int | None = None  # log entries written by rules (the rest: teardown)
        self._judged: list[Violation] | None = None  # what the last rule's call found, for the invariant
        self._ended: RuleEnd | None = None  # the run as the last rule's call left it, for the invariant
        self._rule_ends: list[RuleEnd] = []  # the run after each rule so far (``judge_lazily``)

    # -- plumbing ------------------------------------------------------------------------------------

    def _call(self, fn: Callable[[Harness], Any], what: str, *, judge: bool = True) -> Any:
        """Run ``fn`` on the loop; with ``judge`` (a rule's call), also judge the state it leaves for
        the invariant that follows the rule: the same state the invariant's own call would see, as
        the loop runs nothing between two calls, without a second hand-over between the threads
        (about 75 us each; two per rule were about a tenth of an example's time)."""
        assert self.loop is not None
        assert self.h is not None
        harness = self.h

        async def step() -> Any:
            result = fn(harness)
            if hasattr(result, "__await__"):
                result = await result
            harness._observe()
            self._t = harness._log.now()
            if judge and harness.failure is None:
                if self.judge_lazily:
                    self._ended = harness.rule_end()
                else:
                    self._judged = harness.check_if_changed()
            return result

        try:
            result = self.loop.call(step, what=what)
        except StepTimeout:
            raise  # the loop is still busy with the step: nothing of the run can be read now
        except Exception:
            if harness.failure is not None:  # the step failed because the bridge is gone
                self._under_way(what, harness.failure)
                self._bridge_failed(harness.failure)
            self._fail_at_first_broken_rule()  # a check after an earlier rule would have stopped here
            raise
        if harness.failure is not None:
            self._under_way(what, harness.failure)
            self._bridge_failed(harness.failure)
        return result

    def _under_way(self, what: str, failure: BridgeFailure) -> None:
        """A rule says its step after its call returns, so the one the bridge raised in (often what
        provoked it) would be missing from the shrunk steps: say it was under way."""
        if what in ("checking", "stopping the bridge"):
            return  # the invariant is no step; the teardown said its step before it stopped the bridge
        self._t = max(self._t, failure.t)
        self._step(f"{what} (under way when the bridge raised)", rule=False)

    def _now(self) -> float:
        # The virtual time at the end of the last step, read inside the loop (no loop runs here).
        return self._t

    def _step(self, text: str, *, rule: bool = True) -> None:
        self.steps.append(f"{self._now():12.6f}  {text}")
        if rule and self.coverage is not None:  # every rule says its step here: count it by its name
            self.coverage.ran(sys._getframe(1).f_code.co_name)
        if self.progress is not None:
            self.progress.step(type(self).examples_run, len(self.steps), text)

    def _fail(self, violations: list[Violation], at: Verdict | None = None) -> None:
        """Fail the example on ``violations`` (those the baseline does not accept); ``at``: found by
        judging the run as it stood after a rule (``rule_ends``), and reported as of then."""
        if self.baseline is not None:
            # Accepted violations fail nothing: the example goes on, so the run finds the rest.
            accepted, violations = self.baseline.split(violations)
            if self.progress is not None:
                self.progress.accepted(type(self).examples_run, accepted)
            if not violations:
                return
        self._failed = True
        assert self.h is not None
        assert self.h.log is not None
        if at is None:
            steps, traces, log = self.steps, self.h.instances(), self.h.log.entries
        else:
            steps, traces, log = self.steps[: at.end.steps], at.traces, at.log
        # The earliest violation is the cause; later ones are often its consequences (a bridge call
        # that never returned is a cause whenever it was made).
        ordered = sorted(
            violations, key=lambda v: (not v.cause, v.t if v.t is not None else float("inf"), v.property)
        )
        report = format_failure(
            ordered,
            context=self.context,
            steps=steps,
            traces=traces,
            log=log,
            capabilities=self.h.capabilities,
        )
        if self.progress is not None:
            self.progress.failed(type(self).examples_run, ordered)
        error = VIOLATIONS[ordered[0].property](report, ordered)
        # What pytest_acp.scenarios.export needs to write this example as a scenario file: the machine (its
        # harness, profile, backend) and where its rules' part of the log ends.
        error.machine = self  # type: ignore[attr-defined]
        end = self.rules_end if self.rules_end is not None else len(self.h.log.entries)
        error.log_end = len(at.log) if at is not None else end  # type: ignore[attr-defined]
        raise error

    def _fail_at_first_broken_rule(self) -> None:
        """Judge the run after each rule so far, in order, and fail at the first that a check after
        every rule would have failed at (``judge_lazily``); nothing when none would have."""
        ends, self._rule_ends = self._rule_ends, []  # judged once, whatever the outcome
        if not ends or self.h is None or self.h.truth is None or self._failed:
            return
        for verdict in judge(ends, self.h.instances(), self.h.capabilities):
            if verdict.violations:
                self._fail(verdict.violations, verdict)  # raises unless the baseline accepts them all

    def _bridge_failed(self, failure: BridgeFailure, harness: Harness | None = None) -> NoReturn:
        """An exception escaped the bridge: report it as a finding of its own (one exception type
        and place, so Hypothesis shrinks it like a property), unless a check after an earlier rule
        would have stopped the example before it."""
        if harness is None or harness is self.h:
            self._fail_at_first_broken_rule()
        self._failed = True
        h = harness or self.h
        log = h.log.entries if h is not None and h.log is not None else []
        report = bridge_report(
            failure,
            context=self.context,
            steps=self.steps,
            traces=h.instances() if h is not None and h.truth is not None and log else [],
            log=log,
            capabilities=h.capabilities if h is not None else None,
        )
        error = BridgeViolation(report, [failure.violation()])
        if failure.phase != "start" and h is self.h:  # a run to export as a scenario file
            error.machine = self  # type: ignore[attr-defined]
            end = self.rules_end if self.rules_end is not None else len(log)
            error.log_end = end  # type: ignore[attr-defined]
        raise error

    def _start_bridge(self, harness: Harness) -> None:
        """Start the bridge on the loop; a bridge that raises while starting is a finding."""
        assert self.loop is not None

        async def go() -> RuleEnd:
            await harness.start()
            return harness.rule_end()

        try:
            end = self.loop.call(go, what="starting the bridge")
        except BridgeRaised as exc:
            self._bridge_failed(exc.failure, harness)
        self._ended = end if self.judge_lazily else None

    def _pick(self, keys: list[str], pick: int) -> str:
        return keys[pick % len(keys)]

    # -- start ---------------------------------------------------------------------------------------

    @initialize(agent_seed=st.integers(0, 2**16), text=PICK, writes=PICK)
    def start(self, agent_seed: int, text: int, writes: int) -> None:
        factory = type(self).bridge
        if factory is None:
            raise TypeError(
                f"{type(self).__name__}.bridge is not set: build the machine with "
                "pytest_acp.machine_for(factory) or set bridge = staticmethod(factory)"
            )
        self.loop = LoopThread(self.backend)
        text_mode = self.text_modes[text % len(self.text_modes)]
        profile = self.profile
        coalesce = self.coalesce[writes % len(self.coalesce)]
        # The writes draw's second bit: no extra draw, so every earlier example keeps its draws.
        early = self.early[(writes >> 1) % len(self.early)]
        if (text_mode, coalesce, early) != (
            profile.text_mode,
            profile.coalesce_writes,
            profile.updates_before_new_response,
        ):
            profile = profile.model_copy(
                update={
                    "text_mode": text_mode,
                    "coalesce_writes": coalesce,
                    "updates_before_new_response": early,
                }
            )
        launcher = InProcessAgent(profile, seed=agent_seed)
        agent = AgentUnderTest(
            launcher, command=self.agent_command, backend=self.backend, virtual_time=True, seed=agent_seed
        )
        harness = Harness(factory, agent, guard=type(self).process_baseline)
        self._start_bridge(harness)
        self.h = harness
        caps = harness.capabilities
        kinds = list(self.fault_kinds if self.fault_kinds is not None else DEFAULT_FAULTS)
        if self.fault_kinds is None:
            if caps.reconnects:
                kinds += RECONNECT_FAULTS
            if caps.turn_timeout is not None or caps.idle_timeout is not None:
                kinds += TIMEOUT_FAULTS
        self._faults = tuple(k for k in kinds if hasattr(launcher, "agents"))
        if self.coverage is not None:
            self.coverage.note_off(switched_off(type(self), harness.adapter, caps))
        self._step(
            f"start(agent_seed={agent_seed}, text={text_mode}"
            + (", coalesced writes" if coalesce else "")
            + (", session updates before session/new's answer)" if early else ")")
        )

    # -- rules ---------------------------------------------------------------------------------------

    def _can_open(self) -> bool:
        return self.h is not None and len(self.h.status("opening", "idle", "busy")) < self.max_sessions

    @precondition(_can_open)
    @rule(cwd=PICK, mcp=PICK, model=PICK, wait=st.booleans())
    def open_session(self, cwd: int, mcp: int, model: int, wait: bool) -> None:
        c = self.cwds[cwd % len(self.cwds)]
        servers = [dict(s) for s in self.mcp_sets[mcp % len(self.mcp_sets)]]
        m = self.models[model % len(self.models)]

        async def go(h: Harness) -> str:
            key = h.open(cwd=c, mcp_servers=servers, model=m)
            if wait:
                await h.wait_for(lambda: h.keys[key].status != "opening")
            return key

        key = self._call(go, "open_session")
        names = ",".join(s.get("name", "?") for s in servers)
        self._step(
            f"open {key} cwd={c}"
            + (f" mcp=[{names}]" if servers else "")
            + (f" model={m}" if m else "")
            + ("" if wait else " (no wait)")
        )

    @precondition(lambda self: self.h is not None and bool(self.h.status("idle")))
    @rule(pick=PICK, wait=st.booleans())
    def prompt(self, pick: int, wait: bool) -> None:
        assert self.h is not None
        key = self._pick(self.h.status("idle"), pick)

        async def go(h: Harness) -> str:
            token = h.prompt(key)
            if wait:
                await h.wait_for(lambda: h.keys[key].running == 0)
            return token

        token = self._call(go, "prompt")
        self._step(
            f"prompt {key} turn {self.h.keys[key].turns} ({token})"
            + (" and wait for its end" if wait else "")
        )

    @precondition(lambda self: self.h is not None and len(self.h.status("idle")) >= 2)
    @rule(mask=st.integers(0, 255), one_slow=st.booleans())
    def prompt_several(self, mask: int, one_slow: bool) -> None:
        """Prompt several sessions in the same instant; with ``one_slow`` the first one's caller reads
        slowly (the moment a bridge that lets one reader hold up the connection shows it)."""
        assert self.h is not None
        idle = self.h.status("idle")
        chosen = [k for i, k in enumerate(idle) if mask >> i & 1] or idle
        if len(chosen) < 2:
            chosen = idle[:2]
        slow = one_slow and self.slow_readers and not self.h.keys[chosen[0]].slow

        def go(h: Harness) -> list[str]:
            if slow:
                h.set_slow(chosen[0], True)
            return [h.prompt(key) for key in chosen]

        tokens = self._call(go, "prompt_several")
        self._step(
            "prompt at once "
            + ", ".join(f"{k} ({t})" for k, t in zip(chosen, tokens, strict=True))
            + (f"; the caller of {chosen[0]} reads slowly" if slow else "")
        )

    @precondition(lambda self: self.cancels and self.h is not None and bool(self.h.status("busy")))
    @rule(pick=PICK)
    def cancel(self, pick: int) -> None:
        assert self.h is not None
        key = self._pick(self.h.status("busy"), pick)
        self._call(lambda h: h.cancel(key), "cancel")
        self._step(f"cancel {key} (turn {self.h.keys[key].turns})")

    @precondition(lambda self: self.h is not None)
    @rule(seconds=st.sampled_from(ADVANCE_STEPS))
    def advance(self, seconds: float) -> None:
        self._call(lambda h: h.advance(seconds), "advance")
        self._step(f"advance {seconds:g} s")

    @precondition(lambda self: self.h is not None and supports(self.h.adapter, "change_cwd"))
    @rule(old=PICK, new=PICK, moved=st.booleans(), then_open=st.booleans())
    def change_cwd(self, old: int, new: int, moved: bool, then_open: bool) -> None:
        """The project at a cwd changed (or moved); with ``then_open``, a conversation starts there
        right after (the moment a stale warm session would be handed out)."""
        o = self.cwds[old % len(self.cwds)]
        n = self.cwds[new % len(self.cwds)] if moved else o
        then_open = then_open and self._can_open()

        async def go(h: Harness) -> str | None:
            h.change_cwd(o, n)
            await h.wait_for(lambda: h.pending_changes == 0)
            if not then_open:
                return None
            key = h.open(cwd=n)
            await h.wait_for(lambda: h.keys[key].status != "opening")
            if h.keys[key].status == "idle":
                h.prompt(key)
            return key

        key = self._call(go, "change_cwd")
        self._step(
            f"the project at {o} changed"
            + (f" and moved to {n}" if n != o else "")
            + (f"; open {key} there and prompt it" if key else "")
        )

    @precondition(
        lambda self: (
            self.h is not None and supports(self.h.adapter, "prewarm") and self.h.pending_prewarms == 0
        )
    )
    @rule(cwd=PICK, mcp=PICK, model=PICK)
    def prewarm(self, cwd: int, mcp: int, model: int) -> None:
        c = self.cwds[cwd % len(self.cwds)]
        servers = [dict(s) for s in self.mcp_sets[mcp % len(self.mcp_sets)]]
        m = self.models[model % len(self.models)]

        async def go(h: Harness) -> None:
            h.prewarm(cwd=c, mcp_servers=servers, model=m)
            await h.wait_for(lambda: h.pending_prewarms == 0)

        self._call(go, "prewarm")
        self._step(f"prewarm cwd={c}" + (f" mcp={len(servers)} server(s)" if servers else ""))

    @precondition(
        lambda self: self.slow_readers and self.h is not None and bool(self.h.status("idle", "busy"))
    )
    @rule(pick=PICK)
    def toggle_slow_reader(self, pick: int) -> None:
        assert self.h is not None
        key = self._pick(self.h.status("idle", "busy"), pick)
        on = not self.h.keys[key].slow
        self._call(lambda h: h.set_slow(key, on), "slow reader")
        self._step(f"caller of {key} reads {'slowly' if on else 'normally again'}")

    @precondition(lambda self: self.h is not None and bool(self._faults) and _can_inject(self.h))
    @rule(kind=st.integers(0, 63), aim=PICK)
    def inject_fault(self, kind: int, aim: int) -> None:
        from acp_sim.faults import FAULT_ADAPTER

        assert self.h is not None
        name = self._faults[kind % len(self._faults)]
        agent = self.h.agent.launcher.current
        count = len(getattr(agent, "sessions", {}) or {})
        spec = fault_spec(name, aim % count if count else None)
        fault = FAULT_ADAPTER.validate_python(spec)
        self._call(lambda h: h.inject(fault), "inject_fault")
        self._step("inject fault " + ", ".join(f"{k}={v}" for k, v in spec.items()))

    @precondition(
        lambda self: (
            self.crashes
            and self.h is not None
            and self.h.capabilities.reconnects
            and hasattr(self.h.agent.launcher, "crash")
            and bool(getattr(self.h.agent.launcher, "agents", None))
        )
    )
    @rule()
    def crash_agent(self) -> None:
        self._call(lambda h: h.crash(), "crash_agent")
        self._step("crash the agent")

    @precondition(lambda self: self.closes and self.h is not None and bool(self.h.status("idle", "busy")))
    @rule(pick=PICK)
    def close(self, pick: int) -> None:
        assert self.h is not None
        key = self._pick(self.h.status("idle", "busy"), pick)
        self._call(lambda h: h.close(key), "close")
        self._step(f"close {key}")

    # -- judging -------------------------------------------------------------------------------------

    @invariant()
    def properties_hold(self) -> None:
        if self.h is None or self._failed:
            return
        if self.judge_lazily:  # kept, to judge later if the example's end finds something
            ended, self._ended = self._ended, None
            if ended is None:  # a rule that made no call of its own (a subclass's, say)
                ended = self._call(lambda h: h.rule_end(), "checking", judge=False)
            self._rule_ends.append(replace(ended, steps=len(self.steps)))
            return
        violations, self._judged = self._judged, None
        if violations is None:  # no rule's call judged since the last time (the first invariant)
            violations = self._call(lambda h: h.check_if_changed(), "checking", judge=False)
        if violations:
            self._fail(violations)

    def teardown(self) -> None:
        if self.loop is None:
            return
        violations: list[Violation] = []
        try:
            if self.h is not None:
                drain = not self._failed
                self.rules_end = len(self.h.log.entries) if self.h.log is not None else None

                async def finish(h: Harness) -> list[Violation]:
                    await h.stop(drain=drain)
                    self._count_exercised()
                    return h.check(final=True) if drain else []

                end = "end of run: drained, closed every session, stopped the bridge"
                self._step(end, rule=False)  # in the report of a bridge that raises while stopping, too
                try:
                    violations = self._call(finish, "stopping the bridge", judge=False)
                except BridgeViolation:
                    if not drain:  # the run had failed already: that is its report
                        return
                    raise
                self.steps.pop()
                if violations:
                    # Fails here when a check after some rule would have stopped the example there.
                    self._fail_at_first_broken_rule()
                    self._step(end, rule=False)
        finally:
            self.loop.close()
        if violations:
            self._fail(violations)

    def _count_exercised(self) -> None:
        run = type(self).exercised
        if run is None or self.h is None or self.h.log is None:
            return
        run.add(self.h.exercised())


def _can_inject(h: Harness) -> bool:
    agents = getattr(h.agent.launcher, "agents", None)
    # Only into a live instance: a crashed one is gone until the bridge starts the next.
    return bool(agents) and hasattr(agents[-1], "inject") and getattr(agents[-1], "exit_reason", None) is None
