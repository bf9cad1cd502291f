"""Splitting a byte stream into newline-delimited lines, with a hard length limit per line.

ACP is JSON-RPC 2.0 with one message per line; a peer that never sends a newline must not make us
buffer without bound. Used by the connection's reader, the live tap and the subprocess bridge.
"""

from __future__ import annotations

from collections.abc import Sequence

from acp_sim.envelope import EXCERPT_CHARS, excerpt
from acp_sim.errors import LineTooLong

DEFAULT_MAX_LINE_BYTES = 8 * 1024 * 1024


class LineSplitter:
    """Splits a byte stream into lines with a hard length limit and no unbounded buffering.

    A line over the limit is dropped as it streams in (only the first bytes are kept for the
    error message) and reported once its end arrives, so the next line is read normally.
    """

    def __init__(self, max_line_bytes: int) -> None:
        self.max_line_bytes = max_line_bytes
        self._partial = b""
        self._discarding: bytes | None = None  # excerpt of an over-long line being skipped
        self._discarded = 0

    def feed(self, data: bytes) -> Sequence[bytes | LineTooLong]:
        """The lines ``data`` completes, in order, each without its newline (or, for one over the
        limit, what reports it). A list, not a generator: a write usually arrives as one item of one
        line, and a generator's frame cost more than the split."""
        if self._partial:
            data = self._partial + data
            self._partial = b""
        lines = data.split(b"\n")
        rest = lines.pop()
        result: Sequence[bytes | LineTooLong] = lines
        if self._discarding is not None or len(data) > self.max_line_bytes:  # else no line is too long
            result = [self._checked(line) for line in lines]
        if self._discarding is not None:
            self._discarded += len(rest)
        elif len(rest) > self.max_line_bytes:
            self._discarding, self._discarded = rest[:EXCERPT_CHARS], len(rest)
        else:
            self._partial = rest
        return result

    def _checked(self, line: bytes) -> bytes | LineTooLong:
        if self._discarding is not None:  # the end of an over-long line
            return self._too_long(self._discarding, self._discarded + len(line))
        if len(line) > self.max_line_bytes:
            return self._too_long(line[:EXCERPT_CHARS], len(line))
        return line

    def _too_long(self, head: bytes, size: int) -> LineTooLong:
        self._discarding, self._discarded = None, 0
        return LineTooLong(
            f"Line of {size} bytes exceeds the limit of {self.max_line_bytes} bytes; it was discarded",
            data={"excerpt": excerpt(head), "bytes": size, "limit": self.max_line_bytes},
        )

    @property
    def leftover(self) -> bytes:
        return self._partial
