"""Per-session simulation state: one object per session, holding everything the agent knows of it."""

from __future__ import annotations

import functools
import itertools
import math
import random
from dataclasses import dataclass, field
from typing import Any

import anyio

from acp_sim.profile import ModelProfile
from acp_sim.store import StoredSession

WORDS = (
    "the", "agent", "reads", "files", "and", "writes", "a", "patch", "for", "each", "failing", "test",
    "then", "runs", "suite", "again", "until", "it", "passes", "cleanly",
)  # fmt: skip
# Natural text mode: what model output really streams, including what naive clients mishandle:
# repeated short tokens, whitespace-only and empty chunks, newlines inside a chunk, non-ASCII.
NATURAL_TOKENS = (
    ".", " the", "\n", "", " ", ",", " and", "\n\n", " a", "The", " test", " passes",
    "café", " naïve", " 日本語", " 🙂", "line one\nline two\n", "```\n", "\t-", " über",
)  # fmt: skip
# Every phrase of up to this many words is tabled once (20**3 = 8,000), so a chunk's words are one
# draw and one index instead of a draw per word; longer chunks draw per word.
TABLED_WORDS = 3


@functools.cache
def phrases(words: int) -> tuple[str, ...] | None:
    """Every ``words``-word phrase of ``WORDS``, in a fixed order; None when that is too many."""
    if words > TABLED_WORDS:
        return None
    return tuple(" ".join(combo) for combo in itertools.product(WORDS, repeat=words))


def draw_words(rng: random.Random, words: int) -> str:
    """``words`` words drawn from ``rng`` (one draw when the phrases are tabled)."""
    table = phrases(words)
    if table is not None:
        return table[int(rng.random() * len(table))]
    random_ = rng.random
    n = len(WORDS)
    return " ".join([WORDS[int(random_() * n)] for _ in range(words)])


REPEAT_PREVIOUS = 0.3
"""Natural mode: chance a chunk repeats the previous one exactly (identical consecutive chunks)."""
LONG_CHUNK_CHARS = 4000


@dataclass(eq=False)
class Turn:
    number: int
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    done: anyio.Event = field(default_factory=anyio.Event)
    """Set once the turn's response is on the wire: the next queued prompt of the session starts."""
    prev: Turn | None = None
    chunks_sent: int = 0
    thoughts_sent: int = 0
    # Armed behaviour faults that apply to this turn (see acp_sim.faults).
    empty: bool = False
    withhold: bool = False
    tail: int = 0
    tail_interval: float = 0.0
    stop_override: str | None = None

    @property
    def is_cancelled(self) -> bool:
        return self.scope.cancel_called


