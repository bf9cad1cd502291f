"""Keeps Hypothesis's own pytest plugin from importing all of Hypothesis at the end of a run that
never used it (about 0.2 s of CPU in every pytest run of an environment where Hypothesis, one of
our dependencies, is installed). Loaded with ``pytest_acp.looptime_guard`` (the entry point that
``-p no:acp`` keeps); ``-p no:pytest_acp.hypothesis_guard`` turns it off.

Hypothesis's plugin is meant to import nothing of Hypothesis unless a test does, but its
``pytest_terminal_summary`` (Hypothesis 6.170) imports ``hypothesis.internal.observability`` in
every run to list the observation files this process wrote. That hook prints nothing and does
nothing but the import when Hypothesis was never imported here (so nothing was observed),
``--hypothesis-show-statistics`` is off and no test report carries failing examples (reports from
pytest-xdist's workers carry them too). Exactly then, once the session's reports are in, its plugin
is unregistered, so the summary (a later hook call) skips it. Anything unexpected (another module,
missing names, a hook that would run after the session) leaves the plugin alone.
"""

from __future__ import annotations

import sys
from types import ModuleType

import pytest

HYPOTHESIS_PLUGIN_MODULE = "_hypothesis_pytestplugin"
# The hooks of Hypothesis's plugin that all run before ``pytest_sessionfinish``: unregistering the
# plugin then drops only its terminal summary. A hook outside this set (a new version) stops us.
HOOKS_BEFORE_THE_END = frozenset(
    {
        "pytest_addoption",
        "pytest_configure",
        "pytest_report_header",
        "pytest_sessionstart",
        "pytest_ignore_collect",
        "pytest_collection_modifyitems",
        "pytest_runtest_call",
        "pytest_runtest_makereport",
    }
)
SUMMARY_HOOK = "pytest_terminal_summary"


def _hypothesis_plugin(config: pytest.Config) -> ModuleType | None:
    """Hypothesis's plugin module when it is registered here and looks as we know it, else None."""
    plugin = sys.modules.get(HYPOTHESIS_PLUGIN_MODULE)
    if plugin is None or not config.pluginmanager.is_registered(plugin):
        return None
    names = (getattr(plugin, "PRINT_STATISTICS_OPTION", None), getattr(plugin, "FAILING_EXAMPLES_KEY", None))
    if not all(isinstance(name, str) and name for name in names):
        return None
    hooks = {name for name in dir(plugin) if name.startswith("pytest_")}
    if SUMMARY_HOOK not in hooks or not hooks - {SUMMARY_HOOK} <= HOOKS_BEFORE_THE_END:
        return None
    return plugin


def idle_hypothesis_plugin(config: pytest.Config) -> ModuleType | None:
    """Hypothesis's plugin when its terminal summary would do nothing but import Hypothesis."""
    if "hypothesis" in sys.modules:  # Hypothesis ran here: it may have written observations
        return None
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    plugin = _hypothesis_plugin(config)
    if reporter is None or plugin is None:
        return None
    if config.getoption(plugin.PRINT_STATISTICS_OPTION, default=True):
        return None
    key = plugin.FAILING_EXAMPLES_KEY
    for reports in getattr(reporter, "stats", {}).values():
        for report in reports:
            if key in getattr(report, "__dict__", {}):
                return None
    return plugin


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    # trylast: after the other plugins' own session ends, next to the summary the terminal
    # reporter's wrapper calls once they are done (a call of its own: pluggy copies the hook's
    # implementations per call, so the unregistered plugin is not in it).
    plugin = idle_hypothesis_plugin(session.config)
    if plugin is not None:
        session.config.pluginmanager.unregister(plugin)
