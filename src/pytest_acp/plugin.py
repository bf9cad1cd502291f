"""pytest-acp: the pytest plugin (entry point ``pytest11``).

``pytest --acp-sim`` runs the property suite (a Hypothesis state machine judged by the oracle)
against the bridge named by ``--acp-bridge`` (default: the reference orchestrator) on every
selected anyio backend, next to the project's own tests; ``pytest --acp-live`` runs the same suite
and the scenario files against real Claude Code (``pytest_acp.live.run``: real time, a budget).
The fixtures (``pytest_acp.fixtures``) give tests the simulated agent, its stdio command, the
bridge, the clock, the traces and the leak guard. ``pytest --help`` lists every option in the
"acp" group; each is also an ini key.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from pytest_acp.config import OPTION_KEYS, AcpOptions, add_options, option_value
from pytest_acp.fixtures import (  # noqa: F401  (fixtures are found by name on the plugin module)
    OPTIONS_KEY,
    acp_agent,
    acp_agent_cmd,
    acp_agent_under_test,
    acp_bridge,
    acp_bridge_factory,
    acp_check,
    acp_clock,
    acp_harness,
    acp_leak_guard,
    acp_live_agent,
    acp_options,
    acp_profile,
    acp_seed,
    acp_trace,
    options_of,
    run_suite,
)
from pytest_acp.looptime_guard import unregister_looptime_plugin
from pytest_acp.plugin_modules import import_plugins
from pytest_acp.report.progress import terminal_writer

LIVE_MARKER = "acp_live"
SUMMARY_PROPERTY = "acp_summary"
SUITE_NAME = "acp_properties"
# Scenario files as test items, counterexample export, HTML timelines (a plugin module of its own).
COMPANIONS = ("pytest_acp.collect", "pytest_acp.async_tests")


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    # Not ``pytest_plugins``, which scans every distribution's entry points (pytest_acp.plugin_modules).
    import_plugins(pluginmanager, COMPANIONS)


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    # looptime's own pytest plugin breaks every fixture without pytest-asyncio; its guard is an
    # entry point of its own (so ``-p no:acp`` keeps it), called here too for an install whose
    # entry points predate it.
    unregister_looptime_plugin(config)
    config.addinivalue_line(
        "markers",
        "acp(profile=None, faults=(), seed=None): run this test's simulated agent with this profile "
        "(a built-in name, a file or an AgentProfile), these faults (compact strings like "
        "'crash:at=2.5', dicts or acp_sim.faults models) and this seed",
    )
    config.addinivalue_line(
        "markers",
        f"{LIVE_MARKER}: a test that needs the real agent: skipped, with the reason, unless --acp-live",
    )
    config.stash[OPTIONS_KEY] = options = AcpOptions.from_config(config)
    if options.report_dir is not None and getattr(config, "workerinput", None) is None:
        # A report describes this session only: parts of an earlier one in the same directory go.
        from pytest_acp.report.conformance import clear_parts

        clear_parts(Path(options.report_dir))


def pytest_report_header(config: pytest.Config) -> list[str]:
    # A project that has the package installed but does not use it sees nothing of ours: the line
    # is printed here when an ``--acp-*`` option or ini key is set, else after collection when a
    # collected test uses the plugin (``pytest_report_collectionfinish``).
    if not configured(config):
        return []
    return [_header_line(config)]


def pytest_report_collectionfinish(config: pytest.Config, items: list[pytest.Item]) -> list[str]:
    if configured(config) or not any(uses_plugin(item) for item in items):
        return []
    return [_header_line(config)]


# The fixtures whose tests use the plugin (the others, like acp_options, only read settings).
PLUGIN_FIXTURES = frozenset(
    {
        "acp_agent",
        "acp_agent_cmd",
        "acp_agent_under_test",
        "acp_bridge",
        "acp_bridge_factory",
        "acp_check",
        "acp_clock",
        "acp_harness",
        "acp_live_agent",
        "acp_trace",
    }
)


def configured(config: pytest.Config) -> bool:
    """Whether this run asks for the plugin: an ``--acp-*`` option or ini key is set."""
    return any(option_value(config, ini) is not None for ini in OPTION_KEYS)


def uses_plugin(item: pytest.Item) -> bool:
    """Whether a collected item runs anything of ours: our items, the ``acp`` markers, our fixtures."""
    if item.get_closest_marker("acp") is not None or item.get_closest_marker(LIVE_MARKER) is not None:
        return True
    return not PLUGIN_FIXTURES.isdisjoint(getattr(item, "fixturenames", ()))


def _header_line(config: pytest.Config) -> str:
    options = options_of(config)
    line = f"acp: {options.mode} agent, seed {options.seed}"
    if options.worker:
        line += f" (xdist worker {options.worker}, from --acp-seed {options.base_seed})"
    if options.suite and options.mode == "live":
        line += (
            f", property suite on {options.bridge_ref} ({options.live_examples} examples per backend, "
            f"model {options.live_model}, budget {options.live_budget.compact()} per backend)"
        )
    elif options.suite:
        line += f", property suite on {options.bridge_ref} ({options.examples} examples per backend)"
    return line


class AcpPropertyItem(pytest.Item):
    """The property suite against the configured bridge on one backend."""

    def __init__(self, *, backend: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.backend = backend
        self.add_marker(pytest.mark.acp)

    def runtest(self) -> None:
        options = options_of(self.config)
        stats = run_suite(
            options,
            self.nodeid,
            backends=[self.backend],
            select=f"{SUITE_NAME} and {self.backend}",
            xdist=distributed(self.config),
            write=terminal_writer(self.config),
        )
        for run in stats:
            if run.budget is not None:
                self.add_report_section("call", "acp live budget", run.budget)
            if run.exercised is not None:
                self.add_report_section("call", "acp exercised", run.exercised.summary())
            if run.summary:  # what the run covered, for the terminal summary (also from xdist workers)
                self.user_properties.append((SUMMARY_PROPERTY, run.summary))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        if is_property_violation(excinfo.value):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)  # type: ignore[arg-type]

    def reportinfo(self) -> tuple[str, int, str]:
        options = options_of(self.config)
        return (self.name, 0, f"{self.name} on {options.bridge_ref}")


def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    options = options_of(config)
    if options.suite:
        suite = [
            AcpPropertyItem.from_parent(
                session,
                name=f"{SUITE_NAME}[{backend}]",
                # Its own id (a parent of the session alone would make it "::name").
                nodeid=f"{SUITE_NAME}[{backend}]",
                backend=backend,
            )
            for backend in options.backends
        ]
        items.extend(suite)
        # Counted as collected, as items a collector found are (else the summary says
        # "1 item / 2 deselected / -1 selected").
        session.ihook.pytest_collectreport(
            report=pytest.CollectReport(session.nodeid, "passed", None, list(suite))
        )
    _deselect_other_backends(config, items, options)
    if options.mode != "live":
        skip = pytest.mark.skip(
            reason="live-only test (acp_live): run with --acp-live against the real agent"
        )
        for item in items:
            if item.get_closest_marker(LIVE_MARKER) is not None:
                item.add_marker(skip)
    else:
        skip = pytest.mark.skip(
            reason="injects agent faults, which needs the simulated agent (not --acp-live)"
        )
        for item in items:
            marker = item.get_closest_marker("acp")
            if marker is not None and marker.kwargs.get("faults"):
                item.add_marker(skip)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """One line per property-suite item (examples, rules run, faults injected, rules off and why),
    then what the baseline accepted in this run and its stale entries (``pytest_acp.report.baseline``)."""
    lines = []
    for report in terminalreporter.stats.get("passed", []):
        for name, value in getattr(report, "user_properties", ()):
            if name == SUMMARY_PROPERTY:
                lines.append(f"{report.nodeid}: {value}")
    if lines:
        terminalreporter.write_sep("-", "acp property suite")
        for line in lines:
            terminalreporter.write_line(line)
    options = config.stash.get(OPTIONS_KEY, None)
    if options is not None and options.baseline is not None:
        terminalreporter.section("acp baseline")
        for line in options.baseline.summary():
            terminalreporter.write_line(line)
    if (
        options is not None
        and options.report_dir is not None
        and getattr(config, "workerinput", None) is None
    ):
        _write_conformance_report(terminalreporter, Path(options.report_dir))


def _write_conformance_report(terminalreporter: Any, directory: Path) -> None:
    """The session's conformance report from every run's part (xdist workers write theirs too)."""
    from acp_sim.conformance import terminal_table, write
    from pytest_acp.report.conformance import collect_report

    report = collect_report(directory)
    if report is None:
        return
    json_path, html_path = write(report, directory)
    terminalreporter.write_sep("-", "acp conformance")
    for run in report.runs:
        for line in terminal_table(run).splitlines():
            terminalreporter.write_line(line)
        terminalreporter.write_line("")
    terminalreporter.write_line(f"report: {json_path} and {html_path}")


def distributed(config: pytest.Config) -> bool:
    """Whether this run is spread over xdist workers (then the replay command asks for one process)."""
    try:
        return bool(config.getoption("numprocesses"))
    except ValueError:  # xdist not installed
        return False


def _backend_of(item: pytest.Item) -> str | None:
    if isinstance(item, AcpPropertyItem):
        return item.backend
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return None
    for key in ("anyio_backend", "backend"):
        value = callspec.params.get(key)
        if isinstance(value, tuple):
            value = value[0]
        if value in ("asyncio", "trio"):
            return str(value)
    return None


def _deselect_other_backends(config: pytest.Config, items: list[pytest.Item], options: AcpOptions) -> None:
    """``--acp-backend trio`` keeps only the trio variant of backend-parametrized tests."""
    if options.backend == "all":
        return
    keep, drop = [], []
    for item in items:
        backend = _backend_of(item)
        (drop if backend is not None and backend != options.backend else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """A property violation is reported as its failure report, not as a traceback into Hypothesis."""
    report = yield
    if call.excinfo is not None and is_property_violation(call.excinfo.value) and report.failed:
        report.longrepr = str(call.excinfo.value)
    return report


def is_property_violation(error: BaseException) -> bool:
    """Whether ``error`` is a ``PropertyViolation``, without importing the state machine (and
    Hypothesis) into runs that never ran it: no machine module, no violation."""
    machine = sys.modules.get("pytest_acp.harness.machine")
    return machine is not None and isinstance(error, machine.PropertyViolation)
