"""What the property state machine runs against: the simulated agent's profile, and the agent
faults its rules may inject (``pytest_acp.harness.machine``; ``acp_sim.faults`` has them all)."""

from __future__ import annotations

from typing import Any

from acp_sim.profile import AgentProfile, load_profile_data

# The agent the machine runs against: turns of 3-30 s (six chunks 0.5-6 s apart), long enough for
# timers, cancels and crashes to land mid-turn; the first chunk in the same tick as the prompt.
MACHINE_PROFILE: AgentProfile = load_profile_data(
    {
        "name": "property-suite",
        "models": {
            "default": {
                "session_new_cold": {"kind": "lognormal", "median": 3.0, "sigma": 0.3, "max": 8.0},
                "session_new_warm": {"kind": "lognormal", "median": 3.0, "sigma": 0.3, "max": 8.0},
                "turn": {
                    "first_chunk_delay": 0,
                    "chunk_count": 6,
                    "chunk_interval": {"kind": "uniform", "low": 0.5, "high": 6.0},
                    "chunk_words": 2,
                    "late_updates_after_cancel": 1,
                },
            }
        },
    },
    source="pytest_acp.harness.machine_agent.MACHINE_PROFILE",
)

# Faults the default machine may inject: each is something a correct bridge copes with. Faults that
# break the agent itself beyond repair (one_turn_behind: the agent answers the wrong turn) are
# opt-in: add them to ``fault_kinds`` to see how a bridge reports them.
DEFAULT_FAULTS: tuple[str, ...] = (
    "stall",
    "malformed_line",
    "foreign_session_update",
    "error_reply",
    "ignore_cancel",
    "wrong_stop_reason",
    "updates_after_response",
    "empty_turn",
    "slow_session_new",
)
# Faults that need the bridge to reconnect, or to time out, to end the affected turn.
RECONNECT_FAULTS = ("disconnect",)
TIMEOUT_FAULTS = ("hang",)


def fault_spec(kind: str, session: int | None) -> dict[str, Any]:
    """The fault the machine injects for ``kind``, aimed at agent session index ``session``."""
    spec: dict[str, Any] = {"kind": kind}
    if kind in ("stall",):
        spec["seconds"] = 40.0
    elif kind == "slow_session_new":
        spec["seconds"] = 20.0
    elif kind in ("error_reply", "hang"):
        spec["method"] = "session/prompt"
    if session is not None and kind not in (
        "malformed_line",
        "foreign_session_update",
        "slow_session_new",
        "crash",
        "disconnect",
    ):
        spec["session"] = session
    return spec
