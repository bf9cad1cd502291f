"""The simulated agent's MCP servers: real child processes per session, handshakes on the agent's clock.

Real agents start their own copies of a session's stdio MCP servers for every session (Claude Code:
3 sessions x 2 servers = 6 processes, shared/reference/claude-code-adapter.md), so this supervisor
really spawns each stdio entry as a child process and holds it until the session closes, the agent
stops, or the agent crashes. HTTP and SSE entries are connections, not processes: connected at
once and shared across sessions by URL.

Virtual time (DESIGN.md hazard): the in-process agent runs on a virtual clock, which jumps while a
task waits on a real pipe, so this module never reads a child's output. Children get a stdin pipe
that is held open and never written (an MCP server exits when its stdin closes) and stdout/stderr to
/dev/null. The handshake is modelled instead: its latency is drawn from a seeded RNG and slept on
the agent's ``SimClock``, and its outcome is predicted from what is known without waiting:

- the spawn itself failing (command not found, not executable) -> ``mcp_failed`` at once;
- ``acp-sim mcp-server`` declares its behaviour on its command line (``--fail-at-start``,
  ``--crash-after S``, ``--hang``), so it is predicted exactly, deterministically;
- any other command is taken as healthy, unless it has already exited when its modelled handshake
  ends (a real-time observation, so only that case is not reproducible byte for byte);
- an injected fault (``fail_next_spawn``, ``crash_child``/``crash_children``, ``abandon_all``).

Children stay in the agent's process group (so a launcher's killpg reaps them even after the agent
was SIGKILLed) and are killed as whole trees (an npx-style wrapper's grandchildren die too).

How failures surface: as in Claude Code, never to the client. claude-agent-acp
(github.com/agentclientprotocol/claude-agent-acp) hands the session's MCP servers to the Claude
Code CLI (``createSession`` in src/acp-agent.ts, tags v0.23.1 and v0.25.0),
awaits only ``q.initializationResult()``, and ignores the CLI's ``system``/``init`` message that
lists each server's status (``case "init": break;`` in ``prompt``). So a server that cannot start
just lacks its tools; ``session/new`` succeeds with no error. A server that never answers the
handshake blocks ``session/new`` for the CLI's MCP timeout (~30 s measured,
claude-code-adapter.md), is killed, and ``session/new`` then succeeds, again with no error. Every
one of these lands in the trace (``mcp_failed``), which is the only place a test can see it.

Trace kinds (``detail`` keys), all with the ``session`` they belong to:

- ``spawn`` (name, transport, pid, command); ``connect`` (name, transport, pid) when its handshake
  ends; ``reap`` (name, pid, reason: session_close | agent_exit | failed | crash);
- ``connect`` (name, transport, url, shared) for http/sse; ``disconnect`` (name, transport, url)
  when the last session using that URL lets go;
- ``mcp_failed`` (name, transport, reason: spawn_error | exited | timeout | injected | unsupported,
  error, pid when a process was spawned); ``mcp_crash`` (name, pid, reason: crash_after | injected);
  ``orphan`` (name, pid) for a child the agent abandoned when dying.

Every ``spawn`` is followed by exactly one ``reap`` or ``orphan`` of its pid. Pids (``detail.pid``,
``NONDETERMINISTIC_DETAIL_KEYS``) are the only values that differ between two runs with the same
seed.
"""

from __future__ import annotations

import os
import random
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio
from anyio.abc import TaskGroup
from pydantic import BaseModel, PositiveFloat, TypeAdapter

from acp_sim import mcp_server, proctree
from acp_sim import sdk_schema as schema
from acp_sim.clock import SimClock, derive_seed, make_rng
from acp_sim.distributions import Latency, Strict, Uniform
from acp_sim.trace import Trace

Transport = Literal["stdio", "http", "sse", "acp"]
Status = Literal["starting", "connected", "failed", "crashed", "stopped"]
# How long to wait for a SIGKILLed child to be torn down before leaving it to a later poll.
REAP_TIMEOUT = 5.0
# Pids are real, so they are the one part of these events that differs between runs.
NONDETERMINISTIC_DETAIL_KEYS = frozenset({"pid"})

