"""The harness: drives a bridge through its adapter, records the delivery log, gathers the ground truth.

It is the one place where client actions happen, so the state machine (``machine.py``) and scenario
files run exactly the same code. Every action is started as a task and recorded in the log the
moment it is asked for; its answer is recorded when it comes. The harness runs inside one event
loop (virtual time for the simulated agent) and never touches the oracle's inputs other than by
recording what happened.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import anyio
from anyio.abc import TaskGroup, TaskStatus

from pytest_acp.adapter import (
    AdapterFactory,
    AgentUnderTest,
    BridgeAdapter,
    BridgeCapabilities,
    DeliveryLog,
    TurnEnd,
    TurnOutput,
    capabilities_of,
    check_adapter,
    normalize_usage,
    token_for,
)
from pytest_acp.harness import leakguard, unattributed
from pytest_acp.harness.action_timing import receiving
from pytest_acp.harness.bridge_raised import BridgeFailure, BridgeRaised
from pytest_acp.harness.ground_truth import GroundTruth
from pytest_acp.harness.rule_ends import RuleEnd
from pytest_acp.properties.models import Models
from pytest_acp.properties.oracle import check
from pytest_acp.properties.truth import InstanceTrace
from pytest_acp.properties.violation import Violation
from pytest_acp.report.exercised import Exercised, count

KeyStatus = Literal["opening", "idle", "busy", "closing", "closed", "failed"]

# Virtual seconds an action that the harness waits for (open, cwd change, pre-warm) may take
# before the step moves on without it; the oracle later judges whether it ever returned.
SETTLE_LIMIT = 120.0
# Virtual seconds the harness waits, at the end of a run, for running turns and actions to end.
DRAIN_LIMIT = 900.0
# Virtual seconds closing and stopping the bridge may take.
STOP_LIMIT = 120.0
# Delay per delivered update for a caller that reads slowly (virtual seconds).
SLOW_READ_DELAY = 5.0
# The detail of a log entry the harness's own teardown caused (a close of a key still open after
# the drain, the end of a turn that was still running then).
TEARDOWN: dict[str, Any] = {"teardown": True}
# Seconds added to twice a bridge's declared turn or idle timeout when draining: its timer's own lag.
TIMEOUT_MARGIN = 60.0


@dataclass(frozen=True)
class WaitLimits:
    """How long the harness waits (seconds of the run's clock): a settling action (``settle``; with
    an agent process starting: ``start``), the
    end-of-run drain (``drain``; a bridge's declared timeouts may extend it by ``timeout_margin``
    each), and closing and stopping (``stop``). Virtual-time runs keep the defaults; real-time runs
    derive theirs from the agent's profile (``pytest_acp.harness.realtime_limits``)."""

    settle: float = SETTLE_LIMIT
    start: float = SETTLE_LIMIT
    """A settling action that also waits for an agent process to start (the first opens)."""
    drain: float = DRAIN_LIMIT
    stop: float = STOP_LIMIT
    timeout_margin: float = TIMEOUT_MARGIN
    why: str = "the virtual-time defaults"
    """How the limits were chosen, for the report of a turn the drain gave up on."""


@dataclass
class KeyState:
    """The harness's view of one bridge session key."""

    key: str
    cwd: str
    mcp_servers: list[dict[str, Any]]
    model: str | None
    status: KeyStatus = "opening"
    turns: int = 0
    slow: bool = False
    running: int = 0
    """Prompt calls into the bridge that have not returned yet (a closed key's turn may still run)."""


