"""The plugin's fixtures: the agent, its stdio command, the bridge under test, the clock, the
ground-truth traces, a harness, a state-machine runner and the leak guard.

All of them follow ``--acp-sim`` / ``--acp-live`` and the ``acp`` marker
(``@pytest.mark.acp(profile=..., faults=[...])``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_acp.config import AcpOptions, replay_command
from pytest_acp.report.progress import terminal_writer

# The plugin module imports this one in every pytest run of every project where the package is
# installed: the agent, the SDK, the orchestrator and Hypothesis are imported by the fixtures that
# use them, so a run that uses none of them does not pay for them.
if TYPE_CHECKING:
    from acp_sim.clock import SimClock
    from acp_sim.faults import Fault
    from acp_sim.profile import AgentProfile
    from pytest_acp.adapter import AdapterFactory, AgentUnderTest, BridgeAdapter
    from pytest_acp.harness import leakguard
    from pytest_acp.harness.harness import Harness
    from pytest_acp.harness.machine import AcpStateMachine
    from pytest_acp.harness.machine_run import RunStats
    from pytest_acp.properties.truth import InstanceTrace
    from pytest_acp.report.failure import RunContext

OPTIONS_KEY = pytest.StashKey[AcpOptions]()


def options_of(config: pytest.Config) -> AcpOptions:
    return config.stash[OPTIONS_KEY]


@pytest.fixture(scope="session")
def acp_options(pytestconfig: pytest.Config) -> AcpOptions:
    """The resolved ``--acp-*`` options (and ini keys) of this run."""
    return options_of(pytestconfig)


@pytest.fixture
def acp_seed(acp_options: AcpOptions, request: pytest.FixtureRequest) -> int:
    """The seed of this test: ``--acp-seed`` (per xdist worker: derived from it), or the marker's."""
    marker = request.node.get_closest_marker("acp")
    if marker is not None and marker.kwargs.get("seed") is not None:
        return int(marker.kwargs["seed"])
    return acp_options.seed


def _marker_faults(request: pytest.FixtureRequest) -> list[Fault]:
    from acp_sim.faults import FAULT_ADAPTER, parse_fault_spec

    marker = request.node.get_closest_marker("acp")
    specs = marker.kwargs.get("faults", []) if marker is not None else []
    faults = []
    for spec in specs if isinstance(specs, (list, tuple)) else [specs]:
        if isinstance(spec, str):
            faults.append(parse_fault_spec(spec))
        elif isinstance(spec, dict):
            faults.append(FAULT_ADAPTER.validate_python(spec))
        else:
            faults.append(spec)
    return faults


@pytest.fixture
def acp_profile(acp_options: AcpOptions, request: pytest.FixtureRequest) -> AgentProfile:
    """The simulated agent's profile: the marker's ``profile=``, else ``--acp-profile``, else default."""
    from acp_sim.profile import DEFAULT, AgentProfile, load_profile

    marker = request.node.get_closest_marker("acp")
    chosen = marker.kwargs.get("profile") if marker is not None else None
    if isinstance(chosen, AgentProfile):
        return chosen
    if chosen is not None:
        return load_profile(chosen)
    return acp_options.profile() or DEFAULT


@pytest.fixture
def acp_agent(
    acp_options: AcpOptions, acp_profile: AgentProfile, acp_seed: int, request: pytest.FixtureRequest
) -> Any:
    """The agent launcher: the in-process simulated agent (virtual time) with the marker's faults.

    With ``--acp-live`` the simulated agent is not available: a test that needs it is skipped
    (use ``acp_live_agent``); fault injection always needs the simulator.
    """
    from acp_sim.agent import InProcessAgent

    if acp_options.mode == "live":
        pytest.skip("needs the simulated agent (in-process, virtual time); this run uses --acp-live")
    return InProcessAgent(acp_profile, seed=acp_seed, faults=_marker_faults(request))


