"""The two models of one run kept between checks, so each check reads only what is new.

The oracle judges a run in progress after every rule of a state machine (as it runs, or later,
``pytest_acp.harness.rule_ends``); reading the whole trace and log again each time made judging
grow with the square of a run's length. ``Models`` keeps the
ground truth (``truth.Truth``), the agent's side of opening sessions (``agent_side.AgentSide``) and
the client's log (``client_log.Client``) and feeds them only new trace events and log entries.

It reads from scratch instead whenever what it is given is not what it read before plus new items:
another log or trace, a shorter one, an instance's clock offset moved, new events for an instance
older than one already read (the models keep instance order), an ``unsent`` event retracting a send
read by an earlier check, an entry replaced other than by the harness's stamps, or other
capabilities. So its models always equal models read from scratch (``rebuilds`` counts those reads).
"""

from __future__ import annotations

from collections.abc import Sequence

from pytest_acp.adapter import BridgeCapabilities, LogEntry
from pytest_acp.properties.agent_side import AgentSide
from pytest_acp.properties.client_log import Client
from pytest_acp.properties.truth import InstanceTrace, Truth

New = list[tuple[int, int, int, set[int]]]
"""Per instance with new events: (index, first new, end, the sends among them that were unsent)."""


class Models:
    """One run's models, brought up to date by ``update``; one per run (not shared between runs)."""

    def __init__(self) -> None:
        self.rebuilds = 0
        self.truth = Truth([], frozenset(), False)
        self.client = Client([])
        self.agent = AgentSide(self.truth, [])
        self._log: Sequence[LogEntry] | None = None
        self._read: list[tuple[Sequence[object], int, float]] = []  # per instance: events, read, offset
        self._caps: tuple[frozenset[str], bool] | None = None

    def update(
        self, traces: Sequence[InstanceTrace], log: Sequence[LogEntry], caps: BridgeCapabilities
    ) -> tuple[Truth, Client, AgentSide]:
        """The models of ``traces`` and ``log`` as they are now (equal to models read from scratch)."""
        new = self._new(traces) if log is self._log and (caps.kinds, caps.empty_text) == self._caps else None
        if new is None or not self.client.extend(log):
            self.rebuilds += 1
            self._read, self._log, self._caps = [], log, (caps.kinds, caps.empty_text)
            self.client = Client(log)
            self.truth = Truth([], caps.kinds, caps.empty_text)
            self.agent = AgentSide(self.truth, [])
            new = self._new(traces, fresh=True)
            assert new is not None  # nothing read yet: everything is new
        self._index(traces, new)
        return self.truth, self.client, self.agent

    def _new(self, traces: Sequence[InstanceTrace], *, fresh: bool = False) -> New | None:
        """What ``traces`` holds beyond what was read; None when it does not just extend it."""
        if len(traces) < len(self._read) and not fresh:
            return None
        newest = -1 if fresh else max((i for i, (_, read, _) in enumerate(self._read) if read), default=-1)
        out: New = []
        for i, instance in enumerate(traces):
            known = i < len(self._read) and not fresh
            events, read, offset = self._read[i] if known else (instance.events, 0, instance.offset)
            if events is not instance.events or offset != instance.offset or len(events) < read:
                return None
            if len(events) == read:
                continue
            if i < newest:
                return None  # an older instance spoke after a newer one was read: keep instance order
            unsent = {
                e.detail["seq"]
                for e in instance.events[read:]
                if e.kind == "unsent" and isinstance((e.detail or {}).get("seq"), int)
            }
            if read and any(seq < instance.events[read].seq for seq in unsent):
                return None  # it retracts a send an earlier check already counted
            out.append((i, read, len(events), unsent))
        return out

    def _index(self, traces: Sequence[InstanceTrace], new: New) -> None:
        ends = {i: end for i, _, end, _ in new}
        self._read = [
            (t.events, ends.get(i, self._read[i][1] if i < len(self._read) else 0), t.offset)
            for i, t in enumerate(traces)
        ]
        for i, start, end, unsent in new:
            self.truth.index(i, traces[i], start, end, unsent)
            self.agent.index(i, traces[i], start, end)
        self.truth.settle(traces)
        self.agent.settle(self.client.crashes)
