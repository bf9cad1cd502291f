"""The agent's requests to the client (permission, fs, terminal), answered per session.

The orchestrator routes each request by its ``sessionId`` to the ``ClientHandler`` of the session
that asked (``open_session(handler=...)``, else the orchestrator's default), so one session's
permission prompt can never be answered by another session's handler. Subclass ``ClientHandler``
and override the methods you need; each gets the ``Session`` object and the raw params.

When a session is cancelled, its pending permission requests are answered with the ``cancelled``
outcome (the ACP spec asks for this, and a client that forgets it wedges the turn: see
known-client-bugs #6); other sessions' requests are untouched.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from acp_sim.errors import InvalidParams, MethodNotFound

if TYPE_CHECKING:
    from acp_sim.orchestrator.session import Session

PERMISSION = "session/request_permission"
READ_FILE = "fs/read_text_file"
WRITE_FILE = "fs/write_text_file"
TERMINAL_METHODS = (
    "terminal/create",
    "terminal/output",
    "terminal/wait_for_exit",
    "terminal/kill",
    "terminal/release",
)
CLIENT_REQUESTS = (PERMISSION, READ_FILE, WRITE_FILE, *TERMINAL_METHODS)

CANCELLED_PERMISSION: dict[str, Any] = {"outcome": {"outcome": "cancelled"}}


async def serve_request(
    handler: Any, session: Session, method: str, params: dict[str, Any], now: Callable[[], float] | None
) -> Any:
    """Answer one agent request with ``handler``, cancellable by that session's cancel only.

    ``now``: when given, the end of the answer counts as the turn's activity (time spent waiting on
    our own handler, a permission prompt, is not the agent's silence).
    """
    with session.answering():
        try:
            return await handler.handle(session, method, params)
        finally:
            if now is not None and session.turn is not None:
                session.turn.last_activity = now()
    # Cancelled by the session's cancel: the ACP answer for a pending permission request.
    if method == PERMISSION:
        return CANCELLED_PERMISSION
    raise InvalidParams(f"{method} was cancelled with the turn of session {session.label}")


class ClientHandler:
    """Default answers: permission by a fixed policy, files inside the session's cwd, no terminal.

    ``permission``: ``"allow"`` picks the first ``allow_*`` option, ``"reject"`` the first
    ``reject_*`` one (falling back to the first option offered). ``fs=True`` serves
    ``fs/read_text_file`` and ``fs/write_text_file`` for absolute paths inside the session's cwd
    (its worktree, when it has one). ``calls`` records every request handled, in order.
    """

    def __init__(self, *, permission: Literal["allow", "reject"] = "reject", fs: bool = False) -> None:
        self.permission = permission
        self.fs = fs
        self.terminal = False
        self.calls: list[tuple[str, str, dict[str, Any]]] = []

    async def handle(self, session: Session, method: str, params: dict[str, Any]) -> Any:
        self.calls.append((session.label, method, params))
        if method == PERMISSION:
            return await self.request_permission(session, params)
        if method == READ_FILE:
            return await self.read_text_file(session, params)
        if method == WRITE_FILE:
            return await self.write_text_file(session, params)
        if method in TERMINAL_METHODS:
            return await self.terminal_request(session, method, params)
        raise MethodNotFound(f"Method not found: {method}", data={"method": method})

    async def request_permission(self, session: Session, params: dict[str, Any]) -> dict[str, Any]:
        options = params.get("options") or []
        if not options:
            return CANCELLED_PERMISSION
        prefix = "allow" if self.permission == "allow" else "reject"
        chosen = next((o for o in options if str(o.get("kind", "")).startswith(prefix)), options[0])
        return {"outcome": {"outcome": "selected", "optionId": chosen.get("optionId")}}

    def _path(self, session: Session, params: dict[str, Any]) -> Path:
        if not self.fs:
            raise MethodNotFound("this client does not serve files (ClientHandler(fs=True) does)")
        raw = params.get("path")
        if not isinstance(raw, str) or not Path(raw).is_absolute():
            raise InvalidParams(f"path must be absolute, got {raw!r}")
        path = Path(raw).resolve()
        root = Path(session.cwd).resolve()
        if path != root and root not in path.parents:
            raise InvalidParams(f"{raw} is outside the session's working directory {session.cwd}")
        return path

    async def read_text_file(self, session: Session, params: dict[str, Any]) -> dict[str, Any]:
        path = self._path(session, params)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise InvalidParams(f"cannot read {path}: {exc.strerror}") from None
        line, limit = params.get("line"), params.get("limit")
        if isinstance(line, int) or isinstance(limit, int):
            lines = text.splitlines(keepends=True)
            start = max((line or 1) - 1, 0)
            end = start + limit if isinstance(limit, int) else None
            text = "".join(lines[start:end])
        return {"content": text}

    async def write_text_file(self, session: Session, params: dict[str, Any]) -> dict[str, Any]:
        path = self._path(session, params)
        content = params.get("content")
        if not isinstance(content, str):
            raise InvalidParams("content must be a string")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
        return {}

    async def terminal_request(self, session: Session, method: str, params: dict[str, Any]) -> Any:
        raise MethodNotFound(f"this client offers no terminal ({method} for session {session.label})")

    def capabilities(self) -> dict[str, Any]:
        """The ``clientCapabilities`` this handler can honour."""
        return {"fs": {"readTextFile": self.fs, "writeTextFile": self.fs}, "terminal": self.terminal}
