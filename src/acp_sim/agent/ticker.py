"""One timer per agent: every streaming turn's due message chunks, written by one task.

A turn that streams its message chunks (``SimAgent._stream``) does not sleep and write once per
chunk in its own task: it hands the stream to the agent's ``ChunkTicker`` and waits until the
stream is over. The ticker sleeps to the earliest due chunk of all turns, wakes once, and writes
every chunk due by then, in due order (ties in the order they were scheduled), each with
``Connection.write_nowait``; then it schedules that stream's next chunk. So a chunk costs no
timer, no task switch and no checkpoint of its own: many sessions streaming at once share
one wake-up. It writes at most ``BATCH`` chunks before letting the other tasks run (no virtual
time passes): the client reads and delivers those while their sessions' objects are still in the
processor's cache (see ``BATCH``).

Nothing a turn did changes: the same draws from the session's RNG in the same order (the next
chunk's interval right after a chunk is written, its text when it is due), the same virtual
times, stalls taken at the same moment, a cancelled turn writes nothing more (``_emit`` checks the
turn's own cancel before each chunk; a crash cancels the ticker with the agent's tasks). A write
that would wait (the connection's lock held, a full pipe, a stream that is not an in-memory pipe)
is handed back to the turn's own task, which writes that chunk as every other write is written
(waiting, cancellable, recorded ``unsent`` if cut short); the ticker writes nothing else until
that write is done, so the wire keeps the order the chunks fell due in.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from acp_sim.agent.session import SimSession, Turn, draw_words, phrases
from acp_sim.loop_primitives import Alarm, loop_alarm, loop_clock, loop_event, loop_sleep, loop_timer_horizon
from acp_sim.message_template import MessageTemplate
from acp_sim.profile import TurnProfile
from acp_sim.wire import encode

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

    from acp_sim.wire import Connection

SLOT = MessageTemplate.SLOT

BATCH = 64
"""Chunks written at once before the other tasks run. A chunk's way through agent, wire and client
touches its session's objects three times (written, routed, consumed); with every due chunk of
1,000 sessions written at once, each of those was a pass over all sessions' objects, far more than
a processor cache holds, and the updates waiting for their consumers set off young collections.
In batches of 64, 1,000 sessions x 100 chunks ran 0.90-0.91x the time on asyncio and 0.75x on trio
(paired runs, issue 19), with no young collection per chunk; 32 did as well, 128 worse; 100
sessions unchanged."""


def chunk_message(session_id: str, text: str) -> dict[str, Any]:
    """The ``session/update`` notification of one message chunk (as ``Connection.notify`` sends it)."""
    return {
        "jsonrpc": "2.0",
        "method": "session/update",
        "params": {
            "sessionId": session_id,
            "update": {"sessionUpdate": "agent_message_chunk", "content": {"type": "text", "text": text}},
        },
    }


class ChunkStream:
    """Message chunks ``start``..``stop - 1`` of one turn: what the ticker needs to write them.

    ``hold_last``: from the last chunk on, the connection holds writes (they go out with the
    response). ``texts`` collects what was written, for the turn's history and usage.
    """

    __slots__ = (
        "_draw",
        "_natural",
        "_prefix",
        "_random",
        "_table",
        "_template",
        "_words",
        "event",
        "handed",
        "hold_at",
        "i",
        "over",
        "rng",
        "session",
        "stop",
        "take_stall",
        "texts",
        "turn",
    )

    def __init__(
        self,
        session: SimSession,
        turn: Turn,
        spec: TurnProfile,
        start: int,
        stop: int,
        texts: list[str],
        hold_last: bool,
        take_stall: Callable[[SimSession, Turn, int], float],
    ) -> None:
        self.session = session
        self.turn = turn
        self.i = start
        self.stop = stop
        self.hold_at = stop - 1 if hold_last else -1
        self.texts = texts
        self.take_stall = take_stall
        self.rng = session.rng
        self._draw = spec.chunk_interval.draw
        self._words = spec.chunk_words
        # The phrase table of ``draw_words``, bound here: one draw and one index per chunk.
        self._table = phrases(spec.chunk_words)
        self._random = session.rng.random
        self._prefix = f"[{session.short} t{turn.number} c"
        self._natural = session.natural
        self._template = MessageTemplate(chunk_message(session.id, SLOT))
        self.event: Any = None
        """Set to wake the turn's task: the stream is over, or ``handed`` holds a chunk to write."""
        self.handed: tuple[str, dict[str, Any], bytes] | None = None
        self.over = False
        """The turn's task left the stream (done, cancelled, failed): the ticker drops it."""

    def delay(self) -> float:
        """The pause before chunk ``i`` (drawn right after the chunk before it was written)."""
        delay: float = self._draw(self.rng)
        if self.session.stall:
            delay += self.take_stall(self.session, self.turn, self.i)
        return delay

    def next_chunk(self) -> tuple[str, dict[str, Any], bytes]:
        """Chunk ``i``: its text (drawn now), its message and its line."""
        if self._natural:
            text = self.session.natural_text(self.turn.number)
        else:
            table = self._table
            words = table[int(self._random() * len(table))] if table else draw_words(self.rng, self._words)
            text = f"{self._prefix}{self.i}] {words} "
        message = chunk_message(self.session.id, text)
        data = self._template.fill(text)
        return text, message, data if data is not None else encode(message)

    def written(self, text: str) -> None:
        self.i += 1
        self.turn.chunks_sent += 1
        self.texts.append(text)

    def wake(self) -> None:
        if self.event is not None:
            self.event.set()


