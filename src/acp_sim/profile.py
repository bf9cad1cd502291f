"""Agent profiles: how a simulated agent behaves, as validated data.

A profile is loaded from YAML, TOML, JSON or Python; a typo (unknown key, wrong type,
negative latency) fails with a ``ProfileError`` naming the file, the field and the value.
Every random draw comes from the simulation's seeded RNG, so a profile plus a seed fixes a run.
``acp-sim schema profile`` prints the JSON Schema.

Shape: agent-wide settings (latencies of initialize, restore, not-found and close; modes;
available commands; scheduled faults) and, per model name, the ``session/new`` latencies, the
turn (chunks, thoughts, plan, tool calls, cancel behaviour) and the token usage model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import (
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveInt,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from acp_sim.datafile import describe_validation_error, read_data_file
from acp_sim.distributions import ZERO, Fixed, Latency, LogNormal, Strict, Uniform
from acp_sim.errors import ProfileError
from acp_sim.faults import Fault

__all__ = [
    "BUILTIN_PROFILES",
    "CLAUDE_CODE",
    "DEFAULT",
    "AgentProfile",
    "CommandSpec",
    "Fixed",
    "Latency",
    "LogNormal",
    "ModeSpec",
    "ModelProfile",
    "ToolCallSpec",
    "TurnProfile",
    "Uniform",
    "UsageProfile",
    "load_profile",
    "load_profile_data",
    "profile_json_schema",
    "with_faults",
    "with_overrides",
]

_Strict = Strict  # the name this module used before the distributions moved out

ToolKind = Literal[
    "read", "edit", "delete", "move", "search", "execute", "think", "fetch", "switch_mode", "other"
]


class McpStateUse(Strict):
    """A call to a tool of a *stateful* MCP server of the session (a browser with a current page):
    ``set`` leaves this turn's mark as the server's state, ``get`` reads whatever state is there.

    The agent keeps the state per server process: per session for a stdio entry (each session runs
    its own copy), per URL for an http/sse entry, so sessions given one shared URL see each other's
    state (``pytest_acp.properties.isolation`` reports who saw whose)."""

    server: str
    """The name of one of the session's ``mcpServers``."""
    op: Literal["set", "get"] = "get"


class ToolCallSpec(Strict):
    """One tool call of a turn: ``tool_call`` (pending), then ``tool_call_update`` in_progress, then
    completed or failed."""

    after_chunk: NonNegativeInt = 0
    """Runs after this many message chunks (0: before the first; past the last: after the last)."""
    kind: ToolKind = "other"
    title: str = "Run a tool"
    permission: bool = False
    """Ask first with ``session/request_permission`` and wait: reject fails the tool call, a
    ``cancelled`` outcome (or a ``session/cancel``) ends the turn ``cancelled``."""
    fs: Literal["read", "write"] | None = None
    """Call ``fs/read_text_file`` or ``fs/write_text_file`` (only if the client advertised it)."""
    path: str = "src/app.py"
    """File of the fs call, relative to the session's cwd."""
    terminal: str | None = None
    """Run this command through ``terminal/*`` (only if the client advertised ``terminal``)."""
    duration: Latency = Fixed(seconds=0.2)
    outcome: Literal["completed", "failed"] = "completed"
    mcp: McpStateUse | None = None
    """Use a stateful tool of one of the session's MCP servers (fails if it has no such server)."""


class TurnProfile(Strict):
    """What one prompt turn streams back."""

    first_chunk_delay: Latency = ZERO
    """Time from the prompt to the first chunk; 0 writes it before the agent yields once."""
    empty_first_chunk: bool = False
    """Claude Code starts every turn with an ``agent_message_chunk`` whose text is empty."""
    chunk_count: NonNegativeInt = 5
    chunk_interval: Latency = Fixed(seconds=0.05)
    chunk_words: PositiveInt = 3
    thought_chunks: NonNegativeInt = 0
    """``agent_thought_chunk`` updates before the message, ``chunk_interval`` apart."""
    plan_entries: NonNegativeInt = 0
    """A ``plan`` update with this many entries before the message, all completed at the end."""
    tool_calls: list[ToolCallSpec] = Field(default_factory=list)
    late_updates_after_cancel: NonNegativeInt = 0
    """Chunks the cancelled turn still sends after ``session/cancel``, before answering ``cancelled``."""


