"""Seeded bugs of the orchestration patterns: each the reference pattern with one hazard method
broken (``acp_sim.orchestrator.patterns``), and the property of ``pytest_acp.properties.patterns``
that catches it."""

from __future__ import annotations

from dataclasses import dataclass

import anyio

from acp_sim.orchestrator.patterns import Collected, FanOut, Race, WorktreeMerge
from acp_sim.orchestrator.session import Session, Update


class RaceForgetsLosers(Race):
    """Returns as soon as one session wins and never cancels the others: the losers keep
    streaming, spending tokens and holding their processes."""

    async def _stop_losers(self, losers: list[Session]) -> None:
        pass


class RaceLeaksLoserOutput(Race):
    """Lets the losers "finish their sentence" for a grace period before cancelling them, and
    forwards everything every session sends meanwhile: the caller sees losers' text after the
    winner's."""

    grace = 2.0

    def _deliver(self, session: Session, update: Update) -> None:
        winner, self.winner = self.winner, None
        try:
            super()._deliver(session, update)
        finally:
            self.winner = winner

    async def _stop_losers(self, losers: list[Session]) -> None:
        await anyio.sleep(self.grace)
        await super()._stop_losers(losers)


class FanOutDropsFailures(FanOut):
    """Collects only the sessions that succeeded: a failed exploration silently disappears."""

    def _record(self, result: Collected) -> None:
        if result.ok:
            super()._record(result)


class SilentMerge(WorktreeMerge):
    """Merges every branch git can merge: two sessions' edits to one file go in unreported."""

    def _find_conflicts(self, touched: dict[str, list[str]]) -> dict[str, list[str]]:
        return {}


@dataclass(frozen=True)
class PatternBug:
    name: str
    pattern: type
    catches: tuple[str, ...]

    @property
    def summary(self) -> str:
        return (self.pattern.__doc__ or "").split("\n\n")[0].replace("\n", " ").replace("    ", " ")


PATTERN_BUGS: dict[str, PatternBug] = {
    bug.name: bug
    for bug in (
        PatternBug("race_forgets_losers", RaceForgetsLosers, ("R2",)),
        PatternBug("race_leaks_loser_output", RaceLeaksLoserOutput, ("R1",)),
        PatternBug("fan_out_drops_failures", FanOutDropsFailures, ("F2", "F1")),
        PatternBug("silent_merge", SilentMerge, ("W1",)),
    )
}
