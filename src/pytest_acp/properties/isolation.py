"""Shared MCP isolation: which sessions saw state another session left in a stateful MCP server.

One HTTP MCP process for every session (``McpManager(sharing="share_http")``) saves M x (N-1)
processes, but a server with state (a browser with a current page, a database connection with a
selected schema) then carries one session's state into the next. The simulated agent records every
stateful tool call (``mcp_state`` in its trace: op, value, and for a read the session that wrote
what it read), so this is judged on ground truth alone:

- ``observations`` lists each read of a value another session wrote (the report: reader, writer,
  server, when);
- ``check_isolation`` turns them into violations, for a test (or a scenario file with
  ``expect: {mcp_isolated: true}``) that declares its sessions must not see each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pytest_acp.properties.truth import InstanceTrace
from pytest_acp.properties.violation import Violation

ISOLATION = "isolation"


@dataclass(frozen=True)
class Observation:
    """Session ``reader`` read ``value``, which session ``writer`` had left in server ``server``."""

    instance: int
    reader: str
    writer: str
    server: str
    url: str | None
    value: str
    t: float

    def __str__(self) -> str:
        via = f" at {self.url}" if self.url else ""
        return (
            f"session {self.reader[:8]} read {self.value!r} from MCP server {self.server!r}{via}, "
            f"state left by session {self.writer[:8]} (agent#{self.instance}, t={self.t:.6f})"
        )


def observations(traces: Sequence[InstanceTrace]) -> list[Observation]:
    """Every read of a stateful MCP server that saw another session's state, in time order."""
    out = []
    for i, trace in enumerate(traces):
        for event in trace.events:
            detail = event.detail or {}
            if event.kind != "mcp_state" or detail.get("op") != "get":
                continue
            writer, reader = detail.get("writer"), event.session
            if isinstance(writer, str) and isinstance(reader, str) and writer != reader:
                out.append(
                    Observation(
                        i,
                        reader,
                        writer,
                        str(detail.get("name")),
                        detail.get("url"),
                        str(detail.get("value")),
                        round(event.t + trace.offset, 6),
                    )
                )
    return sorted(out, key=lambda o: o.t)


def check_isolation(traces: Sequence[InstanceTrace]) -> list[Violation]:
    """One violation per cross-session read, for sessions declared isolated."""
    return [
        Violation(ISOLATION, f"sessions not isolated: {o}", t=o.t, session=o.reader)
        for o in observations(traces)
    ]


def report(traces: Sequence[InstanceTrace]) -> str:
    """Who saw whose state, one line each (or that nobody did)."""
    seen = observations(traces)
    if not seen:
        return "shared MCP state: no session read state another session left behind"
    lines = [f"shared MCP state: {len(seen)} read(s) of state another session left behind"]
    lines += [f"  {o}" for o in seen]
    return "\n".join(lines)
