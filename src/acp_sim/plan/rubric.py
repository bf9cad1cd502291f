"""The rubric of the field notes, answered from a workload and its simulated options.

Four questions decide whether N agents pay off over one session:

1. Can the work be split without shared files? (No file touched by two tasks that may run at once;
   and more than one task, not all of them in one ``after`` chain.)
2. Is wall-clock the constraint? (Declared with ``constraint``, or one session misses ``deadline_seconds``.)
3. Can the ~4 s start-up be amortized? (It is at most ``amortize_ratio`` of the work of the
   least-loaded busy agent of the fastest cold N-agent option, or sessions can be pre-warmed
   before the work arrives.)
4. Is there a merge point? (Declared: an explicit place where the results are combined.)

The verdict is "N agents" only when all four are yes and an N-agent option finishes before the
fair single session (``simulate``: fresh context between independent tasks), picking the fastest
N-agent option allowed (pre-warmed ones only when ``prewarm`` is possible; ties go to fewer
tokens); otherwise "one session", with the questions answered no as the reasons. Multipliers are
against the fair single session.
"""

from __future__ import annotations

from dataclasses import dataclass

from acp_sim.plan.simulate import FAIR, OptionResult
from acp_sim.plan.workload import Workload


@dataclass(frozen=True)
class Answer:
    question: str
    yes: bool
    why: str


@dataclass(frozen=True)
class Verdict:
    answers: tuple[Answer, Answer, Answer, Answer]
    choice: OptionResult
    """The recommended option (one session, or the best N-agent option)."""
    summary: str

    @property
    def parallel(self) -> bool:
        return self.choice.spec.agents > 1


def allowed(workload: Workload, results: list[OptionResult]) -> list[OptionResult]:
    """N-agent options this workload could actually run (pre-warm only if it can pre-warm)."""
    return [r for r in results if r.spec.agents > 1 and (workload.prewarm or not r.spec.prewarm)]


def best_parallel(workload: Workload, results: list[OptionResult]) -> OptionResult | None:
    candidates = allowed(workload, results)
    return min(candidates, key=lambda r: (r.wall_clock, r.tokens, r.spec.agents)) if candidates else None


def fair_baseline(results: list[OptionResult]) -> OptionResult:
    return next(r for r in results if r.spec.agents == 1 and r.spec.single == FAIR)


def split_answer(workload: Workload) -> Answer:
    shared = workload.shared_files()
    names = [t.name for t in workload.tasks]
    if shared:
        why = "; ".join(f"{path}: {', '.join(tasks)}" for path, tasks in sorted(shared.items()))
        return Answer("split without shared files?", False, why)
    if len(names) == 1:
        return Answer("split without shared files?", False, f"one task ({names[0]}): nothing to split")
    if all(workload.ordered(a, b) for i, a in enumerate(names) for b in names[i + 1 :]):
        chain = " -> ".join(workload.tasks[i].name for i in workload.topological())
        return Answer("split without shared files?", False, f"every task waits for another (after: {chain})")
    return Answer("split without shared files?", True, "no file is touched by two tasks that may run at once")


def judge(workload: Workload, results: list[OptionResult]) -> Verdict:
    one = fair_baseline(results)
    best = best_parallel(workload, results)
    split = split_answer(workload)

    if workload.constraint is not None:
        wall = Answer(
            "is wall-clock the constraint?",
            workload.constraint == "wall_clock",
            f"declared: {workload.constraint.replace('_', '-')}",
        )
    elif workload.deadline_seconds is not None:
        late = one.wall_clock > workload.deadline_seconds
        wall = Answer(
            "is wall-clock the constraint?",
            late,
            f"one session (fair) takes {one.wall_clock:g} s, the deadline is {workload.deadline_seconds:g} s",
        )
    else:
        wall = Answer("is wall-clock the constraint?", False, "no constraint or deadline given")

    startup = workload.startup_seconds
    cold = [r for r in results if r.spec.agents > 1 and not r.spec.prewarm]
    fastest_cold = min(cold, key=lambda r: (r.wall_clock, r.tokens)) if cold else None
    least = min((b for b in fastest_cold.busy if b > 0), default=0.0) if fastest_cold else 0.0
    by_work = least > 0 and startup <= workload.amortize_ratio * least
    if by_work:
        why = f"{startup:g} s start-up <= {workload.amortize_ratio:g} x {least:g} s of work per agent"
    elif workload.prewarm:
        why = f"pre-warmed before the work arrives ({startup:g} s hidden per session)"
    else:
        why = (
            f"{startup:g} s start-up > {workload.amortize_ratio:g} x {least:g} s of work per agent, "
            "no pre-warm"
        )
    amortized = Answer("can the start-up be amortized?", by_work or workload.prewarm, why)

    merge = Answer(
        "is there a merge point?",
        workload.merge_point,
        "declared" if workload.merge_point else "declared: none (results are not combined)",
    )

    answers = (split, wall, amortized, merge)
    if all(a.yes for a in answers) and best is not None and best.wall_clock < one.wall_clock:
        summary = (
            f"{best.label}: {best.wall_clock:.1f} s instead of {one.wall_clock:.1f} s for "
            f"{best.tokens / one.tokens:.2f}x the tokens and {best.cost / one.cost:.2f}x the cost "
            "of one session (fair)"
        )
        return Verdict(answers, best, summary)
    reasons = [f"{a.question.rstrip('?')}: no ({a.why})" for a in answers if not a.yes]
    if best is not None and best.wall_clock >= one.wall_clock:
        # the table also shows pre-warmed options this workload cannot run: say they were left out
        fastest = "the fastest" if workload.prewarm else "the fastest without pre-warm"
        reasons.append(
            f"no N-agent option is faster: {fastest}, {best.label}, takes {best.wall_clock:.1f} s, "
            f"one session (fair) {one.wall_clock:.1f} s"
        )
    if not reasons:
        reasons = ["no N-agent option is faster"]
    return Verdict(answers, one, "one session; " + "; ".join(reasons))