ServerEntry = schema.HttpMcpServer | schema.SseMcpServer | schema.AcpMcpServer | schema.McpServerStdio
_ENTRY = TypeAdapter(ServerEntry)


class McpSettings(Strict):
    """How the agent's MCP client behaves (per agent; a profile may carry one)."""

    # Servers start in parallel; session/new waits for the slowest. Measured with claude-agent-acp
    # 0.23.1: session/new took 1.13-1.52 s with two stdio servers, 1.09-1.31 s without
    # (shared/reference/transcripts/mcp.jsonl, concurrent.jsonl).
    handshake: Latency = Uniform(kind="uniform", low=0.05, high=0.35)
    # A server that never answers blocks session/new this long, then is killed (~30 s measured).
    handshake_timeout: PositiveFloat = 30.0


@dataclass(eq=False)
class McpServerState:
    """One MCP server entry of one session, as the agent holds it."""

    session_id: str
    name: str
    transport: Transport
    status: Status = "starting"
    command: tuple[str, ...] = ()
    url: str | None = None
    pid: int | None = None
    error: str | None = None
    tools: tuple[str, ...] = ()
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    crash_scope: anyio.CancelScope | None = field(default=None, repr=False)

    @property
    def held(self) -> bool:
        """A child process the agent still holds (starting or connected; not yet reaped)."""
        return self.process is not None


@dataclass(frozen=True)
class _Outcome:
    """What the modelled handshake of one spawned child ends in, ``at`` seconds after the spawn."""

    at: float
    kind: Literal["connected", "failed"]
    reason: str = ""
    error: str = ""
    crash_after: float | None = None  # seconds after the spawn, for a server that connects first


