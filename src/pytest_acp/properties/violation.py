"""A violation: one broken property, where and when, and the properties' names.

What every judgement in this room returns (the oracle, failed opens, isolation, the patterns) and
what reports, baselines and conformance verdicts read. The names are ``acp_sim.conformance``'s
(one list for the conformance report and the checks).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from acp_sim.conformance import PROPERTIES

# The properties' names are part of the conformance report's format (one list for both).
PROPERTY_NAMES = PROPERTIES


@dataclass(frozen=True)
class Violation:
    """One broken property: which, where (bridge key and turn, agent session), when, and what."""

    property: str
    message: str
    key: str | None = None
    turn: int | None = None
    t: float | None = None
    session: str | None = None
    cause: bool = False
    """A bridge call that never returned: reported before the violations it brings about."""

    @property
    def title(self) -> str:
        return f"{self.property} {PROPERTY_NAMES.get(self.property, '')}".strip()

    def __str__(self) -> str:
        where = []
        if self.key is not None:
            where.append(f"key {self.key}" + (f" turn {self.turn}" if self.turn is not None else ""))
        if self.session is not None:
            where.append(f"agent session {self.session[:8]}")
        if self.t is not None:
            where.append(f"t={self.t:.6f}")
        return f"{self.title}: {self.message}" + (f" [{', '.join(where)}]" if where else "")


def first_violations(violations: Iterable[Violation]) -> list[Violation]:
    """At most one violation per property, for a short report."""
    seen: set[str] = set()
    out = []
    for v in violations:
        if v.property not in seen:
            seen.add(v.property)
            out.append(v)
    return out