@dataclass(eq=False)
class SimSession:
    id: str
    index: int
    cwd: str
    model_name: str
    model: ModelProfile
    rng: random.Random
    mode: str = "default"
    turns: int = 0
    active: list[Turn] = field(default_factory=list)
    last: Turn | None = None
    closed: bool = False
    history: list[tuple[str, str]] = field(default_factory=list)  # (role, text), replayed by session/load
    title: str | None = None
    context_tokens: int = 0
    cached_tokens: int = 0
    prefix_tokens: int = 0
    """System prompt plus tool catalog: the part of the context every session of this
    configuration has in common (see ``UsageProfile``)."""
    prefix_key: str = ""
    prefix_cache: set[str] | None = None
    """The agent's cross-session prompt cache (``cache_scope: shared``): prefix keys written."""
    cost: float = 0.0
    stall: float = 0.0
    """Extra pause before the next chunk (a ``stall`` fault armed for this session)."""
    behind: bool = False
    """The one-turn-behind defect is active (see ``acp_sim.faults.OneTurnBehind``)."""
    backlog: tuple[list[str], dict[str, Any] | None, dict[str, Any] | None] | None = None
    mcp_servers: list[str] = field(default_factory=list)
    """Names of the session's stdio MCP servers (targets of ``mcp_child_crash``)."""
    natural: bool = False
    """Chunk texts in natural mode (``AgentProfile.text_mode``): not unique, not tagged."""
    _last_text: str | None = None
    _long_sent: set[int] = field(default_factory=set)

    @property
    def short(self) -> str:
        """The id prefix every chunk text of this session carries."""
        return self.id[:8]

    @property
    def is_phantom(self) -> bool:
        """A session that never had a turn; after a restart it does not exist (nothing on disk)."""
        return self.turns == 0

    @property
    def current(self) -> Turn | None:
        return self.active[0] if self.active else None

    def begin_turn(self) -> Turn:
        """Number the turn in arrival order; it waits for the previous one (prompt queueing)."""
        self.turns += 1
        prev = self.last if self.last is not None and not self.last.done.is_set() else None
        turn = Turn(self.turns, prev=prev)
        self.active.append(turn)
        self.last = turn
        return turn

    def end_turn(self, turn: Turn) -> None:
        if turn in self.active:
            self.active.remove(turn)
        turn.done.set()

    def cancel(self) -> bool:
        """Ask every running or queued turn to stop; False when there is none."""
        for turn in self.active:
            turn.scope.cancel()
        return bool(self.active)

    def chunk_text(self, turn: int, label: str) -> str:
        """A text no other chunk has: ``[<id prefix> t<turn> <label>] words...`` (label ``c3``, ``th0``).

        ``SimAgent._stream`` inlines the same for message chunks (the hot path); same draws, same text.
        In natural mode the text is ``natural_text`` instead.
        """
        if self.natural:
            return self.natural_text(turn)
        words = draw_words(self.rng, self.model.turn.chunk_words)
        return f"[{self.short} t{turn} {label}] {words} "

    def natural_text(self, turn: int) -> str:
        """One chunk of ordinary text, drawn from the session's RNG: short tokens that repeat, now
        and then the previous chunk again, and once per turn (at a drawn moment) one long chunk."""
        rng = self.rng
        roll = rng.random()
        if roll < REPEAT_PREVIOUS and self._last_text is not None:
            text = self._last_text
        elif roll > 0.93 and turn not in self._long_sent:
            self._long_sent.add(turn)
            words = " ".join(rng.choice(WORDS) for _ in range(LONG_CHUNK_CHARS // 6))
            text = f"{words}\n{rng.choice(NATURAL_TOKENS)}"
        else:
            text = rng.choice(NATURAL_TOKENS)
        self._last_text = text
        return text

    # -- token usage -----------------------------------------------------------------------------

    def prompt_tokens(self, text: str) -> int:
        return max(1, math.ceil(len(text) / self.model.usage.prompt_chars_per_token))

    def account(self, prompt_tokens: int, output_words: int) -> tuple[dict[str, int], dict[str, Any]]:
        """Charge one finished turn: its ``usage`` (prompt response) and ``usage_update``.

        The turn reads the whole context so far plus its prompt, so usage grows with the
        session's length; with caching, what earlier turns cached is a cache read.
        """
        spec = self.model.usage
        output = output_words * spec.tokens_per_word
        before = self.context_tokens
        if spec.cache:
            cached_read = self.cached_tokens
            shared = self.prefix_cache if spec.cache_scope == "shared" else None
            if shared is not None and self.prefix_tokens:
                if cached_read == 0 and self.prefix_key in shared:
                    cached_read = min(self.prefix_tokens, before)  # another session wrote it
                shared.add(self.prefix_key)
            cached_write, fresh = before - cached_read, prompt_tokens
            self.cached_tokens = before
        else:
            cached_read, cached_write, fresh = 0, 0, before + prompt_tokens
        self.context_tokens = before + prompt_tokens + output
        cost = (
            fresh * spec.input_price
            + output * spec.output_price
            + cached_read * spec.cache_read_price
            + cached_write * spec.cache_write_price
        ) / 1e6
        self.cost = round(self.cost + cost, 9)
        usage = {
            "inputTokens": fresh,
            "outputTokens": output,
            "cachedReadTokens": cached_read,
            "cachedWriteTokens": cached_write,
            "totalTokens": fresh + output + cached_read + cached_write,
        }
        update = {
            "sessionUpdate": "usage_update",
            "used": self.context_tokens,
            "size": spec.context_window,
            "cost": {"amount": self.cost, "currency": spec.currency},
        }
        return usage, update

    def account_cancelled(self, prompt_tokens: int, output_words: int) -> None:
        """A cancelled turn reports no usage, but its prompt and partial answer stay in context."""
        self.context_tokens += prompt_tokens + output_words * self.model.usage.tokens_per_word

    # -- the disk ----------------------------------------------------------------------------------

    def to_record(self) -> StoredSession:
        return StoredSession(
            session_id=self.id,
            cwd=self.cwd,
            model=self.model_name,
            mode=self.mode,
            turns=self.turns,
            history=[(role, text) for role, text in self.history],  # type: ignore[misc]
            context_tokens=self.context_tokens,
            cached_tokens=self.cached_tokens,
            cost=self.cost,
            title=self.title,
        )

    @classmethod
    def from_record(
        cls, record: StoredSession, *, index: int, model: ModelProfile, rng: random.Random
    ) -> SimSession:
        return cls(
            record.session_id,
            index,
            record.cwd,
            record.model,
            model,
            rng,
            mode=record.mode,
            turns=record.turns,
            history=list(record.history),
            title=record.title,
            context_tokens=record.context_tokens,
            cached_tokens=record.cached_tokens,
            cost=record.cost,
        )