class McpSupervisor:
    """Spawns, tracks and reaps every session's MCP servers; see the module docstring."""

    def __init__(
        self, trace: Trace, clock: SimClock, rng: random.Random, *, settings: McpSettings | None = None
    ) -> None:
        self._trace = trace
        self._clock = clock
        self._seed = rng.getrandbits(63)  # per-session RNGs derive from it: order of sessions is irrelevant
        self.settings = settings or McpSettings()
        self._sessions: dict[str, list[McpServerState]] = {}
        self._shared: dict[str, int] = {}  # url -> sessions using that connection
        # Stateful servers' state, keyed by the process holding it: ("url", url) or ("stdio", session,
        # name) -> (value, the session that wrote it).
        self._server_state: dict[tuple[str, ...], tuple[str, str]] = {}
        self._spawn_failures: list[str | None] = []  # armed by fail_next_spawn
        self.orphans: list[subprocess.Popen[bytes]] = []  # abandoned by a crash, still running
        self._unreaped: list[subprocess.Popen[bytes]] = []
        self._task_group: TaskGroup | None = None

    # -- running ---------------------------------------------------------------------------------

    @asynccontextmanager
    async def running(self) -> AsyncIterator[McpSupervisor]:
        """Hosts the crash timers of ``--crash-after`` servers; on exit (or crash) stops everything."""
        try:
            async with anyio.create_task_group() as tg:
                self._task_group = tg
                try:
                    yield self
                finally:
                    tg.cancel_scope.cancel()
        finally:
            self._task_group = None
            self.stop_all()

    # -- sessions --------------------------------------------------------------------------------

    async def start_session(self, session_id: str, servers: list[Any]) -> list[McpServerState]:
        """Start a session's MCP servers; returns when every handshake has ended, never raises for one.

        A session already started here is returned as it is, without spawning again: that is what
        claude-agent-acp does for session/resume and session/load of a session it still holds
        (``getOrCreateSession`` returns the live session, its MCP servers untouched).
        """
        existing = self._sessions.get(session_id)
        if existing is not None:
            return list(existing)
        states: list[McpServerState] = []
        # Registered before the first await, so a crash during the handshakes still reaps them.
        self._sessions[session_id] = states
        rng = make_rng(derive_seed(self._seed, "mcp", session_id))
        start = self._clock.now()
        pending: list[tuple[float, int, McpServerState, _Outcome]] = []
        for index, raw in enumerate(servers):
            entry = raw if isinstance(raw, BaseModel) else _ENTRY.validate_python(raw)
            state, outcome = self._start_one(session_id, entry, rng)
            states.append(state)
            if outcome is not None:
                pending.append((outcome.at, index, state, outcome))
        # Handshakes run in parallel: each ends at its own time; session/new waits for the last.
        for at, _, state, outcome in sorted(pending, key=lambda p: (p[0], p[1])):
            await self._clock.sleep_until(start + at)
            if self._sessions.get(session_id) is not states:
                break  # the session was stopped meanwhile (the agent is exiting)
            if state.held:
                self._finish_handshake(state, outcome, start)
        return list(states)

    def stop_session(self, session_id: str) -> None:
        """Kill and reap the session's children, release its shared connections (session/close)."""
        self._stop(session_id, "session_close")

    def stop_all(self) -> None:
        """Kill and reap every child: the agent exits or crashes. Idempotent."""
        for session_id in list(self._sessions):
            self._stop(session_id, "agent_exit")
        for proc in list(self._unreaped):
            self._collect(proc)

    def count(self, session_id: str | None = None) -> int:
        """Live stdio children the agent holds, for one session or all (starting ones included)."""
        return sum(1 for state in self.states(session_id) if state.held)

    def states(self, session_id: str | None = None) -> list[McpServerState]:
        """The server entries of one session (or all sessions), in the order they were given."""
        if session_id is not None:
            return list(self._sessions.get(session_id, ()))
        return [state for states in self._sessions.values() for state in states]

    def pids(self, session_id: str | None = None) -> list[int]:
        """Pids of the live children (for checks with ``acp_sim.proctree``)."""
        return [s.pid for s in self.states(session_id) if s.held and s.pid is not None]

    # -- faults ----------------------------------------------------------------------------------

    def use_state(self, session_id: str, name: str, op: str, mark: str) -> tuple[bool, str | None]:
        """A stateful tool call on the session's server ``name``: ``set`` stores ``mark``, ``get``
        reads; returns (the server was there and connected, the state after the call).

        The state lives with the server process: one per session for stdio, one per URL for
        http/sse, which is what makes a shared server leak one session's state into another.
        Recorded as ``mcp_state`` (name, transport, url, op, value, and for ``get`` the session
        that wrote the value it read, ``writer``)."""
        state = next((st for st in self.states(session_id) if st.name == name), None)
        if state is None or state.status != "connected":
            return False, None
        key: tuple[str, ...] = ("url", state.url) if state.url is not None else ("stdio", session_id, name)
        detail: dict[str, Any] = {"name": name, "transport": state.transport, "op": op}
        if state.url is not None:
            detail["url"] = state.url
        if op == "set":
            self._server_state[key] = (mark, session_id)
            value: str | None = mark
            detail["value"] = mark
        else:
            value, writer = self._server_state.get(key, (None, None))
            detail.update(value=value, writer=writer)
        self._trace.record("mcp_state", session=session_id, detail=detail)
        return True, value

    def fail_next_spawn(self, name: str | None = None) -> None:
        """Fault ``mcp_spawn_failure``: the next stdio server to start (named ``name``, or any)
        fails as if its command could not be started; no process is spawned for it."""
        self._spawn_failures.append(name)

    def crash_child(self, session_id: str, name: str) -> bool:
        """Fault: kill one session's child by server name; False when it holds no such child."""
        return self.crash_children(session_id, name) > 0

    def crash_children(self, session_id: str | None = None, name: str | None = None) -> int:
        """Fault ``mcp_child_crash``: kill the live children of one session (or all), of server
        ``name`` only when given; each gets ``mcp_crash`` then ``reap``. Returns how many died."""
        victims = [s for s in self.states(session_id) if s.held and (name is None or s.name == name)]
        for state in victims:
            self._crash(state, "injected")
        return len(victims)

    def abandon_all(self) -> list[int]:
        """Fault ``crash`` with ``orphan_mcp``: the agent dies without killing its children.

        Each child is traced ``orphan`` and leaves the agent's books (``count`` drops) but keeps
        running, as after a real agent's SIGKILL: only its process group or a leak guard ends it.
        ``reap_orphans`` cleans up afterwards (test teardown; not part of the simulation).
        """
        pids = []
        for session_id in list(self._sessions):
            for state in self._sessions.pop(session_id):
                if state.process is not None and state.pid is not None:
                    if state.crash_scope is not None:
                        state.crash_scope.cancel()
                    self.orphans.append(state.process)
                    state.process, state.status = None, "stopped"
                    pids.append(state.pid)
                    self._trace.record(
                        "orphan", session=session_id, detail={"name": state.name, "pid": state.pid}
                    )
        self._shared.clear()
        return pids

    def reap_orphans(self) -> None:
        """Kill and collect what ``abandon_all`` left running (untraced: the agent is gone)."""
        while self.orphans:
            process = self.orphans.pop()
            if process.poll() is None:
                proctree.kill_tree(process.pid)
            self._collect(process)

    # -- internals -------------------------------------------------------------------------------

    def _start_one(
        self, session_id: str, entry: BaseModel, rng: random.Random
    ) -> tuple[McpServerState, _Outcome | None]:
        if isinstance(entry, schema.McpServerStdio):
            return self._spawn(session_id, entry, rng, self._take_spawn_failure(entry.name))
        if isinstance(entry, schema.HttpMcpServer | schema.SseMcpServer):
            return self._connect(session_id, entry), None
        # claude-agent-acp 0.23.1 passes anything that is not http/sse to the CLI as stdio; an
        # ACP-transport entry has no command, so it can only fail (silently, as above).
        name = str(getattr(entry, "name", "?"))
        state = McpServerState(session_id, name, "acp", status="failed", error="unsupported transport")
        self._trace.record(
            "mcp_failed",
            session=session_id,
            detail={"name": name, "transport": "acp", "reason": "unsupported", "error": state.error},
        )
        return state, None

    def _connect(self, session_id: str, entry: schema.HttpMcpServer | schema.SseMcpServer) -> McpServerState:
        transport: Transport = "http" if isinstance(entry, schema.HttpMcpServer) else "sse"
        users = self._shared.get(entry.url, 0)
        self._shared[entry.url] = users + 1
        state = McpServerState(session_id, entry.name, transport, status="connected", url=entry.url)
        self._trace.record(
            "connect",
            session=session_id,
            detail={"name": entry.name, "transport": transport, "url": entry.url, "shared": users > 0},
        )
        return state

    def _spawn(
        self, session_id: str, entry: schema.McpServerStdio, rng: random.Random, injected: bool
    ) -> tuple[McpServerState, _Outcome | None]:
        argv = (entry.command, *entry.args)
        state = McpServerState(session_id, entry.name, "stdio", command=argv)
        latency = self.settings.handshake.draw(rng)  # drawn even on failure: later draws stay put
        if injected:
            self._fail(state, "injected", "injected spawn failure")
            return state, None
        env = {**os.environ, **{e.name: e.value for e in entry.env}}
        try:
            # Same process group as the agent (no new session): a launcher's killpg of the agent
            # reaps its MCP servers and their children even when the agent itself is SIGKILLed.
            process = subprocess.Popen(
                list(argv),
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=env,
                start_new_session=False,
            )
        except (OSError, ValueError) as exc:
            self._fail(state, "spawn_error", str(exc))
            return state, None
        state.process, state.pid = process, process.pid
        self._trace.record(
            "spawn",
            session=session_id,
            detail={"name": entry.name, "transport": "stdio", "pid": process.pid, "command": list(argv)},
        )
        return state, self._predict(argv, latency)

    def _predict(self, argv: tuple[str, ...], latency: float) -> _Outcome:
        options = mcp_server.options_from_argv(argv)
        if options is None:
            return _Outcome(latency, "connected")
        if options.fail_at_start:
            return _Outcome(
                latency, "failed", "exited", f"exited with code {mcp_server.FAIL_EXIT_CODE} at start"
            )
        if options.hang:
            timeout = self.settings.handshake_timeout
            return _Outcome(timeout, "failed", "timeout", f"no handshake answer in {timeout:g} s")
        # A crash is modelled ``crash_after`` seconds after the spawn; the real process's own timer
        # starts a little later (once it is ready), so the supervisor's kill always comes first.
        if options.crash_after is not None and options.crash_after <= latency:
            error = f"exited with code {mcp_server.CRASH_EXIT_CODE} during the handshake"
            return _Outcome(options.crash_after, "failed", "exited", error)
        return _Outcome(latency, "connected", crash_after=options.crash_after)

    def _finish_handshake(self, state: McpServerState, outcome: _Outcome, start: float) -> None:
        assert state.process is not None
        if outcome.kind == "connected":
            code = state.process.poll()
            if code is not None:  # a command we could not predict died on its own
                self._fail(state, "exited", f"exited with code {code} during the handshake")
                return
            state.status = "connected"
            if mcp_server.options_from_argv(state.command) is not None:
                state.tools = mcp_server.TOOL_NAMES
            self._trace.record(
                "connect",
                session=state.session_id,
                detail={"name": state.name, "transport": "stdio", "pid": state.pid},
            )
            if outcome.crash_after is not None:
                self._schedule_crash(state, start + outcome.crash_after)
            return
        self._fail(state, outcome.reason, outcome.error)

    def _schedule_crash(self, state: McpServerState, at: float) -> None:
        if self._task_group is None:
            raise RuntimeError("a --crash-after MCP server needs McpSupervisor.running() for its timer")
        state.crash_scope = anyio.CancelScope()
        self._task_group.start_soon(self._crash_at, state, at, state.crash_scope)

    async def _crash_at(self, state: McpServerState, at: float, scope: anyio.CancelScope) -> None:
        with scope:
            await self._clock.sleep_until(at)
            if state.held:
                self._crash(state, "crash_after")

    def _crash(self, state: McpServerState, reason: str) -> None:
        self._trace.record(
            "mcp_crash",
            session=state.session_id,
            detail={"name": state.name, "pid": state.pid, "reason": reason},
        )
        state.status = "crashed"
        self._reap(state, "crash")

    def _fail(self, state: McpServerState, reason: str, error: str) -> None:
        state.status, state.error = "failed", error
        detail: dict[str, Any] = {"name": state.name, "transport": state.transport, "reason": reason}
        detail["error"] = error
        if state.pid is not None:
            detail["pid"] = state.pid
        self._trace.record("mcp_failed", session=state.session_id, detail=detail)
        if state.held:
            self._reap(state, "failed")

    def _take_spawn_failure(self, name: str) -> bool:
        for i, wanted in enumerate(self._spawn_failures):
            if wanted in (None, name):
                del self._spawn_failures[i]
                return True
        return False

    def _stop(self, session_id: str, reason: str) -> None:
        for state in self._sessions.pop(session_id, ()):
            if state.held:
                self._reap(state, reason)
                state.status = "stopped"
            elif state.url is not None and state.status == "connected":
                self._release(state)
                state.status = "stopped"

    def _release(self, state: McpServerState) -> None:
        assert state.url is not None
        users = self._shared.get(state.url, 0) - 1
        if users > 0:
            self._shared[state.url] = users
            return
        self._shared.pop(state.url, None)
        self._trace.record(
            "disconnect",
            session=state.session_id,
            detail={"name": state.name, "transport": state.transport, "url": state.url},
        )

    def _reap(self, state: McpServerState, reason: str) -> None:
        """Kill the child and everything it started, collect its exit status, trace ``reap``."""
        process = state.process
        assert process is not None
        state.process = None
        if state.crash_scope is not None:
            state.crash_scope.cancel()
        if process.poll() is None:
            # The whole tree: an npx-style wrapper's grandchildren die with it (known-client-bugs
            # row 10). The child is ours and unreaped, so its pid cannot be reused meanwhile.
            proctree.kill_tree(process.pid)
        self._collect(process)
        self._trace.record(
            "reap", session=state.session_id, detail={"name": state.name, "pid": state.pid, "reason": reason}
        )

    def _collect(self, process: subprocess.Popen[bytes]) -> None:
        # A synchronous wait, never an await: after SIGKILL the kernel tears the child down in
        # well under a millisecond, and a blocking call cannot let a virtual clock jump meanwhile.
        try:
            process.wait(timeout=REAP_TIMEOUT)
        except subprocess.TimeoutExpired:  # stuck in the kernel (D state): collect it later
            if process not in self._unreaped:
                self._unreaped.append(process)
            return
        if process in self._unreaped:
            self._unreaped.remove(process)
        if process.stdin is not None:
            process.stdin.close()
