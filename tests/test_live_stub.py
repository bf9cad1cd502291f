"""The model stub: the Messages API the Claude Code CLI calls, on loopback only, driven by a seeded profile.

Everything here talks to a real socket, so it runs on real time (both backends), with a tiny h11
client: the stub must speak plain HTTP/1.1 that any client parses.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import h11
import pytest

from acp_sim.errors import ProfileError
from acp_sim.live.model_stub import ModelStub, NonLoopbackAddress, require_loopback
from acp_sim.live.redact import REDACTED, Redactor
from acp_sim.live.stub_profile import StubFault, StubProfile, StubReply, ToolUseRule, load_stub_profile

# Real sockets and processes: real time, on each backend (async tests); sync tests pick a backend
# for the subprocess they start where it matters.
REAL_TIME = pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
BACKENDS = pytest.mark.parametrize("backend", ["asyncio", "trio"])
pytestmark = pytest.mark.anyio

PLANTED_KEY = "sk-ant-api03-PLANTED-test-key-0123456789"
USER_ID = json.dumps(
    {"device_id": "d", "account_uuid": "", "session_id": "11111111-2222-4333-8444-555555555555"}
)


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    complete: bool

    def json(self) -> Any:
        return json.loads(self.body)

    def events(self) -> list[tuple[str, dict[str, Any]]]:
        out = []
        for block in self.body.decode().split("\n\n"):
            if not block.strip():
                continue
            fields = dict(line.split(": ", 1) for line in block.splitlines())
            out.append((fields["event"], json.loads(fields["data"])))
        return out


async def call(base_url: str, method: str, target: str, body: Any = None, *, key: str = PLANTED_KEY) -> Reply:
    host, port = base_url.removeprefix("http://").rsplit(":", 1)
    payload = json.dumps(body).encode() if body is not None else b""
    headers = [("host", f"{host}:{port}"), ("x-api-key", key), ("content-length", str(len(payload)))]
    conn = h11.Connection(h11.CLIENT)
    async with await anyio.connect_tcp(host, int(port)) as stream:
        await stream.send(conn.send(h11.Request(method=method, target=target, headers=headers)))
        await stream.send(conn.send(h11.Data(data=payload)) or b"")
        await stream.send(conn.send(h11.EndOfMessage()) or b"")
        status, got, data, complete = 0, {}, bytearray(), False
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                try:
                    conn.receive_data(await stream.receive())
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    break  # the server closed mid-response
                except h11.RemoteProtocolError:
                    break
                continue
            if isinstance(event, h11.Response):
                status = event.status_code
                got = {k.decode(): v.decode() for k, v in event.headers}
            elif isinstance(event, h11.Data):
                data += event.data
            elif isinstance(event, h11.EndOfMessage):
                complete = True
                break
            else:
                break
    return Reply(status, got, bytes(data), complete)


def messages(prompt: str, *, stream: bool = True, tool_result: str | None = None) -> dict[str, Any]:
    history: list[dict[str, Any]] = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "<system-reminder>\ncontext\n</system-reminder>\n"},
                {"type": "text", "text": prompt},
            ],
        }
    ]
    if tool_result is not None:
        history += [
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": tool_result, "name": "Bash", "input": {}}],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": tool_result, "content": "ok"}],
            },
        ]
    return {
        "model": "claude-sonnet-4-6",
        "max_tokens": 32000,
        "stream": stream,
        "messages": history,
        "metadata": {"user_id": USER_ID},
        "system": [{"type": "text", "text": "You are Claude Code."}],
        "tools": [],
        "thinking": {"type": "adaptive"},
    }


@pytest.mark.parametrize(
    "host", ["0.0.0.0", "192.168.1.20", "::", "10.0.0.1", "localhost", "", "example.com"]
)
@REAL_TIME
async def test_the_stub_refuses_every_address_but_loopback(host: str) -> None:
    with pytest.raises(NonLoopbackAddress, match="loopback only"):
        async with ModelStub().serve(host=host):
            pass  # pragma: no cover


@REAL_TIME
async def test_loopback_literals_are_accepted() -> None:
    assert require_loopback("127.0.0.1") == "127.0.0.1"
    assert require_loopback("127.1.2.3") == "127.1.2.3"
    assert require_loopback("::1") == "::1"
    async with ModelStub().serve("127.0.0.1") as url:
        assert url.startswith("http://127.0.0.1:")
        assert (await call(url, "HEAD", "/")).status == 200


@REAL_TIME
async def test_a_streamed_turn_is_the_real_sse_event_sequence() -> None:
    profile = StubProfile(reply=StubReply(deltas=3, input_tokens=10, output_tokens=5))
    stub = ModelStub(profile)
    async with stub.serve() as url:
        head = await call(url, "HEAD", "/")
        reply = await call(url, "POST", "/v1/messages?beta=true", messages("ALPHA"))
    assert head.status == 200
    assert reply.status == 200
    assert reply.complete
    assert reply.headers["content-type"] == "text/event-stream"
    events = reply.events()
    names = [name for name, _ in events]
    assert names == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert all(data["type"] == name for name, data in events)
    start = events[0][1]["message"]
    assert start["role"] == "assistant"
    assert start["model"] == "claude-sonnet-4-6"
    assert start["content"] == []
    assert start["stop_reason"] is None
    # message_start carries the input side of usage: the adapter's usage_update.used is its sum (11).
    assert start["usage"] == {
        "input_tokens": 10,
        "output_tokens": 1,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }
    assert events[1][1]["content_block"] == {"type": "text", "text": ""}
    assert [data["delta"]["text"] for name, data in events if name == "content_block_delta"] == [
        "<ALPHA|d0>",
        "<ALPHA|d1>",
        "<ALPHA|d2>",
    ]
    assert events[-2][1] == {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {"output_tokens": 5},
    }
    [head_record, record] = stub.records
    assert head_record.outcome == "head"
    assert record.outcome == "ok"
    assert record.session == "11111111-2222-4333-8444-555555555555"
    assert record.prompt == "ALPHA"
    assert record.deltas == 3
    assert record.stream is True
    assert record.auth == "x-api-key"


@REAL_TIME
async def test_a_tool_use_then_the_tool_result_answer() -> None:
    profile = StubProfile(
        reply=StubReply(deltas=1), tool_use=[ToolUseRule(prompt_contains="TOOL", text_before="Let me")]
    )
    async with ModelStub(profile, seed=3).serve() as url:
        first = await call(url, "POST", "/v1/messages", messages("please TOOL"))
        events = first.events()
        tool_start = next(
            d for n, d in events if n == "content_block_start" and d["content_block"]["type"] == "tool_use"
        )
        tool_id = tool_start["content_block"]["id"]
        second = await call(url, "POST", "/v1/messages", messages("please TOOL", tool_result=tool_id))
    blocks = [d["content_block"] for n, d in events if n == "content_block_start"]
    assert blocks[0] == {"type": "text", "text": ""}
    assert blocks[1] == {"type": "tool_use", "id": tool_id, "name": "Bash", "input": {}}
    assert tool_id.startswith("toolu_")
    partial = [d["delta"] for n, d in events if n == "content_block_delta" and d["index"] == 1]
    assert [json.loads(p["partial_json"]) for p in partial] == [
        {"command": "touch acp-sim-tool-ran", "description": "Create a marker file"}
    ]
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"
    assert [d["delta"]["text"] for n, d in second.events() if n == "content_block_delta"] == [
        "<please TOOL|d0>"
    ]
    assert second.events()[-2][1]["delta"]["stop_reason"] == "end_turn"


@REAL_TIME
async def test_tool_ids_come_from_the_seed() -> None:
    profile = StubProfile(tool_use=[ToolUseRule(prompt_contains="TOOL")])

    async def tool_id(seed: int) -> str:
        async with ModelStub(profile, seed=seed).serve() as url:
            reply = await call(url, "POST", "/v1/messages", messages("TOOL"))
        return next(d["content_block"]["id"] for n, d in reply.events() if n == "content_block_start")

    assert await tool_id(1) == await tool_id(1)
    assert await tool_id(1) != await tool_id(2)


@pytest.mark.parametrize(
    ("kind", "status", "error_type"),
    [("overloaded", 529, "overloaded_error"), ("server_error", 500, "api_error")],
)
@REAL_TIME
async def test_api_errors_strike_once_then_the_retry_succeeds(
    kind: str, status: int, error_type: str
) -> None:
    stub = ModelStub(StubProfile(faults=[StubFault(kind=kind, prompt_contains="FAIL")]))  # type: ignore[arg-type]
    async with stub.serve() as url:
        other = await call(url, "POST", "/v1/messages", messages("fine"))
        failed = await call(url, "POST", "/v1/messages", messages("FAIL now"))
        retried = await call(url, "POST", "/v1/messages", messages("FAIL now"))
    assert other.status == 200
    assert failed.status == status
    assert failed.json() == {
        "type": "error",
        "error": {"type": error_type, "message": failed.json()["error"]["message"]},
    }
    assert failed.headers["x-should-retry"] == "true"
    assert retried.status == 200
    assert [r.outcome for r in stub.records] == ["ok", kind, "ok"]


@REAL_TIME
async def test_the_nth_matching_request_and_unlimited_faults() -> None:
    profile = StubProfile(
        faults=[
            StubFault(kind="server_error", request=2),
            StubFault(kind="overloaded", prompt_contains="ALWAYS", times=None),
        ]
    )
    stub = ModelStub(profile)
    async with stub.serve() as url:
        statuses = [
            (await call(url, "POST", "/v1/messages", messages(p))).status
            for p in ("a", "b", "c", "ALWAYS", "ALWAYS")
        ]
    # Fault 1 counts every request (no filter): the 2nd is hit. Fault 2 strikes every ALWAYS request.
    assert statuses == [200, 500, 200, 529, 529]


@REAL_TIME
async def test_mid_stream_faults_drop_error_and_stall() -> None:
    profile = StubProfile(
        reply=StubReply(deltas=4),
        faults=[
            StubFault(kind="drop", prompt_contains="DROP", after_deltas=2),
            StubFault(kind="stream_error", prompt_contains="SERR", after_deltas=1),
            StubFault(kind="stall", prompt_contains="STALL", after_deltas=1, seconds=0.05),
        ],
    )
    stub = ModelStub(profile)
    async with stub.serve() as url:
        dropped = await call(url, "POST", "/v1/messages", messages("DROP"))
        errored = await call(url, "POST", "/v1/messages", messages("SERR"))
        stalled = await call(url, "POST", "/v1/messages", messages("STALL"))
    assert not dropped.complete  # the chunked body never ended
    assert [n for n, _ in dropped.events()].count("content_block_delta") == 2
    assert "message_stop" not in [n for n, _ in dropped.events()]
    error_events = errored.events()
    assert errored.complete
    assert [n for n, _ in error_events][-1] == "error"
    assert error_events[-1][1] == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
    }
    assert [n for n, _ in error_events].count("content_block_delta") == 1
    assert stalled.complete
    assert [n for n, _ in stalled.events()].count("content_block_delta") == 4
    assert [(r.outcome, r.deltas) for r in stub.records] == [
        ("dropped", 2),
        ("stream_error", 1),
        ("stalled", 4),
    ]


@REAL_TIME
async def test_mid_stream_faults_on_a_non_streamed_request() -> None:
    profile = StubProfile(
        faults=[
            StubFault(kind="drop", prompt_contains="DROP"),
            StubFault(kind="stream_error", prompt_contains="SERR"),
            StubFault(kind="stall", prompt_contains="STALL", seconds=0.01),
        ]
    )
    stub = ModelStub(profile)
    async with stub.serve() as url:
        dropped = await call(url, "POST", "/v1/messages", messages("DROP", stream=False))
        errored = await call(url, "POST", "/v1/messages", messages("SERR", stream=False))
        stalled = await call(url, "POST", "/v1/messages", messages("STALL", stream=False))
    assert (dropped.status, dropped.complete) == (0, False)  # no response at all
    assert errored.status == 529
    assert stalled.status == 200
    assert stalled.json()["content"] == [{"type": "text", "text": "<STALL|d0>"}]
    assert [r.outcome for r in stub.records] == ["dropped", "stream_error", "stalled"]


@REAL_TIME
async def test_non_streaming_count_tokens_unknown_paths_and_bad_bodies() -> None:
    stub = ModelStub(StubProfile(reply=StubReply(deltas=2)))
    async with stub.serve() as url:
        plain = await call(url, "POST", "/v1/messages", messages("BRAVO", stream=False))
        count = await call(url, "POST", "/v1/messages/count_tokens?beta=true", {"model": "m", "messages": []})
        missing = await call(url, "GET", "/v1/models")
        bad = await call(url, "POST", "/v1/messages", {"messages": "nope"})
    body = plain.json()
    assert plain.status == 200
    assert body["content"] == [{"type": "text", "text": "<BRAVO|d0><BRAVO|d1>"}]
    assert body["stop_reason"] == "end_turn"
    assert body["usage"]["output_tokens"] == 5
    assert count.status == 200
    assert count.json()["input_tokens"] > 0
    assert missing.status == 404
    assert missing.json()["error"]["type"] == "not_found_error"
    assert bad.status == 400
    assert bad.json()["error"]["type"] == "invalid_request_error"
    assert [r.outcome for r in stub.records] == ["ok", "count_tokens", "not_found", "bad_request"]


@REAL_TIME
async def test_keys_never_reach_the_stub_log(tmp_path: Path) -> None:
    lines: list[str] = []
    stub = ModelStub(
        StubProfile(), redactor=Redactor([PLANTED_KEY]), sink=lambda r: lines.append(r.model_dump_json())
    )
    async with stub.serve() as url:
        await call(url, "POST", f"/v1/messages?key={PLANTED_KEY}", messages(f"my key is {PLANTED_KEY}"))
        await call(
            url,
            "POST",
            "/v1/messages",
            messages("shaped like a key: sk-ant-api03-someoneelses0000"),
            key="x" * 40,
        )
    text = "\n".join(lines)
    assert PLANTED_KEY not in text
    assert "someoneelses" not in text
    assert REDACTED in text
    assert json.loads(lines[0])["auth"] == "x-api-key"


def test_stub_profiles_load_from_files_and_name_the_bad_field(tmp_path: Path) -> None:
    good = tmp_path / "stub.yaml"
    good.write_text(
        "reply: {deltas: 2, delta_interval: {kind: uniform, low: 0, high: 0.1}}\nfaults: [{kind: drop}]\n"
    )
    profile = load_stub_profile(good)
    assert profile.reply.deltas == 2
    assert profile.faults[0].kind == "drop"
    assert load_stub_profile("transcript").reply.deltas == 5
    bad = tmp_path / "bad.toml"
    bad.write_text("[reply]\ndeltas = -1\n")
    with pytest.raises(ProfileError, match=r"reply\.deltas.*-1"):
        load_stub_profile(bad)
    with pytest.raises(ProfileError, match="cannot read"):
        load_stub_profile(tmp_path / "absent.json")


@BACKENDS
def test_the_model_stub_command_prints_its_url_serves_and_stops_on_sigterm(
    tmp_path: Path, backend: str
) -> None:
    log = tmp_path / "stub.jsonl"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "acp_sim",
            "model-stub",
            "--profile",
            "transcript",
            "--log",
            str(log),
            "--backend",
            backend,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("ANTHROPIC_BASE_URL=http://127.0.0.1:")
        reply = anyio.run(call, line.split("=", 1)[1], "HEAD", "/", backend=backend)
        assert reply.status == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert json.loads(log.read_text().splitlines()[0])["outcome"] == "head"


def test_the_model_stub_command_refuses_a_public_address() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "acp_sim", "model-stub", "--host", "0.0.0.0"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "loopback only" in result.stderr
    assert result.stdout == ""
