"""``engine: vllm``: offline batch generation with vLLM in-process, for GPU nodes.

UNTESTED on the development machine (CPU only, no vllm installed); it follows vLLM's
documented ``LLM.chat`` API. vllm is imported only when this engine is selected, so
importing reasonmill never needs it.

Same contract as the HTTP client: one (prompt, sample index) per request, the same
cache key (model + sampling params + messages + sample index), the cache consulted
first. Replies are committed per batch of ``vllm_batch_size`` conversations, so a kill
loses at most the batch being generated. Each sample gets a seed derived from its
cache key, so samples differ from each other and a re-run is reproducible.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from reasonmill.records import new_response

from .cache import ResponseCache
from .client import Accounting, BudgetExhausted, ClientConfig

if TYPE_CHECKING:  # pragma: no cover
    from reasonmill.stages.generate import GenerateSettings


def run_vllm(
    settings: GenerateSettings, cache: ResponseCache, jobs: list[tuple[Any, list[dict], int]], accounting: Accounting
) -> Iterator[tuple[Any, dict]]:
    try:
        from vllm import LLM, SamplingParams
    except ImportError as exc:
        raise RuntimeError(
            "generate.engine is 'vllm' but vllm is not installed: `pip install vllm` on a GPU node, "
            "or use engine: openai with a vLLM server (`vllm serve MODEL`)"
        ) from exc

    config = ClientConfig(
        base_url="vllm://in-process",
        model=settings.model,
        temperature=settings.temperature,
        top_p=settings.top_p,
        max_tokens=settings.max_tokens,
        extra_params=dict(settings.extra_params),
    )
    params = config.sampling_params()
    from .cache import cache_key

    keyed = [(tag, msgs, s, cache_key(config.model, params, msgs, s)) for tag, msgs, s in jobs]
    hits = cache.get_many(k for *_, k in keyed)
    for tag, _, _, key in keyed:
        if key in hits:
            accounting.cache_hits += 1
            yield tag, hits[key]["response"]
    todo = [job for job in keyed if job[3] not in hits]
    if not todo:
        return
    llm = LLM(model=settings.model, **settings.vllm_args)
    for start in range(0, len(todo), settings.vllm_batch_size):
        if settings.max_requests is not None and accounting.requests_sent >= settings.max_requests:
            raise BudgetExhausted(f"max_requests={settings.max_requests} reached")
        batch = todo[start : start + settings.vllm_batch_size]
        sampling = [
            SamplingParams(
                n=1,
                temperature=settings.temperature,
                top_p=settings.top_p,
                max_tokens=settings.max_tokens,
                seed=int(key[:8], 16),
                **settings.extra_params,
            )
            for *_, key in batch
        ]
        outputs = llm.chat([msgs for _, msgs, _, _ in batch], sampling_params=sampling, use_tqdm=False)
        for (tag, _msgs, sample, key), out in zip(batch, outputs):
            completion = out.outputs[0]
            prompt_tokens = len(out.prompt_token_ids or [])
            completion_tokens = len(completion.token_ids or [])
            meta: dict[str, Any] = {"sample_index": sample, "cache_key": key, "prompt_tokens": prompt_tokens}
            if completion.finish_reason == "length":
                meta["truncated"] = True
                accounting.truncated += 1
            response = new_response(
                completion.text,
                finish_reason=completion.finish_reason,
                tokens=completion_tokens,
                model=settings.model,
                source="generate",
                params=dict(params),
                request_id=f"vllm-{key[:16]}",
                meta=meta,
            )
            cache.put(key, {"response": response, "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens}})
            accounting.requests_sent += 1
            accounting.responses += 1
            accounting.prompt_tokens += prompt_tokens
            accounting.completion_tokens += completion_tokens
            yield tag, response
