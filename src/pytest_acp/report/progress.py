"""What a long property-suite run says while it runs: one mechanism for every machine.

A property item is one dot after tens of seconds (virtual time) or minutes (real time). Once a run
has taken ``after`` real seconds, ``Progress`` prints a line at most every ``every`` seconds: the
example (n of N), the step, the violations found so far, and the step itself. ``--acp-progress``
sets ``after`` (0: never) for virtual-time, real-time and live runs alike.

Where the line goes (``terminal_writer``): pytest captures a test's output, so the line is written
with capture suspended (as pytest's own live logging does), through the terminal reporter. An
xdist worker has no terminal: its stdout carries the channel to the controller (execnet points fd 1
at /dev/null), and the controller shows nothing a worker writes until the item's report arrives.
But the worker inherits the controller's stderr, so there the line goes to stderr with capture
suspended, prefixed with the worker's id; it reaches the terminal as it is written (on Windows
execnet redirects stderr too, and the line is lost).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pytest

# Print progress once a run has taken this many real seconds, then at most this often.
PROGRESS_AFTER = 10.0
PROGRESS_EVERY = 5.0


def stderr_writer(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class Progress:
    """Says where a long run is (example n of N, step k of M, violations so far, the step), to ``write``.

    Quiet for the first ``after`` seconds (short runs print nothing), then at most every ``every``
    seconds; ``after=None`` turns it off. The machine calls ``step`` for every step, ``accepted`` for
    violations the baseline accepted and ``failed`` for an example that failed (after which the
    run replays that failure to shrink it).
    """

    def __init__(
        self,
        total: int,
        steps: int,
        *,
        write: Callable[[str], None] = stderr_writer,
        after: float | None = PROGRESS_AFTER,
        every: float = PROGRESS_EVERY,
        what: str = "acp",
    ) -> None:
        self.total, self.steps, self.write, self.after, self.every, self.what = (
            total,
            steps,
            write,
            after,
            every,
            what,
        )
        self.started = time.monotonic()
        self._last: float | None = None
        self.lines: list[str] = []
        # Violations seen: accepted ones (each counted once per example) and the first failure's.
        self._accepted: set[tuple[int, str]] = set()
        self._failure: tuple[int, str, int] | None = None  # (example, property, violations)

    @property
    def violations(self) -> int:
        return len(self._accepted) + (self._failure[2] if self._failure is not None else 0)

    def accepted(self, example: int, violations: Iterable[Any]) -> None:
        """``violations`` of ``example`` did not fail it (the baseline accepts them); the oracle judges
        the run again after every step, and the same violation coming back is not a new one."""
        self._accepted.update((example, str(v)) for v in violations)

    def failed(self, example: int, violations: list[Any]) -> None:
        """``example`` failed with ``violations`` (its cause first); later failures are replays."""
        if self._failure is None and violations:
            self._failure = (example, violations[0].property, len(violations))

    def step(self, example: int, step: int, text: str) -> None:
        if self.after is None:
            return
        now = time.monotonic()
        if now - self.started < self.after or (self._last is not None and now - self._last < self.every):
            return
        self._last = now
        if self._failure is not None:  # Hypothesis replays the failing example (and shrinks it)
            first, prop, _ = self._failure
            which = f"replaying the {prop} failure of example {first} (replay {max(example - first, 1)})"
        elif example <= self.total:
            which = f"example {example} of {self.total}"
        else:  # Hypothesis does not count the examples it discards
            which = f"example {example} (of {self.total}, and some Hypothesis discarded)"
        # The start and the example's end (drain, closes, stop) are steps too: past the rules' count
        # the step's own text says what it is.
        of = f" of up to {self.steps}" if step <= self.steps else ""
        accepted = f" ({len(self._accepted)} accepted by the baseline)" if self._accepted else ""
        line = (
            f"{self.what}: {which}, step {step}{of} "
            f"({now - self.started:.0f} s; violations so far: {self.violations}{accepted}): {text.strip()}"
        )
        self.lines.append(line)
        self.write(line)


def terminal_writer(config: pytest.Config) -> Callable[[str], None]:
    """Writes a progress line where the user sees it while the item runs (see the module's doc)."""
    capture = config.pluginmanager.getplugin("capturemanager")
    reporter = config.pluginmanager.getplugin("terminalreporter")
    workerinput = getattr(config, "workerinput", None)
    worker = workerinput.get("workerid") if isinstance(workerinput, dict) else None

    def write(line: str) -> None:
        with capture.global_and_fixture_disabled() if capture is not None else nullcontext():
            if reporter is not None and worker is None:
                reporter.ensure_newline()  # the line of dots goes on below it
                reporter.write_line(line)
            else:
                print(f"[{worker}] {line}" if worker else line, file=sys.stderr, flush=True)

    return write
