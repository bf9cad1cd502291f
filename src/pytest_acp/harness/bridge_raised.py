"""A bridge's own exception: one that escaped the bridge (its task group, a callback, its start or
stop) rather than being handed to a caller as a failed action.

Such an exception is a finding of its own, never a crash of the suite: the harness runs the bridge
in a task of its own (``Harness._host``) and records the exception as a ``BridgeFailure``; the
state machine and the scenario runner report it like a violation (``BRIDGE``), headed "the bridge
raised KeyError: '...' in its task (reader.py:42)" and showing only the bridge's own frames, not
ours, anyio's, Hypothesis' or pytest's.
"""

from __future__ import annotations

import linecache
import os
import sysconfig
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import CodeType
from typing import Literal

from pytest_acp.adapter import BridgeCapabilities, LogEntry
from pytest_acp.properties.truth import InstanceTrace
from pytest_acp.properties.violation import Violation
from pytest_acp.report.failure import RunContext, _agent_event, format_failure

BRIDGE = "bridge"
"""The ``property`` of a ``Violation`` that stands for an exception the bridge raised."""

Phase = Literal["start", "task", "stop"]
_WHERE: dict[str, str] = {"start": "while starting", "task": "in its task", "stop": "while stopping"}

# Frames from these top-level packages are the machinery around the bridge, never the bridge's own.
NOT_THE_BRIDGE = frozenset(
    {
        "pytest_acp",
        "acp_sim",
        "anyio",
        "sniffio",
        "trio",
        "outcome",
        "looptime",
        "hypothesis",
        "_hypothesis_ftz_detector",
        "pytest",
        "_pytest",
        "pluggy",
        "exceptiongroup",
    }
)
MAX_FRAMES = 12
_STDLIB = tuple({os.path.realpath(sysconfig.get_paths()[k]) + os.sep for k in ("stdlib", "platstdlib")})


@dataclass(frozen=True)
class Frame:
    path: str
    line: int
    function: str
    source: str

    def where(self) -> str:
        return f"{self.path}:{self.line}"


@dataclass
class BridgeFailure:
    """An exception that escaped the bridge, when (run seconds) and in which phase."""

    phase: Phase
    exception: BaseException
    t: float
    frames: list[Frame] = field(default_factory=list)
    others: int = 0
    """More exceptions raised together with this one (an exception group's other leaves)."""
    in_task: bool = False
    """Raised by a task of the bridge's (it reached us through a task group), not by the code that
    starts or stops the bridge."""

    @classmethod
    def of(cls, phase: Phase, exc: BaseException, t: float, *, host: CodeType | None = None) -> BridgeFailure:
        """``exc`` as caught by the function whose code is ``host``: an exception whose traceback
        does not pass through it was raised by one of the bridge's tasks."""
        leaves = leaf_exceptions(exc)
        first = leaves[0] if leaves else exc
        codes = {frame.f_code for frame, _ in traceback.walk_tb(first.__traceback__)}
        in_task = phase == "task" or (host is not None and host not in codes)
        return cls(phase, first, t, bridge_frames(first), max(0, len(leaves) - 1), in_task)

    @property
    def described(self) -> str:
        text = str(self.exception)
        name = type(self.exception).__name__
        return f"{name}: {text}" if text else name

    def headline(self) -> str:
        when = [_WHERE["task"]] if self.in_task else []
        if self.phase != "task":
            when.append(_WHERE[self.phase])
        where = f" ({self.frames[-1].where()})" if self.frames else ""
        also = f" (and {self.others} more exception(s) with it)" if self.others else ""
        return f"the bridge raised {self.described} {' '.join(when)}{where}{also}"

    def violation(self) -> Violation:
        return Violation(BRIDGE, self.headline(), t=self.t)

    def frames_text(self) -> str:
        if not self.frames:
            return "the bridge's frames: none (the exception was raised outside the bridge's own code)"
        lines = ["the bridge's frames (most recent call last):"]
        for frame in self.frames[-MAX_FRAMES:]:
            lines.append(f"  {frame.where()} in {frame.function}")
            if frame.source:
                lines.append(f"      {frame.source}")
        return "\n".join(lines)


