"""Timelines of a run: one lane per session, what the agent sent next to what the bridge delivered.

A ``Timeline`` is plain data (lanes and events on the run's virtual clock); whoever has a run
builds one (``pytest_acp.report.timeline`` from a delivery log and the agents' traces) and renders it
here, in the terminal with rich (``render_rich``) or as one standalone HTML file (``render_html``:
inline SVG and CSS, no script, no external asset, so it opens offline and as a CI artifact).

In every lane three rows: the client's actions (open, prompt, cancel, close...), what the agent
*sent* for that session (from its ground-truth trace) and what the bridge *delivered* to its caller;
a line joins each chunk to its delivery. Faults and crashes are red, timeouts orange, and each
violated property is a red mark at the moment it was decided. Long quiet stretches are drawn
compressed (a break mark with the seconds skipped), so bursts of chunks stay readable.
"""

from __future__ import annotations

import html
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

EventKind = Literal[
    "client", "sent", "received", "delivered", "end", "fault", "timeout", "error", "violation", "agent"
]
"""``client``: an action of the test; ``sent`` / ``received``: the agent's side of the wire;
``delivered`` / ``end``: what the bridge handed its caller; ``fault`` (faults, crashes),
``timeout``, ``error``: marked; ``violation``: a broken property; ``agent``: agent-wide news."""
AGENT_LANE = "(agent)"
"""The lane of agent-wide events; no session can be named so (see acp_sim.scenario.SessionName)."""

# Which of a lane's three rows an event kind goes in.
ROW_OF: dict[str, int] = {
    "client": 0,
    "fault": 0,
    "violation": 0,
    "agent": 0,
    "sent": 1,
    "received": 1,
    "delivered": 2,
    "end": 2,
    "timeout": 2,
    "error": 2,
}
ROW_NAMES = ("client", "agent sent", "delivered")
# Order of kinds at the same instant: the client acts, the agent receives and sends, the bridge
# delivers; a violation is decided last.
RANK: dict[str, int] = {
    "client": 0,
    "fault": 0,
    "agent": 0,
    "received": 1,
    "sent": 2,
    "delivered": 3,
    "end": 3,
    "timeout": 3,
    "error": 3,
    "violation": 4,
}
COLORS: dict[str, str] = {
    "client": "#3b5bdb",
    "sent": "#0c8599",
    "received": "#868e96",
    "delivered": "#2b8a3e",
    "end": "#2b8a3e",
    "fault": "#e03131",
    "timeout": "#f08c00",
    "error": "#c2255c",
    "violation": "#e03131",
    "agent": "#495057",
}
RICH_STYLES: dict[str, str] = {
    "client": "bold blue",
    "sent": "cyan",
    "received": "bright_black",
    "delivered": "green",
    "end": "bold green",
    "fault": "bold red",
    "timeout": "bold dark_orange",
    "error": "bold magenta",
    "violation": "bold white on red",
    "agent": "bright_black",
}


@dataclass(frozen=True)
class Event:
    """Something that happened at ``t`` (virtual seconds since the run started) in ``lane``."""

    t: float
    lane: str
    kind: EventKind
    label: str
    turn: int | None = None
    detail: str = ""
    flag: Literal["missing", "foreign", "late"] | None = None
    """``missing``: sent, never delivered; ``foreign``: delivered in the wrong lane; ``late``."""
    key: str | None = None
    """Pairs a ``sent`` chunk with its ``delivered`` copy (the chunk's text)."""


@dataclass(frozen=True)
class Lane:
    name: str
    title: str = ""


@dataclass
class Timeline:
    title: str
    lanes: list[Lane]
    events: list[Event]
    subtitle: str = ""
    verdict: Literal["passed", "failed", "skipped"] | None = None
    notes: list[str] = field(default_factory=list)
    """Lines shown under the verdict (the failures)."""

    def lane_events(self, lane: str) -> list[Event]:
        return sorted((e for e in self.events if e.lane == lane), key=lambda e: (e.t, RANK.get(e.kind, 0)))

    @property
    def end(self) -> float:
        return max((e.t for e in self.events), default=0.0)


# -- terminal -------------------------------------------------------------------------------------------


def _cell(event: Event) -> Text:
    text = Text(event.label, style=RICH_STYLES.get(event.kind, ""))
    if event.turn is not None and event.kind in ("sent", "delivered", "end", "timeout", "error", "client"):
        text = Text.assemble((f"t{event.turn} ", "bright_black"), text)
    if event.flag == "missing":
        text.append("  not delivered", style="yellow")
    elif event.flag == "foreign":
        text.append("  FROM ANOTHER SESSION", style="bold red")
    elif event.flag == "late":
        text.append("  late", style="yellow")
    return text


