"""Process-tree inspection: which processes a process (or a process group) still has alive.

Used to count the MCP servers an agent really holds and to catch leaks: the tests check counts
with it, and the plugin's leak guard uses the same calls. Everything here reads the live system
(psutil), so it runs on real time only; it never waits on a pipe.

"Alive" excludes zombies: a zombie has exited and only waits for its parent to collect its exit
status, so it holds no resources an agent could leak.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import psutil

from acp_sim import mcp_server

_GONE = (psutil.NoSuchProcess, psutil.ZombieProcess, ProcessLookupError)


@dataclass(frozen=True, slots=True)
class ProcInfo:
    """A live process: enough to identify it in a report."""

    pid: int
    ppid: int
    pgid: int
    cmdline: tuple[str, ...]

    @property
    def command(self) -> str:
        return " ".join(self.cmdline)


def _info(proc: psutil.Process) -> ProcInfo | None:
    """The process's identity, or None when it is gone or a zombie."""
    try:
        with proc.oneshot():
            if proc.status() in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD):
                return None
            try:
                cmdline = tuple(proc.cmdline())
            except psutil.AccessDenied:  # another user's process: still alive, just unnamed
                cmdline = ()
            return ProcInfo(proc.pid, proc.ppid(), os.getpgid(proc.pid), cmdline)
    except _GONE:
        return None


def info(pid: int) -> ProcInfo | None:
    """``pid`` if it is alive, else None."""
    try:
        return _info(psutil.Process(pid))
    except _GONE:
        return None


def _children_files_readable() -> bool:
    try:
        with open(f"/proc/{os.getpid()}/task/{threading.get_native_id()}/children", "rb") as f:
            f.read()
    except OSError:  # no such file (another OS, a kernel without them) or not ours to read
        return False
    return True


# Linux with CONFIG_PROC_CHILDREN lists each thread's children in a file of its own.
_CHILDREN_FILES = _children_files_readable()


def _child_pids(pid: int) -> list[int]:
    """``pid``'s children, from its threads' ``children`` files (a process's children hang off the
    thread that forked them; ``[]`` once ``pid`` is gone)."""
    found: list[int] = []
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in threads:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
                found.extend(map(int, f.read().split()))
        except OSError:  # the thread (or the process) ended while we read
            continue
    return found


def _descendant_procs(root: int) -> list[psutil.Process]:
    """``root``'s descendants, children before their children. From the ``children`` files where
    the kernel has them: a few small reads per process of the tree, where psutil reads the stat
    file of every process on the system (the leak guard asks after every example)."""
    if not _CHILDREN_FILES:
        return psutil.Process(root).children(recursive=True)
    procs: list[psutil.Process] = []
    level = [root]
    while level:
        level = [child for parent in level for child in _child_pids(parent)]
        for child in level:
            with contextlib.suppress(*_GONE):
                procs.append(psutil.Process(child))
    return procs


def descendants(pid: int | None = None) -> list[ProcInfo]:
    """Live descendants of ``pid`` (default: this process), children before their children.

    A process whose parent died is re-parented (to init or a subreaper) and drops out of this
    list: to find such orphans, look them up by process group with ``group_members``.
    """
    try:
        procs = _descendant_procs(os.getpid() if pid is None else pid)
    except _GONE:
        return []
    return [i for i in map(_info, procs) if i is not None]


def _live_where(matches: Callable[[psutil.Process], bool]) -> list[ProcInfo]:
    """Every live process on the system that ``matches`` (one that goes or hides while being read
    does not match)."""
    found = []
    for proc in psutil.process_iter():
        try:
            if not matches(proc):
                continue
        except (*_GONE, psutil.AccessDenied):
            continue
        item = _info(proc)
        if item is not None:
            found.append(item)
    return found


def group_members(pgid: int) -> list[ProcInfo]:
    """Live processes in process group ``pgid``, wherever they were re-parented to."""
    return _live_where(lambda proc: os.getpgid(proc.pid) == pgid)


def carrying(name: str, value: str) -> list[ProcInfo]:
    """Live processes whose environment (as they were started) has ``name=value``: every
    descendant that inherited it, even one re-parented to init after its parent died."""
    return _live_where(lambda proc: proc.environ().get(name) == value)


def is_mcp_server(cmdline: Sequence[str]) -> bool:
    """An ``acp-sim mcp-server`` process that serves MCP itself (not a ``--wrapper``)."""
    options = mcp_server.options_from_argv(cmdline)
    return options is not None and not options.wrapper


def mcp_servers(
    pid: int | None = None, match: Callable[[Sequence[str]], bool] = is_mcp_server
) -> list[ProcInfo]:
    """Live MCP server processes among ``pid``'s descendants (``match`` decides by command line)."""
    return [p for p in descendants(pid) if match(p.cmdline)]


def count_mcp_servers(pid: int | None = None, match: Callable[[Sequence[str]], bool] = is_mcp_server) -> int:
    return len(mcp_servers(pid, match))


def alive(pids: Iterable[int]) -> list[ProcInfo]:
    """Those of ``pids`` still alive."""
    return [i for i in map(info, pids) if i is not None]


def wait_gone(pids: Iterable[int], timeout: float = 5.0, *, interval: float = 0.02) -> list[ProcInfo]:
    """Wait (real time, blocking) until every one of ``pids`` is gone; returns the survivors.

    A killed process takes a moment to be torn down by the kernel; call this before asserting
    that nothing is left. It blocks the caller, so never call it from a running simulation.
    """
    pids = list(pids)
    deadline = time.monotonic() + timeout
    while True:
        left = alive(pids)
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(interval)


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0, *, interval: float = 0.02) -> bool:
    """Poll ``predicate`` (real time, blocking) until it holds or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
    return True


def kill_tree(pid: int) -> list[int]:
    """SIGKILL ``pid`` and all its descendants; returns the pids signalled (``pid`` first).

    The tree is frozen first (SIGSTOP, top down, until no new member shows up) so a process
    cannot fork a child between being listed and being killed: otherwise an npx-style wrapper
    caught mid-spawn would leave its fresh child orphaned and alive. Reaping is the parent's
    business: the caller reaps ``pid``; orphaned descendants are reaped by init.
    """
    try:
        root = psutil.Process(pid)
    except _GONE:
        return []
    members: dict[int, psutil.Process] = {}
    frontier = [root]
    while frontier:
        for proc in frontier:
            members[proc.pid] = proc
            _signal(proc, signal.SIGSTOP)
        listed = []
        for proc in frontier:
            try:
                listed.extend(proc.children(recursive=True))
            except _GONE:
                continue
        frontier = [p for p in listed if p.pid not in members]
    for proc in members.values():
        _signal(proc, signal.SIGKILL)
    return list(members)


def _signal(proc: psutil.Process, sig: signal.Signals) -> None:
    with contextlib.suppress(_GONE):
        proc.send_signal(sig)
