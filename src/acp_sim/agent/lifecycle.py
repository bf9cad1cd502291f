"""The simulated agent's sessions from birth to close: everything but their turns.

``SessionLifecycle`` holds the agent's table of sessions and answers the requests that create,
restore and configure them: ``session/new`` (with the session-level updates some agents send
before or after answering it), ``session/load``, ``session/resume``, ``session/fork``,
``session/list``, ``session/close``, ``session/set_model``, ``session/set_mode`` and
``session/set_config_option``; and it is the glue to the store (a session is saved from its first
prompt on, restored from disk after a restart). ``SimAgent`` composes one and runs the turns; the
lifecycle sees the agent only through ``LifecycleHost`` (its clock, trace, connection, MCP children).
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, Protocol

from acp_sim import sdk_schema as schema
from acp_sim.agent import messages
from acp_sim.agent.mcp import McpSupervisor
from acp_sim.agent.requests import SetSessionModelParams
from acp_sim.agent.session import SimSession
from acp_sim.clock import SimClock, derive_seed, make_rng
from acp_sim.dispatch import Reply
from acp_sim.errors import InternalError, InvalidParams, ResourceNotFound
from acp_sim.faults import FaultPlan
from acp_sim.profile import AgentProfile
from acp_sim.store import SessionStore
from acp_sim.trace import Trace
from acp_sim.wire import Connection

text_update = messages.text_update


class LifecycleHost(Protocol):
    """What the lifecycle uses of the agent that composes it (created lazily, inside the event loop)."""

    @property
    def hung(self) -> bool: ...

    @property
    def clock(self) -> SimClock: ...

    @property
    def trace(self) -> Trace: ...

    @property
    def mcp(self) -> McpSupervisor: ...

    @property
    def conn(self) -> Connection: ...

    async def send_update(self, session_id: str, update: dict[str, Any]) -> None: ...


class SessionLifecycle:
    """The agent's sessions (``sessions`` by id, ``by_index`` by arrival number) and their requests.

    ``latency_rng`` is the agent's own (``initialize`` draws from it too: one stream, one order);
    ``record_fault`` records a fault the lifecycle fires (``slow_session_new``, ``mcp_spawn_failure``,
    ``early_session_updates``) in the agent's trace.
    """

    def __init__(
        self,
        host: LifecycleHost,
        profile: AgentProfile,
        *,
        seed: int,
        store: SessionStore,
        faults: FaultPlan,
        latency_rng: random.Random,
        record_fault: Callable[..., None],
    ) -> None:
        self.host = host
        self.profile = profile
        self.seed = seed
        self.rng = make_rng(seed)
        self.store = store
        self.faults = faults
        self.latency_rng = latency_rng
        self.record_fault: Callable[..., None] = record_fault
        self.sessions: dict[str, SimSession] = {}
        self.by_index: dict[int, SimSession] = {}
        self.next_index = 0
        self.models_started: set[str] = set()
        self.prefix_cache: set[str] = set()
        """Prefixes written to the cross-session prompt cache (``UsageProfile.cache_scope``)."""

    def new_session(self, req: schema.NewSessionRequest) -> Awaitable[Reply]:
        # Index and id are drawn in arrival order, before any await, so concurrent session/new
        # calls get distinct, reproducible identities.
        index = self._take_index()
        session_id = self._new_id()
        extra = 0.0
        early = self.profile.updates_before_new_response
        if self.faults.armed:
            slow = self.faults.take("slow_session_new", index)
            if slow is not None:
                extra = slow.seconds  # type: ignore[union-attr]
                self.record_fault(slow, session_id)
            if (fault := self.faults.take("early_session_updates", index)) is not None:
                early = True
                self.record_fault(fault, session_id)
        return self._create_session(req, index, session_id, extra, early)

    async def _create_session(
        self, req: schema.NewSessionRequest, index: int, session_id: str, extra: float, early: bool = False
    ) -> Reply:
        model_name = self.profile.default_model
        model = self.profile.model(model_name)
        session_rng = make_rng(derive_seed(self.seed, "session", index))
        warm = model_name in self.models_started
        self.models_started.add(model_name)
        latency = (model.session_new_warm if warm else model.session_new_cold).draw(session_rng)
        await self.host.clock.sleep(latency + extra)
        # The session's prefix: system prompt plus the tool catalog of its MCP servers (any transport).
        server_names = sorted(s.name for s in req.mcp_servers)
        prefix = model.usage.system_tokens + model.usage.tool_tokens(server_names)
        session = SimSession(
            session_id,
            index,
            req.cwd,
            model_name,
            model,
            session_rng,
            mode=self.profile.default_mode,
            context_tokens=prefix,
            prefix_tokens=prefix,
            prefix_key=f"{model_name}|{prefix}|{','.join(server_names)}",
            prefix_cache=self.prefix_cache,
        )
        self._register(session)
        await self._start_mcp(session, list(req.mcp_servers), "session/new")
        result = messages.session_result(self.profile, session, created=True)
        if early:
            await self._announce_early(session)
            return Reply(result)
        return Reply(result, then=partial(self._announce, session))

    async def _announce_early(self, session: SimSession) -> None:
        """Some real agents send a new session's session-level updates before answering session/new:
        its slash commands and its current mode, for an id the client has not been told yet."""
        if self.host.hung:
            return
        await self.host.send_update(session.id, messages.available_commands(self.profile))
        await self.host.send_update(session.id, messages.current_mode_update(session.mode))

    async def _announce(self, session: SimSession) -> None:
        """Claude Code sends its slash commands right after the response to session/new, load, resume."""
        if self.profile.available_commands and not self.host.hung:
            await self.host.send_update(session.id, messages.available_commands(self.profile))

    async def _start_mcp(self, session: SimSession, servers: list[Any], method: str) -> None:
        session.mcp_servers = [s.name for s in servers if isinstance(s, schema.McpServerStdio)]
        if self.faults.armed and servers:
            fault = self.faults.take("mcp_spawn_failure", session.index, method)
            if fault is not None:
                names = [n for n in session.mcp_servers if fault.server in (None, n)]  # type: ignore[union-attr]
                for name in names:
                    self.host.mcp.fail_next_spawn(name)
                self.record_fault(fault, session.id, servers=names)
        await self.host.mcp.start_session(session.id, servers)

    def load_session(self, req: schema.LoadSessionRequest) -> Awaitable[Reply]:
        return self._restore(req.session_id, list(req.mcp_servers), replay=True, method="session/load")

    def resume_session(self, req: schema.ResumeSessionRequest) -> Awaitable[Reply]:
        return self._restore(
            req.session_id, list(req.mcp_servers or []), replay=False, method="session/resume"
        )

    async def _restore(self, session_id: str, servers: list[Any], *, replay: bool, method: str) -> Reply:
        """Resume or load: at once for a session this process holds (even a phantom, as the adapter
        does); from the store after ``restore_latency`` otherwise; not found for a phantom."""
        session = self.sessions.get(session_id)
        if session is None or session.closed:
            record = self.store.load(session_id)
            self.host.trace.record(
                "store",
                session=session_id,
                detail={"op": "load", "found": record is not None, "turns": record.turns if record else 0},
            )
            if record is None or record.turns == 0:
                await self.host.clock.sleep(self.profile.not_found_latency.draw(self.latency_rng))
                # claude-agent-acp 0.23.1 answers resume/load of a phantom (a session that never had a
                # turn, so has no transcript on disk after a restart) or an unknown id with exactly
                # this: shared/reference/transcripts/phantom.jsonl (processes B and C) and
                # shared/reference/claude-code-adapter.md, "Resume, load, phantom sessions".
                raise ResourceNotFound(f"Resource not found: {session_id}", data={"uri": session_id})
            await self.host.clock.sleep(self.profile.restore_latency.draw(self.latency_rng))
            session = self.sessions.get(session_id)
            if session is None or session.closed:  # not restored by a concurrent request meanwhile
                index = self._take_index()
                session = SimSession.from_record(
                    record,
                    index=index,
                    model=self.profile.model(record.model),
                    rng=make_rng(derive_seed(self.seed, "session", index)),
                )
                if record.model not in self.profile.models:
                    session.model_name = self.profile.default_model
                self._register(session)
                self.host.trace.set_turn(session_id, record.turns)
                await self._start_mcp(session, servers, method)
        if replay:
            for role, text in session.history:
                kind = "user_message_chunk" if role == "user" else "agent_message_chunk"
                await self.host.conn.notify("session/update", text_update(session_id, kind, text))
        return Reply(
            messages.session_result(self.profile, session, created=False),
            then=partial(self._announce, session),
        )

    def fork_session(self, req: schema.ForkSessionRequest) -> Awaitable[Reply]:
        # The adapter advertises sessionCapabilities.fork; the new id is drawn in arrival order.
        index = self._take_index()
        fork_id = self._new_id()
        return self._fork(req, index, fork_id)

    async def _fork(self, req: schema.ForkSessionRequest, index: int, fork_id: str) -> Reply:
        """A new session that starts from the source's conversation (held, or on disk)."""
        source = self.sessions.get(req.session_id)
        record = source.to_record() if source is not None and not source.closed else None
        if record is None:
            record = self.store.load(req.session_id)
            self.host.trace.record(
                "store",
                session=req.session_id,
                detail={"op": "load", "found": record is not None, "turns": record.turns if record else 0},
            )
        if record is None:
            await self.host.clock.sleep(self.profile.not_found_latency.draw(self.latency_rng))
            raise ResourceNotFound(f"Resource not found: {req.session_id}", data={"uri": req.session_id})
        rng = make_rng(derive_seed(self.seed, "session", index))
        model = self.profile.model(record.model)
        await self.host.clock.sleep(model.session_new_warm.draw(rng))
        fork = SimSession.from_record(record, index=index, model=model, rng=rng)
        # Its own conversation from here on: new id, turn numbers and cost from zero, context shared.
        fork.id, fork.cwd, fork.turns, fork.cost, fork.title = fork_id, req.cwd, 0, 0.0, None
        if record.model not in self.profile.models:
            fork.model_name = self.profile.default_model
        self._register(fork)
        await self._start_mcp(fork, list(req.mcp_servers or []), "session/fork")
        return Reply(
            messages.session_result(self.profile, fork, created=True),
            then=partial(self._announce, fork),
        )

    async def list_sessions(self, req: schema.ListSessionsRequest) -> dict[str, Any]:
        # Like the adapter, the list comes from disk: sessions that had a turn (phantoms are absent).
        records = self.store.list(req.cwd)
        offset = 0
        if req.cursor is not None:
            if not req.cursor.isdigit():
                raise InvalidParams(f"Invalid cursor: {req.cursor}", data={"cursor": req.cursor})
            offset = int(req.cursor)
        size = self.profile.list_page_size
        page = records[offset : offset + size]
        self.host.trace.record("store", detail={"op": "list", "cwd": req.cwd, "count": len(page)})
        result: dict[str, Any] = {"sessions": [messages.session_info(r) for r in page]}
        if offset + size < len(records):
            result["nextCursor"] = str(offset + size)
        return result

    def close_session(self, req: schema.CloseSessionRequest) -> Awaitable[dict[str, Any]]:
        # Synchronous bookkeeping: a second close right behind the first already finds it closed.
        session = self.live_session(req.session_id)
        session.closed = True
        session.cancel()
        self.host.mcp.stop_session(session.id)
        return self._closed()

    async def _closed(self) -> dict[str, Any]:
        await self.host.clock.sleep(self.profile.close_latency.draw(self.latency_rng))
        return {}

    async def set_mode(self, req: schema.SetSessionModeRequest) -> dict[str, Any]:
        session = self.live_session(req.session_id)
        self._check_mode(req.mode_id)
        session.mode = req.mode_id
        return {}

    async def set_config_option(self, req: schema.SetSessionConfigOptionSelectRequest) -> dict[str, Any]:
        session = self.live_session(req.session_id)
        if req.config_id == "mode":
            self._check_mode(req.value)
            session.mode = req.value
        elif req.config_id == "model":
            if req.value not in self.profile.models:
                raise InvalidParams(
                    f"Invalid model: {req.value}",
                    data={"value": req.value, "available": list(self.profile.models)},
                )
            session.model_name, session.model = req.value, self.profile.models[req.value]
        else:
            raise InvalidParams(f"Unknown config option: {req.config_id}", data={"configId": req.config_id})
        return {"configOptions": messages.config_options(self.profile, session)}

    def set_model(self, req: SetSessionModelParams) -> Awaitable[dict[str, Any]]:
        # As claude-agent-acp 0.23.1's unstable_setSessionModel: "Session not found" for an id it does
        # not hold; otherwise the id goes to the CLI's set_model, which takes any string (an unknown
        # model fails the next turn, at the model API), then a config_option_update, then {}.
        session = self.live_session(req.session_id)
        session.model_name = req.model_id
        if req.model_id in self.profile.models:  # the per-model profile from now on
            session.model = self.profile.models[req.model_id]
        return self._announce_config(session)

    async def _announce_config(self, session: SimSession) -> dict[str, Any]:
        await self.host.send_update(session.id, messages.config_option_update(self.profile, session))
        return {}

    def _check_mode(self, mode_id: str) -> None:
        modes = [m.id for m in self.profile.modes]
        if mode_id not in modes:
            raise InvalidParams(f"Invalid mode: {mode_id}", data={"modeId": mode_id, "available": modes})

    def live_session(self, session_id: str) -> SimSession:
        session = self.sessions.get(session_id)
        if session is None or session.closed:
            # What claude-agent-acp answers for a prompt or close on an id it does not hold
            # (transcripts/phantom.jsonl process C, mcp.jsonl's second close).
            raise InternalError("Internal error", data={"details": "Session not found"})
        return session

    def _new_id(self) -> str:
        """A session id from the seed, drawn again while the disk knows it (an earlier run on the
        shared default state directory minted it)."""
        while True:
            session_id = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
            if session_id not in self.sessions and not self.store.taken(session_id):
                self.store.claim(session_id)
                return session_id

    def _take_index(self) -> int:
        index = self.next_index
        self.next_index += 1
        return index

    def _register(self, session: SimSession) -> None:
        session.natural = self.profile.text_mode == "natural"
        self.sessions[session.id] = session
        self.by_index[session.index] = session

    def index_of(self, session_id: str | None) -> int | None:
        session = self.sessions.get(session_id) if session_id is not None else None
        return session.index if session is not None else None

    def save(self, session: SimSession) -> None:
        """Write the session to disk: from its first prompt on it survives a restart."""
        self.store.save(session.to_record())
        self.host.trace.record("store", session=session.id, detail={"op": "save", "turns": session.turns})
