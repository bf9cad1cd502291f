"""The run as it stood after each rule, kept so the oracle can judge it there later, only if needed.

A state machine used to run the oracle after every rule, on the run so far. A check during the run
judges only what the run so far decides, so whatever it finds the final check finds too
(``tests/test_oracle_kept.py``): an example that passes at its end passed after every rule. So the
machine judges once, at the end, and only when that finds something does it judge the rules' ends in
order, to name the first rule after which the run was already broken, with the very report a check
after that rule would have written.

A ``RuleEnd`` is small: the log's entries as they were (references; the harness later replaces an
entry only to stamp it), how many events each agent instance had recorded (those only grow) and how
many steps the report had. ``judge`` rebuilds each prefix from the run's own lists and feeds them to
one ``Models``, so judging every rule's end later costs what judging after every rule did.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from acp_sim.trace import TraceEvent
from pytest_acp.adapter import BridgeCapabilities, LogEntry
from pytest_acp.properties.models import Models
from pytest_acp.properties.oracle import check
from pytest_acp.properties.truth import InstanceTrace
from pytest_acp.properties.violation import Violation


@dataclass(frozen=True)
class RuleEnd:
    """The run after one rule: its log (entries as they were then), each instance's event count,
    and how many report steps there were."""

    log: tuple[LogEntry, ...]
    events: tuple[int, ...]
    steps: int = 0

    @property
    def size(self) -> tuple[int, ...]:
        return (len(self.log), *self.events)


@dataclass(frozen=True)
class Verdict:
    """What a check after ``end`` found, on the run as it stood then (``traces``, ``log``)."""

    end: RuleEnd
    violations: list[Violation]
    traces: list[InstanceTrace]
    log: list[LogEntry]


def judge(
    ends: Sequence[RuleEnd], traces: Sequence[InstanceTrace], capabilities: BridgeCapabilities
) -> Iterator[Verdict]:
    """The verdict after each rule end that logged or traced something new, in order.

    ``traces``: the run's instances now (their events include every end's). A rule end with nothing
    new since the previous one is skipped, as the check after every rule skipped it."""
    models = Models()
    events: list[list[TraceEvent]] = []
    log: list[LogEntry] = []
    previous: tuple[int, ...] | None = None
    for end in ends:
        if end.size == previous:
            continue
        previous = end.size
        for i, count in enumerate(end.events):
            if i == len(events):
                events.append([])
            events[i].extend(traces[i].events[len(events[i]) : count])
        for i, entry in enumerate(end.log[: len(log)]):
            if log[i] is not entry:
                log[i] = entry  # stamped since: as it was after this rule
        log.extend(end.log[len(log) :])
        # The same lists each time, grown: ``models`` reads only what is new.
        prefix = [InstanceTrace(t.name, events[i], t.offset) for i, t in enumerate(traces[: len(end.events)])]
        violations = check(prefix, log, capabilities, final=False, models=models)
        yield Verdict(end, violations, prefix, list(log))
