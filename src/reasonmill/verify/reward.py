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

Every request goes through the generation client's machinery
(:class:`reasonmill.llm.sync_client.SyncModelClient`): chat requests through
``ChatClient``, the reward APIs through ``JsonClient``; both look the request up in the
LLM response cache first (``<cache_dir>/llm_cache.sqlite`` when a ``cache_path`` is
given), so a re-run pays for nothing twice, and retry 429, 5xx, timeouts and refused
connections with exponential backoff, honouring ``Retry-After``. When the endpoint stays
unreachable, or refuses the key or the URL, :class:`RewardEndpointError` names the URL and
what to do: an infrastructure failure stops the run, it never becomes a score. Clients
start lazily and are dropped on pickling, so the scorers travel to worker processes.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterable, Literal, Sequence

from pydantic import BaseModel, ConfigDict

from reasonmill.llm.client import ClientConfig, Failure
from reasonmill.llm.sync_client import Endpoint, ModelEndpointError, SyncModelClient
from reasonmill.llm.transport import Timeouts
from reasonmill.verify.base import Verdict

#: SPEC §1 item 8, on scores normalized to [0, 1]; "default" covers every other category
DEFAULT_THRESHOLDS: dict[str, float] = {"math": 0.99, "code": 0.99, "science": 4.99 / 5, "default": 0.7}
#: Decision-Tree-Reward-Llama-3.1-8B attribute order (HelpSteer2), each on a 0–4 scale
DT_REWARD_ATTRIBUTES = ("helpfulness", "correctness", "coherence", "complexity", "verbosity")
DT_REWARD_WEIGHTS = {"coherence": 1.0, "correctness": 1.0, "helpfulness": 1.0}

RewardApi = Literal["vllm-reward", "vllm-pooling", "vllm-classify", "vllm-score", "tei", "tei-rerank"]
Normalize = Literal["auto", "none", "sigmoid", "range", "attributes"]
API_PATHS: dict[str, str] = {
    "vllm-reward": "/pooling",
    "vllm-pooling": "/pooling",
    "vllm-classify": "/classify",
    "vllm-score": "/score",
    "tei": "/predict",
    "tei-rerank": "/rerank",
}

#: the endpoint cannot be reached, keeps failing, or refuses the key or URL: the run stops
RewardEndpointError = ModelEndpointError


class RewardRequestError(RuntimeError):
    """The endpoint rejected one request (a 4xx other than 429), or replied in a shape we cannot read."""


