"""The house rules of ``src/`` that reviewers would otherwise check by hand (issue 22): no module
over 600 lines (a bigger one holds more than one idea), and every package's ``__init__`` opens
with a docstring saying what the package owns."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
MAX_LINES = 600


def test_no_module_is_over_600_lines() -> None:
    sizes = {path: len(path.read_text(encoding="utf-8").splitlines()) for path in SRC.rglob("*.py")}
    assert sizes, f"no module found under {SRC}"
    over = sorted(f"{path.relative_to(SRC)}: {n} lines" for path, n in sizes.items() if n > MAX_LINES)
    assert not over, f"over {MAX_LINES} lines (split along a real seam):\n" + "\n".join(over)


def test_every_package_says_what_it_owns() -> None:
    packages = sorted(SRC.rglob("__init__.py"))
    assert len(packages) >= 10, packages
    silent = [
        str(path.relative_to(SRC))
        for path in packages
        if len((ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or "").split()) < 8
    ]
    assert not silent, "packages whose __init__ has no docstring saying what they own: " + ", ".join(silent)
