"""Run every benchmark, print each table, and write all figures as JSON.

Usage: ``python -m benchmarks [--json benchmarks/results/latest.json] [--quick]``.
Each figure is a ratio measured side by side in the same run (see each module's docstring).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

from benchmarks import (
    hypothesis_throughput,
    plugin_overhead,
    prewarm,
    scale,
    stdio_throughput,
    virtual_time,
    wakeups,
)
from benchmarks.fresh import fresh


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", default="benchmarks/results/latest.json", metavar="OUT")
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    results: dict[str, Any] = {"machine": machine()}

    print("== virtual time ==")
    results["virtual_time"] = [
        virtual_time.measure(b, repeat=1 if args.quick else 3) for b in ("asyncio", "trio")
    ]
    virtual_time.print_table(results["virtual_time"])

    print("\n== work per chunk (deterministic counts: tests/test_wakeups.py guards them) ==")
    results["wakeups"] = [wakeups.measure(b) for b in ("asyncio", "trio")]  # type: ignore[arg-type]
    for row in results["wakeups"]:
        print(
            f"{row['backend']}: {row['steps_per_chunk']} scheduler steps and {row['calls_per_chunk']} calls per "
            f"chunk (bare scheduler: {row['bare_steps_per_timer']} and {row['bare_calls_per_timer']} per timer)"
        )

    print(
        "\n== garbage collections per chunk at 1,000 sessions (deterministic: tests/test_gc_pressure.py) =="
    )
    results["gc_pressure"] = [fresh("benchmarks.gc_pressure", "measure", b) for b in ("asyncio", "trio")]
    for row in results["gc_pressure"]:
        print(
            f"{row['backend']}: {row['gen0_per_1000_chunks']} young-generation collections per 1,000 chunks "
            f"(bare scheduler: {row['bare_gen0_per_1000_timers']} per 1,000 timers)"
        )

    print("\n== scale in process ==")
    top = 100 if args.quick else 1_000
    results["scale"] = {b: scale.measure(b, top, 1 if args.quick else 3) for b in ("asyncio", "trio")}
    for backend, rows in results["scale"].items():
        scale.print_table(backend, rows)

    print("\n== routing over stdio ==")
    chunks = 2_000 if args.quick else 25_000
    results["stdio_throughput"] = stdio_throughput.measure(chunks, 4, 1 if args.quick else 3)
    stdio_throughput.print_result(results["stdio_throughput"])

    print("\n== state machine throughput ==")
    results["hypothesis"] = {}
    for backend in ("asyncio", "trio"):
        ref = hypothesis_throughput.reference_rate(backend, 50 if args.quick else 300, 0)
        bugs = {} if args.quick else hypothesis_throughput.time_to_catch(backend, 0)
        results["hypothesis"][backend] = {"reference": ref, "bugs": bugs}
        print(f"{backend}: {hypothesis_throughput.describe(ref)}")
        if backend == "asyncio":
            lever = hypothesis_throughput.judging_lever(
                backend, 50 if args.quick else 300, 0, 1 if args.quick else 3
            )
            results["hypothesis"][backend]["judging"] = lever
            print(f"  {hypothesis_throughput.describe_lever(lever)}")
        for name, row in bugs.items():
            print(
                f"  {name:<28} {row['examples']!s:>5} examples {row['wall_s']:>6} s  {','.join(row['properties'])}"
            )

    print("\n== pre-warm and MCP processes ==")
    results["prewarm"] = prewarm.measure(2, 3)
    prewarm.print_result(results["prewarm"], 2, 3)

    print("\n== the plugin installed but unused ==")
    results["plugin_overhead"] = plugin_overhead.measure(3 if args.quick else 7)
    plugin_overhead.print_result(results["plugin_overhead"])

    results["total_wall_s"] = round(time.perf_counter() - started, 1)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=2))
    print(f"\nall benchmarks in {results['total_wall_s']} s; figures written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