def _client(
    base_url: str,
    model: str,
    api_key_env: str | None,
    cache_path: str | Path | None,
    *,
    what: str,
    hint: str,
    timeout: float,
    max_retries: int,
    backoff: float,
    concurrency: int,
    temperature: float = 0.0,
    max_tokens: int = 1,
) -> SyncModelClient:
    config = ClientConfig(
        base_url=base_url,
        model=model,
        temperature=temperature,
        top_p=1.0,
        max_tokens=max_tokens,
        concurrency=max(1, concurrency),
        max_retries=max_retries,
        backoff_base=backoff,
        timeouts=Timeouts(connect=min(10.0, timeout), read=timeout),
    )
    return SyncModelClient(config, cache_path, api_key_env=api_key_env, what=what, hint=hint)


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

    APIS: ClassVar[tuple[str, ...]] = tuple(API_PATHS)

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
        cache_path: str | Path | None = None,
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
            raise ValueError(
                "normalize='attributes' needs the attribute names in output order, "
                f"e.g. {list(DT_REWARD_ATTRIBUTES)}"
            )
        self.normalize = normalize
        self.label = label
        self.label_index = label_index
        self.template = template
        self.batch_size = max(1, batch_size)
        self.client = _client(
            self.base_url,
            model,
            api_key_env,
            cache_path,
            timeout=timeout,
            max_retries=max_retries,
            backoff=backoff,
            concurrency=concurrency,
            what=f"reward model {model!r} ({api})",
            hint="Start the reward server (e.g. `vllm serve MODEL --runner pooling`, or TEI for /predict and "
            "/rerank) or fix verify.reward.base_url in the pipeline YAML.",
        )

    def close(self) -> None:
        self.client.close()

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
            jobs = [
                idx[k : k + self.batch_size]
                for idx in by_problem.values()
                for k in range(0, len(idx), self.batch_size)
            ]
        else:
            jobs = [
                list(range(k, min(k + self.batch_size, len(pairs))))
                for k in range(0, len(pairs), self.batch_size)
            ]
        path = API_PATHS[self.api]
        batches = [[pairs[i] for i in idx] for idx in jobs]
        replies = self.client.post_many(path, [self._payload(batch) for batch in batches])
        raws: list[Any] = [None] * len(pairs)
        for idx, batch, reply in zip(jobs, batches, replies):
            if isinstance(reply, Failure):
                raise RewardRequestError(f"reward model {self.model!r}: {reply.message}")
            try:
                values = self._values(reply, batch)
            except (KeyError, IndexError, TypeError, ValueError) as exc:
                raise RewardRequestError(
                    f"reward model {self.model!r}: unexpected reply from {self.base_url}{path} "
                    f"({type(exc).__name__}: {exc}): {str(reply)[:200]}"
                ) from exc
            if len(values) != len(idx):
                raise RewardRequestError(
                    f"reward model {self.model!r}: {len(values)} scores for {len(idx)} inputs "
                    f"from {self.base_url}"
                )
            for i, v in zip(idx, values):
                raws[i] = v
        return [self._normalize(v) for v in raws]

    # -- requests per API ----------------------------------------------------------------------

    def _text(self, problem: str, answer: str) -> str:
        return self.template.format(problem=problem, answer=answer)

    def _payload(self, batch: list[tuple[str, str]]) -> dict:
        api, model = self.api, self.model
        if api == "vllm-reward":
            ((problem, answer),) = batch
            # one chat per request, so the server applies the model's chat template
            return {
                "model": model,
                "messages": [{"role": "user", "content": problem}, {"role": "assistant", "content": answer}],
            }
        if api in ("vllm-pooling", "vllm-classify"):
            return {"model": model, "input": [self._text(p, a) for p, a in batch]}
        if api == "vllm-score":
            return {"model": model, "text_1": [p for p, _ in batch], "text_2": [a for _, a in batch]}
        if api == "tei":
            return {"inputs": [[p, a] for p, a in batch], "raw_scores": False}
        if api == "tei-rerank":
            return {"query": batch[0][0], "texts": [a for _, a in batch], "raw_scores": False}
        raise AssertionError(api)

    def _values(self, body: Any, batch: list[tuple[str, str]]) -> list[Any]:
        """The raw score of each input of ``batch`` in ``body``, the server's reply."""
        api = self.api
        if api in ("vllm-reward", "vllm-pooling"):
            return [self._pooling_value(d) for d in self._data(body)]
        if api == "vllm-classify":
            return [self._classify_value(d) for d in self._data(body)]
        if api == "vllm-score":
            return [float(d["score"]) for d in self._data(body)]
        if api == "tei":
            if batch and body and isinstance(body[0], dict):  # a single input comes back unnested
                body = [body]
            return [self._tei_label_value(preds) for preds in body]
        if api == "tei-rerank":
            out: list[Any] = [None] * len(batch)
            for rank in body:
                out[int(rank["index"])] = float(rank["score"])
            return out
        raise AssertionError(api)

    def _data(self, body: Any) -> list[dict]:
        try:
            data = sorted(body["data"], key=lambda d: d.get("index", 0))
        except (TypeError, KeyError) as exc:
            raise RewardRequestError(
                f"reward model {self.model!r}: no 'data' list in reply from {self.base_url}: "
                f"{str(body)[:200]}"
            ) from exc
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
                f"reward model {self.model!r} returns labels {[p['label'] for p in preds]}: "
                "set `label` to the one to score"
            )
        for p in preds:
            if p["label"] == self.label:
                return float(p["score"])
        raise RewardRequestError(
            f"label {self.label!r} not among {[p['label'] for p in preds]} from {self.base_url}"
        )

    # -- normalization -----------------------------------------------------------------------

    def _normalize(self, raw: float | list[float]) -> RewardScore:
        if isinstance(raw, list):
            if self.normalize != "attributes":
                raise RewardRequestError(
                    f"reward model {self.model!r} returned {len(raw)} values per answer; "
                    "set normalize='attributes' and attributes=[names in output order] "
                    f"(Decision-Tree-Reward: {list(DT_REWARD_ATTRIBUTES)})"
                )
            if len(raw) < len(self.attributes or ()):
                raise RewardRequestError(
                    f"{len(raw)} values but {len(self.attributes or ())} attribute names"
                )
            attrs = dict(zip(self.attributes or (), raw))
            total = sum(w * attrs.get(name, 0.0) for name, w in self.attribute_weights.items())
            return RewardScore(_clip01(total / self.attribute_scale), raw, attrs)
        if self.normalize == "attributes":
            raise RewardRequestError(
                f"reward model {self.model!r} returned one value, but attributes are configured"
            )
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
    payload = json.dumps(
        [name, config, record.get("problem"), answer_part(response)], ensure_ascii=False, default=str
    )
    return hashlib.blake2b(payload.encode("utf-8"), digest_size=16).hexdigest()


