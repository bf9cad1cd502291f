"""The seeded-bug catalog: broken bridges, each the reference orchestrator with one classic mistake.

Shipped so users can watch the checker catch real mistakes (``pytest --acp-sim --acp-bridge
pytest_acp.bugs:shared_continuation``). Each bug overrides exactly one of the orchestrator's hazard
methods (the ones whose docstrings say "Hazard prevented"), so the diff against the reference is
the bug. The suite judges behaviour only: nothing here is visible to the oracle, which catches the
same classes in bridges that were never in this repository.
"""

from pytest_acp.bugs.catalog import CATALOG, SeededBug
from pytest_acp.bugs.patterns import PATTERN_BUGS, PatternBug

__all__ = ["CATALOG", "PATTERN_BUGS", "PatternBug", "SeededBug"]


def __getattr__(name: str) -> object:
    # ``--acp-bridge pytest_acp.bugs:<name>`` finds each bug's adapter factory by its catalog name.
    if name in CATALOG:
        return CATALOG[name].bridge
    raise AttributeError(f"module 'pytest_acp.bugs' has no bug named {name!r}; known: {', '.join(CATALOG)}")
