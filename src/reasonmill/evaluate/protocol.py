"""The evaluation protocol: per-benchmark defaults and the run's settings.

Why these defaults: the reference report (AM-DeepSeek-R1-Distilled) and DeepSeek-R1's
own evaluation sample at temperature 0.6 and top_p 0.95 with up to 32,768 new tokens,
and report mean pass@1 over 16 samples for AIME (30 items: one sample per item is too
noisy) and over 4 samples for the larger sets. DeepSeek-R1's usage notes ask for no
system prompt and, for math, the instruction "Please reason step by step, and put your
final answer within \\boxed{}." So a number produced here is comparable with theirs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

Kind = Literal["math", "choice", "code"]

MATH_TEMPLATE = "{problem}\n\nPlease reason step by step, and put your final answer within \\boxed{{}}."
CHOICE_TEMPLATE = (
    "{problem}\n\n{options}\n\n"
    "Please reason step by step, and put the letter of your final answer within \\boxed{{}}."
)
#: LiveCodeBench's own prompt (lcb_runner/prompts/code_generation.py, the generic model format)
CODE_TEMPLATE = (
    "You will be given a question (problem specification) and will generate a correct Python program "
    "that matches the specification and passes all tests.\n\nQuestion: {problem}\n\n{format}"
)
CODE_FORMAT_STARTER = (
    "You will use the following starter code to write the solution to the problem and enclose your "
    "code within delimiters.\n```python\n{starter}\n```"
)
CODE_FORMAT_STDIN = (
    "Read the inputs from stdin solve the problem and write the answer to stdout (do not directly test "
    "on the sample inputs). Enclose your code within delimiters as follows. Ensure that when the python "
    "program runs, it reads the inputs, runs the algorithm and writes output to STDOUT.\n"
    "```python\n# YOUR CODE HERE\n```"
)


@dataclass(frozen=True)
class Protocol:
    """How one benchmark is asked and scored."""

    kind: Kind
    n: int
    template: str
    system_prompt: str | None = None


#: the built-in benchmarks' protocols (AM / DeepSeek-R1: 16 samples for AIME, 4 otherwise)
PROTOCOLS: dict[str, Protocol] = {
    "aime24": Protocol("math", 16, MATH_TEMPLATE),
    "aime25": Protocol("math", 16, MATH_TEMPLATE),
    "math500": Protocol("math", 4, MATH_TEMPLATE),
    "gpqa_diamond": Protocol("choice", 4, CHOICE_TEMPLATE),
    "livecodebench": Protocol("code", 4, CODE_TEMPLATE),
}
#: a custom benchmark (``NAME=PATH``): math, or choice when its rows carry choices
CUSTOM_N = 4

#: LiveCodeBench v5's window (the one DeepSeek-R1 and the AM report used): 2024-08-01 to 2025-01-31
LCB_DATE_FROM = date(2024, 8, 1)
LCB_DATE_TO = date(2025, 1, 31)
#: GPQA's choices are shuffled with this seed unless the run sets another
GPQA_SEED = 0


class EvalConfig(BaseModel):
    """Everything of one evaluation; ``reasonmill eval --config FILE.yaml`` reads it, flags override."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = None
    base_url: str | None = None
    api_key_env: str | None = None
    #: names (``aime24``), ``NAME=PATH`` pairs, or registry mappings ``{name, path, field, ...}``
    benchmarks: list[str | dict[str, Any]] = Field(default_factory=lambda: ["aime24", "math500"])
    #: samples per item; None: each benchmark's default
    n: int | None = Field(None, ge=1)
    out: str = "eval_runs/latest"
    temperature: float = 0.6
    top_p: float = 0.95
    max_tokens: int = Field(32768, ge=1)
    system_prompt: str | None = None
    concurrency: int = Field(32, ge=1)
    max_retries: int = Field(8, ge=0)
    timeout: float = Field(3600.0, gt=0, description="seconds of silence before a request is retried")
    #: seeds the GPQA choice shuffle and the bootstrap
    seed: int = 0
    bootstrap: int = Field(2000, ge=100)
    #: the response cache (default: OUT/llm_cache.sqlite)
    cache: str | None = None
    #: only the first N items of each benchmark (a smoke run)
    limit: int | None = Field(None, ge=1)
    #: LiveCodeBench contest dates ``FROM:TO`` (inclusive; either side may be empty), or ``all``
    lcb_window: str = f"{LCB_DATE_FROM}:{LCB_DATE_TO}"
    #: math / choice verifier worker processes
    workers: int = Field(2, ge=1)
    #: a training export to cross-check the benchmark items against
    training_data: str | None = None

    @field_validator("lcb_window")
    @classmethod
    def _window_parses(cls, v: str) -> str:
        window_dates(v)
        return v

    def lcb_dates(self) -> tuple[date | None, date | None]:
        return window_dates(self.lcb_window)

    def cache_path(self) -> Path:
        return Path(self.cache) if self.cache else Path(self.out) / "llm_cache.sqlite"

    def sampling(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "top_p": self.top_p, "max_tokens": self.max_tokens}


def window_dates(window: str) -> tuple[date | None, date | None]:
    """``"2024-08-01:2025-01-31"`` → the two dates; ``"all"`` or an empty side → None."""
    if window.strip().lower() == "all":
        return None, None
    start, sep, end = window.partition(":")
    if not sep:
        raise ValueError(f"date window {window!r}: expected FROM:TO (ISO dates) or 'all'")
    return (date.fromisoformat(start) if start.strip() else None, date.fromisoformat(end) if end.strip() else None)


def load_config(path: str | Path | None, overrides: dict[str, Any]) -> EvalConfig:
    """The YAML's settings (if any), with the flags that were given on top."""
    data: dict[str, Any] = {}
    if path:
        loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: expected a mapping of eval settings")
        data.update(loaded)
    data.update({k: v for k, v in overrides.items() if v is not None})
    return EvalConfig(**data)


def protocol_for(name: str, has_choices: bool = False) -> Protocol:
    """A built-in benchmark's protocol; a custom one is math, or choice if its rows carry choices."""
    if name in PROTOCOLS:
        return PROTOCOLS[name]
    return Protocol("choice", CUSTOM_N, CHOICE_TEMPLATE) if has_choices else Protocol("math", CUSTOM_N, MATH_TEMPLATE)
