"""Byte streams the wire runs on: an in-memory duplex pipe and non-blocking stdio file descriptors.

anyio has memory *object* streams and process pipes but no in-memory byte pipe and no stdio stream
that works on both backends without a thread per read; these fill that gap and nothing more.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import anyio
from anyio.abc import ByteReceiveStream, ByteSendStream
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from anyio.streams.stapled import StapledByteStream

# How many writes may sit in an in-memory pipe before the writer waits. A real pipe holds 64 KiB;
# a bound keeps a stalled reader from growing memory without end, like a pipe would.
DEFAULT_PIPE_ITEMS = 1024


@dataclass(eq=False)
class MemoryByteSendStream(ByteSendStream):
    """Byte send side of an in-memory pipe; each ``send`` is delivered as one item, never split."""

    _items: MemoryObjectSendStream[bytes]

    async def send(self, item: bytes) -> None:
        # Fast path without anyio's checkpoint: a write into a pipe with room does not yield,
        # like a write to a real pipe; this halves the scheduler rounds per simulated chunk.
        try:
            try:
                self._items.send_nowait(item)
            except anyio.WouldBlock:
                await self._items.send(item)
        except anyio.BrokenResourceError:
            raise anyio.BrokenResourceError("the reading side of the pipe is closed") from None

    async def aclose(self) -> None:
        await self._items.aclose()


@dataclass(eq=False)
class MemoryByteReceiveStream(ByteReceiveStream):
    _items: MemoryObjectReceiveStream[bytes]

    async def receive(self, max_bytes: int = 65536) -> bytes:
        # max_bytes is advisory for byte streams; items are whole writes, which keeps lines intact.
        # Fast path as in send: only wait (and yield) when the pipe is empty.
        try:
            return self._items.receive_nowait()
        except anyio.WouldBlock:
            return await self._items.receive()

    async def aclose(self) -> None:
        await self._items.aclose()


def memory_pipe(
    max_items: float = DEFAULT_PIPE_ITEMS,
) -> tuple[MemoryByteSendStream, MemoryByteReceiveStream]:
    send, receive = anyio.create_memory_object_stream[bytes](max_buffer_size=max_items)
    return MemoryByteSendStream(send), MemoryByteReceiveStream(receive)


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
