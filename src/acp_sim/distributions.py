"""Latency distributions of profiles and faults, drawn from a simulation's seeded RNG.

Its own module because both ``acp_sim.profile`` and ``acp_sim.faults`` use it and the profile
holds faults: keeping the distributions here avoids an import cycle.
"""

from __future__ import annotations

import math
import random
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, NonNegativeFloat, PositiveFloat


class Strict(BaseModel):
    """Base of every file-format model: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Fixed(Strict):
    kind: Literal["fixed"] = "fixed"
    seconds: NonNegativeFloat

    def draw(self, rng: random.Random) -> float:
        return self.seconds


class Uniform(Strict):
    kind: Literal["uniform"]
    low: NonNegativeFloat
    high: NonNegativeFloat

    def draw(self, rng: random.Random) -> float:
        return rng.uniform(self.low, self.high)


class LogNormal(Strict):
    """Long-tailed latency: ``median`` seconds, spread ``sigma``, optionally capped at ``max``."""

    kind: Literal["lognormal"]
    median: PositiveFloat
    sigma: NonNegativeFloat
    max: PositiveFloat | None = None

    def draw(self, rng: random.Random) -> float:
        value = rng.lognormvariate(math.log(self.median), self.sigma)
        return min(value, self.max) if self.max is not None else value


_FORMS = (
    "a number of seconds, or {kind: fixed, seconds}, {kind: uniform, low, high} or "
    "{kind: lognormal, median, sigma, max}"
)


def _number_is_fixed(value: Any) -> Any:
    # A bare number is the common case; accept it as a fixed latency.
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return {"kind": "fixed", "seconds": value}
    # Say what a latency may be, rather than pydantic's "valid dictionary" / "unable to extract tag".
    if value is None or isinstance(value, BaseModel):
        return value
    if not isinstance(value, dict):
        raise ValueError(f"a latency is {_FORMS}; got {value!r}")
    if "kind" not in value:
        raise ValueError(f"this latency has no kind; a latency is {_FORMS}; got {value!r}")
    return value


_Distribution = Annotated[Fixed | Uniform | LogNormal, Field(discriminator="kind")]

# json_schema_input_type: the published JSON Schema must accept the bare number too, or editors and
# scenario files checked against `acp-sim schema profile` would reject `session_new_cold: 2.0`.
Latency = Annotated[
    _Distribution, BeforeValidator(_number_is_fixed, json_schema_input_type=NonNegativeFloat | _Distribution)
]
"""Seconds: a bare number (fixed) or ``{kind: uniform|lognormal, ...}``."""

OptionalLatency = Annotated[
    _Distribution | None,
    BeforeValidator(_number_is_fixed, json_schema_input_type=NonNegativeFloat | _Distribution | None),
]
"""A ``Latency`` or null (the discriminator must sit inside the ``| None`` to keep errors short)."""

ZERO = Fixed(seconds=0.0)
