"""Routing throughput over stdio: chunks per second into a client, side by side in one run.

One producer (``benchmarks.blast_agent``, shown first to outrun every client), four consumers of
the same stream, each timed from its first request to the last chunk delivered:
- ``raw``: read the pipe and ``json.loads`` every line: the limit for any Python client;
- ``sdk``: the official ACP SDK's client-side connection (asyncio);
- ``orchestrator``: the reference orchestrator on asyncio and on trio (real time).
Goals: orchestrator >= 1.0x the SDK and >= 0.5x raw.

Run: ``python -m benchmarks.stdio_throughput [--chunks N] [--sessions N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from typing import Any

import anyio

from acp_sim.clock import run
from acp_sim.orchestrator import Orchestrator, SubprocessAgent

PRODUCER = [sys.executable, "-m", "benchmarks.blast_agent"]


def requests(sessions: int) -> bytes:
    lines = [{"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": 1}}]
    for i in range(sessions):
        lines.append(
            {"jsonrpc": "2.0", "id": 2 + i, "method": "session/new", "params": {"cwd": "/", "mcpServers": []}}
        )
    for i in range(sessions):
        params = {"sessionId": f"s{i + 1}", "prompt": [{"type": "text", "text": "go"}]}
        lines.append({"jsonrpc": "2.0", "id": 100 + i, "method": "session/prompt", "params": params})
    return b"".join(json.dumps(m).encode() + b"\n" for m in lines)


def producer_alone(chunks: int, sessions: int) -> float:
    """Seconds for the producer to write everything to /dev/null."""
    t0 = time.perf_counter()
    subprocess.run([*PRODUCER, str(chunks)], input=requests(sessions), stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t0


def raw(chunks: int, sessions: int) -> float:
    t0 = time.perf_counter()
    proc = subprocess.Popen([*PRODUCER, str(chunks)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdin is not None
    assert proc.stdout is not None
    proc.stdin.write(requests(sessions))
    proc.stdin.close()
    seen = 0
    for line in proc.stdout:
        if json.loads(line).get("method") == "session/update":
            seen += 1
    proc.wait()
    assert seen == chunks * sessions, seen
    return time.perf_counter() - t0


def sdk(chunks: int, sessions: int) -> float:
    from acp import PROTOCOL_VERSION, spawn_agent_process, text_block

    class Counter:
        seen = 0

        async def session_update(self, session_id: str, update: Any, **kwargs: Any) -> None:
            self.seen += 1

        async def request_permission(self, *args: Any, **kwargs: Any) -> Any:
            raise NotImplementedError

        def on_connect(self, conn: Any) -> None:
            pass

    client = Counter()

    async def main() -> float:
        t0 = time.perf_counter()
        async with spawn_agent_process(client, PRODUCER[0], *PRODUCER[1:], str(chunks)) as (conn, _):
            await conn.initialize(protocol_version=PROTOCOL_VERSION)
            ids = [(await conn.new_session(cwd="/")).session_id for _ in range(sessions)]
            await asyncio.gather(*(conn.prompt(session_id=i, prompt=[text_block("go")]) for i in ids))
            elapsed = time.perf_counter() - t0
        assert client.seen == chunks * sessions, client.seen
        return elapsed

    return asyncio.run(main())


def orchestrator(chunks: int, sessions: int, backend: str) -> float:
    async def main() -> float:
        t0 = time.perf_counter()
        seen = 0
        async with Orchestrator(SubprocessAgent([*PRODUCER, str(chunks)]), max_buffered=chunks + 10) as orch:
            opened = [await orch.open_session(cwd="/") for _ in range(sessions)]

            async def consume(session: Any) -> None:
                nonlocal seen
                async for _update in session.prompt("go"):
                    seen += 1

            async with anyio.create_task_group() as tg:
                for session in opened:
                    tg.start_soon(consume, session)
            elapsed = time.perf_counter() - t0
        assert seen == chunks * sessions, seen
        return elapsed

    return run(main, backend=backend, virtual=False)  # type: ignore[arg-type]


def measure(chunks: int, sessions: int, repeat: int) -> dict[str, Any]:
    total = chunks * sessions
    best: dict[str, float] = {}
    runners = {
        "producer alone": lambda: producer_alone(chunks, sessions),
        "raw json.loads": lambda: raw(chunks, sessions),
        "sdk client": lambda: sdk(chunks, sessions),
        "orchestrator asyncio": lambda: orchestrator(chunks, sessions, "asyncio"),
        "orchestrator trio": lambda: orchestrator(chunks, sessions, "trio"),
    }
    for _ in range(repeat):  # interleaved, so load on the machine hits every consumer alike
        for name, func in runners.items():
            best[name] = min(best.get(name, float("inf")), func())
    rates = {name: round(total / seconds) for name, seconds in best.items()}
    return {
        "chunks": total,
        "chunks_per_s": rates,
        "orchestrator_vs_sdk": round(rates["orchestrator asyncio"] / rates["sdk client"], 2),
        "orchestrator_vs_raw": round(rates["orchestrator asyncio"] / rates["raw json.loads"], 2),
        "producer_outruns_clients": rates["producer alone"]
        > max(v for k, v in rates.items() if k != "producer alone"),
    }


def print_result(result: dict[str, Any]) -> None:
    print(f"{result['chunks']:,} chunks over stdio (best run):")
    for name, rate in result["chunks_per_s"].items():
        print(f"  {name:<22} {rate:>10,} chunks/s")
    print(
        f"  orchestrator / sdk = {result['orchestrator_vs_sdk']} (goal >= 1.0); "
        f"orchestrator / raw = {result['orchestrator_vs_raw']} (goal >= 0.5); "
        f"producer outruns clients: {result['producer_outruns_clients']}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=25_000, help="chunks per session turn")
    parser.add_argument("--sessions", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    print_result(measure(args.chunks, args.sessions, args.repeat))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
