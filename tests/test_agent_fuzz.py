"""Fuzzing the agent's wire parser and dispatch: no input line kills it, hangs it or goes unanswered.

Hypothesis writes lines to the in-process agent on virtual time (a hang costs no wall time: the
clock jumps to the deadline): JSON-RPC with wrong types, odd ids, every method with random
params (some naming the live session), huge and deeply nested values, lone surrogates, bytes
that are not UTF-8. After them one last request must be answered. Invariants: every line that
asks for an answer got exactly one (a result or a JSON-RPC error), the agent is still serving,
everything it wrote is UTF-8 JSON, and its trace parses back event for event. One stdio smoke
run sends the nastiest fixed lines to ``acp-sim agent``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from acp_sim import clock
from acp_sim.agent import InProcessAgent
from acp_sim.envelope import envelope_error, too_deep
from acp_sim.orchestrator.launcher import AgentLink
from acp_sim.profile import DEFAULT, with_overrides
from acp_sim.trace import load_jsonl

from .test_agent_envelope import Raw
from .test_agent_support import stdio

SID = "<live session>"  # replaced by the session the fuzz run opened
METHODS = [
    "initialize",
    "authenticate",
    "logout",
    "session/new",
    "session/load",
    "session/resume",
    "session/list",
    "session/fork",
    "session/close",
    "session/set_mode",
    "session/set_model",
    "session/set_config_option",
    "session/prompt",
    "session/cancel",
    "fs/read_text_file",
    "_unknown/ext",
]
PROFILE = with_overrides(DEFAULT, session_new=0.5, chunk_count=3, chunk_interval=0.2)

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
ids = (
    st.integers(-3, 5)
    | st.text(max_size=3)
    | st.none()
    | st.booleans()
    | st.floats(allow_nan=False)
    | st.integers(min_value=2**63)
    | st.lists(st.integers(0, 2), max_size=2)
    | st.dictionaries(st.text(max_size=2), st.integers(0, 2), max_size=2)
    | st.just("\ud800")
)
methods = (
    st.sampled_from(METHODS)
    | st.text(max_size=6)
    | st.integers()
    | st.none()
    | st.lists(st.text(max_size=2), max_size=1)
)
session_ids = st.just(SID) | st.text(max_size=6) | st.integers() | st.none()
params = (
    json_values
    | st.fixed_dictionaries(
        {"sessionId": session_ids},
        optional={
            "prompt": st.just([{"type": "text", "text": "go"}]) | json_values,
            "modelId": st.sampled_from(["default", "haiku", "nope"]) | json_values,
            "modeId": st.sampled_from(["default", "plan", "nope"]) | json_values,
            "configId": st.sampled_from(["model", "mode", "x"]) | json_values,
            "value": st.text(max_size=6) | json_values,
            "cwd": st.just("/w") | json_values,
            "mcpServers": st.just([]) | json_values,
            "protocolVersion": st.integers(-1, 70000) | json_values,
            "cursor": st.text(max_size=3),
        },
    )
    | st.integers(1_000, 200_000).map(lambda n: {"sessionId": SID, "blob": "x" * n})  # huge
)
messages = st.fixed_dictionaries(
    {},
    optional={
        "jsonrpc": st.just("2.0") | st.sampled_from(["1.0", "2", ""]) | st.floats(allow_nan=False),
        "id": ids,
        "method": methods,
        "params": params,
        "result": json_values,
        "error": json_values,
    },
)


def _encode(message: dict[str, Any], ascii_only: bool) -> bytes:
    return json.dumps(message, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


def deep(n: int) -> bytes:
    return b'{"jsonrpc":"2.0","id":"deep","method":"session/prompt","params":' + b"[" * n + b"]" * n + b"}"


lines = (
    st.builds(_encode, messages, st.booleans())
    | st.builds(_encode, messages, st.booleans()).map(lambda b: b.replace(b'"2.0"', b'"2.0\xff"', 1))
    | st.binary(max_size=40)  # mostly not UTF-8, mostly not JSON
    | st.integers(10, 6_000).map(deep)  # deeper than any recursion limit at the top end
    | st.sampled_from([b"[]", b"[1]", b"42", b'"s"', b"null", b"{}", b'{"id":1}', b"1" * 5000])
).map(lambda line: line.replace(b"\n", b" "))


def expected_answers(line: bytes) -> int:
    """How many answers the agent owes for a line: one for a request or input it cannot act on."""
    if not line.strip():
        return 0
    try:
        message = json.loads(line)
    except (ValueError, RecursionError):
        return 1  # -32700
    if not isinstance(message, dict) or too_deep(message):
        return 1
    if envelope_error(message, line) is not None:
        return 1
    if "method" in message and "id" in message:
        return 1  # its result or error (or -32600 for an id already in flight)
    return 0  # a notification or a response: nothing to answer


async def fuzz_once(batch: list[bytes]) -> None:
    launcher = InProcessAgent(PROFILE)
    async with launcher.launch() as link:
        raw = Raw(link)
        await raw.call("setup-1", "initialize", {"protocolVersion": 1})
        sid = (await raw.call("setup-2", "session/new", {"cwd": "/w", "mcpServers": []}))["result"][
            "sessionId"
        ]
        start = len(raw.seen)
        owed = 0
        for line in batch:
            line = line.replace(SID.encode(), sid.encode())
            owed += expected_answers(line)
            await raw.send(line)
        await raw.send({"jsonrpc": "2.0", "id": "last", "method": "session/list", "params": {}})
        with anyio.fail_after(3600):  # virtual: a hang fails at once in wall time
            await wait_answers(raw, start, owed + 1)
        agent = launcher.current
        assert agent.exit_reason is None  # still serving
    answers = [m for m in raw.seen[start:] if "method" not in m]
    assert len(answers) == owed + 1
    for answer in answers:
        assert ("result" in answer) != ("error" in answer), answer
        if "error" in answer:
            assert isinstance(answer["error"]["code"], int)
            assert isinstance(answer["error"]["message"], str)
    text = agent.trace.to_jsonl()
    text.encode("utf-8")  # writable as a UTF-8 file
    assert len(load_jsonl(text.splitlines())) == len(agent.trace.events)


async def wait_answers(raw: Raw, start: int, count: int) -> None:
    """Read until ``count`` answers (messages without a method) arrived after ``seen[start]``."""
    await raw.until(lambda _: sum(1 for m in raw.seen[start:] if "method" not in m) >= count, start)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
@given(batch=st.lists(lines, min_size=1, max_size=8))
def test_no_line_kills_hangs_or_goes_unanswered_in_process(batch: list[bytes]) -> None:
    clock.run(fuzz_once, batch, backend="asyncio")


NASTY = [
    b'{"jsonrpc":"2.0","id":{"a":1},"method":"initialize","params":{"protocolVersion":1}}',
    b'{"jsonrpc":"2.0","id":[1],"method":"session/new","params":{}}',
    b'{"jsonrpc":"2.0","id":"\\ud800","method":"nope","params":{}}',
    b'{"jsonrpc":"2.0","id":99999999999999999999999,"method":"session/list","params":{}}',
    b'{"jsonrpc":"2.0","id":7,"method":"session/prompt","params":{"sessionId":"\xff\xfe"}}',
    deep(100_000),
    b'{"jsonrpc":"2.0","id":8,"method":"session/list","params":{"cwd":"' + b"x" * 300_000 + b'"}}',
    b'{"jsonrpc":"1.0","id":9,"method":"initialize","params":{"protocolVersion":1}}',
    b'{"jsonrpc":"2.0","id":10,"method":"initialize","params":{"protocolVersion":"1"}}',
    b"\xc3\x28\xa0\xa1",
    b"1" * 5000,
]


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_stdio_agent_survives_the_nastiest_lines(tmp_path: Path) -> None:
    trace = tmp_path / "trace.jsonl"
    async with stdio("--trace", str(trace)).launch() as link:
        raw = Raw(AgentLink(link.receive, link.send, link.name))
        await raw.call(1, "initialize", {"protocolVersion": 1})
        start = len(raw.seen)
        for line in NASTY:
            await raw.send(line)
        await raw.call("last", "session/list", {})
        owed = sum(expected_answers(line) for line in NASTY)
        with anyio.fail_after(30):
            await wait_answers(raw, start, owed + 1)
    answers = [m for m in raw.seen[start:] if "method" not in m]
    assert len(answers) == owed + 1
    events = load_jsonl(trace.read_text(encoding="utf-8").splitlines())
    assert events[-1].kind == "exit"
    assert events[-1].detail == {"reason": "eof", "code": 0}
