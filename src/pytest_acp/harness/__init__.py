"""The harness: how a bridge is driven, on virtual or real time, and what is recorded while it runs.

This room owns the harness that performs every client action and records the delivery log
(``harness``), the Hypothesis state machine that chooses the actions (``machine``, run by
``machine_run``), the event loop it steps (``loop``), the real-time runs against bridges that are
processes (``realtime``, ``subprocess_bridge``, their fault plans ``realtime_faults``, wait limits
``realtime_limits`` and time scaling ``realtime_scaling``), the bridge's own exceptions
(``bridge_raised``), unattributed bridge output, action timing and the leak guard. It records; the
properties judge.
"""
