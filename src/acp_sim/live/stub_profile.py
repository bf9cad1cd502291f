"""What the model stub answers: a seeded profile of text, cadence, tool use, usage and API faults.

The same ideas as the agent profile (``acp_sim.profile``), one level down: instead of simulating
the agent, live mode runs the real agent and simulates the model API it calls. Latencies reuse
the agent profile's ``Latency`` (a bare number is fixed seconds); every draw comes from an RNG
derived from the stub's seed, the session's order of appearance and the request's index in it.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from acp_sim.errors import ProfileError
from acp_sim.profile import Fixed, Latency


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StubReply(_Strict):
    """A text answer, streamed as ``deltas`` text deltas."""

    text: str = "<{prompt}|d{i}>"
    """Template of each delta: ``{prompt}`` (the user's prompt, first 40 characters), ``{i}`` (delta
    index), ``{session}`` (first 8 characters of the session id), ``{request}`` (request index in
    the session). Echoing the prompt makes any cross-session bleed or stale answer visible."""
    deltas: Annotated[int, Field(ge=0)] = 1
    first_delta_delay: Latency = Fixed(seconds=0.0)
    delta_interval: Latency = Fixed(seconds=0.0)
    input_tokens: Annotated[int, Field(ge=0)] = 10
    output_tokens: Annotated[int, Field(ge=0)] = 5
    cache_read_input_tokens: Annotated[int, Field(ge=0)] = 0
    cache_creation_input_tokens: Annotated[int, Field(ge=0)] = 0
    stop_reason: Literal["end_turn", "max_tokens"] = "end_turn"


class ToolUseRule(_Strict):
    """Answer a prompt containing ``prompt_contains`` with a ``tool_use`` block.

    The CLI then asks the client's permission (ACP ``session/request_permission``), runs the tool
    and sends its ``tool_result`` in the next request, which the stub answers with ``reply``.
    """

    prompt_contains: str
    name: str = "Bash"
    input: dict[str, Any] = Field(
        default_factory=lambda: {"command": "touch acp-sim-tool-ran", "description": "Create a marker file"}
    )
    text_before: str | None = None


class StubFault(_Strict):
    """An API failure, on requests that match ``prompt_contains`` (all when unset).

    ``overloaded`` (HTTP 529) and ``server_error`` (HTTP 500) answer at once with the API's error
    body; ``stream_error`` sends an ``error`` event (overloaded) mid-stream; ``stall`` pauses
    ``seconds`` mid-stream; ``drop`` closes the connection mid-stream. Mid-stream faults strike
    after ``after_deltas`` text deltas. ``request`` picks the n-th matching request (from 1);
    ``probability`` is drawn from the seeded RNG; ``times`` caps how often it fires (``null`` for
    no cap), so by default the CLI's retry succeeds.
    """

    kind: Literal["overloaded", "server_error", "stream_error", "stall", "drop"]
    prompt_contains: str | None = None
    request: Annotated[int, Field(ge=1)] | None = None
    probability: Annotated[float, Field(ge=0.0, le=1.0)] = 1.0
    times: Annotated[int, Field(ge=1)] | None = 1
    after_deltas: Annotated[int, Field(ge=0)] = 0
    seconds: Latency = Fixed(seconds=0.0)


class StubProfile(_Strict):
    name: str = "default"
    reply: StubReply = StubReply()
    tool_use: list[ToolUseRule] = Field(default_factory=list)
    faults: list[StubFault] = Field(default_factory=list)


DEFAULT_STUB = StubProfile()

BUILTIN_STUB_PROFILES: dict[str, StubProfile] = {
    "default": DEFAULT_STUB,
    # The model stream of the recorded transcripts (../shared/reference/transcripts): 5 deltas
    # 200 ms apart, long enough to cancel mid-stream and to see two sessions interleave.
    "transcript": StubProfile(
        name="transcript", reply=StubReply(deltas=5, first_delta_delay=0.0, delta_interval=0.2)
    ),
}


def load_stub_profile(source: str | Path) -> StubProfile:
    """A built-in stub profile name, or a ``.yaml``/``.toml``/``.json`` file; errors name field and value."""
    if str(source) in BUILTIN_STUB_PROFILES:
        return BUILTIN_STUB_PROFILES[str(source)]
    path = Path(source)
    try:
        text = path.read_text(encoding="utf-8")
        data = (
            tomllib.loads(text)
            if path.suffix == ".toml"
            else json.loads(text)
            if path.suffix == ".json"
            else yaml.safe_load(text)
        )
    except OSError as exc:
        raise ProfileError(f"cannot read model stub profile {path}: {exc.strerror}") from None
    except (ValueError, yaml.YAMLError) as exc:
        raise ProfileError(f"cannot parse model stub profile {path}: {exc}") from None
    try:
        return StubProfile.model_validate(data if data is not None else {})
    except ValidationError as exc:
        lines = [f"invalid model stub profile {path}:"]
        for err in exc.errors(include_url=False):
            loc = ".".join(str(p) for p in err["loc"]) or "<root>"
            lines.append(f"  {loc}: {err['msg']} (got {err.get('input')!r})")
        raise ProfileError("\n".join(lines)) from None
