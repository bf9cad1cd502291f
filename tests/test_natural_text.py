"""Ordinary text (issue 17 item 5): the agent's natural text mode, checked in its trace (in process on
both backends, and over stdio), and the oracle judging chunks by send order and counts, not by unique
text: a correct run with repeated texts passes, a bridge that dedups chunk texts is caught, and bleed
of a text both sessions sent is told from a duplicate by the counts."""

from __future__ import annotations

import itertools
from pathlib import Path

import anyio
import pytest

from acp_sim.agent import InProcessAgent
from acp_sim.clock import BACKENDS, run
from acp_sim.profile import AgentProfile, ModelProfile, TurnProfile
from acp_sim.trace import TraceEvent, chunk_text, load_jsonl
from pytest_acp.harness.machine import PropertyViolation
from pytest_acp.harness.machine_run import machine_for, run_machine
from pytest_acp.reference import bridge as reference_bridge

from .test_agent_support import connect, schema_problems, stdio
from .test_oracle import A, B, two_sessions
from .wire_client import raw_bridge

NATURAL = AgentProfile(
    text_mode="natural",
    models={
        "default": ModelProfile(
            session_new_cold=0.5,
            session_new_warm=0.5,
            turn=TurnProfile(chunk_count=12, chunk_interval=0.1),
        )
    },
)


def texts_by_turn(events: list[TraceEvent]) -> dict[tuple[str, int], list[str]]:
    out: dict[tuple[str, int], list[str]] = {}
    for event in events:
        text = chunk_text(event)
        if event.kind == "send" and text is not None and event.session is not None:
            out.setdefault((event.session, event.turn or 0), []).append(text)
    return out


def natural_trace(seed: int, backend: str) -> str:
    async def main() -> str:
        launcher = InProcessAgent(NATURAL, seed=seed)
        async with connect(launcher) as client:
            sids = [await client.new_session() for _ in range(2)]
            for round_ in range(4):
                async with anyio.create_task_group() as tg:
                    for sid in sids:
                        tg.start_soon(client.prompt, sid, f"round {round_}")
        events = launcher.current.trace.events
        assert schema_problems(events) == []
        return launcher.current.trace.to_jsonl()

    return run(main, backend=backend)  # type: ignore[arg-type]


def assert_ordinary(turns: dict[tuple[str, int], list[str]]) -> None:
    every = [text for texts in turns.values() for text in texts]
    assert any(len(texts) > len(set(texts)) for texts in turns.values())  # a text repeats in a turn
    assert any(a == b for texts in turns.values() for a, b in itertools.pairwise(texts))
    assert "" in every  # an empty chunk
    assert any(text.strip() == "" and text for text in every)  # whitespace only
    assert any("\n" in text.strip("\n") for text in every)  # several lines in one chunk
    assert any(not text.isascii() for text in every)
    assert any(len(text) > 1000 for text in every)  # one long chunk
    assert not any(text.startswith("[") for text in every)  # no tags


@pytest.mark.parametrize("backend", BACKENDS)
def test_natural_text_is_ordinary_and_deterministic_per_seed(backend: str) -> None:
    first = natural_trace(5, backend)
    assert first == natural_trace(5, backend)
    assert first != natural_trace(6, backend)
    assert_ordinary(texts_by_turn(load_jsonl(first.splitlines())))


def test_the_same_seed_gives_the_same_texts_on_both_backends() -> None:
    # Two sessions stream in the same instants, which the backends schedule in their own orders;
    # each session's and turn's texts come from its own RNG, so those are the same.
    texts = {
        backend: texts_by_turn(load_jsonl(natural_trace(5, backend).splitlines())) for backend in BACKENDS
    }
    assert texts["asyncio"] == texts["trio"]


def test_tagged_text_stays_the_default() -> None:
    trace = load_jsonl(natural_trace_with(AgentProfile(), 5).splitlines())
    every = [text for texts in texts_by_turn(trace).values() for text in texts]
    assert every
    assert all(text.startswith("[") for text in every)
    assert len(every) == len(set(every))


def natural_trace_with(profile: AgentProfile, seed: int) -> str:
    async def main() -> str:
        launcher = InProcessAgent(profile, seed=seed)
        async with connect(launcher) as client:
            sid = await client.new_session()
            await client.prompt(sid)
        return launcher.current.trace.to_jsonl()

    return run(main, backend="asyncio")


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
@pytest.mark.anyio
async def test_natural_text_over_stdio(tmp_path: Path) -> None:
    trace = tmp_path / "trace.jsonl"
    args = (
        "--text",
        "natural",
        "--chunks",
        "40",
        "--chunk-interval",
        "0.001",
        "--session-new-latency",
        "0.01",
    )
    async with connect(stdio(*args, "--trace", str(trace))) as client:
        sid = await client.new_session()
        for _ in range(3):
            await client.prompt(sid)
        received = client.texts(sid)
    events = load_jsonl(trace.read_text().splitlines())
    turns = texts_by_turn(events)
    assert received == [text for texts in turns.values() for text in texts]  # byte for byte, in order
    assert_ordinary(turns)


