"""What a live run may spend: sessions, prompts, tokens and wall time (``--acp-live-budget``).

A live run talks to a real agent (and, with ``--acp-live-model real``, to the paid model API), so
the property suite and scenario files run under a cap. ``LiveBudget`` is the cap, parsed from a
compact string (``sessions=8,prompts=30,tokens=200000,seconds=120``); ``BudgetMeter`` is what has
been spent so far in one run. Once a cap is reached the state machine opens and prompts nothing
more, and examples that start after the time cap do not start the agent at all; the run then ends
with what it has judged, and the meter's ``summary`` says which cap stopped it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from acp_sim.datafile import describe_validation_error
from acp_sim.trace import TraceEvent


class LiveBudget(BaseModel):
    """Caps of one live run (every state-machine run, or one scenario file)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sessions: Annotated[int, Field(ge=1)] = 12
    """``session/new`` the client may ask for."""
    prompts: Annotated[int, Field(ge=1)] = 40
    """``session/prompt`` the client may send."""
    tokens: Annotated[int, Field(ge=1)] = 200_000
    """Tokens the agent may report (``usage.totalTokens`` of its prompt responses, summed)."""
    seconds: Annotated[float, Field(gt=0)] = 120.0
    """Wall seconds after which no example starts and no session or prompt is begun."""

    @classmethod
    def parse(cls, text: str, *, what: str = "--acp-live-budget") -> LiveBudget:
        """``sessions=8,prompts=30,tokens=100000,seconds=90`` (any subset; the rest default)."""
        fields: dict[str, Any] = {}
        for part in (p.strip() for p in text.split(",")):
            if not part:
                continue
            key, sep, value = part.partition("=")
            if not sep:
                raise ValueError(
                    f"{what}: expected key=value, got {part!r} (keys: {', '.join(cls.model_fields)})"
                )
            fields[key.strip()] = value.strip()
        try:
            return cls.model_validate(fields)
        except ValidationError as exc:
            problems = describe_validation_error(exc, what, repr(text))
            raise ValueError(f"{problems}\n  (keys: {', '.join(cls.model_fields)})") from None

    def compact(self) -> str:
        return (
            f"sessions={self.sessions},prompts={self.prompts},tokens={self.tokens},seconds={self.seconds:g}"
        )


def tokens_reported(events: Iterable[TraceEvent]) -> int:
    """``usage.totalTokens`` of every response the agent sent, summed (the tokens it says it spent)."""
    total = 0
    for event in events:
        if event.kind != "send" or event.message is None:
            continue
        result = event.message.get("result")
        usage = result.get("usage") if isinstance(result, dict) else None
        count = usage.get("totalTokens") if isinstance(usage, dict) else None
        if isinstance(count, int):
            total += count
    return total


@dataclass
class BudgetMeter:
    """What one live run has spent of its ``LiveBudget``: finished examples plus the running one."""

    budget: LiveBudget
    started: float = field(default_factory=time.monotonic)
    done: dict[str, int] = field(default_factory=lambda: {"sessions": 0, "prompts": 0, "tokens": 0})
    """What examples that ended have spent."""
    stopped_by: str | None = None
    """The first cap reached, for the summary."""
    _running: list[Any] = field(default_factory=list, repr=False)

    def watch(self, harness: Any) -> None:
        """Count what ``harness`` (a ``pytest_acp.harness.harness.Harness``) opens, prompts and is billed."""
        self._running.append(harness)

    def settle(self) -> None:
        """An example ended: fold what its harnesses spent into ``done``."""
        self.done = {"sessions": self.sessions, "prompts": self.prompts, "tokens": self.tokens}
        self._running.clear()

    @property
    def sessions(self) -> int:
        return self.done["sessions"] + sum(len(h.keys) for h in self._running)

    @property
    def prompts(self) -> int:
        return self.done["prompts"] + sum(h.prompts_sent for h in self._running)

    @property
    def tokens(self) -> int:
        return self.done["tokens"] + sum(
            tokens_reported(agent.trace.events)
            for h in self._running
            for agent in getattr(h.agent.launcher, "agents", [])
        )

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def _over(self, what: str, spent: float, cap: float) -> bool:
        if spent < cap:
            return False
        if self.stopped_by is None:
            self.stopped_by = what
        return True

    def out_of_time(self) -> bool:
        return self._over(f"wall time ({self.budget.seconds:g} s)", self.elapsed, self.budget.seconds)

    def _common(self) -> bool:
        return self.out_of_time() or self._over(
            f"tokens ({self.budget.tokens})", self.tokens, self.budget.tokens
        )

    def may_open(self) -> bool:
        return not self._common() and not self._over(
            f"sessions ({self.budget.sessions})", self.sessions, self.budget.sessions
        )

    def may_prompt(self, count: int = 1) -> bool:
        return not self._common() and not self._over(
            f"prompts ({self.budget.prompts})", self.prompts + count - 1, self.budget.prompts
        )

    def summary(self) -> str:
        spent = (
            f"{self.sessions}/{self.budget.sessions} sessions, {self.prompts}/{self.budget.prompts} prompts, "
            f"{self.tokens}/{self.budget.tokens} tokens, {self.elapsed:.1f}/{self.budget.seconds:g} s"
        )
        return spent + (f"; stopped by the {self.stopped_by} cap" if self.stopped_by else "")
