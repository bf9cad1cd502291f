"""``acp-sim plan WORKLOAD.yaml [--html OUT] [--backend B]``: the cost report of a workload."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from acp_sim.plan.report import html_page, make_plan, text_table
from acp_sim.plan.workload import WorkloadError, load_workload


def add_parser(commands: Any) -> None:
    plan = commands.add_parser(
        "plan",
        help="simulate a workload as one session and as N agents; print the cost table and verdict",
        description="Simulates the workload file's tasks on virtual time (the in-process simulated agent and "
        "the reference orchestrator) as one session doing them in turn (fair: a fresh context between "
        "independent tasks; naive: one context for everything) and as a lead plus N agents with and "
        "without pre-warm and shared HTTP MCP servers; prints wall-clock, tokens, the multiplier over the "
        "fair session, cache writes and reads, tokens by term of the model (prefix, exploration, work, "
        "lead, retries, compaction), peak processes and memory, start-up hidden by pre-warm, the rubric's "
        "four answers and a verdict with its reasons.",
    )
    plan.add_argument("workload", metavar="WORKLOAD", help="the workload file (YAML, TOML or JSON)")
    plan.add_argument("--html", metavar="OUT", help="also write a standalone HTML page with the charts")
    plan.add_argument("--backend", choices=("asyncio", "trio"), default="trio", help="anyio backend")


def main(args: argparse.Namespace) -> int:
    try:
        workload = load_workload(args.workload)
    except WorkloadError as exc:
        print(f"acp-sim plan: {exc}", file=sys.stderr)
        return 2
    plan = make_plan(workload, backend=args.backend)
    print(text_table(plan))
    if args.html:
        Path(args.html).write_text(html_page(plan), encoding="utf-8")
        print(f"\nwrote {args.html}")
    return 0
