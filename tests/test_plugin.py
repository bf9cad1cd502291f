"""The plugin from the outside (pytester): options, ini keys, markers, skips, the property suite,
its failure report, the replay command, xdist seeds, the leak guard and a fresh project."""

from __future__ import annotations

import re
import shlex
import textwrap

import psutil
import pytest

from .conftest import REPO

pytest_plugins = ["pytester"]

OPTIONS = [
    "--acp-sim",
    "--acp-live",
    "--acp-agent-cmd",
    "--acp-seed",
    "--acp-profile",
    "--acp-bridge",
    "--acp-examples",
    "--acp-backend",
    "--acp-min-effect",
]
INI_KEYS = [
    "acp_sim",
    "acp_live",
    "acp_agent_cmd",
    "acp_seed",
    "acp_profile",
    "acp_bridge",
    "acp_examples",
    "acp_backend",
    "acp_min_effect",
]


def test_help_shows_every_option_in_one_group_and_every_ini_key(pytester: pytest.Pytester) -> None:
    out = pytester.runpytest("--help").stdout.str()
    group = out[out.index("ACP bridge testing (pytest-acp)") :]
    group = group[: group.index("\n\n")]
    for option in OPTIONS:
        assert option in group, option
    for key in INI_KEYS:
        assert re.search(rf"^\s+{key} \(", out, re.MULTILINE), key


PRINT_OPTIONS = """
def test_options(acp_options, acp_seed, acp_agent_cmd):
    print("OPTIONS", acp_options.mode, acp_options.seed, acp_options.examples, acp_options.bridge_ref,
          acp_options.backend, acp_seed, acp_agent_cmd)
"""


