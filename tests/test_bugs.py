"""The seeded-bug catalog: every broken bridge is caught within 200 examples on each backend, by a
property its bug class breaks (``catches``: the naming one first, then its usual side effects: a
sticky interrupt's first failing example may show only the chunks it drops, P1, and the idle timer
it starves, P4), and each differs from the reference in one hazard method. That the naming
property itself is reported is checked where the interleaving is fixed: the scenario files."""

from __future__ import annotations

import inspect

import pytest

from acp_sim.clock import BACKENDS
from acp_sim.orchestrator import Orchestrator, Session
from acp_sim.orchestrator.reconnect import SessionRestorer
from acp_sim.orchestrator.turns import TurnLifecycle
from pytest_acp.bugs import CATALOG
from pytest_acp.harness.machine import PropertyViolation
from pytest_acp.harness.machine_run import machine_for, run_machine


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", list(CATALOG))
def test_every_seeded_bug_is_caught_within_200_examples(name: str, backend: str) -> None:
    bug = CATALOG[name]
    with pytest.raises(PropertyViolation) as caught:
        run_machine(machine_for(bug.bridge, backend=backend), examples=200, seed=0, shrink=False)
    found = {v.property for v in caught.value.violations}
    assert found & set(bug.catches), str(caught.value)
    assert caught.value.examples <= 200  # type: ignore[attr-defined]


def _own_methods(cls: type) -> set[str]:
    return {name for name, value in vars(cls).items() if inspect.isfunction(value)}


# The parts of an Orchestrator a bug may live in instead, by the class attribute naming them.
PARTS: dict[str, type] = {
    "session_class": Session,
    "turns_class": TurnLifecycle,
    "restorer_class": SessionRestorer,
}


@pytest.mark.parametrize("name", list(CATALOG))
def test_each_bug_overrides_exactly_one_hazard_method(name: str) -> None:
    bug = CATALOG[name]
    cls = bug.orchestrator
    assert issubclass(cls, Orchestrator)
    assert cls.__bases__ == (Orchestrator,)
    overridden = {(Orchestrator, method) for method in _own_methods(cls)}
    for attribute, base in PARTS.items():
        part = getattr(cls, attribute)
        if part is getattr(Orchestrator, attribute):
            continue
        assert part.__bases__ == (base,), f"{attribute} of {cls.__name__} is not a direct subclass of {base}"
        overridden |= {(base, method) for method in _own_methods(part)}
    assert len(overridden) == 1, overridden
    ((owner, method),) = overridden
    assert "Hazard" in (getattr(owner, method).__doc__ or ""), (
        f"{owner.__name__}.{method} is not a hazard method"
    )


def test_the_catalog_has_the_eleven_classic_bugs() -> None:
    assert len(CATALOG) >= 10
    for bug in CATALOG.values():
        assert bug.summary
        assert bug.catches
