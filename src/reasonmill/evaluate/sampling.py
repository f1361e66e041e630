"""Samples from the model under test, through the generation client and its cache.

Why the generation client: every reply is committed to the content-addressed cache
before it counts, keyed by (model, sampling parameters, messages, sample index), so a
killed evaluation that is started again asks only for the samples it never received,
and a finished one costs nothing to re-score. Retries, backoff and concurrency limits
are the client's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from reasonmill.errors import ServiceFailure
from reasonmill.llm.cache import ResponseCache
from reasonmill.llm.client import Accounting, ChatClient, ClientConfig, Failure, api_key_from_env
from reasonmill.llm.transport import Timeouts

from .items import Benchmark
from .protocol import EvalConfig

#: (benchmark name, item index, sample index) -> a response record or a data Failure
Samples = dict[tuple[str, int, int], "dict | Failure"]


class SamplingError(ServiceFailure):
    """The endpoint kept failing: the evaluation stops; run it again to resume."""


def client_config(cfg: EvalConfig) -> ClientConfig:
    assert cfg.base_url and cfg.model
    return ClientConfig(
        base_url=cfg.base_url, model=cfg.model, api_key=api_key_from_env(cfg.api_key_env),
        temperature=cfg.temperature, top_p=cfg.top_p, max_tokens=cfg.max_tokens,
        concurrency=cfg.concurrency, max_retries=cfg.max_retries,
        timeouts=Timeouts(read=cfg.timeout),
    )


def sample_all(cfg: EvalConfig, benchmarks: list[Benchmark], cache_path: Path,
               progress: Callable[[int, int], None] | None = None) -> tuple[Samples, dict]:
    """Every (item, sample) of every benchmark: from the cache, else from the endpoint.

    Returns the samples and the client's accounting (requests sent, cache hits, tokens)."""
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    return asyncio.run(_sample_all(client_config(cfg), benchmarks, cache_path, progress))


async def _sample_all(config: ClientConfig, benchmarks: list[Benchmark], cache_path: Path,
                      progress: Callable[[int, int], None] | None) -> tuple[Samples, dict]:
    cache = ResponseCache(cache_path)
    accounting = Accounting()
    out: Samples = {}
    total = sum(len(b.items) * b.protocol.n for b in benchmarks)
    try:
        async with ChatClient(config, cache, accounting=accounting) as client:
            jobs = (((b.name, i, s), item.messages, s)
                    for b in benchmarks for i, item in enumerate(b.items) for s in range(b.protocol.n))
            async for tag, result in client.map(jobs):
                if isinstance(result, Failure) and result.retryable:
                    raise SamplingError(f"{config.url}: {result.message}; run the same command again to resume "
                                        "(finished samples are cached)")
                out[tag] = result
                if progress:
                    progress(len(out), total)
    finally:
        cache.close()
    return out, accounting.as_dict()
