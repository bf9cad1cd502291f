"""A minimal ACP agent that streams pre-encoded chunks as fast as a pipe takes them.

The producer for the stdio throughput benchmark: it must outrun every client it feeds, so it
encodes each turn's lines once and writes them in large blocks. It speaks just enough ACP for a
client to open sessions and prompt: initialize, session/new, session/prompt (N chunks, then the
response). Usage: ``python -m benchmarks.blast_agent CHUNKS_PER_TURN``.
"""

from __future__ import annotations

import json
import os
import sys

BLOCK = 1 << 16


def line(message: dict[str, object]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


def chunk_lines(session_id: str, chunks: int) -> bytes:
    return b"".join(
        line(
            {
                "jsonrpc": "2.0",
                "method": "session/update",
                "params": {
                    "sessionId": session_id,
                    "update": {
                        "sessionUpdate": "agent_message_chunk",
                        "content": {"type": "text", "text": f"[{session_id} c{i}] the agent writes a patch "},
                    },
                },
            }
        )
        for i in range(chunks)
    )


def write_all(data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(1, view[:BLOCK]) :]


def main() -> int:
    chunks = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    sessions = 0
    for raw in sys.stdin.buffer:
        request = json.loads(raw)
        method, request_id = request.get("method"), request.get("id")
        if method == "initialize":
            write_all(line({"jsonrpc": "2.0", "id": request_id, "result": {"protocolVersion": 1}}))
        elif method == "session/new":
            sessions += 1
            write_all(line({"jsonrpc": "2.0", "id": request_id, "result": {"sessionId": f"s{sessions}"}}))
        elif method == "session/prompt":
            session_id = request["params"]["sessionId"]
            write_all(chunk_lines(session_id, chunks))
            write_all(line({"jsonrpc": "2.0", "id": request_id, "result": {"stopReason": "end_turn"}}))
        elif request_id is not None:
            error = {"code": -32601, "message": f"Method not found: {method}"}
            write_all(line({"jsonrpc": "2.0", "id": request_id, "error": error}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
