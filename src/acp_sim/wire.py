"""Newline-delimited JSON-RPC 2.0 over anyio byte streams.

Knows nothing of sessions. One ``Connection`` per peer: it correlates our requests with the
peer's responses, dispatches the peer's requests (each in its own task, so requests run
concurrently in both directions) and notifications (inline, in arrival order, because ACP
session updates are ordered), validates incoming params with the ``acp.schema`` models, and
answers bad input with the JSON-RPC error the spec asks for while the connection lives on.

What runs for each method is a ``acp_sim.dispatch.Dispatcher``'s; what makes a line a JSON-RPC
message at all is ``acp_sim.envelope``'s. This module frames, encodes, decodes, writes and reads.
"""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import anyio
from anyio.abc import ByteReceiveStream, ByteSendStream, TaskGroup
from anyio.lowlevel import checkpoint_if_cancelled
from pydantic import BaseModel
from pydantic_core import from_json

from acp_sim.dispatch import Dispatcher, Reply, parse_params
from acp_sim.envelope import MAX_NESTING, envelope_error, excerpt, too_deep
from acp_sim.errors import (
    ConnectionClosed,
    InternalError,
    InvalidRequest,
    JsonRpcError,
    LineTooLong,
    MethodNotFound,
    ParseError,
    RemoteError,
)
from acp_sim.line_splitter import DEFAULT_MAX_LINE_BYTES, LineSplitter
from acp_sim.write_lock import WriteLock

Direction = Literal["send", "recv"]
RequestId = int | str


class MessageObserver(Protocol):
    """Sees every message a connection sends and receives (the trace hooks in here).

    ``on_message("send", ...)`` comes once the message is written. An observer that must never be
    behind the wire (a ground-truth trace: a process killed mid-write must not lose the line of what
    it was writing) may also have ``on_sending(message, data)``, called under the write lock just
    before the write, and ``on_unsent(message)``, called when that write then failed or was
    cancelled. An observer that keeps messages as their lines may have ``on_receiving``.
    """

    def on_message(self, direction: Direction, message: dict[str, Any]) -> None: ...

    # Optional (looked up once per connection):
    #   on_sending(message, data): ``data`` is the line about to be written, ``encode(message)``;
    #   on_unsent(message);
    #   on_receiving(message, text): the text of the line ``message`` was just decoded from
    #   (``decode_text(text) == message``), called before ``on_message("recv", message)``.

    def on_bad_input(self, line: bytes, error: JsonRpcError) -> None: ...


def to_jsonable(params: Any) -> Any:
    if isinstance(params, BaseModel):
        return params.model_dump(mode="json", by_alias=True, exclude_none=True)
    return params


# What ``json.dumps(message, separators=(",", ":"), ensure_ascii=False)`` builds on every call, built once.
encode_text: Callable[[Any], str] = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


# ``json.loads``' own decoder for text (it builds none per call; this skips its bytes checks).
_json_decode: Callable[[str], Any] = json.JSONDecoder().decode


def decode_text(text: str) -> Any:
    """``json.loads(text)``, the same value or the same error, in about half its time.

    pydantic-core's parser reads every line first: it takes less than half the standard decoder's
    time per message, which was the largest single cost of a simulated chunk. Where its result is
    a value, it is the standard decoder's (same types, key order, last duplicate key, inf for an
    overflowing float; ``tests/test_decode_text.py`` compares the two on generated documents).
    Whatever it refuses (a lone surrogate escape, an integer past Python's digit limit, nesting
    past its own limit, a raw lone surrogate it cannot take as UTF-8, anything malformed) the
    standard decoder then decides, so it is the standard decoder that accepts or raises.
    """
    try:
        return from_json(text)
    except (ValueError, TypeError):
        return _json_decode(text)


def encode(message: dict[str, Any]) -> bytes:
    text = encode_text(message)
    try:
        return text.encode() + b"\n"
    except UnicodeEncodeError:
        # A lone surrogate the peer sent as a JSON escape (an id, a text we echo) cannot be UTF-8:
        # escape it back, so the line stays valid JSON and valid UTF-8.
        return json.dumps(message, separators=(",", ":")).encode() + b"\n"


