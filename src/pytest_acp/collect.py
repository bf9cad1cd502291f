"""Scenario files as pytest items, and counterexample export (a plugin module: ``pytest_acp.plugin``
loads it).

``scenarios/**/*.yaml`` (and every directory in ``--acp-scenarios`` / the ``acp_scenarios`` ini
key) is collected next to the tests when pytest runs without path arguments; a YAML file named on
the command line is collected wherever it is. Each scenario is one item per anyio backend,
``path::<scenario name>[<backend>]``, so ``-k <name>`` selects it, and runs against the bridge of
``--acp-bridge`` (default: the reference orchestrator) on the simulated agent. A failure shows the
same report as the state machines (property, seed, steps, replay command, timeline); a bad file
fails its own item with the file, line, field and value of each mistake, and nothing else.

``--acp-timeline-html DIR`` writes the HTML timeline of every failing scenario item (and of every
failing property-suite run) to ``DIR``. ``--acp-export-failures DIR`` writes every failing
state-machine example as a scenario file in ``DIR`` (``pytest_acp.scenarios.export``).
"""

from __future__ import annotations

import importlib
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_acp.config import DEFAULT_BRIDGE, GROUP, GROUP_DESCRIPTION
from pytest_acp.fixtures import is_realtime, options_of
from pytest_acp.plugin import is_property_violation

# Loaded in every pytest run (see ``pytest_acp.fixtures``): the scenario models, the timeline
# renderer and the state machine are imported when a scenario file is collected or fails.
if TYPE_CHECKING:
    from acp_sim.scenario import ScenarioError, ScenarioFile

SUFFIXES = (".yaml", ".yml")
MARKER = "acp_scenario"
# A YAML file found in a directory that is not a scenario directory is collected only if it looks
# like a scenario (a top-level ``script:`` key), so CI configs and the like are left alone.
LOOKS_LIKE_SCENARIO = re.compile(r"^script\s*:", re.MULTILINE)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup(GROUP, GROUP_DESCRIPTION)
    group.addoption(
        "--acp-scenarios",
        dest="acp_scenarios_extra",
        action="append",
        default=[],
        metavar="DIR",
        help="also collect the scenario files (*.yaml) in DIR (repeatable; the ini key acp_scenarios "
        "lists the default directories: scenarios)",
    )
    parser.addini(
        "acp_scenarios",
        "directories whose *.yaml files are scenario test items, relative to the rootdir "
        "(default: scenarios)",
        type="linelist",
        default=["scenarios"],
    )
    group.addoption(
        "--acp-export-failures",
        dest="acp_export_failures",
        default=None,
        metavar="DIR",
        help="write every failing state-machine example as a scenario file in DIR (replays the failure)",
    )
    parser.addini("acp_export_failures", "ini form of --acp-export-failures", default=None)
    group.addoption(
        "--acp-timeline-html",
        dest="acp_timeline_html",
        default=None,
        metavar="DIR",
        help="write the HTML timeline of every failing scenario item and property-suite run in DIR",
    )
    parser.addini("acp_timeline_html", "ini form of --acp-timeline-html", default=None)


def _setting(config: pytest.Config, name: str) -> str | None:
    value = config.getoption(name, None)
    if value is None:
        value = config.getini(name) or None
    return str(value) if value else None


def scenario_dirs(config: pytest.Config) -> list[Path]:
    root = config.rootpath
    names = [*config.getini("acp_scenarios"), *config.getoption("acp_scenarios_extra", [])]
    return [(root / name).resolve() if not Path(name).is_absolute() else Path(name) for name in names]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{MARKER}: a scenario file run as a test item (pytest_acp.collect)")
    # Without path arguments pytest collects testpaths (or the rootdir): add the scenario
    # directories that are not inside those already.
    if config.args_source == pytest.Config.ArgsSource.ARGS:
        return
    collected = [Path(a.split("::")[0]).resolve() for a in config.args]
    for directory in scenario_dirs(config):
        if directory.is_dir() and not any(directory.is_relative_to(c) for c in collected):
            config.args.append(str(directory))


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.suffix not in SUFFIXES:
        return None
    config = parent.config
    resolved = file_path.resolve()
    named = {Path(a.split("::")[0]).resolve() for a in config.args}
    if resolved in named or any(resolved.is_relative_to(d) for d in scenario_dirs(config)):
        return ScenarioYamlFile.from_parent(parent, path=file_path)
    try:
        text = file_path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    if LOOKS_LIKE_SCENARIO.search(text):
        return ScenarioYamlFile.from_parent(parent, path=file_path)
    return None


