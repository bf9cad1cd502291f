"""Simulate a workload: one session doing the tasks in turn, and N agents with and without pre-warm
and HTTP MCP sharing, on virtual time with the in-process simulated agent and the reference
orchestrator. Nothing is typed in: wall-clock comes from the agent's latencies, tokens from its
usage model (``UsageProfile``: each session pays its own prefix and its own context growth).

How a workload becomes a run:

- the agent profile: ``session/new`` takes ``startup_seconds``; each task is a model of its own
  (``task-<i>``) whose turn lasts ``turn_seconds`` and outputs ``output_tokens`` (one chunk of that
  many one-token words); the session switches to it with ``session/set_config_option``;
- the prompt of a turn is sized in tokens (4 characters each): the task's ``prompt_tokens``, plus on
  a task's first turn the files of the task this session has not read yet (``file_tokens`` each)
  and, on a session's first task, its orientation (``explore_tokens``);
- tasks go to agents by list scheduling in file order: the agent that is free first (lowest index
  on a tie) takes the next task. Computed up front from the durations, so both anyio backends run
  the same assignment;
- stdio MCP servers are real child processes of the agent (stand-ins: ``cat``, which exits when its
  stdin closes), one per session; shared ones are one orchestrator-run process (a stand-in
  ``sleep``), reached over HTTP by every session.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import anyio

from acp_sim.agent import InProcessAgent
from acp_sim.clock import Backend, run
from acp_sim.distributions import ZERO, Fixed
from acp_sim.orchestrator import Orchestrator, SharedHttpServer
from acp_sim.plan.workload import TaskSpec, Workload
from acp_sim.profile import AgentProfile, ModelProfile, TurnProfile, UsageProfile

CWD = "/workspace"
PLAN_MODEL = "plan"
STDIO_STAND_IN = ("cat",)
HTTP_STAND_IN = ("sleep", "86400")
CHARS_PER_TOKEN = 4


@dataclass(frozen=True)
class OptionSpec:
    """One way to run the workload."""

    agents: int
    prewarm: bool = False
    share_mcp: bool = False

    @property
    def label(self) -> str:
        if self.agents == 1:
            return "one session"
        extras = [x for x, on in (("pre-warm", self.prewarm), ("shared MCP", self.share_mcp)) if on]
        return f"{self.agents} agents" + (f" + {' + '.join(extras)}" if extras else "")


@dataclass
class Sample:
    t: float
    """Seconds since the work was submitted (negative: pre-warming before it)."""
    processes: int
    memory_mb: float


@dataclass
class OptionResult:
    spec: OptionSpec
    wall_clock: float
    usage: dict[str, int]
    cost: float
    peak_processes: int
    peak_memory_mb: float
    startup_hidden: float
    """Session start-up (session-seconds) spent before the work arrived, in pre-warmed sessions."""
    assignments: list[list[str]]
    busy: list[float]
    """Seconds of turns each agent runs."""
    timeline: list[Sample] = field(default_factory=list)

    @property
    def tokens(self) -> int:
        return self.usage.get("totalTokens", 0)

    @property
    def label(self) -> str:
        return self.spec.label


def task_seconds(task: TaskSpec) -> float:
    return task.turns * task.turn_seconds


def schedule(workload: Workload, agents: int) -> list[list[int]]:
    """List scheduling in file order: the agent free first (lowest index on a tie) takes the next task."""
    free_at = [0.0] * agents
    plan: list[list[int]] = [[] for _ in range(agents)]
    for i, task in enumerate(workload.tasks):
        w = min(range(agents), key=lambda a: (free_at[a], a))
        plan[w].append(i)
        free_at[w] += task_seconds(task)
    return plan


def options(workload: Workload) -> list[OptionSpec]:
    """One session, then per N: cold, pre-warmed, and pre-warmed with shared HTTP MCP servers
    (only when some stdio server could be shared)."""
    shareable = any(m.transport == "stdio" and m.shareable for m in workload.mcp_servers)
    specs = [OptionSpec(1)]
    for n in workload.agents:
        specs += [OptionSpec(n), OptionSpec(n, prewarm=True)]
        if shareable:
            specs.append(OptionSpec(n, prewarm=True, share_mcp=True))
    return specs


def build_profile(workload: Workload) -> AgentProfile:
    usage = UsageProfile(
        system_tokens=workload.system_tokens,
        mcp_tool_tokens_by_name={m.name: m.tool_tokens for m in workload.mcp_servers},
        cache=workload.cache != "none",
        cache_scope="shared" if workload.cache == "shared" else "session",
        context_window=10**9,  # the plan reports growth; it does not compact
        input_price=workload.input_price,
        output_price=workload.output_price,
        cache_read_price=workload.cache_read_price,
        cache_write_price=workload.cache_write_price,
    )
    startup = Fixed(seconds=workload.startup_seconds)

    def model(turn: TurnProfile) -> ModelProfile:
        return ModelProfile(session_new_cold=startup, session_new_warm=startup, turn=turn, usage=usage)

    models = {PLAN_MODEL: model(TurnProfile())}
    for i, task in enumerate(workload.tasks):
        models[f"task-{i}"] = model(
            TurnProfile(
                first_chunk_delay=Fixed(seconds=task.turn_seconds),
                chunk_count=1,
                chunk_interval=ZERO,
                chunk_words=task.output_tokens,
            )
        )
    return AgentProfile(name=f"plan:{workload.name}", models=models, default_model=PLAN_MODEL)


def mcp_entries(workload: Workload, share: bool) -> list[Any]:
    entries: list[Any] = []
    for m in workload.mcp_servers:
        if m.transport == "http" or (share and m.shareable):
            entries.append(SharedHttpServer(m.name, HTTP_STAND_IN))
        else:
            entries.append(
                {"name": m.name, "command": STDIO_STAND_IN[0], "args": list(STDIO_STAND_IN[1:]), "env": []}
            )
    return entries


def prompt_text(task: str, turn: int, tokens: int) -> str:
    head = f"{task} turn {turn} "
    return head + "." * max(tokens * CHARS_PER_TOKEN - len(head), 0)


def cost_of(workload: Workload, usage: dict[str, int]) -> float:
    return (
        usage.get("inputTokens", 0) * workload.input_price
        + usage.get("outputTokens", 0) * workload.output_price
        + usage.get("cachedReadTokens", 0) * workload.cache_read_price
        + usage.get("cachedWriteTokens", 0) * workload.cache_write_price
    ) / 1e6


async def run_option(workload: Workload, spec: OptionSpec) -> OptionResult:
    """Run the workload one way, on the caller's (virtual) clock."""
    launcher = InProcessAgent(build_profile(workload), seed=workload.seed)
    servers = mcp_entries(workload, spec.share_mcp)
    memory_of = {m.name: m.memory_mb for m in workload.mcp_servers}
    plan = schedule(workload, spec.agents)
    timeline: list[Sample] = []
    t0 = 0.0

    async with Orchestrator(launcher) as orch:

        def sample() -> None:
            agent = launcher.current
            live = [s for s in agent.sessions.values() if not s.closed]
            held = [s for s in agent.mcp.states() if s.held]
            managed = [r for r in orch.mcp.running if r.process.poll() is None]
            processes = 1 + len(live) + len(held) + len(managed)
            memory = (
                workload.adapter_mb
                + len(live) * workload.session_mb
                + sum(memory_of.get(s.name, 0.0) for s in held)
                + sum(memory_of.get(r.spec.name, 0.0) for r in managed)
            )
            timeline.append(Sample(anyio.current_time(), processes, memory))

        sample()
        if spec.prewarm:
            busy_agents = sum(1 for tasks in plan if tasks)
            await orch.prewarm(cwd=CWD, mcp_servers=servers, count=busy_agents, wait=True)
            await orch.prewarm(cwd=CWD, mcp_servers=servers, count=0)  # no refill once taken
            sample()
        t0 = anyio.current_time()  # the work arrives now; pre-warming happened before
        finished: list[float] = []

        async def agent_worker(task_ids: list[int]) -> None:
            session = await orch.open_session(cwd=CWD, mcp_servers=servers)
            sample()
            read: set[str] = set()
            for n, i in enumerate(task_ids):
                task = workload.tasks[i]
                await orch.conn.request(
                    "session/set_config_option",
                    {"sessionId": session.id, "configId": "model", "value": f"task-{i}"},
                )
                for k in range(task.turns):
                    tokens = task.prompt_tokens
                    if k == 0:
                        new_files = [f for f in dict.fromkeys(task.files) if f not in read]
                        read.update(new_files)
                        tokens += len(new_files) * workload.file_tokens
                        tokens += workload.explore_tokens if n == 0 else 0
                    await session.prompt(prompt_text(task.name, k, tokens)).result()
            finished.append(anyio.current_time())
            await session.close()
            sample()

        async with anyio.create_task_group() as tg:
            for task_ids in plan:
                if task_ids:
                    tg.start_soon(agent_worker, task_ids)
        usage = dict(orch.usage)
        hidden = orch.pool.saved_seconds
    wall = max(finished) - t0
    for point in timeline:
        point.t = round(point.t - t0, 6)
    return OptionResult(
        spec=spec,
        wall_clock=round(wall, 6),
        usage=usage,
        cost=round(cost_of(workload, usage), 6),
        peak_processes=max(s.processes for s in timeline),
        peak_memory_mb=max(s.memory_mb for s in timeline),
        startup_hidden=round(hidden, 6),
        assignments=[[workload.tasks[i].name for i in tasks] for tasks in plan],
        busy=[sum(task_seconds(workload.tasks[i]) for i in tasks) for tasks in plan],
        timeline=timeline,
    )


async def simulate_async(workload: Workload) -> list[OptionResult]:
    return [await run_option(workload, spec) for spec in options(workload)]


def simulate(workload: Workload, *, backend: Backend = "trio") -> list[OptionResult]:
    """Every option of the workload, each on a fresh agent, on virtual time."""
    return run(simulate_async, workload, backend=backend)


def multiplier(result: OptionResult, baseline: OptionResult) -> float:
    return result.tokens / baseline.tokens if baseline.tokens else math.nan
