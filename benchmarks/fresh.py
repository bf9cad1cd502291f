"""Run one measurement in a fresh interpreter and return its JSON result.

A figure taken in a process that has just run something heavy pays for that run: its garbage
collector walks the heap the earlier run left, its allocator is fragmented. The bare scheduler's
limit measured after a 1,000-session simulation took 3-4 times as long as the same limit in a fresh
process; so every limit (and every figure it is compared with) gets a process of its own.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

_CODE = "import json, sys\nfrom {module} import {func} as f\nprint(json.dumps(f(*json.loads(sys.argv[1]))))\n"


def fresh(module: str, func: str, *args: Any) -> Any:
    """``module.func(*args)`` in a new interpreter (same environment and working directory)."""
    done = subprocess.run(
        [sys.executable, "-c", _CODE.format(module=module, func=func), json.dumps(args)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{module}.{func}{args!r} failed:\n{done.stderr}")
    return json.loads(done.stdout.splitlines()[-1])
