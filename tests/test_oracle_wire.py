"""The oracle on small bridges written on the raw wire (``tests/wire_client.py``), one defect each.

Each test drives its bridge through the harness on virtual time with the simulated agent, so the
interleavings are fixed, and checks what the oracle says: the defect named, nothing else blamed.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from acp_sim.agent import InProcessAgent
from acp_sim.clock import backend_options
from acp_sim.faults import parse_fault_spec
from pytest_acp.adapter import AgentUnderTest, BridgeCapabilities, TurnEnd, TurnOutput
from pytest_acp.harness.harness import Harness
from pytest_acp.harness.machine import MACHINE_PROFILE
from pytest_acp.properties.violation import Violation
from pytest_acp.report.failure import format_failure

from .test_oracle import A, B, two_sessions
from .wire_client import WireBridge

Script = Callable[[Harness], Awaitable[None]]


def run_harness(bridge: type[WireBridge], script: Script, backend: str = "asyncio") -> Harness:
    async def main() -> Harness:
        agent = AgentUnderTest(InProcessAgent(MACHINE_PROFILE, seed=1))
        harness = Harness(bridge.factory(), agent, guard_processes=False)
        await harness.start()
        await script(harness)
        await harness.stop()
        return harness

    return anyio.run(main, backend=backend, backend_options=backend_options(backend))


def run(bridge: type[WireBridge], script: Script, backend: str = "asyncio") -> list[Violation]:
    return run_harness(bridge, script, backend).check(final=True)


async def open_one(h: Harness, **options: Any) -> str:
    key = h.open(cwd="/w", **options)
    await h.wait_idle(60)
    return key


async def two_turns_with_a_cancel(h: Harness) -> None:
    key = await open_one(h)
    h.prompt(key)
    await h.advance(1.0)
    h.cancel(key)
    await h.wait_idle(120)
    h.prompt(key)
    await h.wait_idle(120)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_the_plain_wire_bridge_passes(backend: str) -> None:
    assert run(WireBridge, two_turns_with_a_cancel, backend) == []


class CancelOvertakesPrompt(WireBridge):
    """Prompts go out through the bridge's writer task (a queue), while ``cancel`` writes
    ``session/cancel`` at once: a cancel asked right after a prompt reaches the agent first; the
    agent, with nothing running yet, ignores it and runs the whole turn."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.outbox, self._queued = anyio.create_memory_object_stream[Any](math.inf)
        self.tg.start_soon(self._writer)

    async def _writer(self) -> None:
        async for args in self._queued:
            await super().send_prompt(*args)

    async def send_prompt(self, sid: str, text: str, route: Any) -> None:
        self.outbox.send_nowait((sid, text, route))

    async def prompt(self, key: str, text: str, out: TurnOutput) -> TurnEnd:
        end = await super().prompt(key, text, out)
        # The caller asked to cancel: report the turn as cancelled, whatever the agent did.
        return TurnEnd(stop_reason="cancelled") if key in self.cancelled else end


async def prompt_then_cancel_at_once(h: Harness) -> None:
    key = await open_one(h)
    h.prompt(key)
    h.cancel(key)
    await h.wait_idle(120)


def test_p5_a_cancel_that_reached_the_agent_before_its_prompt_did_not_cancel_the_turn() -> None:
    violations = run(CancelOvertakesPrompt, prompt_then_cancel_at_once)
    assert [v.property for v in violations] == ["P5"], violations
    assert "before the prompt it targets" in violations[0].message


class RetryEmptyAnswer(WireBridge):
    """An empty answer (``end_turn`` and not one chunk) is taken for a broken session: the bridge
    opens a fresh agent session and sends the same prompt again, so the agent runs the turn twice."""

    async def prompt(self, key: str, text: str, out: TurnOutput) -> TurnEnd:
        seen = out.count
        end = await super().prompt(key, text, out)
        if end.stop_reason == "end_turn" and out.count == seen:
            self.sids[key] = await self.new_session(key)
            end = await super().prompt(key, text, out)
        return end


async def an_empty_answer(h: Harness) -> None:
    key = await open_one(h)
    h.inject(parse_fault_spec("empty_turn"))
    h.prompt(key)
    await h.wait_idle(120)


def test_p2_a_prompt_sent_again_after_the_agent_answered_it_ran_twice() -> None:
    violations = run(RetryEmptyAnswer, an_empty_answer)
    assert [v.property for v in violations] == ["P2"], violations
    assert "sent again after the agent had answered it" in violations[0].message


def test_a_bridge_that_declares_it_resends_answered_prompts_is_judged_on_the_last_attempt() -> None:
    declared = type(
        "Declared", (RetryEmptyAnswer,), {"capabilities": BridgeCapabilities(resends_answered=True)}
    )
    assert run(declared, an_empty_answer) == []


class NewSessionAfterCancel(WireBridge):
    """After a cancel the bridge drops the key's agent session and opens a new one for the next
    turn (a clean slate instead of waiting for the agent to settle): the history is gone."""

    async def prompt(self, key: str, text: str, out: TurnOutput) -> TurnEnd:
        if key in self.cancelled:
            self.sids[key] = await self.new_session(key)
        return await super().prompt(key, text, out)


