"""Byte streams the wire runs on: an in-memory duplex pipe and non-blocking stdio file descriptors.

anyio has memory *object* streams and process pipes but no in-memory byte pipe and no stdio stream
that works on both backends without a thread per read; these fill that gap and nothing more.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.abc import ByteReceiveStream, ByteSendStream
from anyio.streams.stapled import StapledByteStream

from acp_sim.loop_primitives import loop_event

# How many writes may sit in an in-memory pipe before the writer waits. A real pipe holds 64 KiB;
# a bound keeps a stalled reader from growing memory without end, like a pipe would.
DEFAULT_PIPE_ITEMS = 1024


class _Pipe:
    """One direction of an in-memory pipe: whole writes, in order, at most ``max_items`` waiting.

    Its own small queue rather than anyio's memory object stream, whose blocking receive took a
    checkpoint (an extra scheduler step), an ``anyio.Event`` and a scan of the receiver's cancel
    scopes per wake-up of the connection's reader.
    Neither side yields when it need not wait (a pipe with room, a pipe with data); a side that
    waits does so on the loop's own event, a checkpoint, and cancellation reaches it as usual.
    """

    def __init__(self, max_items: float) -> None:
        self.items: deque[bytes] = deque()
        self.max_items = max_items
        self.send_closed = False
        self.receive_closed = False
        self.reader: Any = None
        """The waiting receiver's event (one reader per pipe, as on a real pipe)."""
        self.writers: list[Any] = []
        """Events of senders waiting for room."""
        self._new_event: Callable[[], Any] | None = None

    def event(self) -> Any:
        if self._new_event is None:
            self._new_event = loop_event()
        return self._new_event()

    def wake_reader(self) -> None:
        reader, self.reader = self.reader, None
        if reader is not None:
            reader.set()

    def wake_writers(self) -> None:
        writers, self.writers = self.writers, []
        for writer in writers:
            writer.set()  # each rechecks for room: a cancelled one never holds up the others


@dataclass(eq=False)
class MemoryByteSendStream(ByteSendStream):
    """Byte send side of an in-memory pipe; each ``send`` is delivered as one item, never split.

    A write into a pipe with room does not yield, like a write to a real pipe."""

    _pipe: _Pipe

    async def send(self, item: bytes) -> None:
        pipe = self._pipe
        while True:
            if pipe.send_closed:
                raise anyio.ClosedResourceError
            if pipe.receive_closed:
                raise anyio.BrokenResourceError("the reading side of the pipe is closed")
            if len(pipe.items) < pipe.max_items:
                break
            room = pipe.event()
            pipe.writers.append(room)
            await room.wait()
        pipe.items.append(item)
        reader = pipe.reader
        if reader is not None:  # inline wake_reader: this runs once per message
            pipe.reader = None
            reader.set()

    def writable_now(self) -> bool:
        """Whether ``send`` would return without waiting or raising (an open pipe with room)."""
        pipe = self._pipe
        return not (pipe.send_closed or pipe.receive_closed) and len(pipe.items) < pipe.max_items

    def send_nowait(self, item: bytes) -> None:
        """``send`` for a caller that checked ``writable_now``: lets a writer that must not block
        (the agent's chunk ticker) write without an await."""
        pipe = self._pipe
        pipe.items.append(item)
        reader = pipe.reader
        if reader is not None:
            pipe.reader = None
            reader.set()

    async def aclose(self) -> None:
        pipe = self._pipe
        pipe.send_closed = True
        pipe.wake_reader()  # it reads what is left, then the end of the stream
        pipe.wake_writers()


@dataclass(eq=False)
class MemoryByteReceiveStream(ByteReceiveStream):
    _pipe: _Pipe

    async def receive(self, max_bytes: int = 65536) -> bytes:
        # max_bytes is advisory for byte streams; items are whole writes, which keeps lines intact.
        pipe = self._pipe
        while True:
            if pipe.receive_closed:
                raise anyio.ClosedResourceError
            if pipe.items:
                break
            if pipe.send_closed:
                raise anyio.EndOfStream
            data = pipe.reader = pipe.event()
            await data.wait()
        if pipe.writers:
            pipe.wake_writers()
        return pipe.items.popleft()

    async def aclose(self) -> None:
        pipe = self._pipe
        pipe.receive_closed = True
        pipe.items.clear()  # nobody will read them
        pipe.wake_writers()  # a blocked writer learns the reader has gone
        pipe.wake_reader()


def memory_pipe(
    max_items: float = DEFAULT_PIPE_ITEMS,
) -> tuple[MemoryByteSendStream, MemoryByteReceiveStream]:
    pipe = _Pipe(max_items)
    return MemoryByteSendStream(pipe), MemoryByteReceiveStream(pipe)


@dataclass
class DuplexPair:
    """Two ends of an in-memory full-duplex byte connection (like a socketpair)."""

    client: StapledByteStream
    agent: StapledByteStream


def memory_duplex(max_items: float = DEFAULT_PIPE_ITEMS) -> DuplexPair:
    to_agent_send, to_agent_receive = memory_pipe(max_items)
    to_client_send, to_client_receive = memory_pipe(max_items)
    return DuplexPair(
        client=StapledByteStream(to_agent_send, to_client_receive),
        agent=StapledByteStream(to_client_send, to_agent_receive),
    )


@dataclass(eq=False)
class FdReceiveStream(ByteReceiveStream):
    """Reads a file descriptor without blocking the event loop (used for the agent's stdin)."""

    fd: int
    _blocking: bool = field(init=False)

    def __post_init__(self) -> None:
        self._blocking = os.get_blocking(self.fd)
        os.set_blocking(self.fd, False)

    async def receive(self, max_bytes: int = 65536) -> bytes:
        while True:
            try:
                data = os.read(self.fd, max_bytes)
            except BlockingIOError:
                await anyio.wait_readable(self.fd)
                continue
            if not data:
                raise anyio.EndOfStream
            return data

    async def aclose(self) -> None:
        os.set_blocking(self.fd, self._blocking)


@dataclass(eq=False)
class FdSendStream(ByteSendStream):
    """Writes a file descriptor without blocking the event loop (used for the agent's stdout)."""

    fd: int
    _blocking: bool = field(init=False)

    def __post_init__(self) -> None:
        self._blocking = os.get_blocking(self.fd)
        os.set_blocking(self.fd, False)

    async def send(self, item: bytes) -> None:
        view = memoryview(item)
        # Once part of a write is out, the rest must follow even if the caller is cancelled:
        # half a JSON-RPC line would corrupt every line after it.
        with anyio.CancelScope() as scope:
            while view:
                try:
                    written = os.write(self.fd, view)
                except BlockingIOError:
                    await anyio.wait_writable(self.fd)
                    continue
                except BrokenPipeError:
                    raise anyio.BrokenResourceError("the reader of this pipe has gone") from None
                view = view[written:]
                scope.shield = True

    async def aclose(self) -> None:
        os.set_blocking(self.fd, self._blocking)


def stdio_stream() -> StapledByteStream:
    """The process's own stdin/stdout as one byte stream."""
    return StapledByteStream(FdSendStream(1), FdReceiveStream(0))
