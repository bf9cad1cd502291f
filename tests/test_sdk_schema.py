"""The plugin supports the ACP SDK versions clients pin (issue 25 item 8): 0.8.1 to 0.12.

The simulator and the orchestrator take their wire models from ``acp_sim.sdk_schema``, which fills
in, with the newest SDK's fields, the models older SDKs lack. tox's ``sdk-oldest`` and
``sdk-newest`` environments run the suite on each end of the range.
"""

from __future__ import annotations

import re
import tomllib

import pytest
from packaging.requirements import Requirement

from acp_sim import sdk_schema

from .conftest import REPO

# What the two published client libraries of issue 25 pin, and the newest SDK.
PINNED_IN_THE_WILD = ["0.8.1", "0.10.1", "0.12.1"]


def _sdk_requirement() -> Requirement:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return next(
        Requirement(d) for d in project["dependencies"] if Requirement(d).name == "agent-client-protocol"
    )


@pytest.mark.parametrize("version", PINNED_IN_THE_WILD)
def test_the_sdk_versions_clients_pin_can_be_installed_next_to_the_plugin(version: str) -> None:
    assert _sdk_requirement().specifier.contains(version)


def test_the_models_older_sdks_lack_are_filled_in_with_the_newest_fields() -> None:
    close = sdk_schema._CloseSessionRequest.model_validate({"sessionId": "s-1", "_meta": {"k": 1}})
    assert close.session_id == "s-1"
    option = sdk_schema._SetSessionConfigOptionSelectRequest.model_validate(
        {"sessionId": "s-1", "configId": "model", "value": "opus"}
    )
    assert (option.config_id, option.value) == ("model", "opus")
    # whichever SDK is installed, the exported models read the same wire messages
    assert sdk_schema.CloseSessionRequest.model_validate({"sessionId": "s-2"}).session_id == "s-2"  # type: ignore[attr-defined]
    assert sdk_schema.NewSessionRequest.model_validate({"cwd": "/w", "mcpServers": []}).cwd == "/w"


def test_the_simulator_and_orchestrator_take_wire_models_only_from_the_shim() -> None:
    direct = re.compile(r"^\s*(from acp import schema|from acp\.schema import|import acp\.schema)", re.M)
    offenders = [
        str(path.relative_to(REPO))
        for path in (REPO / "src").rglob("*.py")
        if path.name != "sdk_schema.py" and direct.search(path.read_text())
    ]
    assert offenders == []
