"""The base adapter for bridges that are processes: any language, its own line protocol upward.

Many bridges are not Python libraries: a Node sidecar between a desktop app and the agent, an
editor extension, a bot. They launch the agent as their own child and talk to their app in their
own JSON-lines protocol. ``SubprocessBridge`` puts such a bridge under test: it starts the bridge
with the agent command injected (an argument or an environment variable), writes the client's
actions as the bridge's messages, reads the bridge's messages and turns them into what the
harness records (delivered text, turn ends, errors, per app session key), stops the bridge, and
makes the bridge's whole process tree visible to the leak guard. A user writes only the mapping:

    class MyBridge(SubprocessBridge):
        command = ("node", "bridge.mjs")
        agent_env = "ACP_AGENT_CMD"              # or agent_arg = "--agent"
        acks = frozenset({"start", "open", "close"})

        def request(self, action: Action) -> dict | None:      # client action -> bridge message
            if action.kind == "prompt":
                return {"type": "query", "session": action.key, "prompt": action.text}
            ...

        def observe(self, message: dict) -> Observation | None:  # bridge message -> observation
            if message["type"] == "text":
                return Delta(message["session"], message["delta"])
            if message["type"] == "permission":                # the bridge asks its app: answer
                return Reply({"type": "allow", "id": message["id"]})
            ...

    bridge = MyBridge.factory()                  # the adapter factory (``--acp-bridge mod:bridge``)

Real time, always: the bridge and its agents are real processes, and a virtual clock would jump
while we wait on their pipes (the design notes' hazard), so the factory refuses an agent on
virtual time. ``pytest_acp.harness.realtime`` gives the agent command (``acp-sim agent --trace-to``, so
every agent instance the bridge starts reaches the oracle) and a real-time state machine.

Attribution: the adapter opens a turn for a key *before* it writes the prompt, so nothing the
bridge sends for that key is lost to a race in the adapter itself. Text that arrives for a key
between turns is delivered to the key's last turn (where an app would show it), so a late or
stray delta is judged by the oracle rather than silently dropped.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import signal
import subprocess
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import anyio
from anyio.abc import Process, TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from acp_sim import proctree
from acp_sim.errors import LineTooLong
from acp_sim.line_splitter import DEFAULT_MAX_LINE_BYTES, LineSplitter
from pytest_acp.adapter import AgentUnderTest, BridgeCapabilities, TurnEnd, TurnOutput
from pytest_acp.harness import unattributed
from pytest_acp.harness.action_timing import received
from pytest_acp.harness.bridge_messages import (
    Ack,
    Action,
    BridgeActionFailed,
    BridgeExited,
    Delta,
    End,
    Observation,
    Reply,
    Update,
)
from pytest_acp.harness.bridge_processes import BridgeProcesses

# Real seconds. Delivery through two extra processes and pipes on a loaded CI machine: the
# oracle's lateness and cancel checks get this much slack (a correct bridge needs milliseconds).
REAL_TIME_SLACK = 2.0
REAL_TIME_CAPABILITIES = BridgeCapabilities(
    delivery_slack=REAL_TIME_SLACK, cancel_slack=REAL_TIME_SLACK, reconnects=True
)
STDERR_LINES = 40


@dataclass
class _Waiter:
    event: anyio.Event = field(default_factory=anyio.Event)
    ack: Ack | None = None


@dataclass
class _Turn:
    out: TurnOutput
    done: anyio.Event = field(default_factory=anyio.Event)
    end: TurnEnd | None = None


@dataclass(frozen=True)
class _Begin:
    turn: _Turn


@dataclass(frozen=True)
class _Gone:
    reason: str


class _Channel:
    """One key's observations, in the order the bridge sent them, delivered by one task."""

    def __init__(self) -> None:
        send, receive = anyio.create_memory_object_stream[Any](math.inf)
        self.send: MemoryObjectSendStream[Any] = send
        self.receive: MemoryObjectReceiveStream[Any] = receive
        self.turn: _Turn | None = None
        self.last: TurnOutput | None = None


# -- the adapter ------------------------------------------------------------------------------------


