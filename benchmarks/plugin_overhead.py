"""What having the plugin installed costs a project that does not use it.

A trivial project (one plain test) is run with ``pytest`` (the plugin loaded from its entry point,
as in every project of an environment where the package is installed), with ``pytest -p no:acp``
(the plugin not loaded) and with every pytest plugin that the package and its dependencies install
blocked (as if the package were not installed: hypothesis's and looptime's plugins run in every
pytest run too, and hypothesis's imports all of Hypothesis for its terminal summary), in turn
(A B C A B C ...), in fresh interpreters. Figures are the median CPU seconds (user + system of the
child) and wall seconds of each, the differences (issue 21 asks for under 50 ms against a run
without the package) and ratios, taken run by run so a drift of the machine's speed moves all.
Also checks that the plain run prints nothing of ours.

Run: ``python -m benchmarks.plugin_overhead [--runs N]``.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from importlib.metadata import PackageNotFoundError, distribution, entry_points
from pathlib import Path
from typing import Any

PLAIN_TEST = "def test_plain():\n    assert 1 + 1 == 2\n"
PACKAGE = "pytest-acp"
# Dependencies the project of issue 21 has on its own (an async project: anyio, and with it anyio's
# pytest plugin): their plugins stay in the run "without the package".
PROJECT_HAS = frozenset({"anyio"})


def _dist_name(name: str) -> str:
    return name.lower().replace("_", "-")


def installed_with_the_package() -> list[str]:
    """The ``pytest11`` entry points of the package and of its direct dependencies (pytest's own
    plugins and ``PROJECT_HAS`` aside): what a project's every run loads because the package is
    installed."""
    requirements = distribution(PACKAGE).requires or []
    names = {_dist_name(PACKAGE)}
    for requirement in requirements:
        if "extra ==" in requirement:
            continue
        name = requirement.split(";")[0].strip()
        for stop in "<>=!~[ (":
            name = name.split(stop)[0]
        try:
            names.add(_dist_name(distribution(name).metadata["Name"]))
        except PackageNotFoundError:
            continue
    names.discard("pytest")
    names -= PROJECT_HAS
    return sorted(
        ep.name for ep in entry_points(group="pytest11") if ep.dist and _dist_name(ep.dist.name) in names
    )


def _env() -> dict[str, str]:
    """This environment, with byte-code caching on: an installed package has its .pyc files, so
    compiling the plugin's sources on every run would not be the cost a project pays."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("PYTEST_ADDOPTS", None)  # the project's own settings only
    return env


def _timed(cmd: list[str], cwd: Path) -> tuple[float, float, str]:
    """CPU seconds (the child's user + system) and wall seconds of one run, and its output."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, wall, done.stdout


def measure(runs: int = 7) -> dict[str, Any]:
    base = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider"]  # not -q: the header shows
    with tempfile.TemporaryDirectory(prefix="acp-overhead-") as tmp:
        project = Path(tmp)
        (project / "test_plain.py").write_text(PLAIN_TEST)
        blocked = [arg for name in installed_with_the_package() for arg in ("-p", f"no:{name}")]
        env_cmds = {"with": base, "without": [*base, "-p", "no:acp"], "bare": [*base, *blocked]}
        for cmd in env_cmds.values():
            _timed(cmd, project)  # warm-up (file system caches, .pyc files)
        figures: dict[str, list[tuple[float, float]]] = {name: [] for name in env_cmds}
        printed = ""
        for _ in range(runs):
            for name, cmd in env_cmds.items():
                cpu, wall, out = _timed(cmd, project)
                figures[name].append((cpu, wall))
                if name == "with":
                    printed = out
    cpu_with = [c for c, _ in figures["with"]]
    cpu_without = [c for c, _ in figures["without"]]
    cpu_bare = [c for c, _ in figures["bare"]]
    return {
        "blocked": installed_with_the_package(),
        "runs": runs,
        "cpu_with_s": statistics.median(cpu_with),
        "cpu_without_s": statistics.median(cpu_without),
        "cpu_extra_ms": statistics.median(1000 * (a - b) for a, b in zip(cpu_with, cpu_without, strict=True)),
        "cpu_ratio": statistics.median(a / b for a, b in zip(cpu_with, cpu_without, strict=True)),
        "cpu_bare_s": statistics.median(cpu_bare),
        "cpu_extra_vs_bare_ms": statistics.median(
            1000 * (a - b) for a, b in zip(cpu_with, cpu_bare, strict=True)
        ),
        "cpu_ratio_vs_bare": statistics.median(a / b for a, b in zip(cpu_with, cpu_bare, strict=True)),
        "wall_with_s": statistics.median(w for _, w in figures["with"]),
        "wall_without_s": statistics.median(w for _, w in figures["without"]),
        "wall_bare_s": statistics.median(w for _, w in figures["bare"]),
        "prints_acp": "acp:" in printed,
    }


def print_result(result: dict[str, Any]) -> None:
    print(f"trivial project, {result['runs']} runs each, medians (in turn A B C A B C ...)")
    print(f"{'':12} {'cpu s':>8} {'wall s':>8}")
    print(f"{'pytest':12} {result['cpu_with_s']:8.3f} {result['wall_with_s']:8.3f}")
    print(f"{'-p no:acp':12} {result['cpu_without_s']:8.3f} {result['wall_without_s']:8.3f}")
    print(f"{'none of ours':12} {result['cpu_bare_s']:8.3f} {result['wall_bare_s']:8.3f}")
    print(
        f"plugin installed, unused: {result['cpu_extra_ms']:+.0f} ms CPU per run against -p no:acp "
        f"(ratio {result['cpu_ratio']:.3f}); prints 'acp:' in the header: {result['prints_acp']}"
    )
    print(
        f"package installed, unused: {result['cpu_extra_vs_bare_ms']:+.0f} ms CPU per run against its "
        f"and its dependencies' plugins blocked (ratio {result['cpu_ratio_vs_bare']:.3f}; "
        f"blocked: {', '.join(result['blocked'])})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args(argv)
    print_result(measure(args.runs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