class ScenarioYamlFile(pytest.File):
    """One scenario file: an item per backend, or one failing item when the file is bad."""

    def collect(self) -> Iterator[pytest.Item]:
        from acp_sim.scenario import ScenarioError, load_scenario

        try:
            loaded = load_scenario(self.path)
        except ScenarioError as exc:
            yield BadScenarioItem.from_parent(self, name=self.path.stem, error=exc)
            return
        options = options_of(self.config)
        backends = [b for b in options.backends if loaded.scenario.backend in (None, b)]
        if not backends:  # recorded on a backend this run does not use: say so rather than vanish
            backends = [loaded.scenario.backend or "asyncio"]
        for backend in backends:
            yield ScenarioItem.from_parent(
                self, name=f"{loaded.scenario.name}[{backend}]", file=loaded, backend=backend
            )


class ScenarioFailed(AssertionError):
    """A scenario's properties or expectations did not hold; the message is the failure report."""


class BadScenarioItem(pytest.Item):
    """Stands for a scenario file that cannot be loaded: fails with every problem, alone."""

    def __init__(self, *, error: ScenarioError, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.error = error
        self.add_marker(MARKER)

    def runtest(self) -> None:
        raise self.error

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        if excinfo.value is self.error:
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)  # type: ignore[arg-type]

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"scenario file {self.path.name} (invalid)"


class ScenarioItem(pytest.Item):
    """One scenario on one backend, against the bridge under test."""

    def __init__(self, *, file: ScenarioFile, backend: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.file = file
        self.backend = backend
        self.add_marker(MARKER)
        self.add_marker(pytest.mark.acp)
        self.keywords[file.scenario.name] = True
        # The result line names the bridge that ran (a file named from outside the project runs
        # against the default bridge unless --acp-bridge says otherwise: say so).
        self.user_properties.append((BRIDGE_PROPERTY, options_of(self.config).bridge_ref))

    def runtest(self) -> None:
        from pytest_acp.adapter import unsupported_backend
        from pytest_acp.scenarios.run import run_scenario

        options = options_of(self.config)
        factory = options.bridge()
        reason = unsupported_backend(factory, self.backend, name=options.bridge_ref)
        if reason is not None:
            pytest.skip(reason)
        if options.mode == "live":
            from pytest_acp.fixtures import live_adapter
            from pytest_acp.live.run import run_scenario_live

            result = run_scenario_live(
                self.file,
                factory,
                live_adapter(options),
                backend=self.backend,  # type: ignore[arg-type]
                bridge=options.bridge_ref,
                model=options.live_model,
                api_key=options.api_key(),
                budget=options.live_budget,
            )
        elif is_realtime(factory):  # a bridge that starts the agent itself: real time
            from pytest_acp.harness.realtime import run_scenario_realtime

            result = run_scenario_realtime(
                self.file,
                factory,
                backend=self.backend,  # type: ignore[arg-type]
                bridge=options.bridge_ref,
            )
        else:
            result = run_scenario(self.file, factory, backend=self.backend, bridge=options.bridge_ref)  # type: ignore[arg-type]
        for late in result.late:
            self.warn(pytest.PytestWarning(f"scenario {self.file.scenario.name}: {late}"))
        if result.skipped:
            pytest.skip(result.skipped)
        if options.baseline is not None and result.failures:
            _, result.failures = options.baseline.split(result.failures)
        if result.passed:
            return
        report = result.report(replay=self.replay_command())
        html_dir = _setting(self.config, "acp_timeline_html")
        if html_dir:
            from acp_sim.timeline import write_html

            path = Path(html_dir) / f"{self.file.scenario.name}-{self.backend}.html"
            path.parent.mkdir(parents=True, exist_ok=True)
            write_html(result.timeline(), str(path))
            report += f"\n\nHTML timeline: {path}"
        raise ScenarioFailed(report)

    def replay_command(self) -> str:
        options = options_of(self.config)
        bridge = (
            "" if options.bridge_ref == DEFAULT_BRIDGE else f" --acp-bridge {shlex.quote(options.bridge_ref)}"
        )
        if options.baseline_ref:
            bridge += f" --acp-baseline {shlex.quote(options.baseline_ref)}"
        path = shlex.quote(str(self.path))
        if options.mode == "live":  # the simulator's ``acp-sim run`` would not replay a live run
            return f"pytest {shlex.quote(self.nodeid)} --acp-live{bridge}"
        return (
            f"pytest {shlex.quote(self.nodeid)}{bridge}   or: acp-sim run {path} --backend {self.backend}"
            + (f" --bridge {shlex.quote(options.bridge_ref)}" if bridge else "")
        )

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        if isinstance(excinfo.value, ScenarioFailed):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)  # type: ignore[arg-type]

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, 0, f"scenario {self.file.scenario.name} [{self.backend}]"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Write a failing state-machine example as a scenario file (and its HTML timeline) when asked."""
    report = yield
    error = call.excinfo.value if call.excinfo is not None else None
    if error is None or not is_property_violation(error) or getattr(error, "machine", None) is None:
        return report
    notes = []
    export_dir = _setting(item.config, "acp_export_failures")
    if export_dir:
        from pytest_acp.scenarios.export import export_failure

        bridge = _bridge_ref(item.config, error)
        path = export_failure(error, export_dir, bridge=bridge)
        flag = f" --acp-bridge {shlex.quote(bridge)}" if bridge != DEFAULT_BRIDGE else ""
        if bridge == UNKNOWN_BRIDGE:
            flag += " (the bridge it failed on)"
        notes.append(f"counterexample written to {path}\nreplay it: pytest {shlex.quote(str(path))}{flag}")
    html_dir = _setting(item.config, "acp_timeline_html")
    if html_dir:
        notes.append(f"HTML timeline: {_machine_timeline(error, Path(html_dir))}")
    if notes:
        text = "\n".join(notes)
        if isinstance(report.longrepr, str):
            report.longrepr += "\n\n" + text
        else:
            report.sections.append(("acp counterexample", text))
    return report


UNKNOWN_BRIDGE = "MODULE:FACTORY"
BRIDGE_PROPERTY = "acp_bridge"
WORDS = {
    "passed": ("PASSED", {"green": True}),
    "failed": ("FAILED", {"red": True}),
    "skipped": ("SKIPPED", {"yellow": True}),
}


def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config) -> Any:
    """A scenario item's verbose result line says which bridge ran: ``PASSED on module:factory``."""
    if report.when != "call" or hasattr(report, "wasxfail") or report.outcome not in WORDS:
        return None
    bridge = dict(report.user_properties).get(BRIDGE_PROPERTY)
    if bridge is None:
        return None
    word, markup = WORDS[report.outcome]
    letter = {"passed": ".", "failed": "F", "skipped": "s"}[report.outcome]
    return report.outcome, letter, (f"{word} on {bridge}", markup)


