"""The simulated ACP agent: speaks real ACP over a byte stream, driven by a profile and a seed.

Everything it sends and receives lands in its ``Trace`` (the ground truth), together with the
faults it fires, its store operations, its MCP children and its exit. It reads time only through
its ``SimClock`` and randomness only from RNGs derived from its seed, so the same seed, profile
and client actions give a byte-identical trace.

This module runs the connection, the request-level faults and the turns (``session/prompt``,
``session/cancel``); the sessions themselves (new, load, resume, fork, list, close, model, mode,
config, the store) are ``acp_sim.agent.lifecycle``'s, and a tool call is ``acp_sim.agent.tools``'.

Per-chunk path (benchmarked by ``benchmarks.virtual_time``): ``_stream`` and ``_send_chunk`` build
plain dicts, sleep once per chunk and check one attribute (a pending stall); everything else
(faults, tools, usage, the store) happens once per turn or per request.
"""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import anyio
from acp.meta import PROTOCOL_VERSION
from anyio.abc import ByteReceiveStream, ByteSendStream, ByteStream, TaskGroup

from acp_sim import sdk_schema as schema
from acp_sim.agent import messages
from acp_sim.agent.effects import FaultEffects, Observer
from acp_sim.agent.lifecycle import SessionLifecycle
from acp_sim.agent.mcp import McpSupervisor
from acp_sim.agent.requests import InitializeParams, SetSessionModelParams
from acp_sim.agent.session import SimSession, Turn
from acp_sim.agent.ticker import ChunkStream, ChunkTicker
from acp_sim.agent.tools import run_tool
from acp_sim.clock import SimClock, derive_seed, make_rng
from acp_sim.dispatch import Dispatcher, Reply
from acp_sim.errors import (
    ConnectionClosed,
    InternalError,
    JsonRpcError,
    RemoteError,
)
from acp_sim.faults import Fault, FaultPlan, Hang
from acp_sim.profile import DEFAULT, AgentProfile, TurnProfile
from acp_sim.store import SessionStore
from acp_sim.streams import memory_duplex
from acp_sim.trace import Trace, TraceEvent
from acp_sim.wire import Connection

AGENT_NAME = "acp-sim"
PROMPT = "session/prompt"

text_update = messages.text_update  # kept importable from here (the foundation's name)


async def _raise(error: BaseException) -> Any:
    raise error