class BridgeRaised(Exception):
    """Raised by the harness API (``start``, an action, the ``running`` context) once the bridge
    raised an exception of its own: the harness cannot go on driving a bridge that is gone."""

    def __init__(self, failure: BridgeFailure) -> None:
        super().__init__(f"{failure.headline()}\n{failure.frames_text()}")
        self.failure = failure


def leaf_exceptions(exc: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups, in order; cancellations left out."""
    if isinstance(exc, BaseExceptionGroup):
        out: list[BaseException] = []
        for inner in exc.exceptions:
            out.extend(leaf_exceptions(inner))
        return out
    return [] if _is_cancellation(exc) else [exc]


def _is_cancellation(exc: BaseException) -> bool:
    # asyncio's CancelledError and trio's Cancelled, without importing trio.
    name = type(exc).__name__
    return name in ("CancelledError", "Cancelled") and type(exc).__module__.split(".")[0] in (
        "asyncio",
        "trio",
        "concurrent",
    )


def bridge_frames(exc: BaseException) -> list[Frame]:
    """The frames of ``exc``'s traceback that are the bridge's code (not ours, a library's we run
    it with, or the standard library's)."""
    out = []
    for frame, line in traceback.walk_tb(exc.__traceback__):
        path = frame.f_code.co_filename
        if str(frame.f_globals.get("__name__", "")).split(".")[0] in NOT_THE_BRIDGE or _stdlib(path):
            continue
        source = linecache.getline(path, line).strip()
        out.append(Frame(_shown(path), line, frame.f_code.co_name, source))
    return out


def _stdlib(path: str) -> bool:
    real = os.path.realpath(path)
    return real.startswith(_STDLIB) and "site-packages" not in real


def _shown(path: str) -> str:
    try:
        relative = os.path.relpath(path)
    except ValueError:  # another drive (Windows)
        return path
    return path if relative.startswith("..") else relative


def bridge_report(
    failure: BridgeFailure,
    *,
    context: RunContext | None,
    steps: Sequence[str],
    traces: Sequence[InstanceTrace],
    log: Sequence[LogEntry],
    capabilities: BridgeCapabilities | None = None,
    also: Sequence[Violation] = (),
) -> str:
    """The failure report of a bridge's own exception: the headline, the run, the bridge's frames,
    the (shrunk) steps and the timeline around the moment it raised."""
    violation = failure.violation()
    recent = agent_before(traces, failure.t)
    notes = failure.frames_text() + ("\n\n" + recent if recent else "")
    text = format_failure(
        [violation, *also],
        context=context,
        steps=steps,
        traces=traces,
        log=log,
        capabilities=capabilities,
        headline=failure.headline(),
        notes=notes,
    )
    return text.rstrip("\n")


# What the agent sent just before the bridge raised, whatever the session: what a bridge's reader
# chokes on is often a message for no session of its own, which no key's timeline shows.
RECENT_SECONDS = 1.0
RECENT_LINES = 6


def agent_before(traces: Sequence[InstanceTrace], t: float) -> str:
    rows = []
    for index, trace in enumerate(traces):
        for event in trace.events:
            at = round(event.t + trace.offset, 6)
            if not t - RECENT_SECONDS - 1e-9 <= at <= t + 1e-9 or event.kind not in ("send", "fault"):
                continue
            text = _agent_event(event.kind, event.method, event.message, event.turn)
            if event.kind == "fault":
                text = f"fault {(event.detail or {}).get('kind', '')}".strip()
            if text is None:
                continue
            session = f" (session {event.session[:8]})" if event.session else ""
            arrow = "<" if event.kind == "send" else " "
            rows.append((at, f"  {at:12.6f}  agent#{index}{arrow} {text}{session}"))
    if not rows:
        return ""
    rows.sort(key=lambda r: r[0])
    head = f"what the agent sent in the {RECENT_SECONDS:g} s before (any session):"
    return "\n".join([head, *(line for _, line in rows[-RECENT_LINES:])])
