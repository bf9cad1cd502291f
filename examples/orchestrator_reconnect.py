"""The agent crashes mid-turn; the orchestrator restarts it and restores every session.

What to look for in the output: the in-flight turn fails at once with an error naming its
session; the session that had turns is resumed, the phantom one recreated (new agent id, same
``Session`` object); a warm pool session is replaced; the token totals equal what the agent
instances reported. Runs on the in-process simulated agent on virtual time::

    python examples/orchestrator_reconnect.py
"""

from __future__ import annotations

import anyio

from acp_sim.agent import InProcessAgent
from acp_sim.clock import run
from acp_sim.orchestrator import Orchestrator, TurnFailed
from acp_sim.profile import CLAUDE_CODE


async def main() -> None:
    launcher = InProcessAgent(CLAUDE_CODE, seed=11)
    async with Orchestrator(launcher) as orch:
        await orch.prewarm(cwd="/workspace", count=1, wait=True)
        busy = await orch.open_session(cwd="/workspace")  # from the pool: no session/new wait
        phantom = await orch.open_session(cwd="/workspace")
        print(
            f"{busy.label} from pool: {busy.from_pool}; {phantom.label} (never prompted): {phantom.from_pool}"
        )

        await busy.prompt("first turn").result()
        turn = busy.prompt("second turn, interrupted by a crash")
        await anyio.sleep(0.5)
        launcher.crash()
        try:
            await turn.result()
        except TurnFailed as exc:
            print(f"at once: {exc}")

        for session in (busy, phantom):
            await session.prompt("after the restart").result()
            ids = [agent_id[:8] for agent_id in session.agent_ids]
            print(f"{session.label}: restored by {session.restores}, agent ids {ids}")
        restart = orch.restarts[0]
        print(f"instance {restart.epoch} went away: failed turns {restart.failed_turns}")
        print(f"restored: {restart.restored}")
        print(orch.pool.report().summary())

    reported = sum(
        (e.message["result"].get("usage") or {}).get("totalTokens", 0)
        for agent in launcher.agents
        for e in agent.trace.events
        if e.kind == "send" and e.method == "session/prompt" and e.message and "result" in e.message
    )
    print(f"tokens: orchestrator {orch.usage.get('totalTokens', 0)}, agents reported {reported}")


if __name__ == "__main__":
    run(main)
