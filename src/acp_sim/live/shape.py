"""The shape of a run, for the drift check between the simulated agent and the real adapter.

A trace says exactly what happened; two runs of the same client script against two agents never
match byte for byte (ids, texts, timings, how many deltas the model sent). Their *shapes* must:
which update kinds a turn streams and in which order (a run of equal kinds counts once, an empty
``agent_message_chunk`` is its own kind), how each turn ends (stop reason; usage absent, all zero
or not; or the error), which session-level updates a session gets, what ``session/resume`` and
``session/load`` answer for a prompted session, a never-prompted one (a phantom) or an unknown id,
in the same process or after a restart, what ``session/close`` answers, and how many processes a
session's stdio MCP servers become. Each aspect is a set of signature strings; ``drift`` lists
what one run does that the other never does.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from acp_sim.trace import NEW, PROMPT, UPDATE, TraceEvent

ASPECTS = ("initialize", "turns", "session_updates", "restores", "closes", "mcp")
# Updates about the session rather than a turn: they may land in whichever turn is open.
SESSION_LEVEL = frozenset(
    {"available_commands_update", "current_mode_update", "config_option_update", "session_info_update"}
)
RESTORES = ("session/resume", "session/load")
CLOSE = "session/close"
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


@dataclass
class Shape:
    """Signature sets per aspect (see the module docstring); ``str()`` lists them."""

    aspects: dict[str, set[str]] = field(default_factory=lambda: {a: set() for a in ASPECTS})

    def __getitem__(self, aspect: str) -> set[str]:
        return self.aspects[aspect]

    def __str__(self) -> str:
        lines = []
        for aspect in ASPECTS:
            for signature in sorted(self.aspects[aspect]):
                lines.append(f"{aspect}: {signature}")
        return "\n".join(lines)


def drift(reference: Shape, candidate: Shape, aspects: Sequence[str] = ASPECTS) -> list[str]:
    """What ``candidate`` does that ``reference`` never does, one line per signature."""
    out = []
    for aspect in aspects:
        for signature in sorted(candidate[aspect] - reference[aspect]):
            out.append(f"{aspect}: {signature}")
    return out


def merge(shapes: Iterable[Shape]) -> Shape:
    merged = Shape()
    for shape in shapes:
        for aspect in ASPECTS:
            merged[aspect].update(shape[aspect])
    return merged


def _token(event: TraceEvent) -> str:
    kind = event.update_kind or "?"
    if kind.endswith("_chunk") and event.message is not None:
        content = event.message["params"]["update"].get("content")
        if isinstance(content, dict) and content.get("type") == "text" and content.get("text") == "":
            return f"{kind}:empty"
    return kind


def _collapse(tokens: Iterable[str]) -> list[str]:
    out: list[str] = []
    for token in tokens:
        if not out or out[-1] != token:
            out.append(token)
    return out


def _usage_class(usage: Any) -> str:
    if not isinstance(usage, dict):
        return "none"
    return "zero" if not any(v for v in usage.values() if isinstance(v, (int, float))) else "nonzero"


def _error(message: dict[str, Any], ids: Iterable[str] = ()) -> str:
    error = message.get("error") if isinstance(message.get("error"), dict) else {}
    text = _UUID.sub("<id>", str(error.get("message", "")))
    data = error.get("data")
    if isinstance(data, dict):
        parts = []
        for key in sorted(data):
            value = data[key]
            shown = (
                "<id>" if isinstance(value, str) and _UUID.fullmatch(value) else _UUID.sub("<id>", str(value))
            )
            parts.append(f"{key}={shown}")
        text += " {" + ", ".join(parts) + "}"
    return f"error {error.get('code')} {text}"


def _requests(events: Sequence[TraceEvent]) -> dict[Any, TraceEvent]:
    return {
        e.id: e
        for e in events
        if e.kind == "recv" and e.method is not None and e.message and "method" in e.message
    }


def trace_shape(instances: Sequence[Sequence[TraceEvent]]) -> Shape:
    """The shape of a run: the traces of its agent instances, in launch order."""
    shape = Shape()
    prompted: set[str] = set()  # sessions that had a turn answered, in any earlier or this instance
    created: set[str] = set()
    closed: set[str] = set()
    for events in instances:
        _instance(events, shape, prompted, created, closed)
    return shape


def _instance(
    events: Sequence[TraceEvent], shape: Shape, prompted: set[str], created: set[str], closed: set[str]
) -> None:
    here: set[str] = set()  # sessions this agent process created or restored
    requests = _requests(events)
    responses = {
        e.id: e
        for e in events
        if e.kind == "send" and e.method is not None and e.message and "method" not in e.message
    }
    observed_processes = any(e.kind in ("spawn", "session_process") for e in events)
    spawned: dict[str, int] = {}
    for e in events:
        if e.kind == "spawn" and isinstance(e.session or (e.detail or {}).get("session"), str):
            sid = e.session or str((e.detail or {})["session"])
            spawned[sid] = spawned.get(sid, 0) + 1
    session_kinds: dict[str, set[str]] = {}
    for e in events:
        if (
            e.kind == "send"
            and e.method == UPDATE
            and e.session is not None
            and e.update_kind in SESSION_LEVEL
        ):
            session_kinds.setdefault(e.session, set()).add(e.update_kind or "?")
    for req_id, request in requests.items():
        method = request.method
        response = responses.get(req_id)
        message = response.message if response is not None else None
        params = (request.message or {}).get("params") or {}
        if method == "initialize" and message is not None:
            shape["initialize"].add(_initialize(message))
        elif method == NEW and message is not None and isinstance(message.get("result"), dict):
            sid = message["result"].get("sessionId")
            if isinstance(sid, str):
                here.add(sid)
                created.add(sid)
                _mcp(shape, params, sid, spawned, observed_processes)
        elif method in RESTORES:
            sid = params.get("sessionId")
            if not isinstance(sid, str):
                continue
            kind = "prompted" if sid in prompted else "phantom" if sid in created else "unknown"
            where = "" if kind == "unknown" else " same-process" if sid in here else " after-restart"
            if message is None:
                outcome = "no answer"
            elif "error" in message:
                outcome = _error(message)
            else:
                replay = [
                    _token(u)
                    for u in events
                    if u.kind == "send"
                    and u.method == UPDATE
                    and u.session == sid
                    and request.seq < u.seq < (response.seq if response else 0)
                    and u.update_kind not in SESSION_LEVEL
                ]
                outcome = "ok" + (f" replay={_collapse(replay)}" if replay else "")
                here.add(sid)
                _mcp(shape, params, sid, spawned, observed_processes)
            shape["restores"].add(f"{method} {kind}{where} -> {outcome}")
        elif method == CLOSE:
            sid = params.get("sessionId")
            state = "closed" if sid in closed else "open" if sid in here else "unknown"
            outcome = "no answer" if message is None else _error(message) if "error" in message else "ok"
            shape["closes"].add(f"{CLOSE} {state} -> {outcome}")
            if message is not None and "error" not in message and isinstance(sid, str):
                closed.add(sid)
        elif method == PROMPT:
            _turn(events, request, response, shape, prompted)
    for sid, kinds in session_kinds.items():
        shape["session_updates"].add(f"{sorted(kinds)}")
        del sid


def _initialize(message: dict[str, Any]) -> str:
    result = message.get("result")
    if not isinstance(result, dict):
        return _error(message)
    caps = result.get("agentCapabilities") or {}
    session_caps = sorted((caps.get("sessionCapabilities") or {}).keys())
    meta = caps.get("_meta") or {}
    queueing = bool((meta.get("claudeCode") or {}).get("promptQueueing"))
    mcp = sorted(k for k, v in (caps.get("mcpCapabilities") or {}).items() if v)
    return (
        f"loadSession={bool(caps.get('loadSession'))} sessionCapabilities={session_caps} "
        f"mcp={mcp} promptQueueing={queueing} authMethods={len(result.get('authMethods') or [])}"
    )


def _mcp(shape: Shape, params: dict[str, Any], sid: str, spawned: dict[str, int], observed: bool) -> None:
    servers = params.get("mcpServers") or []
    stdio = sum(
        1 for s in servers if isinstance(s, dict) and "command" in s and s.get("type") in (None, "stdio")
    )
    if observed and stdio:
        shape["mcp"].add(f"stdio servers {stdio} -> processes {spawned.get(sid, 0)}")


def _turn(
    events: Sequence[TraceEvent],
    request: TraceEvent,
    response: TraceEvent | None,
    shape: Shape,
    prompted: set[str],
) -> None:
    sid, turn = request.session, request.turn
    updates = [
        e
        for e in events
        if e.kind == "send"
        and e.method == UPDATE
        and e.session == sid
        and e.turn == turn
        and e.seq > request.seq
    ]
    if response is None or response.message is None:
        end = "no answer"
        before, after = updates, []
    else:
        message = response.message
        if "error" in message:
            end = _error(message)
        else:
            result = message.get("result") or {}
            end = f"{result.get('stopReason')} usage={_usage_class(result.get('usage'))}"
            if sid is not None:
                prompted.add(sid)
        before = [u for u in updates if u.seq < response.seq]
        # Late updates of this turn: after its response and before the client's next request about
        # the session (a session/load's replay is the load's, not the turn's).
        horizon = next(
            (
                e.seq
                for e in events
                if e.seq > response.seq and e.kind == "recv" and e.session == sid and e.method is not None
            ),
            None,
        )
        after = [u for u in updates if u.seq > response.seq and (horizon is None or u.seq < horizon)]
    kinds = _collapse(_token(u) for u in before if u.update_kind not in SESSION_LEVEL)
    late = _collapse(_token(u) for u in after if u.update_kind not in SESSION_LEVEL)
    signature = f"{end} {kinds}" + (f" then {late}" if late else "")
    shape["turns"].add(signature)


def recorded_shape() -> Shape:
    """The shape of the recorded transcripts of the real adapter 0.23.1: the drift check's reference."""
    from acp_sim.live.transcripts import recorded_transcripts

    return merge(trace_shape(traces) for traces in recorded_transcripts().values())
