"""What makes a line a JSON-RPC 2.0 message: the checks ``acp_sim.wire`` makes on every message it
reads before it records, indexes or dispatches it, and the excerpt of a bad line its errors carry.
"""

from __future__ import annotations

from typing import Any

from acp_sim.errors import InvalidRequest

# ACP messages nest a dozen levels deep; far deeper input would overflow recursive code further on
# (validation, the trace's JSON encoder and reader), so the wire refuses it as it arrives.
MAX_NESTING = 100
EXCERPT_CHARS = 80


def excerpt(data: bytes | str, limit: int = EXCERPT_CHARS) -> str:
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"


def is_request_id(value: Any) -> bool:
    """A JSON-RPC id the schema allows in a request or response: a string, an integer or null."""
    return value is None or isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def too_deep(value: Any, limit: int = MAX_NESTING) -> bool:
    """Whether arrays and objects nest more than ``limit`` levels deep (iterative: no recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        elif not isinstance(item, list):
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in item if isinstance(child, (dict, list)))
    return False


def envelope_error(message: dict[str, Any], line: bytes) -> InvalidRequest | None:
    """What makes a JSON object not a JSON-RPC 2.0 message, or None.

    Checked before anything records, indexes or dispatches the message: an id that is an object
    or an array cannot key a table, a method that is not a string cannot name a handler.
    """
    if message.get("jsonrpc") != "2.0":
        problem = '"jsonrpc" must be "2.0"'
    elif "method" in message and not isinstance(message["method"], str):
        problem = "method must be a string"
    elif "id" in message and not is_request_id(message["id"]):
        problem = "id must be a string or an integer"
    elif "method" not in message and "result" not in message and "error" not in message:
        problem = "neither a request, a notification nor a response"
    else:
        return None  # the usual case: no excerpt made (this runs for every message)
    return InvalidRequest(f"Invalid Request: {problem}", data={"excerpt": excerpt(line)})
