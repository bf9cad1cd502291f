"""Issue 25's done-when: a sidecar bridge that lacks stop reasons, usage and session close, declared
as such, gets a real-time run in which its other defects (one planted per test) are each found, and
passes with zero violations without them (tests/sidecars/limited_sidecar.py)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from acp_sim.profile import with_overrides
from pytest_acp.harness.machine import PropertyViolation
from pytest_acp.harness.realtime import REALTIME_PROFILE, realtime_machine_for, run_realtime_machine
from pytest_acp.harness.realtime_limits import RealTimeLimits
from pytest_acp.harness.subprocess_bridge import (
    REAL_TIME_CAPABILITIES,
    Ack,
    Action,
    Delta,
    End,
    Observation,
    SubprocessBridge,
)
from pytest_acp.report.failure import RunContext

SIDECAR = Path(__file__).resolve().parent / "sidecars" / "limited_sidecar.py"
ACKS = {"ready": "start", "opened": "open", "stopping": "cancel", "forgotten": "close"}
# Turns of six chunks: a cancel lands mid-turn, and the agent sends one more chunk after it.
PROFILE = with_overrides(REALTIME_PROFILE, chunk_count=6, chunk_interval=0.15, late_updates_after_cancel=1)
# Small waits: every turn here takes well under a second (a hung one is found at the drain).
LIMITS = RealTimeLimits(settle=4, drain=6, stop=4)


class Limited(SubprocessBridge):
    """The sidecar's mapping, as its user would write it, with its limits declared."""

    command = (sys.executable, str(SIDECAR))
    agent_env = "ACP_AGENT_CMD"
    acks = frozenset(ACKS.values())
    capabilities = REAL_TIME_CAPABILITIES.model_copy(
        update={"stop_reasons": False, "usage": False, "session_close": False, "reconnects": False}
    )
    exit_grace = 2.0
    ack_timeout = 10.0

    def request(self, action: Action) -> dict[str, Any] | None:
        if action.kind == "open":
            return {"type": "open", "key": action.key, "cwd": action.cwd}
        if action.kind == "prompt":
            return {"type": "say", "key": action.key, "text": action.text}
        if action.kind == "cancel":
            return {"type": "stop", "key": action.key}
        if action.kind == "close":
            return {"type": "forget", "key": action.key}
        return None

    def observe(self, m: dict[str, Any]) -> Observation | None:
        kind, key = m.get("type"), m.get("key")
        if kind in ACKS:
            return Ack(ACKS[kind], key)  # type: ignore[arg-type]
        if kind == "failed":
            return Ack("open", key, error=m["message"])
        if kind == "text":
            return Delta(key, m["text"])  # type: ignore[arg-type]
        if kind == "done":
            return End(key)  # type: ignore[arg-type]  # text only: no stop reason, no usage
        if kind == "error":
            return End(key, error=m["message"])  # type: ignore[arg-type]
        return None


def run(*defects: str, seed: int = 0, examples: int = 3, **attributes: Any) -> None:
    machine = realtime_machine_for(
        Limited.factory(args=list(defects)), profile=PROFILE, min_effect=0, **attributes
    )
    context = RunContext(seed=seed, backend="asyncio", bridge=f"limited_sidecar {' '.join(defects)}")
    run_realtime_machine(machine, examples=examples, steps=12, seed=seed, context=context, limits=LIMITS)


def found(*defects: str, **attributes: Any) -> str:
    """The run's report; its rules narrowed to the ones that can show the defect (no agent faults, no
    slow readers), so a few examples find it."""
    with pytest.raises(PropertyViolation) as caught:
        run(*defects, examples=4, fault_kinds=(), slow_readers=False, **attributes)
    report = str(caught.value)
    for limit in ("stop_reasons=False", "usage=False", "session_close=False"):
        assert limit in report, report  # each declared limit listed, with its cost
    return report


def test_the_clean_sidecar_passes_with_its_limits_declared() -> None:
    """Every rule and agent fault kind the machine has for it, crashes included."""
    run(examples=3)


def test_a_chunk_passed_on_after_the_cancel_is_found() -> None:
    report = found("after-cancel", crashes=False, closes=False)
    assert report.startswith("P5"), report
    assert "after it received session/cancel" in report, report


def test_updates_routed_without_their_session_id_are_found() -> None:
    report = found("ignore-session-id", crashes=False, cancels=False)
    assert "P3 no cross-session bleed: delivered " in report, report


def test_replies_left_hanging_after_the_agent_died_are_found() -> None:
    report = found("hang-after-death", cancels=False, closes=False)
    assert report.startswith("P4"), report
    assert "a bridge that does not reconnect must fail the turn" in report, report