def _rows(events: Sequence[Event]) -> list[tuple[float, list[Event | None]]]:
    """Table rows: one per event, except that a chunk delivered in the same instant it was sent
    shares the row of its ``sent`` event (sent and delivered side by side)."""
    rows: list[tuple[float, list[Event | None]]] = []
    for event in events:
        row = ROW_OF.get(event.kind, 0)
        if event.kind == "delivered" and event.key:
            match = next(
                (
                    cells
                    for t, cells in reversed(rows)
                    if t == event.t
                    and cells[1] is not None
                    and cells[1].key == event.key
                    and cells[2] is None
                ),
                None,
            )
            if match is not None:
                match[2] = event
                continue
        cells: list[Event | None] = [None, None, None]
        cells[row] = event
        rows.append((event.t, cells))
    return rows


def render_rich(timeline: Timeline, *, max_rows: int = 400) -> RenderableType:
    """One table per lane: time, the client's actions, what the agent sent, what was delivered."""
    parts: list[RenderableType] = []
    head = Text(timeline.title, style="bold")
    if timeline.subtitle:
        head.append(f"\n{timeline.subtitle}", style="bright_black")
    parts.append(head)
    for lane in timeline.lanes:
        events = timeline.lane_events(lane.name)
        if not events:
            continue
        table = Table(
            title=Text(lane.title or lane.name, style="bold"),
            title_justify="left",
            show_lines=False,
            expand=False,
            pad_edge=False,
        )
        table.add_column("t (s)", justify="right", style="bright_black", no_wrap=True)
        for name in ROW_NAMES:
            table.add_column(name, overflow="fold")
        rows = _rows(events)
        shown = rows if len(rows) <= max_rows else rows[: max_rows // 2] + rows[-max_rows // 2 :]
        for i, (t, cells) in enumerate(shown):
            if len(rows) > max_rows and i == max_rows // 2:
                table.add_row("...", Text(f"{len(rows) - max_rows} more rows", style="bright_black"), "", "")
            table.add_row(f"{t:.6f}", *(_cell(e) if e is not None else "" for e in cells))
        parts.append(table)
    if timeline.verdict is not None:
        style = {"passed": "bold green", "failed": "bold red", "skipped": "bold yellow"}[timeline.verdict]
        parts.append(Text(timeline.verdict.upper(), style=style))
    for note in timeline.notes:
        parts.append(Text(f"  {note}", style="red" if timeline.verdict == "failed" else ""))
    return Group(*parts)


def print_timeline(timeline: Timeline, console: Console | None = None) -> None:
    (console or Console()).print(render_rich(timeline))


# -- the time axis: quiet stretches compressed ----------------------------------------------------------


@dataclass
class Axis:
    """Maps virtual seconds to x pixels, linear within bursts, with long gaps cut to ``gap_px``."""

    times: Sequence[float]
    x0: float = 0.0
    scale: float = 60.0  # pixels per second inside a burst
    gap: float = 2.0  # seconds of quiet that get cut
    gap_px: float = 36.0
    breaks: list[tuple[float, float, float]] = field(default_factory=list)  # (x, from_t, to_t)
    _knots: list[tuple[float, float]] = field(default_factory=list)  # (t, x)

    def __post_init__(self) -> None:
        times = sorted(set(self.times)) or [0.0]
        x = self.x0
        self._knots = [(times[0], x)]
        for a, b in itertools.pairwise(times):
            if b - a > self.gap:
                x += self.gap_px
                self.breaks.append((x - self.gap_px / 2, a, b))
            else:
                x += (b - a) * self.scale
            self._knots.append((b, x))

    def __call__(self, t: float) -> float:
        knots = self._knots
        if t <= knots[0][0]:
            return knots[0][1]
        for (ta, xa), (tb, xb) in itertools.pairwise(knots):
            if ta <= t <= tb:
                return xa if tb == ta else xa + (t - ta) / (tb - ta) * (xb - xa)
        return knots[-1][1]

    @property
    def width(self) -> float:
        return self._knots[-1][1] - self.x0

    @classmethod
    def fit(cls, times: Sequence[float], *, x0: float, target: float = 1000.0) -> Axis:
        """A scale that puts the bursts in about ``target`` pixels (within sane bounds)."""
        unique = sorted(set(times)) or [0.0]
        span = unique[-1] - unique[0]
        gap = max(2.0, span / 40)
        busy = sum(b - a for a, b in itertools.pairwise(unique) if b - a <= gap)
        scale = max(8.0, min(400.0, target / busy)) if busy > 0 else 60.0
        return cls(unique, x0=x0, scale=scale, gap=gap)


# -- standalone HTML --------------------------------------------------------------------------------------

LANE_LABEL_W = 230.0
ROW_H = 22.0
LANE_GAP = 16.0
TOP = 46.0

CSS = """
body{font:13px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:18px;color:#212529}
body{background:#fff}
h1{font-size:18px;margin:0 0 2px}
.sub{color:#868e96;margin:0 0 10px}
.verdict{display:inline-block;padding:2px 10px;border-radius:4px;font-weight:600;color:#fff}
.passed{background:#2b8a3e}.failed{background:#e03131}.skipped{background:#f08c00}
.notes{margin:6px 0 12px;padding:0;list-style:none;font-size:12px}
.notes,table{font-family:ui-monospace,Menlo,Consolas,monospace}
.notes li{color:#c92a2a;margin:2px 0}
.legend span{display:inline-block;margin-right:14px}
.legend i{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:4px;vertical-align:-1px}
.chart{overflow-x:auto;border:1px solid #dee2e6;border-radius:6px;margin:10px 0}
svg text{font-family:system-ui,sans-serif;font-size:11px}
table{border-collapse:collapse;font-size:12px;margin:4px 0 14px}
td,th{padding:1px 8px;text-align:left;vertical-align:top;border-bottom:1px solid #f1f3f5}
th{background:#f8f9fa}
td.t{text-align:right;color:#868e96}
details summary{cursor:pointer;font-weight:600;margin:6px 0}
.flag{color:#c92a2a;font-weight:600}
"""
# The hatching of a cut (compressed) stretch of time.
CUT_PATTERN = (
    '<defs><pattern id="cut" width="6" height="6" patternUnits="userSpaceOnUse" '
    'patternTransform="rotate(45)">'
    '<rect width="6" height="6" fill="#f1f3f5"/>'
    '<line x1="0" y1="0" x2="0" y2="6" stroke="#ced4da" stroke-width="2"/></pattern></defs>'
)


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def _el(tag: str, body: str = "", /, **attrs: object) -> str:
    """An SVG or HTML element: ``class_`` is ``class``, ``stroke_width`` is ``stroke-width``; floats
    are written to a tenth of a pixel; ``body`` is already HTML."""
    parts = []
    for name, value in attrs.items():
        if value is None:
            continue
        text = f"{value:.1f}" if isinstance(value, float) else str(value)
        parts.append(f'{name.rstrip("_").replace("_", "-")}="{_esc(text)}"')
    head = " ".join([tag, *parts])
    return f"<{head}>{body}</{tag}>" if body else f"<{head}/>"


def _marker(kind: str, x: float, y: float, flag: str | None) -> str:
    color = COLORS.get(kind, "#495057")
    if kind in ("fault", "violation"):
        return _el(
            "path", d=f"M{x:.1f},{y - 7:.1f} L{x + 6:.1f},{y + 5:.1f} L{x - 6:.1f},{y + 5:.1f} Z", fill=color
        )
    if kind == "timeout":
        ring = _el("circle", cx=x, cy=y, r=6, fill="#fff", stroke=color, stroke_width=2.5)
        hands = _el(
            "path",
            d=f"M{x:.1f},{y - 3.5:.1f} V{y:.1f} H{x + 3:.1f}",
            stroke=color,
            stroke_width=1.5,
            fill="none",
        )
        return ring + hands
    if kind in ("end", "error"):
        return _el("rect", x=x - 4, y=y - 6, width=8, height=12, fill=color)
    if kind == "client":
        return _el(
            "rect", x=x - 4, y=y - 4, width=8, height=8, fill=color, transform=f"rotate(45 {x:.1f} {y:.1f})"
        )
    if flag == "missing":  # sent, never delivered: hollow
        return _el("circle", cx=x, cy=y, r=4, fill="#fff", stroke=color, stroke_width=1.5)
    if flag in ("foreign", "late"):
        return _el("circle", cx=x, cy=y, r=4, fill=color, stroke="#e03131", stroke_width=2)
    return _el("circle", cx=x, cy=y, r=4, fill=color)


def render_html(timeline: Timeline) -> str:
    """The whole page: header and verdict, an SVG chart (lanes x rows on a compressed time axis),
    then every lane's events as a table."""
    events = timeline.events
    axis = Axis.fit([0.0, *(e.t for e in events)], x0=LANE_LABEL_W + 14)
    width = LANE_LABEL_W + 14 + axis.width + 60
    lanes = [lane for lane in timeline.lanes if any(e.lane == lane.name for e in events)]
    lane_h = 3 * ROW_H + LANE_GAP
    height = TOP + len(lanes) * lane_h + 24
    bottom = height - 20
    svg: list[str] = [CUT_PATTERN]
    # time axis: where bursts start and end, round numbers inside; the cut stretches hatched
    for t in _ticks(axis):
        x = axis(t)
        svg.append(_el("line", x1=x, y1=TOP - 8, x2=x, y2=bottom, stroke="#f1f3f5"))
        svg.append(_el("text", f"{t:.6g}s", x=x, y=TOP - 12, text_anchor="middle", fill="#868e96"))
    for x, a, b in axis.breaks:
        tip = _el("title", _esc(f"{b - a:.3f} s without events ({a:.6g} s to {b:.6g} s), drawn compressed"))
        band = _el("rect", x=x - 6, y=TOP - 6, width=12, height=height - TOP - 14, fill="url(#cut)")
        label = _el("text", f"+{b - a:.3g}s", x=x, y=TOP - 26, text_anchor="middle", fill="#868e96")
        svg.append(_el("g", tip + band + label, class_="break"))
    rows_y: dict[tuple[str, int], float] = {}
    for i, lane in enumerate(lanes):
        y0 = TOP + i * lane_h
        svg.append(
            _el(
                "rect",
                x=0,
                y=y0,
                width=f"{width:.0f}",
                height=3 * ROW_H,
                fill="#f8f9fa" if i % 2 == 0 else "#fff",
            )
        )
        svg.append(_el("text", _esc(_clip(lane.name, 22)), x=8, y=y0 + 14, font_weight=600, fill="#212529"))
        if lane.title and lane.title != lane.name:
            title = _esc(_clip(lane.title.removeprefix(f"{lane.name}: "), 24)) + _el(
                "title", _esc(lane.title)
            )
            svg.append(_el("text", title, x=8, y=y0 + 30, fill="#868e96"))
        for row, name in enumerate(ROW_NAMES):
            y = y0 + row * ROW_H + ROW_H / 2
            rows_y[(lane.name, row)] = y
            svg.append(_el("text", name, x=LANE_LABEL_W, y=y + 4, text_anchor="end", fill="#adb5bd"))
            svg.append(_el("line", x1=axis.x0, y1=y, x2=width - 20, y2=y, stroke="#e9ecef"))
    # agent-wide faults and crashes cut across every lane
    for e in events:
        if e.lane == AGENT_LANE and e.kind == "fault":
            x = axis(e.t)
            tip = _el("title", _esc(f"{e.t:.6f} s  {e.label}"))
            svg.append(
                _el(
                    "line",
                    tip,
                    x1=x,
                    y1=TOP,
                    x2=x,
                    y2=bottom,
                    stroke=COLORS["fault"],
                    stroke_width=1.5,
                    stroke_dasharray="5 3",
                )
            )
    svg += _links(events, axis, rows_y)
    placed: dict[tuple[str, int], list[tuple[float, float, float]]] = {}  # label extents per lane row
    for e in events:
        row = ROW_OF.get(e.kind, 0)
        if (e.lane, row) not in rows_y:
            continue
        x, y = axis(e.t), rows_y[(e.lane, row)]
        tip = f"{e.t:.6f} s  " + (f"turn {e.turn}  " if e.turn is not None else "") + e.label
        if e.detail:
            tip += f"\n{e.detail}"
        if e.flag:
            tip += f"\n[{e.flag}]"
        svg.append(_el("g", _el("title", _esc(tip)) + _marker(e.kind, x, y, e.flag), class_=f"ev {e.kind}"))
        if e.kind in ("fault", "timeout", "violation", "error"):
            # the label above the marker, else below it, else only in the tooltip and the table
            label = _clip(e.label, 28)
            start, end = x + 8, x + 8 + 6.2 * len(label)
            taken = placed.setdefault((e.lane, row), [])
            for dy in (-6.0, 14.0):
                if all(end < a or start > b for a, b, d in taken if d == dy):
                    taken.append((start, end, dy))
                    svg.append(
                        _el("text", _esc(label), x=start, y=y + dy, fill=COLORS[e.kind], font_weight=600)
                    )
                    break
    chart = _el(
        "svg",
        "".join(svg),
        xmlns="http://www.w3.org/2000/svg",
        width=f"{width:.0f}",
        height=f"{height:.0f}",
        viewBox=f"0 0 {width:.0f} {height:.0f}",
        role="img",
        aria_label=timeline.title,
    )
    return _page(timeline, lanes, chart)


def _links(events: Sequence[Event], axis: Axis, rows_y: dict[tuple[str, int], float]) -> list[str]:
    """A line from each sent chunk to its delivery; a chunk delivered in the wrong lane is joined to
    where it was sent, in red."""
    sent_at: dict[tuple[str, str], Event] = {}
    sent_anywhere: dict[str, Event] = {}
    for e in events:
        if e.kind == "sent" and e.key:
            sent_at.setdefault((e.lane, e.key), e)
            sent_anywhere.setdefault(e.key, e)
    out = []
    for e in events:
        if e.kind != "delivered" or not e.key:
            continue
        source = sent_at.get((e.lane, e.key)) or (sent_anywhere.get(e.key) if e.flag == "foreign" else None)
        if source is None or (source.lane, 1) not in rows_y:
            continue
        ends = {
            "x1": axis(source.t),
            "y1": rows_y[(source.lane, 1)],
            "x2": axis(e.t),
            "y2": rows_y[(e.lane, 2)],
        }
        if e.flag:
            out.append(_el("line", class_="link", **ends, stroke="#e03131", stroke_width=1.5))
        else:
            out.append(_el("line", class_="link", **ends, stroke="#b2f2bb"))
    return out


def _page(timeline: Timeline, lanes: Sequence[Lane], chart: str) -> str:
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_esc(timeline.title)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>{_esc(timeline.title)}</h1>",
    ]
    if timeline.subtitle:
        out.append(f'<p class="sub">{_esc(timeline.subtitle)}</p>')
    if timeline.verdict is not None:
        out.append(f'<span class="verdict {timeline.verdict}">{timeline.verdict.upper()}</span>')
    if timeline.notes:
        out.append('<ul class="notes">' + "".join(f"<li>{_esc(n)}</li>" for n in timeline.notes) + "</ul>")
    legend = [
        ("client action", "client"),
        ("agent sent", "sent"),
        ("delivered", "delivered"),
        ("fault / crash", "fault"),
        ("timeout", "timeout"),
        ("error", "error"),
        ("violated property", "violation"),
    ]
    keys = "".join(f'<span><i style="background:{COLORS[k]}"></i>{_esc(n)}</span>' for n, k in legend)
    hollow = '<span><i style="background:#fff;border:1.5px solid #0c8599"></i>sent, never delivered</span>'
    out.append(f'<p class="legend">{keys}{hollow}</p>')
    out.append(f'<div class="chart">{chart}</div>')
    for lane in lanes:
        rows = []
        for e in timeline.lane_events(lane.name):
            flag = f' <span class="flag">[{_esc(e.flag)}]</span>' if e.flag else ""
            turn = f"t{e.turn} " if e.turn is not None else ""
            color = COLORS.get(e.kind, "#212529")
            cells = (
                f'<td class="t">{e.t:.6f}</td>'
                f'<td style="color:{color}">{_esc(ROW_NAMES[ROW_OF.get(e.kind, 0)])}</td>'
                f"<td>{_esc(turn + e.label)}{flag}</td>"
            )
            rows.append(f'<tr class="{e.kind}">{cells}</tr>')
        head = "<tr><th>t (s)</th><th>row</th><th>what</th></tr>"
        summary = f"<summary>{_esc(lane.title or lane.name)} ({len(rows)} events)</summary>"
        out.append(f"<details>{summary}<table>{head}{''.join(rows)}</table></details>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


NICE_STEPS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600)


def _ticks(axis: Axis, spacing: float = 70.0) -> list[float]:
    """Where bursts start and end, plus round numbers inside bursts, at least ``spacing`` px apart."""
    knots = [t for t, _ in axis._knots]
    step = next((s for s in NICE_STEPS if s * axis.scale >= spacing), NICE_STEPS[-1])
    candidates = {knots[0], knots[-1]}
    candidates |= {a for _, a, _ in axis.breaks} | {b for _, _, b in axis.breaks}
    # bursts: runs of knots not separated by a break
    starts = [knots[0]] + [b for _, _, b in axis.breaks]
    ends = [a for _, a, _ in axis.breaks] + [knots[-1]]
    for lo, hi in zip(starts, ends, strict=True):
        t = (int(lo / step) + 1) * step
        while t < hi:
            candidates.add(round(t, 6))
            t += step
    kept: list[float] = []
    for t in sorted(candidates):
        if not kept or axis(t) - axis(kept[-1]) >= spacing * 0.8:
            kept.append(t)
    return kept


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def write_html(timeline: Timeline, path: str) -> None:
    with open(path, "w", encoding="utf-8") as out:
        out.write(render_html(timeline))
