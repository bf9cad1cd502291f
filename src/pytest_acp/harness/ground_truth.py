"""Where the ground truth comes from: every agent instance a launcher started, on the log's clock.

The harness records what the client did and the bridge delivered (the delivery log); the agents'
traces are the other half the oracle judges. Each instance keeps its own clock (virtual time per
in-process agent, a monotonic origin per process), so ``GroundTruth`` notes each new instance's
offset onto the log's clock when it first sees it, and hands the oracle ``InstanceTrace``s.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pytest_acp.properties.truth import InstanceTrace


@dataclass
class GroundTruth:
    """Where the traces come from: every agent instance a launcher started, on the log's clock.

    Works with any launcher that keeps its instances in ``agents`` (each with ``trace`` and
    ``clock``), like ``acp_sim.agent.InProcessAgent``.
    """

    launcher: Any
    log_now: Callable[[], float]
    offsets: dict[int, float] = field(default_factory=dict)
    _scanned: dict[int, int] = field(default_factory=dict)

    def observe(self) -> None:
        """Note the clock offset of new instances (call from inside the event loop)."""
        for index, agent in enumerate(getattr(self.launcher, "agents", [])):
            if index not in self.offsets:
                self.offsets[index] = round(self.log_now() - agent.clock.now(), 6)

    def new_spawns(self) -> bool:
        """True when some agent recorded a ``spawn`` since the last call (scans new events only)."""
        found = False
        for index, agent in enumerate(getattr(self.launcher, "agents", [])):
            events = agent.trace.events
            start = self._scanned.get(index, 0)
            if any(e.kind == "spawn" for e in events[start:]):
                found = True
            self._scanned[index] = len(events)
        return found

    def sizes(self) -> tuple[int, ...]:
        """How many events each instance recorded so far (without reading them)."""
        return tuple(_size(agent.trace) for agent in getattr(self.launcher, "agents", []))

    def instances(self) -> list[InstanceTrace]:
        agents = getattr(self.launcher, "agents", [])
        return [
            InstanceTrace(getattr(agent, "name", f"agent#{i}"), agent.trace.events, self.offsets.get(i, 0.0))
            for i, agent in enumerate(agents)
        ]


def _size(trace: Any) -> int:
    size = getattr(trace, "size", None)  # ``acp_sim.trace.Trace`` counts events it has not made yet
    return size if isinstance(size, int) else len(trace.events)
