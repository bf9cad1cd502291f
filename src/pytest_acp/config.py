"""The plugin's settings: command-line options, their ini keys, and what they resolve to.

Every option is also an ini key (``[tool.pytest.ini_options]`` in ``pyproject.toml``); the command
line wins. ``AcpOptions.from_config`` is the one place that reads them.
"""

from __future__ import annotations

import functools
import importlib
import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pytest

from pytest_acp.report.exercised import DEFAULT_MIN_EFFECT

# Only what reading the options needs is imported here: pytest loads this module in every run of
# every project where the package is installed (the profile, adapter and budget models pull in
# pydantic, the SDK and the orchestrator, so they are imported when an option needs them).
if TYPE_CHECKING:
    from acp_sim.profile import AgentProfile
    from pytest_acp.adapter import AdapterFactory
    from pytest_acp.harness.realtime_limits import RealTimeLimits
    from pytest_acp.live.budget import LiveBudget
    from pytest_acp.report.baseline import Baseline

DEFAULT_BRIDGE = "pytest_acp.reference:bridge"
DEFAULT_EXAMPLES = 200
# Examples per live property-suite run unless --acp-examples says otherwise: each costs seconds
# of real Claude Code.
DEFAULT_LIVE_EXAMPLES = 3
# ``LiveBudget().compact()``, spelled out so that ``pytest --help`` needs no pydantic (a test
# keeps the two equal).
DEFAULT_LIVE_BUDGET = "sessions=12,prompts=40,tokens=200000,seconds=120"
API_KEY_ENV = "ANTHROPIC_API_KEY"
GROUP = "acp"
GROUP_DESCRIPTION = "ACP bridge testing (pytest-acp); every option is also an ini key"
"""Given wherever the group is asked for: the first ``getgroup`` names it, whichever module that is."""

# (option, ini key, help, extra addoption arguments)
_OPTIONS: list[tuple[str, str, str, dict[str, Any]]] = [
    (
        "--acp-sim",
        "acp_sim",
        "run the ACP property suite against the simulated agent (in-process, virtual time; the "
        "default agent for every acp fixture)",
        {"action": "store_true", "default": None},
    ),
    (
        "--acp-live",
        "acp_live",
        "use the real agent (Claude Code's ACP adapter, real time) instead of the simulator; tests "
        "marked acp_live run only with it",
        {"action": "store_true", "default": None},
    ),
    (
        "--acp-agent-cmd",
        "acp_agent_cmd",
        "the ACP agent command line (any ACP agent; default: the simulated agent over stdio, or the "
        "Claude Code adapter with --acp-live)",
        {"metavar": "CMD", "default": None},
    ),
    (
        "--acp-seed",
        "acp_seed",
        "seed of the simulated agent and of the state machines (default 0); each xdist worker "
        "derives its own from it",
        {"metavar": "N", "type": int, "default": None},
    ),
    (
        "--acp-profile",
        "acp_profile",
        "agent profile for the simulated agent: a file (.yaml, .toml, .json) or a built-in name",
        {"metavar": "FILE|NAME", "default": None},
    ),
    (
        "--acp-bridge",
        "acp_bridge",
        f"the bridge under test as module:factory (an adapter factory; default {DEFAULT_BRIDGE}, the "
        "reference orchestrator)",
        {"metavar": "MODULE:FACTORY", "default": None},
    ),
    (
        "--acp-examples",
        "acp_examples",
        f"Hypothesis examples per state-machine run and backend (default {DEFAULT_EXAMPLES})",
        {"metavar": "N", "type": int, "default": None},
    ),
    (
        "--acp-live-model",
        "acp_live_model",
        "the model behind the live agent: stub (default: the offline model stub on loopback, "
        "acp-sim model-stub) or real (the Anthropic API with ANTHROPIC_API_KEY; spends real tokens)",
        {"choices": ("stub", "real"), "default": None},
    ),
    (
        "--acp-live-budget",
        "acp_live_budget",
        "caps of each live run (property suite per backend, or scenario file), as "
        f"key=value,...; default {DEFAULT_LIVE_BUDGET}",
        {"metavar": "SPEC", "default": None},
    ),
    (
        "--acp-min-effect",
        "acp_min_effect",
        "the fraction of a property-suite run's opens, and of its prompts, that must take effect (the "
        "bridge opened the session; the prompt reached the agent) for a pass to count (default 0.5; 0 "
        "turns the check off)",
        {"metavar": "FRACTION", "type": float, "default": None},
    ),
    (
        "--acp-realtime-limits",
        "acp_realtime_limits",
        "how long a real-time run waits, in real seconds, as settle=S,drain=S,stop=S (any subset): "
        "for a settling action, for running turns at the end of an example, for closing and stopping "
        "(default: derived from the agent's profile and the bridge's declared timeouts)",
        {"metavar": "SPEC", "default": None},
    ),
    (
        "--acp-progress",
        "acp_progress",
        "print where a property-suite run is (example n of N, step, violations so far, the step) once "
        "it has run this many seconds, then every few seconds, on virtual time, real time and live "
        "alike (with -n: on stderr, from each worker); 0 turns it off (default 10)",
        {"metavar": "SECONDS", "type": float, "default": None},
    ),
    (
        "--acp-baseline",
        "acp_baseline",
        "a file of accepted violations (property, message pattern, why; YAML, TOML or JSON): they do "
        "not fail the run, the suite explores past them, and entries that match nothing are reported "
        "as stale (pytest_acp.report.baseline)",
        {"metavar": "FILE", "default": None},
    ),
    (
        "--acp-report",
        "acp_report",
        "write a conformance report into DIR (conformance.json, conformance.html, counterexamples/): "
        "every property judged in one run, with what the run exercised (pytest_acp.report.conformance)",
        {"metavar": "DIR", "default": None},
    ),
    (
        "--acp-backend",
        "acp_backend",
        "anyio backend(s) for async tests and the property suite: asyncio, trio or all (default all)",
        {"choices": ("asyncio", "trio", "all"), "default": None},
    ),
]

