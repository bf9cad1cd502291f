"""The failure report: the violated property, the seed, the shrunk steps, the replay command, and a
per-session text timeline of what the agent sent next to what the bridge delivered.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from acp_sim.live.redact import Redactor
from pytest_acp.adapter import BridgeCapabilities, LogEntry
from pytest_acp.properties.oracle import correlate
from pytest_acp.properties.truth import InstanceTrace, Truth
from pytest_acp.properties.violation import Violation

# How much of a session's history the timeline shows around the violation (virtual seconds).
WINDOW_BEFORE = 30.0
WINDOW_AFTER = 10.0
MAX_LINES_PER_KEY = 60


@dataclass
class RunContext:
    """How a run was configured, for the report and the replay command."""

    seed: int
    backend: str
    bridge: str = "reference orchestrator"
    base_seed: int | None = None
    worker: str | None = None
    replay: str | None = None
    examples: int | None = None
    virtual_time: bool = True
    extra: dict[str, str] = field(default_factory=dict)

    def seed_line(self) -> str:
        if self.worker and self.base_seed is not None and self.base_seed != self.seed:
            return f"{self.seed} (xdist worker {self.worker}: derived from --acp-seed {self.base_seed})"
        return str(self.seed)


def format_failure(
    violations: Sequence[Violation],
    *,
    context: RunContext | None,
    steps: Sequence[str],
    traces: Sequence[InstanceTrace],
    log: Sequence[LogEntry],
    capabilities: BridgeCapabilities | None = None,
    headline: str | None = None,
    notes: str | None = None,
) -> str:
    """The report; ``headline`` replaces the "property violated" line and ``notes`` (a bridge's own
    exception: its frames) follow the run's context."""
    first = violations[0]
    lines = [headline or f"{first.title} violated: {first}"]
    for other in violations[1:6]:
        lines.append(f"  also {other}")
    if len(violations) > 6:
        lines.append(f"  ... and {len(violations) - 6} more")
    lines.append("")
    if context is not None:
        clock = "virtual time" if context.virtual_time else "real time"
        lines.append(f"bridge:  {context.bridge} ({context.backend}, {clock})")
        lines.append(f"seed:    {context.seed_line()}")
        if context.replay:
            lines.append(f"replay:  {context.replay}")
        lines.append("")
    lines.extend(limits_lines(capabilities))
    if notes:
        lines.extend([notes, ""])
    if steps:
        if context is not None and not context.virtual_time:
            lines.append("steps (as generated, not shrunk; real seconds since the run started):")
        else:
            lines.append("steps (shrunk; virtual seconds since the run started):")
        lines.extend(f"  {step}" for step in folded(steps))
        lines.append("")
    if any(entry.key is not None for entry in log):  # a timeline is per key: none, no timeline
        lines.append(timeline(traces, log, capabilities, around=first, related=violations))
    # The client's log is not redacted at the source (the tap's traces are): keys in this
    # environment, provider-shaped keys and secret-named values never reach a report.
    return Redactor.from_env().text("\n".join(lines))


FOLD_FROM = 3
"""Runs of this many identical steps or more are one line."""


def folded(steps: Sequence[str]) -> list[str]:
    """Steps with each run of the same step (time aside) said once, with how many and when the last.

    A failure that shows only at the end of an example (a bridge that raises while stopping) needs
    every step before it, and Hypothesis shrinks those to its simplest rule, so the listing would be
    dozens of identical ``advance 0.001 s`` lines; one line says the same."""
    out: list[str] = []
    i = 0
    while i < len(steps):
        text = _step_text(steps[i])
        j = i + 1
        while j < len(steps) and _step_text(steps[j]) == text:
            j += 1
        if j - i >= FOLD_FROM:
            out.append(f"{steps[i]}  ({j - i} times, the last at {steps[j - 1].split()[0]})")
        else:
            out.extend(steps[i:j])
        i = j
    return out


def _step_text(step: str) -> str:
    # A step is "<seconds>  <what>" (AcpStateMachine._step).
    return step.lstrip().partition("  ")[2]


def limits_lines(capabilities: BridgeCapabilities | None) -> list[str]:
    """The limits the bridge declares and what each costs its users (not judged, but not hidden)."""
    limits = capabilities.declared_limits() if capabilities is not None else []
    if not limits:
        return []
    lines = ["declared limits (what each costs the bridge's users):"]
    lines.extend(f"  {name}: {cost}" for name, cost in limits)
    return [*lines, ""]


