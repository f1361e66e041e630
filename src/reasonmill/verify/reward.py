"""Reward-model and LLM-judge scoring for the general categories (SPEC §1 items 7–8).

Both score the *answer part only*: the think part is never sent, because reward models
are trained on final answers and a long trace would only dilute (or truncate) them.

- :class:`HttpRewardScorer` talks to a served reward model:

  ============== ======================== =============================================
  ``api``        endpoint                 request → score
  ============== ======================== =============================================
  vllm-reward    ``POST /pooling``        one chat (user=problem, assistant=answer) per
                                          request, so the server applies the model's chat
                                          template; ``data[0].data`` (last token's row)
  vllm-pooling   ``POST /pooling``        ``input`` = batch of templated texts
  vllm-classify  ``POST /classify``       ``input`` = batch; ``data[i].probs[label_index]``
  vllm-score     ``POST /score``          ``text_1`` = problems, ``text_2`` = answers;
                                          ``data[i].score``
  tei            ``POST /predict``        ``inputs`` = [[problem, answer], …]; the score
                                          of ``label`` (or the only one)
  tei-rerank     ``POST /rerank``         ``query`` = problem, ``texts`` = its answers
  ============== ======================== =============================================

  Raw values are normalized to [0, 1] (``normalize``): ``none``, ``sigmoid`` (logit
  heads), ``range`` (``score_range=(lo, hi)``, e.g. a 0–5 scale), or ``attributes``
  (several values per answer, combined as a weighted sum over a scale; the default is
  Decision-Tree-Reward's (coherence + correctness + helpfulness) / 12).

- :class:`JudgeScorer` asks an LLM over ``/v1/chat/completions`` for a 0–5 rubric score
  and keeps its reasoning; :func:`math_judge` builds the equivalence judge that the math
  verifier asks when math-verify says no.

Thresholds per category follow SPEC §1 item 8: math/code > 0.99, science > 4.99/5,
everything else > 0.7 (on the normalized score).

Transient failures (429, 5xx, timeouts, refused connections) are retried with
exponential backoff, honouring ``Retry-After``; when the endpoint stays unreachable, a
:class:`RewardEndpointError` names the URL and what to do. Clients are created lazily
and dropped on pickling, so the scorers and verifiers travel to worker processes.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterable, Literal, Sequence

import httpx
from pydantic import BaseModel, ConfigDict

from reasonmill.verify.base import Verdict

#: SPEC §1 item 8, on scores normalized to [0, 1]; "default" covers every other category
DEFAULT_THRESHOLDS: dict[str, float] = {"math": 0.99, "code": 0.99, "science": 4.99 / 5, "default": 0.7}
#: Decision-Tree-Reward-Llama-3.1-8B attribute order (HelpSteer2), each on a 0–4 scale
DT_REWARD_ATTRIBUTES = ("helpfulness", "correctness", "coherence", "complexity", "verbosity")
DT_REWARD_WEIGHTS = {"coherence": 1.0, "correctness": 1.0, "helpfulness": 1.0}

RewardApi = Literal["vllm-reward", "vllm-pooling", "vllm-classify", "vllm-score", "tei", "tei-rerank"]
Normalize = Literal["auto", "none", "sigmoid", "range", "attributes"]
RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


class RewardEndpointError(RuntimeError):
    """The scoring endpoint cannot be reached or keeps failing: the run cannot go on."""


class RewardRequestError(RuntimeError):
    """The endpoint rejected one request (a 4xx other than 429), or replied in a shape we cannot read."""


# --- HTTP with retries ---------------------------------------------------------------------


class _JsonHttp:
    """A small retrying JSON POST client; picklable (the httpx client is rebuilt lazily)."""

    def __init__(
        self,
        base_url: str,
        api_key_env: str | None,
        timeout: float,
        max_retries: int,
        backoff: float,
        what: str,
        hint: str,
    ):
        self.base_url = base_url.rstrip("/")
        self.api_key_env = api_key_env
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.what = what
        self.hint = hint
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_client"] = None
        state["_lock"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.api_key_env:
            key = os.environ.get(self.api_key_env)
            if not key:
                raise RewardEndpointError(
                    f"{self.what}: environment variable {self.api_key_env} is not set; export it with the API key "
                    f"for {self.base_url}, or drop api_key_env from the settings"
                )
            headers["Authorization"] = f"Bearer {key}"
        return headers

    @property
    def client(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                self._client = httpx.Client(timeout=self.timeout, headers=self._headers())
            return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def post(self, path: str, payload: dict) -> Any:
        url = self.base_url + path
        last = ""
        for attempt in range(self.max_retries + 1):
            wait = self.backoff * (2**attempt)
            try:
                reply = self.client.post(url, json=payload)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.ReadTimeout, httpx.RemoteProtocolError,
                    httpx.WriteError, httpx.ReadError, httpx.PoolTimeout) as exc:
                last = f"{type(exc).__name__}: {exc}"
            else:
                if reply.status_code < 400:
                    try:
                        return reply.json()
                    except ValueError as exc:
                        raise RewardRequestError(f"{self.what}: {url} returned non-JSON: {reply.text[:200]!r}") from exc
                if reply.status_code not in RETRY_STATUS:
                    raise RewardRequestError(
                        f"{self.what}: {url} answered HTTP {reply.status_code}: {reply.text[:300]}"
                    )
                last = f"HTTP {reply.status_code}: {reply.text[:200]}"
                retry_after = reply.headers.get("retry-after")
                if retry_after:
                    try:
                        wait = max(wait, min(float(retry_after), 60.0))
                    except ValueError:
                        pass
            if attempt < self.max_retries:
                time.sleep(min(wait, 60.0))
        raise RewardEndpointError(
            f"{self.what}: {url} failed after {self.max_retries + 1} attempts ({last}). {self.hint}"
        )


# --- reward models -------------------------------------------------------------------------


@dataclass(frozen=True)
class RewardScore:
    """``score`` is normalized to [0, 1]; ``raw`` is what the model returned for it."""

    score: float
    raw: float | list[float] | None
    attributes: dict[str, float] = field(default_factory=dict)


def _sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def _clip01(x: float) -> float:
    return min(1.0, max(0.0, x))


class HttpRewardScorer:
    """Scores ``(problem, answer)`` pairs with a served reward model (see the module doc)."""

    APIS: ClassVar[tuple[str, ...]] = ("vllm-reward", "vllm-pooling", "vllm-classify", "vllm-score", "tei", "tei-rerank")

    def __init__(
        self,
        base_url: str,
        model: str,
        api: RewardApi = "vllm-reward",
        api_key_env: str | None = None,
        normalize: Normalize = "auto",
        *,
        score_range: tuple[float, float] | None = None,
        attributes: Sequence[str] | None = None,
        attribute_weights: dict[str, float] | None = None,
        attribute_scale: float = 12.0,
        label: str | None = None,
        label_index: int = -1,
        template: str = "{problem}\n\n{answer}",
        batch_size: int = 16,
        concurrency: int = 4,
        timeout: float = 120.0,
        max_retries: int = 5,
        backoff: float = 0.5,
    ):
        if api not in self.APIS:
            raise ValueError(f"reward api {api!r} is not one of {', '.join(self.APIS)}")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api = api
        self.attributes = tuple(attributes) if attributes else None
        self.attribute_weights = dict(attribute_weights or DT_REWARD_WEIGHTS)
        self.attribute_scale = attribute_scale
        self.score_range = tuple(score_range) if score_range else None
        if normalize == "auto":
            if self.attributes:
                normalize = "attributes"
            elif self.score_range:
                normalize = "range"
            elif api in ("vllm-reward", "vllm-pooling"):
                normalize = "sigmoid"  # reward heads emit logits
            else:
                normalize = "none"  # classify/score/TEI already apply softmax/sigmoid
        if normalize == "range" and not self.score_range:
            raise ValueError("normalize='range' needs score_range=(lo, hi), e.g. (0, 5)")
        if normalize == "attributes" and not self.attributes:
            raise ValueError(f"normalize='attributes' needs the attribute names in output order, e.g. {list(DT_REWARD_ATTRIBUTES)}")
        self.normalize = normalize
        self.label = label
        self.label_index = label_index
        self.template = template
        self.batch_size = max(1, batch_size)
        self.concurrency = max(1, concurrency)
        self.http = _JsonHttp(
            self.base_url, api_key_env, timeout, max_retries, backoff,
            what=f"reward model {model!r} ({api})",
            hint="Start the reward server (e.g. `vllm serve MODEL --runner pooling`, or TEI for /predict and "
            "/rerank) or fix verify.reward.base_url in the pipeline YAML.",
        )

    def close(self) -> None:
        self.http.close()

    # -- public --------------------------------------------------------------------------

    def score(self, problem: str, answer: str) -> RewardScore:
        return self.score_pairs([(problem, answer)])[0]

    def score_pairs(self, pairs: Sequence[tuple[str, str]]) -> list[RewardScore]:
        """Scores in input order; requests are batched and sent ``concurrency`` at a time."""
        pairs = list(pairs)
        if not pairs:
            return []
        if self.api == "vllm-reward":
            jobs = [[i] for i in range(len(pairs))]
        elif self.api == "tei-rerank":
            by_problem: dict[str, list[int]] = {}
            for i, (p, _) in enumerate(pairs):
                by_problem.setdefault(p, []).append(i)
            jobs = [idx[k : k + self.batch_size] for idx in by_problem.values() for k in range(0, len(idx), self.batch_size)]
        else:
            jobs = [list(range(k, min(k + self.batch_size, len(pairs)))) for k in range(0, len(pairs), self.batch_size)]
        raws: list[Any] = [None] * len(pairs)

        def run(idx: list[int]) -> None:
            values = self._request([pairs[i] for i in idx])
            if len(values) != len(idx):
                raise RewardRequestError(
                    f"reward model {self.model!r}: {len(values)} scores for {len(idx)} inputs from {self.base_url}"
                )
            for i, v in zip(idx, values):
                raws[i] = v

        if len(jobs) == 1 or self.concurrency == 1:
            for job in jobs:
                run(job)
        else:
            with ThreadPoolExecutor(min(self.concurrency, len(jobs))) as ex:
                for fut in [ex.submit(run, job) for job in jobs]:
                    fut.result()
        return [self._normalize(v) for v in raws]

    # -- requests per API ----------------------------------------------------------------------

    def _text(self, problem: str, answer: str) -> str:
        return self.template.format(problem=problem, answer=answer)

    def _request(self, batch: list[tuple[str, str]]) -> list[Any]:
        api, model = self.api, self.model
        if api == "vllm-reward":
            (problem, answer), = batch
            body = self.http.post("/pooling", {
                "model": model,
                "messages": [{"role": "user", "content": problem}, {"role": "assistant", "content": answer}],
            })
            return [self._pooling_value(d) for d in self._data(body)]
        if api == "vllm-pooling":
            body = self.http.post("/pooling", {"model": model, "input": [self._text(p, a) for p, a in batch]})
            return [self._pooling_value(d) for d in self._data(body)]
        if api == "vllm-classify":
            body = self.http.post("/classify", {"model": model, "input": [self._text(p, a) for p, a in batch]})
            return [self._classify_value(d) for d in self._data(body)]
        if api == "vllm-score":
            body = self.http.post("/score", {"model": model, "text_1": [p for p, _ in batch], "text_2": [a for _, a in batch]})
            return [float(d["score"]) for d in self._data(body)]
        if api == "tei":
            body = self.http.post("/predict", {"inputs": [[p, a] for p, a in batch], "raw_scores": False})
            if batch and body and isinstance(body[0], dict):  # a single input comes back unnested
                body = [body]
            return [self._tei_label_value(preds) for preds in body]
        if api == "tei-rerank":
            body = self.http.post("/rerank", {"query": batch[0][0], "texts": [a for _, a in batch], "raw_scores": False})
            out: list[Any] = [None] * len(batch)
            for rank in body:
                out[int(rank["index"])] = float(rank["score"])
            return out
        raise AssertionError(api)

    def _data(self, body: Any) -> list[dict]:
        try:
            data = sorted(body["data"], key=lambda d: d.get("index", 0))
        except (TypeError, KeyError) as exc:
            raise RewardRequestError(f"reward model {self.model!r}: no 'data' list in reply from {self.base_url}: {str(body)[:200]}") from exc
        return data

    @staticmethod
    def _pooling_value(d: dict) -> float | list[float]:
        value = d["data"]
        if isinstance(value, list) and value and isinstance(value[0], list):
            value = value[-1]  # per-token rows (ALL pooling): the last token carries the reward
        if isinstance(value, list):
            return [float(x) for x in value] if len(value) > 1 else float(value[0])
        return float(value)

    def _classify_value(self, d: dict) -> float:
        probs = d["probs"]
        return float(probs[0] if len(probs) == 1 else probs[self.label_index])

    def _tei_label_value(self, preds: list[dict]) -> float:
        if len(preds) == 1:
            return float(preds[0]["score"])
        if self.label is None:
            raise RewardRequestError(
                f"reward model {self.model!r} returns labels {[p['label'] for p in preds]}: set `label` to the one to score"
            )
        for p in preds:
            if p["label"] == self.label:
                return float(p["score"])
        raise RewardRequestError(f"label {self.label!r} not among {[p['label'] for p in preds]} from {self.base_url}")

    # -- normalization -----------------------------------------------------------------------

    def _normalize(self, raw: float | list[float]) -> RewardScore:
        if isinstance(raw, list):
            if self.normalize != "attributes":
                raise RewardRequestError(
                    f"reward model {self.model!r} returned {len(raw)} values per answer; set normalize='attributes' "
                    f"and attributes=[names in output order] (Decision-Tree-Reward: {list(DT_REWARD_ATTRIBUTES)})"
                )
            if len(raw) < len(self.attributes or ()):
                raise RewardRequestError(f"{len(raw)} values but {len(self.attributes or ())} attribute names")
            attrs = dict(zip(self.attributes or (), raw))
            total = sum(w * attrs.get(name, 0.0) for name, w in self.attribute_weights.items())
            return RewardScore(_clip01(total / self.attribute_scale), raw, attrs)
        if self.normalize == "attributes":
            raise RewardRequestError(f"reward model {self.model!r} returned one value, but attributes are configured")
        if self.normalize == "sigmoid":
            return RewardScore(_sigmoid(raw), raw)
        if self.normalize == "range":
            lo, hi = self.score_range  # type: ignore[misc]
            return RewardScore(_clip01((raw - lo) / (hi - lo)), raw)
        return RewardScore(_clip01(raw), raw)


# --- settings and verifiers ------------------------------------------------------------------


class RewardSettings(BaseModel):
    """``verify.reward`` in the pipeline YAML."""

    model_config = ConfigDict(extra="forbid")

    base_url: str
    model: str
    api: RewardApi = "vllm-reward"
    api_key_env: str | None = None
    normalize: Normalize = "auto"
    score_range: tuple[float, float] | None = None
    attributes: list[str] | None = None
    attribute_weights: dict[str, float] | None = None
    attribute_scale: float = 12.0
    label: str | None = None
    label_index: int = -1
    template: str = "{problem}\n\n{answer}"
    batch_size: int = 16
    concurrency: int = 4
    timeout: float = 120.0
    max_retries: int = 5
    backoff: float = 0.5
    thresholds: dict[str, float] = dict(DEFAULT_THRESHOLDS)


def _threshold(thresholds: dict[str, float], category: str | None) -> float:
    return thresholds.get(category or "default", thresholds.get("default", 0.7))


def answer_part(response: dict) -> str:
    """The answer only: never the think part, never ``raw`` (which holds the think)."""
    return (response.get("answer") or "").strip()


def _cache_key(name: str, config: dict, record: dict, response: dict) -> str:
    payload = json.dumps([name, config, record.get("problem"), answer_part(response)], ensure_ascii=False, default=str)
    return hashlib.blake2b(payload.encode("utf-8"), digest_size=16).hexdigest()


class RewardVerifier:
    """``verify(record, response)``: the reward of the answer part against the category threshold.

    ``verify_many`` scores many pairs in batched requests. Verdict reasons:
    ``reward_pass``, ``reward_low``, ``empty_answer``, ``reward_error`` (the server
    rejected this input). An unreachable server raises :class:`RewardEndpointError`.
    """

    name: ClassVar[str] = "reward"

    def __init__(self, scorer: HttpRewardScorer, thresholds: dict[str, float] | None = None):
        self.scorer = scorer
        self.thresholds = dict(DEFAULT_THRESHOLDS if thresholds is None else thresholds)

    @classmethod
    def from_settings(cls, settings: RewardSettings | dict) -> "RewardVerifier":
        s = settings if isinstance(settings, RewardSettings) else RewardSettings(**settings)
        kw = s.model_dump(exclude={"base_url", "model", "api", "api_key_env", "normalize", "thresholds"})
        scorer = HttpRewardScorer(s.base_url, s.model, s.api, s.api_key_env, s.normalize, **kw)
        return cls(scorer, s.thresholds)

    def cache_key(self, record: dict, response: dict) -> str:
        sc = self.scorer
        config = [sc.base_url, sc.model, sc.api, sc.normalize, sc.template, sc.attributes, sc.label]
        return _cache_key(self.name, {"scorer": config}, record, response)

    def verify(self, record: dict, response: dict) -> Verdict:
        return self.verify_many([(record, response)])[0]

    def verify_many(self, pairs: Iterable[tuple[dict, dict]]) -> list[Verdict]:
        pairs = list(pairs)
        out: list[Verdict | None] = [None] * len(pairs)
        todo = []
        for i, (record, response) in enumerate(pairs):
            if not answer_part(response):
                out[i] = Verdict(0.0, False, "empty_answer", {"message": "no answer part to score"}, self.name)
            else:
                todo.append(i)
        try:
            scores = self.scorer.score_pairs([(pairs[i][0].get("problem") or "", answer_part(pairs[i][1])) for i in todo])
        except RewardRequestError as exc:
            if len(todo) > 1:  # find the input the server rejected: score one by one
                for i in todo:
                    out[i] = self.verify(*pairs[i])
                return out  # type: ignore[return-value]
            scores = []
            for i in todo:
                out[i] = Verdict(0.0, False, "reward_error", {"error": str(exc)}, self.name)
            todo = []
        for i, sc in zip(todo, scores):
            category = pairs[i][0].get("category")
            thr = _threshold(self.thresholds, category)
            ok = sc.score > thr
            details = {"raw": sc.raw, "threshold": thr, "category": category, "model": self.scorer.model}
            if sc.attributes:
                details["attributes"] = sc.attributes
            out[i] = Verdict(sc.score, ok, "reward_pass" if ok else "reward_low", details, self.name)
        return out  # type: ignore[return-value]


# --- LLM judge -------------------------------------------------------------------------------

JUDGE_SYSTEM = (
    "You are a strict, fair grader of answers to user requests. You judge only the final answer shown, "
    "not any reasoning that may have led to it."
)
JUDGE_RUBRIC = """Rate the response to the problem on this 0-5 scale:
5 = fully correct, complete, clear and helpful; nothing to fix
4 = correct and helpful, with minor omissions or style issues
3 = mostly correct but with a noticeable gap or imprecision
2 = partly correct; important errors or missing parts
1 = mostly wrong, off-topic, or unhelpful
0 = empty, nonsensical, harmful, or entirely wrong

