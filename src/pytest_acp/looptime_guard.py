"""Keeps looptime's own pytest plugin out of projects that do not run pytest-asyncio (entry point
``pytest11: acp_looptime``, registered apart from the ``acp`` plugin so that ``-p no:acp`` keeps it).

looptime, our asyncio virtual clock, ships a pytest plugin that only works with pytest-asyncio: its
``pytest_fixture_setup`` reads pytest-asyncio's plugin module and raises ``AttributeError`` in
every fixture set-up without it (looptime 0.7-0.9). We drive looptime through anyio's backend
options, never through that plugin, so where pytest-asyncio is absent the plugin has nothing to do
and is unregistered. With pytest-asyncio installed it is left alone (it works there, and a project
may use it). Importing this module costs nothing: it runs in every pytest run.

This entry point also loads ``pytest_acp.hypothesis_guard``, the same kind of guard for
Hypothesis's own plugin (which imports all of Hypothesis at the end of every run).
"""

from __future__ import annotations

import pytest

from pytest_acp.plugin_modules import import_plugins

LOOPTIME_PLUGIN = "looptime_plugin"
COMPANIONS = ("pytest_acp.hypothesis_guard",)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    # Not ``pytest_plugins``, which scans every distribution's entry points (pytest_acp.plugin_modules).
    import_plugins(pluginmanager, COMPANIONS)


def unregister_looptime_plugin(config: pytest.Config) -> None:
    """Unregister looptime's pytest plugin unless pytest-asyncio (which it needs) is active."""
    if config.pluginmanager.has_plugin("asyncio"):
        return
    plugin = config.pluginmanager.get_plugin(LOOPTIME_PLUGIN)
    if plugin is not None:
        config.pluginmanager.unregister(plugin)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    unregister_looptime_plugin(config)
