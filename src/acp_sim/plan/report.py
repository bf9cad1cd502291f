"""The plan's outputs: a text table with the rubric and verdict, and a standalone HTML page whose
charts are inline SVG (no scripts, no external assets)."""

from __future__ import annotations

import html
import math
from dataclasses import dataclass

from acp_sim.plan.rubric import Verdict, fair_baseline, judge
from acp_sim.plan.simulate import NAIVE, TERMS, OptionResult, multiplier, simulate
from acp_sim.plan.workload import Workload

COLUMNS = (
    "option",
    "wall-clock s",
    "tokens",
    "x tokens",
    "cost USD",
    "x cost",
    "cache writes",
    "cache reads",
    "peak processes",
    "peak memory MB",
    "start-up hidden s",
)
FRESH_CONTEXT = {"compact": "compaction, where it costs less than the context it drops", "clear": "a clear"}
PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f")


@dataclass
class Plan:
    workload: Workload
    results: list[OptionResult]
    verdict: Verdict

    @property
    def baseline(self) -> OptionResult:
        """The fair single session: every multiplier is against it."""
        return fair_baseline(self.results)

    @property
    def naive(self) -> OptionResult:
        return next(r for r in self.results if r.spec.agents == 1 and r.spec.single == NAIVE)

    def rows(self) -> list[tuple[str, ...]]:
        one = self.baseline
        return [
            (
                r.label,
                f"{r.wall_clock:.1f}",
                f"{r.tokens:,}",
                f"{multiplier(r, one):.2f}",
                f"{r.cost:.4f}",
                f"{r.cost / one.cost:.2f}" if one.cost else "-",
                f"{r.usage.get('cachedWriteTokens', 0):,}",
                f"{r.usage.get('cachedReadTokens', 0):,}",
                str(r.peak_processes),
                f"{r.peak_memory_mb:,.0f}",
                f"{r.startup_hidden:.1f}",
            )
            for r in self.results
        ]

    def cache_notes(self) -> list[str]:
        """Options whose tokens and cost move in opposite directions against the fair baseline, and
        why: the cache. A cache write costs ``cache_write_price``, a read ``cache_read_price``."""
        one, wl = self.baseline, self.workload
        notes = []
        for r in self.results:
            if r is one or not one.tokens or not one.cost:
                continue
            x_tokens, x_cost = r.tokens / one.tokens, r.cost / one.cost
            if (x_tokens - 1) * (x_cost - 1) >= 0 or round(x_tokens, 2) == round(x_cost, 2):
                continue
            w, rd = r.usage.get("cachedWriteTokens", 0), r.usage.get("cachedReadTokens", 0)
            w0, rd0 = one.usage.get("cachedWriteTokens", 0), one.usage.get("cachedReadTokens", 0)
            direction = "fewer tokens but more cost" if x_tokens < 1 else "more tokens but less cost"
            notes.append(
                f"{r.label}: {direction} ({x_tokens:.2f}x tokens, {x_cost:.2f}x cost): it writes "
                f"{w:,} tokens to the cache (at {wl.cache_write_price:g} USD/Mtok) and reads {rd:,} "
                f"(at {wl.cache_read_price:g}), one session (fair) writes {w0:,} and reads {rd0:,}"
            )
        return notes

    def term_rows(self) -> list[tuple[str, ...]]:
        one = self.baseline
        return [
            (r.label, *(f"{r.terms.get(t, 0):,}" for t in TERMS), f"{multiplier(r, one):.2f}")
            for r in self.results
        ]


def make_plan(workload: Workload, *, backend: str = "trio") -> Plan:
    results = simulate(workload, backend=backend)  # type: ignore[arg-type]
    return Plan(workload, results, judge(workload, results))