[Problem]
{problem}
{reference_block}
[Response]
{answer}

First explain your judgment in a few sentences. Then end with a last line of the form
Score: <0-5>"""

MATH_JUDGE_PROMPT = """Decide whether the candidate's final answer is mathematically equivalent to the reference answer.
Ignore formatting differences (LaTeX, units written out, equivalent forms, order of a set of values).
Judge only the final answer, not the method.

[Problem]
{problem}

[Reference answer]
{reference}

[Candidate response]
{answer}

Explain briefly, then end with a last line that is exactly one of:
Verdict: EQUIVALENT
Verdict: NOT_EQUIVALENT"""


class JudgeParseError(RuntimeError):
    """The judge's reply holds no readable score or verdict."""


_THINK_BLOCK = re.compile(r"<think>(.*?)</think>", re.S)
_SCORE_PATTERNS = (
    re.compile(r'"score"\s*:\s*"?(\d+(?:\.\d+)?)'),
    re.compile(r"\[\[\s*(\d+(?:\.\d+)?)\s*\]\]"),
    re.compile(r"(?i)\b(?:final\s+)?(?:score|rating|grade)\s*(?:\*\*)?\s*[:=]\s*(?:\*\*)?\s*(\d+(?:\.\d+)?)"),
    re.compile(r"(?i)\b(\d+(?:\.\d+)?)\s*(?:/\s*5|out\s+of\s+5)\b"),
)


