"""Pre-warm pool: sessions created ahead of time per (model, cwd, MCP configuration).

``session/new`` is slow (about 4 s with Claude Code, longer with MCP servers to start) and the
agent has no warm start of its own, so a client that wants an instant first answer creates
sessions before anyone asks and hands one out when a matching conversation starts. Matching is by
the exact key (model, cwd, canonical MCP configuration): a warm session made for another cwd or
another MCP set would run the conversation in the wrong place. Each handed-out session is
replaced in the background.

A cwd change (the project moved, or its content changed under the warm sessions) invalidates the
warm sessions made for it: ready ones are closed at the agent (so their MCP processes go too),
ones still being created are closed when they arrive. ``report()`` shows what the pool costs
(sessions and MCP processes pinned, warm-up tokens spent) next to what it saved (cold
``session/new`` seconds avoided by hits).

The pool owns its warm sessions and never knows its owner: it is handed ``PoolOps``, the few
things it needs done (run a background task, make a warm session, start its warm-up turn, discard
one, read the clock and the warm-up tokens spent).
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio

from acp_sim.errors import AcpSimError, ConnectionClosed
from acp_sim.orchestrator.session import Prompt, Session, TurnStream

# Consecutive failed warm-ups after which a key stops refilling (reported, retried by prewarm()).
MAX_WARMUP_FAILURES = 3


@dataclass(frozen=True, slots=True)
class PoolKey:
    model: str | None
    cwd: str
    mcp: str
    """The MCP configuration, canonical JSON (key order and server order do not matter)."""


def canonical_mcp(servers: Sequence[Any]) -> str:
    entries = []
    for server in servers:
        if hasattr(server, "argv") and hasattr(server, "url"):  # SharedHttpServer
            entries.append({"shared": server.name, "argv": list(server.argv), "url": server.url})
        elif hasattr(server, "model_dump"):
            entries.append(server.model_dump(mode="json", by_alias=True, exclude_none=True))
        else:
            entries.append(dict(server))
    return json.dumps(sorted(entries, key=lambda e: json.dumps(e, sort_keys=True)), sort_keys=True)


@dataclass(frozen=True, slots=True)
class PoolOps:
    """What the pool is handed by its owner (never the owner itself)."""

    spawn: Callable[..., None]
    """Run ``func(*args)`` as a background task: ``spawn(func, *args)``."""
    new_session: Callable[[str, list[Any], str | None], Awaitable[Session]]
    """A fresh warm session for (cwd, MCP servers, model), registered for routing."""
    start_turn: Callable[[Session, Prompt], TurnStream]
    """Start a warm-up turn (its tokens are recorded as warm-up cost)."""
    discard: Callable[[Session], Awaitable[None]]
    """Forget a warm session and close it at the agent."""
    now: Callable[[], float]
    warmup_tokens: Callable[[], int]


@dataclass
class PoolTarget:
    key: PoolKey
    count: int
    mcp_servers: list[Any]
    warmup_prompt: str | list[dict[str, Any]] | None = None
    failures: int = 0
    last_error: str | None = None


@dataclass
class PoolReport:
    """What the pool costs next to what it saves."""

    wanted: int
    pinned_sessions: int
    """Warm sessions alive at the agent right now, waiting to be handed out."""
    warming: int
    pinned_mcp_processes: int
    """stdio MCP server processes the agent runs for those warm sessions."""
    warmup_tokens: int
    warmups_started: int
    warmups_failed: int
    invalidated: int
    hits: int
    waited: int
    misses: int
    saved_seconds: float
    """Cold session/new time the hits did not wait for (each warm session's own creation time)."""

    def summary(self) -> str:
        return (
            f"pool: {self.hits} hits (+{self.waited} waited for a warm-up) / {self.misses} misses, "
            f"saved {self.saved_seconds:.2f} s of session/new; "
            f"costs {self.pinned_sessions} warm sessions ({self.warming} warming) "
            f"pinning {self.pinned_mcp_processes} MCP processes, {self.warmup_tokens} warm-up tokens, "
            f"{self.invalidated} invalidated, {self.warmups_failed} failed warm-ups"
        )


@dataclass(eq=False)
class WarmPool:
    ops: PoolOps
    targets: dict[PoolKey, PoolTarget] = field(default_factory=dict)
    ready: dict[PoolKey, deque[Session]] = field(default_factory=dict)
    warming: dict[PoolKey, int] = field(default_factory=dict)
    cwd_epoch: dict[str, int] = field(default_factory=dict)
    """Bumped by each cwd change: a warm-up started under an older epoch is stale when it lands."""
    hits: int = 0
    """Conversations that got a ready warm session (no wait)."""
    waited: int = 0
    """Conversations that waited for a warm-up already under way (saving what it had done)."""
    misses: int = 0
    saved_seconds: float = 0.0
    warmups_started: int = 0
    warmups_failed: int = 0
    invalidated: int = 0
    claims: dict[PoolKey, int] = field(default_factory=dict)
    """Callers waiting for a warm-up in flight (each waits for one of them)."""
    stale_warming: int = 0
    """Warm-ups still in flight for a cwd that changed since they started (discarded on arrival)."""
    _changed: anyio.Event = field(default_factory=anyio.Event, repr=False)

    # -- configuration -------------------------------------------------------------------------------

    def set_target(
        self,
        key: PoolKey,
        count: int,
        mcp_servers: list[Any],
        warmup_prompt: str | list[dict[str, Any]] | None,
    ) -> None:
        if count < 0:
            raise ValueError(f"pool count must be >= 0, got {count}")
        target = self.targets.get(key)
        if target is None:
            self.targets[key] = PoolTarget(key, count, list(mcp_servers), warmup_prompt)
        else:
            target.count, target.failures, target.warmup_prompt = count, 0, warmup_prompt
        self.refill(key)

    # -- handing out ---------------------------------------------------------------------------------

    def take(self, key: PoolKey) -> Session | None:
        """A ready warm session for exactly this key, or None (a miss)."""
        session = self._pop_ready(key)
        if session is not None:
            self.hits += 1
            self.saved_seconds += session.new_latency
        elif key in self.targets:
            self.misses += 1
        return session

    async def claim(self, key: PoolKey) -> Session | None:
        """A ready warm session for this key; else one still warming up that nobody has claimed
        (it started before this call, so it is ready sooner than a cold ``session/new``); else None."""
        session = self._pop_ready(key)
        if session is None and self.warming.get(key, 0) > self.claims.get(key, 0):
            started = self.ops.now()
            self.claims[key] = self.claims.get(key, 0) + 1
            try:
                while session is None and self.warming.get(key, 0) >= self.claims[key]:
                    changed = self._changed
                    await changed.wait()
                    session = self._pop_ready(key)
            finally:
                self.claims[key] -= 1
            if session is not None:
                self.waited += 1
                self.saved_seconds += max(session.new_latency - (self.ops.now() - started), 0.0)
                return session
        if session is not None:
            self.hits += 1
            self.saved_seconds += session.new_latency
        elif key in self.targets:
            self.misses += 1
        return session

    def _pop_ready(self, key: PoolKey) -> Session | None:
        queue = self.ready.get(key)
        while queue:
            session = queue.popleft()
            if session.closed or session.broken is not None:
                continue
            self.refill(key)
            return session
        return None

    def pinned(self) -> list[Session]:
        return [s for queue in self.ready.values() for s in queue if not s.closed]

    # -- refilling -----------------------------------------------------------------------------------

    def refill(self, key: PoolKey) -> None:
        target = self.targets.get(key)
        if target is None or target.failures >= MAX_WARMUP_FAILURES:
            return
        missing = target.count - len(self.ready.get(key, ())) - self.warming.get(key, 0)
        for _ in range(max(missing, 0)):
            self.warming[key] = self.warming.get(key, 0) + 1
            self.warmups_started += 1
            self.ops.spawn(self._warm_one, target, self.cwd_epoch.get(key.cwd, 0))

    async def _warm_one(self, target: PoolTarget, epoch: int) -> None:
        key = target.key
        session: Session | None = None
        try:
            session = await self._make_warm(target, epoch)
        finally:
            if self.cwd_epoch.get(key.cwd, 0) == epoch:
                self.warming[key] -= 1
            else:
                self.stale_warming -= 1
            if session is not None:
                self.ready.setdefault(key, deque()).append(session)
            self._changed.set()
            self._changed = anyio.Event()
        self.refill(key)

    async def _make_warm(self, target: PoolTarget, epoch: int) -> Session | None:
        """One warm session for ``target``, or None (failed, or stale on arrival)."""
        ops = self.ops
        key = target.key
        session: Session | None = None
        try:
            session = await ops.new_session(key.cwd, target.mcp_servers, key.model)
            session.pool_key = key
            if target.warmup_prompt is not None:
                turn = ops.start_turn(session, target.warmup_prompt)
                await turn.result()
        except (AcpSimError, ConnectionClosed) as exc:
            target.failures += 1
            target.last_error = str(exc)
            self.warmups_failed += 1
            if session is not None:
                await ops.discard(session)
            return None
        target.failures = 0
        if self.cwd_epoch.get(key.cwd, 0) != epoch or self.targets.get(key) is not target:
            # Hazard prevented (cwd change): made for a cwd that changed while it was being created.
            self.invalidated += 1
            await ops.discard(session)
            return None
        return session

    async def wait_ready(self, key: PoolKey, count: int) -> None:
        """Until ``count`` warm sessions for ``key`` are ready (or warming stopped for this key)."""
        while len(self.ready.get(key, ())) < count:
            target = self.targets.get(key)
            if target is None or target.failures >= MAX_WARMUP_FAILURES:
                reason = target.last_error if target is not None else "no pool target"
                raise AcpSimError(f"pre-warming cwd {key.cwd} stopped: {reason}")
            if not self.warming.get(key):
                self.refill(key)
            await self._changed.wait()

    # -- invalidation --------------------------------------------------------------------------------

    def remove_ready(self, cwd: str) -> list[Session]:
        """Take every ready warm session made for ``cwd`` out of the pool (the caller closes them)."""
        removed: list[Session] = []
        for key, queue in self.ready.items():
            if key.cwd == cwd:
                removed.extend(queue)
                queue.clear()
        # Warm-ups in flight for this cwd are stale now: they no longer count towards the target
        # (replacements start at once) and are discarded when they arrive.
        for key in self.warming:
            if key.cwd == cwd:
                self.stale_warming += self.warming[key]
                self.warming[key] = 0
        self.cwd_epoch[cwd] = self.cwd_epoch.get(cwd, 0) + 1
        self.invalidated += len(removed)
        return removed

    def move_targets(self, old: str, new: str) -> list[PoolKey]:
        moved = []
        for key in [k for k in self.targets if k.cwd == old]:
            target = self.targets.pop(key)
            new_key = PoolKey(key.model, new, key.mcp)
            target.key = new_key
            self.targets[new_key] = target
            moved.append(new_key)
        return moved

    def forget_all(self) -> list[Session]:
        """The agent went away: every warm session died with it (phantoms cannot be resumed)."""
        removed = self.pinned()
        for queue in self.ready.values():
            queue.clear()
        return removed

    def refill_all(self) -> None:
        for key in list(self.targets):
            self.refill(key)

    # -- reporting -----------------------------------------------------------------------------------

    def report(self) -> PoolReport:
        pinned = self.pinned()
        return PoolReport(
            wanted=sum(t.count for t in self.targets.values()),
            pinned_sessions=len(pinned),
            warming=sum(self.warming.values()) + self.stale_warming,
            pinned_mcp_processes=sum(s.mcp_processes for s in pinned),
            warmup_tokens=self.ops.warmup_tokens(),
            warmups_started=self.warmups_started,
            warmups_failed=self.warmups_failed,
            invalidated=self.invalidated,
            hits=self.hits,
            waited=self.waited,
            misses=self.misses,
            saved_seconds=round(self.saved_seconds, 6),
        )