def text_table(plan: Plan) -> str:
    rows = [COLUMNS, *plan.rows()]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]

    def line(row: tuple[str, ...]) -> str:
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]
        return "| " + " | ".join(cells) + " |"

    sep = (
        "|"
        + "|".join("-" * (widths[0] + 2) if i == 0 else "-" * (w + 1) + ":" for i, w in enumerate(widths))
        + "|"
    )
    one, naive = plan.baseline, plan.naive
    out = [f"plan for {plan.workload.name}: {len(plan.workload.tasks)} tasks", ""]
    out += [
        f"baseline, one session (fair): {one.wall_clock:.1f} s, {one.tokens:,} tokens, {one.cost:.4f} USD "
        f"(between independent tasks: {FRESH_CONTEXT[plan.workload.between_tasks]})",
        f"naive, one session accumulating everything: {naive.wall_clock:.1f} s, {naive.tokens:,} tokens "
        f"({multiplier(naive, one):.2f}x), {naive.cost:.4f} USD",
        "x tokens and x cost are against the fair baseline",
        "",
        line(rows[0]),
        sep,
    ]
    out += [line(row) for row in rows[1:]]
    term_rows = [("option", *TERMS, "x tokens"), *plan.term_rows()]
    term_widths = [max(len(row[i]) for row in term_rows) for i in range(len(term_rows[0]))]
    out += ["", "tokens by term of the model:"]
    for row in term_rows:
        cells = [row[0].ljust(term_widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], term_widths[1:], strict=True)
        ]
        out.append("  " + "  ".join(cells))
    notes = plan.cache_notes()
    if notes:
        out += ["", "tokens and cost apart:"] + [f"  {n}" for n in notes]
    out += ["", "rubric:"]
    for answer in plan.verdict.answers:
        out.append(f"  {answer.question:<32} {'yes' if answer.yes else 'no':<4} {answer.why}")
    out += ["", f"verdict: {plan.verdict.summary}"]
    return "\n".join(out)


# -- charts -------------------------------------------------------------------------------------------


def _nice(value: float) -> float:
    """A round upper bound for an axis."""
    if value <= 0:
        return 1.0
    step = 10 ** len(str(int(value))) / 10
    for m in (1, 2, 2.5, 5, 10):
        if value <= m * step:
            return m * step
    return 10 * step


def clusters(points: list[tuple[float, float]], radius: float = 14.0) -> list[list[int]]:
    """Indices of points drawn on top of each other (within ``radius`` pixels), in order."""
    groups: list[list[int]] = []
    for i, (px, py) in enumerate(points):
        for group in groups:
            gx, gy = points[group[0]]
            if abs(px - gx) <= radius and abs(py - gy) <= radius:
                group.append(i)
                break
        else:
            groups.append([i])
    return groups


def scatter_svg(plan: Plan, width: int = 800, height: int = 400) -> str:
    """Wall-clock (x) against tokens (y), one point per option, numbered; options whose points
    coincide share one point and one label listing their numbers (the legend names them)."""
    left, right, top, bottom = 80, 300, 30, 50
    xmax = _nice(max(r.wall_clock for r in plan.results))
    ymax = _nice(max(r.tokens for r in plan.results))
    pw, ph = width - left - right, height - top - bottom

    def x(v: float) -> float:
        return left + pw * v / xmax

    def y(v: float) -> float:
        return top + ph * (1 - v / ymax)

    parts = [_axes(left, top, pw, ph, xmax, ymax, "wall-clock (s)", "tokens")]
    points = [(x(r.wall_clock), y(r.tokens)) for r in plan.results]
    for group in clusters(points):
        cx, cy = points[group[0]]
        for n, i in enumerate(group):  # coinciding points as concentric rings, so each colour shows
            color = PALETTE[i % len(PALETTE)]
            radius = 6 + 3 * (len(group) - 1 - n)
            parts.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="{radius}" fill="{color}" stroke="#fff"/>')
        label = ", ".join(str(i + 1) for i in group)
        parts.append(
            f'<text x="{cx + 10 + 3 * len(group):.1f}" y="{cy - 8:.1f}" font-size="11">{label}</text>'
        )
    for i, r in enumerate(plan.results):
        color = PALETTE[i % len(PALETTE)]
        ly = top + 14 + 18 * i
        parts.append(f'<circle cx="{left + pw + 20}" cy="{ly - 4}" r="5" fill="{color}"/>')
        parts.append(
            f'<text x="{left + pw + 30}" y="{ly}" font-size="12">{i + 1} {html.escape(r.label)}</text>'
        )
    return _svg(width, height, "Wall-clock vs tokens per option", parts)


