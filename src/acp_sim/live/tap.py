"""A transparent stdio tap: every line between a client and a real agent, forwarded and recorded.

The bytes pass through unchanged and unbuffered (a tap that reframed or delayed lines would test
itself, not the bridge). Each complete line is also parsed and handed to ``acp_sim.trace.Trace``,
the same wire observer the simulated agent uses, from the agent's point of view (client->agent is
``recv``, agent->client is ``send``), so a live trace has the simulated agent's format and the
oracle judges it unchanged. The recorded copy goes through a ``Redactor`` first.

Two forms: ``TappedAgent`` wraps any ``AgentLauncher`` in process (the orchestrator or a bridge's
adapter reads the tapped streams), and ``run_tap`` is ``acp-sim tap -- CMD``: a process that sits
between a bridge and the agent command it spawns.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.abc import ByteReceiveStream, ByteSendStream

from acp_sim import proctree
from acp_sim.clock import SimClock
from acp_sim.envelope import excerpt
from acp_sim.errors import InvalidRequest, JsonRpcError, LineTooLong, ParseError
from acp_sim.line_splitter import DEFAULT_MAX_LINE_BYTES, LineSplitter
from acp_sim.live.processes import SessionProcessProbe
from acp_sim.live.redact import Redactor
from acp_sim.orchestrator.launcher import AgentLauncher, AgentLink
from acp_sim.trace import Trace, TraceEvent
from acp_sim.wire import Direction

MessageHook = Callable[[Direction, dict[str, Any]], None]
# How often the tap re-reads the agent's process tree between session starts, so processes that
# end after session/close (within ~2 s for Claude Code) are recorded as reaped when they go.
PROBE_INTERVAL = 0.25


async def _poll(probe: SessionProcessProbe, interval: float) -> None:
    while True:
        await anyio.sleep(interval)
        probe.update()


class WireRecorder:
    """Splits one direction's bytes into lines and records each in the trace (redacted)."""

    def __init__(
        self,
        trace: Trace,
        direction: Direction,
        redactor: Redactor,
        *,
        hook: MessageHook | None = None,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    ) -> None:
        self.trace = trace
        self.direction = direction
        self.redactor = redactor
        self.hook = hook
        self._splitter = LineSplitter(max_line_bytes)

    def feed(self, data: bytes) -> None:
        for line in self._splitter.feed(data):
            if isinstance(line, LineTooLong):
                self._bad(b"", line)
            elif line.strip():
                self._line(line)

    def finish(self) -> None:
        """End of stream: a partial last line is recorded as bad input, like the wire reports it."""
        rest = self._splitter.leftover
        if rest.strip():
            self._bad(rest, ParseError("end of stream inside a line", data={"excerpt": excerpt(rest)}))

    def _line(self, line: bytes) -> None:
        try:
            message = json.loads(line)
        except (ValueError, UnicodeDecodeError) as exc:
            self._bad(line, ParseError(f"Parse error: {exc}", data={"excerpt": excerpt(line)}))
            return
        if not isinstance(message, dict):
            self._bad(line, InvalidRequest("Invalid Request: expected a JSON-RPC object"))
            return
        recorded = self.redactor.value(message)
        self.trace.on_message(self.direction, recorded)
        if self.hook is not None:
            self.hook(self.direction, recorded)

    def _bad(self, line: bytes, error: JsonRpcError) -> None:
        safe = self.redactor.text(line.decode("utf-8", "replace")).encode()
        if self.direction == "recv":
            self.trace.on_bad_input(safe, error)
        else:
            # The agent wrote a line that is not JSON-RPC: new kind, same detail as bad_input.
            self.trace.record(
                "bad_output",
                detail={"error": error.to_error_object(), "line": safe.decode("utf-8", "replace")},
            )


@dataclass(eq=False)
class TappedReceiveStream(ByteReceiveStream):
    """The agent's output as the client reads it: unchanged, and recorded as ``send``."""

    inner: ByteReceiveStream
    recorder: WireRecorder

    async def receive(self, max_bytes: int = 65536) -> bytes:
        try:
            data = await self.inner.receive(max_bytes)
        except anyio.EndOfStream:
            self.recorder.finish()
            raise
        self.recorder.feed(data)
        return data

    async def aclose(self) -> None:
        await self.inner.aclose()


