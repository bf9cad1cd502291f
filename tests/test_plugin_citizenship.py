"""The plugin as a guest in other people's test suites (pytester): installed but unused, it costs
nothing and prints nothing; disabled with ``-p no:acp``, it leaves the project working."""

from __future__ import annotations

import subprocess
import sys
import tomllib

import pytest

from .conftest import REPO

pytest_plugins = ["pytester"]

# What the plugin must not import until a test uses it (each costs hundreds of ms of CPU).
HEAVY = (
    "acp",
    "hypothesis",
    "pydantic",
    "acp_sim.orchestrator",
    "acp_sim.agent",
    "pytest_acp.harness.machine",
    "acp_sim.clock",  # the virtual clock brings the event loops
    "asyncio",
    "anyio",
)


def test_importing_the_plugin_pulls_in_nothing_heavy() -> None:
    # A fresh interpreter: this test process has imported everything already.
    code = (
        "import sys, pytest, pytest_acp.plugin, pytest_acp.collect, pytest_acp.looptime_guard\n"
        "import pytest_acp.hypothesis_guard, pytest_acp.async_tests\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


PLAIN_PROJECT = """
def test_plain():
    assert 1 + 1 == 2
"""


def test_a_run_that_uses_nothing_of_ours_prints_nothing_of_ours(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(PLAIN_PROJECT)
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)
    assert "acp:" not in result.stdout.str()


def test_the_header_line_appears_when_the_plugin_is_used(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_uses(acp_agent):
            assert acp_agent is not None
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["acp: sim agent, seed 0*"])
    result = pytester.runpytest("--acp-seed", "3")  # an option given: in the header
    result.stdout.fnmatch_lines(["acp: sim agent, seed 3*", "collected 1 item"])


def test_the_default_live_budget_in_the_help_is_the_models_default() -> None:
    from pytest_acp.config import DEFAULT_LIVE_BUDGET
    from pytest_acp.live.budget import LiveBudget

    assert LiveBudget().compact() == DEFAULT_LIVE_BUDGET


ANYIO_PROJECT = """
import anyio
import pytest


@pytest.fixture
def value(tmp_path):
    return 41


@pytest.mark.anyio
async def test_plain_anyio(value):
    await anyio.sleep(0)
    assert value + 1 == 42
"""


def _looptime_guard_args() -> list[str]:
    """``-p pytest_acp.looptime_guard`` when this environment was installed before the guard had its
    entry point (an editable install keeps the entry points of its install time)."""
    from importlib.metadata import entry_points

    names = {ep.name for ep in entry_points(group="pytest11")}
    return [] if "acp_looptime" in names else ["-p", "pytest_acp.looptime_guard"]


def test_a_project_that_disables_the_plugin_runs_its_anyio_tests(pytester: pytest.Pytester) -> None:
    # Without pytest-asyncio (``-p no:asyncio`` where it is installed), looptime's own plugin raised
    # in every fixture set-up, and only the acp plugin unregistered it.
    pytester.makepyfile(ANYIO_PROJECT)
    result = pytester.runpytest_subprocess("-p", "no:acp", "-p", "no:asyncio", *_looptime_guard_args())
    outcomes = result.parseoutcomes()
    assert set(outcomes) == {"passed"}
    assert "AttributeError" not in result.stdout.str()
    assert result.ret == 0


def test_the_looptime_guard_is_an_entry_point_of_its_own() -> None:
    # So that ``-p no:acp`` (which blocks the ``acp`` entry point) keeps it.
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    plugins = project["project"]["entry-points"]["pytest11"]
    assert plugins["acp_looptime"] == "pytest_acp.looptime_guard"
    assert plugins["acp"] == "pytest_acp.plugin"


# A test of the project's own that uses the harness: passes only if the fixtures and the test share
# one loop, and says which clock it ran on.
HARNESS_TEST = """
import anyio
import pytest


def clock_kind():
    import sniffio

    if sniffio.current_async_library() == "trio":
        import trio
        import trio.testing

        return "virtual" if isinstance(trio.lowlevel.current_clock(), trio.testing.MockClock) else "real"
    import asyncio

    import looptime

    loop = asyncio.get_running_loop()
    return "virtual" if isinstance(loop, looptime.LoopTimeEventLoop) and loop.looptime_on else "real"


{marker}
async def test_a_turn(acp_harness):
    key = acp_harness.open(cwd="/w")
    assert await acp_harness.wait_idle(60)
    acp_harness.prompt(key)
    assert await acp_harness.wait_idle(60)
    await acp_harness.stop()
    assert acp_harness.check(final=True) == []
    print("CLOCK", clock_kind())
"""


@pytest.mark.parametrize(("mode", "marker"), [("auto", ""), ("strict", "@pytest.mark.anyio")])
def test_the_harness_works_under_pytest_asyncio(pytester: pytest.Pytester, mode: str, marker: str) -> None:
    # pytest-asyncio's auto mode ran such a test on its own loop while the harness ran on anyio's:
    # the open never finished (60 real seconds), then a ClosedResourceError at teardown.
    pytest.importorskip("pytest_asyncio")
    pytester.makepyfile(HARNESS_TEST.format(marker=marker))
    pytester.makeini(f"[pytest]\nasyncio_mode = {mode}\nasyncio_default_fixture_loop_scope = function\n")
    result = pytester.runpytest_subprocess("-s", "-p", "asyncio", "--acp-backend", "asyncio")
    result.assert_outcomes(passed=1)
    assert result.stdout.str().count("CLOCK virtual") == 1, result.stdout.str()


def test_the_simulated_agents_fixtures_run_on_virtual_time_by_default(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(HARNESS_TEST.format(marker="@pytest.mark.anyio"))
    result = pytester.runpytest_subprocess("-s", "-p", "no:asyncio")
    backends = 2 if _trio_installed() else 1
    result.assert_outcomes(passed=backends)
    assert result.stdout.str().count("CLOCK virtual") == backends, result.stdout.str()


def test_a_project_that_chooses_its_anyio_backend_keeps_its_choice(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(HARNESS_TEST.format(marker="@pytest.mark.anyio"))
    pytester.makeconftest(
        """
        import pytest

        @pytest.fixture
        def anyio_backend():
            return "asyncio"
        """
    )
    result = pytester.runpytest_subprocess("-s", "-p", "no:asyncio")
    result.assert_outcomes(passed=1)
    assert "CLOCK real" in result.stdout.str()


def _trio_installed() -> bool:
    try:
        import trio  # noqa: F401
    except ImportError:
        return False
    return True


ASYNCIO_ONLY_BRIDGE = """
import asyncio
from contextlib import asynccontextmanager

from pytest_acp.reference import bridge as reference


@asynccontextmanager
async def bridge(agent):
    asyncio.get_running_loop()  # asyncio-only code: "no running event loop" on trio
    async with reference(agent) as adapter:
        yield adapter


bridge.backends = ("asyncio",)
"""


def test_a_bridge_that_declares_its_backends_is_skipped_on_the_others(pytester: pytest.Pytester) -> None:
    pytest.importorskip("trio")
    pytester.makepyfile(asyncio_only=ASYNCIO_ONLY_BRIDGE)
    pytester.makepyfile(
        test_own="""
        import pytest

        @pytest.mark.anyio
        async def test_own(acp_harness):
            key = acp_harness.open(cwd="/w")
            assert await acp_harness.wait_idle(60)
        """
    )
    result = pytester.runpytest_subprocess(
        "--acp-sim", "--acp-examples", "2", "--acp-bridge", "asyncio_only:bridge", "-rs", "-p", "no:asyncio"
    )
    result.assert_outcomes(passed=2, skipped=2)
    result.stdout.fnmatch_lines(
        ["SKIPPED*asyncio_only:bridge declares backends=asyncio: not run on trio"] * 2, consecutive=False
    )
    assert "ExceptionGroup" not in result.stdout.str()


def test_the_property_suite_items_are_counted_as_collected(pytester: pytest.Pytester) -> None:
    # They were added after collection without being counted: "1 item / 2 deselected / -1 selected".
    pytester.makepyfile(PLAIN_PROJECT)
    result = pytester.runpytest("--acp-sim", "--acp-backend", "asyncio", "--co", "-k", "nothing_matches")
    result.stdout.fnmatch_lines(["collected 2 items / 2 deselected / 0 selected"])
    result = pytester.runpytest("--acp-sim", "--acp-backend", "asyncio", "--co", "-q")
    result.stdout.fnmatch_lines(["2 tests collected*"])


NON_RECONNECTING = """
from contextlib import asynccontextmanager

from pytest_acp.adapter import capabilities_of
from pytest_acp.reference import bridge as reference


@asynccontextmanager
async def bridge(agent):
    async with reference(agent) as adapter:
        adapter.capabilities = capabilities_of(adapter).model_copy(update={"reconnects": False})
        yield adapter
"""


def test_each_property_item_ends_with_a_line_of_what_it_covered(pytester: pytest.Pytester) -> None:
    # A bridge declaring reconnects=False switched every crash rule off, and nothing said so.
    pytester.makepyfile(no_reconnect=NON_RECONNECTING)
    result = pytester.runpytest_subprocess(
        "--acp-sim", "--acp-examples", "3", "--acp-backend", "asyncio", "--acp-bridge", "no_reconnect:bridge"
    )
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "*- acp property suite -*",
            "acp_properties[[]asyncio[]]: * examples; rules run: *open_session *; faults injected: *"
            "; off: reconnects=False: crash rules off (crash_agent, disconnect faults)*",
        ]
    )
    (line,) = [line for line in result.stdout.lines if line.startswith("acp_properties[asyncio]: ")]
    assert "crash_agent " not in line.split("; off:")[0]
