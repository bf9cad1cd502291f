"""One entry point (issue 25 item 3): ``pytest --acp-sim --acp-bridge mod:factory`` with a
``SubprocessBridge`` factory runs the property suite and the scenario files on real time, with the
real-time budgets, and every report says so."""

from __future__ import annotations

import shutil

import pytest

from .conftest import REPO

pytest_plugins = ["pytester"]

# A sidecar bridge (a real process speaking its own JSON lines) and its mapping, as a user writes
# them; its one defect: it answers from a canned reply instead of asking the agent it was given.
SIDECAR = """
'''A sidecar bridge put under test with SubprocessBridge: it answers from a canned reply instead of
asking the agent it was given (the defect).'''
import sys
from pathlib import Path

from pytest_acp.harness.subprocess_bridge import Ack, Delta, End, SubprocessBridge

SCRIPT = Path(__file__).with_name("sidecar_main.py")


class Sidecar(SubprocessBridge):
    command = (sys.executable, str(SCRIPT))
    agent_env = "ACP_AGENT_CMD"
    acks = frozenset({"start", "open", "cancel", "close"})

    def request(self, action):
        kinds = {"open": "open", "prompt": "query", "cancel": "interrupt", "close": "close"}
        if action.kind in kinds:
            return {"type": kinds[action.kind], "session": action.key}
        return None

    def observe(self, m):
        acks = {"ready": "start", "opened": "open", "interrupted": "cancel", "closed": "close"}
        if m["type"] in acks:
            return Ack(acks[m["type"]], m.get("session"))
        if m["type"] == "text":
            return Delta(m["session"], m["delta"])
        if m["type"] == "result":
            return End(m["session"], m["stopReason"])
        return None


bridge = Sidecar.factory()
"""

SIDECAR_MAIN = """
import json
import sys


def out(**message):
    sys.stdout.write(json.dumps(message) + "\\n")
    sys.stdout.flush()


out(type="ready")
for line in sys.stdin:
    m = json.loads(line)
    kind, key = m["type"], m.get("session")
    if kind == "open":
        out(type="opened", session=key)
    elif kind == "query":
        out(type="text", session=key, delta="from the cache")
        out(type="result", session=key, stopReason="end_turn")
    elif kind == "interrupt":
        out(type="interrupted", session=key)
    elif kind == "close":
        out(type="closed", session=key)
"""

DEFECT = "P2 integrity violated: P2 integrity: delivered 'from the cache', which the agent never sent"


def test_a_subprocess_bridge_given_to_acp_bridge_runs_on_real_time(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(sidecar=SIDECAR, sidecar_main=SIDECAR_MAIN)
    pytester.makepyprojecttoml('[tool.pytest.ini_options]\npythonpath = ["."]\n')
    shutil.copy(REPO / "scenarios" / "two-sessions-interleaved.yaml", pytester.path / "scenario.yaml")
    result = pytester.runpytest(
        "-v", "--acp-sim", "--acp-bridge", "sidecar:bridge", "--acp-backend", "asyncio", "scenario.yaml"
    )
    result.assert_outcomes(failed=2)
    out = result.stdout.str()
    assert "run it with pytest_acp" not in out
    assert "TypeError" not in out
    # the scenario file and the property suite: each a report of a run on real time
    assert out.count("bridge:  sidecar:bridge (asyncio, real time)") == 2
    assert "virtual time" not in out
    assert out.count(DEFECT) == 2
    assert ") on real time" in out  # the machine's first step
    assert len(out.splitlines()) < 200
