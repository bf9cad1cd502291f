"""The one registry of sessions by agent id, and what happens to updates that name no session.

Routing an update is one dict lookup by the update's own ``sessionId`` (``SessionRegistry.routes``,
read directly by the orchestrator's hot path); the session then picks the turn (``Session.route``).
Everything else here is off the hot path:

- an id a session had before (closed, or rekeyed by a restore) is *retired*: its late updates are
  counted as ``closed``, never delivered to whoever holds that id later;
- an id nobody opened yet may be a session whose ``session/new`` answer is still on its way: its
  updates are parked (bounded) and adopted when the session is registered
  (``adopt_early_updates``);
- the rest is counted in ``Unrouted`` and kept for inspection.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from acp_sim.orchestrator.session import Session

# How many updates for not-yet-known session ids are parked for adoption (the rest only counted).
MAX_PARKED = 1000


@dataclass
class Unrouted:
    """Updates that matched no open session: counted and kept, never delivered elsewhere.

    ``unknown``: ids the orchestrator never opened (a misbehaving agent, or a session whose
    ``session/new`` answer is still on its way: those are adopted when it arrives and leave this
    list). ``closed``: sessions closed by the caller, or agent ids a session had before a reconnect.
    ``stale``: updates from an agent instance that is no longer the current one.
    """

    unknown: list[dict[str, Any]] = field(default_factory=list)
    closed: list[dict[str, Any]] = field(default_factory=list)
    stale: list[dict[str, Any]] = field(default_factory=list)
    malformed: list[Any] = field(default_factory=list)
    requests: list[tuple[str, Any]] = field(default_factory=list)
    """Agent requests (permission, fs, terminal) naming no open session: refused with an error."""

    @property
    def count(self) -> int:
        return len(self.unknown) + len(self.closed) + len(self.stale) + len(self.malformed)


class SessionRegistry:
    """Every live session by its current agent id (open and warm ones), and the closed ones."""

    def __init__(self) -> None:
        self.routes: dict[str, Session] = {}
        """Current agent id -> session: the only map of sessions (everything else is a view of it)."""
        self.closed: list[Session] = []
        self.unrouted = Unrouted()
        self._retired: set[str] = set()
        self._parked: dict[str, list[dict[str, Any]]] = {}
        self._parked_count = 0

    def register(self, session: Session) -> None:
        self.routes[session.id] = session
        self.adopt_early_updates(session)

    def adopt_early_updates(self, session: Session) -> None:
        """Hazard prevented (first updates of a session dropped): an agent may send updates for a new
        session (``available_commands_update``) right after the ``session/new`` answer, before the
        caller's task resumes and registers it. Those were parked by id; they are adopted now."""
        parked = self._parked.pop(session.id, None)
        if not parked:
            return
        self._parked_count -= len(parked)
        adopted = {id(p) for p in parked}
        self.unrouted.unknown = [p for p in self.unrouted.unknown if id(p) not in adopted]
        for params in parked:
            session.keep_out_of_turn(params["update"])

    def rekey(self, session: Session, new_id: str) -> None:
        """The agent gave ``session`` a new id (a phantom recreated after a restart): the old id is
        retired, the object the caller holds stays the same."""
        old = session.id
        if self.routes.get(old) is session:
            del self.routes[old]
        self._retired.add(old)
        session.id = new_id
        session.agent_ids.append(new_id)
        if session.closed:  # closed while it was being restored: closed at the agent next
            self._retired.add(new_id)
        else:
            self.register(session)

    def forget(self, session: Session) -> None:
        """Unregister a session (closed, or a warm one that died with the agent)."""
        session.closed = True
        if self.routes.get(session.id) is session:
            del self.routes[session.id]
        self._retired.add(session.id)
        self.closed.append(session)

    def unroutable(self, params: dict[str, Any]) -> None:
        """An update whose ``sessionId`` names no live session: counted, parked if it may be early."""
        session_id = params.get("sessionId")
        if isinstance(session_id, str) and session_id in self._retired:
            self.unrouted.closed.append(params)
            return
        self.unrouted.unknown.append(params)
        if isinstance(session_id, str) and self._parked_count < MAX_PARKED:
            self._parked.setdefault(session_id, []).append(params)
            self._parked_count += 1

    def live(self) -> list[Session]:
        return list(self.routes.values())
