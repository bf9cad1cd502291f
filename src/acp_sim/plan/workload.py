"""The workload file of ``acp-sim plan``: tasks, their sizes and files, MCP servers, agent counts.

Every default below says where its number comes from; a typo (unknown key, wrong type) fails with
the file, the field and the value, as profile files do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import (
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    field_validator,
    model_validator,
)

from acp_sim.datafile import describe_validation_error, read_data_file
from acp_sim.distributions import Strict
from acp_sim.errors import AcpSimError


class WorkloadError(AcpSimError):
    """A workload file that cannot be read or is invalid; names the file, the field and the value."""


class McpServerSpec(Strict):
    """One MCP server every session of the workload is given."""

    name: str
    transport: Literal["stdio", "http"] = "stdio"
    """``stdio``: the agent starts a copy per session (Claude Code does: 3 sessions x 2 servers = 6
    processes, shared/reference/claude-code-adapter.md). ``http``: one process the orchestrator runs."""
    tool_tokens: NonNegativeInt = 5_000
    """Its tool catalog in every session's prefix. 5,000: an 8-tool server measured ~5,700 tokens
    (~710 tokens per tool definition; a 91-tool GitHub server ~46,000)."""
    memory_mb: NonNegativeFloat = 50.0
    """Resident memory of one copy; 50 MB is an assumption for a small Node or Python server."""
    shareable: bool = True
    """Can one HTTP process serve every session? False for a stateful server (a browser with a
    current page): sharing it lets one session see what another left behind
    (``pytest_acp.properties.isolation`` measures it in a simulated run)."""


class TaskSpec(Strict):
    """One task: how long and how big its turns are, and which files it touches."""

    name: str
    turns: PositiveInt = 1
    turn_seconds: PositiveFloat = 60.0
    """Wall-clock of one turn (model time plus tool time)."""
    prompt_tokens: PositiveInt = 500
    """New input per turn: the prompt and the tool results it brings (file reads, command output)."""
    output_tokens: PositiveInt = 1_000
    """Output per turn (it joins the context, so later turns read it again)."""
    files: list[str] = Field(default_factory=list)
    after: list[str] = Field(default_factory=list)
    """Tasks this one needs finished first (their results, their edits): it starts only when they
    have ended, and a single session keeps their context instead of starting a fresh one."""
    race: str | None = None
    """Competing hypotheses: tasks with the same ``race`` name try alternatives; the first one that
    ``confirms`` wins and the others stop (cancelled in N agents, not started in one session)."""
    confirms: bool = False
    """This hypothesis is the one that turns out right (one per race)."""


class Workload(Strict):
    name: str = "workload"
    tasks: list[TaskSpec] = Field(min_length=1)
    agents: list[PositiveInt] = Field(default_factory=lambda: [2, 4])
    """The N of the "N agents" options (each at least 2; one session is always simulated)."""
    mcp_servers: list[McpServerSpec] = Field(default_factory=list)
    startup_seconds: NonNegativeFloat = 4.0
    """``session/new`` of a fresh session: ~4 s in the field (claude-code-adapter.md; no warm start)."""
    system_tokens: NonNegativeInt = 15_000
    """System prompt and built-in tools: ~15k tokens for Claude Code (the claude-code profile)."""
    explore_tokens: NonNegativeInt = 20_000
    """Orientation each fresh context does before its first task (CLAUDE.md, the tree, the shared
    modules): the re-exploration every agent (and the lead) pays again. An assumption: about ten
    files of ~2,000 tokens; set it from your own ``/context``."""
    explore_turns: PositiveInt = 4
    """Orientation is tool calls, so turns: ``explore_tokens`` arrive over this many turns, each of
    which re-reads the prefix and the context so far. An assumption (a few Read/Grep/Glob rounds)."""
    explore_seconds: PositiveFloat = 20.0
    """Wall-clock of one orientation turn; an assumption."""
    explore_output_tokens: PositiveInt = 300
    """The notes one orientation turn writes; an assumption."""
    between_tasks: Literal["compact", "clear"] = "compact"
    """What the fair single session does between independent tasks: ``compact`` (a summarising turn,
    then a fresh context holding only the summary: no new orientation) or ``clear`` (a fresh context
    that orients itself again). Either way no unrelated context is carried, as a careful user works."""
    compact_tokens: PositiveInt = 2_000
    """The summary a compaction writes and the fresh context starts with; an assumption."""
    compact_seconds: PositiveFloat = 20.0
    """Wall-clock of the compaction turn; an assumption."""
    lead_turn_seconds: PositiveFloat = 30.0
    """Wall-clock of one turn of the orchestrator (lead) session: the split, one summary per agent
    result, the merge/review. An assumption."""
    brief_tokens: PositiveInt = 800
    """The brief the lead writes per task (objective, output format, boundaries), which the agent
    then reads. Anthropic's multi-agent research system found short briefs make agents duplicate
    work, so briefs are detailed; the number is an assumption."""
    result_tokens: PositiveInt = 1_500
    """The report each agent hands back, which the lead reads; an assumption."""
    summary_tokens: PositiveInt = 300
    """What the lead writes when it summarises one result; an assumption."""
    review_output_tokens: PositiveInt = 1_000
    """The lead's merge/review turn output; its input is every changed file (``file_tokens`` each)."""
    retry_share: NonNegativeFloat = 0.1
    """Share of each agent's task turns that fail and run again (rounded up per task: one retry
    turn for a task of up to 10 turns). An assumption: a single session's mistakes are corrected in
    the next turn of the same conversation, an agent's only surface at the lead's summary or review,
    and are redone then. Conflicting work (a file two agents change without an ``after`` order) is
    redone once more, whatever this says."""
    file_tokens: PositiveInt = 2_000
    """Tokens of reading one touched file (~8 KB of source at ~4 characters per token). A session
    reads a file once; a later task of the same session finds it in its context."""
    cache: Literal["none", "session", "shared"] = "session"
    """Prompt caching: none; per session (each session writes its own prefix); shared (one write of
    the common prefix for every session, as the provider's cache is keyed by content)."""
    input_price: NonNegativeFloat = 3.0
    """USD per million tokens: Sonnet list prices; cache writes 1.25x and reads 0.1x the input price
    (Anthropic's prompt caching pricing)."""
    output_price: NonNegativeFloat = 15.0
    cache_read_price: NonNegativeFloat = 0.3
    cache_write_price: NonNegativeFloat = 3.75
    adapter_mb: NonNegativeFloat = 75.0
    """Memory of the ACP adapter process (~75 MB measured, claude-code-adapter.md)."""
    session_mb: NonNegativeFloat = 200.0
    """Memory of one session's CLI process (~200 MB measured, claude-code-adapter.md)."""
    constraint: Literal["wall_clock", "tokens"] | None = None
    """What you are short of. Unset: wall-clock is the constraint when one session misses
    ``deadline_seconds``."""
    deadline_seconds: PositiveFloat | None = None
    merge_point: bool = True
    """Is there an explicit point where the parallel results are combined (a review, a merge)?"""
    prewarm: bool = False
    """Can sessions be started before the work arrives (a long-running service)?"""
    amortize_ratio: PositiveFloat = 0.1
    """Start-up counts as amortized when it is at most this share of the work each agent does."""
    seed: int = 0

    @field_validator("agents")
    @classmethod
    def _at_least_two(cls, value: list[int]) -> list[int]:
        for n in value:
            if n < 2:
                raise ValueError(f"agent counts are N >= 2 (one session is always simulated), got {n}")
        return sorted(set(value))

    @model_validator(mode="after")
    def _unique_names(self) -> Workload:
        for what, names in (
            ("task", [t.name for t in self.tasks]),
            ("mcp server", [m.name for m in self.mcp_servers]),
        ):
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"{what} names must be unique: {', '.join(dupes)}")
        return self

    @model_validator(mode="after")
    def _races_confirm_once(self) -> Workload:
        races: dict[str, list[TaskSpec]] = {}
        for task in self.tasks:
            if task.race is not None:
                races.setdefault(task.race, []).append(task)
            elif task.confirms:
                raise ValueError(f"task {task.name}: confirms is for a task in a race")
        for race, members in races.items():
            confirming = [t.name for t in members if t.confirms]
            if len(confirming) != 1:
                raise ValueError(f"race {race}: exactly one task confirms, got {len(confirming)}")
        return self

    def task(self, name: str) -> TaskSpec:
        return next(t for t in self.tasks if t.name == name)

    def ancestors(self, name: str) -> set[str]:
        """Every task ``name`` waits for, directly or through others."""
        seen: set[str] = set()
        stack = list(self.task(name).after)
        while stack:
            dep = stack.pop()
            if dep not in seen:
                seen.add(dep)
                stack.extend(self.task(dep).after)
        return seen

    def ordered(self, a: str, b: str) -> bool:
        """Does one of the two tasks wait for the other (so they never run at once)?"""
        return a in self.ancestors(b) or b in self.ancestors(a)

    def shared_files(self) -> dict[str, list[str]]:
        """File -> the tasks touching it, for files touched by two tasks that may run at once
        (tasks ordered by ``after`` edit one after the other: no conflict)."""
        owners: dict[str, list[str]] = {}
        for task in self.tasks:
            for path in dict.fromkeys(task.files):
                owners.setdefault(path, []).append(task.name)
        return {
            path: names
            for path, names in owners.items()
            if any(not self.ordered(a, b) for i, a in enumerate(names) for b in names[i + 1 :])
        }

    def topological(self) -> list[int]:
        """Task indices in an order that respects ``after``: file order, each task as soon as its
        dependencies are placed, and a dependent task right after the task it waits for when it can
        (so one session keeps that context)."""
        index = {t.name: i for i, t in enumerate(self.tasks)}
        placed: list[int] = []
        done: set[str] = set()

        def ready(i: int) -> bool:
            return i not in placed and all(d in done for d in self.tasks[i].after)

        while len(placed) < len(self.tasks):
            last = self.tasks[placed[-1]].name if placed else None
            follow = [i for i in range(len(self.tasks)) if ready(i) and last in self.tasks[i].after]
            i = follow[0] if follow else next(i for i in range(len(self.tasks)) if ready(i))
            placed.append(i)
            done.add(self.tasks[i].name)
        assert sorted(placed) == list(range(len(index)))
        return placed


