"""The label stage: category, language and difficulty, and down-sampling of easy items.

The reference labelled categories with an LLM classifier and used rules as a fallback;
here the rules are the default because they are free, deterministic and accurate on the
usual shapes (a problem with tests is code, one with ``\\boxed``/LaTeX/numbers is math).
Difficulty comes, in order of preference, from the record itself (kept as is), from the
pass rate of already-verified responses, or from an LLM rating on 5 levels over an
OpenAI-compatible endpoint (off by default: it costs a request per problem).

Easy items are down-sampled by a hash of the record id, so the same record is kept or
dropped on every run and on every engine, whatever the shard layout.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, Literal

from pydantic import Field

from reasonmill.llm.client import ClientConfig, Failure
from reasonmill.llm.sync_client import SyncModelClient, llm_cache_path
from reasonmill.records import is_unverified
from reasonmill.llm.transport import Timeouts
from reasonmill.stages.base import Resources, Stage, StageOutput, StageSettings, stage
from reasonmill.text import detect_language

# --- rule-based category classifier ----------------------------------------------------

# Everything below runs on the lower-cased text: single words are looked up in sets
# (one tokenization), phrases with substring tests (C speed, no regex alternation).
_WORD_RE = re.compile(r"[a-z]+")
_CODE_PHRASES = (
    "```",
    "class solution",
    "write a function",
    "write function",
    "write a python",
    "write a program",
    "write a c++",
    "write a java",
    "write an efficient",
    "write a recursive",
    "write a method",
    "implement a ",
    "implement an ",
    "implement the ",
    "standard input",
    "standard output",
    "sample input",
    "input format",
    "output format",
    "the first line contains",
    "the first line of input",
    "time limit",
    "0-indexed",
    "1-indexed",
    "function signature",
    "return true",
    "return false",
    "编写函数",
    "编写程序",
    "输入格式",
    "输出格式",
)
# Weak code signals: each also occurs in math or word problems, so two are needed.
_WEAK_CODE_PHRASES = (
    "return the ",
    "return an ",
    "return a ",
    "integer array",
    "array of integers",
    "array of strings",
    "binary string",
    "2d array",
    "2d integer array",
    "subarray",
    "substring",
    "0 <= ",
    "1 <= ",
    "string s",
    "integer n",
    "integer k",
)
_INDEX_RE = re.compile(r"\b[a-z_]\w*\[[ijk]\]")
_CODE_WORDS = frozenset(
    ["python", "stdin", "stdout", "javascript", "java", "cpp", "golang", "rust", "sql", "leetcode", "nums"]
)
_DEF_RE = re.compile(r"(?:^|\s)def \w+\(")
_SCIENCE_WORDS = frozenset(
    [
        "physics",
        "velocity",
        "acceleration",
        "force",
        "momentum",
        "energy",
        "kinetic",
        "electron",
        "proton",
        "neutron",
        "photon",
        "quantum",
        "magnetic",
        "electric",
        "charge",
        "voltage",
        "current",
        "resistance",
        "wavelength",
        "frequency",
        "temperature",
        "entropy",
        "thermodynamic",
        "thermodynamics",
        "gravity",
        "gravitational",
        "friction",
        "newton",
        "joule",
        "joules",
        "relativity",
        "chemistry",
        "chemical",
        "molecule",
        "molecules",
        "molecular",
        "reaction",
        "reactions",
        "compound",
        "compounds",
        "acid",
        "acids",
        "ph",
        "mole",
        "moles",
        "molar",
        "atom",
        "atoms",
        "atomic",
        "ion",
        "ions",
        "isotope",
        "bond",
        "bonds",
        "catalyst",
        "oxidation",
        "synthesis",
        "organic",
        "enthalpy",
        "biology",
        "biological",
        "cell",
        "cells",
        "protein",
        "proteins",
        "gene",
        "genes",
        "genetic",
        "dna",
        "rna",
        "enzyme",
        "enzymes",
        "organism",
        "organisms",
        "species",
        "mutation",
        "evolution",
        "bacteria",
        "virus",
        "tissue",
        "metabolism",
        "chromosome",
        "chromosomes",
        "allele",
        "alleles",
        "astronomy",
        "galaxy",
        "spectrum",
        "spectroscopy",
        "nmr",
    ]
)
_MATH_WORDS = frozenset(
    [
        "compute",
        "calculate",
        "evaluate",
        "simplify",
        "solve",
        "integer",
        "integers",
        "prime",
        "primes",
        "equation",
        "equations",
        "polynomial",
        "triangle",
        "circle",
        "probability",
        "sum",
        "product",
        "remainder",
        "digit",
        "digits",
        "fraction",
        "percent",
        "ratio",
        "area",
        "perimeter",
        "volume",
        "angle",
        "sequence",
        "maximum",
        "minimum",
        "divisible",
        "divisor",
        "divisors",
        "factorial",
        "inequality",
        "radius",
        "diameter",
        "rectangle",
        "square",
        "cube",
        "numbers",
        "number",
        "dollars",
        "cents",
        "total",
        "average",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
        "twelve",
        "twenty",
        "hundred",
        "thousand",
        "half",
        "twice",
        "ways",
        "arrangements",
        "per",
        "each",
        "times",
        "third",
        "quarter",
        "difference",
        "combined",
        "remaining",
    ]
)
_MATH_PHRASES = (
    "how many",
    "how much",
    "how old",
    "how long",
    "how far",
    "what fraction",
    "what percent",
    "what is the value",
)
_MATH_SYMBOLS = ("\\boxed", "$", "\\", "^", "求", "计算", "证明", "已知", "整数", "函数", "三角形", "概率")
# Words that hardly occur outside mathematics.
_STRONG_MATH_WORDS = frozenset(
    [
        "probability",
        "integer",
        "integers",
        "prime",
        "primes",
        "polynomial",
        "divisor",
        "divisors",
        "divisible",
        "factorial",
        "perimeter",
        "radius",
        "diameter",
        "equation",
        "equations",
        "remainder",
        "inequality",
        "digit",
        "digits",
        "reciprocal",
        "consecutive",
    ]
)
_CHOICE_RE = re.compile(r"(?:^|\s)\(?[a-d][).:]\s+\S")
_CHOICE_PHRASES = ("answer choices", "choose the correct", "which of the following")
_INSTRUCTION_PHRASES = (
    "write an essay",
    "write a poem",
    "write a story",
    "write a letter",
    "write an email",
    "write an e-mail",
    "write a blog",
    "write an article",
    "write a summary",
    "write a review",
    "write a speech",
    "write a song",
    "write a haiku",
    "write a limerick",
    "write a tweet",
    "write a paragraph",
    "write a report",
    "your response should",
    "your entire response",
    "your answer must",
    "wrap your entire",
    "do not use any commas",
    "all lowercase",
    "all capital letters",
    "bullet points",
    "in json format",
    "title wrapped",
    "highlight at least",
    "end your response with",
    "translate the following",
    "translate this",
    "paraphrase",
    "summarize",
)
_LENGTH_CONSTRAINT_RE = re.compile(
    r"\b(?:at most|at least|exactly|fewer than|less than|no more than|more than) \d+ "
    r"(?:words|sentences|paragraphs|bullet points|characters)\b"
)
_CHAT_PHRASES = (
    "can you",
    "could you",
    "would you",
    "do you",
    "are you",
    "tell me",
    "what do you think",
    "how do i",
    "how can i",
    "how should i",
    "i want",
    "i need",
    "help me",
    "explain",
    "recommend",
    "suggest",
    "advice",
    "your opinion",
    " i ",
    " my ",
    " me ",
    "i'm ",
    "i've ",
)
# A request or question in natural language starts like this.
_CHAT_START = (
    "hi",
    "hello",
    "hey",
    "thanks",
    "thank you",
    "how",
    "what",
    "why",
    "where",
    "when",
    "who",
    "which",
    "can ",
    "could ",
    "would ",
    "should ",
    "is ",
    "are ",
    "do ",
    "does ",
    "tell ",
    "give ",
    "make ",
    "create ",
    "write ",
    "describe ",
    "explain ",
    "list ",
    "help ",
    "please",
    "i ",
    "i'm",
    "my ",
    "let's",
    "imagine",
    "suppose",
)
_DIGIT_RE = re.compile(r"\d")
_NUMBER_RE = re.compile(r"\d+")


def classify_category(record: dict) -> str:
    """The category by rules: math, code, science, instruction, chat or other.

    Order matters: tests or starter code make a problem code whatever its text says
    (competitive-programming statements are full of math); a multiple-choice question
    with science vocabulary is science; IFEval-style constraints make instruction
    following; math signals (LaTeX, ``\\boxed``, math words with numbers, a short
    reference answer) make math; conversational phrasing makes chat.
    """
    if record.get("tests") or record.get("starter_code"):
        return "code"
    text = record.get("problem") or ""
    low = text[:4000].lower()
    words = set(_WORD_RE.findall(low))
    if words & _CODE_WORDS or any(p in low for p in _CODE_PHRASES) or _DEF_RE.search(low):
        return "code"
    if sum(p in low for p in _WEAK_CODE_PHRASES) + (_INDEX_RE.search(low) is not None) >= 2:
        return "code"
    science = len(words & _SCIENCE_WORDS)
    if science >= 2:
        choices = any(p in low for p in _CHOICE_PHRASES) or len(_CHOICE_RE.findall(low)) >= 2
        if choices or science >= 4:
            return "science"
    if any(p in low for p in _INSTRUCTION_PHRASES) or _LENGTH_CONSTRAINT_RE.search(low):
        return "instruction"
    # Math needs notation, or numbers together with math vocabulary: a chat message that
    # mentions "a million dollars" or asks "how much should I charge" is not math.
    numbers = len(_NUMBER_RE.findall(low))
    strong = sum(sym in low for sym in _MATH_SYMBOLS)
    vocab = len(words & _MATH_WORDS)
    phrases = sum(p in low for p in _MATH_PHRASES)
    if strong >= 2 or (strong and (numbers or vocab or phrases)):
        return "math"
    if (numbers >= 2 and (vocab or phrases)) or (numbers and vocab >= 2) or (phrases and (vocab or numbers)):
        return "math"
    if numbers >= 3 and low.rstrip().endswith("?"):  # a word problem
        return "math"
    if words & _STRONG_MATH_WORDS and (vocab >= 2 or numbers or phrases or "?" in low):
        return "math"
    if vocab >= 3 or (vocab >= 2 and low.rstrip().endswith("?")):
        return "math"
    answer = record.get("reference_answer")
    if answer and len(str(answer)) <= 40 and numbers:
        return "math"
    if science >= 2:
        return "science"
    if (
        low.lstrip().startswith(_CHAT_START)
        or any(p in low for p in _CHAT_PHRASES)
        or low.rstrip().endswith("?")
    ):
        return "chat"
    if strong or vocab >= 2 or (phrases and numbers):
        return "math"
    # Any other natural-language request or statement is general chat; "other" is left
    # for what is too short or not language at all.
    if len(words) >= 4:
        return "chat"
    return "other"


# --- difficulty ------------------------------------------------------------------------


def pass_rate_difficulty(pass_rate: float) -> float:
    """Map a pass rate in [0, 1] to difficulty 1..5: all pass → 1, none pass → 5."""
    return round(1.0 + 4.0 * (1.0 - pass_rate), 3)


def hash_fraction(record_id: str, seed: int) -> float:
    """A uniform number in [0, 1) fixed by the record id and the seed."""
    digest = hashlib.blake2b(f"{seed}\x00{record_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


_LLM_PROMPT = (
    "Rate the difficulty of the following problem on a scale from 1 (very easy, a single "
    "routine step) to 5 (very hard, competition or research level). Reply with the single "
    "digit only.\n\nProblem:\n{problem}"
)
_RATING_RE = re.compile(r"\b([1-5])\b")


class LLMDifficulty(StageSettings):
    """An OpenAI-compatible chat endpoint rating difficulty on 1..5."""

    base_url: str
    model: str
    api_key_env: str | None = Field(None, description="environment variable holding the API key")
    prompt: str = _LLM_PROMPT
    temperature: float = 0.0
    max_tokens: int = 8
    timeout_s: float = 60.0
    concurrency: int = 8
    retries: int = 2
    #: seconds before the first retry (doubled per retry, with jitter; ``Retry-After`` wins)
    backoff: float = Field(1.0, gt=0)


class DifficultySettings(StageSettings):
    method: Literal["keep", "pass_rate", "llm"] = "keep"
    #: replace a difficulty the record already has
    overwrite: bool = False
    #: pass_rate: a response passes when ``passed`` is True; need at least this many
    min_responses: int = 1
    llm: LLMDifficulty | None = None
    # flat form accepted for the LLM method: {method: llm, base_url: ..., model: ...}
    base_url: str | None = None
    model: str | None = None
    api_key_env: str | None = None

    def llm_settings(self) -> LLMDifficulty:
        if self.llm is not None:
            return self.llm
        if not self.base_url or not self.model:
            raise ValueError(
                "label.difficulty.method 'llm' needs base_url and model "
                "(e.g. difficulty: {method: llm, base_url: http://localhost:8000/v1, model: Qwen2.5-7B-Instruct})"
            )
        return LLMDifficulty(base_url=self.base_url, model=self.model, api_key_env=self.api_key_env)


class DownsampleEasy(StageSettings):
    max_difficulty: float = 2.0
    keep_fraction: float = Field(0.3, ge=0.0, le=1.0)
    seed: int = 0


class LabelSettings(StageSettings):
    #: label categories by rules; only records without a category unless ``overwrite``
    category: bool = True
    overwrite: bool = False
    #: label the language (zh / en / other); kept when already set unless ``overwrite``
    language: bool = True
    difficulty: DifficultySettings = DifficultySettings()
    downsample_easy: DownsampleEasy | None = None


@stage("label")
class Label(Stage):
    """Category, language and difficulty labels; deterministic down-sampling of easy items."""

    Settings = LabelSettings
    version = "1"

    def __init__(self, settings: Any = None, context: Any = None):
        super().__init__(settings, context)
        self._llm: LLMDifficulty | None = None
        self._client: SyncModelClient | None = None
        if self.settings.difficulty.method == "llm":
            self._llm = self.settings.difficulty.llm_settings()
            # network-bound: run in the driver with a thread pool, not in a process pool
            self.resources = Resources(cpus=0.1, concurrency=self._llm.concurrency, executor="inline")

    @classmethod
    def executor_for(cls, settings: LabelSettings) -> str:
        """LLM rating is network-bound and runs its own thread pool: keep it in the driver."""
        return "inline" if settings.difficulty.method == "llm" else cls.resources.executor

    def process(self, records: list[dict], index: Any = None) -> StageOutput:
        s = self.settings
        out = StageOutput()
        labelled = []
        for record in records:
            r = dict(record)
            if s.category and (s.overwrite or not r.get("category")):
                r["category"] = classify_category(r)
            if s.language and (s.overwrite or not r.get("language")):
                r["language"] = detect_language(r.get("problem"))
            if s.difficulty.method == "pass_rate":
                self._pass_rate(r)
            labelled.append(r)
        if self._llm is not None:
            self._rate_with_llm(labelled)
        ds = s.downsample_easy
        for r in labelled:
            d = r.get("difficulty")
            if ds is not None and d is not None and d <= ds.max_difficulty:
                u = hash_fraction(r["id"], ds.seed)
                if u >= ds.keep_fraction:
                    out.drop(
                        r,
                        "downsampled_easy",
                        f"difficulty {d:g} <= {ds.max_difficulty:g}: easy items are kept with "
                        f"probability {ds.keep_fraction:g} (seeded by id)",
                        difficulty=d,
                        hash_fraction=round(u, 6),
                        keep_fraction=ds.keep_fraction,
                        seed=ds.seed,
                    )
                    continue
            out.kept.append(r)
        return out

    # -- difficulty sources ------------------------------------------------------------

    def _pass_rate(self, r: dict) -> None:
        # unverified responses (no verifier for them) say nothing of difficulty
        judged = [resp.get("passed") for resp in r.get("responses") or []
                  if resp.get("passed") is not None and not is_unverified(resp)]
        if len(judged) < self.settings.difficulty.min_responses:
            return
        rate = sum(bool(p) for p in judged) / len(judged)
        meta = dict(r.get("meta") or {})
        meta["pass_rate"] = rate
        meta["pass_rate_k"] = len(judged)
        r["meta"] = meta
        if r.get("difficulty") is None or self.settings.difficulty.overwrite:
            r["difficulty"] = pass_rate_difficulty(rate)
            meta["difficulty_method"] = "pass_rate"

    def _rate_with_llm(self, records: list[dict]) -> None:
        """Rate the records without a difficulty through the LLM client (cached: a re-run pays nothing).

        A request the server rejects (a 400, a context-length error) leaves the record
        unrated with ``meta.difficulty_error``; an unreachable server raises."""
        todo = [r for r in records if r.get("difficulty") is None or self.settings.difficulty.overwrite]
        if not todo:
            return
        cfg = self._llm
        assert cfg is not None
        client = self._llm_client()
        prompts = [
            [{"role": "user", "content": cfg.prompt.format(problem=r.get("problem") or "")}] for r in todo
        ]
        for r, reply in zip(todo, client.complete_many(prompts)):
            meta = dict(r.get("meta") or {})
            if isinstance(reply, Failure):
                meta["difficulty_error"] = f"{cfg.base_url}: {reply.reason}: {reply.message[:200]}"
            else:
                content = reply.get("answer") or ""
                m = _RATING_RE.search(content)
                if m:
                    r["difficulty"] = float(m.group(1))
                    meta["difficulty_method"] = "llm"
                    meta.pop("difficulty_error", None)
                else:
                    meta["difficulty_error"] = f"no rating 1-5 in reply {content[:80]!r}"
            r["meta"] = meta

    def _llm_client(self) -> SyncModelClient:
        if self._client is None:
            cfg = self._llm
            assert cfg is not None
            config = ClientConfig(
                base_url=cfg.base_url, model=cfg.model, temperature=cfg.temperature, top_p=1.0,
                max_tokens=cfg.max_tokens, concurrency=max(1, cfg.concurrency), max_retries=cfg.retries,
                backoff_base=cfg.backoff,
                timeouts=Timeouts(connect=min(10.0, cfg.timeout_s), read=cfg.timeout_s),
            )
            self._client = SyncModelClient(
                config, llm_cache_path(self.context.cache_dir), api_key_env=cfg.api_key_env,
                what=f"label.difficulty (model {cfg.model!r})",
                hint="Start the server or fix label.difficulty.base_url in the pipeline YAML.",
            )
        return self._client

    @classmethod
    def endpoints(cls, settings: LabelSettings) -> list:
        """The LLM rating endpoint, when difficulty is rated by an LLM (for the preflight)."""
        from reasonmill.llm.preflight import endpoints_of

        if settings.difficulty.method != "llm":
            return []
        llm = settings.difficulty.llm_settings()
        return endpoints_of("label difficulty LLM", [(llm.base_url, llm.api_key_env)])

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
