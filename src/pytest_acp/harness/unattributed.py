"""Bridge output the suite cannot tie to a session key, made visible.

A bridge process says things that belong to no key the adapter knows: a line that is not JSON, a
message its mapping maps to nothing (``observe`` returned None: often an error with no session,
"the agent exited"), text for a key with no turn, an answer nobody asked for. Dropped silently,
such a line can be the only sign of why turns hang. An adapter calls ``note(what, text)``; the
harness that started it records each one in the delivery log (``unattributed``), where reports
and the never-ended-turn verdict show it.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar

Callback = Callable[[str, str], None]
_CALLBACK: ContextVar[Callback | None] = ContextVar("pytest_acp_unattributed", default=None)
# Characters of one line kept in the log.
MAX_TEXT = 300


def note(what: str, text: str) -> None:
    """Record unattributed output (``what``: noise, ignored, unrouted) with the harness, if any."""
    callback = _CALLBACK.get()
    if callback is not None:
        callback(what, text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 3] + "...")


def listen(callback: Callback) -> None:
    """Send ``note``s of tasks started from now on in this context to ``callback`` (the harness
    calls this before it starts the adapter, whose reader tasks inherit it)."""
    _CALLBACK.set(callback)