def split_reasoning(reply: str) -> tuple[str, str]:
    """(reasoning in ``<think>`` blocks, the rest): a reasoning judge's thoughts are not its verdict."""
    thoughts = "\n".join(m.strip() for m in _THINK_BLOCK.findall(reply))
    rest = _THINK_BLOCK.sub("", reply)
    if "</think>" in rest:  # an opening tag swallowed by the chat template
        head, rest = rest.rsplit("</think>", 1)
        thoughts = (thoughts + "\n" + head).strip()
    return thoughts, rest.strip()


def parse_judge_score(reply: str, max_score: float = 5.0) -> float:
    """The 0–``max_score`` score in a judge reply: JSON ``"score"``, ``[[4]]``, ``Score: 4``,
    ``4/5``, or a last line that is a bare number; the last match of the first pattern
    found wins (judges restate the rubric before scoring)."""
    _, text = split_reasoning(reply)
    for pat in _SCORE_PATTERNS:
        hits = pat.findall(text)
        if hits:
            value = float(hits[-1])
            if 0 <= value <= max_score:
                return value
    lines = [ln.strip(" *.`") for ln in text.strip().splitlines() if ln.strip()]
    if lines and re.fullmatch(r"\d+(?:\.\d+)?", lines[-1]) and 0 <= float(lines[-1]) <= max_score:
        return float(lines[-1])
    raise JudgeParseError(f"no 0-{max_score:g} score in the judge reply: {text[-200:]!r}")


