"""Per-session simulation state: one object per session, holding everything the agent knows of it."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import anyio

from acp_sim.profile import ModelProfile


@dataclass(eq=False)
class Turn:
    number: int
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    chunks_sent: int = 0

    @property
    def is_cancelled(self) -> bool:
        return self.scope.cancel_called


@dataclass(eq=False)
class SimSession:
    id: str
    index: int
    cwd: str
    model_name: str
    model: ModelProfile
    rng: random.Random
    turns: int = 0
    current: Turn | None = None
    closed: bool = False
    history: list[tuple[str, str]] = field(default_factory=list)  # (role, text), replayed by session/load

    @property
    def is_phantom(self) -> bool:
        """A session that never had a turn; after a restart it does not exist (nothing on disk)."""
        return self.turns == 0

    def begin_turn(self) -> Turn:
        self.turns += 1
        self.current = Turn(self.turns)
        return self.current

    def end_turn(self, turn: Turn) -> None:
        if self.current is turn:
            self.current = None

    def cancel(self) -> bool:
        """Ask the running turn to stop; False when no turn is running."""
        if self.current is None:
            return False
        self.current.scope.cancel()
        return True