@dataclass(eq=False)
class TappedSendStream(ByteSendStream):
    """The client's input to the agent: unchanged, and recorded as ``recv`` once written."""

    inner: ByteSendStream
    recorder: WireRecorder

    async def send(self, item: bytes) -> None:
        await self.inner.send(item)
        self.recorder.feed(item)

    async def aclose(self) -> None:
        self.recorder.finish()
        await self.inner.aclose()


@dataclass
class TappedInstance:
    """One agent instance seen through the tap: what ``pytest_acp.harness.ground_truth.GroundTruth`` reads."""

    name: str
    trace: Trace
    clock: SimClock
    pid: int | None = None
    probe: SessionProcessProbe | None = None
    returncode: int | None = None

    def alive(self) -> bool:
        return self.returncode is None and self.pid is not None and proctree.info(self.pid) is not None

    @property
    def exit_reason(self) -> str | None:
        """None while the agent runs; ``exit`` once the launcher reaped it, ``killed`` if it died first."""
        if any(event.kind == "exit" for event in reversed(self.trace.events)):
            return "exit"
        return None if self.alive() else "killed"


@dataclass
class TappedAgent:
    """An ``AgentLauncher`` that puts a tap between the caller and every instance ``inner`` starts.

    ``agents`` keeps every instance with its trace (instance n is the n-th launch), like
    ``acp_sim.agent.InProcessAgent``. ``trace_dir`` also writes ``trace-<n>.jsonl`` there as events
    happen, so a killed run still leaves its traces. With ``probe_processes`` the tap records each
    session's process and stdio MCP servers (``SessionProcessProbe``).
    """

    inner: AgentLauncher
    redactor: Redactor = field(default_factory=Redactor.from_env)
    trace_dir: str | None = None
    probe_processes: bool = True
    poll_interval: float = PROBE_INTERVAL
    name: str = ""
    virtual_time: bool = False
    agents: list[TappedInstance] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.name = self.name or f"tap:{self.inner.name}"

    @property
    def current(self) -> TappedInstance:
        return self.agents[-1]

    def crash(self) -> int | None:
        """Kill the newest instance and its children at once (SIGKILL); returns its pid (None: none alive).

        The real agent's crash, for the harness: its client sees the pipes close, as in the field.
        """
        if not self.agents or not self.agents[-1].alive():
            return None
        instance = self.agents[-1]
        pid = instance.pid
        assert pid is not None
        proctree.wait_gone(proctree.kill_tree(pid), timeout=5.0)
        # Ground truth the tap alone knows: the agent died now, not when its client notices.
        instance.trace.record("crash", detail={"pid": pid, "signal": "SIGKILL"})
        return pid

    @asynccontextmanager
    async def launch(self) -> AsyncIterator[AgentLink]:
        index = len(self.agents)
        clock = SimClock()
        sink_file = None
        if self.trace_dir is not None:
            os.makedirs(self.trace_dir, exist_ok=True)
            path = os.path.join(self.trace_dir, f"trace-{index}.jsonl")
            # Trace lines are written synchronously as events happen (like the stdio agent's trace).
            sink_file = open(path, "w", encoding="utf-8", buffering=1)  # noqa: SIM115, ASYNC230
        sink = (lambda event: sink_file.write(event.to_json() + "\n")) if sink_file is not None else None
        trace = Trace(clock.now, sink=sink)
        instance = TappedInstance(f"{self.inner.name}#{index}", trace, clock)
        process = None
        try:
            async with self.inner.launch() as link:
                self.agents.append(instance)  # only instances that started: each has a trace
                instance.pid, process = link.pid, link.process
                trace.record("agent_start", detail={"agent": link.name, "pid": link.pid, "launch": index})
                hook = None
                if self.probe_processes and link.pid is not None:
                    instance.probe = SessionProcessProbe(link.pid, trace, self.redactor)
                    hook = instance.probe.on_message
                    # No task of our own here: a task group around the yield would wrap the
                    # caller's exceptions in an ExceptionGroup. The probe re-reads the process tree
                    # as messages pass instead (at most every ``poll_interval`` seconds).
                    instance.probe.interval = self.poll_interval
                out = WireRecorder(trace, "send", self.redactor, hook=hook)
                into = WireRecorder(trace, "recv", self.redactor, hook=hook)
                yield AgentLink(
                    TappedReceiveStream(link.receive, out),
                    TappedSendStream(link.send, into),
                    f"tap:{link.name}",
                    link.pid,
                    link.process,
                )
        finally:
            if instance in self.agents:
                if process is not None:
                    instance.returncode = process.returncode
                if instance.probe is not None:
                    instance.probe.update()  # the agent is gone: record which processes went with it
                # The launcher has reaped the agent: the oracle's end-of-instance marker.
                trace.record("exit", detail={"returncode": instance.returncode, "pid": instance.pid})
            if sink_file is not None:
                sink_file.close()