class RewardVerifier:
    """``verify(record, response)``: the reward of the answer part against the category threshold.

    ``verify_many`` scores many pairs in batched requests. Verdict reasons:
    ``reward_pass``, ``reward_low``, ``empty_answer``, ``reward_error`` (the server
    rejected this input). An unreachable server raises :class:`RewardEndpointError`.
    """

    name: ClassVar[str] = "reward"
    #: bump when scoring changes, so cached verdicts are recomputed
    version: ClassVar[str] = "2"

    def __init__(self, scorer: HttpRewardScorer, thresholds: dict[str, float] | None = None):
        self.scorer = scorer
        self.thresholds = dict(DEFAULT_THRESHOLDS if thresholds is None else thresholds)

    @classmethod
    def from_settings(
        cls, settings: RewardSettings | dict, cache_path: str | Path | None = None
    ) -> "RewardVerifier":
        """``cache_path``: the LLM response cache (``<cache_dir>/llm_cache.sqlite``); None: no cache."""
        s = settings if isinstance(settings, RewardSettings) else RewardSettings(**settings)
        kw = s.model_dump(exclude={"base_url", "model", "api", "api_key_env", "normalize", "thresholds"})
        scorer = HttpRewardScorer(
            s.base_url, s.model, s.api, s.api_key_env, s.normalize, cache_path=cache_path, **kw
        )
        return cls(scorer, s.thresholds)

    @staticmethod
    def endpoints(settings: RewardSettings | dict) -> list[Endpoint]:
        """``(base_url, api_key_env)`` of every endpoint these settings call (for a preflight check)."""
        s = settings if isinstance(settings, RewardSettings) else RewardSettings(**settings)
        return [(s.base_url, s.api_key_env)]

    def close(self) -> None:
        self.scorer.close()

    def cache_key(self, record: dict, response: dict) -> str:
        sc = self.scorer
        config = {
            "version": self.version,
            "model": sc.model,
            "api": sc.api,
            "template": sc.template,
            "normalize": sc.normalize,
            "score_range": sc.score_range,
            "attributes": sc.attributes,
            "attribute_weights": sc.attribute_weights,
            "attribute_scale": sc.attribute_scale,
            "label": sc.label,
            "label_index": sc.label_index,
            "thresholds": self.thresholds,
        }
        return _cache_key(self.name, config, record, response)

    def verify(self, record: dict, response: dict) -> Verdict:
        return self.verify_many([(record, response)])[0]

    def verify_many(self, pairs: Iterable[tuple[dict, dict]]) -> list[Verdict]:
        pairs = list(pairs)
        out: list[Verdict | None] = [None] * len(pairs)
        todo = []
        for i, (record, response) in enumerate(pairs):
            if not answer_part(response):
                out[i] = Verdict(
                    0.0, False, "empty_answer", {"message": "no answer part to score"}, self.name
                )
            else:
                todo.append(i)
        try:
            scores = self.scorer.score_pairs(
                [(pairs[i][0].get("problem") or "", answer_part(pairs[i][1])) for i in todo]
            )
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
    hits = re.findall(
        r"(?i)verdict\s*[:=]\s*\**\s*(not[_ ]equivalent|equivalent|yes|no|true|false|correct|incorrect)", text
    )
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


