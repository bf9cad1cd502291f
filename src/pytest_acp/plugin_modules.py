"""Registering an entry-point plugin's companion plugin modules without pytest's entry-point scan.

A module named in ``pytest_plugins`` costs every run a scan of the entry points of every installed
distribution (pytest 9 looks for an entry point of that name first): a few ms each with 50
distributions, more in a bigger environment, in every project that has the package installed.
``PytestPluginManager.import_plugin`` without entry points does the rest alike (``-p no:NAME``
blocks it, its asserts are rewritten, it is registered under its module name). Called from the
``pytest_addhooks`` of the module that needs them: the moment pytest would read its
``pytest_plugins``, right after registering it; the historic hooks (``pytest_addoption``,
``pytest_configure``) still reach the modules registered then.
"""

from __future__ import annotations

from collections.abc import Iterable

import pytest


def import_plugins(pluginmanager: pytest.PytestPluginManager, names: Iterable[str]) -> None:
    for name in names:
        pluginmanager.import_plugin(name)