class UsageProfile(Strict):
    """Token usage: deterministic per session and turn, growing with the context.

    Each session starts with its own *prefix*: the system prompt (``system_tokens``) plus the tool
    catalog of the MCP servers it was opened with (``mcp_tool_tokens`` per server). A turn reads
    the prefix and the whole conversation so far plus its prompt; its output joins the context.
    Without ``cache`` every turn pays all of it at the input price. With ``cache`` (prompt caching)
    the context up to the previous turn is a cache read and the rest a cache write; each session
    writes its own prefix on its first turn, unless ``cache_scope: shared`` (a cross-session cache:
    the provider's cache is keyed by the prefix bytes, not by the session), where the first session
    with a given prefix writes it and every later one reads it. Cost is per million tokens and
    cumulative per session (``usage_update``). Cache entries never expire here (the provider's
    5-minute TTL is refreshed by every read; a gap of more than 5 minutes between turns is not
    modelled).
    """

    report: bool = True
    """Send ``usage`` in the prompt response and a ``usage_update`` before it."""
    system_tokens: NonNegativeInt = 0
    """Context before the first prompt (system prompt, built-in tool definitions)."""
    mcp_tool_tokens: NonNegativeInt = 0
    """Tool-catalog tokens each MCP server of a session adds to its prefix (any transport). Measured
    catalogs: ~5,700 tokens for an 8-tool server, ~14,000 for 20 tools, ~46,000 for GitHub's 91
    tools (~710 tokens per tool definition); 0 keeps profiles written before this field unchanged."""
    mcp_tool_tokens_by_name: dict[str, NonNegativeInt] = Field(default_factory=dict)
    """Per-server overrides of ``mcp_tool_tokens``, by the server's ``name``."""
    cache_scope: Literal["session", "shared"] = "session"
    """``session``: each session caches its own prefix; ``shared``: one cache across sessions."""
    prompt_chars_per_token: PositiveInt = 4
    tokens_per_word: PositiveInt = 1
    cache: bool = False
    context_window: PositiveInt = 200_000
    input_price: NonNegativeFloat = 3.0
    output_price: NonNegativeFloat = 15.0
    cache_read_price: NonNegativeFloat = 0.3
    cache_write_price: NonNegativeFloat = 3.75
    currency: str = "USD"

    def tool_tokens(self, server_names: list[str]) -> int:
        """The tool catalog a session with these MCP servers carries in its prefix."""
        by_name = self.mcp_tool_tokens_by_name
        return sum(by_name.get(name, self.mcp_tool_tokens) for name in server_names)


class ModelProfile(Strict):
    name: str | None = None
    """Display name in ``availableModels`` (default: the model id)."""
    description: str | None = None
    session_new_cold: Latency = Fixed(seconds=4.0)
    """``session/new`` latency when the agent has not created a session with this model yet."""
    session_new_warm: Latency = Fixed(seconds=4.0)
    """``session/new`` latency for later sessions (Claude Code has no warm start: same as cold).
    When only ``session_new_cold`` is given, this is the same (a second session never opens
    slower than the first unless the profile says so)."""
    turn: TurnProfile = TurnProfile()
    usage: UsageProfile = UsageProfile()

    @model_validator(mode="after")
    def _warm_follows_cold(self) -> ModelProfile:
        # After validation, so a bad cold latency is reported once, at its own key.
        given = self.model_fields_set
        if "session_new_cold" in given and "session_new_warm" not in given:
            return self.model_copy(update={"session_new_warm": self.session_new_cold})
        return self


class ModeSpec(Strict):
    id: str
    name: str
    description: str | None = None


class CommandSpec(Strict):
    """A slash command announced in ``available_commands_update``."""

    name: str
    description: str = ""
    hint: str | None = None