def _bridge_ref(config: pytest.Config, error: BaseException) -> str:
    """The ``--acp-bridge`` value that names the bridge the example failed on, if one does."""
    machine = error.machine  # type: ignore[attr-defined]
    context = getattr(machine, "context", None)
    factory = type(machine).bridge
    for ref in (context.bridge if context is not None else None, options_of(config).bridge_ref):
        if ref and _names(ref, factory):
            return str(ref)
    return UNKNOWN_BRIDGE


def _names(ref: str, factory: Any) -> bool:
    module_name, _, attr = ref.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError, ValueError):
        return False
    # catalog entries build a new factory per lookup: the same name is the same bridge
    same_name = (getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)) == (
        getattr(factory, "__module__", None),
        getattr(factory, "__qualname__", None),
    )
    return obj is factory or same_name


def _machine_timeline(error: BaseException, directory: Path) -> Path:
    from acp_sim.timeline import write_html
    from pytest_acp.report.timeline import build_timeline

    machine = error.machine  # type: ignore[attr-defined]
    harness = machine.h
    violations = list(getattr(error, "violations", []))
    seed = getattr(harness.agent.launcher, "seed", 0)
    bridge = machine.context.bridge if machine.context else type(machine).__name__
    timeline = build_timeline(
        harness.instances(),
        harness.log.entries,
        harness.capabilities,
        title=f"property suite: {violations[0].title if violations else 'failure'}",
        subtitle=f"{bridge} on {machine.backend}, agent seed {seed}",
        violations=violations,
        verdict="failed",
        notes=[str(v) for v in violations[:6]],
    )
    directory.mkdir(parents=True, exist_ok=True)
    prop = violations[0].property if violations else "failure"
    path = directory / f"property-suite-{prop}-{machine.backend}-seed{seed}.html"
    write_html(timeline, str(path))
    return path
