"""Typed errors of the wire layer and the simulator.

Every error a user can meet names what went wrong and where; JSON-RPC errors carry the
code and data that go on the wire, so one class serves both sides of a connection.
"""

from __future__ import annotations

from typing import Any

# JSON-RPC 2.0 reserved codes, plus the ACP codes the real agents use.
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
# ACP "resource not found": what claude-agent-acp answers for resume/load of an unknown session.
RESOURCE_NOT_FOUND = -32002


class AcpSimError(Exception):
    """Base class of every error this package raises on purpose."""


class JsonRpcError(AcpSimError):
    """A JSON-RPC error object: raised by a handler to answer with it, or received from the peer."""

    code: int = INTERNAL_ERROR

    def __init__(self, message: str, *, code: int | None = None, data: Any = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.data = data

    def to_error_object(self) -> dict[str, Any]:
        obj: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            obj["data"] = self.data
        return obj

    def __str__(self) -> str:
        text = f"{self.message} (code {self.code})"
        if self.data is not None:
            text += f": {self.data}"
        return text


class ParseError(JsonRpcError):
    """A line that is not JSON."""

    code = PARSE_ERROR


class InvalidRequest(JsonRpcError):
    """JSON that is not a JSON-RPC 2.0 message."""

    code = INVALID_REQUEST


class LineTooLong(InvalidRequest):
    """A line longer than the connection's limit; it was discarded without buffering it whole."""


class MethodNotFound(JsonRpcError):
    code = METHOD_NOT_FOUND


class InvalidParams(JsonRpcError):
    code = INVALID_PARAMS


class InternalError(JsonRpcError):
    code = INTERNAL_ERROR


class ResourceNotFound(JsonRpcError):
    code = RESOURCE_NOT_FOUND


_BY_CODE: dict[int, type[JsonRpcError]] = {
    cls.code: cls
    for cls in (ParseError, InvalidRequest, MethodNotFound, InvalidParams, InternalError, ResourceNotFound)
}


class RemoteError(JsonRpcError):
    """The peer answered one of our requests with a JSON-RPC error."""

    def __init__(self, method: str, peer: str, error: dict[str, Any]) -> None:
        self.method = method
        self.peer = peer
        code = error.get("code", INTERNAL_ERROR)
        super().__init__(
            str(error.get("message", "")),
            code=code if isinstance(code, int) else INTERNAL_ERROR,
            data=error.get("data"),
        )

    @property
    def kind(self) -> type[JsonRpcError]:
        """The local error class with the same code (``InternalError`` when the code is not standard)."""
        return _BY_CODE.get(self.code, InternalError)

    def __str__(self) -> str:
        return f"{self.peer} answered {self.method} with error {super().__str__()}"


class ConnectionClosed(AcpSimError):
    """The peer went away: every pending request fails with this at once."""

    def __init__(self, peer: str, reason: str, *, exit_code: int | None = None) -> None:
        self.peer = peer
        self.reason = reason
        self.exit_code = exit_code
        text = f"connection to {peer} closed: {reason}"
        if exit_code is not None:
            text += f" (exit code {exit_code})"
        super().__init__(text)


class ProfileError(AcpSimError):
    """An agent profile or scenario file that does not validate; names the file, field and value."""
