"""Agent faults on real time: drawn per example, given to each agent launch on its command line.

The virtual-time machine injects a fault into the in-process agent at a rule. A real-time bridge
starts ``acp-sim agent`` itself, so a fault cannot be handed over at run time; instead every
example draws a schedule of the same fault kinds (``pytest_acp.harness.machine.DEFAULT_FAULTS``) and gives
it to the agent command as ``--fault`` specs, each for one launch (0: the first agent the bridge
starts, 1: the one after the first crash) and triggered mid-turn (an action after the agent's Nth
``session/update``; a behaviour, which changes how one request is handled, armed by the client's
Nth request of its method), with the
fault's seconds scaled like the profile. The oracle learns of each fault from the agent's trace.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from acp_sim.faults import FAULT_ADAPTER, is_action
from pytest_acp.harness.machine import fault_spec

# (which kind, which launch, after how many matching agent messages)
FAULT_DRAW = st.tuples(st.integers(0, 63), st.integers(0, 1), st.integers(1, 12))
FAULT_DRAWS = st.lists(FAULT_DRAW, min_size=1, max_size=3)
# A behaviour fault is armed at one of the first this many requests of its method.
BEHAVIOUR_AFTER = 3


@dataclass(frozen=True)
class ScheduledFault:
    """One fault of an example's schedule: its ``--fault`` spec and how the step list says it."""

    spec: dict[str, Any]
    seconds: float
    """The longest delay it adds to an operation (a stall), for the run's wait limits."""

    def compact(self) -> str:
        """The ``acp-sim agent --fault`` form: ``kind:key=value,...`` (values as JSON)."""
        return compact_spec(self.spec)

    def describe(self) -> str:
        spec = self.spec
        if spec["direction"] == "send":
            trigger = f"after the agent's update #{spec['after']}"
        else:
            trigger = f"armed by the client's request #{spec['after']} of {spec.get('method', 'any method')}"
        shown = ("kind", "after", "direction", "method", "launch")
        extra = ", ".join(f"{k}={v}" for k, v in spec.items() if k not in shown)
        return (
            f"{spec['kind']}"
            + (f" ({extra})" if extra else "")
            + f" at agent launch {spec['launch']}, {trigger}"
        )


def compact_spec(spec: dict[str, Any]) -> str:
    """A fault (its dict form: ``kind`` and the fields that differ from the defaults) as a
    ``--fault`` spec; values are JSON (strings bare, as the parser reads them)."""
    rest = ",".join(
        f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in spec.items() if k != "kind"
    )
    return f"{spec['kind']}:{rest}" if rest else str(spec["kind"])


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
        spec["launch"] = launch % max(launches, 1)
        if is_action(FAULT_ADAPTER.validate_python(spec)):
            # Mid-turn: when the agent sends its Nth update.
            spec |= {"after": after, "direction": "send", "method": "session/update"}
        else:
            # A behaviour is armed by, and changes, requests of its own method (a prompt, a cancel,
            # a session/new): armed at the client's Nth such request (an example sends few).
            # (its own default direction and method say which requests count: stall counts updates).
            model = FAULT_ADAPTER.validate_python(spec)
            counted = after if model.direction == "send" else 1 + (after - 1) % BEHAVIOUR_AFTER
            spec |= {"after": counted, "direction": model.direction}
            if model.method is not None:
                spec["method"] = model.method
        out.append(ScheduledFault(spec, seconds))
    return out
