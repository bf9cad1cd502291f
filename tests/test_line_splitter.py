"""The line splitter against the plain reading of a stream: split it all on newlines at once.

However the bytes arrive (one write per item, lines split across items, several lines in one
item), the splitter must yield the same lines in the same order, report each line over the limit
by its size instead of the line, and hold back no more than one short unfinished line.
"""

from __future__ import annotations

from itertools import pairwise

from hypothesis import given
from hypothesis import strategies as st

from acp_sim.errors import LineTooLong
from acp_sim.line_splitter import LineSplitter

LIMIT = 8


def _expected(stream: bytes) -> tuple[list[bytes | int], bytes]:
    """Each complete line, or its size when over the limit; and the unfinished tail kept."""
    *lines, tail = stream.split(b"\n")
    return [line if len(line) <= LIMIT else len(line) for line in lines], tail if len(tail) <= LIMIT else b""


@given(
    stream=st.lists(st.sampled_from([b"a", b"bc", b"\n", b"defghij"]), max_size=40).map(b"".join),
    cuts=st.lists(st.integers(0, 400), max_size=12),
)
def test_any_chunking_gives_the_lines_of_the_whole_stream(stream: bytes, cuts: list[int]) -> None:
    bounds = sorted({0, len(stream), *(c for c in cuts if c < len(stream))})
    splitter = LineSplitter(LIMIT)
    got: list[bytes | int] = []
    for start, end in pairwise(bounds):
        for line in splitter.feed(stream[start:end]):
            got.append(line.data["bytes"] if isinstance(line, LineTooLong) else line)
            assert isinstance(line, LineTooLong) or len(line) <= LIMIT
        assert len(splitter.leftover) <= LIMIT
    lines, tail = _expected(stream)
    assert got == lines
    assert splitter.leftover == tail


def test_an_over_long_line_is_reported_with_its_opening_bytes() -> None:
    splitter = LineSplitter(LIMIT)
    assert list(splitter.feed(b"0123456789")) == []  # no newline yet: nothing to report
    out = list(splitter.feed(b"abc\nok\n"))
    assert isinstance(out[0], LineTooLong)
    assert out[0].data["bytes"] == 13
    assert out[0].data["excerpt"].startswith("0123456789")
    assert out[1:] == [b"ok"]


def test_line_splitter_never_holds_more_than_the_limit() -> None:
    splitter = LineSplitter(100)
    for _ in range(50):
        assert list(splitter.feed(b"x" * 1000)) == []
        assert len(splitter.leftover) <= 100
    out = list(splitter.feed(b"tail\nok\n"))
    assert isinstance(out[0], LineTooLong)
    assert out[0].data["bytes"] == 50004
    assert out[1] == b"ok"
