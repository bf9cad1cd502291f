"""Agent profiles: how a simulated agent behaves, as validated data.

A profile is loaded from YAML, TOML, JSON or Python; a typo (unknown key, wrong type,
negative latency) fails with a ``ProfileError`` naming the file, the field and the value.
Every random draw comes from the simulation's seeded RNG, so a profile plus a seed fixes a run.
"""

from __future__ import annotations

import json
import math
import random
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    NonNegativeFloat,
    PositiveFloat,
    ValidationError,
)

from acp_sim.errors import ProfileError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Fixed(_Strict):
    kind: Literal["fixed"] = "fixed"
    seconds: NonNegativeFloat

    def draw(self, rng: random.Random) -> float:
        return self.seconds


class Uniform(_Strict):
    kind: Literal["uniform"]
    low: NonNegativeFloat
    high: NonNegativeFloat

    def draw(self, rng: random.Random) -> float:
        return rng.uniform(self.low, self.high)


class LogNormal(_Strict):
    """Long-tailed latency: ``median`` seconds, spread ``sigma``, optionally capped at ``max``."""

    kind: Literal["lognormal"]
    median: PositiveFloat
    sigma: NonNegativeFloat
    max: PositiveFloat | None = None

    def draw(self, rng: random.Random) -> float:
        value = rng.lognormvariate(math.log(self.median), self.sigma)
        return min(value, self.max) if self.max is not None else value


def _number_is_fixed(value: Any) -> Any:
    # A bare number is the common case; accept it as a fixed latency.
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return {"kind": "fixed", "seconds": value}
    return value


Latency = Annotated[
    Fixed | Uniform | LogNormal, BeforeValidator(_number_is_fixed), Field(discriminator="kind")
]


class TurnProfile(_Strict):
    """What one prompt turn streams back."""

    first_chunk_delay: Latency = Fixed(seconds=0.0)
    """Time from the prompt to the first chunk; 0 writes it before the agent yields once."""
    empty_first_chunk: bool = False
    """Claude Code starts every turn with an ``agent_message_chunk`` whose text is empty."""
    chunk_count: Annotated[int, Field(ge=0)] = 5
    chunk_interval: Latency = Fixed(seconds=0.05)
    chunk_words: Annotated[int, Field(ge=1)] = 3


class ModelProfile(_Strict):
    session_new_cold: Latency = Fixed(seconds=4.0)
    """``session/new`` latency when the agent has not created a session with this model yet."""
    session_new_warm: Latency = Fixed(seconds=4.0)
    """``session/new`` latency for later sessions (Claude Code has no warm start: same as cold)."""
    turn: TurnProfile = TurnProfile()


class AgentProfile(_Strict):
    name: str = "default"
    default_model: str = "default"
    models: dict[str, ModelProfile] = Field(default_factory=lambda: {"default": ModelProfile()})

    def model(self, name: str | None) -> ModelProfile:
        """The profile of a model name; unknown names fall back to the default model."""
        return self.models.get(name or self.default_model) or self.models[self.default_model]


def _describe(exc: ValidationError, source: str) -> str:
    lines = [f"invalid agent profile {source}:"]
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "<root>"
        value = err.get("input")
        lines.append(f"  {loc}: {err['msg']} (got {value!r})")
    return "\n".join(lines)


def load_profile_data(data: Any, *, source: str = "<data>") -> AgentProfile:
    try:
        return AgentProfile.model_validate(data)
    except ValidationError as exc:
        raise ProfileError(_describe(exc, source)) from None


def load_profile(path: str | Path) -> AgentProfile:
    """Load a profile file (``.yaml``/``.yml``, ``.toml`` or ``.json``) or a built-in profile name."""
    if str(path) in BUILTIN_PROFILES:
        return BUILTIN_PROFILES[str(path)]
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ProfileError(f"cannot read agent profile {path}: {exc.strerror}") from None
    try:
        if path.suffix == ".toml":
            data = tomllib.loads(text)
        elif path.suffix == ".json":
            data = json.loads(text)
        else:
            data = yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ProfileError(f"cannot parse agent profile {path}: {exc}") from None
    return load_profile_data(data if data is not None else {}, source=str(path))


def profile_json_schema() -> dict[str, Any]:
    return AgentProfile.model_json_schema()


DEFAULT = AgentProfile()

# Measured on the real adapter (../shared/reference/claude-code-adapter.md): cold session/new ~4 s in
# the field, no warm start inside the adapter, each turn opens with an empty chunk.
CLAUDE_CODE = AgentProfile(
    name="claude-code",
    models={
        "default": ModelProfile(
            session_new_cold=LogNormal(kind="lognormal", median=4.0, sigma=0.15, max=12.0),
            session_new_warm=LogNormal(kind="lognormal", median=4.0, sigma=0.15, max=12.0),
            turn=TurnProfile(
                first_chunk_delay=Uniform(kind="uniform", low=0.1, high=0.3),
                empty_first_chunk=True,
                chunk_count=5,
                chunk_interval=Uniform(kind="uniform", low=0.15, high=0.25),
            ),
        )
    },
)

BUILTIN_PROFILES: dict[str, AgentProfile] = {"default": DEFAULT, "claude-code": CLAUDE_CODE}


def with_overrides(
    profile: AgentProfile, *, source: str = "command line", **turn_and_latency: Any
) -> AgentProfile:
    """A copy of ``profile`` with fields of every model replaced and validated again.

    Keys: ``session_new`` (cold and warm), ``session_new_cold``, ``session_new_warm``, or any
    ``TurnProfile`` field. ``None`` values are ignored.
    """
    changes = {k: v for k, v in turn_and_latency.items() if v is not None}
    if not changes:
        return profile
    data = profile.model_dump(mode="json")
    for model in data["models"].values():
        if "session_new" in changes:
            model["session_new_cold"] = model["session_new_warm"] = changes["session_new"]
        for key in ("session_new_cold", "session_new_warm"):
            if key in changes:
                model[key] = changes[key]
        for key, value in changes.items():
            if key in TurnProfile.model_fields:
                model["turn"][key] = value
    return load_profile_data(data, source=source)