TERM_COLORS = {
    "prefix": "#4e79a7",
    "exploration": "#f28e2b",
    "work": "#59a14f",
    "lead": "#e15759",
    "retries": "#b07aa1",
    "compaction": "#9c755f",
}


def terms_svg(plan: Plan, width: int = 800) -> str:
    """One horizontal bar per option, its tokens split into the model's terms, with its multiplier
    over the fair single session at the end: where the multiplier comes from."""
    # room for the longest option name (~7 px per character at 12 px)
    left, right, top, bar, gap = 16 + 7 * max(len(r.label) for r in plan.results), 70, 56, 18, 8
    height = top + len(plan.results) * (bar + gap) + 50
    pw = width - left - right
    xmax = _nice(max(r.tokens for r in plan.results))
    one = plan.baseline
    parts = []
    for k, term in enumerate(TERMS):  # the legend, one row above the bars
        lx = 20 + k * 125
        parts.append(f'<rect x="{lx}" y="30" width="12" height="12" fill="{TERM_COLORS[term]}"/>')
        parts.append(f'<text x="{lx + 16}" y="40" font-size="12">{term}</text>')
    for i, r in enumerate(plan.results):
        by = top + i * (bar + gap)
        name = html.escape(r.label)
        parts.append(
            f'<text x="{left - 8}" y="{by + bar - 5}" font-size="12" text-anchor="end">{name}</text>'
        )
        bx = float(left)
        for term in TERMS:
            w = pw * r.terms.get(term, 0) / xmax
            if w > 0:
                parts.append(
                    f'<rect x="{bx:.1f}" y="{by}" width="{w:.1f}" height="{bar}" fill="{TERM_COLORS[term]}">'
                    f"<title>{html.escape(r.label)}: {term} {r.terms[term]:,} tokens</title></rect>"
                )
                bx += w
        parts.append(
            f'<text x="{bx + 6:.1f}" y="{by + bar - 5}" font-size="12">{multiplier(r, one):.2f}x</text>'
        )
    axis_y = top + len(plan.results) * (bar + gap)
    parts.append(f'<line x1="{left}" y1="{axis_y}" x2="{left + pw}" y2="{axis_y}" stroke="#999"/>')
    for k in range(6):
        px = left + pw * k / 5
        tick = f"{xmax * k / 5:,.0f}"
        parts.append(
            f'<text x="{px:.1f}" y="{axis_y + 16}" font-size="11" text-anchor="middle">{tick}</text>'
        )
    parts.append(
        f'<text x="{left + pw / 2}" y="{axis_y + 36}" font-size="12" text-anchor="middle">tokens '
        "(x: multiplier over one session, fair)</text>"
    )
    return _svg(width, height, "Tokens by term of the model", parts)


def timeline_svg(plan: Plan, width: int = 720, height: int = 400) -> str:
    """Processes (adapter + sessions + MCP) over time, a step line per option."""
    left, right, top, bottom = 80, 250, 30, 50
    tmin = min(min(s.t for s in r.timeline) for r in plan.results)
    tmax = _nice(max(max(s.t for s in r.timeline) for r in plan.results))
    tmin = min(tmin, 0.0)
    pmax = _nice(max(r.peak_processes for r in plan.results))
    pw, ph = width - left - right, height - top - bottom

    def x(v: float) -> float:
        return left + pw * (v - tmin) / (tmax - tmin)

    def y(v: float) -> float:
        return top + ph * (1 - v / pmax)

    parts = [_axes(left, top, pw, ph, tmax, pmax, "time since the work arrived (s)", "processes", xmin=tmin)]
    for i, r in enumerate(plan.results):
        color = PALETTE[i % len(PALETTE)]
        points: list[str] = []
        last = None
        for s in sorted(r.timeline, key=lambda s: s.t):
            if last is not None:
                points.append(f"{x(s.t):.1f},{y(last):.1f}")
            points.append(f"{x(s.t):.1f},{y(s.processes):.1f}")
            last = s.processes
        end = max(s.t for s in r.timeline)
        points.append(f"{x(end):.1f},{y(last or 0):.1f}")
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{" ".join(points)}"/>')
        ly = top + 14 + 18 * i
        parts.append(f'<rect x="{left + pw + 14}" y="{ly - 9}" width="12" height="4" fill="{color}"/>')
        parts.append(f'<text x="{left + pw + 30}" y="{ly}" font-size="12">{html.escape(r.label)}</text>')
    return _svg(width, height, "Processes over time", parts)


