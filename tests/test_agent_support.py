"""Helpers for the simulated agent's tests (a raw ACP client, a schema checker), and their own tests.

The client is deliberately not the reference orchestrator: these tests pin the agent's wire
behaviour, so they speak JSON-RPC directly and answer the agent's requests by a chosen policy.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
from acp import schema
from pydantic import BaseModel

import acp_sim.live
from acp_sim.agent import InProcessAgent
from acp_sim.dispatch import Dispatcher
from acp_sim.errors import RemoteError
from acp_sim.orchestrator.launcher import AgentLauncher, AgentLink, SubprocessAgent
from acp_sim.trace import TraceEvent
from acp_sim.wire import Connection

AGENT_CMD = [sys.executable, "-m", "acp_sim", "agent"]
# The real adapter's recorded traffic ships with the package (a copy of ../shared's transcripts), so
# the calibration tests run on any checkout, not only next to the shared folder.
TRANSCRIPTS = Path(acp_sim.live.__file__).parent / "recorded"
ALL_CAPS = {"fs": {"readTextFile": True, "writeTextFile": True}, "terminal": True}
NO_CAPS = {"fs": {"readTextFile": False, "writeTextFile": False}, "terminal": False}


@dataclass
class Client:
    """A raw ACP client: records updates per session, answers the agent's requests by policy.

    ``permission``: ``allow`` / ``reject`` / ``cancelled`` (answer at once) or ``hold`` (answer
    only when ``release_permissions(outcome)`` is called, e.g. after a cancel).
    """

    conn: Connection | None = None
    link: AgentLink | None = None
    permission: str = "allow"
    terminal_exit: int = 0
    updates: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    _held: list[anyio.Event] = field(default_factory=list)
    _held_outcome: str = "cancelled"
    _arrived: anyio.Event = field(default_factory=anyio.Event)

    def dispatcher(self) -> Dispatcher:
        d = Dispatcher()
        d.add_notification("session/update", self._on_update)
        d.add_request("session/request_permission", self._on_permission)
        for method in (
            "fs/read_text_file",
            "fs/write_text_file",
            "terminal/create",
            "terminal/wait_for_exit",
            "terminal/output",
            "terminal/release",
        ):
            d.add_request(method, self._answerer(method))
        return d

    def _on_update(self, params: dict[str, Any]) -> None:
        self.updates.append((params["sessionId"], params["update"]))
        self._changed()

    def _changed(self) -> None:
        self._arrived.set()
        self._arrived = anyio.Event()

    def _on_permission(self, params: dict[str, Any]) -> Any:
        self.requests.append(("session/request_permission", params))
        self._changed()
        return self._permission_answer()

    async def _permission_answer(self) -> dict[str, Any]:
        policy = self.permission
        if policy == "hold":
            event = anyio.Event()
            self._held.append(event)
            await event.wait()
            policy = self._held_outcome
        if policy == "cancelled":
            return {"outcome": {"outcome": "cancelled"}}
        option = "allow" if policy == "allow" else "reject"
        return {"outcome": {"outcome": "selected", "optionId": option}}

    def release_permissions(self, outcome: str = "cancelled") -> None:
        self._held_outcome = outcome
        for event in self._held:
            event.set()
        self._held.clear()

    def _answerer(self, method: str) -> Any:
        answers: dict[str, Any] = {
            "fs/read_text_file": {"content": "print('hello')\n"},
            "fs/write_text_file": {},
            "terminal/create": {"terminalId": "term-1"},
            "terminal/wait_for_exit": {"exitCode": self.terminal_exit},
            "terminal/output": {"output": "ok\n", "truncated": False},
            "terminal/release": {},
        }

        async def answer(params: dict[str, Any]) -> Any:
            self.requests.append((method, params))
            self._changed()
            if method == "terminal/wait_for_exit":
                return {"exitCode": self.terminal_exit}
            return answers[method]

        return answer

    # -- driving the agent ---------------------------------------------------------------------

    @property
    def c(self) -> Connection:
        assert self.conn is not None
        return self.conn

    async def new_session(self, cwd: str = "/w", mcp_servers: list[dict[str, Any]] | None = None) -> str:
        result = await self.c.request("session/new", {"cwd": cwd, "mcpServers": mcp_servers or []})
        return str(result["sessionId"])

    async def prompt(self, session_id: str, text: str = "go") -> dict[str, Any]:
        result = await self.c.request(
            "session/prompt", {"sessionId": session_id, "prompt": [{"type": "text", "text": text}]}
        )
        assert isinstance(result, dict)
        return result

    async def cancel(self, session_id: str) -> None:
        await self.c.notify("session/cancel", {"sessionId": session_id})

    async def error_of(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """The error object the agent answers (fails the test if it succeeds)."""
        with pytest.raises(RemoteError) as info:
            await self.c.request(method, params)
        return info.value.to_error_object()

    async def prompt_and_cancel(
        self, session_id: str, after_updates: int, text: str = "go"
    ) -> dict[str, Any]:
        """Prompt, send ``session/cancel`` once ``after_updates`` updates of the turn have arrived,
        and return the prompt's answer."""
        before = len(self.of(session_id))
        result: dict[str, Any] = {}

        async def run() -> None:
            result.update(await self.prompt(session_id, text))

        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            await self.wait_updates(session_id, before + after_updates)
            await self.cancel(session_id)
        return result

    async def wait_updates(self, session_id: str, count: int) -> None:
        """Wait until ``count`` updates of ``session_id`` have arrived."""
        await self.wait_until(lambda: len(self.of(session_id)) >= count)

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Wait until ``predicate()`` holds, checked whenever an update or a request arrives."""
        while not predicate():
            await self._arrived.wait()

    def of(self, session_id: str, kind: str | None = None) -> list[dict[str, Any]]:
        return [
            u for s, u in self.updates if s == session_id and (kind is None or u["sessionUpdate"] == kind)
        ]

    def texts(self, session_id: str, kind: str = "agent_message_chunk") -> list[str]:
        return [u["content"]["text"] for u in self.of(session_id, kind)]


@asynccontextmanager
async def connect(
    launcher: AgentLauncher, *, capabilities: dict[str, Any] | None = None, **policy: Any
) -> AsyncIterator[Client]:
    """Launch one agent instance, initialize it, and yield a client bound to it."""
    client = Client(**policy)
    async with (
        launcher.launch() as link,
        Connection(
            link.receive,
            link.send,
            peer=link.name,
            dispatcher=client.dispatcher(),
            peer_exit_code=link.wait_exit_code,
        ) as conn,
    ):
        client.conn, client.link = conn, link
        await conn.request(
            "initialize", {"protocolVersion": 1, "clientCapabilities": capabilities or NO_CAPS}
        )
        yield client


def stdio(*args: str) -> SubprocessAgent:
    return SubprocessAgent([*AGENT_CMD, *args])


# -- schema validation of what the agent sends -------------------------------------------------------

RESULT_MODELS: dict[str, type[BaseModel]] = {
    "initialize": schema.InitializeResponse,
    "session/new": schema.NewSessionResponse,
    "session/load": schema.LoadSessionResponse,
    "session/resume": schema.ResumeSessionResponse,
    "session/list": schema.ListSessionsResponse,
    "session/fork": schema.ForkSessionResponse,
    "session/close": schema.CloseSessionResponse,
    "session/set_mode": schema.SetSessionModeResponse,
    "session/set_config_option": schema.SetSessionConfigOptionResponse,
    "session/prompt": schema.PromptResponse,
}
REQUEST_MODELS: dict[str, type[BaseModel]] = {
    "session/request_permission": schema.RequestPermissionRequest,
    "fs/read_text_file": schema.ReadTextFileRequest,
    "fs/write_text_file": schema.WriteTextFileRequest,
    "terminal/create": schema.CreateTerminalRequest,
    "terminal/wait_for_exit": schema.WaitForTerminalExitRequest,
    "terminal/output": schema.TerminalOutputRequest,
    "terminal/release": schema.ReleaseTerminalRequest,
}
# Fields the adapter sends beyond the schema, and so do we (claude-agent-acp 0.23.1 transcripts).
EXTENSIONS = {
    ("session/new", "models"),
    ("session/fork", "models"),
    ("session/load", "models"),
    ("session/load", "sessionId"),
    ("session/resume", "models"),
    ("session/resume", "sessionId"),
}


def _lost(original: Any, dumped: Any, path: str = "") -> list[str]:
    """Paths where the validated-and-dumped value differs from what was sent (salvaged fields
    silently become None in acp.schema, so validating alone would not catch a bad field)."""
    if isinstance(original, dict) and isinstance(dumped, dict):
        out = []
        for key, value in original.items():
            if value is None:
                continue
            if key not in dumped:
                out.append(f"{path}.{key}")
            else:
                out.extend(_lost(value, dumped[key], f"{path}.{key}"))
        return out
    if isinstance(original, list) and isinstance(dumped, list):
        if len(original) != len(dumped):
            return [f"{path}[] ({len(original)} sent, {len(dumped)} valid)"]
        return [
            p
            for i, (a, b) in enumerate(zip(original, dumped, strict=True))
            for p in _lost(a, b, f"{path}[{i}]")
        ]
    return [] if original == dumped else [f"{path} ({original!r} became {dumped!r})"]


def _check(model: type[BaseModel], value: Any, what: str, allowed: set[str] = frozenset()) -> list[str]:  # type: ignore[assignment]
    try:
        parsed = model.model_validate(value)
    except Exception as exc:
        return [f"{what}: {exc}"]
    dumped = parsed.model_dump(mode="json", by_alias=True, exclude_none=True)
    return [
        f"{what}: {p}"
        for p in _lost(value, dumped)
        if p.lstrip(".").split(".")[0].split(" ")[0] not in allowed
    ]


def schema_problems(events: list[TraceEvent]) -> list[str]:
    """Every message the agent sent that does not parse, losslessly, with the acp.schema models."""
    problems: list[str] = []
    for e in events:
        if e.kind != "send" or e.message is None:
            continue
        msg, what = e.message, f"seq {e.seq} {e.method}"
        if "error" in msg:
            problems += _check(schema.Error, msg["error"], what)
        elif "result" in msg:
            model = RESULT_MODELS.get(e.method or "")
            if model is None:
                problems.append(f"{what}: no model for the result of {e.method}")
                continue
            allowed = {field for method, field in EXTENSIONS if method == e.method}
            problems += _check(model, msg["result"], what, allowed)
        elif e.method == "session/update":
            problems += _check(schema.SessionNotification, msg["params"], what)
        elif e.method in REQUEST_MODELS:
            problems += _check(REQUEST_MODELS[e.method], msg["params"], what)
        else:
            problems.append(f"{what}: unexpected message from the agent")
    return problems


def sent(events: list[TraceEvent]) -> int:
    return sum(1 for e in events if e.kind == "send")


# -- the helpers' own tests ---------------------------------------------------------------------------


def _event(seq: int, method: str, message: dict[str, Any]) -> TraceEvent:
    return TraceEvent(seq, 0.0, "send", None, None, method, message.get("id"), message)


def test_schema_check_catches_a_salvaged_field_and_an_unknown_update() -> None:
    usage = {
        "inputTokens": 1,
        "outputTokens": 2,
        "cachedReadTokens": 0,
        "cachedWriteTokens": 0,
        "totalTokens": 3,
    }
    good = {"jsonrpc": "2.0", "id": 1, "result": {"stopReason": "end_turn", "usage": usage}}
    assert schema_problems([_event(0, "session/prompt", good)]) == []
    bad_usage = {
        "jsonrpc": "2.0",
        "id": 1,
        "result": {"stopReason": "end_turn", "usage": {"inputTokens": -1}},
    }
    assert schema_problems([_event(0, "session/prompt", bad_usage)]) == ["seq 0 session/prompt: .usage"]
    bogus = {"jsonrpc": "2.0", "method": "session/update",
             "params": {"sessionId": "s", "update": {"sessionUpdate": "agent_mesage_chunk"}}}  # fmt: skip
    assert len(schema_problems([_event(1, "session/update", bogus)])) == 1
    extra = {"jsonrpc": "2.0", "id": 2, "result": {"sessionId": "s", "models": {}}}
    assert schema_problems([_event(2, "session/new", extra)]) == []  # the adapter's extension
    assert schema_problems([_event(3, "session/prompt", extra)]) != []


pytestmark = pytest.mark.anyio


async def test_client_helper_drives_an_in_process_agent() -> None:
    launcher = InProcessAgent(seed=1)
    async with connect(launcher) as client:
        sid = await client.new_session()
        result = await client.prompt(sid)
    assert result["stopReason"] == "end_turn"
    assert len(client.texts(sid)) == 5
    assert schema_problems(launcher.current.trace.events) == []
