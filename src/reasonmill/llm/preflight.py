"""Preflight: check every model server a pipeline names before any stage runs.

Why: a teacher that is down used to cost minutes of retries per shard, after ingest,
clean and dedup had run, and ended with an empty dataset and exit code 0. A GET on
``/models`` answers in milliseconds and tells apart the three things a user must fix:
nothing listens at the URL, the key variable is unset, or the key is refused.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from dataclasses import dataclass


@dataclass(frozen=True)
class Endpoint:
    """A model server a stage will call.

    ``api_key_env`` names the variable holding the key; ``key_required`` is true when the
    user named that variable explicitly, so an unset variable is an error rather than
    "no key" (a local server needs none)."""

    purpose: str  # e.g. "generate teacher", "verify.reward"
    base_url: str
    api_key_env: str | None = None
    key_required: bool = False

    @property
    def models_url(self) -> str:
        base = self.base_url.rstrip("/")
        if base.endswith("/chat/completions"):
            base = base[: -len("/chat/completions")]
        return base + "/models"


def endpoints_of(purpose: str, pairs: list[tuple[str, str | None]]) -> list[Endpoint]:
    """Endpoints from the ``(base_url, api_key_env)`` pairs that scorers and judges list;
    the key is required whenever they name a variable (their settings have no default one)."""
    return [Endpoint(purpose, url, env, key_required=bool(env)) for url, env in pairs]


def check_endpoint(endpoint: Endpoint, timeout: float = 5.0) -> str | None:
    """None when the server answers and accepts the key; otherwise what is wrong and the fix."""
    key = os.environ.get(endpoint.api_key_env) if endpoint.api_key_env else None
    if endpoint.key_required and endpoint.api_key_env and not key:
        return (
            f"{endpoint.purpose}: the environment variable {endpoint.api_key_env} is unset "
            f"(named by api_key_env); export it, or remove api_key_env for a server without a key"
        )
    request = urllib.request.Request(endpoint.models_url, method="GET")
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            reply.read(1 << 16)
        return None
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403):
            hint = (
                f"check {endpoint.api_key_env}" if key else
                f"the variable {endpoint.api_key_env or 'api_key_env'} is unset; export the key"
            )
            return f"{endpoint.purpose}: {endpoint.base_url} refused the API key (HTTP {exc.code}); {hint}"
        return None  # it answers; some servers have no /models route
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return (
            f"{endpoint.purpose}: no server answers at {endpoint.base_url} ({reason}); "
            "start it, or fix base_url"
        )


def preflight(endpoints: list[Endpoint]) -> list[str]:
    """The problems found, one line each (each distinct endpoint is checked once)."""
    problems = []
    for endpoint in dict.fromkeys(endpoints):
        problem = check_endpoint(endpoint)
        if problem:
            problems.append(problem)
    return problems
