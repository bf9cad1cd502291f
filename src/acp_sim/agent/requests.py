"""Params models of requests the agent validates where ``acp.schema`` is missing or looser than the schema.

- ``initialize``: the schema's ``protocolVersion`` is an integer (uint16). The Python SDK's model
  coerces anything else to an int (a date string becomes 1); the real adapter's SDK validates it as
  ``z.number().int()`` and answers ``"1"`` or ``1.5`` with -32602, and so do we.
- ``session/set_model``: not in the SDK's stable schema, yet the real adapter implements it
  (``unstable_setSessionModel``) and real bridges call it after every ``session/new``.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, field_validator

from acp_sim import sdk_schema as schema


class InitializeParams(schema.InitializeRequest):
    protocol_version: Annotated[StrictInt, Field(ge=0, le=65535, alias="protocolVersion")]

    @field_validator("protocol_version", mode="before")
    @classmethod
    def _coerce_protocol_version(cls, value: Any) -> Any:
        # Replaces the SDK model's coercion (same name). JSON ``1.0`` is the integer 1 to a JavaScript
        # peer, so the adapter takes it; anything else that is not an integer is refused.
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return value


class SetSessionModelParams(BaseModel):
    """``session/set_model`` params, as the adapter's SDK validates them (unknown keys allowed)."""

    model_config = ConfigDict(populate_by_name=True, extra="allow")

    session_id: Annotated[StrictStr, Field(alias="sessionId")]
    model_id: Annotated[StrictStr, Field(alias="modelId")]
    field_meta: Annotated[dict[str, Any] | None, Field(alias="_meta")] = None