def parse_equivalence(reply: str) -> bool:
    """The math judge's verdict: ``Verdict: EQUIVALENT`` / ``NOT_EQUIVALENT`` (or yes/no, true/false)."""
    _, text = split_reasoning(reply)
    hits = re.findall(r"(?i)verdict\s*[:=]\s*\**\s*(not[_ ]equivalent|equivalent|yes|no|true|false|correct|incorrect)", text)
    if not hits:
        hits = re.findall(r'(?i)"equivalent"\s*:\s*(true|false)', text)
    if not hits:
        hits = re.findall(r"(?i)\[\[\s*(yes|no)\s*\]\]", text)
    if not hits:
        last = text.strip().splitlines()[-1].strip(" *.`").lower() if text.strip() else ""
        if last in ("yes", "no", "equivalent", "not equivalent", "not_equivalent"):
            hits = [last]
    if not hits:
        raise JudgeParseError(f"no EQUIVALENT / NOT_EQUIVALENT verdict in the judge reply: {text[-200:]!r}")
    return hits[-1].lower().replace(" ", "_") in ("equivalent", "yes", "true", "correct")


class _ChatClient:
    """Just enough of an OpenAI-compatible chat client for judging (sync, retrying)."""

    def __init__(self, base_url: str, model: str, api_key_env: str | None, temperature: float,
                 max_tokens: int, timeout: float, max_retries: int, backoff: float, what: str):
        base = base_url.rstrip("/")
        self.path = "/chat/completions" if base.endswith("/v1") else "/v1/chat/completions"
        self.model = model
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.http = _JsonHttp(
            base, api_key_env, timeout, max_retries, backoff, what=what,
            hint="Start an OpenAI-compatible server (e.g. `vllm serve MODEL`) or fix the judge base_url in the "
            "pipeline YAML.",
        )

    def ask(self, system: str | None, user: str) -> tuple[str, str]:
        """(content, reasoning_content or '')."""
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
        body = self.http.post(self.path, {
            "model": self.model, "messages": messages,
            "temperature": self.temperature, "max_tokens": self.max_tokens,
        })
        try:
            msg = body["choices"][0]["message"]
        except (KeyError, IndexError, TypeError) as exc:
            raise RewardRequestError(f"{self.http.what}: no choices[0].message in reply: {str(body)[:200]}") from exc
        return msg.get("content") or "", msg.get("reasoning_content") or msg.get("reasoning") or ""


