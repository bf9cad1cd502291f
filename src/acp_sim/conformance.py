"""The conformance report of an ACP client: one verdict per property, what the run exercised, tiers.

A data format like profiles and scenario files (``acp-sim schema report`` prints its JSON Schema),
so it lives beside them and imports nothing of pytest. ``pytest_acp`` fills it from a run; this
module only decides verdicts and tiers from counts, and renders the JSON, the standalone HTML page
and the terminal table. Everything here is a pure function of its inputs, so a rerun of the same
seed gives the same JSON byte for byte (``timing`` aside, which holds the only wall-clock figures).
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

REPORT_VERSION = 1

Verdict = Literal["pass", "fail", "accepted", "not_applicable", "not_exercised"]
TierName = Literal["none", "core", "robust", "complete"]

PROPERTIES: dict[str, str] = {
    "P1": "first chunk delivered",
    "P2": "integrity",
    "P3": "no cross-session bleed",
    "P4": "generation-scoped timeouts",
    "P5": "scoped interrupts",
    "P6": "no leaked processes or sessions",
    "P7": "pre-warm",
    "P8": "phantom sessions never resumed",
    "P9": "token accounting",
}

# Each tier adds properties to the one below it; a bridge meets a tier when every property of it
# (and of the tiers below) passes. "not applicable" does not meet a tier: a bridge that never
# pre-warms is not a complete multi-session bridge, however correct the rest is.
TIERS: tuple[tuple[TierName, tuple[str, ...]], ...] = (
    ("core", ("P1", "P2", "P3", "P5")),
    ("robust", ("P4", "P6", "P8")),
    ("complete", ("P7", "P9")),
)

# The hazards that give each property something to judge. A property whose hazards were provoked
# zero times in a run is "not exercised", never "pass": a pass on nothing means nothing.
HAZARDS: dict[str, tuple[str, ...]] = {
    "P1": ("first_chunk_same_tick",),
    "P2": ("turn_completed",),
    "P3": ("concurrent_turns", "slow_reader_while_streaming"),
    "P4": ("timeout_armed_during_other_turn", "turn_hung"),
    "P5": ("cancel_reached_agent", "cancel_races_first_chunk", "late_updates_after_cancel"),
    "P6": ("session_closed", "crash_mid_turn"),
    "P7": ("warm_open",),
    "P8": ("phantom_resume_possible",),
    "P9": ("usage_reported",),
}
"""Property -> the hazards (``pytest_acp.report.exercised.HAZARDS`` says what each is) that test it."""


class Counterexample(BaseModel):
    """One distinct failure of a property (property + cause), shrunk, and how to replay it."""

    model_config = ConfigDict(extra="forbid")

    cause: str = Field(
        description="the violation's message with ids and times blanked: what tells failures apart"
    )
    message: str = Field(description="the first violation as reported")
    example: int | None = Field(default=None, description="the example (from 1) it was first seen in")
    steps: list[str] = Field(default_factory=list, description="the shrunk steps")
    scenario: str | None = Field(default=None, description="the exported scenario file that replays it")
    replay: str | None = Field(default=None, description="a command that replays it")
    shrunk: bool = False


class PropertyResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    property: str
    name: str
    verdict: Verdict
    examples: int = Field(description="examples in which this property was judged")
    failed_examples: int = Field(default=0, description="examples with at least one unaccepted violation")
    hazards: dict[str, int] = Field(
        default_factory=dict, description="how often each of its hazards happened"
    )
    reason: str | None = Field(default=None, description="why not applicable / not exercised / accepted")
    counterexamples: list[Counterexample] = Field(default_factory=list)
    accepted: list[str] = Field(default_factory=list, description="baseline entries that matched")


class DeclaredLimit(BaseModel):
    """A limit the bridge declared (``BridgeCapabilities``), judged as such, and what it costs."""

    model_config = ConfigDict(extra="forbid")

    capability: str = Field(description="the capability as declared, e.g. stop_reasons=False")
    cost: str = Field(description="what the limit costs the bridge's users")


class Effect(BaseModel):
    """How much of what the client asked for took effect at the agent."""

    model_config = ConfigDict(extra="forbid")

    opens_requested: int = 0
    opens_effective: int = 0
    prompts_sent: int = 0
    prompts_reached: int = 0


class Timing(BaseModel):
    """The report's only wall-clock figures (left out when comparing two runs)."""

    model_config = ConfigDict(extra="forbid")

    started: str | None = None
    wall_seconds: float | None = None