class AgentProfile(Strict):
    name: str = "default"
    # models and modes come before their defaults: the defaults' validators check against them.
    models: dict[str, ModelProfile] = Field(default_factory=lambda: {"default": ModelProfile()})
    default_model: str = "default"
    modes: list[ModeSpec] = Field(default_factory=lambda: [ModeSpec(id="default", name="Default")])
    default_mode: str = "default"
    available_commands: list[CommandSpec] = Field(default_factory=list)
    """Sent as ``available_commands_update`` right after the response to session/new, load, resume."""
    initialize_latency: Latency = ZERO
    restore_latency: Latency = ZERO
    """``session/resume`` and ``session/load`` of a session this process does not hold (read from
    the store, i.e. after a restart); a session the process holds answers at once."""
    not_found_latency: Latency = ZERO
    """Time to fail resume/load of an id that is not on disk (a phantom, or unknown)."""
    close_latency: Latency = ZERO
    list_page_size: PositiveInt = 50
    faults: list[Fault] = Field(default_factory=list)
    """Faults scheduled on every run with this profile (see ``acp_sim.faults``)."""
    coalesce_writes: bool = False
    """Write a turn's last updates (its final chunk, the ``usage_update``) and the ``session/prompt``
    response together, in one write, as real agents that buffer their output do: a client reads them
    in one chunk, and one that handles the responses of a read before its notifications ends the
    turn with its last chunks missing or late."""
    updates_before_new_response: bool = False
    """``session/new`` sends the new session's session-level updates (``available_commands_update``,
    ``current_mode_update``) *before* its response, as several real agents do: a client that drops
    updates for session ids it does not know yet loses them (or crashes on them). The
    ``early_session_updates`` fault does the same for one ``session/new``."""
    text_mode: Literal["tagged", "natural"] = "tagged"
    """``tagged``: every chunk text is unique (``[<session> t<turn> c<n>] words``), easy to read in a
    trace. ``natural``: ordinary model output (repeated short tokens like ``.`` and `` the``,
    identical consecutive chunks, empty and whitespace-only chunks, newlines, non-ASCII, one long
    chunk now and then), the content that bridges which dedup, strip, split or re-encode text get
    wrong. The oracle attributes chunks by send order, so both modes are judged alike."""

    @field_validator("default_model")
    @classmethod
    def _model_exists(cls, value: str, info: ValidationInfo) -> str:
        models = info.data.get("models")
        if models is not None and value not in models:
            raise ValueError(f"{value!r} is not one of the models ({', '.join(models)})")
        return value

    @field_validator("default_mode")
    @classmethod
    def _mode_exists(cls, value: str, info: ValidationInfo) -> str:
        modes = info.data.get("modes")
        if modes is not None and value not in (ids := [m.id for m in modes]):
            raise ValueError(f"{value!r} is not one of the modes ({', '.join(ids)})")
        return value

    def model(self, name: str | None) -> ModelProfile:
        """The profile of a model name; unknown names fall back to the default model."""
        return self.models.get(name or self.default_model) or self.models[self.default_model]


def load_profile_data(data: Any, *, source: str = "<data>") -> AgentProfile:
    try:
        return AgentProfile.model_validate(data)
    except ValidationError as exc:
        raise ProfileError(describe_validation_error(exc, "agent profile", source)) from None


def load_profile(path: str | Path) -> AgentProfile:
    """Load a profile file (``.yaml``/``.yml``, ``.toml`` or ``.json``) or a built-in profile name."""
    if str(path) in BUILTIN_PROFILES:
        return BUILTIN_PROFILES[str(path)]
    path = Path(path)
    return load_profile_data(read_data_file(path, "agent profile", ProfileError), source=str(path))


def profile_json_schema() -> dict[str, Any]:
    return AgentProfile.model_json_schema()


DEFAULT = AgentProfile()

# -- claude-code: calibrated on the real adapter ------------------------------------------------------
# Numbers from ../shared/reference/claude-code-adapter.md and transcripts/ (claude-agent-acp 0.23.1):
# initialize answers in 0.2-0.4 s; cold session/new ~4 s in the field (1.1-1.5 s offline) and no warm
# start; an available_commands_update follows session/new; each turn opens with an empty chunk
# 0.05-0.2 s after the prompt, then one chunk per model delta (~0.2 s apart in the recordings), then a
# usage_update, then the response; a cancel is answered `cancelled` at once with no usage and no later
# update; resume/load from disk take 1.0-1.4 s, a phantom or unknown id fails after 1.0-1.7 s; close
# answers in a few ms. Prices: $3/$15 per Mtok (cost 0.000105 for 10 in / 5 out in the recordings).
# The recordings' token counts come from a fake model API; the usage numbers below follow prompt
# caching as the real service does (Claude Code's system prompt and tools are ~15k cached tokens).

_CLAUDE_MODES = [
    ModeSpec(id="default", name="Default", description="Standard behavior, prompts for dangerous operations"),
    ModeSpec(id="acceptEdits", name="Accept Edits", description="Auto-accept file edit operations"),
    ModeSpec(id="plan", name="Plan Mode", description="Planning mode, no actual tool execution"),
    ModeSpec(
        id="dontAsk", name="Don't Ask", description="Don't prompt for permissions, deny if not pre-approved"
    ),
    ModeSpec(id="bypassPermissions", name="Bypass Permissions", description="Bypass all permission checks"),
]

# (name, description, input hint) of the adapter's available_commands_update; long descriptions cut.
_CLAUDE_COMMANDS = [
    ("update-config", "Use this skill to configure the Claude Code harness via settings.json.", None),
    (
        "debug",
        "Enable debug logging for this session and help diagnose issues (bundled)",
        "[issue description]",
    ),
    (
        "simplify",
        "Review changed code for reuse, quality, and efficiency, then fix any issues found. (bundled)",
        None,
    ),
    (
        "batch",
        "Research and plan a large-scale change, then execute it in parallel across worktree agents.",
        "<instruction>",
    ),
    ("loop", "Run a prompt or slash command on a recurring interval", "[interval] <prompt>"),
    ("claude-api", "Build apps with the Claude API or Anthropic SDK.", None),
    (
        "compact",
        "Clear conversation history but keep a summary in context.",
        "<optional custom summarization instructions>",
    ),
    ("context", "Show current context usage", None),
    ("heapdump", "Dump the JS heap to ~/Desktop", None),
    ("init", "Initialize a new CLAUDE.md file with codebase documentation", None),
    ("pr-comments", "Get comments from a GitHub pull request", None),
    ("review", "Review a pull request", None),
    ("security-review", "Complete a security review of the pending changes on the current branch", None),
    ("insights", "Generate a report analyzing your Claude Code sessions", None),
]

