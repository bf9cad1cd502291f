"""How the plugin's async fixtures meet a project's own async tests (a plugin module:
``pytest_acp.plugin`` loads it).

Virtual time by default: a test that uses the simulated agent's fixtures (``acp_harness``,
``acp_bridge``, ``acp_agent``, ``acp_agent_under_test``, ``acp_trace``) and leaves anyio's
``anyio_backend`` fixture as anyio ships it runs on the virtual clock, on every backend of
``--acp-backend`` (``acp_sim.clock.backend_options``): a 4 s ``session/new`` costs microseconds.
A test that sets ``anyio_backend`` itself (its own fixture, or ``parametrize``) keeps its choice;
one that asks for ``acp_agent_cmd`` (a real agent process) or runs ``--acp-live`` stays on real
time, since a virtual clock would jump while it waits on a real process's pipe.

pytest-asyncio: our async fixtures run on anyio's test runner. In pytest-asyncio's auto mode
(and for a test marked ``asyncio``) pytest-asyncio would run the test itself on its own loop,
where the fixtures' tasks never run: such a test, when it uses our async fixtures, is handed back
to anyio (the test and its fixtures then share one loop). In strict mode nothing changes: mark
the test ``@pytest.mark.anyio`` as any anyio test.
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from pytest_acp.fixtures import options_of

# Fixtures that run the simulated agent in process (virtual time is safe for them).
SIMULATED_FIXTURES = frozenset(
    {"acp_agent", "acp_agent_under_test", "acp_bridge", "acp_harness", "acp_trace"}
)
# Our async fixtures: they run where anyio runs the test.
ASYNC_FIXTURES = frozenset({"acp_bridge", "acp_harness", "acp_live_agent"})
# A test that asks for this itself starts a real process.
REAL_PROCESS_FIXTURE = "acp_agent_cmd"
ANYIO_PLUGIN = "anyio.pytest_plugin"


def _parametrized_names(definition: pytest.Function) -> set[str]:
    names: set[str] = set()
    for marker in definition.iter_markers("parametrize"):
        argnames = marker.args[0] if marker.args else marker.kwargs.get("argnames", "")
        if isinstance(argnames, str):
            names.update(name.strip() for name in argnames.split(","))
        else:
            names.update(argnames)
    return names


def _default_anyio_backend(metafunc: pytest.Metafunc) -> bool:
    """Whether ``anyio_backend`` is anyio's own fixture here (not the project's, not parametrized)."""
    if "anyio_backend" in _parametrized_names(metafunc.definition):
        return False
    # The last definition is the one this test gets (a conftest's overrides anyio's).
    fixturedefs = metafunc.definition._fixtureinfo.name2fixturedefs.get("anyio_backend", ())
    return bool(fixturedefs) and getattr(fixturedefs[-1].func, "__module__", None) == ANYIO_PLUGIN


@pytest.hookimpl(tryfirst=True)
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "anyio_backend" not in metafunc.fixturenames:
        return
    if SIMULATED_FIXTURES.isdisjoint(metafunc.fixturenames):
        return
    if REAL_PROCESS_FIXTURE in metafunc.definition._fixtureinfo.initialnames:
        return
    options = options_of(metafunc.config)
    if options.mode == "live" or not _default_anyio_backend(metafunc):
        return
    from acp_sim.clock import backend_options

    # As a mark, so pytest applies it the way it applies the test's own (and then leaves anyio's
    # parametrized fixture alone, as it does for a test that parametrizes it).
    metafunc.definition.add_marker(
        pytest.mark.parametrize(
            "anyio_backend",
            [(backend, backend_options(backend)) for backend in options.backends],  # type: ignore[arg-type]
            ids=[f"{backend}-virtual" for backend in options.backends],
        )
    )


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    if not config.pluginmanager.has_plugin("asyncio"):
        return
    for index, item in enumerate(items):
        if _claimed_by_pytest_asyncio(item):
            items[index] = _anyio_item(item)  # type: ignore[arg-type]


def _claimed_by_pytest_asyncio(item: pytest.Item) -> bool:
    """An async test using our async fixtures that pytest-asyncio would run on its own loop."""
    if not isinstance(item, pytest.Function) or type(item) is pytest.Function:
        return False  # pytest-asyncio's items are subclasses of Function
    if type(item).__module__.split(".")[0] != "pytest_asyncio":
        return False
    fixturenames = set(item.fixturenames)
    return not ASYNC_FIXTURES.isdisjoint(fixturenames) and "anyio_backend" in fixturenames


def _anyio_item(item: pytest.Function) -> pytest.Function:
    """The same test as a plain function item: anyio's ``pytest_pyfunc_call`` runs it (it has
    ``anyio_backend``) on the runner our fixtures ran on."""
    obj: Any = item.obj
    assert inspect.iscoroutinefunction(obj), item.nodeid
    plain = pytest.Function.from_parent(
        item.parent,  # type: ignore[arg-type]
        name=item.name,
        callspec=getattr(item, "callspec", None),
        callobj=obj,
        fixtureinfo=item._fixtureinfo,
        keywords=item.keywords,
        originalname=item.originalname,
    )
    # pytest-asyncio's ``asyncio`` marker (added in auto mode) no longer applies.
    plain.own_markers = [m for m in item.own_markers if m.name != "asyncio"]
    return plain