@pytest.fixture
async def acp_live_agent(acp_options: AcpOptions, acp_seed: int, tmp_path: Any) -> AsyncIterator[Any]:
    """The real agent (Claude Code's ACP adapter behind the trace tap, real time), with ``--acp-live``.

    Skipped, with the reason, when the run is not live or no adapter is installed.
    """
    if acp_options.mode != "live":
        pytest.skip("live-only: run with --acp-live (the real Claude Code ACP adapter)")
    from acp_sim.live import live_agent
    from acp_sim.live.adapter import DUMMY_API_KEY

    key = acp_options.api_key()
    async with live_agent(
        live_adapter(acp_options),
        seed=acp_seed,
        trace_dir=tmp_path / "traces",
        real_model=key is not None,
        api_key=key or DUMMY_API_KEY,
    ) as live:
        yield live


def live_adapter(options: AcpOptions) -> Any:
    """The Claude Code adapter a live run uses (``AdapterCommand``); skips, with the reason, without it."""
    from acp_sim.live import AdapterNotFound, find_adapter

    try:
        return find_adapter(options.agent_cmd, project_root=options.rootdir)
    except AdapterNotFound as exc:
        pytest.skip(f"--acp-live: {exc}")


@pytest.fixture
def acp_agent_cmd(acp_options: AcpOptions, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """An ACP agent command line for bridges that start the agent themselves (``--acp-agent-cmd``,
    else the simulated agent over stdio with this run's seed and profile, on a disk of the test's
    own; real time)."""
    return acp_options.stdio_agent_cmd(str(tmp_path_factory.mktemp("acp-agent-state")))


@pytest.fixture
def acp_bridge_factory(acp_options: AcpOptions) -> AdapterFactory:
    """The adapter factory of the bridge under test (``--acp-bridge``; default: the reference)."""
    return acp_options.bridge()


@pytest.fixture
def acp_agent_under_test(
    acp_options: AcpOptions,
    acp_agent_cmd: list[str],
    acp_seed: int,
    anyio_backend: Any,
    request: pytest.FixtureRequest,
) -> AgentUnderTest:
    """The agent ``acp_bridge`` and ``acp_harness`` start: the simulated one (``acp_agent``), or with
    ``--acp-live`` the real adapter behind the tap (``acp_live_agent``, real time)."""
    from pytest_acp.adapter import AgentUnderTest

    backend = str(anyio_backend[0] if isinstance(anyio_backend, tuple) else anyio_backend)
    if acp_options.mode == "live":
        live = request.getfixturevalue("acp_live_agent")
        return AgentUnderTest(
            live.launcher,
            command=list(live.command),
            backend=backend,
            virtual_time=False,
            seed=acp_seed,
            extra={"live": live},
        )
    launcher = request.getfixturevalue("acp_agent")
    return AgentUnderTest(launcher, command=acp_agent_cmd, backend=backend, seed=acp_seed)


@pytest.fixture
async def acp_bridge(
    acp_bridge_factory: AdapterFactory, acp_agent_under_test: AgentUnderTest, acp_options: AcpOptions
) -> AsyncIterator[BridgeAdapter]:
    """The bridge under test, started on the test's agent, wrapped in its adapter (async tests)."""
    _skip_unsupported_backend(acp_bridge_factory, acp_agent_under_test, acp_options)
    async with acp_bridge_factory(acp_agent_under_test) as adapter:
        yield adapter


@pytest.fixture
async def acp_harness(
    acp_bridge_factory: AdapterFactory, acp_agent_under_test: AgentUnderTest, acp_options: AcpOptions
) -> AsyncIterator[Harness]:
    """A started harness over the bridge under test: drive it (``open``, ``prompt``, ``cancel``,
    ``advance``...), then ``assert not harness.check(final=True)`` after ``await harness.stop()``."""
    from pytest_acp.harness.harness import Harness

    _skip_unsupported_backend(acp_bridge_factory, acp_agent_under_test, acp_options)
    harness = Harness(acp_bridge_factory, acp_agent_under_test, guard_processes=False)
    await harness.start()
    try:
        yield harness
    finally:
        await harness.stop()
    if harness.failure is not None:  # the bridge raised in its own task: the test's finding
        from pytest_acp.harness.bridge_raised import BridgeRaised

        raise BridgeRaised(harness.failure) from harness.failure.exception


@pytest.fixture
async def acp_clock() -> SimClock:
    """The simulation clock of an async test (virtual seconds since the fixture was set up)."""
    from acp_sim.clock import SimClock

    return SimClock()


@dataclass
class AgentTraces:
    """The ground truth of a test's agent: one trace per instance the launcher started."""

    launcher: Any

    @property
    def current(self) -> Any:
        """The ``Trace`` of the instance running now (the latest launch)."""
        return self.launcher.agents[-1].trace

    @property
    def all(self) -> list[Any]:
        return [agent.trace for agent in self.launcher.agents]

    def instances(self) -> list[InstanceTrace]:
        from pytest_acp.properties.truth import InstanceTrace

        return [InstanceTrace(a.name, a.trace.events) for a in self.launcher.agents]


@pytest.fixture
def acp_trace(acp_options: AcpOptions, request: pytest.FixtureRequest) -> AgentTraces:
    """The ground-truth traces of the test's agent (``.current``, ``.all``), filled as it runs: the
    simulated agent's own, or with ``--acp-live`` the tap's."""
    if acp_options.mode == "live":
        return AgentTraces(request.getfixturevalue("acp_live_agent").launcher)
    return AgentTraces(request.getfixturevalue("acp_agent"))


@pytest.fixture
def acp_leak_guard() -> Iterator[leakguard.LeakGuard]:
    """Fails the test if it leaves child processes running (agents, MCP servers, their children),
    naming each with its pid and command line; leaked processes are killed so the next test is clean."""
    from pytest_acp.harness import leakguard

    guard = leakguard.LeakGuard.start(orphans=True)
    yield guard
    leaked = guard.leaked()
    if leaked:
        leakguard.kill(leaked)
        pytest.fail("test left child processes running:\n" + leakguard.describe(leaked), pytrace=False)


@pytest.fixture
def acp_check(acp_options: AcpOptions, request: pytest.FixtureRequest) -> Callable[..., list[RunStats]]:
    """Run the ACP state machine against a bridge, on each selected backend, with this run's seed and
    budget. ``acp_check(factory)`` or ``acp_check(machine=MyMachine)``; raises ``PropertyViolation``
    with the full failure report (property, seed, shrunk steps, replay command, timeline)."""

    def check(
        factory: AdapterFactory | None = None,
        *,
        machine: type[AcpStateMachine] | None = None,
        backends: list[str] | None = None,
        examples: int | None = None,
        **attributes: Any,
    ) -> list[RunStats]:
        return run_suite(
            acp_options,
            request.node.nodeid,
            factory=factory,
            machine=machine,
            backends=backends,
            examples=examples,
            xdist=_distributed(request.config),
            write=terminal_writer(request.config),
            **attributes,
        )

    return check


def run_suite(
    options: AcpOptions,
    nodeid: str,
    *,
    factory: AdapterFactory | None = None,
    machine: type[AcpStateMachine] | None = None,
    backends: list[str] | None = None,
    examples: int | None = None,
    select: str | None = None,
    xdist: bool = False,
    write: Callable[[str], None] | None = None,
    **attributes: Any,
) -> list[RunStats]:
    """The property suite, as the items and ``acp_check`` run it. ``write``: where a long run's
    progress lines go (``pytest_acp.report.progress.terminal_writer``; default stderr)."""
    from pytest_acp.harness.machine import STEPS
    from pytest_acp.harness.machine_run import machine_for, run_machine

    if options.mode == "live":
        return _run_live_suite(
            options,
            nodeid,
            factory=factory,
            machine=machine,
            backends=backends,
            examples=examples,
            select=select,
            xdist=xdist,
            write=write,
            **attributes,
        )
    bridge_name = options.bridge_ref if factory is None and machine is None else _name(factory or machine)
    backends = _supported(_factory_of(options, factory, machine), bridge_name, backends or options.backends)
    if machine is None and is_realtime(factory or options.bridge()):
        return _run_realtime_suite(
            options,
            nodeid,
            factory or options.bridge(),
            bridge_name,
            backends=backends,
            examples=examples,
            select=select,
            xdist=xdist,
            write=write,
            **attributes,
        )
    stats = []
    for backend in backends:
        if machine is not None:
            cls = type(machine.__name__, (machine,), {"backend": backend, **attributes})
        else:
            cls = machine_for(factory or options.bridge(), backend=backend, **attributes)  # type: ignore[arg-type]
        profile = options.profile()
        if profile is not None and "profile" not in attributes:
            cls.profile = profile
        if "min_effect" not in attributes:
            cls.min_effect = options.min_effect
        if options.baseline is not None and "baseline" not in attributes:
            cls.baseline = options.baseline
        if "progress_after" not in attributes:
            cls.progress_after = options.progress_after
        count = examples or options.examples
        context = _context(options, nodeid, backend, bridge_name, count, select=select, xdist=xdist)
        progress = _progress(count, STEPS, cls.progress_after, nodeid, write)
        runner = _reporting(options, nodeid) or run_machine
        stats.append(runner(cls, examples=count, seed=options.seed, context=context, progress=progress))
    return stats


def _reporting(options: AcpOptions, nodeid: str, run: Callable[..., Any] | None = None) -> Any:
    """With ``--acp-report``: a runner that judges every property in one run and writes its part of
    the report (``pytest_acp.report.conformance``); else None (the run stops at its first violation)."""
    if options.report_dir is None:
        return None
    from pytest_acp.report.conformance import reporting

    return reporting(Path(options.report_dir), nodeid, run)


def _progress(
    examples: int,
    steps: int,
    after: float | None,
    nodeid: str,
    write: Callable[[str], None] | None,
    what: str = "",
) -> Any:
    """The progress lines of one run of the item ``nodeid`` (``pytest_acp.report.progress``)."""
    from pytest_acp.report.progress import Progress, stderr_writer

    return Progress(examples, steps, write=write or stderr_writer, after=after, what=f"acp {nodeid}{what}")


def is_realtime(factory: Any) -> bool:
    """Whether a bridge factory starts the agent itself, as a real process (``SubprocessBridge``
    marks its factories): such a bridge runs on real time, never on the virtual clock."""
    return bool(getattr(factory, "realtime", False))


def _run_realtime_suite(
    options: AcpOptions,
    nodeid: str,
    factory: AdapterFactory,
    bridge_name: str,
    *,
    backends: list[str] | None,
    examples: int | None,
    select: str | None,
    xdist: bool,
    write: Callable[[str], None] | None = None,
    **attributes: Any,
) -> list[RunStats]:
    """The property suite on real time (``pytest_acp.harness.realtime``): the same entry point, with the
    real-time machine, its agent profile (``--acp-profile`` scaled the same way) and its budgets."""
    from pytest_acp.harness.realtime import (
        REALTIME_EXAMPLES,
        REALTIME_SCALE,
        REALTIME_STEPS,
        realtime_machine_for,
        run_realtime_machine,
    )
    from pytest_acp.harness.realtime_scaling import scale_profile

    count = examples or (options.examples if options.examples_given else REALTIME_EXAMPLES)
    stats = []
    for backend in backends or options.backends:
        cls = realtime_machine_for(factory, backend=backend, **attributes)  # type: ignore[arg-type]
        profile = options.profile()
        if profile is not None and "profile" not in attributes:
            cls.profile = scale_profile(profile, REALTIME_SCALE)
        if options.baseline is not None and "baseline" not in attributes:
            cls.baseline = options.baseline
        if "min_effect" not in attributes:
            cls.min_effect = options.min_effect
        if "progress_after" not in attributes:
            cls.progress_after = options.progress_after
        context = _context(options, nodeid, backend, bridge_name, count, select=select, xdist=xdist)
        context.virtual_time = False
        stats.append(
            (_reporting(options, nodeid, run_realtime_machine) or run_realtime_machine)(
                cls,
                examples=count,
                seed=options.seed,
                context=context,
                limits=options.realtime_limits,
                progress=_progress(count, REALTIME_STEPS, cls.progress_after, nodeid, write, " (real time)"),
            )
        )
    return stats


def _context(
    options: AcpOptions,
    nodeid: str,
    backend: str,
    bridge: str,
    examples: int,
    *,
    select: str | None,
    xdist: bool,
) -> RunContext:
    """What a failure report says about the run: seed, backend, bridge, budget and replay command."""
    from pytest_acp.report.failure import RunContext

    return RunContext(
        seed=options.seed,
        backend=backend,
        bridge=bridge,
        base_seed=options.base_seed,
        worker=options.worker,
        replay=replay_command(options, nodeid, select=select, xdist=xdist or options.worker is not None),
        examples=examples,
    )


def _run_live_suite(
    options: AcpOptions,
    nodeid: str,
    *,
    factory: AdapterFactory | None,
    machine: type[AcpStateMachine] | None,
    backends: list[str] | None,
    examples: int | None,
    select: str | None,
    xdist: bool,
    write: Callable[[str], None] | None = None,
    **attributes: Any,
) -> list[RunStats]:
    """The property suite against the real agent: ``LiveMachine`` on real time, one budget per backend."""
    from pytest_acp.live.budget import BudgetMeter
    from pytest_acp.live.run import LIVE_STEPS, LiveMachine, live_machine_for, run_live_machine

    if machine is not None and not issubclass(machine, LiveMachine):
        pytest.skip(
            f"--acp-live: {machine.__name__} is a virtual-time machine; derive it from "
            "pytest_acp.live.run.LiveMachine to run it against the real agent"
        )
    adapter = live_adapter(options)
    bridge_name = options.bridge_ref if factory is None and machine is None else _name(factory or machine)
    count = examples or options.live_examples
    backends = _supported(_factory_of(options, factory, machine), bridge_name, backends or options.backends)
    stats = []
    for backend in backends:
        meter = BudgetMeter(options.live_budget)
        live = {
            "adapter": adapter,
            "meter": meter,
            "model": options.live_model,
            "api_key": options.api_key(),
            "limits": options.realtime_limits,
            "progress_after": options.progress_after,
        }
        if machine is not None:
            cls = type(machine.__name__, (machine,), {"backend": backend, **live, **attributes})
        else:
            cls = live_machine_for(factory or options.bridge(), backend=backend, **live, **attributes)  # type: ignore[arg-type]
        if options.baseline is not None and "baseline" not in attributes:
            cls.baseline = options.baseline
        context = _context(options, nodeid, backend, bridge_name, count, select=select, xdist=xdist)
        progress = _progress(count, LIVE_STEPS, options.progress_after, nodeid, write, " (live)")
        runner = _reporting(options, nodeid, run_live_machine) or run_live_machine
        run = runner(cls, examples=count, seed=options.seed, context=context, progress=progress)
        run.budget = meter.summary()
        stats.append(run)
    return stats


def _factory_of(options: AcpOptions, factory: Any, machine: Any) -> Any:
    """The adapter factory a run uses: the given one, the machine's, or ``--acp-bridge``'s."""
    if factory is not None:
        return factory
    if machine is not None:
        return getattr(machine, "bridge", None)
    return options.bridge()


def _supported(factory: Any, name: str, backends: list[str]) -> list[str]:
    """The backends of ``backends`` the bridge declares it runs on; skips the test if none."""
    from pytest_acp.adapter import unsupported_backend

    reasons = [unsupported_backend(factory, backend, name=name) for backend in backends]
    kept = [backend for backend, reason in zip(backends, reasons, strict=True) if reason is None]
    if not kept:
        pytest.skip(next(r for r in reasons if r is not None))
    return kept


def _skip_unsupported_backend(factory: Any, agent: AgentUnderTest, options: AcpOptions) -> None:
    from pytest_acp.adapter import unsupported_backend

    reason = unsupported_backend(factory, agent.backend, name=options.bridge_ref)
    if reason is not None:
        pytest.skip(reason)


def _distributed(config: pytest.Config) -> bool:
    try:
        return bool(config.getoption("numprocesses"))
    except ValueError:  # xdist not installed
        return False


def _name(obj: Any) -> str:
    module = getattr(obj, "__module__", "")
    name = getattr(obj, "__qualname__", getattr(obj, "__name__", repr(obj)))
    return f"{module}:{name}" if module else name