class ChunkTicker:
    """The agent's one timer for message chunks (see the module docstring)."""

    def __init__(self, conn: Connection, task_group: TaskGroup) -> None:
        self.conn = conn
        self._tg = task_group
        self._heap: list[tuple[float, int, ChunkStream]] = []
        self._seq = 0
        self._started = False
        self._alarm: Alarm | None = None
        self._deadline: float | None = None
        """What the ticker sleeps until (None: nothing scheduled, or not sleeping)."""
        self._sleeping = False
        self._blocked: ChunkStream | None = None
        """A stream whose chunk its own task is writing: nothing else is written until it is done."""
        self._clock: Callable[[], float] | None = None
        self._new_event: Callable[[], Any] | None = None

    def now(self) -> float:
        if self._clock is None:
            self._clock = loop_clock()
        return self._clock()

    def schedule(self, stream: ChunkStream, due: float) -> None:
        """Write ``stream``'s chunk ``i`` at ``due`` (loop clock time)."""
        heapq.heappush(self._heap, (due, self._seq, stream))
        self._seq += 1
        if not self._started:
            self._started = True
            self._tg.start_soon(self._run, name="acp-sim chunk ticker")
        elif self._sleeping and (self._deadline is None or due < self._deadline):
            assert self._alarm is not None
            self._alarm.wake()

    def release(self, stream: ChunkStream) -> None:
        """``stream``'s own task finished writing the chunk handed to it (or gave up): go on."""
        if self._blocked is stream:
            self._blocked = None
            if self._sleeping and self._alarm is not None:
                self._alarm.wake()

    async def wait(self, stream: ChunkStream) -> None:
        """The turn's side: until the ticker wakes it (stream over, or a chunk handed back)."""
        if self._new_event is None:
            self._new_event = loop_event()
        event = stream.event = self._new_event()
        await event.wait()

    async def _run(self) -> None:
        alarm = self._alarm = loop_alarm()
        clock = self._clock = self._clock or loop_clock()
        sleep = loop_sleep()
        horizon = loop_timer_horizon()
        heap = self._heap
        pop = heapq.heappop
        while True:
            if self._blocked is not None or not heap:
                await self._sleep(alarm, None)
                continue
            now = clock()
            due = heap[0][0]
            before = horizon(now)  # what the loop would have woken a sleeper for by now
            if due >= before:
                await self._sleep(alarm, due)
                continue
            batch = []
            for _ in range(BATCH):
                if not heap or heap[0][0] >= before:
                    break
                batch.append(pop(heap))
            for k, entry in enumerate(batch):
                if not self._emit(entry[2], now):
                    for rest in batch[k + 1 :]:  # written once the handed chunk is out, in order
                        heapq.heappush(heap, rest)
                    break
            if heap and heap[0][0] < before and self._blocked is None:
                # More due now (the rest of a batch, or chunks due at once again): others run first.
                await sleep(0)

    async def _sleep(self, alarm: Alarm, deadline: float | None) -> None:
        self._deadline = deadline
        self._sleeping = True
        try:
            await alarm.wait(deadline)
        finally:
            self._sleeping = False

    def _emit(self, stream: ChunkStream, now: float) -> bool:
        """Write ``stream``'s due chunk; False when it was handed to the turn's task instead."""
        if stream.over or stream.turn.is_cancelled:
            return True  # the turn's task unwinds; nothing more of this stream is written
        if self._tg.cancel_scope.cancel_called:
            return False  # the agent is going (a crash during this batch): write nothing more
        text, message, data = stream.next_chunk()
        conn = self.conn
        if stream.i == stream.hold_at:
            conn.hold()
        if not conn.write_nowait(data, message):
            stream.handed = (text, message, data)
            self._blocked = stream
            stream.wake()
            return False
        stream.written(text)
        if stream.i >= stream.stop:
            stream.over = True
            stream.wake()
        else:
            # The next chunk's pause is drawn now, right after this one is written, as the turn did.
            due = now + stream.delay()
            heapq.heappush(self._heap, (due, self._seq, stream))
            self._seq += 1
        return True
