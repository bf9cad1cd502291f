"""The two models, correlated: what every property check reads, and where it reports.

``CheckContext`` holds the ground truth (``truth``), the client's log (``client``) and the
bridge's declared capabilities (``caps``), and ties them together without trusting the bridge:
each client turn's agent attempts (``attempts``: the agent turns whose prompt carried that turn's
token, across reconnects and relaunches) and, per agent session, the keys whose prompts reached it
(``served``; a key no prompt reached yet is matched to the one ``session/new`` its open can have
made, when nothing else could have). It is built once per ``oracle.check``; each property module
reads it and reports through ``add`` (or ``hung``, for a bridge call that never returned: a cause,
reported first). The helpers here are the judgements several properties share.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from pytest_acp.adapter import BridgeCapabilities, LogEntry, mcp_config
from pytest_acp.properties.agent_side import AgentSide
from pytest_acp.properties.client_log import Client
from pytest_acp.properties.truth import EPS, SESSION_KINDS, AgentTurn, Truth
from pytest_acp.properties.violation import Violation


class CheckContext:
    """One run's ground truth and client log, correlated, and the violations found so far."""

    def __init__(
        self,
        truth: Truth,
        client: Client,
        caps: BridgeCapabilities,
        final: bool,
        agent_side: AgentSide | None = None,
    ) -> None:
        self.truth = truth
        self.client = client
        self.caps = caps
        self.final = final
        self.out: list[Violation] = []
        self.hung: list[Violation] = []  # bridge calls that never returned, reported first
        self.waits: dict[str, list[tuple[float, float]]] | None = None
        """Per key, (sent, delivered) times of its matched updates: built once, by ``timeliness``."""
        # agent session -> the bridge keys whose prompts landed in it
        self.served: dict[tuple[int, str], set[str]] = defaultdict(set)
        self.attempts: dict[tuple[str, int], list[AgentTurn]] = {}
        for (key, n), turn in client.turns.items():
            found = truth.by_token.get(turn.token, []) if turn.token else []
            self.attempts[(key, n)] = found
            for agent_turn in found:
                self.served[(agent_turn.instance, agent_turn.session)].add(key)
        self._correlate_unprompted()
        self._end_killed_instances()
        self.agent_side = agent_side or AgentSide(truth, client.crashes)

    def _end_killed_instances(self) -> None:
        """An instance the harness killed is over from then, whatever its trace says: a SIGKILLed
        process writes nothing more, and no later instance need start to show it is gone."""
        starts = {
            i: round(inst.events[0].t + inst.offset, 6)
            for i, inst in enumerate(self.truth.instances)
            if inst.events
        }
        for t, instance in zip(self.client.crashes, self.client.crash_instances, strict=True):
            if instance is None:  # a log without the instance: the newest one started by then
                started = [i for i, start in starts.items() if start <= t + EPS]
                instance = max(started) if started else None
            if instance is not None and instance in starts:
                self.truth.ended.setdefault(instance, t)

    def _correlate_unprompted(self) -> None:
        """A key no prompt reached yet is matched to the one session/new the agent got for it while
        its open_session ran (same cwd, no other candidate, no pre-warm begun by then); ambiguous
        cases stay unmatched."""
        keyed = {k for keys in self.served.values() for k in keys}
        for ck in self.client.keys.values():
            if ck.key in keyed or ck.open_done is None or ck.open_failed:
                continue
            candidates = [
                ref
                for ref, session in self.truth.sessions.items()
                if session.via == "session/new"
                and session.cwd == ck.cwd
                and ck.opened_at - EPS <= session.requested <= ck.open_done + EPS
                and ref not in self.served
            ]
            rivals = [
                other
                for other in self.client.keys.values()
                if other is not ck
                and other.cwd == ck.cwd
                and other.opened_at <= ck.open_done + EPS
                and (other.open_done or float("inf")) >= ck.opened_at - EPS
            ]
            # A warm session made before the open ended may be the key's; one begun later cannot.
            warm = any(begun.seq < (ck.open_done_seq or 0) for begun, _ in self.client.prewarms)
            if len(candidates) == 1 and not rivals and not warm:
                self.served[candidates[0]].add(ck.key)

    def add(self, prop: str, message: str, **where: Any) -> None:
        self.out.append(Violation(prop, message, **where))

    def kept(self, entry: LogEntry) -> bool:
        """A delivery the per-turn checks judge: a kind the bridge declares, not session-level."""
        if entry.update_kind not in self.caps.kinds or entry.update_kind in SESSION_KINDS:
            return False
        return self.caps.empty_text or entry.text != ""

    def mcp_wanted(self, asked: tuple[str, ...]) -> tuple[str, ...]:
        """The MCP set a key's sessions must have: the bridge's own when it declares one."""
        own = self.caps.mcp_servers
        return mcp_config(own) if own is not None else asked

    def unreplaced_death(self, until: float) -> float | None:
        """When the agent last died of its own (crash, fatal fault, killed) by ``until``, if no new
        instance started after that by ``until``; None when it never died or was replaced."""
        deaths = [d for d in self.agent_side.deaths() if d <= until + EPS]
        if not deaths:
            return None
        death = deaths[-1]
        for i, start in self.agent_side.started.items():
            if death - EPS <= start <= until + EPS and self.truth.ended.get(i, float("inf")) > death + EPS:
                return None
        return death