def test_p2_the_next_turn_in_a_fresh_agent_session_loses_the_conversation() -> None:
    violations = run(NewSessionAfterCancel, two_turns_with_a_cancel)
    assert [(v.property, v.turn) for v in violations] == [("P2", 2)], violations
    assert "conversation continuity" in violations[0].message


def test_a_bridge_that_declares_it_starts_over_is_not_blamed_for_it() -> None:
    declared = type(
        "Declared", (NewSessionAfterCancel,), {"capabilities": BridgeCapabilities(continuity=False)}
    )
    assert run(declared, two_turns_with_a_cancel) == []


OWN_MCP = ({"type": "http", "name": "app-tools", "url": "http://127.0.0.1:9/mcp", "headers": []},)


class OwnMcpServers(WireBridge):
    """The bridge attaches its own MCP servers to every session and takes none from its caller
    (declared in its capabilities)."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.capabilities = BridgeCapabilities(mcp_servers=OWN_MCP)

    def mcp_for(self, key: str) -> list[dict[str, Any]]:
        return list(OWN_MCP)


def test_p7_a_bridge_that_owns_its_mcp_servers_is_judged_against_its_own_set() -> None:
    assert run(OwnMcpServers, two_turns_with_a_cancel) == []


def test_p7_a_bridge_that_owns_its_mcp_servers_but_attaches_others_is_caught() -> None:
    class Drifted(OwnMcpServers):
        def mcp_for(self, key: str) -> list[dict[str, Any]]:
            return [{**OWN_MCP[0], "url": "http://127.0.0.1:10/mcp"}]

    violations = run(Drifted, two_turns_with_a_cancel)
    assert {v.property for v in violations} == {"P7"}, violations
    assert "the bridge's own set" in violations[0].message


class CloseHoldsTheRouter(WireBridge):
    """Routing and closing share one lock (to keep a closing session's late updates out of other
    turns), and ``close`` holds it while it waits for the agent's answer, which only the router can
    hand over: close never returns, and from then on nothing reaches any caller."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.lock = anyio.Lock()

    async def _route(self, message: dict[str, Any]) -> None:
        async with self.lock:
            await super()._route(message)

    async def close(self, key: str) -> None:
        async with self.lock:
            await super().close(key)


async def close_while_another_caller_reads_slowly(h: Harness) -> None:
    slow, busy, done = [await open_one(h) for _ in range(3)]
    h.set_slow(slow, True)
    h.prompt(slow)
    h.prompt(busy)
    await h.advance(3.0)
    h.close(done)
    await h.advance(30.0)


def test_a_close_that_never_returns_is_reported_first_not_blamed_on_a_slow_reader() -> None:
    violations = run(CloseHoldsTheRouter, close_while_another_caller_reads_slowly)
    assert violations, "the deadlocked close went unnoticed"
    assert violations[0].message == "close never returned", violations
    assert not [v for v in violations if "reading slowly" in v.message], violations


def test_p3_blames_a_slow_reader_only_for_updates_queued_behind_its_own() -> None:
    """The slow caller's update was sent after the held-up one: it cannot have held it up (a
    queue hands out in order), so the lateness is the bridge's own (P2), not one session's stall."""
    w = two_sessions()
    w.client("slow_consumer", "s2", detail={"on": True})
    w.at(1.0).prompt("s1", 1, A)
    w.prompt("s2", 1, B)
    w.chunk(A, "[A t1 c0]")
    w.at(2.0).chunk(B, "[B t1 c0]")
    w.at(9.0).deliver("s2", 1, "[B t1 c0]")
    w.deliver("s1", 1, "[A t1 c0]")
    for key in ("s1", "s2"):
        w.answer(key, 1)
        w.end(key, 1)
    (v,) = w.check()
    assert (v.property, v.key) == ("P2", "s1"), v
    assert "8.000 s after the agent sent it" in v.message


TEXT_ONLY = {"stop_reasons": False, "usage": False, "session_close": False}


