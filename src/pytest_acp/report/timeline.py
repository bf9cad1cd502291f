"""A run's timeline: the delivery log and the agents' traces laid out per bridge session.

Builds the plain data of ``acp_sim.timeline`` (which renders it in the terminal or as HTML) from
what the harness recorded: the client's actions and the bridge's deliveries (the log, under the
client's session keys) and what every agent instance sent and received (its trace). Agent sessions
are put in the lane of the key whose prompts reached them (``oracle.correlate``, by prompt token);
sessions no key reached (warm ones, foreign ids) and agent-wide events go in the ``agent`` lane.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any, Literal

from acp_sim.timeline import AGENT_LANE, Event, Lane, Timeline
from pytest_acp.adapter import BridgeCapabilities, LogEntry
from pytest_acp.properties.oracle import correlate
from pytest_acp.properties.truth import InstanceTrace
from pytest_acp.properties.violation import Violation

CLIENT_KINDS = {
    "open",
    "prompt",
    "cancel",
    "close",
    "slow_consumer",
    "opened",
    "open_failed",
    "closed",
    "action_failed",
}


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


SHORT_KINDS = {
    "agent_message_chunk": "chunk",
    "agent_thought_chunk": "thought",
    "user_message_chunk": "user chunk",
}


def _kind_label(kind: str | None) -> str:
    return SHORT_KINDS.get(kind or "update", kind or "update")


def _update_label(update: dict[str, Any]) -> tuple[str, str | None]:
    kind = update.get("sessionUpdate")
    content = update.get("content")
    text = content.get("text") if isinstance(content, dict) else None
    if isinstance(text, str):
        return f"{_kind_label(kind)} {_short(text, 48)!r}", text
    return _kind_label(kind), None


def build_timeline(
    traces: Sequence[InstanceTrace],
    log: Sequence[LogEntry],
    capabilities: BridgeCapabilities | None = None,
    *,
    title: str,
    subtitle: str = "",
    violations: Sequence[Violation] = (),
    verdict: Literal["passed", "failed", "skipped"] | None = None,
    notes: Sequence[str] = (),
) -> Timeline:
    caps = capabilities or BridgeCapabilities()
    served = correlate(traces, log, caps)
    lane_of: dict[tuple[int, str], str] = {}
    by_sid: dict[str, str] = {}
    for key, refs in served.items():
        for instance, sid in sorted(refs):
            lane_of.setdefault((instance, sid), key)
            by_sid.setdefault(sid, key)
    keys = list(dict.fromkeys(e.key for e in log if e.key is not None))
    events: list[Event] = []

    def session_lane(instance: int, sid: str | None) -> str:
        if sid is None:
            return AGENT_LANE
        return lane_of.get((instance, sid)) or by_sid.get(sid) or AGENT_LANE

    # the agents' side
    origin: dict[str, str] = {}  # chunk text -> the lane of the session that sent it
    for i, trace in enumerate(traces):
        # session/new names its session only in the response: put the request in that lane too
        created = {
            ev.id: ev.session
            for ev in trace.events
            if ev.kind == "send" and ev.method == "session/new" and ev.id is not None and ev.session
        }
        if trace.events:
            events.append(
                Event(round(trace.offset, 6), AGENT_LANE, "agent", f"agent#{i} started ({trace.name})")
            )
        for ev in trace.events:
            t = round(ev.t + trace.offset, 6)
            message = ev.message or {}
            sid = ev.session or (
                created.get(ev.id) if ev.kind == "recv" and ev.method == "session/new" else None
            )
            lane = session_lane(i, sid)
            params = message.get("params") if isinstance(message.get("params"), dict) else {}
            if ev.kind == "send" and ev.method == "session/update" and "method" in message:
                label, text = _update_label(params.get("update", {}) if isinstance(params, dict) else {})
                if text:
                    origin.setdefault(text, lane)
                events.append(
                    Event(
                        t,
                        lane,
                        "sent",
                        label,
                        turn=ev.turn,
                        key=text or None,
                        detail=f"agent#{i} {ev.session or ''}",
                    )
                )
            elif ev.kind == "recv" and ev.method and "method" in message:
                if ev.method in ("initialize", "session/update"):
                    continue
                label = "> " + ev.method
                events.append(
                    Event(t, lane, "received", label, turn=ev.turn if ev.method == "session/prompt" else None)
                )
            elif ev.kind == "send" and ev.method and "method" not in message:
                if ev.method == "initialize":
                    continue
                if "error" in message:
                    error = message.get("error") or {}
                    events.append(
                        Event(
                            t,
                            lane,
                            "sent",
                            f"{ev.method} -> error {error.get('code')} {error.get('message')!r}",
                            turn=ev.turn,
                        )
                    )
                else:
                    result = message.get("result") or {}
                    what = f"stopReason={result.get('stopReason')}" if ev.method == "session/prompt" else "ok"
                    events.append(Event(t, lane, "sent", f"{ev.method} -> {what}", turn=ev.turn))
            elif ev.kind == "fault":
                detail = ev.detail or {}
                events.append(Event(t, lane, "fault", f"fault {detail.get('kind', '?')}", detail=_kv(detail)))
            elif ev.kind == "exit":
                detail = ev.detail or {}
                kind = "fault" if detail.get("reason") in ("crash", "disconnect") else "agent"
                events.append(Event(t, AGENT_LANE, kind, f"agent#{i} exit ({detail.get('reason', '?')})"))
            elif ev.kind in ("spawn", "reap", "mcp_failed", "mcp_crash", "orphan"):
                detail = ev.detail or {}
                kind = "fault" if ev.kind in ("mcp_failed", "mcp_crash", "orphan") else "agent"
                label = f"MCP {ev.kind} {detail.get('name', '')}".rstrip()
                events.append(Event(t, lane, kind, label, detail=_kv(detail)))
            elif ev.kind == "bad_input":
                events.append(Event(t, AGENT_LANE, "error", "agent got a line it could not parse"))

    # the client's and the bridge's side
    delivered: dict[str, set[str]] = defaultdict(set)
    for entry in log:
        key = entry.key
        if entry.kind == "update" and key is not None:
            text = entry.text
            flag = None
            if text and text in origin and origin[text] not in (key, AGENT_LANE):
                flag = "foreign"
            if text:
                delivered[key].add(text)
            label = _kind_label(entry.update_kind) + (f" {_short(text, 48)!r}" if text is not None else "")
            events.append(
                Event(entry.t, key, "delivered", label, turn=entry.turn, key=text or None, flag=flag)
            )  # type: ignore[arg-type]
        elif entry.kind == "end" and key is not None:
            if entry.timed_out:
                events.append(
                    Event(entry.t, key, "timeout", "timeout", turn=entry.turn, detail=entry.error or "")
                )
            elif entry.error is not None:
                events.append(
                    Event(entry.t, key, "error", f"failed: {_short(entry.error, 50)}", turn=entry.turn)
                )
            else:
                events.append(Event(entry.t, key, "end", f"end {entry.stop_reason}", turn=entry.turn))
        elif entry.kind in CLIENT_KINDS and key is not None:
            label = _client_label(entry)
            events.append(
                Event(
                    entry.t,
                    key,
                    "client",
                    _short(label, 70),
                    turn=entry.turn if entry.kind == "prompt" else None,
                )
            )
        elif entry.kind in ("crash", "fault"):
            # A crash's instance shows in the lane's own "exit (crash)" event.
            label = "crash" if entry.kind == "crash" else _short(entry.describe(), 70)
            events.append(Event(entry.t, AGENT_LANE, "fault", label))
        elif entry.kind in ("change_cwd", "cwd_changed", "prewarm", "prewarmed", "advance"):
            events.append(Event(entry.t, AGENT_LANE, "client", _short(entry.describe(), 70)))
        elif entry.kind == "leaked_processes":
            events.append(Event(entry.t, AGENT_LANE, "error", _short(entry.describe(), 70)))

    # sent chunks that never reached their session's caller
    marked = []
    for event in events:
        if (
            event.kind == "sent"
            and event.key
            and event.lane != AGENT_LANE
            and event.key not in delivered[event.lane]
        ):
            event = Event(
                event.t, event.lane, event.kind, event.label, event.turn, event.detail, "missing", event.key
            )
        marked.append(event)
    end = max((e.t for e in marked), default=0.0)
    for v in violations:
        lane = v.key if v.key in keys else AGENT_LANE
        marked.append(
            Event(v.t if v.t is not None else end, lane, "violation", v.title, turn=v.turn, detail=v.message)
        )

    lanes = [Lane(AGENT_LANE, "agent (launches, faults, pool)")]
    for key in keys:
        refs = served.get(key, set())
        names = ", ".join(f"agent#{i} {sid[:8]}" for i, sid in sorted(refs))
        lanes.append(Lane(key, f"{key}: {names}" if names else key))
    return Timeline(title, lanes, marked, subtitle=subtitle, verdict=verdict, notes=list(notes))


def _kv(detail: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in detail.items())


def _client_label(entry: LogEntry) -> str:
    detail = entry.detail or {}
    if entry.kind == "prompt":
        return f"prompt {detail.get('token', '')}"
    if entry.kind == "open":
        servers = detail.get("mcp_servers") or []
        extra = (f" mcp={len(servers)}" if servers else "") + (
            f" model={detail['model']}" if detail.get("model") else ""
        )
        return f"open cwd={detail.get('cwd')}{extra}"
    if entry.kind == "slow_consumer":
        return "reads slowly" if detail.get("on", True) else "reads normally"
    return entry.describe()
