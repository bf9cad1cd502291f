"""Where the growth per 10x sessions goes: instructions and cache misses per streamed chunk, counted.

``benchmarks.scale`` times N sessions x 100 chunks; from 100 to 1,000 sessions the simulation's
wall time grows faster than the bare scheduler's, even with the garbage collector off. This counts
what one more chunk costs at each N, under valgrind's cachegrind (a simulated processor, so the
counts do not depend on the machine's load): instructions executed, first-level data-cache misses,
and misses of a simulated second-level cache of ``--l2-kib`` (the size of one core's L2 here). If
instructions per chunk stay flat while misses of the second level grow, the extra wall time is the
memory hierarchy (every session's objects touched once per tick no longer fit in the core's cache),
not more work per chunk. The bare scheduler's timers are counted the same way, as the limit.

Each figure is marginal: the counts of a run with 100 chunks per session minus those of the same
run with 50, divided by the 50 x N chunks between them, so start-up, imports and opening the
sessions (the same in both runs) are not counted. Two runs of the same count agreed within 1% on
instructions at both sizes, and on L2 misses within 10% at 100 sessions and exactly at 1,000; at
10 sessions the 500 chunks between the runs are too few to read misses from.

Needs valgrind on the PATH, and several minutes (cachegrind runs Python some 50x slower); not part
of ``python -m benchmarks``. Run: ``python -m benchmarks.cache_profile [--sessions 100 1000]``.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from acp_sim.clock import run
from benchmarks.virtual_time import bare_timers, profile, simulated_run, warm_up

FEW, MANY = 50, 100
EVENTS = {"Ir": "instructions", "D1mr": "L1 data read misses", "DLmr": "L2 data read misses"}


def streaming_run(sessions: int, chunks: int, bare: bool = False) -> None:
    """(Under cachegrind.) A warm-up, then ``sessions`` x ``chunks`` on asyncio, collector off;
    ``bare``: the limit, as many timers on the bare scheduler."""
    warm_up("asyncio", bare=bare)
    gc.collect()
    gc.disable()  # a collection's timing differs between the two runs: keep it out of the difference
    if bare:
        run(bare_timers, sessions, chunks, 0.05, backend="asyncio")
    else:
        dense = profile(chunks=chunks, interval=0.05, session_new=4.0)
        run(simulated_run, sessions, 1, dense, backend="asyncio")


def counts(sessions: int, chunks: int, l2_kib: int, bare: bool = False) -> dict[str, int]:
    """cachegrind's totals for one ``streaming_run``."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cachegrind.out"
        code = (
            f"from benchmarks.cache_profile import streaming_run; streaming_run({sessions}, {chunks}, {bare})"
        )
        done = subprocess.run(
            [
                "valgrind",
                "--tool=cachegrind",
                "--cache-sim=yes",
                f"--LL={l2_kib * 1024},8,64",
                f"--cachegrind-out-file={out}",
                sys.executable,
                "-c",
                code,
            ],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONHASHSEED": "0"},
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"cachegrind run of {sessions} x {chunks} failed:\n{done.stderr[-2000:]}")
        names: list[str] = []
        totals: list[int] = []
        for line in out.read_text().splitlines():
            if line.startswith("events:"):
                names = line.split()[1:]
            elif line.startswith("summary:"):
                totals = [int(x) for x in line.split()[1:]]
        return dict(zip(names, totals, strict=True))


def per_chunk(sessions: int, l2_kib: int, bare: bool = False) -> dict[str, Any]:
    few, many = counts(sessions, FEW, l2_kib, bare), counts(sessions, MANY, l2_kib, bare)
    chunks = sessions * (MANY - FEW)
    return {
        "sessions": sessions,
        "what": "bare timer" if bare else "chunk",
        **{key: round((many[key] - few[key]) / chunks) for key in EVENTS},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--l2-kib", type=int, default=1024, help="simulated second-level cache (KiB)")
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None:
        parser.error("valgrind is not on the PATH (this benchmark counts with its cachegrind tool)")
    rows = [per_chunk(n, args.l2_kib, bare) for n in args.sessions for bare in (False, True)]
    print(f"per chunk or timer, marginal ({MANY} - {FEW} per session), simulated L2 of {args.l2_kib} KiB:")
    print(f"{'sessions':>9} {'per':>10}" + "".join(f" {EVENTS[k]:>22}" for k in EVENTS))
    for row in rows:
        print(f"{row['sessions']:>9,} {row['what']:>10}" + "".join(f" {row[k]:>22,}" for k in EVENTS))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
