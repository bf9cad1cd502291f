"""The objects alive when a run starts, left out of the garbage collector's full passes while it runs.

A state-machine run builds and drops a whole simulation per example (agent, wire, bridge, traces),
so the collector's oldest generation fills up and is collected again and again: a dozen full
passes per 350 examples. Each pass walks every tracked object in the process, and most of those
were there before the run began: the modules a pytest process has imported (the ACP schema's
models and Hypothesis alone are some 60,000 objects). Measured on the reference bridge
(``benchmarks.hypothesis_throughput``): collection took 6.9 ms per example, 4.2 ms with those
objects frozen.

``frozen_heap()`` freezes them (``gc.freeze``) for the length of a run and thaws them after
(``gc.unfreeze``), so nothing is kept beyond the run: a cycle among them that became garbage
meanwhile is collected as usual once the run ends. It does nothing when the collector is off, or
when something else froze objects already (a pre-forking server, the caller): that freeze is
theirs to undo, not ours.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def frozen_heap() -> Iterator[None]:
    """While inside, full collections skip the objects that were alive on entry."""
    if not gc.isenabled() or gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
