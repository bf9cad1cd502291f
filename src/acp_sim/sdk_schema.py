"""The ACP SDK's wire models (``acp.schema``), over every SDK version clients pin in the wild.

The simulator and the reference orchestrator validate messages with the official SDK's pydantic
models. A user's bridge may pin an older SDK than the newest (0.8 and 0.10 are common), so the
plugin must not require one version: this module re-exports the models from whichever SDK is
installed (``agent-client-protocol`` 0.8.1 to 0.12) and defines, with the newest SDK's fields, the
few that older ones lack (``session/close`` and ``session/set_config_option`` requests; the
``acp`` MCP transport). Import the models from here, never from ``acp.schema`` directly.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from acp import schema as _sdk
from acp.schema import *  # noqa: F403  (every model of the installed SDK)
from pydantic import BaseModel, ConfigDict, Field

_META = Annotated[dict[str, Any] | None, Field(alias="_meta")]


class _Model(BaseModel):
    model_config = ConfigDict(populate_by_name=True)


class _CloseSessionRequest(_Model):
    session_id: Annotated[str, Field(alias="sessionId")]
    field_meta: _META = None


class _SetSessionConfigOptionSelectRequest(_Model):
    session_id: Annotated[str, Field(alias="sessionId")]
    config_id: Annotated[str, Field(alias="configId")]
    value: str
    field_meta: _META = None


class _AcpMcpServer(_Model):
    """An MCP server over the ACP connection itself (SDK 0.12+); older SDKs never parse one."""

    type: Literal["acp"]
    name: str
    field_meta: _META = None


CloseSessionRequest: type[BaseModel] = getattr(_sdk, "CloseSessionRequest", _CloseSessionRequest)
SetSessionConfigOptionSelectRequest: type[BaseModel] = getattr(
    _sdk, "SetSessionConfigOptionSelectRequest", _SetSessionConfigOptionSelectRequest
)
AcpMcpServer: type[BaseModel] = getattr(_sdk, "AcpMcpServer", _AcpMcpServer)
