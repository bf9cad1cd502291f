"""The reference orchestrator on its own: several sessions streaming at once, one cancelled.

Runs on the in-process simulated agent on virtual time (instant), or against any ACP agent
command on real time::

    python examples/orchestrator_basic.py
    python examples/orchestrator_basic.py --agent-cmd "acp-sim agent --profile claude-code"
    python examples/orchestrator_basic.py --agent-cmd "npx @zed-industries/claude-agent-acp"
"""

from __future__ import annotations

import argparse
import shlex

import anyio

from acp_sim.agent import InProcessAgent
from acp_sim.clock import run
from acp_sim.orchestrator import Orchestrator, Session, SubprocessAgent, TurnFailed
from acp_sim.profile import CLAUDE_CODE


async def main(agent_cmd: str | None, sessions: int, cwd: str) -> None:
    launcher = SubprocessAgent(shlex.split(agent_cmd)) if agent_cmd else InProcessAgent(CLAUDE_CODE, seed=7)
    start = anyio.current_time()

    def log(session: Session, what: str) -> None:
        print(f"{anyio.current_time() - start:8.3f}s  {session.label:<3} {what}")

    async with Orchestrator(launcher, idle_timeout=120) as orch:
        opened: list[Session] = []
        async with anyio.create_task_group() as tg:
            for _ in range(sessions):
                tg.start_soon(lambda: _open(orch, cwd, opened))
        opened.sort(key=lambda s: s.label)

        async def converse(session: Session, cancel_after: int | None) -> None:
            turn = session.prompt(f"{session.label}: say hello in five words")
            try:
                async for update in turn:
                    log(session, f"{update.kind}: {update.text!r}")
                    if cancel_after is not None and turn.delivered == cancel_after:
                        await session.cancel()
            except TurnFailed as exc:
                log(session, f"failed: {exc}")
                return
            log(session, f"stop reason {turn.stop_reason}, usage {turn.usage}")

        async with anyio.create_task_group() as tg:
            for i, session in enumerate(opened):
                tg.start_soon(converse, session, 2 if i == 1 else None)
        for session in opened:
            await session.close()
        tokens = orch.usage.get("totalTokens", 0)
        print(f"total tokens the agent reported: {tokens}; unrouted updates: {orch.unrouted.count}")


async def _open(orch: Orchestrator, cwd: str, into: list[Session]) -> None:
    into.append(await orch.open_session(cwd=cwd))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agent-cmd", help="an ACP agent command (real time); default: the simulated agent")
    parser.add_argument("--sessions", type=int, default=3)
    parser.add_argument("--cwd", default="/workspace")
    args = parser.parse_args()
    run(main, args.agent_cmd, args.sessions, args.cwd, virtual=args.agent_cmd is None)