_JUDGE_HINT = (
    "Start an OpenAI-compatible server (e.g. `vllm serve MODEL`) or fix the judge base_url in the "
    "pipeline YAML."
)


def _messages(system: str | None, user: str) -> list[dict]:
    return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]


def _judge_text(reply: dict | Failure, what: str) -> tuple[str, str]:
    """(the judge's visible reply, all its reasoning) from a chat response record.

    A ``Failure`` here is a request the server rejected (a 400, a context-length error);
    unreachable servers raised already."""
    if isinstance(reply, Failure):
        raise RewardRequestError(f"{what}: {reply.reason}: {reply.message[:300]}")
    visible = reply.get("answer") or ""
    reasoning = "\n".join(x for x in (reply.get("think"), visible) if x).strip()
    return visible, reasoning


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
    #: bump when judging changes, so cached verdicts are recomputed
    version: ClassVar[str] = "2"

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
        cache_path: str | Path | None = None,
    ):
        self.model = model
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.thresholds = dict(DEFAULT_THRESHOLDS if thresholds is None else thresholds)
        self.what = f"judge {model!r}"
        self.client = _client(
            base_url,
            model,
            api_key_env,
            cache_path,
            what=self.what,
            hint=_JUDGE_HINT,
            timeout=timeout,
            max_retries=max_retries,
            backoff=backoff,
            concurrency=concurrency,
            temperature=temperature,
            max_tokens=max_tokens,
        )

    @classmethod
    def from_settings(
        cls, settings: JudgeSettings | dict, cache_path: str | Path | None = None
    ) -> "JudgeScorer":
        """``cache_path``: the LLM response cache (``<cache_dir>/llm_cache.sqlite``); None: no cache."""
        s = settings if isinstance(settings, JudgeSettings) else JudgeSettings(**settings)
        kw = s.model_dump(exclude={"base_url", "model", "api_key_env"})
        return cls(s.base_url, s.model, s.api_key_env, cache_path=cache_path, **kw)

    @staticmethod
    def endpoints(settings: JudgeSettings | dict) -> list[Endpoint]:
        """``(base_url, api_key_env)`` of every endpoint these settings call (for a preflight check)."""
        s = settings if isinstance(settings, JudgeSettings) else JudgeSettings(**settings)
        return [(s.base_url, s.api_key_env)]

    def close(self) -> None:
        self.client.close()

    @staticmethod
    def _prompt(problem: str, answer: str, reference: str | None) -> list[dict]:
        ref = f"\n[Reference answer]\n{reference}\n" if reference else ""
        return _messages(
            JUDGE_SYSTEM, JUDGE_RUBRIC.format(problem=problem, reference_block=ref, answer=answer)
        )

    def _result(self, reply: dict | Failure) -> JudgeResult:
        visible, reasoning = _judge_text(reply, self.what)
        value = parse_judge_score(visible)
        return JudgeResult(value, value / 5.0, reasoning)

    def score(self, problem: str, answer: str, reference: str | None = None) -> JudgeResult:
        (reply,) = self.client.complete_many([self._prompt(problem, answer, reference)])
        return self._result(reply)

    def cache_key(self, record: dict, response: dict) -> str:
        config = {
            "version": self.version,
            "model": self.model,
            "system": JUDGE_SYSTEM,
            "rubric": JUDGE_RUBRIC,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "thresholds": self.thresholds,
            "ref": record.get("reference_answer"),
        }
        return _cache_key(self.name, config, record, response)

    def verify(self, record: dict, response: dict) -> Verdict:
        return self.verify_many([(record, response)])[0]

    def verify_many(self, pairs: Iterable[tuple[dict, dict]]) -> list[Verdict]:
        """All judge requests of ``pairs`` at once (``concurrency`` in flight, cached)."""
        pairs = list(pairs)
        out: list[Verdict | None] = [None] * len(pairs)
        todo = []
        for i, (_, response) in enumerate(pairs):
            if answer_part(response):
                todo.append(i)
            else:
                out[i] = Verdict(
                    0.0, False, "empty_answer", {"message": "no answer part to judge"}, self.name
                )
        prompts = [
            self._prompt(
                pairs[i][0].get("problem") or "",
                answer_part(pairs[i][1]),
                pairs[i][0].get("reference_answer"),
            )
            for i in todo
        ]
        for i, reply in zip(todo, self.client.complete_many(prompts)):
            out[i] = self._verdict(pairs[i][0], reply)
        return out  # type: ignore[return-value]

    def _verdict(self, record: dict, reply: dict | Failure) -> Verdict:
        category = record.get("category")
        thr = _threshold(self.thresholds, category)
        try:
            res = self._result(reply)
        except JudgeParseError as exc:
            return Verdict(0.0, False, "judge_unparsed", {"error": str(exc)}, self.name)
        except RewardRequestError as exc:
            return Verdict(0.0, False, "judge_error", {"error": str(exc)}, self.name)
        ok = res.normalized > thr
        details = {
            "judge_score": res.score,
            "threshold": thr,
            "category": category,
            "model": self.model,
            "reasoning": res.reasoning,
        }
        return Verdict(res.normalized, ok, "judge_pass" if ok else "judge_low", details, self.name)


