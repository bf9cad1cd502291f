"""Secrets never reach a trace, a log or a report: one redactor for everything live mode writes.

Live runs carry an API key in the agent's environment and in the model API's headers, and a
bridge may pass tokens to MCP servers (``env`` / ``headers`` entries of ``session/new``). The tap
and the model stub record *copies* of what they see through a ``Redactor``; what goes over the
wire is never changed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

REDACTED = "[REDACTED]"

# Key names (lower-cased, without '-' and '_') whose values are secrets wherever they appear.
_SECRET_KEYS = frozenset(
    {
        "apikey",
        "xapikey",
        "authorization",
        "proxyauthorization",
        "cookie",
        "setcookie",
        "token",
        "accesstoken",
        "refreshtoken",
        "authtoken",
        "idtoken",
        "bearer",
        "secret",
        "clientsecret",
        "password",
        "passwd",
    }
)
# ...and names that end like a secret (ANTHROPIC_API_KEY, GITHUB_TOKEN, DB_PASSWORD) but not usage
# counters such as inputTokens, which end in "tokens".
_SECRET_SUFFIXES = ("apikey", "token", "secret", "password", "authorization", "credentials")

# Key shapes of the common providers, caught even when nobody declared the value.
_SECRET_PATTERN = re.compile(
    r"(?<![A-Za-z0-9])(sk-ant-[A-Za-z0-9_\-]{6,}|sk-[A-Za-z0-9_\-]{20,}|gh[pousr]_[A-Za-z0-9]{20,}|"
    r"xox[abposr]-[A-Za-z0-9\-]{10,}|AKIA[0-9A-Z]{16}|(?i:bearer)\s+[A-Za-z0-9._~+/=\-]{8,})"
)

# Environment variables whose values are registered as known secrets.
SECRET_ENV_VARS = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN")


def is_secret_name(name: str) -> bool:
    key = name.lower().replace("-", "").replace("_", "")
    return key in _SECRET_KEYS or key.endswith(_SECRET_SUFFIXES)


class Redactor:
    """Replaces secrets in strings and JSON-like values with ``[REDACTED]``.

    Three nets: values registered as known secrets (the key the run was given), values under
    secret-looking names (``x-api-key``, ``ANTHROPIC_API_KEY`` in an ``env`` list of
    ``{"name", "value"}`` pairs), and strings shaped like a provider key (``sk-ant-…``).
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._known: set[str] = set()
        for secret in secrets:
            self.add(secret)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, extra: Iterable[str] = ()) -> Redactor:
        env = os.environ if env is None else env
        return cls([*(env.get(name, "") for name in SECRET_ENV_VARS), *extra])

    def add(self, secret: str) -> None:
        # Very short values would redact ordinary words; a real key is never this short.
        if len(secret) >= 6:
            self._known.add(secret)

    def text(self, value: str) -> str:
        for secret in self._known:
            if secret in value:
                value = value.replace(secret, REDACTED)
        return _SECRET_PATTERN.sub(REDACTED, value)

    def value(self, value: Any) -> Any:
        """A redacted deep copy of a JSON-like value (the input is left untouched)."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return self._mapping(value)
        if isinstance(value, (list, tuple)):
            return [self.value(item) for item in value]
        return value

    def _mapping(self, value: Mapping[Any, Any]) -> dict[Any, Any]:
        # {"name": "ANTHROPIC_API_KEY", "value": "..."}: ACP's env variables and HTTP headers.
        name = value.get("name")
        pair_secret = isinstance(name, str) and is_secret_name(name) and "value" in value
        out: dict[Any, Any] = {}
        for key, item in value.items():
            if (pair_secret and key == "value") or (
                isinstance(key, str) and is_secret_name(key) and isinstance(item, str)
            ):
                out[key] = REDACTED
            else:
                out[key] = self.value(item)
        return out

    def headers(self, headers: Iterable[tuple[str, str]]) -> dict[str, str]:
        """HTTP headers as a dict with every credential header's value redacted."""
        return {name: REDACTED if is_secret_name(name) else self.text(value) for name, value in headers}
