"""What a property-suite run covered: examples, the rules it ran, the faults it injected and the
rules it switched off, with why (a bridge's declared limits switch rules off silently otherwise:
``reconnects=False`` leaves no crash in the run). The faults are counted where every other effect
is, by ``pytest_acp.report.exercised`` (from the delivery log), not here.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class RunCoverage:
    """Filled by the machine's examples as they run (one per run of ``run_machine``)."""

    rules: Counter[str] = field(default_factory=Counter)
    switched_off: list[str] = field(default_factory=list)

    def ran(self, rule: str) -> None:
        self.rules[rule] += 1

    def note_off(self, reasons: list[str]) -> None:
        """The rules this run cannot exercise (the same for every example: said once)."""
        if not self.switched_off:
            self.switched_off = list(reasons)

    def summary(self, examples: int, faults: int) -> str:
        """One line: examples, rules run (with counts), ``faults`` injected, rules off and why."""
        ran = ", ".join(f"{rule} {count}" for rule, count in sorted(self.rules.items()) if rule != "start")
        line = f"{examples} examples; rules run: {ran or 'none'}; faults injected: {faults}"
        if self.switched_off:
            line += "; off: " + "; ".join(self.switched_off)
        return line


def switched_off(machine: Any, adapter: Any, capabilities: Any) -> list[str]:
    """Why each rule the machine has is off for this bridge and machine (empty: all on)."""
    from pytest_acp.adapter import supports

    off = []
    if not machine.crashes:
        off.append("crashes=False: crash_agent off")
    elif not capabilities.reconnects:
        off.append("reconnects=False: crash rules off (crash_agent, disconnect faults)")
    timeouts = capabilities.turn_timeout is not None or capabilities.idle_timeout is not None
    if machine.fault_kinds is None and not timeouts:
        off.append("no turn_timeout/idle_timeout declared: hang faults off")
    if machine.fault_kinds is not None and not machine.fault_kinds:
        off.append("fault_kinds=(): inject_fault off")
    for method in ("prewarm", "change_cwd"):
        if not supports(adapter, method):
            off.append(f"adapter has no {method}: {method} off")
    for flag, rule in (("cancels", "cancel"), ("closes", "close"), ("slow_readers", "toggle_slow_reader")):
        if not getattr(machine, flag, True):
            off.append(f"{flag}=False: {rule} off")
    return off
