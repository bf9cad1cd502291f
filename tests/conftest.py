"""Shared test set-up: virtual-time anyio backends and a guard against leaked child processes."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from acp_sim.clock import backend_options

# The stdio agent command, run from the same interpreter the tests run on.
AGENT_CMD = [sys.executable, "-m", "acp_sim", "agent"]
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(
    params=[
        pytest.param("asyncio", id="asyncio-virtual"),
        pytest.param("trio", id="trio-virtual"),
    ]
)
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, object]]:
    """Virtual time on both backends by default; tests that touch real processes override this."""
    return request.param, backend_options(request.param)


@pytest.fixture(autouse=True)
def private_state_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test writes into the real home: ``acp-sim agent`` without ``--state-dir`` keeps sessions in
    the user's state directory, so every test (and every process it starts) gets its own."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("xdg-state")))


@pytest.fixture(autouse=True)
def not_on_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pytest runs that tests start (pytester) print the same on CI as on a laptop: with ``CI``
    or ``BUILD_NUMBER`` set, pytest's short summary repeats each failure's whole message, so a test
    counting a report's lines would see them twice."""
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("BUILD_NUMBER", raising=False)


@pytest.fixture(autouse=True)
def no_leaked_children(acp_leak_guard: object) -> None:
    """Fail a test that leaves a child process of the test process running (the plugin's leak
    guard: it names each leaked process with its pid and command line, and kills it)."""