@dataclass(frozen=True)
class JudgeResult:
    score: float  # 0-5 as the judge gave it
    normalized: float  # score / 5
    reasoning: str


class JudgeSettings(BaseModel):
    """``verify.judge`` in the pipeline YAML."""

    model_config = ConfigDict(extra="forbid")

    base_url: str
    model: str
    api_key_env: str | None = None
    temperature: float = 0.0
    max_tokens: int = 2048
    concurrency: int = 4
    timeout: float = 300.0
    max_retries: int = 5
    backoff: float = 0.5
    thresholds: dict[str, float] = dict(DEFAULT_THRESHOLDS)


class JudgeScorer:
    """An LLM judge scoring the answer part 0–5 over ``/v1/chat/completions``.

    Also a verifier (``name = "judge"``): the score is normalized to [0, 1] and compared
    with the category threshold; the judge's reasoning goes to ``details["reasoning"]``.
    The reference answer, when the record has one, is shown to the judge.
    """

    name: ClassVar[str] = "judge"

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str | None = None,
        *,
        temperature: float = 0.0,
        max_tokens: int = 2048,
        concurrency: int = 4,
        timeout: float = 300.0,
        max_retries: int = 5,
        backoff: float = 0.5,
        thresholds: dict[str, float] | None = None,
    ):
        self.model = model
        self.concurrency = max(1, concurrency)
        self.thresholds = dict(DEFAULT_THRESHOLDS if thresholds is None else thresholds)
        self.chat = _ChatClient(base_url, model, api_key_env, temperature, max_tokens, timeout, max_retries, backoff,
                                what=f"judge {model!r}")

    @classmethod
    def from_settings(cls, settings: JudgeSettings | dict) -> "JudgeScorer":
        s = settings if isinstance(settings, JudgeSettings) else JudgeSettings(**settings)
        kw = s.model_dump(exclude={"base_url", "model", "api_key_env"})
        return cls(s.base_url, s.model, s.api_key_env, **kw)

    def score(self, problem: str, answer: str, reference: str | None = None) -> JudgeResult:
        ref = f"\n[Reference answer]\n{reference}\n" if reference else ""
        content, reasoning = self.chat.ask(JUDGE_SYSTEM, JUDGE_RUBRIC.format(problem=problem, reference_block=ref, answer=answer))
        value = parse_judge_score(content)
        thoughts, visible = split_reasoning(content)
        full = "\n".join(x for x in (reasoning, thoughts, visible) if x).strip()
        return JudgeResult(value, value / 5.0, full)

    def cache_key(self, record: dict, response: dict) -> str:
        return _cache_key(self.name, {"model": self.model, "rubric": JUDGE_RUBRIC, "ref": record.get("reference_answer")},
                          record, response)

    def verify(self, record: dict, response: dict) -> Verdict:
        answer = answer_part(response)
        if not answer:
            return Verdict(0.0, False, "empty_answer", {"message": "no answer part to judge"}, self.name)
        category = record.get("category")
        thr = _threshold(self.thresholds, category)
        try:
            res = self.score(record.get("problem") or "", answer, record.get("reference_answer"))
        except JudgeParseError as exc:
            return Verdict(0.0, False, "judge_unparsed", {"error": str(exc)}, self.name)
        except RewardRequestError as exc:
            return Verdict(0.0, False, "judge_error", {"error": str(exc)}, self.name)
        ok = res.normalized > thr
        details = {"judge_score": res.score, "threshold": thr, "category": category, "model": self.model,
                   "reasoning": res.reasoning}
        return Verdict(res.normalized, ok, "judge_pass" if ok else "judge_low", details, self.name)

    def verify_many(self, pairs: Iterable[tuple[dict, dict]]) -> list[Verdict]:
        pairs = list(pairs)
        if len(pairs) <= 1 or self.concurrency == 1:
            return [self.verify(r, s) for r, s in pairs]
        with ThreadPoolExecutor(min(self.concurrency, len(pairs))) as ex:
            return list(ex.map(lambda p: self.verify(*p), pairs))


class MathJudge:
    """``(problem, reference, answer) -> (is_equivalent, reasoning)``: the math verifier's fallback."""

    def __init__(self, base_url: str, model: str, api_key_env: str | None = None, *,
                 max_tokens: int = 2048, timeout: float = 300.0, max_retries: int = 5, backoff: float = 0.5):
        self.chat = _ChatClient(base_url, model, api_key_env, 0.0, max_tokens, timeout, max_retries, backoff,
                                what=f"math judge {model!r}")

    def __call__(self, problem: str, reference: str, answer: str) -> tuple[bool, str]:
        content, reasoning = self.chat.ask(None, MATH_JUDGE_PROMPT.format(problem=problem, reference=reference, answer=answer))
        ok = parse_equivalence(content)
        thoughts, visible = split_reasoning(content)
        return ok, "\n".join(x for x in (reasoning, thoughts, visible) if x).strip()


def math_judge(base_url: str, model: str, api_key_env: str | None = None, **kw: Any) -> MathJudge:
    """The LLM fallback for ``MathVerifier(judge=...)``; see :class:`MathJudge`."""
    return MathJudge(base_url, model, api_key_env, **kw)
