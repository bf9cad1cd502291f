"""The subset of the Anthropic Messages API the Claude Code CLI uses, as pydantic models.

Requests are parsed leniently (``extra="allow"``): the CLI sends many fields the stub has no
use for, and a new CLI version adding one must not break the stub. Responses are strict and
serialised field for field as the public API documents them
(https://docs.anthropic.com/en/api/messages-streaming): the adapter turns exactly these events
into ACP updates (``content_block_start`` with empty text becomes the empty first
``agent_message_chunk``; ``message_start`` usage becomes ``usage_update.used``).
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# Text blocks the CLI adds around the user's prompt (context, skills, slash-command echoes).
_NOT_A_PROMPT = ("<system-reminder>", "<local-command", "<command-name>", "<command-message>")


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="allow")


class RequestBlock(_Lenient):
    type: str
    text: str | None = None
    id: str | None = None
    name: str | None = None
    tool_use_id: str | None = None


class InputMessage(_Lenient):
    role: Literal["user", "assistant"]
    content: str | list[RequestBlock]

    def blocks(self) -> list[RequestBlock]:
        if isinstance(self.content, str):
            return [RequestBlock(type="text", text=self.content)]
        return self.content


class MessagesRequest(_Lenient):
    """``POST /v1/messages`` (and ``/v1/messages/count_tokens``, which has no ``max_tokens``)."""

    model: str
    messages: list[InputMessage]
    max_tokens: int | None = None
    stream: bool = False
    metadata: dict[str, Any] | None = None

    def session_id(self) -> str | None:
        """The ACP session this request serves: the CLI puts it in ``metadata.user_id`` (a JSON string)."""
        user_id = (self.metadata or {}).get("user_id")
        if not isinstance(user_id, str):
            return None
        try:
            data = json.loads(user_id)
        except ValueError:
            return None
        session = data.get("session_id") if isinstance(data, dict) else None
        return session if isinstance(session, str) and session else None

    def prompt(self) -> str:
        """The user's latest prompt text, without the context blocks the CLI wraps around it."""
        for message in reversed(self.messages):
            if message.role != "user":
                continue
            for block in reversed(message.blocks()):
                if block.type == "text" and block.text and not block.text.lstrip().startswith(_NOT_A_PROMPT):
                    return block.text
        return ""

    def tool_results(self) -> list[str]:
        """``tool_use_id`` of every ``tool_result`` in the last user message (a tool just ran)."""
        if not self.messages or self.messages[-1].role != "user":
            return []
        return [b.tool_use_id or "" for b in self.messages[-1].blocks() if b.type == "tool_result"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Usage(_Strict):
    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0


class TextBlock(_Strict):
    type: Literal["text"] = "text"
    text: str


class ToolUseBlock(_Strict):
    type: Literal["tool_use"] = "tool_use"
    id: str
    name: str
    input: dict[str, Any]


ContentBlock = Annotated[TextBlock | ToolUseBlock, Field(discriminator="type")]
StopReason = Literal["end_turn", "max_tokens", "stop_sequence", "tool_use", "pause_turn", "refusal"]


class Message(_Strict):
    id: str
    type: Literal["message"] = "message"
    role: Literal["assistant"] = "assistant"
    model: str
    content: list[ContentBlock]
    stop_reason: StopReason | None = None
    stop_sequence: str | None = None
    usage: Usage


class MessageStart(_Strict):
    type: Literal["message_start"] = "message_start"
    message: Message


class ContentBlockStart(_Strict):
    type: Literal["content_block_start"] = "content_block_start"
    index: int
    content_block: ContentBlock


class TextDelta(_Strict):
    type: Literal["text_delta"] = "text_delta"
    text: str


class InputJsonDelta(_Strict):
    type: Literal["input_json_delta"] = "input_json_delta"
    partial_json: str


class ContentBlockDelta(_Strict):
    type: Literal["content_block_delta"] = "content_block_delta"
    index: int
    delta: Annotated[TextDelta | InputJsonDelta, Field(discriminator="type")]


class ContentBlockStop(_Strict):
    type: Literal["content_block_stop"] = "content_block_stop"
    index: int


class MessageDeltaBody(_Strict):
    stop_reason: StopReason
    stop_sequence: str | None = None


class DeltaUsage(_Strict):
    output_tokens: int


class MessageDelta(_Strict):
    type: Literal["message_delta"] = "message_delta"
    delta: MessageDeltaBody
    usage: DeltaUsage


class MessageStop(_Strict):
    type: Literal["message_stop"] = "message_stop"


class Ping(_Strict):
    type: Literal["ping"] = "ping"


class ErrorBody(_Strict):
    type: str
    message: str


class ErrorResponse(_Strict):
    """An error, as an HTTP response body or as an SSE ``error`` event in the middle of a stream."""

    type: Literal["error"] = "error"
    error: ErrorBody


class CountTokensResponse(_Strict):
    input_tokens: int


StreamEvent = (
    MessageStart
    | ContentBlockStart
    | ContentBlockDelta
    | ContentBlockStop
    | MessageDelta
    | MessageStop
    | Ping
    | ErrorResponse
)

# HTTP status and error type of the API's documented errors (https://docs.anthropic.com/en/api/errors).
API_ERRORS: dict[str, tuple[int, str]] = {
    "overloaded": (529, "overloaded_error"),
    "server_error": (500, "api_error"),
    "rate_limited": (429, "rate_limit_error"),
    "not_found": (404, "not_found_error"),
    "invalid_request": (400, "invalid_request_error"),
}


def error_response(kind: str, message: str) -> tuple[int, ErrorResponse]:
    status, error_type = API_ERRORS[kind]
    return status, ErrorResponse(error=ErrorBody(type=error_type, message=message))


def sse(event: StreamEvent) -> bytes:
    """One server-sent event: the event name is the payload's ``type``, as the API sends it."""
    return f"event: {event.type}\ndata: {event.model_dump_json()}\n\n".encode()