class TextOnly(WireBridge):
    """A client with no stop reason, no usage and no per-session close (declared): the caller gets
    text, a turn just ends, closing a key forgets it. Correct otherwise: it stops delivering when
    its caller cancels."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.capabilities = BridgeCapabilities(**TEXT_ONLY)

    async def deliver(self, key: str, text: str, out: TurnOutput) -> None:
        if key not in self.cancelled:
            await out.text(text)

    def end_of(self, key: str, response: dict[str, Any]) -> TurnEnd:
        end = super().end_of(key, response)
        return TurnEnd(error=end.error)

    async def close(self, key: str) -> None:
        self.sids.pop(key)


async def turns_cancelled_and_not(h: Harness) -> None:
    await two_turns_with_a_cancel(h)
    h.close("s1")  # mid-run, so the agent session it leaves open is judged before the agent ends
    key = await open_one(h)
    h.prompt(key)
    await h.advance(2.0)
    h.cancel(key)
    await h.wait_idle(120)
    h.inject(parse_fault_spec("error_reply:method=session/prompt"))
    h.prompt(key)
    await h.wait_idle(120)


def test_a_bridge_that_declares_text_only_turns_no_usage_and_no_close_passes() -> None:
    assert run(TextOnly, turns_cancelled_and_not) == []


class TextOnlyDeliversAfterCancel(TextOnly):
    async def deliver(self, key: str, text: str, out: TurnOutput) -> None:
        await out.text(text)


class TextOnlyEndsLate(TextOnly):
    async def prompt(self, key: str, text: str, out: TurnOutput) -> TurnEnd:
        end = await super().prompt(key, text, out)
        if key in self.cancelled:
            await anyio.sleep(10)  # waits for a stop reason that never comes, then gives up
        return end


class TextOnlySwallowsErrors(TextOnly):
    def end_of(self, key: str, response: dict[str, Any]) -> TurnEnd:
        return TurnEnd()  # the caller sees a turn that just ended, with whatever text came


@pytest.mark.parametrize(
    ("bridge", "expected"),
    [
        (TextOnlyDeliversAfterCancel, "which the agent sent after it received session/cancel"),
        (TextOnlyEndsLate, "the caller waited on a finished turn"),
        (TextOnlySwallowsErrors, "turn ended as if it succeeded, but the agent answered with error"),
    ],
)
def test_a_text_only_bridge_still_has_its_other_defects_found(
    bridge: type[WireBridge], expected: str
) -> None:
    violations = run(bridge, turns_cancelled_and_not)
    assert violations, "the defect went unnoticed"
    assert expected in violations[0].message, violations


def test_the_failure_report_lists_each_declared_limit_with_what_it_costs() -> None:
    harness = run_harness(TextOnlySwallowsErrors, turns_cancelled_and_not)
    violations = harness.check(final=True)
    assert harness.log is not None
    report = format_failure(
        violations, context=None, steps=[], traces=harness.instances(), log=harness.log.entries,
        capabilities=harness.capabilities,
    )  # fmt: skip
    assert "declared limits (what each costs the bridge's users):" in report
    for name in TEXT_ONLY:
        cost = BridgeCapabilities.model_fields[name].json_schema_extra["limit_cost"]  # type: ignore[index]
        assert f"  {name}=False: {cost}" in report


class CallbacksAfterReturn(WireBridge):
    """Text reaches the caller through callbacks the bridge throttles (each fires 50 ms after its
    chunk arrived), and ``prompt`` returns on the agent's answer without waiting for them: the last
    chunk, which came with the answer, is handed over after the caller was told the turn ended."""

    async def deliver(self, key: str, text: str, out: TurnOutput) -> None:
        self.tg.start_soon(self._callback, out, text)

    async def _callback(self, out: TurnOutput, text: str) -> None:
        await anyio.sleep(0.05)
        await out.text(text)


async def one_turn(h: Harness) -> None:
    key = await open_one(h)
    h.prompt(key)
    await h.wait_idle(120)
    await h.advance(1.0)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_p2_a_chunk_delivered_after_the_turn_ended_is_out_of_order_whatever_the_slack(backend: str) -> None:
    violations = run(CallbacksAfterReturn, one_turn, backend)
    assert [v.property for v in violations] == ["P2"], violations
    assert "after its caller was told the turn had ended" in violations[0].message


def test_the_readme_states_each_declared_limit_with_the_cost_the_report_gives() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    for name, info in BridgeCapabilities.model_fields.items():
        extra = info.json_schema_extra
        if isinstance(extra, dict):
            assert f"| `{name}` (`{info.default!r}`) |" in readme
            assert f"| {extra['limit_cost']} |" in readme, name


class CloseLater(WireBridge):
    """Returns from ``close`` at once and sends ``session/close`` a second later (batched cleanup,
    say): the session is closed, only not by the time ``close`` returned, which P6 does not ask."""

    async def close(self, key: str) -> None:
        sid = self.sids.pop(key)

        async def later() -> None:
            await anyio.sleep(1.0)
            await self.request("session/close", {"sessionId": sid})

        self.tg.start_soon(later)


def test_p6_a_session_closed_a_second_after_its_key_is_no_leak_at_any_check() -> None:
    """A check while the session/close is still to come must not call it never sent: nothing in the
    run so far decides that (before, a state machine's check right after the close did)."""
    seen: list[list[Violation]] = []

    async def close_then_check(h: Harness) -> None:
        key = await open_one(h)
        h.prompt(key)
        await h.wait_idle(120)
        h.close(key)
        await h.wait_idle(60)
        seen.append(h.check(final=False))
        await h.advance(2.0)
        seen.append(h.check(final=False))

    h = run_harness(CloseLater, close_then_check)
    assert [e.error for e in h.log.entries if e.kind == "closed"] == [None]
    told = [e.t for i in h.instances() for e in i.events if e.kind == "recv" and e.method == "session/close"]
    assert len(told) == 1  # the agent was told, a second after the close returned
    assert seen == [[], []], seen
    assert h.check(final=True) == []
