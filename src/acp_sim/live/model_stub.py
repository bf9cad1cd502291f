"""A loopback-only fake of the Anthropic Messages API, so the real Claude Code CLI runs offline.

Serves what the CLI (2.1.83, inside ``@zed-industries/claude-agent-acp`` 0.23.1) calls when
``ANTHROPIC_BASE_URL`` points here: ``HEAD /`` (a reachability probe), ``POST
/v1/messages?beta=true`` with ``stream: true`` (every turn; answered with the real SSE event
sequence), and, for other clients and CLI versions, non-streaming ``POST /v1/messages`` and
``POST /v1/messages/count_tokens``. Answers follow a seeded ``StubProfile``.

HTTP is h11 on anyio sockets (both backends; h11 is already installed with ``mcp``). The stub
binds IPv4/IPv6 loopback literals only and refuses anything else: it accepts any API key, so it
must never be reachable from another machine. Its request log never holds a header value or a
key (``Redactor``).
"""

from __future__ import annotations

import ipaddress
import json
import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any, Literal

import anyio
import h11
from anyio.abc import SocketAttribute, SocketStream
from pydantic import BaseModel, ConfigDict, ValidationError

from acp_sim.clock import derive_seed
from acp_sim.live.messages_api import (
    ContentBlockDelta,
    ContentBlockStart,
    ContentBlockStop,
    CountTokensResponse,
    DeltaUsage,
    ErrorBody,
    ErrorResponse,
    InputJsonDelta,
    Message,
    MessageDelta,
    MessageDeltaBody,
    MessagesRequest,
    MessageStart,
    MessageStop,
    Ping,
    TextBlock,
    TextDelta,
    ToolUseBlock,
    Usage,
    error_response,
    sse,
)
from acp_sim.live.redact import Redactor
from acp_sim.live.stub_profile import DEFAULT_STUB, StubFault, StubProfile

MAX_REQUEST_BYTES = 64 * 1024 * 1024  # a long conversation is a few MB; anything beyond is a bug
PROMPT_IN_TEXT = 40
PROMPT_IN_LOG = 200

Outcome = Literal[
    "ok",
    "head",
    "count_tokens",
    "overloaded",
    "server_error",
    "stream_error",
    "stalled",
    "dropped",
    "client_closed",
    "not_found",
    "bad_request",
]


class NonLoopbackAddress(ValueError):
    """The model stub was asked to listen on an address other machines could reach."""


def require_loopback(host: str) -> str:
    """``host`` if it is a loopback IP literal (127.0.0.0/8 or ::1); raise otherwise.

    Names such as ``localhost`` are refused too: what they resolve to is up to the machine.
    """
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise NonLoopbackAddress(
            f"the model stub listens on loopback only: {host!r} is not an IP address (use 127.0.0.1)"
        ) from None
    if not address.is_loopback:
        raise NonLoopbackAddress(
            f"the model stub listens on loopback only: {host} is reachable from other machines "
            "(use 127.0.0.1)"
        )
    return str(address)


class StubRecord(BaseModel):
    """One request the stub answered, as written to its log (never a header value or a key)."""

    model_config = ConfigDict(extra="forbid")

    seq: int
    t: float
    method: str
    path: str
    outcome: Outcome
    status: int
    session: str | None = None
    request_in_session: int | None = None
    prompt: str | None = None
    model: str | None = None
    stream: bool | None = None
    deltas: int = 0
    tool_use: str | None = None
    tool_results: int = 0
    auth: str | None = None
    """Name of the credential header the client sent (``x-api-key``, ``authorization``), never its value."""


@dataclass(slots=True)
class _Request:
    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]


class _ClientGone(Exception):
    """The client closed the connection while we were answering (a cancelled turn aborts its stream)."""


