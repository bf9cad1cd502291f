"""The scale benchmark's rows: each size next to its limit, and the run with the collector off."""

from __future__ import annotations

import pytest
from benchmarks import scale


def test_a_size_is_measured_with_its_limit_and_with_the_collector_off() -> None:
    row = scale.one(10, "asyncio", repeat=1)  # fresh processes; every run must deliver every chunk
    assert row["sessions"] == 10
    assert row["chunks"] == 10 * scale.CHUNKS
    assert row["rounds"] == 1
    for key in ("wall_s", "bare_wall_s", "collector_off_wall_s"):
        assert row[key] > 0, key


def test_the_collector_is_left_on_beyond_the_sizes_it_may_be_off_for(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[object, ...]] = []

    def fake_fresh(module: str, func: str, *args: object) -> object:
        calls.append((func, *args))
        return {"wall_s": 1.0, "chunks": args[0] * scale.CHUNKS} if func == "sim_wall" else 1.0

    monkeypatch.setattr(scale, "fresh", fake_fresh)
    scale.one(scale.COLLECTOR_OFF_UP_TO * 10, "asyncio", repeat=2)
    assert not [c for c in calls if c[0] == "sim_wall" and c[-1] is False]
    assert "collector_off_wall_s" not in scale.one(scale.COLLECTOR_OFF_UP_TO * 10, "asyncio")
    calls.clear()
    scale.one(scale.COLLECTOR_OFF_UP_TO, "asyncio", repeat=2)
    assert len([c for c in calls if c[0] == "sim_wall" and c[-1] is False]) == 2
