"""Bad JSON-RPC envelopes, duplicate ids, strict protocolVersion, set_model and unknown methods.

Each case runs on the in-process agent and on ``acp-sim agent`` over stdio, through a raw client
that writes lines as given and reads every line back, so nothing between the test and the agent
fixes the input up.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from acp_sim.agent import InProcessAgent
from acp_sim.orchestrator.launcher import AgentLauncher, AgentLink
from acp_sim.trace import TraceEvent, load_jsonl

from .test_agent_support import stdio

REAL_TIME = pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
FAST = ("--session-new-latency", "0.01", "--chunk-interval", "0.05", "--chunks", "4")


class Raw:
    """Writes raw lines, reads every message the agent sends (answers its requests never)."""

    def __init__(self, link: AgentLink) -> None:
        self.link = link
        self.seen: list[dict[str, Any]] = []
        self._buffer = b""

    async def send(self, line: bytes | dict[str, Any]) -> None:
        data = json.dumps(line).encode() if isinstance(line, dict) else line
        await self.link.send.send(data + b"\n")

    async def until(self, match: Callable[[dict[str, Any]], bool], start: int = 0) -> dict[str, Any]:
        """The first message from ``seen[start]`` on that matches, reading more as needed."""
        for message in self.seen[start:]:
            if match(message):
                return message
        with anyio.fail_after(30):
            while True:
                chunk = await self.link.receive.receive()
                *lines, self._buffer = (self._buffer + chunk).split(b"\n")
                found = None
                for line in lines:
                    message = json.loads(line)
                    self.seen.append(message)
                    if found is None and match(message):
                        found = message
                if found is not None:
                    return found

    async def call(self, request_id: Any, method: str, params: dict[str, Any]) -> dict[str, Any]:
        start = len(self.seen)
        await self.send({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})
        return await self.until(answer(request_id), start)


def answer(request_id: Any) -> Callable[[dict[str, Any]], bool]:
    return lambda m: "method" not in m and m.get("id") == request_id


class Backend:
    """An in-process agent or a stdio one, and its trace afterwards."""

    def __init__(self, kind: str, tmp_path: Path, *args: str) -> None:
        self.kind = kind
        self.trace_file = tmp_path / "trace.jsonl"
        self.in_process = InProcessAgent()
        self.launcher: AgentLauncher = (
            self.in_process if kind == "in-process" else stdio(*FAST, "--trace", str(self.trace_file), *args)
        )

    def events(self) -> list[TraceEvent]:
        if self.kind == "in-process":
            text = self.in_process.current.trace.to_jsonl()
        else:
            text = self.trace_file.read_text(encoding="utf-8")
        return load_jsonl(text.splitlines())  # parses back: the trace stays valid


@asynccontextmanager
async def raw_agent(backend: Backend) -> AsyncIterator[Raw]:
    async with backend.launcher.launch() as link:
        yield Raw(link)


BACKENDS = pytest.mark.parametrize("kind", ["in-process", "stdio"])


@pytest.fixture
def anyio_backend(kind: str, request: pytest.FixtureRequest) -> Any:
    from acp_sim.clock import backend_options

    name = request.node.callspec.params.get("loop", "asyncio")
    if kind == "stdio":  # a real process: real time
        return name
    return name, backend_options(name)


LOOPS = pytest.mark.parametrize("loop", ["asyncio", "trio"])


@pytest.mark.anyio
@BACKENDS
@LOOPS
async def test_object_and_array_ids_are_invalid_requests_and_the_agent_keeps_serving(
    kind: str, loop: str, tmp_path: Path
) -> None:
    backend = Backend(kind, tmp_path)
    async with raw_agent(backend) as raw:
        bad = [
            b'{"jsonrpc":"2.0","id":{"a":1},"method":"initialize","params":{"protocolVersion":1}}',
            b'{"jsonrpc":"2.0","id":[1],"method":"session/new","params":{"cwd":"/w","mcpServers":[]}}',
            b'{"jsonrpc":"2.0","id":1.5,"method":"initialize","params":{"protocolVersion":1}}',
            b'{"jsonrpc":"2.0","id":{"a":1},"result":{}}',
            b'{"jsonrpc":"1.0","id":7,"method":"initialize","params":{"protocolVersion":1}}',
            b'{"id":8,"method":"initialize","params":{"protocolVersion":1}}',
            b'{"jsonrpc":"2.0","id":9,"method":5}',
        ]
        for line in bad:
            await raw.send(line)
        ok = await raw.call(10, "initialize", {"protocolVersion": 1})
        assert ok["result"]["protocolVersion"] == 1
        new = await raw.call(11, "session/new", {"cwd": "/w", "mcpServers": []})
        assert "sessionId" in new["result"]
    errors = [m for m in raw.seen if "error" in m]
    assert [(m["id"], m["error"]["code"]) for m in errors] == [(None, -32600)] * len(bad)
    events = backend.events()
    assert len([e for e in events if e.kind == "bad_input"]) == len(bad)
    assert [e.id for e in events if e.kind == "recv"] == [10, 11]  # nothing invalid was recorded as a message


@pytest.mark.anyio
@BACKENDS
@LOOPS
async def test_non_integer_protocol_version_is_invalid_params(kind: str, loop: str, tmp_path: Path) -> None:
    backend = Backend(kind, tmp_path)
    async with raw_agent(backend) as raw:
        for n, version in enumerate(["1", 1.5, "2024-11-05", True, None]):
            reply = await raw.call(n, "initialize", {"protocolVersion": version})
            assert reply["error"]["code"] == -32602, (version, reply)
            assert reply["error"]["data"]["errors"][0]["loc"] == "protocolVersion"
        assert (await raw.call(9, "initialize", {"protocolVersion": 1.0}))["result"]["protocolVersion"] == 1


@pytest.mark.anyio
@BACKENDS
@LOOPS
async def test_a_duplicate_in_flight_id_is_refused_naming_it_and_the_trace_stays_exact(
    kind: str, loop: str, tmp_path: Path
) -> None:
    backend = Backend(kind, tmp_path)
    async with raw_agent(backend) as raw:
        await raw.call(1, "initialize", {"protocolVersion": 1})
        sid = (await raw.call(2, "session/new", {"cwd": "/w", "mcpServers": []}))["result"]["sessionId"]
        prompt = {"sessionId": sid, "prompt": [{"type": "text", "text": "hi"}]}
        line = json.dumps(
            {"jsonrpc": "2.0", "id": "p", "method": "session/prompt", "params": prompt}
        ).encode()
        await raw.send(line + b"\n" + line)  # the second arrives while the first turn runs
        refused = await raw.until(lambda m: m.get("id") is None and "error" in m)
        assert refused["error"]["code"] == -32600
        assert "'p'" in refused["error"]["message"]
        assert refused["error"]["data"]["id"] == "p"
        done = await raw.until(answer("p"))
        assert done["result"]["stopReason"] == "end_turn"
        # Answered: the id is free again.
        again = await raw.call("p", "session/prompt", prompt)
        assert again["result"]["stopReason"] == "end_turn"
        await raw.call(3, "initialize", {"protocolVersion": 1})  # the answer before is in the trace now
    events = backend.events()
    prompts = [e for e in events if e.kind == "recv" and e.id == "p"]
    assert [(e.method, e.session, e.turn) for e in prompts] == [
        ("session/prompt", sid, 1),
        ("session/prompt", sid, 2),
    ]
    answers = [e for e in events if e.kind == "send" and e.id == "p"]
    assert [(e.method, e.session, e.turn) for e in answers] == [
        ("session/prompt", sid, 1),
        ("session/prompt", sid, 2),
    ]
    assert [e.detail["error"]["code"] for e in events if e.kind == "bad_input" and e.detail] == [-32600]


CLAUDE_MODELS = ["default", "sonnet[1m]", "opus[1m]", "haiku"]


@pytest.mark.anyio
@BACKENDS
@LOOPS
async def test_set_model_as_the_adapter_answers_it(kind: str, loop: str, tmp_path: Path) -> None:
    backend = Backend(kind, tmp_path, "--profile", "claude-code")
    if kind == "in-process":
        from acp_sim.profile import load_profile

        backend.in_process = InProcessAgent(with_fast(load_profile("claude-code")))
        backend.launcher = backend.in_process
    async with raw_agent(backend) as raw:
        await raw.call(1, "initialize", {"protocolVersion": 1})
        new = (await raw.call(2, "session/new", {"cwd": "/w", "mcpServers": []}))["result"]
        sid = new["sessionId"]
        assert [m["modelId"] for m in new["models"]["availableModels"]] == CLAUDE_MODELS
        # Every listed id is taken; the answer is {} after a config_option_update naming it.
        for n, model in enumerate(CLAUDE_MODELS):
            assert (await raw.call(10 + n, "session/set_model", {"sessionId": sid, "modelId": model})) == {
                "jsonrpc": "2.0",
                "id": 10 + n,
                "result": {},
            }
            update = [m for m in raw.seen if m.get("method") == "session/update"][-1]["params"]["update"]
            assert update["sessionUpdate"] == "config_option_update"
            current = {o["id"]: o["currentValue"] for o in update["configOptions"]}
            assert current["model"] == model
        prompt = {"sessionId": sid, "prompt": [{"type": "text", "text": "hi"}]}
        assert (await raw.call(20, "session/prompt", prompt))["result"]["stopReason"] == "end_turn"
        # A session it does not hold: the adapter's "Session not found".
        missing = await raw.call(21, "session/set_model", {"sessionId": "nope", "modelId": "haiku"})
        assert missing["error"] == {
            "code": -32603,
            "message": "Internal error",
            "data": {"details": "Session not found"},
        }
        # An unknown id is taken (the CLI does not check it); the next turn fails at the model API.
        assert (await raw.call(22, "session/set_model", {"sessionId": sid, "modelId": "gpt-9"}))[
            "result"
        ] == {}
        failed = await raw.call(23, "session/prompt", prompt)
        assert failed["error"]["code"] == -32603
        assert failed["error"]["message"].startswith("Internal error: API Error: 404")
        assert "model: gpt-9" in failed["error"]["message"]
        # Back to a known model: turns work again; the per-model profile also by set_config_option.
        await raw.call(24, "session/set_model", {"sessionId": sid, "modelId": "haiku"})
        assert (await raw.call(25, "session/prompt", prompt))["result"]["stopReason"] == "end_turn"
        opt = await raw.call(
            26, "session/set_config_option", {"sessionId": sid, "configId": "model", "value": "opus[1m]"}
        )
        assert {o["id"]: o["currentValue"] for o in opt["result"]["configOptions"]}["model"] == "opus[1m]"
        bad = await raw.call(27, "session/set_model", {"sessionId": sid})
        assert bad["error"]["code"] == -32602
    if kind == "in-process":
        session = backend.in_process.current.sessions[sid]
        assert session.model_name == "opus[1m]"
        assert session.model == backend.in_process.profile.models["opus[1m]"]


def with_fast(profile: Any) -> Any:
    from acp_sim.profile import with_overrides

    return with_overrides(
        profile, session_new=0.01, first_chunk_delay=0.01, chunk_count=4, chunk_interval=0.05
    )


@pytest.mark.anyio
@BACKENDS
@LOOPS
async def test_methods_it_does_not_implement_get_the_adapters_errors(
    kind: str, loop: str, tmp_path: Path
) -> None:
    backend = Backend(kind, tmp_path)
    async with raw_agent(backend) as raw:
        await raw.call(1, "initialize", {"protocolVersion": 1})
        for n, method in enumerate(["logout", "session/nope", "_ext/thing", "fs/read_text_file"]):
            reply = await raw.call(10 + n, method, {})
            assert reply["error"] == {
                "code": -32601,
                "message": f'"Method not found": {method}',
                "data": {"method": method},
            }
        auth = await raw.call(20, "authenticate", {"methodId": "claude-login"})
        assert auth["error"] == {
            "code": -32603,
            "message": "Internal error",
            "data": {"details": "Method not implemented."},
        }
        assert (await raw.call(21, "authenticate", {"methodId": "gateway"}))["result"] == {}
        # Still serving.
        assert "sessionId" in (await raw.call(22, "session/new", {"cwd": "/w", "mcpServers": []}))["result"]
