"""Token accounting: what the agent reported, per session and in total, including warm-up cost.

The ledger holds one entry per *turn the agent answered* (its ``session/prompt`` response's
``usage``), keyed by the turn itself. It is never keyed by the agent's session id, which can change
across a reconnect, and nothing is ever re-added on a restore: so the totals equal, exactly, the sum
of the usage objects in the agent's prompt responses (the ground truth), however many reconnects
happened. A turn the agent never answered (crash, timeout) has no reported usage and adds nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

# The integer fields of ACP's ``Usage`` object (prompt response), in wire spelling.
USAGE_FIELDS = (
    "inputTokens",
    "outputTokens",
    "cachedReadTokens",
    "cachedWriteTokens",
    "thoughtTokens",
    "totalTokens",
)

Kind = Literal["turn", "warmup"]


def usage_counts(usage: Mapping[str, Any] | None) -> dict[str, int]:
    """The integer token counts of a wire ``usage`` object (unknown or non-integer fields ignored)."""
    if not usage:
        return {}
    return {
        key: value
        for key, value in usage.items()
        if key in USAGE_FIELDS and isinstance(value, int) and not isinstance(value, bool)
    }


def add_into(total: dict[str, int], counts: Mapping[str, int]) -> None:
    for key, value in counts.items():
        total[key] = total.get(key, 0) + value


def sum_counts(items: Iterable[Mapping[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for counts in items:
        add_into(total, counts)
    return total


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    session: str
    """The session's label (stable across reconnects)."""
    agent_session_id: str
    """The agent session id the turn ran under (for matching against the agent's trace)."""
    generation: int
    epoch: int
    """Which agent instance (0 = first launch, +1 per restart) answered."""
    kind: Kind
    counts: dict[str, int]


@dataclass
class TokenLedger:
    entries: list[LedgerEntry] = field(default_factory=list)

    def record(
        self,
        *,
        session: str,
        agent_session_id: str,
        generation: int,
        epoch: int,
        kind: Kind,
        usage: Mapping[str, Any] | None,
    ) -> dict[str, int]:
        """Append one answered turn's usage; returns the counts recorded.

        Recording each turn once is the caller's duty (``Orchestrator._account_turn``).
        """
        counts = usage_counts(usage)
        self.entries.append(LedgerEntry(session, agent_session_id, generation, epoch, kind, counts))
        return counts

    def total(self, kind: Kind | None = None) -> dict[str, int]:
        return sum_counts(e.counts for e in self.entries if kind is None or e.kind == kind)

    def for_session(self, session: str, kind: Kind | None = None) -> dict[str, int]:
        return sum_counts(
            e.counts for e in self.entries if e.session == session and (kind is None or e.kind == kind)
        )

    @property
    def total_tokens(self) -> int:
        return self.total().get("totalTokens", 0)

    @property
    def warmup_tokens(self) -> int:
        return self.total("warmup").get("totalTokens", 0)