# -- the tap as a process: ``acp-sim tap --trace FILE -- CMD ...`` -------------------------------------


async def _pump(source: ByteReceiveStream, sink: ByteSendStream, recorder: WireRecorder) -> None:
    """Copy bytes as they come, recording lines; at the source's end, close the sink (EOF onwards)."""
    try:
        while True:
            try:
                data = await source.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                break
            recorder.feed(data)
            await sink.send(data)
    except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        pass  # the other side has gone; the process watcher ends the tap
    finally:
        recorder.finish()
        with suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            await sink.aclose()


async def run_tap(
    argv: Sequence[str],
    trace: Trace,
    *,
    stdin: ByteReceiveStream,
    stdout: ByteSendStream,
    redactor: Redactor | None = None,
    probe_processes: bool = True,
    env: dict[str, str] | None = None,
) -> int:
    """Run ``argv`` with its stdio tapped; return its exit code once it has exited.

    The child stays in the tap's process group, so a bridge that kills the group kills both; a
    SIGTERM or SIGINT sent to the tap alone is passed on to the child. Closing the tap's stdin
    closes the child's; the tap ends when the child has exited and its output is drained.
    """
    redactor = redactor or Redactor.from_env(env)
    process = await anyio.open_process(list(argv), stderr=None, env=env)
    assert process.stdin is not None
    assert process.stdout is not None
    safe_argv = [redactor.text(a) for a in argv]
    trace.record("agent_start", detail={"agent": " ".join(safe_argv), "pid": process.pid, "launch": 0})
    probe = SessionProcessProbe(process.pid, trace, redactor) if probe_processes else None
    hook = probe.on_message if probe is not None else None
    into = WireRecorder(trace, "recv", redactor, hook=hook)
    out = WireRecorder(trace, "send", redactor, hook=hook)
    async with anyio.create_task_group() as tg:
        tg.start_soon(_pump, stdin, process.stdin, into)
        tg.start_soon(_forward_signals, process)
        if probe is not None:
            tg.start_soon(_poll, probe, PROBE_INTERVAL)
        await _pump(process.stdout, stdout, out)
        await process.wait()
        tg.cancel_scope.cancel()
    trace.record("exit", detail={"returncode": process.returncode, "pid": process.pid})
    assert process.returncode is not None
    return process.returncode


async def _forward_signals(process: Any) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        async for signum in signals:
            with suppress(ProcessLookupError):
                process.send_signal(signum)


def tap_main(argv: Sequence[str], trace_path: str, *, backend: str = "asyncio") -> int:
    """``acp-sim tap``: the tap process on this process's stdin/stdout (real time)."""
    from acp_sim import clock as clock_module
    from acp_sim.streams import FdReceiveStream, FdSendStream

    path = trace_path.replace("{pid}", str(os.getpid()))
    with open(path, "w", encoding="utf-8", buffering=1) as trace_file:

        def sink(event: TraceEvent) -> None:
            trace_file.write(event.to_json() + "\n")

        async def main() -> int:
            trace = Trace(SimClock().now, sink=sink)
            return await run_tap(argv, trace, stdin=FdReceiveStream(0), stdout=FdSendStream(1))

        try:
            code = clock_module.run(main, backend=backend, virtual=False)  # type: ignore[arg-type]
            # An agent killed by signal N: exit 128 + N, as a shell reports it.
            return 128 - code if code < 0 else code
        except FileNotFoundError as exc:
            print(f"acp-sim tap: cannot start {argv[0]!r}: {exc.strerror}", file=sys.stderr)
            return 127


__all__ = [
    "TappedAgent",
    "TappedInstance",
    "TappedReceiveStream",
    "TappedSendStream",
    "WireRecorder",
    "run_tap",
    "tap_main",
]
