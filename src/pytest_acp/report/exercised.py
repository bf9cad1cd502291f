"""What a run exercised: how many of its actions took effect, and how often each hazard happened.

A pass means little if nothing happened: a bridge whose every ``open_session`` raises runs no turn
at all, and no property can fail on turns that never ran. ``count`` reads one example's ground
truth and delivery log (a pure function, like the oracle) and says

- how many opens the client asked for, and how many took effect (the bridge answered with a
  session);
- how many prompts the client sent, and how many took effect: reached an agent (the agent received
  the prompt's correlation token), or were cancelled by their caller before they did;
- how often each named hazard happened (``HAZARDS``): the moments a property is actually tested.

``Exercised`` adds up over a run's examples; ``below`` names the fractions under a threshold (the
plugin's ``--acp-min-effect``), and ``summary`` is the line a report shows.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pytest_acp.adapter import BridgeCapabilities, LogEntry
    from pytest_acp.properties.client_log import Client
    from pytest_acp.properties.models import Models
    from pytest_acp.properties.truth import InstanceTrace, Truth

DEFAULT_MIN_EFFECT = 0.5
"""The smallest fraction of a run's opens, and of its prompts, that must take effect."""

HAZARDS: dict[str, str] = {
    "crash_mid_turn": "the agent crashed while a turn ran",
    "cancel_reached_agent": "a cancel reached the agent while the turn ran",
    "warm_open": "an open was served by a session made before it was asked for",
    "concurrent_turns": "a turn ran while another session's turn ran",
    "slow_reader": "a turn's caller read slowly",
    "first_chunk_same_tick": "the agent wrote a turn's first chunk in the same tick as it read the prompt",
    "turn_completed": "the agent answered a turn",
    "usage_reported": "the agent reported a turn's token usage",
    "slow_reader_while_streaming": "a turn streamed while another key's caller read slowly",
    "timeout_armed_during_other_turn": "a key's next turn began while its previous turn's timer could fire",
    "turn_hung": "the bridge timed a turn out",
    "cancel_races_first_chunk": "a caller cancelled before its turn's first chunk reached it",
    "late_updates_after_cancel": "the agent sent updates after it read a cancel",
    "session_closed": "the bridge closed a session its caller closed",
    "phantom_resume_possible": "the agent restarted while a session that never had a turn was open",
}
"""Hazard name -> what happened (fault kinds are counted too, as ``fault:<kind>``)."""


@dataclass
class Exercised:
    """Counts of one example, or of a whole run (``add``)."""

    opens: int = 0
    opened: int = 0
    prompts: int = 0
    reached: int = 0
    examples: int = 0
    hazards: Counter[str] = field(default_factory=Counter)

    def add(self, other: Exercised) -> None:
        self.opens += other.opens
        self.opened += other.opened
        self.prompts += other.prompts
        self.reached += other.reached
        self.examples += other.examples
        self.hazards.update(other.hazards)

    def fractions(self) -> dict[str, float | None]:
        """``opens`` and ``prompts`` that took effect, as fractions (None: none asked for)."""
        return {
            "opens": self.opened / self.opens if self.opens else None,
            "prompts": self.reached / self.prompts if self.prompts else None,
        }

    @property
    def faults(self) -> int:
        """Faults injected (agent faults and crashes), every kind together."""
        return sum(n for name, n in self.hazards.items() if name.startswith("fault:"))

    def below(self, threshold: float) -> list[str]:
        """What fell short of ``threshold``: a fraction under it, or no prompt at all in the run."""
        out = [name for name, value in self.fractions().items() if value is not None and value < threshold]
        if threshold > 0 and self.prompts == 0 and self.examples > 0:
            out.append("no prompt")
        return out

    def summary(self) -> str:
        parts = [
            f"{self.opened} of {self.opens} opens took effect{_percent(self.opened, self.opens)}",
            f"{self.reached} of {self.prompts} prompts took effect" + _percent(self.reached, self.prompts),
        ]
        hazards = ", ".join(f"{name} {n}" for name, n in sorted(self.hazards.items()) if n)
        return "; ".join(parts) + (f"; hazards: {hazards}" if hazards else "; no hazard happened")


def _percent(part: int, whole: int) -> str:
    return f" ({100 * part / whole:.0f}%)" if whole else ""


