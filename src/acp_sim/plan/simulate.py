"""Simulate a workload: one session doing the tasks in turn (naively, and the way a careful user
would), and N agents with and without pre-warm and HTTP MCP sharing, on virtual time with the
in-process simulated agent and the reference orchestrator. Nothing is typed in: wall-clock comes
from the agent's latencies, tokens from its usage model (``UsageProfile``: each session pays its
own prefix and its own context growth on every turn).

The options:

- **one session (naive)**: one context accumulating everything; every later task re-reads every
  earlier, unrelated task's context. Shown because it is what an unattended loop does, not as the
  yardstick.
- **one session (fair)**, the baseline every multiplier is against: the tasks in turn (a task right
  after the one it depends on), with a fresh context between independent tasks (``between_tasks``:
  a compaction turn whose summary seeds the next context, when re-reading the old context would
  cost more than compacting it; or a clear that orients itself again); the context is kept where a
  task depends on one in it. A fresh context in the same CLI
  starts at once and reads the prefix it cached before.
- **N agents**: a lead (orchestrator) session plus N agent sessions. What that adds, each a term of
  the model (``TERMS``, drawn per option as a bar):

  - ``prefix``: every session's system prompt and tool catalog (``system_tokens``, each MCP
    server's ``tool_tokens``), read on every turn; N sessions carry N copies;
  - ``exploration``: every fresh context orients itself (``explore_tokens`` over
    ``explore_turns``), so every agent re-reads the shared codebase another agent already read;
  - ``lead``: the orchestrator session: a split turn writing a brief per task (``brief_tokens``,
    which the agent then reads), a turn summarising each agent's result (``result_tokens`` in,
    ``summary_tokens`` out) and the merge/review turn reading every changed file; all of it on the
    lead's own prefix and growing context, and on the critical path (split before, review after);
  - ``retries``: conflicting work (a file changed by two agents without an ``after`` order) is
    redone once, reading the other agent's version; ``retry_share`` of the turns fail and rerun;
  - ``compaction``: the fair session's summarising turns and the summaries it carries;
  - ``work``: the tasks' own prompts, file reads, outputs and the context they grow.

  Cache behaviour is per session: each session writes its own prefix (``cache: session``) where
  the single session wrote it once and then reads it, so tokens and cost can move apart; the
  report says so when they do.

Published experience the defaults are checked against (the calibration workloads in
``examples/workloads`` and their tests): budget 2x to 5x the tokens of one session for a
multi-agent run (practitioners' rule of thumb), and Anthropic's "How we built our multi-agent
research system" (engineering blog): agents use about 4x the tokens of a chat, multi-agent systems
about 15x. Every number without such a source is marked an assumption where it is defined
(``acp_sim.plan.workload``).

How a workload becomes a run: each kind of turn is a model of its own (``task-<i>``, ``explore``,
``compact``, the lead's) whose turn lasts its seconds and outputs its tokens; a session switches
model with ``session/set_config_option``. A prompt is sized in tokens (4 characters each). Tasks
go to agents by list scheduling in dependency order (``Workload.topological``), computed up front
from the durations so both anyio backends run the same assignment; at run time a task waits for
the tasks it is ``after``. Stdio MCP servers are real child processes of the agent (stand-ins:
``cat``), one per session; shared ones are one orchestrator-run process (a stand-in ``sleep``).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.abc

from acp_sim.agent import InProcessAgent
from acp_sim.clock import Backend, run
from acp_sim.distributions import ZERO, Fixed
from acp_sim.orchestrator import Orchestrator, SharedHttpServer
from acp_sim.orchestrator.session import Session, TurnFailed
from acp_sim.plan.workload import TaskSpec, Workload
from acp_sim.profile import AgentProfile, ModelProfile, TurnProfile, UsageProfile

CWD = "/workspace"
PLAN_MODEL = "plan"
STDIO_STAND_IN = ("cat",)
HTTP_STAND_IN = ("sleep", "86400")
CHARS_PER_TOKEN = 4
COMPACT_PROMPT_TOKENS = 50
"""The ``/compact`` request itself (the instructions around it); small next to what it reads."""
TERMS = ("prefix", "exploration", "work", "lead", "retries", "compaction")
"""Where an option's tokens go; every token of every turn is in exactly one term: a turn's prefix to
``prefix`` (``lead`` in the lead's session), what it reads of the context to the term that put it
there, its prompt and output to its own term."""
WHOLE_TURN_TERMS = ("retries", "compaction")
"""Turns that exist only because of their term: charged whole to it, prefix and context included."""

NAIVE = "naive"
FAIR = "fair"


@dataclass(frozen=True)
class OptionSpec:
    """One way to run the workload. ``agents == 1``: one session, ``fair`` or ``naive``."""

    agents: int
    prewarm: bool = False
    share_mcp: bool = False
    single: str = FAIR

    @property
    def label(self) -> str:
        if self.agents == 1:
            return f"one session ({self.single})"
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
    """Seconds of task turns each agent runs."""
    terms: dict[str, int] = field(default_factory=dict)
    """Tokens per term of the model (``TERMS``); they add up to ``tokens``."""
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
    """List scheduling in dependency order: a task is ready when the tasks it is ``after`` end;
    the agent that can start it first takes it (on a tie, the agent that ran one of its
    dependencies, which keeps that context, then the lowest index)."""
    free_at = [0.0] * agents
    ends: dict[int, float] = {}
    where: dict[str, int] = {}
    plan: list[list[int]] = [[] for _ in range(agents)]
    for i in workload.topological():
        task = workload.tasks[i]
        ready = max((ends[workload.tasks.index(workload.task(d))] for d in task.after), default=0.0)
        deps = {where[d] for d in task.after}
        w = min(range(agents), key=lambda a: (max(free_at[a], ready), a not in deps, a))
        plan[w].append(i)
        free_at[w] = ends[i] = max(free_at[w], ready) + task_seconds(task)
        where[task.name] = w
    return plan


def options(workload: Workload) -> list[OptionSpec]:
    """Both single sessions, then per N: cold, pre-warmed, and pre-warmed with shared HTTP MCP
    servers (only when some stdio server could be shared)."""
    shareable = any(m.transport == "stdio" and m.shareable for m in workload.mcp_servers)
    specs = [OptionSpec(1, single=FAIR), OptionSpec(1, single=NAIVE)]
    for n in workload.agents:
        specs += [OptionSpec(n), OptionSpec(n, prewarm=True)]
        if shareable:
            specs.append(OptionSpec(n, prewarm=True, share_mcp=True))
    return specs


def turn_model(
    seconds: float, output_tokens: int, usage: UsageProfile, startup: Fixed, warm: Any
) -> ModelProfile:
    turn = TurnProfile(
        first_chunk_delay=Fixed(seconds=seconds),
        chunk_count=1,
        chunk_interval=ZERO,
        chunk_words=output_tokens,
    )
    return ModelProfile(session_new_cold=startup, session_new_warm=warm, turn=turn, usage=usage)


def build_profile(workload: Workload, *, fair: bool = False) -> AgentProfile:
    """The agent as this workload sees it. ``fair``: fresh contexts of the one session start at once
    (a clear or compaction in the same CLI, no new process) and read the prefix it cached before."""
    usage = UsageProfile(
        system_tokens=workload.system_tokens,
        mcp_tool_tokens_by_name={m.name: m.tool_tokens for m in workload.mcp_servers},
        cache=workload.cache != "none",
        cache_scope="shared" if workload.cache == "shared" or fair else "session",
        context_window=10**9,  # the plan reports growth; compaction is a turn of its own
        input_price=workload.input_price,
        output_price=workload.output_price,
        cache_read_price=workload.cache_read_price,
        cache_write_price=workload.cache_write_price,
    )
    startup = Fixed(seconds=workload.startup_seconds)
    warm = ZERO if fair else startup

    def model(seconds: float, output_tokens: int) -> ModelProfile:
        return turn_model(seconds, output_tokens, usage, startup, warm)

    lead = workload.lead_turn_seconds
    models = {
        PLAN_MODEL: ModelProfile(session_new_cold=startup, session_new_warm=warm, usage=usage),
        "explore": model(workload.explore_seconds, workload.explore_output_tokens),
        "compact": model(workload.compact_seconds, workload.compact_tokens),
        "lead-split": model(lead, workload.brief_tokens * len(workload.tasks)),
        "lead-summary": model(lead, workload.summary_tokens),
        "lead-review": model(lead, workload.review_output_tokens),
    }
    for i, task in enumerate(workload.tasks):
        models[f"task-{i}"] = model(task.turn_seconds, task.output_tokens)
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


def prompt_text(label: str, tokens: int) -> str:
    """A prompt of exactly ``tokens`` tokens (at least 1), starting with its label when it fits."""
    size = max(tokens, 1) * CHARS_PER_TOKEN
    return (f"{label} " + "." * size)[:size]


def cost_of(workload: Workload, usage: dict[str, int]) -> float:
    return (
        usage.get("inputTokens", 0) * workload.input_price
        + usage.get("outputTokens", 0) * workload.output_price
        + usage.get("cachedReadTokens", 0) * workload.cache_read_price
        + usage.get("cachedWriteTokens", 0) * workload.cache_write_price
    ) / 1e6


class Context:
    """One session's context as the plan sees it: what each term put in it, so every token a turn
    reads is charged to the term that brought it (the agent charges the tokens themselves)."""

    def __init__(
        self, orch: Orchestrator, session: Session, prefix: int, prefix_term: str, terms: Counter[str]
    ) -> None:
        self.orch = orch
        self.session = session
        self.prefix = prefix
        self.prefix_term = prefix_term
        self.held: Counter[str] = Counter()
        self.terms = terms
        self.read: set[str] = set()
        self.tasks: set[str] = set()
        """Tasks whose work is in this context (a dependent task may keep it)."""

    async def turn(self, model: str, label: str, prompt: dict[str, int], output: tuple[str, int]) -> bool:
        """One turn: switch to its model, send a prompt of these parts; False if it was cancelled."""
        await self.orch.conn.request(
            "session/set_config_option", {"sessionId": self.session.id, "configId": "model", "value": model}
        )
        turn = self.session.prompt(prompt_text(label, sum(prompt.values())))
        try:
            stop = await turn.result()
        except TurnFailed:
            return False
        if stop != "end_turn" or turn.usage is None:
            return False  # a cancelled turn reports no usage
        if output[0] in WHOLE_TURN_TERMS:
            self.terms[output[0]] += self.prefix + sum(self.held.values())
        else:
            self.terms[self.prefix_term] += self.prefix
            self.terms.update(self.held)
        self.terms.update(prompt)
        self.terms[output[0]] += output[1]
        self.held.update(prompt)
        self.held[output[0]] += output[1]
        return True


class Run:
    """One option being run: the orchestrator, the samples, the term counters, the task events."""

    def __init__(
        self, workload: Workload, spec: OptionSpec, orch: Orchestrator, launcher: InProcessAgent
    ) -> None:
        self.workload = workload
        self.spec = spec
        self.orch = orch
        self.launcher = launcher
        self.servers = mcp_entries(workload, spec.share_mcp)
        self.tool_tokens = sum(m.tool_tokens for m in workload.mcp_servers)
        self.terms: Counter[str] = Counter()
        self.timeline: list[Sample] = []
        self.memory_of = {m.name: m.memory_mb for m in workload.mcp_servers}
        self.ended = {t.name: anyio.Event() for t in workload.tasks}
        self.decided: dict[str, anyio.Event] = {t.race: anyio.Event() for t in workload.tasks if t.race}
        self.background: anyio.abc.TaskGroup | None = None
        """Where losers of a race are cancelled (the option's task group)."""
        self.racing: dict[str, set[Session]] = {}
        """Sessions running a task of each race now (the losers to cancel when one confirms)."""

    def sample(self) -> None:
        agent = self.launcher.current
        live = [s for s in agent.sessions.values() if not s.closed]
        held = [s for s in agent.mcp.states() if s.held]
        managed = [r for r in self.orch.mcp.running if r.process.poll() is None]
        processes = 1 + len(live) + len(held) + len(managed)
        memory = (
            self.workload.adapter_mb
            + len(live) * self.workload.session_mb
            + sum(self.memory_of.get(s.name, 0.0) for s in held)
            + sum(self.memory_of.get(r.spec.name, 0.0) for r in managed)
        )
        self.timeline.append(Sample(anyio.current_time(), processes, memory))

    async def open(self, *, lead: bool = False) -> Context:
        servers = [] if lead else self.servers
        session = await self.orch.open_session(cwd=CWD, mcp_servers=servers)
        self.sample()
        prefix = self.workload.system_tokens + (0 if lead else self.tool_tokens)
        return Context(self.orch, session, prefix, "lead" if lead else "prefix", self.terms)

    async def explore(self, ctx: Context) -> None:
        """A fresh context orients itself: ``explore_tokens`` over ``explore_turns`` tool rounds."""
        wl = self.workload
        if wl.explore_tokens == 0:
            return
        turns = min(wl.explore_turns, wl.explore_tokens)  # every turn brings at least one token
        share = [wl.explore_tokens // turns] * turns
        share[0] += wl.explore_tokens - sum(share)
        for k, tokens in enumerate(share):
            await ctx.turn(
                "explore", f"explore {k}", {"exploration": tokens}, ("exploration", wl.explore_output_tokens)
            )

    def retry_turns(self, i: int, agent: int, plan: list[list[int]]) -> tuple[int, list[str]]:
        """Turns of task ``i`` to run again, and the files it must re-read: ``retry_share`` of its
        turns (rounded up), plus one when it lost a conflict: a file it shares with an earlier task
        (in dependency order) of another agent, with no ``after`` order between the two."""
        if self.spec.agents == 1:
            return 0, []
        wl = self.workload
        task = wl.tasks[i]
        order = wl.topological()
        earlier_elsewhere = [
            wl.tasks[j]
            for a, tasks in enumerate(plan)
            if a != agent
            for j in tasks
            if order.index(j) < order.index(i) and not wl.ordered(task.name, wl.tasks[j].name)
        ]
        conflicts = sorted({f for other in earlier_elsewhere for f in other.files if f in task.files})
        return math.ceil(wl.retry_share * task.turns) + (1 if conflicts else 0), conflicts

    async def do_task(
        self, ctx: Context, i: int, *, first_prompt_extra: dict[str, int], retry: tuple[int, list[str]]
    ) -> bool:
        """Run task ``i`` in this context; False when its race was lost (stopped early)."""
        wl = self.workload
        task = wl.tasks[i]
        for dep in task.after:
            await self.ended[dep].wait()
        race = self.decided.get(task.race) if task.race else None
        if race is not None and race.is_set():
            self.ended[task.name].set()
            return False
        running = self.racing.setdefault(task.race, set()) if task.race else set()
        running.add(ctx.session)
        try:
            return await self._task_turns(ctx, i, first_prompt_extra, retry, race)
        finally:
            running.discard(ctx.session)
            self.ended[task.name].set()

    async def _task_turns(
        self,
        ctx: Context,
        i: int,
        first_prompt_extra: dict[str, int],
        retry: tuple[int, list[str]],
        race: anyio.Event | None,
    ) -> bool:
        wl = self.workload
        task = wl.tasks[i]
        for k in range(task.turns):
            prompt = {"work": task.prompt_tokens}
            if k == 0:
                new_files = [f for f in dict.fromkeys(task.files) if f not in ctx.read]
                ctx.read.update(new_files)
                prompt["work"] += len(new_files) * wl.file_tokens
                prompt.update(first_prompt_extra)
            if not await ctx.turn(f"task-{i}", f"{task.name} turn {k}", prompt, ("work", task.output_tokens)):
                return False
            if race is not None and race.is_set():
                return False  # another hypothesis confirmed while this turn ran
        if race is not None and task.confirms and not race.is_set():
            race.set()  # confirmed: a retry below redoes the fix, not the finding
            # Losers are cancelled in the background: the winner reports at once, not after them.
            for loser in sorted(self.racing.get(task.race or "", set()), key=lambda s: s.label):
                if loser is not ctx.session:
                    assert self.background is not None
                    self.background.start_soon(loser.cancel)
        extra, conflicts = retry
        for k in range(extra):
            tokens = task.prompt_tokens + (wl.file_tokens * len(conflicts) if k == extra - 1 else 0)
            await ctx.turn(
                f"task-{i}", f"{task.name} retry {k}", {"retries": tokens}, ("retries", task.output_tokens)
            )
        ctx.tasks.add(task.name)
        return True


def worth_a_fresh_context(wl: Workload, ctx: Context, task: TaskSpec) -> bool:
    """Would a careful user start afresh before this independent task? With ``clear``, always. With
    ``compact``, when what the next task would re-read of the old context on each of its turns costs
    more than the compaction turn (prefix, context, summary out) plus the summary it carries."""
    if wl.between_tasks == "clear":
        return True
    held = sum(ctx.held.values())
    compaction = ctx.prefix + held + COMPACT_PROMPT_TOKENS + wl.compact_tokens * (1 + task.turns)
    return held * task.turns > compaction


async def run_single(r: Run, fair: bool) -> None:
    """One session doing the tasks in turn: naive (one context for all) or fair (a fresh context
    between independent tasks, the context kept where a task depends on one in it)."""
    wl = r.workload
    ctx = await r.open()
    await r.explore(ctx)
    for n, i in enumerate(wl.topological()):
        task = wl.tasks[i]
        if task.race and r.decided[task.race].is_set():
            r.ended[task.name].set()  # a hypothesis already confirmed: the rest are not tried
            continue
        if (
            fair
            and n > 0
            and not (set(task.after) & ctx.tasks)
            and ctx.tasks
            and worth_a_fresh_context(wl, ctx, task)
        ):
            summary: dict[str, int] = {}
            if wl.between_tasks == "compact":
                await ctx.turn(
                    "compact",
                    "/compact",
                    {"compaction": COMPACT_PROMPT_TOKENS},
                    ("compaction", wl.compact_tokens),
                )
                summary = {"compaction": wl.compact_tokens}
            await ctx.session.close()
            ctx = await r.open()
            if wl.between_tasks == "clear":
                await r.explore(ctx)
            await r.do_task(ctx, i, first_prompt_extra=summary, retry=(0, []))
            continue
        await r.do_task(ctx, i, first_prompt_extra={}, retry=(0, []))
    await ctx.session.close()
    r.sample()


async def run_agents(r: Run, plan: list[list[int]]) -> None:
    """A lead session splits the work and writes the briefs, N agent sessions do it, the lead
    summarises each result as it arrives and reviews the merge at the end."""
    wl = r.workload
    lead = await r.open(lead=True)
    await r.explore(lead)  # the lead needs the codebase to write briefs: one more orientation
    lock = anyio.Lock()
    described = sum(t.prompt_tokens for t in wl.tasks)
    await lead.turn("lead-split", "split", {"lead": described}, ("lead", wl.brief_tokens * len(wl.tasks)))

    async def agent_worker(agent: int, task_ids: list[int]) -> None:
        ctx = await r.open()
        await r.explore(ctx)
        for i in task_ids:
            done = await r.do_task(
                ctx, i, first_prompt_extra={"lead": wl.brief_tokens}, retry=r.retry_turns(i, agent, plan)
            )
            if done:
                async with lock:
                    await lead.turn(
                        "lead-summary",
                        f"result {wl.tasks[i].name}",
                        {"lead": wl.result_tokens},
                        ("lead", wl.summary_tokens),
                    )
        await ctx.session.close()
        r.sample()

    async with anyio.create_task_group() as tg:
        for agent, task_ids in enumerate(plan):
            if task_ids:
                tg.start_soon(agent_worker, agent, task_ids)
    if wl.merge_point:
        changed = len({f for t in wl.tasks for f in t.files})
        await lead.turn(
            "lead-review",
            "review",
            {"lead": max(changed * wl.file_tokens, COMPACT_PROMPT_TOKENS)},
            ("lead", wl.review_output_tokens),
        )
    await lead.session.close()
    r.sample()


async def run_option(workload: Workload, spec: OptionSpec) -> OptionResult:
    """Run the workload one way, on the caller's (virtual) clock."""
    fair = spec.agents == 1 and spec.single == FAIR
    launcher = InProcessAgent(build_profile(workload, fair=fair), seed=workload.seed)
    plan = schedule(workload, spec.agents) if spec.agents > 1 else [workload.topological()]
    async with Orchestrator(launcher) as orch:
        r = Run(workload, spec, orch, launcher)
        r.sample()
        if spec.prewarm:
            busy_agents = sum(1 for tasks in plan if tasks)
            async with anyio.create_task_group() as warming:  # the agents' and the lead's at once
                warming.start_soon(
                    lambda: orch.prewarm(cwd=CWD, mcp_servers=r.servers, count=busy_agents, wait=True)
                )
                warming.start_soon(lambda: orch.prewarm(cwd=CWD, mcp_servers=[], count=1, wait=True))
            await orch.prewarm(cwd=CWD, mcp_servers=r.servers, count=0)  # no refill once taken
            await orch.prewarm(cwd=CWD, mcp_servers=[], count=0)
            r.sample()
        t0 = anyio.current_time()  # the work arrives now; pre-warming happened before
        async with anyio.create_task_group() as tg:
            r.background = tg
            if spec.agents == 1:
                await run_single(r, fair)
            else:
                await run_agents(r, plan)
        wall = anyio.current_time() - t0
        usage = dict(orch.usage)
        hidden = orch.pool.saved_seconds
    for point in r.timeline:
        point.t = round(point.t - t0, 6)
    return OptionResult(
        spec=spec,
        wall_clock=round(wall, 6),
        usage=usage,
        cost=round(cost_of(workload, usage), 6),
        peak_processes=max(s.processes for s in r.timeline),
        peak_memory_mb=max(s.memory_mb for s in r.timeline),
        startup_hidden=round(hidden, 6),
        assignments=[[workload.tasks[i].name for i in tasks] for tasks in plan],
        busy=[sum(task_seconds(workload.tasks[i]) for i in tasks) for tasks in plan],
        terms={term: r.terms.get(term, 0) for term in TERMS},
        timeline=r.timeline,
    )


async def simulate_async(workload: Workload) -> list[OptionResult]:
    return [await run_option(workload, spec) for spec in options(workload)]


def simulate(workload: Workload, *, backend: Backend = "trio") -> list[OptionResult]:
    """Every option of the workload, each on a fresh agent, on virtual time."""
    return run(simulate_async, workload, backend=backend)


def multiplier(result: OptionResult, baseline: OptionResult) -> float:
    return result.tokens / baseline.tokens if baseline.tokens else math.nan
