"""Agent faults on real time: drawn per example, given to each agent launch on its command line.

The virtual-time machine injects a fault into the in-process agent at a rule. A real-time bridge
starts ``acp-sim agent`` itself, so a fault cannot be handed over at run time; instead every
example draws a schedule of the same fault kinds (``pytest_acp.machine.DEFAULT_FAULTS``) and gives
it to the agent command as ``--fault`` specs, each for one launch (0: the first agent the bridge
starts, 1: the one after the first crash) and triggered mid-turn (after the agent's Nth
``session/update``, or for a fault aimed at a method, after its Nth answer to it), with the
fault's seconds scaled like the profile. The oracle learns of each fault from the agent's trace.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from pytest_acp.machine import fault_spec

# (which kind, which launch, after how many matching agent messages)
FAULT_DRAW = st.tuples(st.integers(0, 63), st.integers(0, 1), st.integers(1, 12))
FAULT_DRAWS = st.lists(FAULT_DRAW, min_size=1, max_size=3)


@dataclass(frozen=True)
class ScheduledFault:
    """One fault of an example's schedule: its ``--fault`` spec and how the step list says it."""

    spec: dict[str, Any]
    seconds: float
    """The longest delay it adds to an operation (a stall), for the run's wait limits."""

    def compact(self) -> str:
        """The ``acp-sim agent --fault`` form: ``kind:key=value,...`` (values as JSON)."""
        rest = ",".join(
            f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in self.spec.items() if k != "kind"
        )
        return f"{self.spec['kind']}:{rest}" if rest else str(self.spec["kind"])

    def describe(self) -> str:
        spec = self.spec
        if spec["method"] == "session/update":
            trigger = f"after the agent's update #{spec['after']}"
        else:
            trigger = f"after the agent's answer #{spec['after']} to {spec['method']}"
        shown = ("kind", "after", "direction", "method", "launch")
        extra = ", ".join(f"{k}={v}" for k, v in spec.items() if k not in shown)
        return (
            f"{spec['kind']}"
            + (f" ({extra})" if extra else "")
            + f" at agent launch {spec['launch']}, {trigger}"
        )


def schedule_faults(
    kinds: Sequence[str], draws: Sequence[tuple[int, int, int]], *, scale: float, launches: int
) -> list[ScheduledFault]:
    """The faults of one example: ``draws`` mapped onto ``kinds``, on launches ``0..launches-1``."""
    out = []
    for pick, launch, after in draws:
        if not kinds:
            break
        spec = fault_spec(kinds[pick % len(kinds)], None)
        seconds = 0.0
        if "seconds" in spec:
            spec["seconds"] = seconds = round(spec["seconds"] * scale, 6)
        # Mid-turn: counted on what the agent sends (its updates, or its answers to the method).
        spec |= {"after": after, "direction": "send", "launch": launch % max(launches, 1)}
        spec.setdefault("method", "session/update")
        out.append(ScheduledFault(spec, seconds))
    return out