class ConformanceRun(BaseModel):
    """Every property's verdict for one bridge on one backend from one seed."""

    model_config = ConfigDict(extra="forbid")

    bridge: str
    backend: str
    clock: Literal["virtual", "real"]
    seed: int
    examples: int
    tier: TierName
    properties: list[PropertyResult]
    bridge_raised: str | None = Field(
        default=None, description="an exception escaped the bridge: the run stopped there (its report)"
    )
    hazards: dict[str, int] = Field(default_factory=dict, description="every hazard counted in the run")
    hazard_help: dict[str, str] = Field(default_factory=dict, description="what each hazard name means")
    faults: dict[str, int] = Field(default_factory=dict, description="faults injected, by kind")
    effect: Effect = Field(default_factory=Effect)
    limits: list[DeclaredLimit] = Field(default_factory=list)
    stale_baseline: list[str] = Field(
        default_factory=list, description="baseline entries that matched nothing: remove them"
    )
    timing: Timing = Field(default_factory=Timing)

    @property
    def failed(self) -> bool:
        return self.bridge_raised is not None or any(p.verdict == "fail" for p in self.properties)


class ConformanceReport(BaseModel):
    """``conformance.json``: one run per bridge and backend judged in a pytest session."""

    model_config = ConfigDict(extra="forbid")

    version: int = REPORT_VERSION
    tool: str = "pytest-acp"
    runs: list[ConformanceRun] = Field(default_factory=list)

    @property
    def failed(self) -> bool:
        return any(run.failed for run in self.runs)

    def to_json(self) -> str:
        return self.model_dump_json(indent=2) + "\n"


def report_json_schema() -> dict:
    schema = ConformanceReport.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "pytest-acp conformance report"
    return schema


_QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")
_NUMBER = re.compile(r"[\w.]*\d[\w.]*")


def cause_of(prop: str, message: str) -> str:
    """What tells two failures of a property apart: the message without its texts, ids and times.

    ``delivered '[e3e70682 t1 c0] a b', which the agent never sent`` and the same with another chunk
    are one cause; "never sent" and "sent twice" are two.
    """
    return f"{prop}: " + _NUMBER.sub("#", _QUOTED.sub("'...'", message))


def verdict_for(
    prop: str,
    *,
    applicable: bool,
    hazards: Mapping[str, int],
    failed_examples: int,
    accepted: bool,
) -> Verdict:
    """One property's verdict: a failure beats everything; nothing provoked is not a pass."""
    if not applicable:
        return "not_applicable"
    if failed_examples:
        return "fail"
    if accepted:
        return "accepted"
    if not any(hazards.get(h, 0) for h in HAZARDS.get(prop, ())):
        return "not_exercised"
    return "pass"


def tier_of(results: Sequence[PropertyResult]) -> TierName:
    """The highest tier whose properties (and those of every tier below) all pass."""
    verdicts = {r.property: r.verdict for r in results}
    met: TierName = "none"
    for name, props in TIERS:
        if all(verdicts.get(p) == "pass" for p in props):
            met = name
        else:
            break
    return met


# -- rendering -------------------------------------------------------------------------------------


