"""Ground truth from agents that someone else starts: one trace file per agent instance, per run.

A bridge written in another language launches the agent itself, as its own child, as many times
as it likes (a restart after a crash is a new instance). To judge it, the oracle still needs the
trace of every instance. ``acp-sim agent --trace-to DIR`` (or ``ACP_SIM_TRACE_TO=DIR`` in its
environment) makes each instance write its trace into ``DIR`` as it goes:

- ``DIR`` is a run directory made by ``TraceCollector``: it holds ``run.json`` with the run id.
  An agent refuses a directory without one, so a mistyped or stale address fails at start
  instead of writing where nobody reads.
- Each instance claims the next free ``agent-NNNN.jsonl`` (an exclusive create, so concurrent
  starts never share a file; numbers follow start order) and writes its trace there, one line
  per event, flushed as each event happens. A crash, ``os._exit`` or SIGKILL loses nothing the
  agent already wrote: every line is in the kernel's hands the moment it is recorded.
- The first event is ``agent_start``; its ``detail`` names the run id, the instance number, the
  pid and the agent's time origin on the system's monotonic clock (``monotonic``), which maps
  the instance's trace times onto any other process's clock.

Concurrent runs never mix: each run has its own directory, and the collector also ignores a file
whose ``agent_start`` names another run (listed in ``TraceCollector.foreign``).

The collector side reads the files incrementally (only complete lines; a line still being written
is read next time) and presents each instance the way ``acp_sim.agent.InProcessAgent`` presents
its own: ``collector.agents[i].trace.events`` and ``.clock.now()``, so the plugin's ground truth
reads either unchanged. Everything here is plain file I/O and process signals: it never awaits a
pipe, so it is safe next to any clock.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from pydantic import BaseModel, ConfigDict, ValidationError

from acp_sim import proctree
from acp_sim.profile import AgentProfile
from acp_sim.trace import EVENT_ADAPTER, Trace, TraceEvent

ENV_TRACE_TO = "ACP_SIM_TRACE_TO"
RUN_FILE = "run.json"
START_KIND = "agent_start"
INSTANCE_GLOB = "agent-*.jsonl"
STATE_DIR = "state"
PROFILE_FILE = "profile.json"
FORMAT = 1


class TraceToError(Exception):
    """``--trace-to`` names something that is not a run directory."""


class RunInfo(BaseModel):
    """``run.json``: what makes a directory a run directory."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run: str
    format: int = FORMAT
    created: float
    """Wall-clock seconds (for people reading the directory; nothing orders by it)."""


def _instance_path(directory: Path, number: int) -> Path:
    return directory / f"agent-{number:04d}.jsonl"