def timeline(
    traces: Sequence[InstanceTrace],
    log: Sequence[LogEntry],
    capabilities: BridgeCapabilities | None = None,
    *,
    around: Violation | None = None,
    related: Sequence[Violation] = (),
    keys: Sequence[str] | None = None,
) -> str:
    """Per bridge key: the client's actions, what the agent received and sent for that key's agent
    sessions (``agent>`` / ``agent<``), and what the bridge delivered (``bridge``), in time order.

    Around a violation: its key, the keys whose prompts reached its agent session, and the keys of
    ``related`` violations about that agent session (where a chunk it lost went instead)."""
    caps = capabilities or BridgeCapabilities()
    served = correlate(traces, log, caps)
    center = around.t if around is not None and around.t is not None else None
    if keys is None:
        keys = list(dict.fromkeys(e.key for e in log if e.key is not None))
        if around is not None and around.key is not None:
            involved = {around.key} | {
                k for k, sessions in served.items() if around.session in {s for _, s in sessions}
            }
            if around.session is not None:
                involved |= {v.key for v in related if v.key is not None and v.session == around.session}
            keys = [k for k in keys if k in involved] or keys
    start = (center - WINDOW_BEFORE) if center is not None else float("-inf")
    stop = (center + WINDOW_AFTER) if center is not None else float("inf")
    if around is not None and around.key is not None and around.turn is not None:
        begun = [e.t for e in log if e.kind == "prompt" and e.key == around.key and e.turn == around.turn]
        if begun:
            start = min(start, begun[0])
    header = "timeline"
    if center is not None:
        header += f" around t={center:.6f}"
    out = [
        header + " (client: what the test asked; agent> / agent<: what the agent received / sent, from "
        "its trace; bridge: what the bridge delivered)"
    ]
    by_instance = {i: t for i, t in enumerate(traces)}
    for key in keys:
        sessions = served.get(key, set())
        if around is not None and around.key == key and around.session is not None:
            # The violation names an agent session no prompt of the key reached (a failed open's):
            # show it too.
            sessions = sessions | {
                (i, around.session)
                for i, trace in enumerate(traces)
                if any(e.session == around.session for e in trace.events)
            }
        rows: list[tuple[float, int, str]] = []
        for entry in log:
            if entry.key != key:
                continue
            who = (
                "bridge"
                if entry.kind in ("update", "end", "opened", "closed", "cwd_changed", "usage_total")
                else "client"
            )
            what = entry.describe()
            if entry.turn is not None and entry.kind in ("prompt", "update", "end"):
                what = f"t{entry.turn} {what}"
            if entry.kind == "prompt":
                what = f"t{entry.turn} prompt {(entry.detail or {}).get('token', '')}"
            rows.append((entry.t, 2, f"{who:<7} {what}"))
        for entry in log:
            if entry.kind in ("crash", "fault", "leaked_processes"):
                rows.append((entry.t, 0, f"{'client':<7} {entry.describe()}"))
            elif entry.kind == "unattributed":  # the bridge's output tied to no key: shown under each
                rows.append((entry.t, 2, f"{'bridge':<7} no key: {entry.text!r}"))
        for instance, sid in sorted(sessions):
            trace = by_instance.get(instance)
            if trace is None:
                continue
            for event in trace.events:
                if event.session != sid:
                    continue
                t = round(event.t + trace.offset, 6)
                text = _agent_event(event.kind, event.method, event.message, event.turn)
                if text is not None:
                    rows.append((t, 1, f"{'agent' + ('>' if event.kind == 'recv' else '<'):<7} {text}"))
        rows = [r for r in rows if start - 1e-9 <= r[0] <= stop + 1e-9]
        rows.sort(key=_by_cause(rows))
        names = ", ".join(f"agent#{i} {s[:8]}" for i, s in sorted(sessions)) or "no agent session"
        out.append(f"key {key} ({names}):")
        if len(rows) > MAX_LINES_PER_KEY:
            rows = _around(rows, center)
            out.append(f"  ... (showing {len(rows)} lines nearest t={center})")
        for t, _, text in rows:
            mark = (
                " <=="
                if center is not None and abs(t - center) < 1e-9 and around is not None and around.key == key
                else ""
            )
            out.append(f"  {t:12.6f}  {text}{mark}")
    return "\n".join(out)


def _by_cause(rows: list[tuple[float, int, str]]) -> Callable[[tuple[float, int, str]], tuple[float, int]]:
    """Sort rows by time, but a delivery never before the agent's send it passes on: two processes'
    clocks (and a send stamped after its write) may put the delivery a fraction of a millisecond
    earlier. Each row keeps its own time; only the order follows the cause."""
    sent = {text[len("agent<") :].strip(): t for t, _, text in rows if text.startswith("agent<")}

    def key(row: tuple[float, int, str]) -> tuple[float, int]:
        t, rank, text = row
        if text.startswith("bridge"):
            t = max(t, sent.get(text[len("bridge") :].strip(), t))
        return (t, rank)

    return key


def _around(rows: list[tuple[float, int, str]], center: float | None) -> list[tuple[float, int, str]]:
    if center is None:
        return rows[-MAX_LINES_PER_KEY:]
    index = min(range(len(rows)), key=lambda i: abs(rows[i][0] - center))
    lo = max(0, index - MAX_LINES_PER_KEY * 2 // 3)
    return rows[lo : lo + MAX_LINES_PER_KEY]


def _agent_event(kind: str, method: str | None, message: dict | None, turn: int | None) -> str | None:
    message = message or {}
    params = message.get("params") if isinstance(message.get("params"), dict) else {}
    if kind == "recv" and method:
        if method == "session/prompt":
            text = " ".join(str(b.get("text", "")) for b in params.get("prompt", []) if isinstance(b, dict))
            return f"t{turn} session/prompt {text[:40]!r}"
        return method
    if kind == "send" and method == "session/update":
        update = params.get("update", {}) if isinstance(params, dict) else {}
        content = update.get("content")
        text = content.get("text") if isinstance(content, dict) else None
        label = update.get("sessionUpdate")
        return f"t{turn} {label}" + (f" {_short(text)!r}" if isinstance(text, str) else "")
    if kind == "send" and "method" not in message and method:
        if "error" in message:
            error = message["error"] or {}
            return f"{method} -> error {error.get('code')} {error.get('message')!r}"
        result = message.get("result") or {}
        if method == "session/prompt":
            return f"t{turn} session/prompt -> stopReason={result.get('stopReason')}"
        if method == "session/new":
            return "session/new -> created"
        return f"{method} -> ok"
    if kind not in ("send", "recv", "bad_input", "store"):
        return kind
    return None


def _short(text: str, limit: int = 44) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def summarize(violations: Sequence[Violation]) -> str:
    counts: dict[str, int] = defaultdict(int)
    for v in violations:
        counts[v.property] += 1
    return ", ".join(f"{p} x{n}" for p, n in sorted(counts.items()))


__all__ = ["RunContext", "Truth", "format_failure", "summarize", "timeline"]
