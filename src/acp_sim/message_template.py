"""A message encoded once with one string value left open: the simulated agent's chunks are the same
envelope thousands of times over, only the text differs, so only the text is encoded per chunk."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from acp_sim.wire import encode

# How ``acp_sim.wire.encode`` writes a string value (the C encoder's own, the same with ensure_ascii=False).
_encode_string: Callable[[str], str] = json.encoder.encode_basestring  # type: ignore[attr-defined]


class MessageTemplate:
    """One message's line with one string value left open: encoded once; per use only that string
    is encoded. ``fill(text)`` is byte for byte ``encode`` of the message with ``text`` in the slot
    (the simulated agent's chunks: the same envelope thousands of times, only the text differs)."""

    SLOT = "\ue000slot\ue000"
    """Put this where the string goes; a private-use text no real value has."""

    __slots__ = ("_head", "_tail")

    def __init__(self, message: dict[str, Any]) -> None:
        line = encode(message)
        head, slot, tail = line.partition(_encode_string(self.SLOT).encode())
        if not slot or self.SLOT.encode() in tail:
            raise ValueError("a message template needs exactly one slot")
        self._head, self._tail = head, tail

    def fill(self, text: str) -> bytes | None:
        """The line with ``text`` in the slot; None for a text UTF-8 cannot hold (a lone
        surrogate): ``encode`` escapes the whole message then."""
        try:
            return self._head + _encode_string(text).encode() + self._tail
        except UnicodeEncodeError:
            return None