_CLAUDE_SESSION_NEW = LogNormal(kind="lognormal", median=4.0, sigma=0.15, max=12.0)
_CLAUDE_TURN = TurnProfile(
    first_chunk_delay=Uniform(kind="uniform", low=0.05, high=0.2),
    empty_first_chunk=True,
    chunk_count=5,
    chunk_interval=Uniform(kind="uniform", low=0.15, high=0.25),
    late_updates_after_cancel=0,
)
_CLAUDE_USAGE = UsageProfile(system_tokens=15_000, cache=True, context_window=200_000)


def _claude_model(name: str, description: str, **usage: Any) -> ModelProfile:
    return ModelProfile(
        name=name,
        description=description,
        session_new_cold=_CLAUDE_SESSION_NEW,
        session_new_warm=_CLAUDE_SESSION_NEW,
        turn=_CLAUDE_TURN,
        usage=_CLAUDE_USAGE.model_copy(update=usage),
    )


CLAUDE_CODE = AgentProfile(
    name="claude-code",
    default_model="default",
    models={
        "default": _claude_model(
            "Default (recommended)", "Use the default model (currently Sonnet 4.6) · $3/$15 per Mtok"
        ),
        "sonnet[1m]": _claude_model(
            "Sonnet (1M context)", "Sonnet 4.6 for long sessions · $3/$15 per Mtok", context_window=1_000_000
        ),
        # The recording shows no price for Opus; these are Anthropic's list prices for Opus 4.5+.
        "opus[1m]": _claude_model(
            "Opus (1M context)",
            "Opus 4.6 with 1M context · Most capable for complex work",
            context_window=1_000_000,
            input_price=5.0,
            output_price=25.0,
            cache_read_price=0.5,
            cache_write_price=6.25,
        ),
        "haiku": _claude_model(
            "Haiku",
            "Haiku 4.5 · Fastest for quick answers · $1/$5 per Mtok",
            input_price=1.0,
            output_price=5.0,
            cache_read_price=0.1,
            cache_write_price=1.25,
        ),
    },
    default_mode="default",
    modes=_CLAUDE_MODES,
    available_commands=[CommandSpec(name=n, description=d, hint=h) for n, d, h in _CLAUDE_COMMANDS],
    initialize_latency=Uniform(kind="uniform", low=0.2, high=0.4),
    restore_latency=Uniform(kind="uniform", low=1.0, high=1.4),
    not_found_latency=Uniform(kind="uniform", low=1.0, high=1.7),
    close_latency=Fixed(seconds=0.003),
)

BUILTIN_PROFILES: dict[str, AgentProfile] = {"default": DEFAULT, "claude-code": CLAUDE_CODE}


def with_overrides(
    profile: AgentProfile, *, source: str = "command line", **turn_and_latency: Any
) -> AgentProfile:
    """A copy of ``profile`` with fields of every model replaced and validated again.

    Keys: ``session_new`` (cold and warm), ``session_new_cold``, ``session_new_warm``, or any
    ``TurnProfile`` field. ``None`` values are ignored.
    """
    changes = {k: v for k, v in turn_and_latency.items() if v is not None}
    if not changes:
        return profile
    data = profile.model_dump(mode="json")
    for model in data["models"].values():
        if "session_new" in changes:
            model["session_new_cold"] = model["session_new_warm"] = changes["session_new"]
        # warm follows cold unless this profile set it apart (as a file giving only cold does)
        follows = model["session_new_warm"] == model["session_new_cold"]
        if "session_new_cold" in changes and "session_new_warm" not in changes and follows:
            model["session_new_warm"] = changes["session_new_cold"]
        for key in ("session_new_cold", "session_new_warm"):
            if key in changes:
                model[key] = changes[key]
        for key, value in changes.items():
            if key in TurnProfile.model_fields:
                model["turn"][key] = value
    return load_profile_data(data, source=source)


def with_faults(profile: AgentProfile, faults: list[Any]) -> AgentProfile:
    """A copy of ``profile`` with ``faults`` added to the scheduled ones."""
    if not faults:
        return profile
    return profile.model_copy(update={"faults": [*profile.faults, *faults]})