OPTION_KEYS = tuple(ini for _, ini, _, _ in _OPTIONS)


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup(GROUP, GROUP_DESCRIPTION)
    for option, ini, help_text, extra in _OPTIONS:
        group.addoption(option, dest=ini, help=help_text, **extra)
        kind = "bool" if extra.get("action") == "store_true" else "string"
        parser.addini(ini, f"{help_text} (ini form of {option})", type=kind, default=None)


def _get(config: pytest.Config, ini: str) -> Any:
    value = config.getoption(ini)
    if value is not None:
        return value
    value = config.getini(ini)
    return value if value not in ("", None, []) else None


def option_value(config: pytest.Config, ini: str) -> Any:
    """An option's value: the command line, else its ini key, else None."""
    return _get(config, ini)


def _int(config: pytest.Config, ini: str, default: int) -> int:
    value = _get(config, ini)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise pytest.UsageError(f"{ini} must be an integer, got {value!r}") from None


def _float(config: pytest.Config, ini: str, default: float) -> float:
    value = _get(config, ini)
    if value is None:
        return default
    try:
        return float(value)
    except ValueError:
        raise pytest.UsageError(f"{ini} must be a number, got {value!r}") from None


@dataclass(frozen=True)
class AcpOptions:
    """The resolved settings of one pytest run (one per xdist worker)."""

    mode: Literal["sim", "live"]
    suite: bool
    """Whether the property suite items run (``--acp-sim`` / ``--acp-live`` or their ini keys)."""
    base_seed: int
    seed: int
    worker: str | None
    profile_ref: str | None
    bridge_ref: str
    examples: int
    backend: str
    agent_cmd: str | None
    rootdir: str
    live_model: Literal["stub", "real"] = "stub"
    live_budget_spec: str = ""
    """``--acp-live-budget`` as given (checked by ``from_config``; ``live_budget`` is its model)."""
    examples_given: bool = False
    """Whether ``--acp-examples`` (or its ini key) was set (live runs default to fewer)."""
    baseline_ref: str | None = None
    report_dir: str | None = None
    """``--acp-report``: where the conformance report goes (relative to the rootdir)."""
    baseline: Baseline | None = None
    """The accepted violations (``--acp-baseline``), loaded once and shared by every run."""
    min_effect: float = DEFAULT_MIN_EFFECT
    """``--acp-min-effect``: see ``pytest_acp.report.exercised``."""
    realtime_limits_spec: str = ""
    """``--acp-realtime-limits`` as given (checked by ``from_config``; ``realtime_limits`` is its model)."""
    progress_given: float | None = None
    """``--acp-progress`` as given (None: not given; ``progress_after`` applies the default)."""

    @functools.cached_property
    def realtime_limits(self) -> RealTimeLimits:
        """Wait limits of real-time runs the user set; the rest are derived from the profile."""
        from pytest_acp.harness.realtime_limits import RealTimeLimits

        return RealTimeLimits.parse(self.realtime_limits_spec)

    @property
    def progress_after(self) -> float | None:
        """Real seconds after which a property-suite run prints its progress (None: never)."""
        if self.progress_given is None:
            from pytest_acp.report.progress import PROGRESS_AFTER

            return PROGRESS_AFTER
        return self.progress_given if self.progress_given > 0 else None

    @functools.cached_property
    def live_budget(self) -> LiveBudget:
        from pytest_acp.live.budget import LiveBudget

        return LiveBudget.parse(self.live_budget_spec)

    @property
    def live_examples(self) -> int:
        return self.examples if self.examples_given else DEFAULT_LIVE_EXAMPLES

    def api_key(self) -> str | None:
        """The real model's key (``--acp-live-model real``), from the environment; never stored."""
        return os.environ.get(API_KEY_ENV) if self.live_model == "real" else None

    @classmethod
    def from_config(cls, config: pytest.Config) -> AcpOptions:
        sim = bool(_get(config, "acp_sim"))
        live = bool(_get(config, "acp_live"))
        if sim and live:
            raise pytest.UsageError("--acp-sim and --acp-live exclude each other: pick one agent")
        base = _int(config, "acp_seed", 0)
        # xdist gives each worker's config a ``workerinput`` (the environment variable would leak
        # into an in-process pytester run started by a test running on a worker).
        workerinput = getattr(config, "workerinput", None)
        worker = workerinput.get("workerid") if isinstance(workerinput, dict) else None
        seed = base
        if worker:
            # Imported when used: acp_sim.clock brings the event-loop modules, which a run that uses
            # nothing of ours should not pay for.
            from acp_sim.clock import derive_seed

            seed = derive_seed(base, "xdist", worker) % 2**32
        bridge = _get(config, "acp_bridge") or DEFAULT_BRIDGE
        module_name, sep, attr = bridge.partition(":")
        if not sep or not module_name or not attr:
            # Imported only when used (the user's module may need the rootdir on sys.path first).
            raise pytest.UsageError(f"--acp-bridge must look like module:factory, got {bridge!r}")
        examples = _int(config, "acp_examples", DEFAULT_EXAMPLES)
        if examples < 1:
            raise pytest.UsageError(f"--acp-examples must be at least 1, got {examples}")
        model = _get(config, "acp_live_model") or "stub"
        if model not in ("stub", "real"):
            raise pytest.UsageError(f"--acp-live-model must be stub or real, got {model!r}")
        if live and model == "real" and not os.environ.get(API_KEY_ENV):
            raise pytest.UsageError(
                f"--acp-live-model real needs {API_KEY_ENV} in the environment (it spends real tokens; "
                "without it, --acp-live runs on the offline model stub)"
            )
        min_effect = _float(config, "acp_min_effect", DEFAULT_MIN_EFFECT)
        if not 0 <= min_effect <= 1:
            raise pytest.UsageError(f"--acp-min-effect must be a fraction from 0 to 1, got {min_effect}")
        budget = _get(config, "acp_live_budget") or ""
        if budget:  # checked now, so a bad spec is a usage error before anything runs
            from pytest_acp.live.budget import LiveBudget

            try:
                LiveBudget.parse(budget)
            except ValueError as exc:
                raise pytest.UsageError(str(exc)) from None
        limits = _get(config, "acp_realtime_limits") or ""
        if limits:
            from pytest_acp.harness.realtime_limits import RealTimeLimits

            try:
                RealTimeLimits.parse(limits)
            except ValueError as exc:
                raise pytest.UsageError(str(exc)) from None
        progress = _get(config, "acp_progress")
        try:
            progress_after = None if progress is None else float(progress)
        except ValueError:
            raise pytest.UsageError(f"--acp-progress must be seconds, got {progress!r}") from None
        baseline_ref = _get(config, "acp_baseline")
        baseline = None
        if baseline_ref is not None:
            from pytest_acp.report.baseline import Baseline, BaselineError

            path = Path(baseline_ref)
            if not path.is_absolute() and not path.exists():  # an ini key: relative to the rootdir
                path = config.rootpath / path
            try:
                baseline = Baseline.load(path)
            except BaselineError as exc:
                raise pytest.UsageError(f"--acp-baseline: {exc}") from None
        return cls(
            mode="live" if live else "sim",
            suite=sim or live,
            base_seed=base,
            seed=seed,
            worker=worker,
            profile_ref=_get(config, "acp_profile"),
            bridge_ref=bridge,
            examples=examples,
            backend=_get(config, "acp_backend") or "all",
            agent_cmd=_get(config, "acp_agent_cmd"),
            rootdir=str(config.rootpath),
            live_model=model,
            live_budget_spec=budget,
            examples_given=_get(config, "acp_examples") is not None,
            min_effect=min_effect,
            realtime_limits_spec=limits,
            progress_given=progress_after,
            baseline_ref=baseline_ref,
            report_dir=_report_dir(config),
            baseline=baseline,
        )

    @property
    def backends(self) -> list[str]:
        if self.backend != "all":
            return [self.backend]
        try:
            import trio  # noqa: F401
        except ImportError:  # trio is an optional extra
            return ["asyncio"]
        return ["asyncio", "trio"]

    def profile(self) -> AgentProfile | None:
        if self.profile_ref is None:
            return None
        from acp_sim.profile import load_profile

        try:
            return load_profile(self.profile_ref)
        except Exception as exc:  # ProfileError names the file, field and value
            raise pytest.UsageError(f"--acp-profile: {exc}") from None

    def bridge(self) -> AdapterFactory:
        return load_bridge(self.bridge_ref)

    def stdio_agent_cmd(self, state_dir: str | None = None) -> list[str]:
        """The simulated agent as a stdio command, with this run's seed and profile.

        ``state_dir``: its disk (a temporary one, so a test never writes into the user's own
        state directory, the agent's default)."""
        if self.agent_cmd:
            return shlex.split(self.agent_cmd)
        cmd = [sys.executable, "-m", "acp_sim", "agent", "--seed", str(self.seed)]
        if state_dir is not None:
            cmd += ["--state-dir", state_dir]
        if self.profile_ref:
            cmd += ["--profile", self.profile_ref]
        return cmd


