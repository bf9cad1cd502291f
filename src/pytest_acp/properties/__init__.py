"""The properties: what a correct bridge owes its callers, judged from ground truth alone.

This room owns the oracle (``oracle.check``: a pure function of the agents' traces and the delivery
log, never a look inside a bridge), the two models it compares (``truth``: what each agent instance
sent and received, from its trace; ``client_log``: what the client asked and the bridge delivered,
from the harness's log), how they are correlated (``context``, by each prompt's token), and one
module per property, each saying what it asserts and why. Adding a property is adding a module here
and one call in ``oracle.run``. The judgements beside the oracle (shared MCP isolation, the
orchestration patterns) live here too.
"""
