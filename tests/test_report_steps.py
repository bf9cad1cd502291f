"""The failure report's step listing: a run of the same step is one line (``folded``)."""

from __future__ import annotations

from pytest_acp.report.failure import folded


def _step(t: float, text: str) -> str:
    return f"{t:12.6f}  {text}"


def test_a_run_of_the_same_step_is_one_line_with_how_many_and_the_last_time() -> None:
    steps = [_step(0, "start(agent_seed=0)"), *(_step(0.001 * i, "advance 0.001 s") for i in range(1, 6))]
    steps.append(_step(0.005, "open_session(key=s1)"))
    assert folded(steps) == [
        _step(0, "start(agent_seed=0)"),
        _step(0.001, "advance 0.001 s") + "  (5 times, the last at 0.005000)",
        _step(0.005, "open_session(key=s1)"),
    ]


def test_two_of_a_kind_and_different_steps_stay_as_they_are() -> None:
    steps = [_step(0, "advance 0.001 s"), _step(0.001, "advance 0.001 s"), _step(0.002, "advance 0.002 s")]
    assert folded(steps) == steps
    assert folded([]) == []