def read_run_info(directory: str | Path) -> RunInfo:
    path = Path(directory) / RUN_FILE
    try:
        return RunInfo.model_validate_json(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise TraceToError(
            f"--trace-to {directory}: not a trace run directory ({path}: {exc.strerror}); "
            "make one with acp_sim.trace_collector.TraceCollector"
        ) from None
    except ValidationError as exc:
        raise TraceToError(
            f"--trace-to {directory}: {path} is not a run file: {exc.errors()[0]['msg']}"
        ) from None


# -- the agent's side --------------------------------------------------------------------------------


class InstanceFile:
    """The trace file one agent instance writes into a run directory (agent side)."""

    def __init__(self, directory: Path, run: RunInfo, number: int, stream: IO[str]) -> None:
        self.directory = directory
        self.run = run
        self.number = number
        self.path = _instance_path(directory, number)
        self._stream = stream
        self.tee: Callable[[TraceEvent], None] | None = None
        """Also receives every event (the agent's own ``--trace FILE``, when both are given)."""

    @classmethod
    def create(
        cls, directory: str | Path, *, tee: Callable[[TraceEvent], None] | None = None
    ) -> InstanceFile:
        """Claim the next free instance file of the run in ``directory``.

        ``tee`` also receives every event (the agent's own ``--trace FILE``, when both are given).
        """
        path = Path(directory)
        run = read_run_info(path)
        number = 0
        while True:
            try:
                fd = os.open(_instance_path(path, number), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                number += 1
                continue
            except OSError as exc:
                raise TraceToError(
                    f"--trace-to {directory}: cannot create a trace file: {exc.strerror}"
                ) from None
            break
        # Line buffered: each event reaches the kernel as one write when it is recorded.
        stream = open(fd, "w", encoding="utf-8", buffering=1)  # noqa: SIM115
        instance = cls(path, run, number, stream)
        instance.tee = tee
        return instance

    def write(self, event: TraceEvent) -> None:
        """The agent's trace sink."""
        self._stream.write(event.to_json() + "\n")
        if self.tee is not None:
            self.tee(event)

    def announce(self, trace: Trace, clock_now: float, **detail: Any) -> TraceEvent:
        """Record ``agent_start`` (call first, inside the agent's event loop).

        ``clock_now`` is the agent's clock reading now; the time origin is derived from it, so it
        is right whatever the event loop's own clock is (trio's has an arbitrary offset).
        """
        origin = time.monotonic() - clock_now
        return trace.record(
            START_KIND,
            detail={
                "run": self.run.run,
                "instance": self.number,
                "pid": os.getpid(),
                "ppid": os.getppid(),
                "monotonic": round(origin, 6),
                **detail,
            },
        )

    def flush(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self._stream.flush()

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self._stream.close()


# -- the collector's side ----------------------------------------------------------------------------


class InstanceClock:
    """An instance's clock as seen from another process: its trace times, read now."""

    def __init__(self, origin: float) -> None:
        self.origin = origin

    def now(self) -> float:
        return round(time.monotonic() - self.origin, 6)


class CollectedInstance:
    """One agent instance of a run, read from its file (the shape ``pytest_acp`` ground truth reads)."""

    def __init__(self, index: int, path: Path, start: TraceEvent, first_line_end: int) -> None:
        detail = start.detail or {}
        self.index = index
        self.path = path
        self.run = str(detail.get("run"))
        self.pid = int(detail.get("pid", 0)) or None
        self.clock = InstanceClock(float(detail.get("monotonic", time.monotonic())))
        self.name = f"agent#{index} (pid {self.pid})"
        self.trace = Trace(self.clock.now)
        self.trace.add(start)
        self.torn = b""
        """Bytes after the last newline: a line being written now, or torn by a kill mid-write."""
        self._offset = first_line_end
        self.bad_lines: list[str] = []

    def poll(self) -> int:
        """Read the complete lines written since the last call; returns how many events were added."""
        try:
            with open(self.path, "rb") as stream:
                stream.seek(self._offset)
                data = stream.read()
        except OSError:
            return 0
        if not data:
            return 0
        end = data.rfind(b"\n") + 1
        self.torn = data[end:]
        self._offset += end
        added = 0
        for line in data[:end].splitlines():
            if not line.strip():
                continue
            try:
                self.trace.add(EVENT_ADAPTER.validate_json(line))
                added += 1
            except ValidationError:
                self.bad_lines.append(line.decode("utf-8", "replace"))
        return added

    def alive(self) -> bool:
        return self.pid is not None and proctree.info(self.pid) is not None

    @property
    def exit_reason(self) -> str | None:
        """``eof``/``crash``/... from the agent's own ``exit`` event; ``killed`` if it died without one."""
        for event in reversed(self.trace.events):
            if event.kind == "exit":
                return str((event.detail or {}).get("reason"))
        return None if self.alive() else "killed"


class TraceCollector:
    """A run directory that agents started by a bridge write their traces into.

    Use as a context manager (the directory is removed at exit unless ``keep``). ``agent_command``
    gives the command line to hand to the bridge; ``agents`` lists every instance that started so
    far, in start order, with its trace read up to now. ``crash()`` kills the newest instance (and
    its children), as a crashed agent would die. It also quacks like a launcher for the plugin's
    harness (``name``, ``virtual_time``, ``agents``, ``current``, ``crash``), though it never
    launches anything itself: the bridge does.
    """

    virtual_time = False

    def __init__(
        self, directory: str | Path | None = None, *, run_id: str | None = None, keep: bool = False
    ) -> None:
        self.run_id = run_id or uuid.uuid4().hex[:12]
        if directory is None:
            self.path = Path(tempfile.mkdtemp(prefix=f"acp-run-{self.run_id}-"))
            self._owned = True
        else:
            self.path = Path(directory)
            self.path.mkdir(parents=True, exist_ok=True)
            self._owned = False
        self.keep = keep
        self.name = f"trace-collector {self.run_id}"
        info = RunInfo(run=self.run_id, created=round(time.time(), 3))
        (self.path / RUN_FILE).write_text(info.model_dump_json() + "\n", encoding="utf-8")
        self.state_dir = self.path / STATE_DIR
        self.state_dir.mkdir(exist_ok=True)
        self._instances = LiveInstances(self)
        self._pending: dict[int, Path] = {}
        self.foreign: list[Path] = []
        self._seen: set[Path] = set()
        self.closed = False

    # -- the command a bridge runs -------------------------------------------------------------------

    def agent_command(
        self,
        *,
        seed: int = 0,
        profile: AgentProfile | str | None = None,
        faults: Sequence[str] = (),
        extra: Sequence[str] = (),
        python: str = sys.executable,
    ) -> list[str]:
        """``acp-sim agent`` wired to this run: its trace here, its disk (``--state-dir``) shared by
        every instance (so a restarted agent can resume sessions and mints fresh ids), the profile
        (a built-in name, a file, or a profile object written into the run directory) and faults
        (``--fault`` specs) given on the command line."""
        argv = [python, "-m", "acp_sim", "agent", "--seed", str(seed)]
        if isinstance(profile, AgentProfile):
            path = self.path / PROFILE_FILE
            path.write_text(profile.model_dump_json(), encoding="utf-8")
            argv += ["--profile", str(path)]
        elif profile is not None:
            argv += ["--profile", str(profile)]
        argv += ["--trace-to", str(self.path), "--state-dir", str(self.state_dir)]
        for spec in faults:
            argv += ["--fault", spec]
        return [*argv, *extra]

    @property
    def env(self) -> dict[str, str]:
        """The environment form of the address, for bridges that pass only an executable."""
        return {ENV_TRACE_TO: str(self.path)}

    # -- reading -------------------------------------------------------------------------------------

    def poll(self) -> list[CollectedInstance]:
        """Pick up new instances and new lines; returns every instance so far, in start order."""
        for path in sorted(self.path.glob(INSTANCE_GLOB)):
            if path in self._seen:
                continue
            number = _number_of(path)
            if number is not None:
                self._pending.setdefault(number, path)
        # Instances are added in file-number order only, so an index never changes meaning.
        while self._pending:
            number = min(self._pending)
            path = self._pending[number]
            start = _read_start(path)
            if start is None:
                break  # claimed but not announced yet: wait, and keep the later ones waiting too
            del self._pending[number]
            self._seen.add(path)
            event, end = start
            if str((event.detail or {}).get("run")) != self.run_id:
                self.foreign.append(path)
                continue
            index = list.__len__(self._instances)
            list.append(self._instances, CollectedInstance(index, path, event, end))
        for instance in list.__iter__(self._instances):
            instance.poll()
        return list(list.__iter__(self._instances))

    @property
    def agents(self) -> list[CollectedInstance]:
        """Every instance so far; a live list (each read picks up new instances and lines first),
        so code that keeps it and looks again later, as ``InProcessAgent.agents`` allows, sees news."""
        self.poll()
        return self._instances

    @property
    def current(self) -> CollectedInstance:
        agents = self.agents
        if not agents:
            raise LookupError("no agent instance has started in this run yet")
        return agents[-1]

    def pids(self) -> list[int]:
        return [i.pid for i in self.agents if i.pid is not None]

    def wait_for_instances(self, count: int, timeout: float = 30.0) -> bool:
        """Block (real time) until ``count`` instances have announced themselves."""
        return proctree.wait_for(lambda: len(self.poll()) >= count, timeout)

    # -- faults --------------------------------------------------------------------------------------

    def crash(self, sig: signal.Signals = signal.SIGKILL) -> int | None:
        """Kill the newest instance and its children at once; returns its pid (None: none alive)."""
        agents = self.agents
        if not agents or not agents[-1].alive() or agents[-1].pid is None:
            return None
        pid = agents[-1].pid
        if sig == signal.SIGKILL:
            # Dead on return (a moment of real time): whoever looks next sees it gone.
            proctree.wait_gone(proctree.kill_tree(pid), timeout=5.0)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        return pid

    # -- lifetime ------------------------------------------------------------------------------------

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.poll()
        if self._owned and not self.keep:
            shutil.rmtree(self.path, ignore_errors=True)

    def __enter__(self) -> TraceCollector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LiveInstances(list[CollectedInstance]):
    """The collector's instance list: reading its length or items polls the run directory first."""

    def __init__(self, collector: TraceCollector) -> None:
        super().__init__()
        self._collector = collector

    def __len__(self) -> int:
        self._collector.poll()
        return super().__len__()

    def __getitem__(self, index: Any) -> Any:
        self._collector.poll()
        return super().__getitem__(index)

    def __iter__(self) -> Iterator[CollectedInstance]:
        return iter(self._collector.poll())


def _number_of(path: Path) -> int | None:
    stem = path.stem.removeprefix("agent-")
    return int(stem) if stem.isdigit() else None


def _read_start(path: Path) -> tuple[TraceEvent, int] | None:
    """The ``agent_start`` event on the first line and where that line ends, once it is complete."""
    try:
        with open(path, "rb") as stream:
            head = stream.readline()
    except OSError:
        return None
    if not head.endswith(b"\n"):
        return None
    try:
        event = EVENT_ADAPTER.validate_json(head)
    except ValidationError:
        event = TraceEvent(0, 0.0, START_KIND, detail={"run": None, "error": "first line is not agent_start"})
    if event.kind != START_KIND:
        event = TraceEvent(0, 0.0, START_KIND, detail={"run": None, "error": "first line is not agent_start"})
    return event, len(head)