def test_ini_keys_set_options_and_the_command_line_wins(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(PRINT_OPTIONS)
    pytester.makepyprojecttoml(
        """
        [tool.pytest.ini_options]
        acp_seed = "7"
        acp_examples = "12"
        acp_bridge = "pytest_acp.bugs:cancel_all"
        acp_backend = "trio"
        """
    )
    result = pytester.runpytest("-s")
    result.stdout.fnmatch_lines(
        ["acp: sim agent, seed 7*", "*OPTIONS sim 7 12 pytest_acp.bugs:cancel_all trio 7 *"]
    )
    assert "'--seed', '7'" in result.stdout.str()
    result = pytester.runpytest("-s", "--acp-seed", "9", "--acp-examples", "3", "--acp-backend", "asyncio")
    result.stdout.fnmatch_lines(["*OPTIONS sim 9 3 pytest_acp.bugs:cancel_all asyncio 9 *"])


def test_a_bad_option_value_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_nothing(): pass")
    result = pytester.runpytest("--acp-bridge", "no_colon_here")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--acp-bridge must look like module:factory, got 'no_colon_here'*"])
    result = pytester.runpytest("--acp-sim", "--acp-live")
    result.stderr.fnmatch_lines(["*--acp-sim and --acp-live exclude each other*"])
    result = pytester.runpytest("--acp-min-effect", "2")
    result.stderr.fnmatch_lines(["*--acp-min-effect must be a fraction from 0 to 1, got 2.0*"])


def test_the_acp_marker_sets_profile_faults_and_seed_of_the_simulated_agent(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.acp(
            profile="claude-code", faults=["crash:at=2.5", {"kind": "stall", "seconds": 3}], seed=3
        )
        def test_marked(acp_agent, acp_trace):
            assert acp_agent.profile.name == "claude-code"
            assert [f.kind for f in acp_agent.faults] == ["crash", "stall"]
            assert acp_agent.seed == 3
            assert acp_trace.launcher is acp_agent

        def test_unmarked(acp_agent, acp_seed):
            assert acp_agent.profile.name == "default" and acp_agent.faults == [] and acp_seed == 0
        """
    )
    pytester.runpytest().assert_outcomes(passed=2)


def test_live_only_tests_are_skipped_with_the_reason_unless_acp_live(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.acp_live
        def test_needs_the_real_agent():
            pass

        @pytest.mark.anyio
        @pytest.mark.parametrize("anyio_backend", ["asyncio"])
        async def test_needs_the_live_agent(acp_live_agent):
            pass

        def test_needs_the_simulator(acp_agent):
            pass

        @pytest.mark.acp(faults=["crash:at=1"])
        def test_injects_faults():
            pass
        """
    )
    result = pytester.runpytest("-rs")
    result.assert_outcomes(passed=2, skipped=2)
    result.stdout.fnmatch_lines(
        [
            "*live-only test (acp_live): run with --acp-live against the real agent*",
            "*live-only: run with --acp-live (the real Claude Code ACP adapter)*",
        ]
    )
    live = pytester.runpytest("-rs", "--acp-live", "--acp-agent-cmd", "/nonexistent/claude-agent-acp")
    live.assert_outcomes(passed=1, skipped=5)  # and the two property-suite items
    live.stdout.fnmatch_lines(
        [
            "*--acp-live: --acp-agent-cmd: '/nonexistent/claude-agent-acp' is not an executable on PATH*",
            "*needs the simulated agent (in-process, virtual time); this run uses --acp-live*",
            "*injects agent faults, which needs the simulated agent (not --acp-live)*",
        ]
    )


def test_without_the_adapter_the_live_suite_is_skipped_saying_how_to_install_it(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A fresh project: no node_modules, and no claude-agent-acp on PATH.
    monkeypatch.delenv("ACP_AGENT_CMD", raising=False)
    nothing = pytester.mkdir("empty-bin")
    (nothing / "node").write_text("#!/bin/sh\necho v20.0.0\n")
    (nothing / "node").chmod(0o755)
    monkeypatch.setenv("PATH", str(nothing))
    result = pytester.runpytest("-rs", "--acp-live", "--acp-backend", "asyncio")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(
        [
            "*--acp-live: the Claude Code ACP adapter is not installed: run `npm install --no-save "
            "--no-package-lock @zed-industries/claude-agent-acp@0.23.1` in the project root*"
        ]
    )


def test_without_node_live_tests_are_skipped_saying_so(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ACP_AGENT_CMD", raising=False)
    monkeypatch.setenv("PATH", str(pytester.mkdir("no-node-bin")))
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.anyio
        @pytest.mark.parametrize("anyio_backend", ["asyncio"])
        async def test_needs_the_live_agent(acp_live_agent):
            pass
        """
    )
    result = pytester.runpytest("-rs", "--acp-live", "--acp-backend", "asyncio")
    result.assert_outcomes(skipped=2)  # the test and the property suite, neither an error
    result.stdout.fnmatch_lines(["*--acp-live: node is not on PATH; install node >= 18, then*"] * 2)


def test_acp_sim_runs_the_property_suite_on_each_backend(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("-v", "--acp-sim", "--acp-examples", "20")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*acp_properties?asyncio? PASSED*", "*acp_properties?trio? PASSED*"])


def _replay(output: str) -> list[str]:
    line = next(line for line in output.splitlines() if line.strip().startswith("replay:"))
    return shlex.split(line.split("replay:", 1)[1])


def test_a_failure_reports_property_seed_steps_replay_and_timeline_and_the_replay_reproduces_it(
    pytester: pytest.Pytester,
) -> None:
    args = ["--acp-sim", "--acp-bridge", "pytest_acp.bugs:first_chunk_dropped", "--acp-backend", "trio"]
    result = pytester.runpytest(*args, "--acp-examples", "50", "--acp-seed", "4")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    first = next(line for line in out.splitlines() if "violated:" in line)
    assert "P1 first chunk delivered violated" in first
    assert "seed:    4" in out
    assert "steps (shrunk; virtual seconds since the run started):" in out
    first_step = r"^\s+0\.000000\s+start\(agent_seed=\d+, text=\w+(, coalesced writes)?\)$"
    assert re.search(first_step, out, re.MULTILINE)
    assert "-n0" not in out  # one process already: nothing to undo
    assert "timeline around t=" in out
    assert "agent<" in out
    assert "bridge " in out
    replay = _replay(out)
    assert replay[:3] == ["pytest", "-k", "acp_properties and trio"]
    assert "--acp-seed" in replay
    assert replay[replay.index("--acp-seed") + 1] == "4"
    assert "--acp-examples" in replay
    assert "pytest_acp.bugs:first_chunk_dropped" in replay
    again = pytester.runpytest(*replay[1:])
    again.assert_outcomes(failed=1)
    assert first in again.stdout.str()


def test_xdist_workers_derive_distinct_seeds_and_reports_name_them(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.parametrize("n", range(4))
        def test_seed(n, acp_seed, acp_options, record_property):
            record_property("seed", f"{acp_options.worker}={acp_seed}")
        """
    )
    result = pytester.runpytest(
        "-n", "2", "--acp-seed", "7", "--acp-sim", "--acp-bridge", "pytest_acp.bugs:first_chunk_dropped",
        "--acp-examples", "20", "--junitxml=out.xml",
    )  # fmt: skip
    result.assert_outcomes(passed=4, failed=2)
    xml = (pytester.path / "out.xml").read_text()
    seeds = dict(re.findall(r'value="(gw\d)=(\d+)"', xml))
    assert len(seeds) == 2
    assert len(set(seeds.values())) == 2
    assert "7" not in seeds.values()
    out = result.stdout.str()
    for worker, seed in seeds.items():
        if f"xdist worker {worker}" in out:
            assert f"seed:    {seed} (xdist worker {worker}: derived from --acp-seed 7)" in out
    # On CI (the CI env var) pytest's short summary repeats each failure's whole message, so a report
    # may be printed twice: count distinct ones.
    named = set(re.findall(r"seed:    (\d+) \(xdist worker (gw\d): derived from --acp-seed 7\)", out))
    # Each failure names the seed of the worker that ran it (xdist may run both suite items on one).
    failed_on = set(re.findall(r"^\[(gw\d)\] linux", out, re.MULTILINE))
    assert failed_on
    assert {worker for _, worker in named} == failed_on
    for seed, worker in named:
        assert seeds[worker] == seed
    replays = [shlex.split(line) for line in dict.fromkeys(re.findall(r"replay:  (.*)", out))]
    assert len(replays) == 2
    assert all("-n0" in r and r[r.index("--acp-seed") + 1] in seeds.values() for r in replays)


def _readme_quick_start() -> tuple[str, str]:
    """The README's quick-start adapter and pyproject.toml, as a reader would copy them."""
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("### Quick start: a 20-line adapter") :]
    adapter = section[section.index("```python\n") + 10 :]
    adapter = adapter[: adapter.index("```")]
    toml = section[section.index("```toml\n") + 8 :]
    return adapter, toml[: toml.index("```")]


ADAPTER, QUICK_START_TOML = _readme_quick_start()


def test_a_fresh_project_with_a_short_adapter_runs_green(pytester: pytest.Pytester) -> None:
    code = [
        line
        for line in ADAPTER.splitlines()
        if line.strip() and not line.strip().startswith(("from", "import"))
    ]
    assert len(code) <= 30  # the adapter a bridge author writes
    # Exactly the README's two files, nothing added to sys.path by the test.
    pytester.makepyfile(my_adapter=ADAPTER)
    pytester.makepyprojecttoml(QUICK_START_TOML)
    result = pytester.runpytest("-v", "--acp-sim", "--acp-examples", "25")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*property suite on my_adapter:bridge (25 examples per backend)*"])


def test_the_leak_guard_names_and_kills_a_leaked_process(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import subprocess, sys

        def test_leaks(acp_leak_guard):
            proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)  # leaked-child"])
            with open("pid.txt", "w") as f:
                f.write(str(proc.pid))
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=1, errors=1)
    pid = int((pytester.path / "pid.txt").read_text())
    result.stdout.fnmatch_lines(
        ["*test left child processes running:*", f"*pid {pid}: *time.sleep(60)  # leaked-child*"]
    )
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_the_leak_guard_finds_an_orphan_whose_parent_has_exited(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import subprocess

        def test_orphans(acp_leak_guard):
            # The shell starts a sleeper in the background and exits: the sleeper is re-parented to
            # init, no longer a descendant of the test process.
            out = subprocess.run(
                ["sh", "-c", "sleep 60 </dev/null >/dev/null 2>&1 & echo $!"], capture_output=True, text=True
            )
            with open("pid.txt", "w") as f:
                f.write(out.stdout.strip())
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=1, errors=1)
    pid = int((pytester.path / "pid.txt").read_text())
    result.stdout.fnmatch_lines(["*test left child processes running:*", f"*pid {pid}: sleep 60*"])
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_a_property_violation_in_a_users_own_test_is_reported_as_the_report(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        textwrap.dedent(
            """
            from pytest_acp.bugs import CATALOG

            def test_my_bridge(acp_check):
                acp_check(CATALOG["first_chunk_dropped"].bridge, backends=["asyncio"], examples=60)
            """
        )
    )
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "P1 first chunk delivered violated" in out
    assert (
        "replay:  pytest "
        "test_a_property_violation_in_a_users_own_test_is_reported_as_the_report.py::test_my_bridge" in out
    )
    assert "Traceback" not in out
    assert "hypothesis/core.py" not in out
