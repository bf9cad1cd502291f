"""How long a real-time run waits, and what it says while it waits.

On virtual time the harness's limits (120 s per settling action, 900 s to drain) cost nothing. On
real time they are real seconds: one hung turn would stall a run for many minutes with no output.
So a real-time run derives its limits from what the agent can take (its profile: the longest
``session/new``, turn or restart, a slow caller's reading included) and from the timeouts the
bridge declares (``BridgeCapabilities.turn_timeout`` / ``idle_timeout``: it is owed that long to end
a turn itself). A user overrides any of them (``--acp-realtime-limits settle=5,drain=30``), and a
long run prints where it is (``pytest_acp.report.progress``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from acp_sim.profile import AgentProfile
from pytest_acp.adapter import BridgeCapabilities
from pytest_acp.harness.harness import WaitLimits

# A settling action may take this many times the agent's longest operation (a loaded 2-core
# machine, two extra processes and their pipes) ...
SETTLE_FACTOR = 3.0
# ... plus this many real seconds (a process start, a scheduler hiccup).
SETTLE_SLACK = 2.0
# The drain waits for every running turn at once: this many settles.
DRAIN_SETTLES = 2.0
# Real seconds an agent process may take to start (an interpreter and its imports on a loaded
# machine): the first opens wait for it, and so may the drain (a restart after a crash).
AGENT_START = 15.0
# Updates a turn sends beyond its chunks (usage_update, available commands and the like).
EXTRA_UPDATES = 2
OPTION = "--acp-realtime-limits"


def worst(latency: Any) -> float:
    """The longest a latency distribution draws (a lognormal without ``max``: median * e^(3 sigma))."""
    kind = getattr(latency, "kind", None)
    if kind == "fixed":
        return float(latency.seconds)
    if kind == "uniform":
        return float(latency.high)
    if kind == "lognormal":
        if latency.max is not None:
            return float(latency.max)
        return float(latency.median * math.exp(3 * latency.sigma))
    return 0.0


def longest_operation(profile: AgentProfile, *, slow_read_delay: float = 0.0) -> float:
    """The longest one thing the agent does in ``profile`` takes: a ``session/new``, a turn (read by a
    slow caller, ``slow_read_delay`` per update) or a restart (initialize, restore, ``session/new``)."""
    longest = 0.0
    for model in profile.models.values():
        new = max(worst(model.session_new_cold), worst(model.session_new_warm))
        turn = model.turn
        interval = worst(turn.chunk_interval)
        chunks = turn.chunk_count + turn.thought_chunks + turn.late_updates_after_cancel
        tools = sum(worst(tool.duration) for tool in turn.tool_calls)
        updates = chunks + 3 * len(turn.tool_calls) + (2 if turn.plan_entries else 0) + EXTRA_UPDATES
        took = worst(turn.first_chunk_delay) + chunks * interval + tools + updates * slow_read_delay
        restart = worst(profile.initialize_latency) + worst(profile.restore_latency) + new
        longest = max(longest, new, took, restart)
    return longest


@dataclass(frozen=True)
class RealTimeLimits:
    """Limits a user sets (real seconds); ``None`` means derived. ``--acp-realtime-limits`` syntax:
    ``settle=5,drain=30,stop=10`` (any subset)."""

    settle: float | None = None
    drain: float | None = None
    stop: float | None = None

    @classmethod
    def parse(cls, spec: str) -> RealTimeLimits:
        values: dict[str, float] = {}
        for part in filter(None, (p.strip() for p in spec.split(","))):
            name, sep, value = (s.strip() for s in part.partition("="))
            if not sep or name not in ("settle", "drain", "stop"):
                raise ValueError(f"{OPTION}: expected settle=S, drain=S or stop=S, got {part!r}")
            try:
                seconds = float(value)
            except ValueError:
                raise ValueError(f"{OPTION}: {name} must be seconds, got {value!r}") from None
            if not seconds > 0:
                raise ValueError(f"{OPTION}: {name} must be positive, got {value!r}")
            values[name] = seconds
        return cls(**values)

    def compact(self) -> str:
        pairs = (("settle", self.settle), ("drain", self.drain), ("stop", self.stop))
        return ",".join(f"{k}={v:g}" for k, v in pairs if v is not None)


def derive_limits(
    profile: AgentProfile,
    capabilities: BridgeCapabilities,
    *,
    slow_read_delay: float = 0.0,
    fault_seconds: float = 0.0,
    given: RealTimeLimits | None = None,
) -> WaitLimits:
    """The wait limits of a real-time run on ``profile`` against a bridge with ``capabilities``.

    ``fault_seconds``: the longest delay an injected fault adds (a stall). The drain owes a bridge
    that declares a turn or idle timeout twice that timeout plus one settle, so its own timer ends
    a hung turn before the harness gives up on it.
    """
    longest = longest_operation(profile, slow_read_delay=slow_read_delay) + fault_seconds
    settle = SETTLE_FACTOR * longest + SETTLE_SLACK + capabilities.delivery_slack
    why = f"derived: {SETTLE_FACTOR:g} x the agent's longest operation ({longest:.2f} s) + slack"
    limits = WaitLimits(
        settle=settle,
        start=settle + AGENT_START,
        drain=DRAIN_SETTLES * settle + AGENT_START,
        stop=settle,
        timeout_margin=settle,
        why=why,
    )
    return with_given(limits, given)


def with_given(limits: WaitLimits, given: RealTimeLimits | None) -> WaitLimits:
    """``limits`` with the ones the user set in their place."""
    if given is None or (given.settle, given.drain, given.stop) == (None, None, None):
        return limits
    return replace(
        limits,
        settle=given.settle or limits.settle,
        start=max(given.settle or 0.0, limits.start),
        drain=given.drain or limits.drain,
        stop=given.stop or limits.stop,
        why=f"set: {OPTION} {given.compact()}; the rest {limits.why}",
    )
