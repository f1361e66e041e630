"""A synchronous face of the generation client, for every model call outside ``generate``.

Why: the reward and judge scorers, the label stage's difficulty rater and the
decontamination judge are called from synchronous code, one batch at a time. Each had
its own HTTP client, without a cache and some without backoff, so a re-run paid for
every call again. ``SyncModelClient`` runs ``ChatClient`` (chat completions) and
``JsonClient`` (any other JSON endpoint, e.g. a reward model's ``/classify``) on one
event loop in a background thread, so these callers get the generation client's cache
(the same ``llm_cache.sqlite``), retries with backoff, rate limits, budgets and
accounting, and many requests of one batch run concurrently.

Infrastructure failures are errors, never scores: exhausted retries, a refused key and
a wrong URL raise :class:`ModelEndpointError` naming the endpoint (and, when set, what to
do), so the run fails loudly instead of scoring answers 0. A request the server rejects
for its content (a 400, a context-length error) comes back as a ``Failure`` for the
caller to record.

The client is picklable (the loop, the thread and the connections are rebuilt lazily in
the new process) and never pickles the API key: it is read from ``api_key_env`` on first
use.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import threading
import weakref
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any, Optional

from reasonmill.errors import ServiceFailure

from .cache import ResponseCache
from .client import Accounting, ChatClient, ClientConfig, Failure, FatalRequestError
from .json_client import JsonClient

#: the cache file shared with the generate stage, under the run's cache directory
LLM_CACHE_FILE = "llm_cache.sqlite"

#: (base_url, name of the environment variable holding its API key, or None)
Endpoint = tuple[str, Optional[str]]


class ModelEndpointError(ServiceFailure):
    """A model endpoint cannot be reached, keeps failing, or refuses the configuration.

    Never turned into a score: the run stops with this error."""


def llm_cache_path(cache_dir: str | Path | None) -> Path | None:
    """``<cache_dir>/llm_cache.sqlite``, or None (no cache) when the run has no cache dir."""
    return Path(cache_dir) / LLM_CACHE_FILE if cache_dir else None


class _Running:
    """The loop thread, the cache and the async clients of one process."""

    def __init__(self, config: ClientConfig, cache_path: Path | None):
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="reasonmill-model-client", daemon=True
        )
        self.thread.start()
        try:
            self.cache = ResponseCache(cache_path) if cache_path else None
            self.accounting = Accounting()
            self.chat = ChatClient(config, self.cache, accounting=self.accounting)
            self.json = JsonClient(config, self.cache, accounting=self.accounting)
            self.run(self.chat.__aenter__())
            self.run(self.json.__aenter__())
        except BaseException:  # e.g. an unreadable cache file: leave no thread behind
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=30)
            self.loop.close()
            raise

    def run(self, coro: Coroutine) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def close(self) -> None:
        if self.loop.is_closed() or os.getpid() != self.pid or not self.thread.is_alive():
            return  # closed already, or a forked child: the loop thread lives in the parent
        try:
            self.run(self.chat.__aexit__(None, None, None))
            self.run(self.json.__aexit__(None, None, None))
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=30)
            self.loop.close()
            if self.cache is not None:
                self.cache.close()


class SyncModelClient:
    """``complete_many`` (chat) and ``post_many`` (JSON) for synchronous callers.

    ``config.api_key`` is ignored: the key is read from ``api_key_env`` on first use
    (a missing variable raises ``ModelEndpointError`` unless ``require_key`` is false).
    ``what`` names the caller in errors (``"judge 'qwen-7b'"``); ``hint`` says what to do.
    """

    def __init__(
        self,
        config: ClientConfig,
        cache_path: str | Path | None = None,
        *,
        api_key_env: str | None = None,
        require_key: bool = True,
        what: str = "model",
        hint: str = "",
    ):
        self.config = dataclasses.replace(config, api_key=None)
        self.cache_path = Path(cache_path) if cache_path else None
        self.api_key_env = api_key_env
        self.require_key = require_key
        self.what = what
        self.hint = hint
        self._running: _Running | None = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_running"] = None
        state["_lock"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    @property
    def endpoint(self) -> Endpoint:
        return (self.config.base_url, self.api_key_env)

    @property
    def accounting(self) -> dict:
        """Requests sent, cache hits, retries, errors of this process so far."""
        return self._running.accounting.as_dict() if self._running else Accounting().as_dict()

    def _api_key(self) -> str | None:
        if not self.api_key_env:
            return None
        key = os.environ.get(self.api_key_env)
        if not key and self.require_key:
            raise ModelEndpointError(
                f"{self.what}: environment variable {self.api_key_env} is not set; "
                f"export it with the API key for {self.config.base_url}, or drop api_key_env from the "
                "settings"
            )
        return key or None

    def _start(self) -> _Running:
        with self._lock:
            if self._running is None:
                config = dataclasses.replace(self.config, api_key=self._api_key())
                running = _Running(config, self.cache_path)
                weakref.finalize(self, running.close)  # also at interpreter exit
                self._running = running
            return self._running

    def close(self) -> None:
        with self._lock:
            running, self._running = self._running, None
        if running is not None:
            running.close()

    # -- requests ---------------------------------------------------------------------

    def complete_many(
        self, messages_list: Sequence[list[dict]], sample_index: int = 0
    ) -> list[dict | Failure]:
        """One chat completion per message list, in input order: a response record
        (``think``, ``answer``, ``raw``…) or a ``Failure`` the server gave for that request."""
        if not messages_list:
            return []
        running = self._start()

        async def run_all() -> list[dict | Failure]:
            out: list[Any] = [None] * len(messages_list)
            jobs = ((i, messages, sample_index) for i, messages in enumerate(messages_list))
            async for i, result in running.chat.map(jobs):
                out[i] = result
            return out

        return self._checked(running, run_all, running.chat.config.url)

    def post_many(self, path: str, payloads: Sequence[Any]) -> list[Any | Failure]:
        """POST each payload to ``base_url + path`` (concurrently, cached).

        Returns the reply's JSON, or a ``Failure`` the server gave for that request."""
        if not payloads:
            return []
        running = self._start()

        async def run_all() -> list[Any | Failure]:
            return list(await asyncio.gather(*(running.json.post(path, p) for p in payloads)))

        return self._checked(running, run_all, running.json.url(path))

    def _checked(self, running: _Running, run_all: Any, url: str) -> list:
        hint = f" {self.hint}" if self.hint else ""
        try:
            results = running.run(run_all())
        except FatalRequestError as exc:
            raise ModelEndpointError(f"{self.what}: {exc}.{hint}") from exc
        for result in results:
            if isinstance(result, Failure) and result.retryable:
                raise ModelEndpointError(f"{self.what}: {url}: {result.message}.{hint}")
        return results
