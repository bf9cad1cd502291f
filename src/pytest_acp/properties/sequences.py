"""Matching what a turn delivered against what its agent sent, as sequences.

Natural text repeats (``.``, `` the``, the same chunk twice), so a delivered chunk is paired with
a send by order and count, never by its text alone.
"""

from __future__ import annotations

from collections.abc import Sequence


def subsequence(got: Sequence[str | None], expected: Sequence[str | None]) -> list[int] | None:
    """Where each item of ``got`` occurs in ``expected`` as an ordered subsequence (the earliest such
    positions), or None when ``got`` is not one: repeated texts are matched by order, not by value."""
    out: list[int] = []
    j = 0
    for text in got:
        while j < len(expected) and expected[j] != text:
            j += 1
        if j == len(expected):
            return None
        out.append(j)
        j += 1
    return out


def align(got: Sequence[str | None], expected: Sequence[str | None]) -> list[int | None]:
    """Pair each delivered item with the sent item it is (index into ``expected``, or None): in order
    where the order holds, else the earliest unpaired sent item with that text. With unique texts
    this is matching by text; with repeated texts each copy is paired with its own send."""
    out: list[int | None] = []
    used: set[int] = set()
    j = 0
    for text in got:
        k = j
        while k < len(expected) and (expected[k] != text or k in used):
            k += 1
        if k == len(expected):
            k = next((i for i, e in enumerate(expected) if e == text and i not in used), -1)
        if k < 0:
            out.append(None)
            continue
        used.add(k)
        out.append(k)
        j = max(j, k + 1)
    return out


def composed_of(text: str, pieces: Sequence[str]) -> bool:
    """``text`` is one or more of ``pieces`` joined (an agent replaying history joins a turn's chunks)."""
    options = sorted(set(pieces), key=len, reverse=True)
    rest = text
    while rest:
        piece = next((p for p in options if rest.startswith(p)), None)
        if piece is None:
            return False
        rest = rest[len(piece) :]
    return True