def terminal_table(run: ConformanceRun) -> str:
    """The short table the terminal summary ends with, for one run."""
    rows = [("property", "verdict", "examples", "hazard exercised", "counterexample")]
    for r in run.properties:
        exercised = sum(r.hazards.values())
        files = ", ".join(c.scenario or c.replay or "" for c in r.counterexamples if c.scenario or c.replay)
        verdict = r.verdict.replace("_", " ")
        rows.append((f"{r.property} {r.name}", verdict, str(r.examples), f"{exercised} times", files or "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [" | ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    clock = "virtual time" if run.clock == "virtual" else "real time"
    head = (
        f"acp conformance: {run.bridge} ({run.backend}, {clock}), seed {run.seed}, "
        f"{run.examples} examples: tier {run.tier}"
    )
    tail = [f"baseline entry that matched nothing (remove it): {s}" for s in run.stale_baseline]
    return "\n".join([head, *lines, *tail])


_VERDICT_COLOUR = {
    "pass": "#1a7f37",
    "fail": "#cf222e",
    "accepted": "#9a6700",
    "not_applicable": "#57606a",
    "not_exercised": "#8250df",
}


def _run_html(run: ConformanceRun) -> str:
    e = html.escape
    help_ = run.hazard_help
    clock = "virtual time" if run.clock == "virtual" else "real time"
    rows = []
    for r in run.properties:
        hazards = (
            "<br>".join(f"{e(help_.get(h, h))} (<code>{e(h)}</code>): {n}" for h, n in r.hazards.items())
            or "-"
        )
        details = [f"<p>{e(r.reason)}</p>"] if r.reason else []
        for c in r.counterexamples:
            steps = "".join(f"<li><code>{e(s)}</code></li>" for s in c.steps)
            replay = f"<p>replay: <code>{e(c.replay)}</code></p>" if c.replay else ""
            scenario = f"<p>scenario: <code>{e(c.scenario)}</code></p>" if c.scenario else ""
            shrunk = "shrunk" if c.shrunk else "as generated, not shrunk"
            details.append(
                f"<details><summary>{e(c.message)}</summary>{scenario}{replay}"
                f"<p>steps ({shrunk}):</p><ol>{steps}</ol></details>"
            )
        details.extend(f"<p>accepted by the baseline: {e(a)}</p>" for a in r.accepted)
        rows.append(
            f'<tr class="{r.verdict}"><td><b>{e(r.property)}</b> {e(r.name)}</td>'
            f'<td><span class="v" style="background:{_VERDICT_COLOUR[r.verdict]}">'
            f"{e(r.verdict.replace('_', ' '))}</span></td>"
            f"<td>{r.examples}</td><td>{hazards}</td><td>{''.join(details)}</td></tr>"
        )
    limits = "".join(f"<li><code>{e(x.capability)}</code>: {e(x.cost)}</li>" for x in run.limits)
    faults = ", ".join(f"{e(k)} x{n}" for k, n in run.faults.items()) or "none"
    eff = run.effect
    stale = "".join(f"<li>{e(s)}</li>" for s in run.stale_baseline)
    return (
        f'<section class="run"><h2>{e(run.bridge)} ({e(run.backend)}, {clock})</h2>'
        f'<p>seed {run.seed}, {run.examples} examples; tier met: <b class="tier">{e(run.tier)}</b></p>'
        "<table><tr><th>property</th><th>verdict</th><th>examples</th><th>hazards exercised</th>"
        f"<th>details</th></tr>{''.join(rows)}</table>"
        f"<p>opens that took effect: {eff.opens_effective} of {eff.opens_requested}; prompts that reached "
        f"the agent: {eff.prompts_reached} of {eff.prompts_sent}; faults injected: {faults}</p>"
        f"<h3>Declared limits</h3><ul>{limits or '<li>none</li>'}</ul>"
        + (f"<h3>Baseline entries that matched nothing</h3><ul>{stale}</ul>" if stale else "")
        + "</section>"
    )


def render_html(report: ConformanceReport) -> str:
    """A standalone page (no script, no external resource) with the same content as the JSON."""
    runs = "".join(_run_html(run) for run in report.runs) or "<p>no run was judged</p>"
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>ACP client conformance</title>'
        "<style>body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#1f2328}"
        "table{border-collapse:collapse;width:100%}"
        "td,th{border:1px solid #d0d7de;padding:6px;vertical-align:top;text-align:left}"
        ".v{color:#fff;border-radius:4px;padding:2px 8px;white-space:nowrap}code{font-size:12px}"
        f"</style></head><body><h1>ACP client conformance</h1>{runs}</body></html>\n"
    )


def write(report: ConformanceReport, directory: Path) -> tuple[Path, Path]:
    """Write ``conformance.json`` and ``conformance.html`` into ``directory``; return both paths."""
    directory.mkdir(parents=True, exist_ok=True)
    json_path = directory / "conformance.json"
    html_path = directory / "conformance.html"
    json_path.write_text(report.to_json(), encoding="utf-8")
    html_path.write_text(render_html(report), encoding="utf-8")
    return json_path, html_path


def load(path: Path) -> ConformanceReport:
    return ConformanceReport.model_validate(json.loads(path.read_text(encoding="utf-8")))