@dataclass(slots=True)
class _Pending:
    method: str
    done: anyio.Event = field(default_factory=anyio.Event)
    result: Any = None
    error: BaseException | None = None


class Connection:
    """One JSON-RPC 2.0 peer over a pair of byte streams.

    Use as an async context manager: entering starts the reader, leaving closes the streams and
    fails every pending request with ``ConnectionClosed``.
    """

    def __init__(
        self,
        receive_stream: ByteReceiveStream,
        send_stream: ByteSendStream,
        *,
        peer: str,
        dispatcher: Dispatcher | None = None,
        observer: MessageObserver | None = None,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        peer_exit_code: Callable[[], Awaitable[int | None]] | None = None,
        on_protocol_error: Callable[[JsonRpcError], None] | None = None,
    ) -> None:
        self.peer = peer
        self.dispatcher = dispatcher or Dispatcher()
        self._receive = receive_stream
        self._send = send_stream
        self._observer = observer
        self._on_sending = getattr(observer, "on_sending", None)  # looked up once, used per send
        self._on_receiving = getattr(observer, "on_receiving", None)
        # An in-memory pipe can be written without an await (``write_nowait``); other streams cannot.
        self._writable_now: Callable[[], bool] | None = getattr(send_stream, "writable_now", None)
        self._send_nowait: Callable[[bytes], None] | None = getattr(send_stream, "send_nowait", None)
        self._splitter = LineSplitter(max_line_bytes)
        self._peer_exit_code = peer_exit_code
        self._on_protocol_error = on_protocol_error
        self._write_lock = WriteLock()
        self._pending: dict[RequestId, _Pending] = {}
        self._peer_ids: set[RequestId] = set()  # ids of the peer's requests we are still answering
        self._in_flight = 0  # peer requests we are still answering
        self._idle = anyio.Event()
        self._next_id = 0
        self._task_group: TaskGroup | None = None
        self.closed = anyio.Event()
        self.close_error: ConnectionClosed | None = None
        self._write_error: ConnectionClosed | None = None
        self._held: list[tuple[bytes, dict[str, Any] | None]] | None = None
        self.protocol_errors: list[JsonRpcError] = []

    # -- lifecycle -------------------------------------------------------------------------------

    async def __aenter__(self) -> Connection:
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        self._task_group.start_soon(self._read_loop, name=f"acp-reader[{self.peer}]")
        return self

    async def __aexit__(self, *exc_info: object) -> bool | None:
        assert self._task_group is not None
        self._task_group.cancel_scope.cancel()
        try:
            return await self._task_group.__aexit__(*exc_info)
        finally:
            await self._shutdown(ConnectionClosed(self.peer, "connection closed locally"))

    async def _shutdown(self, error: ConnectionClosed) -> None:
        self._drop_held()
        if self.close_error is None:
            self.close_error = error
        self._write_error = self._write_error or error
        self._fail_pending(self.close_error)
        self.closed.set()
        with anyio.CancelScope(shield=True):
            for stream in (self._send, self._receive):
                with suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                    await stream.aclose()

    def _fail_pending(self, error: BaseException) -> None:
        pending, self._pending = self._pending, {}
        for entry in pending.values():
            entry.error = error
            entry.done.set()

    # -- outgoing --------------------------------------------------------------------------------

    async def request(self, method: str, params: Any = None, *, timeout: float = math.inf) -> Any:
        """Send a request and wait for its result; raises ``RemoteError`` or ``ConnectionClosed``."""
        if self.close_error is not None:
            raise self.close_error
        self._next_id += 1
        request_id = self._next_id
        entry = _Pending(method)
        self._pending[request_id] = entry
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            message["params"] = to_jsonable(params)
        try:
            await self._write(message)
            if timeout == math.inf:  # no deadline: no cancel scope to enter and leave per request
                await entry.done.wait()
            else:
                with anyio.fail_after(timeout):
                    await entry.done.wait()
        finally:
            self._pending.pop(request_id, None)
        if entry.error is not None:
            raise entry.error
        return entry.result

    async def notify(self, method: str, params: Any = None) -> None:
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            # A plain dict (every update the simulator sends) needs no conversion call.
            message["params"] = params if type(params) is dict else to_jsonable(params)
        await self._write_bytes(encode(message), message)  # _write inlined: one frame less per update

    async def send_encoded(self, data: bytes, message: dict[str, Any]) -> None:
        """Write a message already encoded (``MessageTemplate``): ``notify`` without the encoding."""
        await self._write_bytes(data, message)

    def write_nowait(self, data: bytes, message: dict[str, Any]) -> bool:
        """Write an encoded message now if that needs no wait: True once it is written (or held).

        False, with nothing done, when the write would wait or fail (the lock is held, the stream
        has no room or is not an in-memory pipe, the connection is broken): the caller then writes
        with ``send_encoded``, which waits, raises and is cancelled as every write is. The caller
        checks its own cancellation first (this is no checkpoint); observers see exactly what
        ``send_encoded`` would show them.
        """
        if self._write_error is not None or self._write_lock.busy:
            return False
        held = self._held
        if held is None and (self._writable_now is None or not self._writable_now()):
            return False
        if self._on_sending is not None:
            self._on_sending(message, data)
        if held is not None:
            held.append((data, message))
            return True
        self._send_nowait(data)  # type: ignore[misc]
        if self._observer is not None:
            self._observer.on_message("send", message)
        return True

    def hold(self) -> None:
        """Keep later writes back until ``flush``: they go out together, in one write (an agent that
        buffers its output flushes its last updates and a response at once). Observers see each
        message in order as it is held (``on_sending``); ``on_message`` once it is written."""
        if self._held is None:
            self._held = []

    async def flush(self) -> None:
        """Write what ``hold`` kept back, in one write (a no-op when nothing is held)."""
        held, self._held = self._held, None
        if not held:
            return
        observer = self._observer
        async with self._write_lock:
            written = False
            try:
                await self._send.send(b"".join(data for data, _ in held))
                written = True
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
                error = ConnectionClosed(self.peer, f"write failed: {exc or type(exc).__name__}")
                self._write_error = error
                self.close_error = self.close_error or error
                self._fail_pending(error)
                raise error from None
            finally:
                for _, message in held:
                    if message is None or observer is None:
                        continue
                    if written:
                        observer.on_message("send", message)
                    elif (unsent := getattr(observer, "on_unsent", None)) is not None:
                        unsent(message)

    def _drop_held(self) -> None:
        """The connection ends with writes still held: they never reach the wire."""
        held, self._held = self._held, None
        unsent = getattr(self._observer, "on_unsent", None)
        for _, message in held or ():
            if message is not None and unsent is not None:
                unsent(message)

    async def send_raw(self, data: bytes) -> None:
        """Write bytes as they are (fault injection: malformed output)."""
        await self._write_bytes(data)

    async def _write(self, message: dict[str, Any]) -> None:
        await self._write_bytes(encode(message), message)

    async def _write_bytes(self, data: bytes, message: dict[str, Any] | None = None) -> None:
        # Writing stays possible after the peer's EOF (a half-close): only a broken or locally
        # closed send side stops it.
        if self._write_error is not None:
            raise self._write_error
        observer = self._observer if message is not None else None
        sending = self._on_sending if message is not None else None
        lock = self._write_lock
        if lock.busy:
            await lock.wait_turn()
        else:
            # As anyio.Lock does: a cancelled task writes nothing more (a crashed agent's turn
            # must not answer after the crash; see FaultEffects._crash).
            await checkpoint_if_cancelled()
            lock.busy = True
        try:
            if sending is not None:
                sending(message, data)  # under the lock: the trace order is the wire order
            if self._held is not None:
                self._held.append((data, message))
                return
            written = False
            try:
                await self._send.send(data)
                written = True
                # Observed once written, under the lock: the trace order is the wire order.
                if observer is not None:
                    observer.on_message("send", message)  # type: ignore[arg-type]
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
                error = ConnectionClosed(self.peer, f"write failed: {exc or type(exc).__name__}")
                self._write_error = error
                self.close_error = self.close_error or error
                self._fail_pending(error)
                raise error from None
            finally:
                if sending is not None and not written:
                    unsent = getattr(observer, "on_unsent", None)
                    if unsent is not None:
                        unsent(message)
        finally:
            lock.release()

    async def _respond(self, request_id: RequestId | None, *, result: Any = None, error: Any = None) -> None:
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id}
        if error is not None:
            message["error"] = error
        else:
            message["result"] = to_jsonable(result) if result is not None else {}
        with suppress(ConnectionClosed):  # the peer left before our answer; nothing waits for it
            await self._write(message)

    # -- incoming --------------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        reason = "end of stream"
        try:
            while True:
                try:
                    data = await self._receive.receive()
                except anyio.EndOfStream:
                    if self._splitter.leftover:
                        reason = f"end of stream inside a line: {excerpt(self._splitter.leftover)!r}"
                    break
                for line in self._splitter.feed(data):
                    if isinstance(line, LineTooLong):
                        await self._reject(line, None, b"")
                    elif line.strip():
                        pending = self._handle_line(line)
                        if pending is not None:
                            await pending
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
            reason = f"read failed: {exc or type(exc).__name__}"
        exit_code = None
        if self._peer_exit_code is not None:
            with anyio.CancelScope(shield=True):
                exit_code = await self._peer_exit_code()
        self.close_error = self.close_error or ConnectionClosed(self.peer, reason, exit_code=exit_code)
        self._fail_pending(self.close_error)
        self.closed.set()

    def _handle_line(self, line: bytes) -> Awaitable[None] | None:
        """Act on one line; what is left to await, if anything (a reply to write, a notification
        handler that waits). Not a coroutine: a chunk, the line read most, needs no await, and a
        coroutine per line was a frame to make and run for nothing."""
        text: str | None = None
        try:
            if line.startswith(b'{"'):
                # What json.loads(bytes) does for a line that opens an object: no BOM, not UTF-16/32
                # (its first two bytes are not NUL), so UTF-8, decoded the same way; without the
                # encoding detection and its checks on every message.
                text = line.decode("utf-8", "surrogatepass")
                message = decode_text(text)
            else:
                message = json.loads(line)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            error = ParseError(f"Parse error: {exc}", data={"excerpt": excerpt(line)})
            return self._reject(error, None, line)
        # Only a line with that many brackets can nest that deep: the walk is skipped for the rest.
        if line.count(b"[") + line.count(b"{") > MAX_NESTING and too_deep(message):
            error = InvalidRequest(
                f"Invalid Request: nested more than {MAX_NESTING} levels deep",
                data={"excerpt": excerpt(line)},
            )
            return self._reject(error, None, line)
        if not isinstance(message, dict):
            kind = "batch" if isinstance(message, list) else type(message).__name__
            error = InvalidRequest(
                f"Invalid Request: expected a JSON-RPC object, got a {kind}", data={"excerpt": excerpt(line)}
            )
            return self._reject(error, None, line)
        invalid = envelope_error(message, line)
        if invalid is not None:
            # Answered with id null: an id we could not validate is not echoed back.
            return self._reject(invalid, None, line)
        method = message.get("method")
        request_id = message.get("id")
        if method is not None and request_id is not None and request_id in self._peer_ids:
            # A second request with the id of one still in flight: answering it with that id would
            # give the client two responses for one id, so it gets an error with id null instead.
            error = InvalidRequest(
                f"Invalid Request: request id {request_id!r} is already in use by a request in flight",
                data={"id": request_id, "excerpt": excerpt(line)},
            )
            return self._reject(error, None, line)
        if self._on_receiving is not None and text is not None:
            self._on_receiving(message, text)
        if self._observer is not None:
            self._observer.on_message("recv", message)
        if method is not None:
            if "id" in message:
                self._start_request(request_id, method, message.get("params"))
                return None
            return self._handle_notification(method, message.get("params"))
        self._handle_response(request_id, message)
        return None

    async def _reject(self, error: JsonRpcError, request_id: RequestId | None, line: bytes) -> None:
        """Answer input we cannot act on, and keep reading."""
        self._report(error, line)
        await self._respond(request_id, error=error.to_error_object())

    def _report(self, error: JsonRpcError, line: bytes) -> None:
        self.protocol_errors.append(error)
        if self._observer is not None:
            self._observer.on_bad_input(line, error)
        if self._on_protocol_error is not None:
            self._on_protocol_error(error)

    def _start_request(self, request_id: RequestId | None, method: str, params: Any) -> None:
        try:
            route = self.dispatcher.request_route(method)
            awaitable = route.handler(parse_params(method, route, params))
        except JsonRpcError as exc:
            awaitable = _raise(exc)
        except Exception as exc:  # a handler's bug must not kill the reader
            awaitable = _raise(InternalError("Internal error", data={"details": str(exc)}))
        assert self._task_group is not None
        if request_id is not None:
            self._peer_ids.add(request_id)
        self._in_flight += 1  # counted now, not when the task starts, so wait_answered sees it
        self._task_group.start_soon(self._run_request, request_id, awaitable)

    async def wait_answered(self) -> None:
        """Wait until every request the peer sent has been answered (graceful end after EOF)."""
        while self._in_flight:
            self._idle = anyio.Event()
            await self._idle.wait()

    async def _run_request(self, request_id: RequestId | None, awaitable: Awaitable[Any]) -> None:
        try:
            await self._answer(request_id, awaitable)
        finally:
            self._peer_ids.discard(request_id)
            self._in_flight -= 1
            if not self._in_flight:
                self._idle.set()

    async def _answer(self, request_id: RequestId | None, awaitable: Awaitable[Any]) -> None:
        try:
            result = await awaitable
        except JsonRpcError as exc:
            await self._respond(request_id, error=exc.to_error_object())
        except ConnectionClosed:
            pass
        except Exception as exc:
            await self._respond(
                request_id,
                error=InternalError("Internal error", data={"details": str(exc)}).to_error_object(),
            )
        else:
            if isinstance(result, Reply):
                await self._respond(request_id, result=result.result)
                self._peer_ids.discard(request_id)  # answered: the client may use the id again
                if result.flush:
                    with suppress(ConnectionClosed):
                        await self.flush()
                if result.then is not None:
                    await result.then()
            else:
                await self._respond(request_id, result=result)

    def _handle_notification(self, method: str, params: Any) -> Awaitable[None] | None:
        route = self.dispatcher.notification_route(method)
        if route is None:
            self._report(MethodNotFound(f"Unknown notification: {method}", data={"method": method}), b"")
            return None
        try:
            outcome = route.handler(parse_params(method, route, params))
        except JsonRpcError as exc:
            # Notifications get no answer (JSON-RPC 2.0 section 4.1); record the problem instead.
            self._report(exc, b"")
            return None
        return None if outcome is None else self._finish_notification(outcome)

    async def _finish_notification(self, outcome: Awaitable[Any]) -> None:
        """A notification handler that waits: awaited by the reader, as if the handler were called here."""
        try:
            await outcome
        except JsonRpcError as exc:
            self._report(exc, b"")

    def _handle_response(self, request_id: Any, message: dict[str, Any]) -> None:
        entry = self._pending.get(request_id) if isinstance(request_id, (int, str)) else None
        if entry is None:
            error = message.get("error")
            detail = f" reporting {error.get('message')!r}" if isinstance(error, dict) else ""
            self._report(
                InvalidRequest(
                    f"Response for unknown request id {request_id!r}{detail}", data={"id": request_id}
                ),
                b"",
            )
            return
        error = message.get("error")
        if error is not None:
            entry.error = RemoteError(
                entry.method, self.peer, error if isinstance(error, dict) else {"message": str(error)}
            )
        else:
            entry.result = message.get("result")
        entry.done.set()


async def _raise(error: BaseException) -> Any:
    raise error
