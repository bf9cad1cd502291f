"""Live runs: the property suite and scenario files against the real agent (``pytest --acp-live``).

This room owns the live set-up (``run``: Claude Code's ACP adapter behind the stdio tap, the model
stub or the real API) and what a live run may spend (``budget``).
"""
