"""Properties of the orchestration patterns (``acp_sim.orchestrator.patterns``), judged from ground
truth: the agent's trace (what it received and answered) and the repository (what was merged).

- R1 race, no late loser output: nothing from a losing session reaches the caller after the winner
  was decided.
- R2 race, no loser keeps running: every losing session's turn was cancelled at the agent
  (``session/cancel`` received, then answered ``cancelled``); a loser still streaming, or one that
  ran to ``end_turn`` without a cancel, is flagged.
- F1 fan-out, each result collected exactly once, in prompt order.
- F2 fan-out, a failed session is reported: every prompt the agent failed (an error response, or no
  ``end_turn``) is in the results with its error or stop reason, not dropped.
- W1 worktree merge, no silent conflict: no file was changed by two of the branches merged since
  the base commit (read from git's merge commits).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from acp_sim.orchestrator.patterns import Collected, RaceResult
from acp_sim.orchestrator.worktree import git
from acp_sim.trace import TraceEvent
from pytest_acp.properties.violation import Violation

PATTERN_PROPERTIES = {
    "R1": "race: no loser output after the winner",
    "R2": "race: no loser keeps running",
    "F1": "fan-out: every result collected exactly once",
    "F2": "fan-out: failed sessions reported",
    "W1": "worktree merge: no conflict merged silently",
}


@dataclass(frozen=True)
class PatternViolation(Violation):
    @property
    def title(self) -> str:
        return f"{self.property} {PATTERN_PROPERTIES.get(self.property, '')}".strip()


def _prompt_text(message: dict[str, Any] | None) -> str:
    params = (message or {}).get("params") or {}
    return "".join(b.get("text", "") for b in params.get("prompt", []) if isinstance(b, dict))


@dataclass
class _AgentPrompt:
    session: str
    text: str
    request_id: Any
    response: dict[str, Any] | None = None
    cancel_seen: bool = False


def _prompts(events: Iterable[TraceEvent]) -> list[_AgentPrompt]:
    """Each ``session/prompt`` the agent received, with its response and whether a cancel came first."""
    prompts: list[_AgentPrompt] = []
    open_by_id: dict[Any, _AgentPrompt] = {}
    for ev in events:
        if ev.method == "session/prompt" and ev.kind == "recv" and ev.message and "params" in ev.message:
            p = _AgentPrompt(ev.session or "", _prompt_text(ev.message), ev.id)
            prompts.append(p)
            open_by_id[ev.id] = p
        elif ev.method == "session/prompt" and ev.kind == "send" and ev.id in open_by_id:
            open_by_id.pop(ev.id).response = ev.message
        elif ev.method == "session/cancel" and ev.kind == "recv":
            for p in open_by_id.values():
                if p.session == ev.session:
                    p.cancel_seen = True
    return prompts


def check_race(result: RaceResult, events: Sequence[TraceEvent]) -> list[Violation]:
    out: list[Violation] = []
    if result.winner is None or result.won_at is None:
        return out
    for d in result.delivered:
        if d.session is not result.winner and d.t > result.won_at:
            out.append(
                PatternViolation(
                    "R1",
                    f"{d.update.kind} {d.update.text!r} of loser {d.session.label} delivered "
                    f"{d.t - result.won_at:g} s after {result.winner.label} won",
                    key=d.session.label,
                    t=d.t,
                    session=d.session.id,
                )
            )
    prompts = _prompts(events)
    for loser in result.losers:
        ids = set(loser.agent_ids) | {loser.id}
        for p in (p for p in prompts if p.session in ids):
            if p.response is None:
                out.append(
                    PatternViolation(
                        "R2",
                        f"loser {loser.label}'s turn is still running",
                        key=loser.label,
                        session=p.session,
                    )
                )
                continue
            stop = (p.response.get("result") or {}).get("stopReason")
            if stop != "cancelled" or not p.cancel_seen:
                out.append(
                    PatternViolation(
                        "R2",
                        f"loser {loser.label}'s turn ended {stop or 'with an error'} without being cancelled",
                        key=loser.label,
                        session=p.session,
                    )
                )
    return out


def check_fan_out(
    prompts: Sequence[str], results: Sequence[Collected], events: Sequence[TraceEvent]
) -> list[Violation]:
    out: list[Violation] = []
    got = [r.prompt for r in results]
    for i, prompt in enumerate(prompts):
        n = got.count(prompt)
        if n != 1:
            out.append(PatternViolation("F1", f"prompt {i} ({prompt!r}) collected {n} times", key=str(i)))
    if got != [p for p in prompts if p in got]:
        out.append(PatternViolation("F1", "results are not in prompt order"))
    by_prompt = {r.prompt: r for r in results}
    for p in _prompts(events):
        response = p.response or {}
        failed = "error" in response or (response.get("result") or {}).get("stopReason") != "end_turn"
        if not failed:
            continue
        match = next((prompt for prompt in prompts if prompt and prompt in p.text), None)
        if match is None:
            continue
        r = by_prompt.get(match)
        if r is None:
            out.append(
                PatternViolation(
                    "F2", f"the failed session of {match!r} was dropped, not reported", session=p.session
                )
            )
        elif r.ok:
            out.append(
                PatternViolation(
                    "F2", f"the failed session of {match!r} was reported as a success", session=p.session
                )
            )
    return out


def check_merge(repo: str | Path, base_commit: str) -> list[Violation]:
    """W1 from git alone: the files each merge commit since ``base_commit`` brought in."""
    merges = git(repo, "rev-list", "--merges", "--reverse", f"{base_commit}..HEAD").split()
    owners: dict[str, list[str]] = {}
    for merge in merges:
        parents = git(repo, "rev-list", "--parents", "-n", "1", merge).split()[1:]
        if len(parents) < 2:
            continue
        base = git(repo, "merge-base", parents[0], parents[1])
        for path in git(repo, "diff", "--name-only", base, parents[1]).splitlines():
            owners.setdefault(path, []).append(merge[:8])
    return [
        PatternViolation("W1", f"{path} was changed by {len(commits)} merged branches ({', '.join(commits)})")
        for path, commits in sorted(owners.items())
        if len(commits) > 1
    ]


__all__ = ["PATTERN_PROPERTIES", "PatternViolation", "check_fan_out", "check_merge", "check_race"]
