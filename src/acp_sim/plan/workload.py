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
    current page): sharing it lets one session see what another left behind (``pytest_acp.isolation``
    measures it in a simulated run)."""


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
    explore_tokens: NonNegativeInt = 10_000
    """Orientation each new session does before its first task (CLAUDE.md, the tree, the shared
    modules); an assumption, set it from your own ``/context``."""
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

    def shared_files(self) -> dict[str, list[str]]:
        """File -> the tasks touching it, for files touched by more than one task."""
        owners: dict[str, list[str]] = {}
        for task in self.tasks:
            for path in dict.fromkeys(task.files):
                owners.setdefault(path, []).append(task.name)
        return {path: names for path, names in owners.items() if len(names) > 1}


def load_workload_data(data: object, *, source: str = "<data>") -> Workload:
    try:
        return Workload.model_validate(data)
    except ValidationError as exc:
        raise WorkloadError(describe_validation_error(exc, "workload", source)) from None


def load_workload(path: str | Path) -> Workload:
    """Load a workload file (``.yaml``/``.yml``, ``.toml`` or ``.json``)."""
    path = Path(path)
    return load_workload_data(read_data_file(path, "workload", WorkloadError), source=str(path))