class Harness:
    """One run: a bridge (through its adapter) on one agent, with the log and the ground truth."""

    def __init__(
        self,
        factory: AdapterFactory,
        agent: AgentUnderTest,
        *,
        slow_read_delay: float = SLOW_READ_DELAY,
        guard_processes: bool = True,
        guard: leakguard.LeakGuard | None = None,
        limits: WaitLimits | None = None,
    ) -> None:
        self.factory = factory
        self.limits = limits or WaitLimits()
        self.agent = agent
        self.slow_read_delay = slow_read_delay
        self.keys: dict[str, KeyState] = {}
        self.adapter: BridgeAdapter | None = None
        self.capabilities = BridgeCapabilities()
        self.log: DeliveryLog | None = None
        self.truth: GroundTruth | None = None
        # The process baseline: given (shared by the examples of one run), or taken now.
        self.guard = (guard or leakguard.LeakGuard.start()) if guard_processes else None
        self._exit = AsyncExitStack()
        self._tg: TaskGroup | None = None
        self._changed: anyio.Event | None = None  # created inside the event loop, in start()
        self._entered: anyio.Event | None = None
        self._checked_size: tuple[int, ...] = ()
        self._models = Models()  # the oracle's models of this run, kept between its checks
        self._prompts = 0
        self._prewarms = 0
        self._pending_prewarms = 0
        self._changes = 0
        self._pending_changes = 0
        self.stopped = False
        self.tearing_down = False
        """The run is over: what the harness closes or sees end now, it ended itself (``stop``)."""
        self.distinct_cwds = False
        """Open every key in a directory of its own under the cwd asked for (``cwd/key``), so every
        agent session is tied to its key by its cwd, even a never-prompted one from overlapping
        opens (real-time runs, for bridges with no per-project state such as pre-warm)."""
        self._stopping: anyio.Event | None = None  # set by stop(): the bridge's task ends it
        self.failure: BridgeFailure | None = None
        """An exception that escaped the bridge (``pytest_acp.harness.bridge_raised``); the run is over."""

    # -- lifecycle -----------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the bridge; raises ``BridgeRaised`` when the bridge raises while starting."""
        self.log = DeliveryLog()
        self.truth = GroundTruth(self.agent.launcher, self.log.now)
        self._changed = anyio.Event()
        unattributed.listen(self._on_unattributed)  # the adapter's reader tasks inherit it
        self._stopping = anyio.Event()
        await self._exit.__aenter__()
        try:
            host = await self._exit.enter_async_context(anyio.create_task_group())
            await host.start(self._host)
        except BaseException:
            await self._exit.__aexit__(None, None, None)
            raise
        if self.failure is not None:
            await self._exit.__aexit__(None, None, None)
            raise BridgeRaised(self.failure) from self.failure.exception
        self._observe()

    async def _host(self, *, task_status: TaskStatus[None]) -> None:
        """The bridge lives in this task, not in the caller's: an exception that escapes the bridge
        (its task group, a callback, its start or stop) cancels this task only, and is recorded as
        ``failure`` (a finding) instead of tearing down the event loop the run is driven from."""
        started = False
        try:
            async with AsyncExitStack() as stack:
                self._tg = await stack.enter_async_context(anyio.create_task_group())
                stack.callback(self._tg.cancel_scope.cancel)
                self.adapter = await stack.enter_async_context(self.factory(self.agent))
                check_adapter(self.adapter)
                self.capabilities = capabilities_of(self.adapter)
                started = True
                task_status.started()
                assert self._stopping is not None
                await self._stopping.wait()
        except Exception as exc:
            stopping = self._stopping is not None and self._stopping.is_set()
            phase = "stop" if stopping else ("task" if started else "start")
            self.failure = BridgeFailure.of(phase, exc, self._log.now(), host=Harness._host.__code__)
        if not started:
            task_status.started()
        self._notify()  # wake whoever waits on the bridge: it is gone

    async def stop(self, *, drain: bool = True) -> None:
        """Let running work finish, close every key, stop the bridge, and look for leaked processes."""
        if self.stopped:
            return
        self.stopped = True
        try:
            if drain and self.failure is None:
                for ks in self.keys.values():
                    if ks.slow:
                        self.set_slow(ks.key, False)
                limit = self.drain_limit()
                if not await self.wait_idle(limit):
                    self._record_drain_expired(limit)
                # From here on the harness ends what is still running: a turn that ends now ended
                # only because of the teardown (the caller would still be waiting), and the log
                # says so by a flag, for the oracle to judge it as never ended.
                self.tearing_down = True
                self.record_usage_totals()
                for ks in list(self.keys.values()):
                    if ks.status in ("idle", "busy") and self.failure is None:
                        self.close(ks.key)
                await self.wait_idle(self.limits.stop)
        finally:
            # Not under a timeout: the exit stack holds scopes entered before any we could open
            # here. A bridge that never stops is caught by the run's real-time step limit.
            if self._stopping is not None:
                self._stopping.set()
            await self._exit.__aexit__(None, None, None)
            self._observe()
        self.check_processes()

    def _on_unattributed(self, what: str, text: str) -> None:
        if self.log is not None:
            self.log.record("unattributed", text=text, detail={"what": what})

    @property
    def prompts_sent(self) -> int:
        """Prompts the client has sent so far (what a live budget counts)."""
        return self._prompts

    def drain_limit(self) -> float:
        caps = self.capabilities
        limits = [t for t in (caps.turn_timeout, caps.idle_timeout) if t is not None and math.isfinite(t)]
        margin = self.limits.timeout_margin
        return max([self.limits.drain, *(2 * t + margin for t in limits)])

    def _record_drain_expired(self, limit: float) -> None:
        """Note what was still running when the drain gave up: stopping the bridge next ends those
        turns (the bridge exits), which must not read as the bridge having ended them."""
        running = [{"key": ks.key, "turn": ks.turns} for ks in self.keys.values() if ks.running]
        opening = [ks.key for ks in self.keys.values() if ks.status == "opening"]
        self._log.record(
            "drain_expired",
            detail={"limit": limit, "why": self.limits.why, "running": running, "opening": opening},
        )

    def check_processes(self) -> None:
        if self.guard is None or self.log is None:
            return
        leaked = self.guard.leaked()
        if leaked:
            self.log.record(
                "leaked_processes",
                detail={"processes": [{"pid": p.pid, "cmdline": p.command} for p in leaked]},
            )
            leakguard.kill(leaked)

    # -- client actions ------------------------------------------------------------------------------

    def _start(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run an action as a task; actions enter the bridge in the order the client asked for them.

        Task start order is not guaranteed (trio even shuffles it), so a cancel asked right after a
        prompt could reach the bridge first. Each action waits until the previous one has called
        into the bridge; ``fn`` must call the bridge before its first await, so that call runs up to
        its first suspension before the next action starts.
        """
        assert self._tg is not None, "the harness is not started"
        if self.failure is not None:
            raise BridgeRaised(self.failure) from self.failure.exception
        previous, mine = self._entered, anyio.Event()
        self._entered = mine
        self._tg.start_soon(self._sequenced, previous, mine, fn, args)

    async def _sequenced(
        self, previous: anyio.Event | None, mine: anyio.Event, fn: Callable[..., Any], args: tuple[Any, ...]
    ) -> None:
        if previous is not None:
            await previous.wait()
        mine.set()
        await fn(*args)

    def _notify(self) -> None:
        self._observe()
        event, self._changed = self._changed, anyio.Event()
        if event is not None:
            event.set()

    def _observe(self) -> None:
        if self.truth is None:
            return
        self.truth.observe()
        # Listing processes costs a scan of /proc: do it only when an agent started a process
        # (its trace says so), to learn the process groups its orphans would still be in.
        if self.guard is not None and self.truth.new_spawns():
            self.guard.observe()

    @property
    def _log(self) -> DeliveryLog:
        assert self.log is not None, "the harness is not started"
        return self.log

    @property
    def _adapter(self) -> Any:
        assert self.adapter is not None, "the harness is not started"
        return self.adapter

    def open(
        self,
        *,
        cwd: str,
        mcp_servers: list[dict[str, Any]] | None = None,
        model: str | None = None,
        key: str | None = None,
    ) -> str:
        # ``key``: a scenario file names its sessions itself (pytest_acp.scenarios.run).
        key = key or f"s{len(self.keys) + 1}"
        if self.distinct_cwds:
            cwd = self._own_cwd(cwd, key)
        ks = KeyState(key, cwd, list(mcp_servers or []), model)
        self.keys[key] = ks
        self._log.record("open", key=key, detail={"cwd": cwd, "mcp_servers": ks.mcp_servers, "model": model})
        self._start(self._run_open, ks)
        return key

    @staticmethod
    def _own_cwd(cwd: str, key: str) -> str:
        """``cwd/key``, created when ``cwd`` exists (a run's own directory; never made elsewhere)."""
        path = Path(cwd) / key
        if path.parent.is_dir():
            path.mkdir(exist_ok=True)
        return str(path)

    async def _run_open(self, ks: KeyState) -> None:
        try:
            await self._adapter.open_session(ks.key, cwd=ks.cwd, mcp_servers=ks.mcp_servers, model=ks.model)
        except Exception as exc:
            ks.status = "failed"
            self._log.record("open_failed", key=ks.key, error=_describe(exc))
        else:
            ks.status = "idle"
            self._log.record("opened", key=ks.key)
        self._notify()

    def prompt(self, key: str) -> str:
        """Start the next turn of ``key``; returns its correlation token."""
        ks = self.keys[key]
        assert ks.status == "idle", f"{key} is {ks.status}, not idle"
        self._prompts += 1
        ks.turns += 1
        ks.status = "busy"
        ks.running += 1
        token = token_for(self._prompts)
        text = f"{token}: turn {ks.turns} of {key}, please carry on with the task"
        self._log.record("prompt", key=key, turn=ks.turns, text=text, detail={"token": token})
        self._start(self._run_prompt, ks, ks.turns, text)
        return token

    async def _run_prompt(self, ks: KeyState, turn: int, text: str) -> None:
        out = TurnOutput(self._log, ks.key, turn, delay=lambda: self.slow_read_delay if ks.slow else 0.0)
        end: TurnEnd
        try:
            result = await self._adapter.prompt(ks.key, text, out)
        except TimeoutError as exc:
            end = TurnEnd(error=_describe(exc), timed_out=True)
        except Exception as exc:
            end = TurnEnd(error=_describe(exc))
        else:
            end = result if isinstance(result, TurnEnd) else TurnEnd(stop_reason=result)
        self._log.record(
            "end",
            key=ks.key,
            turn=turn,
            stop_reason=end.stop_reason,
            usage=normalize_usage(end.usage),
            error=end.error,
            timed_out=end.timed_out or None,
            detail=dict(TEARDOWN) if self.tearing_down else None,
        )
        ks.running -= 1
        if ks.status == "busy":
            ks.status = "idle"
        self._record_usage(ks)
        self._notify()

    def _record_usage(self, ks: KeyState) -> None:
        # ``usage(key)`` is synchronous: the bridge's running total, read between turns.
        usage = getattr(self.adapter, "usage", None)
        if callable(usage) and ks.status == "idle":
            self._log.record("usage_total", key=ks.key, usage=normalize_usage(usage(ks.key)))

    def record_usage_totals(self) -> None:
        for ks in self.keys.values():
            self._record_usage(ks)

    def cancel(self, key: str) -> None:
        entry = self._log.record("cancel", key=key, turn=self.keys[key].turns)
        self._start(self._run_simple, "cancel", key, entry.seq)

    def _received(self, seq: int) -> None:
        """Stamp log entry ``seq`` with when its action reached the bridge (``detail["received"]``):
        the oracle judges the bridge's reaction from then, not from when the client asked."""
        entry = self._log.entries[seq]
        detail = {**(entry.detail or {}), "received": self._log.now()}
        self._log.entries[seq] = entry.model_copy(update={"detail": detail})

    async def _run_simple(self, what: str, key: str, seq: int | None = None) -> None:
        try:
            if seq is None:
                await getattr(self._adapter, what)(key)
            else:
                with receiving(lambda: self._received(seq)):
                    await getattr(self._adapter, what)(key)
        except Exception as exc:
            self._log.record("action_failed", key=key, error=_describe(exc), detail={"action": what})
        self._notify()

    def close(self, key: str) -> None:
        ks = self.keys[key]
        ks.status = "closing"
        self._log.record("close", key=key, detail=dict(TEARDOWN) if self.tearing_down else None)
        self._start(self._run_close, ks)

    async def _run_close(self, ks: KeyState) -> None:
        try:
            await self._adapter.close(ks.key)
        except Exception as exc:
            self._log.record("closed", key=ks.key, error=_describe(exc))
        else:
            self._log.record("closed", key=ks.key)
        ks.status = "closed"
        self._notify()

    def change_cwd(self, old: str, new: str | None = None) -> None:
        """Tell the bridge the project at ``old`` changed (its files, or it moved to ``new``)."""
        self._changes += 1
        ident = self._changes
        self._pending_changes += 1
        self._log.record("change_cwd", detail={"id": ident, "old": old, "new": new or old})
        self._start(self._run_change_cwd, ident, old, new)

    async def _run_change_cwd(self, ident: int, old: str, new: str | None) -> None:
        try:
            await self._adapter.change_cwd(old, new)
        except Exception as exc:
            self._log.record("cwd_changed", error=_describe(exc), detail={"id": ident})
        else:
            self._log.record("cwd_changed", detail={"id": ident})
        self._pending_changes -= 1
        self._notify()

    def prewarm(
        self, *, cwd: str, mcp_servers: list[dict[str, Any]] | None = None, model: str | None = None
    ) -> None:
        self._prewarms += 1
        self._pending_prewarms += 1
        ident = self._prewarms
        servers = list(mcp_servers or [])
        self._log.record("prewarm", detail={"id": ident, "cwd": cwd, "mcp_servers": servers, "model": model})
        self._start(self._run_prewarm, ident, cwd, servers, model)

    async def _run_prewarm(
        self, ident: int, cwd: str, servers: list[dict[str, Any]], model: str | None
    ) -> None:
        try:
            await self._adapter.prewarm(cwd=cwd, mcp_servers=servers, model=model)
        except Exception as exc:
            self._log.record("prewarmed", error=_describe(exc), detail={"id": ident})
        else:
            self._log.record("prewarmed", detail={"id": ident})
        self._pending_prewarms -= 1
        self._notify()

    def set_slow(self, key: str, on: bool) -> None:
        """Make ``key``'s caller read its updates slowly (or normally again)."""
        self.keys[key].slow = on
        self._log.record("slow_consumer", key=key, detail={"on": on})

    def inject(self, fault: Any) -> None:
        """Inject a fault into the current agent instance (``acp_sim.faults``)."""
        agent = self.agent.launcher.current
        detail = fault.describe() if hasattr(fault, "describe") else dict(fault)
        self._log.record("fault", detail=detail)
        agent.inject(fault)

    def crash(self) -> None:
        """Kill the current agent instance (the bridge sees its connection end)."""
        # Which instance: a killed process writes nothing more, so this entry is how the oracle
        # knows it is gone when no later instance starts (pytest_acp.properties.oracle).
        agents = getattr(self.agent.launcher, "agents", None)
        self._log.record("crash", detail={"instance": len(agents) - 1} if agents else None)
        self.agent.launcher.crash()
        self._observe()

    async def advance_until_change(self, seconds: float) -> tuple[float, bool]:
        """Wait until a turn or action ends, at most ``seconds`` (real time: a wait in which nothing
        can end finds nothing). Logged as an ``advance`` of the time it took; returns that time
        and whether something ended."""
        entry = self._log.record("advance", detail={"seconds": seconds})
        assert self._changed is not None
        changed = False
        with anyio.move_on_after(seconds):
            await self._changed.wait()
            changed = True
        waited = round(self._log.now() - entry.t, 6)
        self._log.entries[entry.seq] = entry.model_copy(update={"detail": {"seconds": waited}})
        self._observe()
        return waited, changed

    async def advance(self, seconds: float) -> None:
        self._log.record("advance", detail={"seconds": seconds})
        await anyio.sleep(seconds)
        self._observe()

    # -- waiting -------------------------------------------------------------------------------------

    @property
    def pending_prewarms(self) -> int:
        return self._pending_prewarms

    @property
    def pending_changes(self) -> int:
        return self._pending_changes

    def busy(self) -> bool:
        return (
            self._pending_prewarms > 0
            or self._pending_changes > 0
            or any(ks.status in ("opening", "busy", "closing") or ks.running for ks in self.keys.values())
        )

    async def wait_idle(self, limit: float) -> bool:
        """Wait (virtual time) until no turn or action is running; False if ``limit`` passed first."""
        with anyio.move_on_after(limit):
            while self.busy() and self.failure is None:  # a bridge that raised does nothing more
                assert self._changed is not None
                await self._changed.wait()
            return not self.busy()
        return False

    async def wait_for(self, predicate: Callable[[], bool], limit: float | None = None) -> bool:
        """Wait until ``predicate`` holds; False if ``limit`` (default: ``limits.settle``) passed first,
        or the bridge raised (its ``failure`` ends the run)."""
        with anyio.move_on_after(self.limits.settle if limit is None else limit):
            while not predicate() and self.failure is None:
                assert self._changed is not None
                await self._changed.wait()
            return predicate()
        return False

    # -- judging ---------------------------------------------------------------------------------------

    def instances(self) -> list[InstanceTrace]:
        assert self.truth is not None
        self.truth.observe()
        return self.truth.instances()

    def check(self, *, final: bool) -> list[Violation]:
        return check(self.instances(), self._log.entries, self.capabilities, final=final, models=self._models)

    def exercised(self) -> Exercised:
        """What this run exercised so far, read from the oracle's models of it (kept between checks)."""
        return count(self.instances(), self._log.entries, self.capabilities, models=self._models)

    def rule_end(self) -> RuleEnd:
        """The run as it stands, to judge later (``pytest_acp.harness.rule_ends``)."""
        assert self.truth is not None
        self.truth.observe()
        return RuleEnd(tuple(self._log.entries), self.truth.sizes())

    def check_if_changed(self) -> list[Violation]:
        """``check(final=False)``, skipped when nothing was logged or traced since the last call (a
        verdict on a run in progress changes only with new events)."""
        size = self.rule_end().size
        if size == self._checked_size:
            return []
        self._checked_size = size
        return self.check(final=False)

    def status(self, *states: KeyStatus) -> list[str]:
        return [k for k, ks in self.keys.items() if ks.status in states]


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@asynccontextmanager
async def running(factory: AdapterFactory, agent: AgentUnderTest, **options: Any) -> AsyncIterator[Harness]:
    """A started harness; stopped (drained, closed, leak-checked) on exit."""
    harness = Harness(factory, agent, **options)
    await harness.start()
    try:
        yield harness
    finally:
        await harness.stop()
    if harness.failure is not None:
        raise BridgeRaised(harness.failure) from harness.failure.exception
