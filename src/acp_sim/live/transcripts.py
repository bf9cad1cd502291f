"""The recorded transcripts of the real adapter, read back as trace events.

A transcript line is ``{"t", "agent_process", "dir": "client->agent"|"agent->client", "msg"}``
(see ``shared/reference/claude-code-adapter.md``). Feeding the messages through
``acp_sim.trace.Trace`` from the agent's side gives exactly what the tap would have recorded, one
trace per agent process, so recorded runs, live runs and simulated runs compare with one tool.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from acp_sim.trace import Trace, TraceEvent

RECORDED_DIR = Path(__file__).with_name("recorded")
"""The transcripts recorded from adapter 0.23.1 (see the README there), shipped with the package."""


class TranscriptLine(BaseModel):
    model_config = ConfigDict(extra="forbid")

    t: float
    agent_process: str
    dir: Literal["client->agent", "agent->client"]
    msg: dict[str, object]


def transcript_traces(lines: Iterable[str]) -> list[list[TraceEvent]]:
    """One list of trace events per agent process, in the order the processes appear."""
    traces: dict[str, Trace] = {}
    now = 0.0

    def clock() -> float:
        return now

    for raw in lines:
        if not raw.strip():
            continue
        line = TranscriptLine.model_validate_json(raw)
        trace = traces.get(line.agent_process)
        if trace is None:
            trace = traces[line.agent_process] = Trace(clock)
        now = line.t
        trace.on_message("recv" if line.dir == "client->agent" else "send", json.loads(json.dumps(line.msg)))
    return [trace.events for trace in traces.values()]


def load_transcript(path: str | Path) -> list[list[TraceEvent]]:
    return transcript_traces(Path(path).read_text(encoding="utf-8").splitlines())


def recorded_transcripts() -> dict[str, list[list[TraceEvent]]]:
    """Every recorded transcript by name (``cancel``, ``concurrent``, ``mcp``, ``phantom``)."""
    return {path.stem: load_transcript(path) for path in sorted(RECORDED_DIR.glob("*.jsonl"))}
