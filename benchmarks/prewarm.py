"""Pre-warm and process accounting, on virtual time with the ``claude-code`` profile.

1. First-chunk latency for a new conversation, cold (``session/new`` then prompt) and warm (a
   pre-warmed session from the pool), in virtual seconds, and what the pool costs for it
   (warm sessions and MCP processes pinned, warm-up tokens).
2. MCP processes for M servers x N sessions: stdio servers (one process per server per session,
   counted live) next to the same servers shared over HTTP by the orchestrator.

Run: ``python -m benchmarks.prewarm``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import anyio

from acp_sim import proctree
from acp_sim.agent import InProcessAgent
from acp_sim.clock import run
from acp_sim.orchestrator import Orchestrator
from acp_sim.orchestrator.mcp import SharedHttpServer
from acp_sim.profile import CLAUDE_CODE

MCP_SERVER = [sys.executable, "-m", "acp_sim", "mcp-server"]


def stdio_servers(m: int) -> list[dict[str, Any]]:
    return [
        {
            "name": f"tool{i}",
            "command": MCP_SERVER[0],
            "args": [*MCP_SERVER[1:], "--name", f"tool{i}"],
            "env": [],
        }
        for i in range(m)
    ]


async def first_chunk_latency(warm: bool, conversations: int, m: int) -> dict[str, Any]:
    launcher = InProcessAgent(CLAUDE_CODE, seed=3)
    latencies: list[float] = []
    async with Orchestrator(launcher) as orch:
        if warm:
            await orch.prewarm(cwd="/w", mcp_servers=stdio_servers(m), count=conversations, wait=True)
        for _ in range(conversations):
            asked = anyio.current_time()
            session = await orch.open_session(cwd="/w", mcp_servers=stdio_servers(m))
            async for update in session.prompt("go"):
                if update.kind == "agent_message_chunk":
                    latencies.append(anyio.current_time() - asked)
                    break
            await session.cancel()
        await anyio.sleep(30)  # let the pool refill in the background: what it pins at rest
        report = orch.pool.report()
        pinned_processes = launcher.current.mcp.count()
        for session in list(orch.sessions.values()):
            await session.close()
    return {
        "first_chunk_s": round(sum(latencies) / len(latencies), 3),
        "pinned_sessions_after": report.pinned_sessions,
        "pinned_mcp_processes_after": report.pinned_mcp_processes,
        "live_mcp_processes_before_close": pinned_processes,
        "warmup_tokens": report.warmup_tokens,
        "hits": report.hits,
    }


async def mcp_processes(m: int, n: int, shared: bool) -> int:
    launcher = InProcessAgent(CLAUDE_CODE, seed=4)
    servers: list[Any]
    if shared:
        servers = [
            SharedHttpServer(
                f"http{i}", [sys.executable, "-m", "http.server", "{port}", "--bind", "127.0.0.1"]
            )
            for i in range(m)
        ]
    else:
        servers = stdio_servers(m)
    async with Orchestrator(launcher, mcp_sharing="share_http") as orch:
        sessions = []
        async with anyio.create_task_group() as tg:

            async def open_one() -> None:
                sessions.append(await orch.open_session(cwd="/w", mcp_servers=servers))

            for _ in range(n):
                tg.start_soon(open_one)
        counted = len(proctree.descendants())
        for session in sessions:
            await session.close()
    return counted


def measure(m: int, n: int) -> dict[str, Any]:
    return {
        "cold": run(first_chunk_latency, False, n, m, backend="asyncio"),
        "warm": run(first_chunk_latency, True, n, m, backend="asyncio"),
        "mcp_processes_stdio": run(mcp_processes, m, n, False, backend="asyncio"),
        "mcp_processes_shared_http": run(mcp_processes, m, n, True, backend="asyncio"),
    }


def print_result(result: dict[str, Any], m: int, n: int) -> None:
    cold, warm = result["cold"], result["warm"]
    print(f"first chunk of a new conversation, claude-code profile, {m} stdio MCP servers (virtual s):")
    print(
        f"  cold {cold['first_chunk_s']:>7} s   warm {warm['first_chunk_s']:>7} s   "
        f"saved {cold['first_chunk_s'] - warm['first_chunk_s']:.3f} s per conversation"
    )
    print(
        f"  pool cost at rest: {warm['pinned_sessions_after']} warm sessions pinning "
        f"{warm['pinned_mcp_processes_after']} MCP processes; {warm['warmup_tokens']} warm-up tokens"
    )
    print(
        f"MCP processes for M={m} x N={n}: stdio {result['mcp_processes_stdio']} (M x N = {m * n}), "
        f"shared over HTTP {result['mcp_processes_shared_http']} (M = {m})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mcp", type=int, default=2, help="MCP servers per session (M)")
    parser.add_argument("--sessions", type=int, default=3, help="sessions (N)")
    args = parser.parse_args(argv)
    print_result(measure(args.mcp, args.sessions), args.mcp, args.sessions)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