class SubprocessBridge:
    """A ``BridgeAdapter`` for a bridge process; subclass it and write ``request`` and ``observe``.

    Class attributes: ``command`` (argv of the bridge), ``args`` (more arguments, e.g. a bug
    flag: also settable per factory), ``agent_arg`` / ``agent_env`` (how the agent command is
    injected: after this argument, and/or in this environment variable), ``agent_format``
    (``json``: a JSON array, ``shell``: one shell-quoted string), ``env`` and ``cwd`` of the
    bridge, ``actions`` (which optional actions the bridge supports: ``prewarm``,
    ``change_cwd``), ``acks`` (which actions the bridge answers, so the adapter waits for the
    answer), ``capabilities`` (what the oracle may expect; real-time slack by default),
    ``ack_timeout`` and ``exit_grace`` (real seconds).
    """

    command: ClassVar[Sequence[str]] = ()
    args: Sequence[str] = ()
    agent_arg: ClassVar[str | None] = None
    agent_env: ClassVar[str | None] = "ACP_AGENT_CMD"
    agent_format: ClassVar[Literal["json", "shell"]] = "json"
    env: ClassVar[Mapping[str, str]] = {}
    cwd: ClassVar[str | None] = None
    actions: ClassVar[frozenset[str]] = frozenset({"open", "prompt", "cancel", "close"})
    acks: ClassVar[frozenset[str]] = frozenset()
    capabilities: BridgeCapabilities = REAL_TIME_CAPABILITIES
    ack_timeout: ClassVar[float] = 60.0
    exit_grace: ClassVar[float] = 5.0

    # -- the mapping (override) ------------------------------------------------------------------------

    def request(self, action: Action) -> dict[str, Any] | None:
        """The bridge's message for ``action``, or None when the bridge has none (nothing is sent)."""
        raise NotImplementedError(
            f"{type(self).__name__}.request: map client actions to your bridge's messages"
        )

    def observe(self, message: dict[str, Any]) -> Observation | Sequence[Observation] | None:
        """What one message from the bridge means; None for messages the suite has no use for."""
        raise NotImplementedError(
            f"{type(self).__name__}.observe: map your bridge's messages to observations"
        )

    # -- construction ---------------------------------------------------------------------------------

    def __init__(self, agent: AgentUnderTest, *, args: Sequence[str] | None = None) -> None:
        if agent.command is None:
            raise TypeError(
                f"{type(self).__name__} starts the agent itself and needs an agent command: run it with "
                "pytest_acp.harness.realtime (acp-sim agent --trace-to a TraceCollector run directory)"
            )
        if agent.virtual_time:
            raise TypeError(
                f"{type(self).__name__} is a real process: it must run on real time (a virtual clock "
                "jumps while we wait on its pipes); use pytest_acp.harness.realtime"
            )
        if args is not None:
            self.args = tuple(args)
        self.agent = agent
        self.process: Process | None = None
        self.returncode: int | None = None
        self.stderr_tail: deque[str] = deque(maxlen=STDERR_LINES)
        self.unrouted: list[Observation] = []
        """Observations the adapter could not attribute (a key with no turn yet, an unasked ack)."""
        self.noise: list[str] = []
        """Lines from the bridge that are not JSON objects."""
        self.forced_stop = False
        """The bridge did not exit within ``exit_grace`` after its stdin closed; it was killed."""
        self.tree = BridgeProcesses(agent)
        """Process groups the bridge and its descendants were seen in (for the leak guard)."""
        self.leftovers: list[proctree.ProcInfo] = []
        """Processes still alive after the bridge stopped, killed here (only without a leak guard)."""
        self._channels: dict[str, _Channel] = {}
        self._waiters: dict[tuple[str, str | None], deque[_Waiter]] = defaultdict(deque)
        self._tg: TaskGroup | None = None
        self._write_lock = anyio.Lock()
        self._gone: str | None = None
        self._exited = anyio.Event()
        self._stopped = False
        self._replies, self._reply_stream = anyio.create_memory_object_stream[dict[str, Any]](math.inf)
        for optional in ("prewarm", "change_cwd"):
            if optional not in self.actions:
                setattr(self, optional, None)  # not callable: the harness skips the action

    @classmethod
    def factory(cls, *, args: Sequence[str] | None = None, name: str | None = None) -> Any:
        """The adapter factory for this bridge (``args``: extra command-line arguments)."""

        @asynccontextmanager
        async def bridge(agent: AgentUnderTest) -> AsyncIterator[SubprocessBridge]:
            adapter = cls(agent, args=args)
            async with adapter.running():
                yield adapter

        bridge.__name__ = bridge.__qualname__ = name or f"{cls.__name__}_bridge"
        # Marks a factory that needs an agent command on real time (pytest_acp.harness.realtime), so a
        # runner can pick the real-time machine for it.
        bridge.realtime = True  # type: ignore[attr-defined]
        return bridge

    def argv(self) -> list[str]:
        argv = [*self.command, *self.args]
        if self.agent_arg is not None:
            argv += [self.agent_arg, self._agent_command()]
        return argv

    def environment(self) -> dict[str, str]:
        env = {**os.environ, **self.env}
        if self.agent_env is not None:
            env[self.agent_env] = self._agent_command()
        return env

    def _agent_command(self) -> str:
        command = list(self.agent.command or [])
        return json.dumps(command) if self.agent_format == "json" else shlex.join(command)

    # -- lifetime -------------------------------------------------------------------------------------

    @asynccontextmanager
    async def running(self) -> AsyncIterator[SubprocessBridge]:
        """Start the bridge; on exit stop it (stdin closed, then killed after ``exit_grace``)."""
        await self._spawn()
        failed: BridgeExited | TimeoutError | None = None
        async with anyio.create_task_group() as tg:
            self._tg = tg
            tg.start_soon(self._read_stdout)
            tg.start_soon(self._read_stderr)
            tg.start_soon(self._write_replies)
            try:
                if "start" in self.acks:
                    try:
                        await self._expect_now("start", None, "starting")
                    except (BridgeExited, TimeoutError) as exc:
                        failed = exc  # raised below, outside the task group: not wrapped in a group
                if failed is None:
                    yield self
            finally:
                with anyio.CancelScope(shield=True):
                    await self.stop()
                tg.cancel_scope.cancel()
        if failed is not None:
            raise failed

    async def _spawn(self) -> None:
        argv = self.argv()
        try:
            self.process = await anyio.open_process(
                argv,
                env=self.environment(),
                cwd=self.cwd,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,  # its own process group: everything it starts is findable
            )
        except OSError as exc:
            raise BridgeExited(f"cannot start the bridge {shlex.join(argv)}: {exc.strerror or exc}") from None
        self.tree.started(self.process.pid)

    async def stop(self) -> None:
        """Close the bridge's stdin and wait for it to exit (killing it after ``exit_grace``).

        Processes it started and left running are not killed here: the leak guard reports them
        (P6) and cleans up. Without a guard (``agent.extra["leak_guard"]``) they are killed and
        listed in ``leftovers``.
        """
        process = self.process
        if process is None or self._stopped:
            return
        self._stopped = True
        self.note_tree()
        if self._gone is None and "shutdown" in self.actions:
            message = self.request(Action("shutdown"))
            if message is not None:
                with suppress(BridgeExited):
                    await self._write(message)
        with suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            if process.stdin is not None:
                await process.stdin.aclose()
        with anyio.move_on_after(self.exit_grace):
            await process.wait()
        if process.returncode is None:
            self.forced_stop = True
            for sig in (signal.SIGTERM, signal.SIGKILL):
                with suppress(ProcessLookupError):
                    process.send_signal(sig)
                with anyio.move_on_after(self.exit_grace):
                    await process.wait()
                if process.returncode is not None:
                    break
        self.returncode = process.returncode
        with anyio.move_on_after(self.exit_grace):
            await self._exited.wait()  # stdout read to its end: every message is in
        with anyio.move_on_after(self.exit_grace), suppress(Exception):
            await process.aclose()  # closes the pipes (asyncio warns about a transport left open)
        leftovers = await self.tree.settle(self.exit_grace)
        if leftovers is not None:
            self.leftovers = leftovers

    def kill(self, sig: signal.Signals = signal.SIGKILL) -> None:
        """Kill the bridge process only (not its children): a bridge that crashes mid-run."""
        if self.process is not None and self.process.returncode is None:
            self.note_tree()
            with suppress(ProcessLookupError):
                self.process.send_signal(sig)

    def note_tree(self) -> None:
        """Remember the process groups of the bridge's descendants and of the agents it started, so
        orphans (re-parented away once the bridge dies) are still found by the leak guard."""
        self.tree.note(self.process.pid if self.process is not None else None)

    def _note_tree_soon(self) -> None:
        """``note_tree`` off the action path: a scan of the process table takes milliseconds (far
        more on a loaded machine) and would delay every action behind it; one scan at a time, in a
        worker thread."""
        if self.tree.scanning or self._tg is None or self.process is None:
            return
        self.tree.scanning = True
        self._tg.start_soon(self.tree.scan, self.process.pid)

    def survivors(self) -> list[proctree.ProcInfo]:
        """Processes of the bridge's groups, and agents it started, that are still alive."""
        return self.tree.survivors()

    # -- reading the bridge -----------------------------------------------------------------------------

    async def _read_stdout(self) -> None:
        assert self.process is not None
        assert self.process.stdout is not None
        splitter = LineSplitter(DEFAULT_MAX_LINE_BYTES)
        try:
            async for data in self.process.stdout:
                for line in splitter.feed(data):
                    if isinstance(line, LineTooLong):
                        self.noise.append(str(line))
                        unattributed.note("noise", str(line))
                    elif line.strip():
                        self._on_line(line)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass
        finally:
            code = self.process.returncode
            if code is None:
                with anyio.move_on_after(self.exit_grace), suppress(Exception):
                    code = await self.process.wait()
            self._on_exit(code)

    async def _read_stderr(self) -> None:
        # Drained always: a bridge blocked on a full stderr pipe would look like a wedged bridge.
        assert self.process is not None
        assert self.process.stderr is not None
        splitter = LineSplitter(DEFAULT_MAX_LINE_BYTES)
        with suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            async for data in self.process.stderr:
                for line in splitter.feed(data):
                    if not isinstance(line, LineTooLong):
                        self.stderr_tail.append(line.decode("utf-8", "replace"))

    def _on_line(self, line: bytes) -> None:
        try:
            message = json.loads(line)
        except ValueError:
            message = None
        if not isinstance(message, dict):
            text = line.decode("utf-8", "replace")
            self.noise.append(text)
            unattributed.note("noise", text)
            return
        observed = self.observe(message)
        if observed is None:
            # The mapping has no use for it; still shown (an error with no key explains hung turns).
            unattributed.note("ignored", json.dumps(message, separators=(",", ":")))
            return
        for item in [observed] if isinstance(observed, Observation) else observed:
            self._dispatch(item)

    def _dispatch(self, item: Observation) -> None:
        if isinstance(item, Reply):
            self._replies.send_nowait(item.message)
            return
        if isinstance(item, Ack):
            waiters = self._waiters.get((item.action, item.key))
            if waiters:
                waiter = waiters.popleft()
                waiter.ack = item
                waiter.event.set()
            else:
                self.unrouted.append(item)
                unattributed.note("unrouted", repr(item))
            return
        self._channel(item.key).send.send_nowait(item)

    def _on_exit(self, code: int | None) -> None:
        self.returncode = code
        reason = "the bridge exited" + (f" with code {code}" if code is not None else "")
        if code is not None and code < 0:
            with suppress(ValueError):
                reason = f"the bridge was killed by {signal.Signals(-code).name}"
        tail = [line for line in self.stderr_tail if line.strip()][-5:]
        if tail:
            reason += "; its last stderr lines: " + " | ".join(tail)
        self._gone = reason
        for waiters in self._waiters.values():
            for waiter in waiters:
                waiter.event.set()
        for channel in self._channels.values():
            channel.send.send_nowait(_Gone(reason))
        self._exited.set()

    def _channel(self, key: str) -> _Channel:
        channel = self._channels.get(key)
        if channel is None:
            channel = self._channels[key] = _Channel()
            assert self._tg is not None
            self._tg.start_soon(self._pump, channel)
            if self._gone is not None:
                channel.send.send_nowait(_Gone(self._gone))
        return channel

    async def _pump(self, channel: _Channel) -> None:
        """Deliver one key's observations in order; only this key waits for a slow caller."""
        async for item in channel.receive:
            if isinstance(item, _Begin):
                channel.turn = item.turn
                continue
            turn = channel.turn
            target = turn.out if turn is not None else channel.last
            if isinstance(item, Delta | Update):
                if target is None:
                    self.unrouted.append(item)
                    unattributed.note("unrouted", repr(item))
                elif isinstance(item, Delta):
                    await target.text(item.text, item.kind)
                else:
                    await target.update(item.update)
            elif isinstance(item, End | _Gone):
                if turn is None:
                    if isinstance(item, End):
                        self.unrouted.append(item)
                        unattributed.note("unrouted", repr(item))
                    continue
                if isinstance(item, End):
                    turn.end = TurnEnd(item.stop_reason, item.usage, item.error, item.timed_out)
                else:
                    turn.end = TurnEnd(error=item.reason)
                channel.turn, channel.last = None, turn.out
                turn.done.set()

    # -- writing to the bridge ------------------------------------------------------------------------

    async def send(self, message: dict[str, Any]) -> None:
        """Write ``message`` to the bridge (for a mapping that answers the bridge itself; ``observe``
        may instead return a ``Reply``). Raises ``BridgeExited`` once the bridge is gone."""
        await self._write(message)

    async def _write_replies(self) -> None:
        # One task, so replies reach the bridge in the order the bridge's messages asked for them.
        async for message in self._reply_stream:
            with suppress(BridgeExited):
                await self._write(message)

    async def _write(self, message: dict[str, Any]) -> None:
        if self._gone is not None:
            raise BridgeExited(self._gone)
        assert self.process is not None
        assert self.process.stdin is not None
        data = (json.dumps(message, separators=(",", ":")) + "\n").encode()
        try:
            async with self._write_lock:  # one writer at a time (trio refuses concurrent sends)
                await self.process.stdin.send(data)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
            raise BridgeExited(
                self._gone or f"the bridge's stdin is closed ({exc or type(exc).__name__})"
            ) from None

    def _register(self, action: str, key: str | None) -> _Waiter:
        waiter = _Waiter()
        self._waiters[(action, key)].append(waiter)
        return waiter

    async def _await(self, waiter: _Waiter, action: str, key: str | None) -> None:
        with anyio.move_on_after(self.ack_timeout):
            await waiter.event.wait()
        queue = self._waiters.get((action, key))
        if queue is not None and waiter in queue:
            queue.remove(waiter)
        if waiter.ack is None:
            if self._gone is not None:
                raise BridgeExited(self._gone)
            raise TimeoutError(
                f"the bridge did not answer {action}"
                + (f" for {key}" if key else "")
                + f" within {self.ack_timeout:g} s"
            )
        if waiter.ack.error is not None:
            raise BridgeActionFailed(f"{action}" + (f" {key}" if key else "") + f": {waiter.ack.error}")

    async def _expect_now(self, action: str, key: str | None, what: str) -> None:
        """Wait for an ack that is not the answer to a message of ours (``start``)."""
        waiter = self._register(action, key)
        try:
            await self._await(waiter, action, key)
        except BridgeExited as exc:
            raise BridgeExited(f"{what} {shlex.join(self.argv()[:3])}...: {exc}") from None

    async def _act(self, action: Action, ack_key: str | None) -> bool:
        """Send ``action`` (when the mapping has a message for it) and wait for its ack if acked."""
        message = self.request(action)
        if message is None:
            return False
        self._note_tree_soon()
        acked = action.kind in self.acks
        waiter = self._register(action.kind, ack_key) if acked else None
        # The bridge has it from now on (stamped before the write: its answer, and the agent's
        # trace of what it forwarded, may come before this task runs again).
        received()
        try:
            await self._write(message)
        except BaseException:
            if waiter is not None:
                self._waiters[(action.kind, ack_key)].remove(waiter)
            raise
        if waiter is not None:
            await self._await(waiter, action.kind, ack_key)
        return True

    # -- BridgeAdapter -----------------------------------------------------------------------------------

    async def open_session(
        self, key: str, *, cwd: str, mcp_servers: list[dict[str, Any]], model: str | None
    ) -> None:
        await self._act(Action("open", key, cwd=cwd, mcp_servers=list(mcp_servers), model=model), key)

    async def prompt(self, key: str, text: str, out: TurnOutput) -> TurnEnd:
        channel = self._channel(key)
        turn = _Turn(out)
        # The turn is registered before the prompt is written: output for it cannot be missed.
        channel.send.send_nowait(_Begin(turn))
        try:
            await self._act(Action("prompt", key, text=text), None)
        except BridgeExited as exc:
            return TurnEnd(error=str(exc))
        await turn.done.wait()
        assert turn.end is not None
        return turn.end

    async def cancel(self, key: str) -> None:
        await self._act(Action("cancel", key), key)

    async def close(self, key: str) -> None:
        await self._act(Action("close", key), key)

    async def prewarm(self, *, cwd: str, mcp_servers: list[dict[str, Any]], model: str | None) -> None:
        await self._act(Action("prewarm", cwd=cwd, mcp_servers=list(mcp_servers), model=model), None)

    async def change_cwd(self, old: str, new: str | None = None) -> None:
        await self._act(Action("change_cwd", cwd=old, new_cwd=new or old), None)
