"""acp_sim: a deterministic simulated ACP agent and a reference multi-session orchestrator.

This package owns everything of pytest-acp that is not pytest: it never imports pytest nor
``pytest_acp``, and no module of it is in an import cycle (``tests/test_imports.py``). Its parts:

- the wire: ``wire`` (newline-delimited JSON-RPC 2.0, ``Connection``), ``dispatch`` (methods to
  handlers, ``Reply``), ``envelope`` (what makes a line a message), ``streams``, ``errors``,
  ``sdk_schema`` (the ACP SDK's models);
- the simulation's ground: ``clock`` (virtual time, seeded randomness), ``loop_primitives``,
  ``distributions``, ``profile`` (how an agent behaves), ``faults`` (what goes wrong), ``store``
  (the agent's disk), ``trace`` and ``trace_collector`` (the ground truth), ``timeline``;
- ``agent``: the simulated agent; ``orchestrator``: the reference client of many sessions;
  ``scenario``: the scenario file format; ``conformance``: a client's verdict per property;
- ``live``: the real Claude Code adapter run offline and observed the same way; ``plan``: what N
  agents would cost for a workload;
- the ``acp-sim`` command: ``cli``, ``demo``, ``mcp_server``, ``proctree``, ``datafile``.
"""

__version__ = "0.1.0"
