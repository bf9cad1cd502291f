"""The simulated ACP agent: speaks real ACP over a byte stream, driven by a profile and a seed.

Everything it sends and receives lands in its ``Trace`` (the ground truth). It reads time only
through its ``SimClock`` and randomness only from RNGs derived from its seed, so the same seed,
profile and client actions give a byte-identical trace.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
from acp import schema
from acp.meta import PROTOCOL_VERSION
from anyio.abc import ByteReceiveStream, ByteSendStream, ByteStream

from acp_sim.agent.session import SimSession, Turn
from acp_sim.clock import SimClock, derive_seed, make_rng
from acp_sim.errors import InternalError, ResourceNotFound
from acp_sim.profile import DEFAULT, AgentProfile
from acp_sim.streams import memory_duplex
from acp_sim.trace import Trace, TraceEvent
from acp_sim.wire import Connection, Dispatcher, Reply

AGENT_NAME = "acp-sim"
WORDS = (
    "the", "agent", "reads", "files", "and", "writes", "a", "patch", "for", "each", "failing", "test",
    "then", "runs", "suite", "again", "until", "it", "passes", "cleanly",
)  # fmt: skip


def text_update(session_id: str, kind: str, text: str) -> dict[str, Any]:
    return {
        "sessionId": session_id,
        "update": {"sessionUpdate": kind, "content": {"type": "text", "text": text}},
    }


class SimAgent:
    """One simulated agent process: its sessions, its trace, its behaviour."""

    def __init__(
        self,
        profile: AgentProfile = DEFAULT,
        *,
        seed: int = 0,
        name: str = AGENT_NAME,
        trace_sink: Callable[[TraceEvent], None] | None = None,
    ) -> None:
        self.profile = profile
        self._trace_sink = trace_sink
        self.seed = seed
        self.name = name
        self.rng = make_rng(seed)
        self.sessions: dict[str, SimSession] = {}
        self._models_started: set[str] = set()
        self._sessions_created = 0
        self._clock: SimClock | None = None
        self._trace: Trace | None = None
        self._conn: Connection | None = None

    # -- running ---------------------------------------------------------------------------------

    @property
    def clock(self) -> SimClock:
        if self._clock is None:  # created inside the event loop, where time exists
            self._clock = SimClock()
        return self._clock

    @property
    def trace(self) -> Trace:
        if self._trace is None:
            self._trace = Trace(self.clock.now, sink=self._trace_sink)
        return self._trace

    def dispatcher(self) -> Dispatcher:
        d = Dispatcher()
        d.add_request("initialize", self._initialize, schema.InitializeRequest)
        d.add_request("session/new", self._new_session, schema.NewSessionRequest)
        d.add_request("session/prompt", self._prompt, schema.PromptRequest)
        d.add_notification("session/cancel", self._cancel, schema.CancelNotification)
        return d

    async def serve(self, receive: ByteReceiveStream, send: ByteSendStream, *, peer: str = "client") -> None:
        """Answer the client until it closes the stream."""
        async with Connection(
            receive, send, peer=peer, dispatcher=self.dispatcher(), observer=self.trace
        ) as conn:
            self._conn = conn
            await conn.closed.wait()
            # stdin closed is a half-close: answer what was already asked, as a real process would.
            await conn.wait_answered()

    @asynccontextmanager
    async def running(self) -> AsyncIterator[ByteStream]:
        """Run in-process; yields the client's end of an in-memory byte connection."""
        pair = memory_duplex()
        async with anyio.create_task_group() as tg:
            tg.start_soon(self.serve, pair.agent.receive_stream, pair.agent.send_stream)
            try:
                yield pair.client
            finally:
                await pair.client.aclose()
                tg.cancel_scope.cancel()

    @property
    def conn(self) -> Connection:
        assert self._conn is not None, "the agent is not serving a connection"
        return self._conn

    # -- lifecycle methods -----------------------------------------------------------------------

    async def _initialize(self, req: schema.InitializeRequest) -> dict[str, Any]:
        # Shape copied from claude-agent-acp 0.23.1's answer (shared/reference/transcripts).
        return {
            "protocolVersion": min(req.protocol_version, PROTOCOL_VERSION),
            "agentCapabilities": {
                "_meta": {"claudeCode": {"promptQueueing": True}},
                "promptCapabilities": {"image": True, "embeddedContext": True},
                "mcpCapabilities": {"http": True, "sse": True},
                "loadSession": True,
                "sessionCapabilities": {"fork": {}, "list": {}, "resume": {}, "close": {}},
            },
            "agentInfo": {"name": self.name, "title": "Simulated ACP agent", "version": "0.1.0"},
            "authMethods": [],
        }

    def _new_session(self, req: schema.NewSessionRequest) -> Awaitable[Reply]:
        # Index and id are drawn in arrival order, before any await, so concurrent session/new
        # calls get distinct, reproducible identities.
        index = self._sessions_created
        self._sessions_created += 1
        session_id = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        return self._create_session(req, index, session_id)

    async def _create_session(self, req: schema.NewSessionRequest, index: int, session_id: str) -> Reply:
        model_name = self.profile.default_model
        model = self.profile.model(model_name)
        session_rng = make_rng(derive_seed(self.seed, "session", index))
        warm = model_name in self._models_started
        self._models_started.add(model_name)
        latency = (model.session_new_warm if warm else model.session_new_cold).draw(session_rng)
        await self.clock.sleep(latency)
        session = SimSession(session_id, index, req.cwd, model_name, model, session_rng)
        self.sessions[session_id] = session
        return Reply({"sessionId": session_id, "models": {"currentModelId": model_name}})

    def _live_session(self, session_id: str) -> SimSession:
        session = self.sessions.get(session_id)
        if session is None or session.closed:
            # What claude-agent-acp answers for a prompt on an id it does not hold.
            raise InternalError("Internal error", data={"details": "Session not found"})
        return session

    def _unknown_resource(self, session_id: str) -> ResourceNotFound:
        # claude-agent-acp 0.23.1 answers resume/load of an unknown or phantom session with exactly
        # this (shared/reference/claude-code-adapter.md, transcripts/phantom.jsonl).
        return ResourceNotFound(f"Resource not found: {session_id}", data={"uri": session_id})

    # -- turns -----------------------------------------------------------------------------------

    def _prompt(self, req: schema.PromptRequest) -> Awaitable[dict[str, Any]]:
        # Synchronous part: the turn exists before any later message (a cancel) is dispatched.
        session = self._live_session(req.session_id)
        turn = session.begin_turn()
        prompt_text = " ".join(getattr(block, "text", "") for block in req.prompt)
        session.history.append(("user", prompt_text))
        return self._run_turn(session, turn)

    async def _run_turn(self, session: SimSession, turn: Turn) -> dict[str, Any]:
        spec = session.model.turn
        rng = session.rng
        texts: list[str] = []
        # One cancel scope per turn, not a timeout per chunk: session/cancel cancels it, which
        # interrupts whichever sleep the turn is in. Writes are atomic (see Connection), so a
        # cancel never leaves half a line or a chunk in the trace that was not on the wire.
        with turn.scope:
            await self.clock.sleep(spec.first_chunk_delay.draw(rng))
            if spec.empty_first_chunk:
                await self._send_chunk(session, turn, "")
            for i in range(spec.chunk_count):
                if i:
                    await self.clock.sleep(spec.chunk_interval.draw(rng))
                words = " ".join(rng.choice(WORDS) for _ in range(spec.chunk_words))
                text = f"[s{session.index} t{turn.number} c{i}] {words} "
                await self._send_chunk(session, turn, text)
                texts.append(text)
        session.end_turn(turn)
        session.history.append(("agent", "".join(texts)))
        if turn.is_cancelled:
            return {"stopReason": "cancelled"}
        return {"stopReason": "end_turn"}

    async def _send_chunk(self, session: SimSession, turn: Turn, text: str) -> None:
        await self.conn.notify("session/update", text_update(session.id, "agent_message_chunk", text))
        turn.chunks_sent += 1

    def _cancel(self, note: schema.CancelNotification) -> None:
        session = self.sessions.get(note.session_id)
        if session is not None:
            session.cancel()
