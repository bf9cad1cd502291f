"""A state-machine run keeps the objects alive before it out of the collector's passes, and only then.

``pytest_acp.harness.frozen_heap``: what was alive when the run began is frozen while its examples
run (a full collection walks only what the run made) and thawed when it ends; a freeze someone else
made, and a collector someone switched off, are left as they were.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import pytest

from pytest_acp.harness.machine_run import machine_for, run_machine
from pytest_acp.reference import bridge as reference_bridge


class Probe:
    """An object alive before the run: is the collector still walking it while examples run?"""


def _walked(obj: object) -> bool:
    # gc.get_objects lists the three generations; a frozen object is in none of them.
    return any(o is obj for o in gc.get_objects())


def _run(seen: list[dict[str, Any]], probe: Probe) -> None:
    base = machine_for(reference_bridge, min_effect=0.0)  # a short run: what it judged is not the point

    def teardown(self: Any) -> None:
        seen.append({"frozen": gc.get_freeze_count(), "walked": _walked(probe)})
        base.teardown(self)

    run_machine(type("ProbeMachine", (base,), {"teardown": teardown}), examples=2, seed=0, steps=3)


@pytest.fixture
def thawed() -> Iterator[None]:
    # Whatever a test froze or switched off is undone, so the tests after it see the usual collector.
    assert gc.get_freeze_count() == 0
    enabled = gc.isenabled()
    try:
        yield
    finally:
        gc.unfreeze()
        if enabled:
            gc.enable()


def test_objects_alive_before_a_run_are_frozen_while_it_runs_and_thawed_after(thawed: None) -> None:
    probe, seen = Probe(), []
    assert _walked(probe)
    _run(seen, probe)
    assert seen, "no example ran"
    assert all(s["frozen"] > 0 and not s["walked"] for s in seen), seen
    assert gc.get_freeze_count() == 0
    assert _walked(probe)


def test_a_freeze_made_before_the_run_is_left_to_whoever_made_it(thawed: None) -> None:
    probe, seen = Probe(), []
    gc.freeze()
    _run(seen, probe)
    assert gc.get_freeze_count() > 0  # (it may shrink: a frozen object freed by its last reference leaves)
    assert not _walked(probe)


def test_a_collector_switched_off_is_not_touched(thawed: None) -> None:
    probe, seen = Probe(), []
    gc.disable()
    _run(seen, probe)
    assert seen, "no example ran"
    assert all(s["frozen"] == 0 and s["walked"] for s in seen), seen
    assert not gc.isenabled()
