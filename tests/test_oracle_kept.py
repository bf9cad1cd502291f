"""A verdict the oracle reaches on a run in progress is kept: the run's final check finds it too.

``check(final=False)`` judges only what is already decided, so nothing that happens later may undo
it. Scenario files are judged once, at the end (``final=True``); a violation that a check during
the run found but the final check drops would pass there, and a state machine that judged only at
the end would miss it. Here the state machine runs on seeded bugs, and on clients written on the raw
wire with one defect each, and goes on past each violation
(``Recording`` notes it instead of failing the example), and every property a check found during
an example must be among the final check's. Five drops were found so, each fixed with a regression
test of its own (``test_oracle.py``, ``test_oracle_wire.py``): a P8 phantom resume excused by a
prompt begun after the resume; P6 leaked sessions judged before a session/close could no longer
come, or excused by a kill logged after the close in the same instant, by a pre-warm begun after
the open, or by an end estimated from a killed agent's last event.
"""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from pytest_acp.bugs import CATALOG
from pytest_acp.harness.machine import AcpStateMachine
from pytest_acp.harness.machine_run import machine_for, run_machine
from pytest_acp.harness.rule_ends import Verdict
from pytest_acp.properties.violation import Violation

from .wire_client import raw_bridge


class Recording(AcpStateMachine):
    """Notes each verdict and goes on: ``runs`` gets, per example, the properties each check during
    the example found and those the final check found."""

    runs: ClassVar[list[tuple[list[set[str]], set[str]]]]
    judge_lazily = False  # a check after every rule, each verdict noted

    def __init__(self) -> None:
        super().__init__()
        self.during: list[set[str]] = []
        self.final: set[str] = set()
        self.ending = False

    def _fail(self, violations: list[Violation], at: Verdict | None = None) -> None:
        found = {v.property for v in violations}
        if self.ending:
            self.final = found
        else:
            self.during.append(found)

    def teardown(self) -> None:
        self.ending = True
        super().teardown()
        type(self).runs.append((self.during, self.final))


def _recorded(factory: Any, examples: int, seed: int) -> list[tuple[list[set[str]], set[str]]]:
    machine = machine_for(factory, base=Recording, runs=[])
    run_machine(machine, examples=examples, seed=seed, shrink=False)
    return machine.runs  # type: ignore[attr-defined, no-any-return]


def _assert_kept(runs: list[tuple[list[set[str]], set[str]]]) -> None:
    judged = [(set().union(*during), final) for during, final in runs if any(during)]
    assert judged, f"no check during the run found anything in {len(runs)} examples: the test shows nothing"
    dropped = [(during, final) for during, final in judged if not during <= final]
    assert not dropped, (
        f"{len(dropped)} of {len(judged)} examples found a property during the run, not at the end: {dropped}"
    )


@pytest.mark.parametrize(
    ("bug", "examples", "seed"),
    [("phantom_resumed", 40, 3), ("mcp_leak_on_close", 30, 0)],
)
def test_what_a_check_during_the_run_found_the_final_check_finds(bug: str, examples: int, seed: int) -> None:
    _assert_kept(_recorded(CATALOG[bug].bridge, examples, seed))


@pytest.mark.parametrize("defect", ["drop_unknown", "dedup", "responses_first"])
def test_the_same_holds_on_clients_written_on_the_raw_wire(defect: str) -> None:
    """Clients we did not build on our orchestrator (``tests/wire_client.py``), one defect each."""
    _assert_kept(_recorded(raw_bridge(**{defect: True}), 60, 5))