class SimAgent(FaultEffects):
    """One simulated agent process: its sessions, its trace, its behaviour, its faults.

    ``store`` is its disk (shared across relaunches), ``launch`` its launch number on that disk,
    ``faults`` extra faults besides the profile's, ``exit_process`` what a crash calls to end a
    real process (the stdio agent passes one that flushes the trace and calls ``os._exit``).
    """

    def __init__(
        self,
        profile: AgentProfile = DEFAULT,
        *,
        seed: int = 0,
        name: str = AGENT_NAME,
        trace_sink: Callable[[TraceEvent], None] | None = None,
        store: SessionStore | None = None,
        launch: int = 0,
        faults: list[Fault] | tuple[Fault, ...] = (),
        exit_process: Callable[[int], None] | None = None,
    ) -> None:
        self.profile = profile
        self._trace_sink = trace_sink
        self.seed = seed
        self.name = name
        self._latency_rng = make_rng(derive_seed(seed, "agent"))
        self.store = store if store is not None else SessionStore()
        self.launch = launch
        self.exit_process = exit_process
        self._clock: SimClock | None = None
        self._trace: Trace | None = None
        self._conn: Connection | None = None
        self._mcp: McpSupervisor | None = None
        self._tg: TaskGroup | None = None
        self._ticker: ChunkTicker | None = None
        self._observer = Observer()
        self.faults = FaultPlan(make_rng(derive_seed(seed, "faults")), launch)
        for fault in (*profile.faults, *faults):
            self.faults.add(fault)
        self.lifecycle = SessionLifecycle(
            self,
            profile,
            seed=seed,
            store=self.store,
            faults=self.faults,
            latency_rng=self._latency_rng,
            record_fault=self._record_fault,
        )
        # The lifecycle's table and store glue under the names the turn code and the faults use.
        self.sessions: dict[str, SimSession] = self.lifecycle.sessions
        self._by_index: dict[int, SimSession] = self.lifecycle.by_index
        self._live_session: Callable[[str], SimSession] = self.lifecycle.live_session
        self._save: Callable[[SimSession], None] = self.lifecycle.save
        self.client_fs_read = False
        self.client_fs_write = False
        self.client_terminal = False
        self.hung = False
        self.exit_reason: str | None = None
        """None while serving; then ``eof``, ``stopped``, ``crash`` or ``disconnect``."""

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

    @property
    def mcp(self) -> McpSupervisor:
        """Every session's MCP servers, as real child processes (``count()``, ``pids()``, faults)."""
        if self._mcp is None:
            self._mcp = McpSupervisor(self.trace, self.clock, make_rng(derive_seed(self.seed, "mcp")))
        return self._mcp

    def dispatcher(self) -> Dispatcher:
        d = Dispatcher()
        guard, lc = self._guard, self.lifecycle
        d.method_not_found = messages.method_not_found
        d.add_request("initialize", guard("initialize", self._initialize), InitializeParams)
        d.add_request("authenticate", guard("authenticate", self._authenticate), schema.AuthenticateRequest)
        d.add_request("session/set_model", guard("session/set_model", lc.set_model), SetSessionModelParams)
        d.add_request("session/new", guard("session/new", lc.new_session), schema.NewSessionRequest)
        d.add_request("session/load", guard("session/load", lc.load_session), schema.LoadSessionRequest)
        d.add_request(
            "session/resume", guard("session/resume", lc.resume_session), schema.ResumeSessionRequest
        )
        d.add_request("session/list", guard("session/list", lc.list_sessions), schema.ListSessionsRequest)
        d.add_request("session/fork", guard("session/fork", lc.fork_session), schema.ForkSessionRequest)
        d.add_request("session/close", guard("session/close", lc.close_session), schema.CloseSessionRequest)
        d.add_request(
            "session/set_mode", guard("session/set_mode", lc.set_mode), schema.SetSessionModeRequest
        )
        d.add_request(
            "session/set_config_option",
            guard("session/set_config_option", lc.set_config_option),
            schema.SetSessionConfigOptionSelectRequest,
        )
        d.add_request(PROMPT, guard(PROMPT, self._prompt), schema.PromptRequest)
        d.add_notification("session/cancel", self._cancel, schema.CancelNotification)
        return d

    async def serve(self, receive: ByteReceiveStream, send: ByteSendStream, *, peer: str = "client") -> None:
        """Answer the client until it closes the stream (or a fault ends the agent)."""
        trace = self.trace
        self._observer.on_bad_input = trace.on_bad_input
        # Sends are recorded before their bytes go out (see Trace.on_sending); faults count them
        # once written (on_message), so "after the nth update" still means after it is on the wire.
        self._observer.on_sending = trace.on_sending
        self._observer.on_receiving = trace.on_receiving
        self._observer.on_unsent = trace.on_unsent
        self._observer.on_message = self._observe if self.faults.watching else trace.written
        conn: Connection | None = None
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                # mcp.running() stops every MCP child when serving ends, normally or by a crash (cancel).
                async with (
                    self.mcp.running(),
                    Connection(
                        receive, send, peer=peer, dispatcher=self.dispatcher(), observer=self._observer
                    ) as conn,
                ):
                    self._conn = conn
                    self._start_faults()
                    await conn.closed.wait()
                    # stdin closed is a half-close: answer what was already asked, as a real process would.
                    await conn.wait_answered()
                tg.cancel_scope.cancel()  # requests to the client still waiting, fault timers
        finally:
            if self.exit_reason is None:
                self.exit_reason = "eof" if conn is not None and conn.closed.is_set() else "stopped"
                self.mcp.stop_all()
                self._record_exit(self.exit_reason, 0)

    def terminate(self, signum: int) -> None:
        """Stopped by a signal (SIGTERM, SIGINT): reap every MCP child, record ``exit``, then exit.

        The code is the shell's for a death by that signal (128 + number), and it is the code the
        process really exits with (``exit_process``); without one (in-process) serving just ends.
        """
        if self.exit_reason is not None:
            return
        self.exit_reason = "signal"
        code = 128 + signum
        self.mcp.stop_all()
        self.trace.record(
            "exit", detail={"reason": "signal", "code": code, "signal": signal.Signals(signum).name}
        )
        if self.exit_process is not None:
            self.exit_process(code)
        elif self._tg is not None:
            self._tg.cancel_scope.cancel()

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

    async def send_update(self, session_id: str, update: dict[str, Any]) -> None:
        await self.conn.notify("session/update", {"sessionId": session_id, "update": update})

    async def client_call(self, method: str, params: dict[str, Any]) -> tuple[Any, JsonRpcError | None]:
        """A request to the client: (result, None) or (None, the error it answered).

        The request runs in the agent's own task group, so cancelling the turn that waits for it
        does not withdraw it: the client's late answer (``cancelled`` for a permission request,
        as the ACP spec asks) still finds its request. Raises ConnectionClosed when the client is gone.
        """
        assert self._tg is not None
        done = anyio.Event()
        box: list[Any] = [None, None]

        async def call() -> None:
            try:
                box[0] = await self.conn.request(method, params)
            except (RemoteError, ConnectionClosed) as exc:
                box[1] = exc
            finally:
                done.set()

        self._tg.start_soon(call)
        await done.wait()
        if isinstance(box[1], ConnectionClosed):
            raise box[1]
        return box[0], box[1]

    # -- lifecycle methods -----------------------------------------------------------------------

    def _guard(
        self, method: str, handler: Callable[[Any], Awaitable[Any]]
    ) -> Callable[[Any], Awaitable[Any]]:
        """Request-level faults: a hung agent answers nothing; ``error_reply``/``hang`` for a method."""

        def handle(params: Any) -> Awaitable[Any]:
            if self.hung:
                return anyio.sleep_forever()
            if self.faults.armed and method != PROMPT:  # the prompt's faults are turn faults
                session = self.lifecycle.index_of(getattr(params, "session_id", None))
                fault = self.faults.take("error_reply", session, method) or self.faults.take(
                    "hang", session, method
                )
                if fault is not None:
                    return self._request_fault(fault, getattr(params, "session_id", None))
            return handler(params)

        return handle

    def _request_fault(self, fault: Fault, session_id: str | None) -> Awaitable[Any]:
        self._record_fault(fault, session_id)
        if isinstance(fault, Hang):
            return anyio.sleep_forever()
        return _raise(JsonRpcError(fault.message, code=fault.code, data=fault.data))  # type: ignore[union-attr]

    async def _initialize(self, req: InitializeParams) -> dict[str, Any]:
        caps = req.client_capabilities
        if caps is not None:
            self.client_fs_read = bool(caps.fs and caps.fs.read_text_file)
            self.client_fs_write = bool(caps.fs and caps.fs.write_text_file)
            self.client_terminal = bool(caps.terminal)
        await self.clock.sleep(self.profile.initialize_latency.draw(self._latency_rng))
        return messages.initialize_result(min(req.protocol_version, PROTOCOL_VERSION), self.name)

    async def _authenticate(self, req: schema.AuthenticateRequest) -> dict[str, Any]:
        # claude-agent-acp 0.23.1 takes only its "gateway" method; any other throws "Method not
        # implemented.", which its SDK answers as -32603 with the message in data.details.
        if req.method_id == "gateway":
            return {}
        raise InternalError("Internal error", data={"details": "Method not implemented."})

    # -- turns -----------------------------------------------------------------------------------

    def _prompt(self, req: schema.PromptRequest) -> Awaitable[Any]:
        # Synchronous part: the turn exists before any later message (a cancel) is dispatched.
        session = self._live_session(req.session_id)
        turn = session.begin_turn()
        if session.model_name not in self.profile.models:  # set_model took an id the API refuses
            session.end_turn(turn)
            return _raise(messages.unknown_model_error(session.model_name))
        if self.faults.armed:
            refused = self._turn_faults(session, turn)
            if refused is not None:
                return refused
        text = " ".join(block.text for block in req.prompt if isinstance(block, schema.TextContentBlock))
        session.history.append(("user", text))
        if session.title is None:
            session.title = text[:80]
        self._save(session)
        if session.behind:
            return self._run_behind(session, turn, text)
        return self._run_turn(session, turn, text)

    def _turn_faults(self, session: SimSession, turn: Turn) -> Awaitable[Any] | None:
        take, index, sid = self.faults.take, session.index, session.id
        fault = take("error_reply", index, PROMPT) or take("hang", index, PROMPT)
        if isinstance(fault, Hang):
            turn.withhold = True
            self._record_fault(fault, sid, turn=turn.number)
        elif fault is not None:
            session.end_turn(turn)
            return self._request_fault(fault, sid)
        if (fault := take("empty_turn", index)) is not None:
            turn.empty = True
            self._record_fault(fault, sid, turn=turn.number)
        if (fault := take("wrong_stop_reason", index, PROMPT)) is not None:
            turn.stop_override = fault.stop_reason  # type: ignore[union-attr]
            self._record_fault(fault, sid, turn=turn.number)
        if (fault := take("updates_after_response", index)) is not None:
            turn.tail, turn.tail_interval = fault.count, fault.interval  # type: ignore[union-attr]
            self._record_fault(fault, sid, turn=turn.number)
        return None

    async def _run_turn(self, session: SimSession, turn: Turn, prompt_text: str) -> Reply:
        spec = session.model.turn
        rng = session.rng
        texts: list[str] = []
        try:
            # One cancel scope per turn, not a timeout per chunk: session/cancel cancels it, which
            # interrupts whichever sleep the turn is in. Writes are atomic (see Connection), so a
            # cancel never leaves half a line or a chunk in the trace that was not on the wire.
            with turn.scope:
                if turn.prev is not None:
                    await turn.prev.done.wait()  # prompt queueing: one turn at a time per session
                if not turn.empty:
                    delay = spec.first_chunk_delay.draw(rng)
                    if delay:
                        await self.clock.sleep(delay)
                    if spec.empty_first_chunk:
                        await self._send_chunk(session, turn, "")
                    if spec.thought_chunks:
                        await self._think(session, turn, spec)
                    if spec.plan_entries:
                        await self.send_update(
                            session.id,
                            messages.plan_update(session, turn.number, spec.plan_entries, done=False),
                        )
                    pause = spec.empty_first_chunk or spec.thought_chunks > 0 or spec.plan_entries > 0
                    start = 0
                    tools = sorted(enumerate(spec.tool_calls), key=lambda kt: kt[1].after_chunk)
                    for k, tool in tools:
                        stop = min(tool.after_chunk, spec.chunk_count)
                        if stop > start:
                            await self._stream(session, turn, spec, start, stop, texts, pause)
                            start = stop
                        await run_tool(self, session, turn, tool, k)
                        pause = True
                    await self._stream(
                        session,
                        turn,
                        spec,
                        start,
                        spec.chunk_count,
                        texts,
                        pause,
                        self.profile.coalesce_writes,
                    )
                    if spec.plan_entries:
                        await self.send_update(
                            session.id,
                            messages.plan_update(session, turn.number, spec.plan_entries, done=True),
                        )
            return await self._finish_turn(session, turn, prompt_text, texts)
        except BaseException:
            session.end_turn(turn)  # let queued prompts run (or fail) rather than wait forever
            raise

    async def _stream(
        self,
        session: SimSession,
        turn: Turn,
        spec: TurnProfile,
        start: int,
        stop: int,
        texts: list[str],
        pause: bool,
        hold_last: bool = False,
    ) -> None:
        """Message chunks ``start``..``stop - 1``: the hot path, written by the agent's one chunk
        timer (``ChunkTicker``) while this task waits. ``pause``: a chunk interval before the first
        one (else it goes out at once, from here). ``hold_last``: from the last chunk on, writes are
        held for one write with the response. A chunk the ticker cannot write without waiting is
        handed back and written here, as any other write."""
        if start >= stop:
            return
        stream = ChunkStream(session, turn, spec, start, stop, texts, hold_last, self._take_stall)
        ticker = self._chunk_ticker()
        conn = self.conn
        try:
            if pause:
                ticker.schedule(stream, ticker.now() + stream.delay())
            elif session.stall:
                ticker.schedule(stream, ticker.now() + self._take_stall(session, turn, start))
            else:
                stream.handed = stream.next_chunk()
                if stream.i == stream.hold_at:
                    conn.hold()
            while True:
                handed = stream.handed
                if handed is not None:
                    stream.handed = None
                    try:
                        await conn.send_encoded(handed[2], handed[1])
                    finally:
                        ticker.release(stream)
                    stream.written(handed[0])
                    if stream.i >= stop:
                        break
                    # The next chunk's pause is drawn right after this one is written.
                    ticker.schedule(stream, ticker.now() + stream.delay())
                elif stream.over:
                    break
                await ticker.wait(stream)
        finally:
            stream.over = True
            ticker.release(stream)

    def _chunk_ticker(self) -> ChunkTicker:
        """The one chunk timer of the connection being served (made on the first stream)."""
        ticker = self._ticker
        if ticker is None or ticker.conn is not self.conn:
            assert self._tg is not None
            ticker = self._ticker = ChunkTicker(self.conn, self._tg)
        return ticker

    async def _send_chunk(self, session: SimSession, turn: Turn, text: str) -> None:
        await self.conn.notify("session/update", text_update(session.id, "agent_message_chunk", text))
        turn.chunks_sent += 1

    async def _think(self, session: SimSession, turn: Turn, spec: TurnProfile) -> None:
        rng = session.rng
        for i in range(spec.thought_chunks):
            if i or spec.empty_first_chunk:
                await self.clock.sleep(spec.chunk_interval.draw(rng))
            text = session.chunk_text(turn.number, f"th{i}")
            await self.conn.notify("session/update", text_update(session.id, "agent_thought_chunk", text))
            turn.thoughts_sent += 1

    async def _finish_turn(
        self, session: SimSession, turn: Turn, prompt_text: str, texts: list[str]
    ) -> Reply:
        coalesce = self.profile.coalesce_writes
        if self.hung:
            await self.conn.flush()  # what was held goes out; then nothing more
            await anyio.sleep_forever()  # a hung agent ends nothing
        if coalesce:
            self.conn.hold()  # the last updates go out with the response (already held after a chunk)
        spec = session.model.turn
        if turn.is_cancelled and texts:
            # Real agents may still flush a few updates of the aborted stream (profile setting).
            for _ in range(spec.late_updates_after_cancel):
                text = session.chunk_text(turn.number, f"c{len(texts)}")
                await self._send_chunk(session, turn, text)
                texts.append(text)
        prompt_tokens = session.prompt_tokens(prompt_text)
        output_words = (len(texts) + turn.thoughts_sent) * spec.chunk_words
        result: dict[str, Any]
        update: dict[str, Any] | None = None
        if turn.is_cancelled:
            session.account_cancelled(prompt_tokens, output_words)
            result = {"stopReason": turn.stop_override or "cancelled"}
        else:
            usage, update = session.account(prompt_tokens, output_words)
            result = {"stopReason": turn.stop_override or "end_turn"}
            if session.model.usage.report:
                result["usage"] = usage
            else:
                update = None
        session.history.append(("agent", "".join(texts)))
        self._save(session)  # before the usage_update: that goes right before the response
        if update is not None:
            await self.send_update(session.id, update)
        if turn.withhold:
            await self.conn.flush()
            await anyio.sleep_forever()  # hang fault: the response never comes, the session wedges
        return Reply(result, then=partial(self._after_turn, session, turn, len(texts)), flush=coalesce)

    async def _after_turn(self, session: SimSession, turn: Turn, next_chunk: int) -> None:
        """Once the response is on the wire: the next queued turn may start; a tail fault sends more."""
        session.end_turn(turn)
        for i in range(next_chunk, next_chunk + turn.tail):
            if turn.tail_interval:
                await self.clock.sleep(turn.tail_interval)
            if self.hung:
                return
            await self._send_chunk(session, turn, session.chunk_text(turn.number, f"c{i}"))

    async def _run_behind(self, session: SimSession, turn: Turn, prompt_text: str) -> Reply:
        """The one-turn-behind defect (see ``acp_sim.faults.OneTurnBehind``)."""
        result: dict[str, Any] | None = None
        try:
            with turn.scope:
                if turn.prev is not None:
                    await turn.prev.done.wait()
                backlog = session.backlog
                # This turn's real run, produced now and shown one prompt later.
                session.backlog = self._offline_turn(session, turn, prompt_text)
                if backlog is None:
                    self._record_behind(session, turn, "answered at once with zero usage", shown_turn=None)
                    result = {"stopReason": "end_turn", "usage": dict(messages.ZERO_USAGE)}
                else:
                    texts, usage, update = backlog
                    self._record_behind(
                        session, turn, "answered with the previous turn", shown_turn=turn.number - 1
                    )
                    if session.model.turn.empty_first_chunk:
                        await self._send_chunk(session, turn, "")
                    for text in texts:
                        await self._send_chunk(session, turn, text)
                    if update is not None:
                        await self.send_update(session.id, update)
                    result = {"stopReason": "end_turn"}
                    if usage is not None:
                        result["usage"] = usage
            if result is None or turn.is_cancelled:
                result = {"stopReason": turn.stop_override or "cancelled"}
            return Reply(result, then=partial(self._after_turn, session, turn, 0))
        except BaseException:
            session.end_turn(turn)
            raise

    def _offline_turn(
        self, session: SimSession, turn: Turn, prompt_text: str
    ) -> tuple[list[str], dict[str, Any] | None, dict[str, Any] | None]:
        """A turn's chunks and usage, computed without sending (the adapter's background request)."""
        spec = session.model.turn
        texts = [session.chunk_text(turn.number, f"c{i}") for i in range(spec.chunk_count)]
        usage, update = session.account(session.prompt_tokens(prompt_text), len(texts) * spec.chunk_words)
        session.history.append(("agent", "".join(texts)))
        self._save(session)
        if not session.model.usage.report:
            return texts, None, None
        return texts, usage, update

    def _cancel(self, note: schema.CancelNotification) -> None:
        if self.hung:
            return
        session = self.sessions.get(note.session_id)
        if session is None or not session.active:
            return
        if self.faults.armed:
            take, index = self.faults.take, session.index
            if (fault := take("ignore_cancel", index)) is not None:
                self._record_fault(fault, session.id, turn=session.turns)
                return
            if (fault := take("one_turn_behind", index)) is not None:
                session.behind = True
                self._record_fault(fault, session.id, turn=session.turns, effect="armed")
            if (fault := take("wrong_stop_reason", index, "session/cancel")) is not None:
                for turn in session.active:
                    turn.stop_override = fault.stop_reason  # type: ignore[union-attr]
                self._record_fault(fault, session.id, turn=session.turns)
        session.cancel()