def check_dependencies(workload: Workload, source: str) -> None:
    """Every ``after`` names a task of the file, and the dependencies have no cycle."""
    names = {t.name: i for i, t in enumerate(workload.tasks)}
    for i, task in enumerate(workload.tasks):
        for dep in task.after:
            if dep not in names:
                raise WorkloadError(
                    f"invalid workload {source}:\n  tasks.{i}.after: unknown task {dep!r} "
                    f"(tasks: {', '.join(names)})"
                )
            if dep == task.name:
                raise WorkloadError(
                    f"invalid workload {source}:\n  tasks.{i}.after: task {dep!r} waits for itself"
                )
    # Depth-first search; a task met again while on the stack closes a cycle.
    state: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> None:
        state[name] = "open"
        for dep in workload.task(name).after:
            if state.get(dep) == "open":
                cycle = [*path[path.index(dep) :], dep] if dep in path else [name, dep]
                raise WorkloadError(
                    f"invalid workload {source}:\n  tasks.{names[name]}.after: dependency cycle "
                    + " -> ".join(cycle)
                )
            if dep not in state:
                visit(dep, [*path, dep])
        state[name] = "done"

    for task in workload.tasks:
        if task.name not in state:
            visit(task.name, [task.name])


def load_workload_data(data: object, *, source: str = "<data>") -> Workload:
    try:
        workload = Workload.model_validate(data)
    except ValidationError as exc:
        raise WorkloadError(describe_validation_error(exc, "workload", source)) from None
    check_dependencies(workload, source)
    return workload


def load_workload(path: str | Path) -> Workload:
    """Load a workload file (``.yaml``/``.yml``, ``.toml`` or ``.json``)."""
    path = Path(path)
    return load_workload_data(read_data_file(path, "workload", WorkloadError), source=str(path))
