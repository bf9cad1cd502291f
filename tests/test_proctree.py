"""acp_sim.proctree on real processes: trees, groups, zombies, MCP server recognition, tree kill."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator

import psutil
import pytest

from acp_sim import proctree

# A parent that starts one sleeping child and then sleeps itself: a two-level tree.
TREE_CMD = [
    sys.executable,
    "-c",
    "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']);"
    " time.sleep(120)",
]
SERVER = [sys.executable, "-m", "acp_sim", "mcp-server"]


@pytest.fixture
def tree() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(TREE_CMD)
    try:
        assert proctree.wait_for(lambda: len(proctree.descendants(proc.pid)) == 1)
        yield proc
    finally:
        proctree.kill_tree(proc.pid)
        proc.wait()


def test_descendants_lists_the_tree_with_parents_and_command_lines(tree: subprocess.Popen[bytes]) -> None:
    mine = proctree.descendants()
    by_pid = {p.pid: p for p in mine}
    assert tree.pid in by_pid
    (grandchild,) = proctree.descendants(tree.pid)
    assert grandchild.pid in by_pid, "descendants() of this process includes grandchildren"
    assert grandchild.ppid == tree.pid
    assert by_pid[tree.pid].ppid == os.getpid()
    assert by_pid[tree.pid].cmdline == tuple(TREE_CMD)
    assert grandchild.command.endswith("time.sleep(120)")
    assert grandchild.pgid == os.getpgid(os.getpid()), "children stay in the parent's process group"


def test_a_child_started_from_another_thread_is_a_descendant_too(tree: subprocess.Popen[bytes]) -> None:
    # Linux files a child under the thread that forked it, while that thread lives: every thread's
    # list is read.
    started: list[subprocess.Popen[bytes]] = []
    checked = threading.Event()

    def start_and_stay() -> None:
        started.append(subprocess.Popen([*TREE_CMD[:2], "import time; time.sleep(120)"]))
        checked.wait(30)

    thread = threading.Thread(target=start_and_stay)
    thread.start()
    try:
        assert proctree.wait_for(lambda: bool(started))
        pids = {p.pid for p in proctree.descendants()}
        assert {tree.pid, started[0].pid} <= pids
    finally:
        checked.set()
        thread.join()
        for proc in started:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("children_files", [True, False], ids=["children-files", "psutil-walk"])
def test_both_ways_of_walking_the_tree_give_the_same_tree(
    tree: subprocess.Popen[bytes], monkeypatch: pytest.MonkeyPatch, children_files: bool
) -> None:
    if children_files and not proctree._CHILDREN_FILES:
        pytest.skip("this kernel has no /proc/<pid>/task/<tid>/children files")
    expected = [p.pid for p in psutil.Process(os.getpid()).children(recursive=True)]
    monkeypatch.setattr(proctree, "_CHILDREN_FILES", children_files)
    mine = [p.pid for p in proctree.descendants()]
    assert sorted(mine) == sorted(expected)
    assert mine.index(tree.pid) < mine.index(proctree.descendants(tree.pid)[0].pid), "children come first"
    assert proctree.descendants(2**22 + 1) == [], "a process that does not exist has none"


def test_children_files_the_kernel_will_not_let_us_read_mean_the_psutil_walk(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # There but unreadable (a hardened kernel, another user's view): reading them would find no
    # child, and every leak would pass unseen.
    def denied(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(proctree, "open", denied, raising=False)
    assert proctree._children_files_readable() is False


def test_kill_tree_kills_children_and_grandchildren(tree: subprocess.Popen[bytes]) -> None:
    (grandchild,) = proctree.descendants(tree.pid)
    killed = proctree.kill_tree(tree.pid)
    assert killed[0] == tree.pid
    assert set(killed) == {tree.pid, grandchild.pid}
    tree.wait()
    assert tree.returncode == -signal.SIGKILL
    # The grandchild was re-parented to init, which reaps it; it must be gone, not merely orphaned.
    assert proctree.wait_gone([grandchild.pid]) == []


def test_killing_only_the_parent_orphans_the_grandchild(tree: subprocess.Popen[bytes]) -> None:
    (grandchild,) = proctree.descendants(tree.pid)
    tree.kill()
    tree.wait()
    try:
        # Out of this process's tree, but still alive and still in our group: the leak shape of
        # known-client-bugs row 10, which only group_members can see.
        assert proctree.wait_for(lambda: grandchild.pid not in {p.pid for p in proctree.descendants()})
        assert proctree.info(grandchild.pid) is not None
        assert grandchild.pid in {p.pid for p in proctree.group_members(os.getpgid(0))}
    finally:
        os.kill(grandchild.pid, signal.SIGKILL)
    assert proctree.wait_gone([grandchild.pid]) == []


def test_zombies_do_not_count_as_alive() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        # Not reaped yet: the exited child lingers as a zombie until we wait() for it.
        assert proctree.wait_for(lambda: proctree.info(proc.pid) is None)
        assert proc.pid not in {p.pid for p in proctree.descendants()}
    finally:
        proc.wait()


def test_group_members_finds_a_whole_new_session_and_its_end() -> None:
    leader = subprocess.Popen(TREE_CMD, start_new_session=True)
    try:
        assert proctree.wait_for(lambda: len(proctree.group_members(leader.pid)) == 2)
        members = proctree.group_members(leader.pid)
        assert {p.pgid for p in members} == {leader.pid}
        assert leader.pid in {p.pid for p in members}
    finally:
        os.killpg(leader.pid, signal.SIGKILL)
        leader.wait()
    assert proctree.wait_for(lambda: proctree.group_members(leader.pid) == [])


def test_info_of_a_process_that_does_not_exist_is_none() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert proctree.info(proc.pid) is None
    assert proctree.descendants(proc.pid) == []
    assert proctree.kill_tree(proc.pid) == []


@pytest.mark.parametrize(
    ("cmdline", "expected"),
    [
        ([sys.executable, "-m", "acp_sim", "mcp-server"], True),
        (["/usr/bin/python3", "-m", "acp_sim", "mcp-server", "--crash-after", "2", "--name", "x"], True),
        (["/venv/bin/acp-sim", "mcp-server", "--hang"], True),
        (["acp-sim", "mcp-server", "--wrapper"], False),  # the wrapper serves nothing itself
        (["acp-sim", "agent", "--seed", "1"], False),
        (["python3", "/workspace/mini_mcp.py"], False),
        (["python3", "-m", "other", "mcp-server"], False),
        (["acp-sim", "mcp-server", "--no-such-option"], False),  # unpredictable: not ours
        ([], False),
    ],
)
def test_is_mcp_server_recognises_the_acp_sim_server(cmdline: list[str], expected: bool) -> None:
    assert proctree.is_mcp_server(cmdline) is expected


def test_count_mcp_servers_counts_servers_not_wrappers() -> None:
    plain = subprocess.Popen([*SERVER, "--hang"], stdin=subprocess.PIPE)
    wrapper = subprocess.Popen([*SERVER, "--wrapper", "--hang"], stdin=subprocess.PIPE)
    try:
        # The wrapper's own child is a server (a grandchild of this process).
        assert proctree.wait_for(lambda: proctree.count_mcp_servers() == 2)
        servers = proctree.mcp_servers()
        assert plain.pid in {p.pid for p in servers}
        assert wrapper.pid not in {p.pid for p in servers}
        (inner,) = [p for p in servers if p.pid != plain.pid]
        assert inner.ppid == wrapper.pid
        assert "--wrapper" not in inner.cmdline
        assert "--hang" in inner.cmdline
        assert proctree.count_mcp_servers(wrapper.pid) == 1
        assert proctree.count_mcp_servers(wrapper.pid, match=lambda argv: "--wrapper" in argv) == 0
    finally:
        for proc in (plain, wrapper):
            proctree.kill_tree(proc.pid)
            proc.wait()
            assert proc.stdin is not None
            proc.stdin.close()
    assert proctree.wait_for(lambda: proctree.count_mcp_servers() == 0)


def test_kill_tree_catches_a_wrapper_still_spawning_its_child() -> None:
    # Kill at once, racing the wrapper's own start-up: whatever it managed to fork must die too.
    # Its own process group, so an orphan (which leaves our tree, not the group) would show up.
    wrapper = subprocess.Popen(
        [*SERVER, "--wrapper", "--hang"], stdin=subprocess.PIPE, start_new_session=True
    )
    killed = proctree.kill_tree(wrapper.pid)
    wrapper.wait()
    assert wrapper.stdin is not None
    wrapper.stdin.close()
    assert proctree.wait_gone(killed) == []
    assert proctree.group_members(wrapper.pid) == []


def test_kill_tree_of_a_started_wrapper_reaps_its_server() -> None:
    wrapper = subprocess.Popen(
        [*SERVER, "--wrapper", "--hang"], stdin=subprocess.PIPE, start_new_session=True
    )
    assert wrapper.stdin is not None
    try:
        assert proctree.wait_for(lambda: proctree.count_mcp_servers(wrapper.pid) == 1)
    finally:
        killed = proctree.kill_tree(wrapper.pid)
        wrapper.wait()
        wrapper.stdin.close()
    assert len(killed) == 2
    assert proctree.wait_for(lambda: proctree.group_members(wrapper.pid) == [])