def count(
    traces: Sequence[InstanceTrace],
    log: Sequence[LogEntry],
    capabilities: BridgeCapabilities | None = None,
    *,
    models: Models | None = None,
) -> Exercised:
    """What one example exercised (see the module docstring). ``models``, the oracle's models of
    this run kept between its checks, are brought up to date and read instead of reading the run
    from scratch (the same models, see ``properties.models``)."""
    # Imported here: the plugin's settings read DEFAULT_MIN_EFFECT at start-up, the oracle is not needed then.
    from pytest_acp.adapter import BridgeCapabilities
    from pytest_acp.properties.client_log import Client, ClientTurn
    from pytest_acp.properties.truth import EPS, Truth

    caps = capabilities or BridgeCapabilities()
    if models is not None:
        truth, client, _ = models.update(traces, log, caps)
    else:
        truth, client = Truth(traces, caps.kinds, caps.empty_text), Client(log)
    out = Exercised(examples=1)
    out.opens = len(client.keys)
    out.opened = sum(1 for ck in client.keys.values() if ck.open_done is not None and not ck.open_failed)
    out.prompts = len(client.turns)
    reached = {turn.ref: turn for turns in truth.by_token.values() for turn in turns}
    # A prompt its caller cancelled (or closed) before it went out did what the caller wanted; one
    # that failed because the agent died while it was on its way met the crash it was drawn with.
    deaths = sorted({*truth.ended.values(), *client.crashes})

    def died_during(turn: ClientTurn) -> bool:
        end = turn.end
        if end is None or end.error is None:
            return False
        return any(turn.started - EPS <= t <= end.t + EPS for t in deaths)

    out.reached = sum(
        1
        for turn in client.turns.values()
        if (turn.token and truth.by_token.get(turn.token)) or turn.cancels or turn.closes or died_during(turn)
    )
    hazards = out.hazards
    running = [
        (t.started, t.ended_at if t.ended_at is not None else float("inf")) for t in client.turns.values()
    ]
    hazards["crash_mid_turn"] = sum(
        1 for c in client.crashes if any(a - EPS <= c <= b + EPS for a, b in running)
    )
    for turn in client.turns.values():
        attempts = truth.by_token.get(turn.token or "", [])
        if not attempts or not turn.cancels:
            continue
        last = attempts[-1]
        session = truth.session_of(last)
        end = last.response_t if last.response_t is not None else float("inf")
        if session is not None and any(last.received - EPS <= c <= end + EPS for c in session.cancels):
            hazards["cancel_reached_agent"] += 1
    for ck in client.keys.values():
        first = ck.turns[0] if ck.turns else None
        attempts = truth.by_token.get(first.token or "", []) if first is not None else []
        session = truth.session_of(attempts[0]) if attempts else None
        if session is not None and session.via == "session/new" and session.requested < ck.opened_at - EPS:
            hazards["warm_open"] += 1
    spans = sorted(
        (t.received, t.response_t if t.response_t is not None else float("inf"), (t.instance, t.session))
        for t in reached.values()
    )
    hazards["concurrent_turns"] = sum(
        1
        for i, (a, b, s) in enumerate(spans)
        if any(o != s and a < b2 - EPS and a2 < b - EPS for j, (a2, b2, o) in enumerate(spans) if j != i)
    )
    hazards["slow_reader"] = sum(1 for t in client.turns.values() if t.slow)
    for entry in log:
        if entry.kind == "fault":
            hazards[f"fault:{(entry.detail or {}).get('kind', '?')}"] += 1
        elif entry.kind == "crash":  # the harness killed the agent: a fault it injected too
            hazards["fault:crash"] += 1
    _per_property_hazards(truth, client, caps, hazards)
    return out


def _per_property_hazards(truth: Truth, client: Client, caps: BridgeCapabilities, out: Counter[str]) -> None:
    """The moments each property is really tested (``acp_sim.conformance.HAZARDS`` maps them)."""
    from pytest_acp.properties.truth import EPS

    for turn in truth.turns.values():
        if turn.updates and abs(turn.updates[0].t - turn.received) <= EPS:
            out["first_chunk_same_tick"] += 1
        if turn.response_t is not None and turn.error is None:
            out["turn_completed"] += 1
        if turn.usage:
            out["usage_reported"] += 1
    for session in truth.sessions.values():
        for t, seq in zip(session.cancels, session.cancel_seqs, strict=False):
            running = [
                turn
                for turn in truth.turns.values()
                if (turn.instance, turn.session) == (session.instance, session.id)
                and turn.received <= t + EPS
                and (turn.response_t is None or turn.response_t >= t - EPS)
            ]
            # Late: sent after the agent read the cancel (by trace order: often in the same tick).
            if any(u.seq > seq for turn in running for u in turn.updates):
                out["late_updates_after_cancel"] += 1
    for turn in client.turns.values():
        if turn.cancels and (not turn.delivered or turn.cancels[0] <= turn.delivered[0].t + EPS):
            out["cancel_races_first_chunk"] += 1
        if turn.end is not None and turn.delivered and client.slow_during(turn.key, turn.started, turn.end.t):
            out["slow_reader_while_streaming"] += 1
        if turn.end is not None and turn.end.timed_out:
            out["turn_hung"] += 1
    for ck in client.keys.values():
        if ck.closed is not None:
            out["session_closed"] += 1
        if caps.turn_timeout is None:
            continue
        for before, after in zip(ck.turns, ck.turns[1:], strict=False):
            # The next turn began while the earlier turn's timer could still fire: a stale timer's chance.
            if after.started < before.started + caps.turn_timeout:
                out["timeout_armed_during_other_turn"] += 1
    later = {i for i in range(len(truth.instances)) if i + 1 < len(truth.instances)}
    for instance in later:
        ended = truth.ended.get(instance)
        if ended is not None and any(
            s.instance == instance and not s.prompts and s.closed is None and s.created <= ended
            for s in truth.sessions.values()
        ):
            out["phantom_resume_possible"] += 1
