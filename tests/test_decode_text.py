"""``acp_sim.wire.decode_text`` is ``json.loads``: the same value, or the same error, for any text.

It reads with pydantic-core's parser first (the fast path) and lets the standard decoder decide
whatever that parser refuses. These tests hold the fast path to the standard decoder's result, type
for type and key order included, on generated documents and on the edge cases where the two
parsers are known to disagree.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from acp_sim.wire import decode_text


def _same(a: Any, b: Any) -> bool:
    """Equal, with the same types all the way down (1 is not 1.0, nan is nan, -0.0 is not 0.0)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _outcome(text: str) -> tuple[str, Any]:
    try:
        return "value", json.loads(text)
    except (ValueError, RecursionError) as exc:
        return "error", (type(exc), str(exc))


def _assert_like_json(text: str) -> None:
    kind, expected = _outcome(text)
    if kind == "value":
        assert _same(decode_text(text), expected), text
    else:
        with pytest.raises(expected[0]) as info:
            decode_text(text)
        assert str(info.value) == expected[1]


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(st.characters(codec="utf-8")),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(json_values, st.booleans(), st.sampled_from([None, 1, "\t"]))
def test_documents_decode_as_json_decodes_them(value: Any, ascii: bool, indent: int | str | None) -> None:
    _assert_like_json(json.dumps(value, ensure_ascii=ascii, indent=indent))


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet='{}[]":,.-+eE0123456789 \t\r\n\x0b\x0cabtrufnlsNIfy\\u\u2028\xa0', max_size=24))
def test_text_near_json_decodes_or_fails_as_json_does(text: str) -> None:
    _assert_like_json(text)


@pytest.mark.parametrize(
    "text",
    [
        '{"a":"\\ud800"}',  # a lone surrogate escape: json keeps it, pydantic-core refuses it
        '{"a":"\ud800"}',  # a raw lone surrogate (a line read with surrogatepass)
        '{"a":"\\ud83dx"}',
        '{"a":"\\ud83d\\ude00"}',
        '{"a":' + "1" * 4301 + "}",  # past Python's digit limit: json's own error
        '{"a":' + "1" * 4300 + "}",
        '{"a":1,"b":2,"a":3}',  # the last duplicate wins, in the first one's place
        '{"a":NaN,"b":-Infinity,"c":1e999,"d":-0.0,"e":-0}',
        "[" * 3000 + "]" * 3000,  # deeper than pydantic-core goes
        '{"a":"\t"}',
        '{"a":1}\x0c',
        '{"a":1} x',
        "",
        "18446744073709551616",
    ],
)
def test_where_the_parsers_differ_json_decides(text: str) -> None:
    _assert_like_json(text)