def load_bridge(ref: str, *, option: str = "--acp-bridge") -> AdapterFactory:
    """Import ``module:factory`` (``module:object.attribute`` works too); errors name ``option``."""
    module_name, sep, attr = ref.partition(":")
    if not sep or not module_name or not attr:
        raise pytest.UsageError(f"{option} must look like module:factory, got {ref!r}")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise pytest.UsageError(f"{option} {ref}: cannot import {module_name!r}: {exc}") from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise pytest.UsageError(f"{option} {ref}: {module_name!r} has no attribute {attr!r}") from None
    if not callable(obj):
        raise pytest.UsageError(f"{option} {ref}: {attr!r} is not callable (an adapter factory)")
    return obj  # type: ignore[no-any-return]


def _report_dir(config: pytest.Config) -> str | None:
    given = _get(config, "acp_report")
    if given is None:
        return None
    path = Path(given)
    return str(path if path.is_absolute() else Path(config.invocation_params.dir) / path)


def replay_command(
    options: AcpOptions, nodeid: str, *, select: str | None = None, xdist: bool = False
) -> str:
    """The command that reruns one test exactly: same seed (the effective one), bridge, budget."""
    parts = ["pytest"]
    if select is not None:
        parts += ["-k", shlex.quote(select)]
    else:
        parts.append(shlex.quote(nodeid))
    if options.mode == "live":
        parts.append("--acp-live")
        if options.live_model != "stub":
            parts += ["--acp-live-model", options.live_model]
        if options.live_budget.compact() != DEFAULT_LIVE_BUDGET:
            parts += ["--acp-live-budget", options.live_budget.compact()]
    elif options.suite:
        parts.append("--acp-sim")
    parts += ["--acp-seed", str(options.seed)]
    if options.bridge_ref != DEFAULT_BRIDGE:
        parts += ["--acp-bridge", shlex.quote(options.bridge_ref)]
    if options.examples_given or options.examples != DEFAULT_EXAMPLES:
        parts += ["--acp-examples", str(options.examples)]
    if options.profile_ref:
        parts += ["--acp-profile", shlex.quote(options.profile_ref)]
    if options.min_effect != DEFAULT_MIN_EFFECT:
        parts += ["--acp-min-effect", f"{options.min_effect:g}"]
    if options.baseline_ref:
        parts += ["--acp-baseline", shlex.quote(options.baseline_ref)]
    if xdist:
        parts.append("-n0")  # one process: the seed above is used as it is, not derived again
    return " ".join(parts)