# -- the oracle: attribution by send order -------------------------------------------------------------


def natural_turn(sent: list[str], delivered: list[str]) -> list[str]:
    w = two_sessions()
    w.at(1.0).prompt("s1", 1, A)
    for text in sent:
        w.chunk(A, text)
    for text in delivered:
        w.deliver("s1", 1, text)
    w.at(2.0).answer("s1", 1)
    w.end("s1", 1)
    return [str(v) for v in w.check()]


SENT = [".", " the", ".", ".", "\n", " café", ""]


def test_repeated_texts_delivered_in_order_pass() -> None:
    assert natural_turn(SENT, SENT) == []


@pytest.mark.parametrize(
    ("delivered", "expected"),
    [
        # the dedup bridge: every repeat of '.' dropped; then one too many, a swap, a cut tail, no first
        ([".", " the", "\n", " café", ""], "2 chunk(s) missing from the middle of the turn, first '.'"),
        ([".", " the", ".", ".", ".", "\n", " café", ""], "'.' 4 times (the agent sent it 3 times)"),
        ([".", " the", ".", "\n", ".", " café", ""], "chunks delivered out of order"),
        ([".", " the", ".", ".", "\n"], "2 chunk(s) sent in the turn never delivered, first ' café'"),
        ([" the", ".", ".", "\n", " café", ""], "P1 first chunk delivered: the first chunk '.'"),
    ],
)  # fmt: skip
def test_a_sequence_that_differs_is_named_by_position_and_count(delivered: list[str], expected: str) -> None:
    (found,) = natural_turn(SENT, delivered)
    assert expected in found


def test_a_dropped_first_chunk_is_p1_when_the_first_text_is_not_repeated() -> None:
    (found,) = natural_turn([" the", ".", "."], [".", "."])
    assert found.startswith("P1")
    assert "' the'" in found


def bleed_world(delivered_b: list[str]) -> list[str]:
    """Both sessions send '.' and ' the'; s1's caller gets one '.' too many; s2's gets ``delivered_b``."""
    w = two_sessions()
    w.at(1.0).prompt("s1", 1, A)
    w.prompt("s2", 1, B)
    for text in (".", " the"):
        w.chunk(A, text)
        w.chunk(B, text)
    for text in (".", ".", " the"):
        w.deliver("s1", 1, text)
    for text in delivered_b:
        w.deliver("s2", 1, text)
    w.answer("s1", 1)
    w.end("s1", 1)
    w.answer("s2", 1)
    w.end("s2", 1)
    return [str(v) for v in w.check()]


def test_bleed_of_a_text_both_sessions_sent_is_told_from_a_duplicate_by_the_counts() -> None:
    # s2's caller lacks its '.': the extra one in s1 is s2's (misrouted).
    bleed = bleed_world([" the"])
    assert any(v.startswith("P3") and "belongs to key s2" in v for v in bleed), bleed
    # s2's caller got everything: the extra '.' in s1 is s1's own, delivered twice.
    dup = bleed_world([".", " the"])
    assert dup == [f"P2 integrity: delivered '.' 2 times [key s1 turn 1, agent session {A[:8]}]"], dup


def test_bleed_of_a_text_only_the_other_session_sent_is_p3() -> None:
    w = two_sessions()
    w.at(1.0).prompt("s1", 1, A)
    w.prompt("s2", 1, B)
    w.chunk(A, ".")
    w.chunk(B, " naïve")
    w.deliver("s1", 1, ".")
    w.deliver("s1", 1, " naïve")
    w.deliver("s2", 1, " naïve")
    w.answer("s1", 1)
    w.end("s1", 1)
    w.answer("s2", 1)
    w.end("s2", 1)
    assert [v.property for v in w.check()] == ["P3"]


# -- the state machine ---------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_bridge_that_dedups_chunk_texts_is_caught_within_200_examples(backend: str) -> None:
    machine = machine_for(raw_bridge(dedup=True), backend=backend, fault_kinds=())
    with pytest.raises(PropertyViolation) as caught:
        run_machine(machine, examples=200, seed=0, shrink=False)
    assert caught.value.examples <= 200  # type: ignore[attr-defined]
    found = [str(v) for v in caught.value.violations]
    assert any(v.startswith("P2") and "missing" in v for v in found), found
    assert "text=natural" in str(caught.value)


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_same_raw_bridge_without_the_defect_passes(backend: str) -> None:
    machine = machine_for(raw_bridge(), backend=backend, fault_kinds=(), text_modes=("natural",))
    assert run_machine(machine, examples=60, seed=0).examples >= 60


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_reference_orchestrator_passes_on_natural_text(backend: str) -> None:
    machine = machine_for(reference_bridge, backend=backend, text_modes=("natural",))
    assert run_machine(machine, examples=150, seed=3).examples >= 150