class MathJudge:
    """``(problem, reference, answer) -> (is_equivalent, reasoning)``: the math verifier's fallback."""

    #: bump when judging changes; part of ``cache_key``
    version: ClassVar[str] = "1"

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str | None = None,
        *,
        temperature: float = 0.0,
        max_tokens: int = 2048,
        timeout: float = 300.0,
        max_retries: int = 5,
        backoff: float = 0.5,
        concurrency: int = 4,
        cache_path: str | Path | None = None,
    ):
        self.model = model
        self.what = f"math judge {model!r}"
        self.client = _client(
            base_url,
            model,
            api_key_env,
            cache_path,
            what=self.what,
            hint=_JUDGE_HINT,
            timeout=timeout,
            max_retries=max_retries,
            backoff=backoff,
            concurrency=concurrency,
            temperature=temperature,
            max_tokens=max_tokens,
        )

    def cache_key(self) -> str:
        """What decides this judge's verdicts (version, model, prompt), for a verifier's cache key."""
        payload = json.dumps([self.version, self.model, self.client.config.temperature, MATH_JUDGE_PROMPT])
        return hashlib.blake2b(payload.encode("utf-8"), digest_size=16).hexdigest()

    def close(self) -> None:
        self.client.close()

    def __call__(self, problem: str, reference: str, answer: str) -> tuple[bool, str]:
        prompt = MATH_JUDGE_PROMPT.format(problem=problem, reference=reference, answer=answer)
        (reply,) = self.client.complete_many([_messages(None, prompt)])
        visible, reasoning = _judge_text(reply, self.what)
        return parse_equivalence(visible), reasoning


def math_judge(
    base_url: str,
    model: str,
    api_key_env: str | None = None,
    *,
    cache_path: str | Path | None = None,
    **kw: Any,
) -> MathJudge:
    """The LLM fallback for ``MathVerifier(judge=...)``, from the ``verify.judge`` keys (``thresholds``
    does not apply); see :class:`MathJudge`."""
    s = JudgeSettings(base_url=base_url, model=model, api_key_env=api_key_env, **kw)
    return MathJudge(
        s.base_url,
        s.model,
        s.api_key_env,
        temperature=s.temperature,
        max_tokens=s.max_tokens,
        timeout=s.timeout,
        max_retries=s.max_retries,
        backoff=s.backoff,
        concurrency=s.concurrency,
        cache_path=cache_path,
    )
