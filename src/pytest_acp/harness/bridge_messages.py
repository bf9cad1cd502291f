"""What a process bridge's mapping speaks: client actions in, observations out.

A ``SubprocessBridge`` subclass maps each client ``Action`` to one message of the bridge's own
line protocol (``request``) and each message the bridge writes to what it means (``observe``):
text delivered to a key (``Delta``), any other update (``Update``), the end of a key's turn
(``End``), an answer to an action (``Ack``), or a message to write back to the bridge (``Reply``:
the app's answer to something the bridge asked it). The errors are what the adapter raises when
the bridge process is gone (``BridgeExited``) or refused an action (``BridgeActionFailed``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pytest_acp.adapter import TEXT_CHUNK

ActionKind = Literal["open", "prompt", "cancel", "close", "prewarm", "change_cwd", "shutdown"]
AckKind = Literal["start", "open", "cancel", "close", "prewarm", "change_cwd"]


@dataclass(frozen=True)
class Action:
    """A client action, for ``SubprocessBridge.request`` to turn into the bridge's message.

    ``kind``: ``open`` (key, cwd, mcp_servers, model), ``prompt`` (key, text), ``cancel`` (key),
    ``close`` (key), ``prewarm`` (cwd, mcp_servers, model), ``change_cwd`` (cwd: the old one,
    new_cwd) and ``shutdown`` (sent before stdin is closed, when the mapping has a message for it).
    """

    kind: ActionKind
    key: str | None = None
    text: str | None = None
    cwd: str | None = None
    mcp_servers: list[dict[str, Any]] = field(default_factory=list)
    model: str | None = None
    new_cwd: str | None = None


@dataclass(frozen=True)
class Delta:
    """Text the bridge delivered to ``key``'s caller (``kind``: the ACP update kind it stands for)."""

    key: str
    text: str
    kind: str = TEXT_CHUNK


@dataclass(frozen=True)
class Update:
    """Any other update delivered to ``key``'s caller, as an ACP ``session/update`` ``update`` dict."""

    key: str
    update: dict[str, Any]


@dataclass(frozen=True)
class End:
    """The bridge ended ``key``'s running turn: a stop reason, or an ``error`` (``timed_out``: by
    the bridge's own timeout)."""

    key: str
    stop_reason: str | None = None
    usage: Any = None
    error: str | None = None
    timed_out: bool = False


@dataclass(frozen=True)
class Ack:
    """The bridge answered an action: ``start`` (it is ready), ``open``, ``close``, ``cancel``,
    ``prewarm``, ``change_cwd``; with ``error`` when it failed. ``key`` is None for actions
    without one (start, prewarm, change_cwd); acks are matched first come, first served."""

    action: AckKind
    key: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class Reply:
    """A message to write back to the bridge: the app's answer to something the bridge asked it
    (a tool call relayed upward for permission, a question). Written in the order observed."""

    message: dict[str, Any]


Observation = Delta | Update | End | Ack | Reply


class BridgeExited(RuntimeError):
    """The bridge process is gone (or never started); the message has its exit status and stderr."""


class BridgeActionFailed(RuntimeError):
    """The bridge answered an action with an error."""