class ModelStub:
    """The stub server. ``async with stub.serve() as base_url`` runs it; ``records`` logs requests."""

    def __init__(
        self,
        profile: StubProfile = DEFAULT_STUB,
        *,
        seed: int = 0,
        redactor: Redactor | None = None,
        sink: Callable[[StubRecord], None] | None = None,
    ) -> None:
        self.profile = profile
        self.seed = seed
        self.redactor = redactor or Redactor()
        self.records: list[StubRecord] = []
        self._sink = sink
        self._origin = 0.0
        self._sessions: dict[str | None, int] = {}  # order of appearance -> RNG derivation
        self._requests_in_session: dict[str | None, int] = {}
        self._fault_matches: dict[int, int] = {}
        self._fault_fired: dict[int, int] = {}
        self._message_ids = 0
        self._recorded: anyio.Event | None = None
        self.base_url: str | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    @asynccontextmanager
    async def serve(self, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
        """Listen on ``host:port`` (0: a free port) and yield the base URL for ``ANTHROPIC_BASE_URL``."""
        host = require_loopback(host)
        listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
        bound = listener.extra(SocketAttribute.local_address)
        if not ipaddress.ip_address(bound[0]).is_loopback:  # belt and braces: what the OS really bound
            await listener.aclose()
            raise NonLoopbackAddress(f"the model stub was bound to {bound[0]}, which is not loopback")
        shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
        self.base_url = f"http://{shown}:{bound[1]}"
        self._origin = anyio.current_time()
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(listener.serve, self._connection)
                try:
                    yield self.base_url
                finally:
                    tg.cancel_scope.cancel()
        finally:
            # Closed once the accept loop is cancelled: closing it under a waiting accept() would
            # make that accept() raise instead of ending quietly.
            with anyio.CancelScope(shield=True):
                await listener.aclose()

    def _now(self) -> float:
        return round(anyio.current_time() - self._origin, 6)

    def _record(self, **fields: Any) -> StubRecord:
        record = StubRecord(seq=len(self.records), t=self._now(), **fields)
        self.records.append(record)
        if self._sink is not None:
            self._sink(record)
        if self._recorded is not None:
            self._recorded.set()
            self._recorded = None
        return record

    async def wait_for(self, predicate: Callable[[StubRecord], bool]) -> StubRecord:
        """The first request record matching ``predicate``, waiting for it if it has not come yet."""
        while True:
            for record in self.records:
                if predicate(record):
                    return record
            if self._recorded is None:
                self._recorded = anyio.Event()
            await self._recorded.wait()

    # -- HTTP ------------------------------------------------------------------------------------

    async def _connection(self, stream: SocketStream) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST_BYTES)
        async with stream:
            with suppress(_ClientGone, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                while True:
                    request = await self._read_request(conn, stream)
                    if request is None:
                        return
                    if not await self._answer(conn, stream, request):
                        return
                    if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                        return
                    conn.start_next_cycle()

    async def _read_request(self, conn: h11.Connection, stream: SocketStream) -> _Request | None:
        head: h11.Request | None = None
        body = bytearray()
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError:
                return None
            if event is h11.NEED_DATA:
                try:
                    data = await stream.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                    data = b""
                conn.receive_data(data)
            elif isinstance(event, h11.Request):
                head = event
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > MAX_REQUEST_BYTES:
                    return None
            elif isinstance(event, h11.EndOfMessage):
                assert head is not None
                headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in head.headers]
                return _Request(head.method.decode(), head.target.decode("latin-1"), headers, bytes(body))
            else:  # ConnectionClosed or PAUSED
                return None

    async def _send(self, conn: h11.Connection, stream: SocketStream, event: Any) -> None:
        data = conn.send(event)
        if data:
            try:
                await stream.send(data)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
                raise _ClientGone from exc

    async def _send_json(
        self, conn: h11.Connection, stream: SocketStream, status: int, body: BaseModel | bytes
    ) -> None:
        payload = body if isinstance(body, bytes) else body.model_dump_json().encode()
        headers = [("content-type", "application/json"), ("content-length", str(len(payload)))]
        if status == 529 or status >= 500:
            headers.append(("x-should-retry", "true"))  # as the API does, so the CLI's retry logic engages
        await self._send(conn, stream, h11.Response(status_code=status, headers=headers))
        await self._send(conn, stream, h11.Data(data=payload))
        await self._send(conn, stream, h11.EndOfMessage())

    async def _answer(self, conn: h11.Connection, stream: SocketStream, request: _Request) -> bool:
        """Answer one request; False when the connection must not be reused."""
        auth = next(
            (name.lower() for name, _ in request.headers if name.lower() in ("x-api-key", "authorization")),
            None,
        )
        base: dict[str, Any] = {
            "method": request.method,
            "path": self.redactor.text(request.path),
            "auth": auth,
        }
        if request.method == "HEAD":
            await self._send(conn, stream, h11.Response(status_code=200, headers=[("content-length", "0")]))
            await self._send(conn, stream, h11.EndOfMessage())
            self._record(outcome="head", status=200, **base)
            return True
        if request.method != "POST" or request.path not in ("/v1/messages", "/v1/messages/count_tokens"):
            status, error = error_response("not_found", f"{request.method} {request.path} is not served here")
            await self._send_json(conn, stream, status, error)
            self._record(outcome="not_found", status=status, **base)
            return True
        try:
            body = MessagesRequest.model_validate_json(request.body)
        except ValidationError as exc:
            first = exc.errors(include_url=False, include_input=False)[0]
            where = ".".join(str(p) for p in first["loc"]) or "<body>"
            status, error = error_response("invalid_request", f"{where}: {first['msg']}")
            await self._send_json(conn, stream, status, error)
            self._record(outcome="bad_request", status=status, **base)
            return True
        base.update(model=body.model, prompt=self.redactor.text(body.prompt()[:PROMPT_IN_LOG]))
        if request.path.endswith("/count_tokens"):
            estimate = max(1, len(request.body) // 4)  # the API's tokens are ~4 bytes of English
            await self._send_json(conn, stream, 200, CountTokensResponse(input_tokens=estimate))
            self._record(outcome="count_tokens", status=200, **base)
            return True
        return await self._messages(conn, stream, body, base)

    # -- /v1/messages ----------------------------------------------------------------------------

    async def _messages(
        self, conn: h11.Connection, stream: SocketStream, body: MessagesRequest, base: dict[str, Any]
    ) -> bool:
        session = body.session_id()
        ordinal = self._sessions.setdefault(session, len(self._sessions))
        index = self._requests_in_session[session] = self._requests_in_session.get(session, 0) + 1
        rng = random.Random(derive_seed(self.seed, "model-request", ordinal, index))
        prompt = body.prompt()
        tool_results = body.tool_results()
        base.update(
            session=session, request_in_session=index, stream=body.stream, tool_results=len(tool_results)
        )
        fault = self._pick_fault(prompt, rng)
        if fault is not None and fault.kind in ("overloaded", "server_error"):
            status, error = error_response(
                fault.kind, "Overloaded" if fault.kind == "overloaded" else "Internal server error"
            )
            await self._send_json(conn, stream, status, error)
            self._record(outcome=fault.kind, status=status, **base)
            return True
        plan = self._plan(body, session, index, prompt, tool_results, rng)
        message = plan.message
        tool = next((b.name for b in message.content if isinstance(b, ToolUseBlock)), None)
        base["tool_use"] = tool
        if not body.stream:
            return await self._whole(conn, stream, message, fault, rng, base)
        progress = _Progress()
        try:
            outcome = await self._stream(conn, stream, plan, fault, rng, progress)
        except _ClientGone:
            self._record(outcome="client_closed", status=200, deltas=progress.deltas, **base)
            raise
        self._record(outcome=outcome, status=200, deltas=progress.deltas, **base)
        return outcome not in ("dropped", "stream_error")

    async def _whole(
        self,
        conn: h11.Connection,
        stream: SocketStream,
        message: Message,
        fault: StubFault | None,
        rng: random.Random,
        base: dict[str, Any],
    ) -> bool:
        """A non-streamed answer; mid-stream faults strike the only way they can: before the body."""
        await anyio.sleep(self._total_latency(rng))
        if fault is not None and fault.kind == "stall":
            await anyio.sleep(fault.seconds.draw(rng))
        if fault is not None and fault.kind == "drop":
            await stream.aclose()
            self._record(outcome="dropped", status=0, **base)
            return False
        if fault is not None and fault.kind == "stream_error":
            status, error = error_response("overloaded", "Overloaded")
            await self._send_json(conn, stream, status, error)
            self._record(outcome="stream_error", status=status, **base)
            return True
        await self._send_json(conn, stream, 200, message)
        self._record(outcome="stalled" if fault is not None else "ok", status=200, **base)
        return True

    def _pick_fault(self, prompt: str, rng: random.Random) -> StubFault | None:
        """The first fault of the profile that strikes this request (each fault counts its own matches)."""
        chosen: StubFault | None = None
        for n, fault in enumerate(self.profile.faults):
            if fault.prompt_contains is not None and fault.prompt_contains not in prompt:
                continue
            matches = self._fault_matches[n] = self._fault_matches.get(n, 0) + 1
            # Draw for every matching fault, in order, so one fault's outcome never shifts another's draws.
            hit = rng.random() < fault.probability
            if chosen is not None or (fault.request is not None and matches != fault.request):
                continue
            if fault.times is not None and self._fault_fired.get(n, 0) >= fault.times:
                continue
            if hit:
                self._fault_fired[n] = self._fault_fired.get(n, 0) + 1
                chosen = fault
        return chosen

    def _plan(
        self,
        body: MessagesRequest,
        session: str | None,
        index: int,
        prompt: str,
        tool_results: list[str],
        rng: random.Random,
    ) -> _Plan:
        """The whole answer, decided before the first byte (so a fault never changes what is said)."""
        reply = self.profile.reply
        self._message_ids += 1
        usage = Usage(
            input_tokens=reply.input_tokens,
            output_tokens=reply.output_tokens,
            cache_creation_input_tokens=reply.cache_creation_input_tokens,
            cache_read_input_tokens=reply.cache_read_input_tokens,
        )
        rule = (
            None
            if tool_results
            else next((r for r in self.profile.tool_use if r.prompt_contains in prompt), None)
        )
        content: list[TextBlock | ToolUseBlock] = []
        pieces: list[list[str]] = []
        if rule is None:
            fields = {"prompt": prompt[:PROMPT_IN_TEXT], "session": (session or "")[:8], "request": index}
            texts = [reply.text.format(i=i, **fields) for i in range(reply.deltas)]
            content.append(TextBlock(text="".join(texts)))
            pieces.append(texts)
            stop_reason = reply.stop_reason
        else:
            if rule.text_before:
                content.append(TextBlock(text=rule.text_before))
                pieces.append([rule.text_before])
            tool_id = f"toolu_{rng.getrandbits(96):024x}"
            content.append(ToolUseBlock(id=tool_id, name=rule.name, input=dict(rule.input)))
            stop_reason = "tool_use"
        message = Message(
            id=f"msg_stub_{self._message_ids:06d}",
            model=body.model,
            content=content,
            stop_reason=stop_reason,  # type: ignore[arg-type]
            usage=usage,
        )
        return _Plan(message, pieces)

    def _total_latency(self, rng: random.Random) -> float:
        reply = self.profile.reply
        first = reply.first_delta_delay.draw(rng)
        return first + sum(reply.delta_interval.draw(rng) for _ in range(max(0, reply.deltas - 1)))

    async def _stream(
        self,
        conn: h11.Connection,
        stream: SocketStream,
        plan: _Plan,
        fault: StubFault | None,
        rng: random.Random,
        progress: _Progress,
    ) -> Outcome:
        reply = self.profile.reply
        message = plan.message
        text_pieces = iter(plan.pieces)
        headers = [("content-type", "text/event-stream"), ("cache-control", "no-cache")]
        await self._send(conn, stream, h11.Response(status_code=200, headers=headers))

        async def event(ev: Any) -> None:
            await self._send(conn, stream, h11.Data(data=sse(ev)))

        # message_start carries the input side of usage and output_tokens 1, as the API does; the
        # adapter reports input + output + cache tokens of it as usage_update.used.
        start_usage = message.usage.model_copy(update={"output_tokens": min(1, message.usage.output_tokens)})
        start = message.model_copy(update={"content": [], "stop_reason": None, "usage": start_usage})
        await event(MessageStart(message=start))
        outcome: Outcome = "ok"
        for index, block in enumerate(message.content):
            if isinstance(block, TextBlock):
                await event(ContentBlockStart(index=index, content_block=TextBlock(text="")))
                if index == 0:
                    await event(Ping())
                for n, piece in enumerate(next(text_pieces)):
                    if fault is not None and progress.deltas == fault.after_deltas:
                        outcome = await self._strike(conn, stream, fault, rng, event)
                        if outcome in ("dropped", "stream_error"):
                            return outcome
                    delay = reply.first_delta_delay if n == 0 else reply.delta_interval
                    await anyio.sleep(delay.draw(rng))
                    await event(ContentBlockDelta(index=index, delta=TextDelta(text=piece)))
                    progress.deltas += 1
            else:
                await event(
                    ContentBlockStart(
                        index=index, content_block=ToolUseBlock(id=block.id, name=block.name, input={})
                    )
                )
                await event(
                    ContentBlockDelta(index=index, delta=InputJsonDelta(partial_json=json.dumps(block.input)))
                )
            await event(ContentBlockStop(index=index))
        if fault is not None and fault.kind in ("stall", "drop", "stream_error") and outcome == "ok":
            # after_deltas at or beyond the end of the text: strike before the message ends.
            outcome = await self._strike(conn, stream, fault, rng, event)
            if outcome in ("dropped", "stream_error"):
                return outcome
        assert message.stop_reason is not None
        await event(
            MessageDelta(
                delta=MessageDeltaBody(stop_reason=message.stop_reason),
                usage=DeltaUsage(output_tokens=message.usage.output_tokens),
            )
        )
        await event(MessageStop())
        await self._send(conn, stream, h11.EndOfMessage())
        return outcome

    async def _strike(
        self,
        conn: h11.Connection,
        stream: SocketStream,
        fault: StubFault,
        rng: random.Random,
        event: Callable[[Any], Any],
    ) -> Outcome:
        if fault.kind == "stall":
            await anyio.sleep(fault.seconds.draw(rng))
            return "stalled"
        if fault.kind == "stream_error":
            await event(ErrorResponse(error=ErrorBody(type="overloaded_error", message="Overloaded")))
            await self._send(conn, stream, h11.EndOfMessage())
            return "stream_error"
        # drop: close the socket with the response unfinished (no terminating chunk).
        await stream.aclose()
        return "dropped"


@dataclass(slots=True)
class _Progress:
    deltas: int = 0


@dataclass(slots=True)
class _Plan:
    message: Message
    pieces: list[list[str]]
    """The text deltas of each text block, in order."""
