"""pytest-acp: the pytest plugin (entry point ``pytest11``)."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("acp", "ACP bridge testing (pytest-acp)")
    group.addoption(
        "--acp-seed",
        type=int,
        default=None,
        help="seed of the simulated agent and of the state machines (default: ini acp_seed, else 0)",
    )
    group.addoption(
        "--acp-backend",
        choices=("asyncio", "trio", "all"),
        default=None,
        help="run async tests on this anyio backend only (default: ini acp_backend, else all)",
    )
    parser.addini("acp_seed", "default seed of the simulated agent", default="0")
    parser.addini("acp_backend", "anyio backend(s) for async tests: asyncio, trio or all", default="all")


@pytest.fixture
def acp_seed(request: pytest.FixtureRequest) -> int:
    """The seed of this run: ``--acp-seed``, else the ``acp_seed`` ini value."""
    value = request.config.getoption("--acp-seed")
    return int(value if value is not None else request.config.getini("acp_seed"))


def pytest_configure(config: pytest.Config) -> None:
    # looptime (our asyncio virtual clock) ships a pytest plugin that only works with
    # pytest-asyncio and errors in every fixture set-up without it (looptime 0.9). We drive
    # looptime through anyio's backend options instead, so its plugin has nothing to do here.
    if not config.pluginmanager.has_plugin("asyncio"):
        plugin = config.pluginmanager.get_plugin("looptime_plugin")
        if plugin is not None:
            config.pluginmanager.unregister(plugin)


def _backend_of(item: pytest.Item) -> str | None:
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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``--acp-backend trio`` keeps only the trio variant of backend-parametrized tests."""
    only = config.getoption("--acp-backend") or config.getini("acp_backend")
    if only == "all":
        return
    keep, drop = [], []
    for item in items:
        backend = _backend_of(item)
        (drop if backend is not None and backend != only else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
