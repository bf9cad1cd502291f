"""Hypothesis' choices from a seed, whatever modules the process has imported: its local constants pinned.

Hypothesis (6.131 on) mixes "local constants" into what it generates: about one integer draw in 20
may return a literal found in the source of any local module (not the standard library, not
site-packages, not test files) in ``sys.modules`` at that moment. Which modules those are depends on
everything the process imported before: an xdist worker that ran other tests first, a conftest, a
plugin. So the same seed drew other examples in a worker of a full test run (19 examples and an
``ignore_cancel`` fault) than in a pytest run of one test (18 examples, no such fault).

``pinned_constants()`` makes the pool of local constants empty while a seeded run generates (its
strategies are small ranges where source literals add nothing); Hypothesis' own global constants,
a fixed list, stay. Its cache of the constants each draw may pick from is cleared on entry and on
exit, so neither side sees the other's pool. A Hypothesis without local constants has nothing to pin.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def _providers() -> Any | None:
    """Hypothesis' providers module when it has local constants as we know them, else None."""
    from hypothesis.internal.conjecture import providers

    if not callable(getattr(providers, "_get_local_constants", None)):
        return None
    cache = getattr(getattr(providers, "CONSTANTS_CACHE", None), "cache", None)
    if not hasattr(cache, "clear") or not hasattr(providers, "Constants"):
        return None
    return providers


@contextmanager
def pinned_constants() -> Iterator[None]:
    """While inside, Hypothesis draws no constant from the source of the modules loaded here."""
    providers = _providers()
    if providers is None:
        yield
        return
    empty = providers.Constants()
    original = providers._get_local_constants
    providers.CONSTANTS_CACHE.cache.clear()
    providers._get_local_constants = lambda: empty
    try:
        yield
    finally:
        providers._get_local_constants = original
        providers.CONSTANTS_CACHE.cache.clear()