def _axes(
    left: float, top: float, pw: float, ph: float, xmax: float, ymax: float, xlabel: str, ylabel: str,
    *, xmin: float = 0.0,
) -> str:  # fmt: skip
    out = [
        f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>',
    ]
    for vx in x_ticks(xmin, xmax):
        px = left + pw * (vx - xmin) / (xmax - xmin)
        out.append(f'<line x1="{px:.1f}" y1="{top + ph}" x2="{px:.1f}" y2="{top + ph + 5}" stroke="#999"/>')
        out.append(
            f'<text x="{px:.1f}" y="{top + ph + 18}" font-size="11" text-anchor="middle">{vx:,.0f}</text>'
        )
    for k in range(6):
        vy = ymax * k / 5
        py = top + ph * (1 - k / 5)
        out.append(f'<line x1="{left - 5}" y1="{py:.1f}" x2="{left}" y2="{py:.1f}" stroke="#999"/>')
        out.append(f'<text x="{left - 8}" y="{py + 4:.1f}" font-size="11" text-anchor="end">{vy:,.0f}</text>')
    out.append(
        f'<text x="{left + pw / 2}" y="{top + ph + 38}" font-size="12" text-anchor="middle">{xlabel}</text>'
    )
    out.append(
        f'<text x="18" y="{top + ph / 2}" font-size="12" text-anchor="middle" '
        f'transform="rotate(-90 18 {top + ph / 2})">{ylabel}</text>'
    )
    return "\n".join(out)


def x_ticks(xmin: float, xmax: float) -> list[float]:
    """Tick values at round steps (fifths of the round bound ``xmax``) from the first at or after
    ``xmin``: an axis that starts before zero (sessions pre-warmed before the work arrived) still
    reads 0, 200, 400 rather than -4, 197, 397."""
    step = xmax / 5 if xmax > 0 else 1.0
    first = math.ceil(xmin / step - 1e-9)
    return [k * step for k in range(first, 6)]


def _svg(width: int, height: int, title: str, parts: list[str]) -> str:
    body = "\n".join(parts)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" role="img" '
        f'aria-label="{html.escape(title)}">\n'
        f'<text x="{width / 2}" y="18" font-size="14" font-weight="bold" text-anchor="middle">'
        f"{html.escape(title)}</text>\n{body}\n</svg>"
    )


def html_page(plan: Plan) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS)
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in plan.rows()
    )
    answers = "".join(
        f"<tr><td>{html.escape(a.question)}</td><td><b>{'yes' if a.yes else 'no'}</b></td>"
        f"<td>{html.escape(a.why)}</td></tr>"
        for a in plan.verdict.answers
    )
    name = html.escape(plan.workload.name)
    one, naive = plan.baseline, plan.naive
    notes = "".join(f"<p>{html.escape(n)}</p>" for n in plan.cache_notes())
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>acp-sim plan: {name}</title>
<style>
body {{ font-family: sans-serif; margin: 24px; color: #222; }}
table {{ border-collapse: collapse; margin: 12px 0; }}
td, th {{ border: 1px solid #ccc; padding: 4px 8px; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }}
.charts {{ display: flex; flex-wrap: wrap; gap: 16px; }}
</style></head>
<body>
<h1>acp-sim plan: {name}</h1>
<p>{len(plan.workload.tasks)} tasks, simulated on virtual time (simulated agent + reference orchestrator).
Baseline: one session (fair), {one.wall_clock:.1f} s, {one.tokens:,} tokens, a fresh context between
independent tasks; the naive session accumulating everything: {naive.wall_clock:.1f} s,
{naive.tokens:,} tokens ({multiplier(naive, one):.2f}x). Multipliers are against the fair baseline.</p>
<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>
{notes}
<h2>Rubric</h2>
<table><tbody>{answers}</tbody></table>
<p><b>Verdict:</b> {html.escape(plan.verdict.summary)}</p>
<div class="charts">
{scatter_svg(plan)}
{terms_svg(plan)}
{timeline_svg(plan)}
</div>
</body></html>
"""
