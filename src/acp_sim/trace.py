"""The ground-truth trace: every message an agent sent and received, with time, session and turn.

The recorder works on wire messages alone (it is a ``MessageObserver``), so the same code
attributes the simulated agent's traffic and, in live mode, the traffic a stdio tap sees
between a bridge and a real agent. Semantic events (faults fired, processes spawned and
reaped) are added with ``record``.

Attribution rules: a ``session/prompt`` the agent receives opens turn n+1 of its session; any
other message naming a ``sessionId`` belongs to that session's current turn (0 before the first
prompt); a response belongs to the session and turn of the request it answers; the response to
``session/new`` names the session it created.

JSON-lines form, one event per line, keys in this order, absent keys omitted::

    {"seq": 7, "t": 4.05, "kind": "send", "session": "sess-…", "turn": 1,
     "method": "session/update", "id": null, "message": {…}, "detail": {…}}

The simulated agent records a send just before writing it (``on_sending``), so a process killed
mid-write leaves the line of what it was writing: its last ``send`` may be missing from the wire. A
write that fails or is cancelled is followed by an ``unsent`` event naming its ``seq``.

A message the connection wrote or read is kept as its line (the bytes written, the text read) and
decoded on first read of ``message`` (then kept decoded): a run keeps every message it saw, and as
dicts they were most of what every full garbage collection walked (at 1,000 sessions x 100 chunks,
three tracked dicts per chunk). The trace reads, compares and serializes as if the dict were there.

``kind`` is ``send`` / ``recv`` (a wire message, from the agent's point of view), ``bad_input``
(a line the agent could not parse) or a semantic kind such as ``fault``, ``spawn``, ``reap``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from acp_sim.errors import JsonRpcError
from acp_sim.wire import Direction, decode_text, encode_text

# Detail keys whose values come from the operating system, not from the simulation.
VOLATILE_DETAIL_KEYS = frozenset({"pid"})
PROMPT = "session/prompt"
NEW = "session/new"
UPDATE = "session/update"


@dataclass(slots=True)
class TraceEvent:
    seq: int
    t: float
    kind: str
    session: str | None = None
    turn: int | None = None
    method: str | None = None
    id: int | str | None = None
    message: dict[str, Any] | None = None
    detail: dict[str, Any] | None = None

    def to_json(self) -> str:
        message = _MESSAGE.__get__(self)
        if type(message) is bytes and (not message.isascii() or b"\\u" not in message):
            # The line our encoder wrote is this message's JSON as below (same encoder settings):
            # spliced in, not decoded and encoded again. A line with ``\\u`` escapes in ASCII may
            # be the encoder's escaped form for a lone surrogate: that one is encoded again.
            text = self._fields_json(message[:-1].decode())
        else:
            if type(message) is bytes:
                message = message.decode()
            if type(message) is str:
                message = decode_text(message)  # read here, not kept decoded (a sink writes each event)
            text = self._fields_json(None if message is None else encode_text(message))
        if not text.isascii():
            # Line breaks to str.splitlines (NEL, LS, PS) stay escaped, so every reader sees one
            # event per line; JSON has them only inside strings, where the escape is the same text.
            for char, escaped in _LINE_BREAKS:
                if char in text:
                    text = text.replace(char, escaped)
            try:
                text.encode()
            except UnicodeEncodeError:
                # A lone surrogate a peer sent as a JSON escape (``"\\ud800"``): neither UTF-8 nor
                # readable by pydantic's JSON parser, so the trace shows U+FFFD in its place.
                text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        return text

    def _fields_json(self, message: str | None) -> str:
        """The fields that are not None as one JSON object, in field order, ``message`` given as JSON."""
        head = {
            name: value
            for name, value in (
                ("seq", self.seq),
                ("t", self.t),
                ("kind", self.kind),
                ("session", self.session),
                ("turn", self.turn),
                ("method", self.method),
                ("id", self.id),
            )
            if value is not None
        }
        text = encode_text(head)
        if message is None and self.detail is None:
            return text
        parts = [text[:-1]] if head else ["{"]
        if message is not None:
            parts.append(',"message":' if head else '"message":')
            parts.append(message)
        if self.detail is not None:
            parts.append(',"detail":' if head or message is not None else '"detail":')
            parts.append(encode_text(self.detail))
        parts.append("}")
        return "".join(parts)

    @property
    def update_kind(self) -> str | None:
        """``sessionUpdate`` of a session/update notification, else None."""
        if self.method != UPDATE or self.message is None:
            return None
        update = self.message.get("params", {}).get("update", {})
        kind = update.get("sessionUpdate")
        return kind if isinstance(kind, str) else None


_LINE_BREAKS = (("\x85", "\\u0085"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029"))

# ``message``'s slot holds the dict, None, or until first read the message's line: ``bytes`` as our
# encoder wrote it (``acp_sim.wire.encode``), or ``str``, the text of a line a peer wrote. The class
# attribute becomes a property over the slot that decodes a line once and keeps the dict.
_MESSAGE = TraceEvent.message


def _read_message(event: TraceEvent) -> dict[str, Any] | None:
    value = _MESSAGE.__get__(event)
    kind = type(value)
    if kind is bytes or kind is str:
        value = decode_text(value.decode() if kind is bytes else value)
        _MESSAGE.__set__(event, value)
    return value  # type: ignore[no-any-return]


TraceEvent.message = property(_read_message, _MESSAGE.__set__)  # type: ignore[assignment,method-assign]
EVENT_ADAPTER = TypeAdapter(TraceEvent)


# Slots of ``Trace._pending`` per event: a wire message's eight fields (``detail`` is None), or a
# ready-made event followed by padding.
_ROW = 8
_PADDING = (None,) * (_ROW - 1)


class Trace:
    """Records trace events; also the wire observer of the agent side of a connection."""

    def __init__(self, now: Callable[[], float], *, sink: Callable[[TraceEvent], None] | None = None) -> None:
        self._now = now
        self._sink = sink
        self._events: list[TraceEvent] = []
        # Recorded since ``events`` was last read, ``_ROW`` slots per event: a wire message as its
        # fields laid out flat (made a TraceEvent when read), any other event as itself in the first
        # slot. Strings, numbers and bytes are no work for the garbage collector, but an object
        # kept per message is: a TraceEvent was walked by every full collection, and even a tuple
        # of plain fields, though left out once seen, counted toward the next young collection
        # (one in three of them at 1,000 sessions x 100 chunks; issue 19).
        self._pending: list[Any] = []
        self._size = 0  # events recorded (read or not): the next one's seq
        self._turns: dict[str, int] = {}
        # Request ids live in two spaces: the peer's requests (we answer) and ours (they answer).
        self._peer_requests: dict[Any, tuple[str | None, int | None, str]] = {}
        self._own_requests: dict[Any, tuple[str | None, int | None, str]] = {}
        self._sending: dict[int, int] = {}  # id(message) -> the index of its send event, until written
        self._received: dict[str, Any] | None = None  # the message on_receiving just recorded

    @property
    def events(self) -> list[TraceEvent]:
        """Every event so far, in order: the same list each time, and what was recorded since the
        last read is added to it now. Read it; events are appended by recording them (or ``add``)."""
        pending = self._pending
        if pending:
            events = self._events
            for k in range(0, len(pending), _ROW):
                item = pending[k]
                events.append(item if type(item) is TraceEvent else TraceEvent(*pending[k : k + _ROW]))
            pending.clear()
        return self._events

    @property
    def size(self) -> int:
        """How many events were recorded, read or not (``len(events)`` without making them)."""
        return self._size

    def add(self, event: TraceEvent) -> None:
        """Append a ready-made event: ``record``'s, or one read back from another process's trace."""
        self._pending.extend((event, *_PADDING))
        self._size += 1
        if self._sink is not None:
            self._sink(event)

    def _event_at(self, index: int) -> TraceEvent:
        """The event at ``index`` of ``events``; one still waiting as a tuple is made a TraceEvent in
        its place, so it is the very object ``events`` will hold."""
        done = len(self._events)
        if index < done:
            return self._events[index]
        pending = self._pending
        k = (index - done) * _ROW
        item = pending[k]
        if type(item) is not TraceEvent:
            item = pending[k] = TraceEvent(*pending[k : k + _ROW])
        return item

    # -- recording -------------------------------------------------------------------------------

    def record(
        self,
        kind: str,
        *,
        session: str | None = None,
        turn: int | None = None,
        method: str | None = None,
        id: int | str | None = None,
        message: dict[str, Any] | None = None,
        detail: dict[str, Any] | None = None,
    ) -> TraceEvent:
        if turn is None and session is not None:
            turn = self._turns.get(session, 0)
        event = TraceEvent(self._size, self._now(), kind, session, turn, method, id, message, detail)
        self.add(event)
        return event

    def current_turn(self, session: str) -> int:
        return self._turns.get(session, 0)

    def set_turn(self, session: str, turn: int) -> None:
        """Continue a session's turn numbering (a session restored from disk after a restart)."""
        self._turns[session] = turn

    def on_message(
        self, direction: Direction, message: dict[str, Any], line: bytes | str | None = None
    ) -> int:
        """Record a wire message; ``line``, when given, is what is kept of it (see the module
        docstring): the bytes ``acp_sim.wire.encode`` made of it, or the text of the line a peer
        wrote that it was decoded from (``acp_sim.wire.decode_text``). Returns its seq."""
        method = message.get("method")
        msg_id = message.get("id")
        params = message.get("params")
        session = params.get("sessionId") if isinstance(params, dict) else None
        session = session if isinstance(session, str) else None
        turn: int | None = None
        if method is not None:
            if direction == "recv" and method == PROMPT and session is not None:
                turn = self._turns[session] = self._turns.get(session, 0) + 1
            elif session is not None:
                turn = self._turns.get(session, 0)
            if msg_id is not None:
                requests = self._peer_requests if direction == "recv" else self._own_requests
                requests[msg_id] = (session, turn, method)
        else:
            requests = self._own_requests if direction == "recv" else self._peer_requests
            session, turn, method = requests.pop(msg_id, (None, None, None))
            result = message.get("result")
            if method == NEW and isinstance(result, dict) and isinstance(result.get("sessionId"), str):
                session, turn = result["sessionId"], 0
        # This runs for every message on the wire: the event waits as its fields (see ``_pending``).
        # The line goes in the message's slot, decoded when read (see _read_message).
        kept: Any = message if line is None else line
        seq = self._size
        self._size = seq + 1
        row = (seq, self._now(), direction, session, turn, method, msg_id, kept)
        self._pending.extend(row)  # the tuple is freed here, back to the interpreter's free list
        if self._sink is not None:
            self._sink(TraceEvent(*row))
        return seq

    def on_sending(self, message: dict[str, Any], data: bytes | None = None) -> None:
        """Record a send just before its bytes (``data``, kept as the message) are written
        (``MessageObserver.on_sending``): a process killed during the write keeps the line; the wire
        is never ahead of the trace."""
        self._sending[id(message)] = self.on_message("send", message, data)

    def on_receiving(self, message: dict[str, Any], text: str) -> None:
        """Record a message read, keeping ``text``, the line it was decoded from
        (``MessageObserver.on_receiving``); ``on_written`` then returns its event."""
        self.on_message("recv", message, text)
        self._received = message

    def on_written(self, direction: Direction, message: dict[str, Any]) -> TraceEvent | None:
        """The connection's ``on_message`` when sends are recorded by ``on_sending`` (and reads by
        ``on_receiving``): records a read not recorded yet, and returns the event of either (None
        for a send not recorded here)."""
        index = self.written(direction, message)
        return None if index is None else self._event_at(index)

    def written(self, direction: Direction, message: dict[str, Any]) -> int | None:
        """``on_written`` for a caller that needs no event (the connection's observer on the hot
        path): the index of the event in ``events``, which stays a tuple until read."""
        if direction == "send":
            return self._sending.pop(id(message), None)
        if self._received is message:
            self._received = None
        else:
            return self.on_message(direction, message)
        return self._size - 1

    def on_unsent(self, message: dict[str, Any]) -> None:
        """A send recorded by ``on_sending`` whose write failed or was cancelled: an ``unsent`` event
        names its seq (the oracle drops it from what the agent sent)."""
        index = self._sending.pop(id(message), None)
        if index is not None:
            event = self._event_at(index)
            self.record("unsent", session=event.session, turn=event.turn, detail={"seq": event.seq})

    def on_bad_input(self, line: bytes, error: JsonRpcError) -> None:
        self.record(
            "bad_input", detail={"error": error.to_error_object(), "line": line.decode("utf-8", "replace")}
        )

    # -- reading ---------------------------------------------------------------------------------

    def to_jsonl(self, *, stable: bool = False) -> str:
        """The trace as JSON lines; ``stable`` replaces real pids with their order of appearance.

        Everything in a trace follows from seed, profile and client actions except the pids of real
        child processes (MCP servers); the stable form is byte-identical run after run.
        """
        if not stable:
            return "".join(event.to_json() + "\n" for event in self.events)
        numbering: dict[Any, str] = {}
        lines = []
        for event in self.events:
            if event.detail and VOLATILE_DETAIL_KEYS & event.detail.keys():
                detail = dict(event.detail)
                for key in VOLATILE_DETAIL_KEYS & detail.keys():
                    detail[key] = numbering.setdefault(detail[key], f"{key}#{len(numbering) + 1}")
                event = replace(event, detail=detail)
            lines.append(event.to_json() + "\n")
        return "".join(lines)

    def write(self, path: str | Path) -> None:
        Path(path).write_text(self.to_jsonl(), encoding="utf-8")

    def sessions(self) -> list[str]:
        """Sessions in the order the agent first mentioned them."""
        return list(dict.fromkeys(e.session for e in self.events if e.session is not None))

    def updates(self, session: str | None = None, turn: int | None = None) -> Iterator[TraceEvent]:
        """Session updates the agent sent, optionally for one session and turn."""
        for event in self.events:
            if (
                event.kind == "send"
                and event.method == UPDATE
                and (session is None or event.session == session)
                and (turn is None or event.turn == turn)
            ):
                yield event

    def of_kind(self, kind: str) -> list[TraceEvent]:
        return [e for e in self.events if e.kind == kind]


def load_jsonl(lines: Iterable[str]) -> list[TraceEvent]:
    """Parse and validate a JSON-lines trace (raises pydantic's ValidationError naming the field)."""
    return [EVENT_ADAPTER.validate_json(line) for line in lines if line.strip()]


def chunk_text(event: TraceEvent) -> str | None:
    """The text of an ``agent_message_chunk`` update, else None."""
    if event.update_kind != "agent_message_chunk" or event.message is None:
        return None
    content = event.message["params"]["update"].get("content", {})
    text = content.get("text")
    return text if isinstance(text, str) else None
