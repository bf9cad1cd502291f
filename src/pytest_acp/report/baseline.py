"""The baseline: a committed file of violations a bridge's authors accept for now.

A bridge with one systematic violation (every example ends in it) would otherwise hide everything
behind it: the run stops at the first finding. A baseline file names each accepted violation by
property and a regular expression searched in its message, with the reason::

    # acp-baseline.yaml (YAML, TOML or JSON)
    accept:
      - property: P6
        pattern: "never closed"
        why: "sessions are forgotten, not closed, until ticket #12"

``pytest --acp-sim --acp-baseline acp-baseline.yaml`` (or the ini key ``acp_baseline``): an
accepted violation does not fail the run, and the state machine keeps exploring past it, so the
run reports everything else; the terminal summary lists what was accepted, and every entry that
matched nothing in the run as stale (remove it: the baseline only shrinks). The same file serves
the in-process machine, the real-time machine and scenario files.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from acp_sim.datafile import describe_validation_error, read_data_file
from pytest_acp.harness.bridge_raised import BRIDGE
from pytest_acp.properties.violation import PROPERTY_NAMES, Violation
from pytest_acp.scenarios.run import EXPECTATION

PROPERTIES = (*PROPERTY_NAMES, EXPECTATION, BRIDGE)


class BaselineError(ValueError):
    """A baseline file that cannot be read or is invalid; the message names the file and field."""


class AcceptedViolation(BaseModel):
    """One accepted violation: its property, a regex searched in its message, and why."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    property: str
    pattern: str = Field(min_length=1)
    why: str = Field(min_length=1)

    @field_validator("property")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in PROPERTIES:
            raise ValueError(f"unknown property {value!r}; one of {', '.join(PROPERTIES)}")
        return value

    @field_validator("pattern")
    @classmethod
    def _regex(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {value!r} ({exc})") from None
        return value

    def matches(self, violation: Violation) -> bool:
        return violation.property == self.property and re.search(self.pattern, violation.message) is not None

    def describe(self) -> str:
        return f"{self.property} /{self.pattern}/ ({self.why})"


class BaselineFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    accept: list[AcceptedViolation] = Field(default_factory=list)


@dataclass
class Baseline:
    """A loaded baseline and what it accepted in this run (shared by every run of a session)."""

    entries: list[AcceptedViolation]
    source: str = "baseline"
    matched: dict[int, set[str]] = field(default_factory=dict)
    """Entry index -> the distinct violations it accepted in this run (the oracle judges a run
    again after every step, so the same violation comes back until the example ends)."""
    examples: list[str] = field(default_factory=list)
    """One accepted violation per entry, as first seen (for the summary)."""

    @classmethod
    def load(cls, path: str | Path) -> Baseline:
        path = Path(path)
        data = read_data_file(path, "baseline file", BaselineError)
        try:
            parsed = BaselineFile.model_validate(data)
        except ValidationError as exc:
            raise BaselineError(describe_validation_error(exc, "baseline file", str(path))) from None
        return cls(list(parsed.accept), source=str(path))

    def entry_for(self, violation: Violation) -> int | None:
        return next((i for i, e in enumerate(self.entries) if e.matches(violation)), None)

    def split(self, violations: Sequence[Violation]) -> tuple[list[Violation], list[Violation]]:
        """(accepted, the rest); counts what each entry accepted."""
        accepted, rest = [], []
        for violation in violations:
            index = self.entry_for(violation)
            if index is None:
                rest.append(violation)
                continue
            accepted.append(violation)
            if index not in self.matched:
                self.examples.append(str(violation))
            self.matched.setdefault(index, set()).add(str(violation))
        return accepted, rest

    def stale(self) -> list[AcceptedViolation]:
        """Entries that accepted nothing in this run: the violation no longer happens."""
        return [e for i, e in enumerate(self.entries) if i not in self.matched]

    def summary(self) -> list[str]:
        lines = [f"acp baseline {self.source}:"]
        for index, entry in enumerate(self.entries):
            count = len(self.matched.get(index, ()))
            if count:
                lines.append(f"  accepted {entry.describe()}: {count} distinct violation(s)")
        lines.extend(f"    e.g. {example}" for example in self.examples[:3])
        for entry in self.stale():
            lines.append(f"  stale: {entry.describe()} matched nothing in this run: remove it from the file")
        return lines
