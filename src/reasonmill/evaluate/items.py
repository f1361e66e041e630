"""Benchmark items ready to ask: the prompt, the reference and what the verifier needs.

Items come from the benchmark registry (Hub or local file), so evaluation and
decontamination read a benchmark the same way. Each benchmark is pinned by a content hash
of its items (ids, prompts, references, tests), and by the Hub revision when it has one.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import pickle
import random
import zlib
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from reasonmill.benchmarks.registry import BenchmarkError, load_benchmark, local_path, resolve_spec
from reasonmill.io.presets import Context, code_stdin
from reasonmill.verify.choice import LETTERS, choices_from_meta

from .protocol import CODE_FORMAT_STARTER, CODE_FORMAT_STDIN, GPQA_SEED, Protocol, protocol_for

#: fields a custom benchmark row may keep its options in
CHOICE_FIELDS = ("choices", "options")
#: where a local benchmark file may keep the question and the answer, tried after the
#: spec's own fields (unless the entry names its fields), so common eval files load as they are
TEXT_FALLBACK = ["problem", "question", "Question", "prompt", "input"]
ANSWER_FALLBACK = ["answer", "final_answer", "expected_answer", "gt", "Answer", "target"]


@dataclass
class EvalItem:
    """One question: ``messages`` are sent, ``reference``/``choices``/``tests`` score the reply."""

    benchmark: str
    item_id: str
    problem: str
    messages: list[dict]
    kind: str
    reference: str | None = None
    choices: dict[str, str] | None = None
    tests: list[dict] = field(default_factory=list)
    starter_code: str | None = None
    fn_name: str | None = None

    def record(self) -> dict:
        """The item as the verifiers' ``record`` argument."""
        meta: dict[str, Any] = {}
        if self.choices:
            meta["choices"] = self.choices
        if self.fn_name:
            meta["fn_name"] = self.fn_name
        return {"id": self.item_id, "problem": self.problem, "reference_answer": self.reference,
                "tests": self.tests, "starter_code": self.starter_code, "meta": meta}

    def pin(self) -> dict:
        """What the content hash covers."""
        return {"id": self.item_id, "messages": self.messages, "reference": self.reference,
                "choices": self.choices, "tests": self.tests}


@dataclass
class Benchmark:
    name: str
    protocol: Protocol
    items: list[EvalItem]
    source: dict

    @property
    def content_hash(self) -> str:
        h = hashlib.sha256()
        for item in self.items:
            h.update(json.dumps(item.pin(), sort_keys=True, ensure_ascii=False).encode())
            h.update(b"\n")
        return h.hexdigest()


def parse_entry(entry: str | dict) -> str | dict:
    """``NAME=PATH`` → ``{name, path}``; names and mappings pass through."""
    if isinstance(entry, str) and "=" in entry:
        name, _, path = entry.partition("=")
        return {"name": name.strip(), "path": path.strip()}
    return entry


def messages_for(prompt: str, system_prompt: str | None) -> list[dict]:
    msgs = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return msgs + [{"role": "user", "content": prompt}]


def gpqa_options(row: dict, item_id: str, seed: int) -> tuple[dict[str, str], str]:
    """GPQA's four answers in an order fixed by (seed, item id), and the right letter.

    Why shuffled: the dataset lists the correct answer first; why seeded per item: the same
    seed gives the same order on every run and machine, whatever the item order."""
    answers = [str(row["Correct Answer"]).strip()] + [str(row[f"Incorrect Answer {i}"]).strip() for i in (1, 2, 3)]
    order = list(range(4))
    random.Random(f"gpqa:{seed}:{item_id}").shuffle(order)
    options = {LETTERS[pos]: answers[i] for pos, i in enumerate(order)}
    return options, LETTERS[order.index(0)]


def _is_gpqa(row: dict) -> bool:
    """GPQA's shape: the right answer and three wrong ones in their own columns."""
    return "Correct Answer" in row and "Incorrect Answer 1" in row


def _row_choices(row: dict) -> dict[str, str] | None:
    for name in CHOICE_FIELDS:
        if row.get(name):
            return choices_from_meta(row[name])
    return None


def _options_text(options: dict[str, str]) -> str:
    return "\n".join(f"{letter}) {text}" for letter, text in options.items())


def _source(spec: Any, base_dir: Path) -> dict:
    """Where the items came from, pinned: the file and its hash, or the Hub dataset and the
    commit its revision resolved to (None when the Hub cannot be asked)."""
    path = local_path(spec, base_dir)
    if path is not None:
        return {"path": str(path), "file_sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    source = {"hf": spec.hf, "subset": spec.subset, "split": spec.split, "revision": spec.revision or "main"}
    try:
        from huggingface_hub import HfApi

        source["commit"] = HfApi().dataset_info(spec.hf, revision=spec.revision).sha
    except Exception:  # offline, or no huggingface_hub: the requested revision is what we know
        source["commit"] = None
    return source


def load_eval_benchmark(
    entry: str | dict,
    *,
    n: int | None = None,
    system_prompt: str | None = None,
    seed: int = GPQA_SEED,
    limit: int | None = None,
    date_from: date | None = None,
    date_to: date | None = None,
    base_dir: str | Path = ".",
) -> Benchmark:
    """One benchmark's items with prompts built by its protocol; ``n`` overrides its sample count."""
    entry = parse_entry(entry)
    spec_entry = {"name": entry} if isinstance(entry, str) else dict(entry)
    if resolve_spec(spec_entry).name == "livecodebench":
        spec_entry.setdefault("date_from", date_from)
        spec_entry.setdefault("date_to", date_to)
        spec_entry = {k: v for k, v in spec_entry.items() if v is not None}
    spec = resolve_spec(spec_entry)
    # not in a zip: its members are told apart by their fields (GPQA keeps two copies)
    plain_file = bool(spec.path) and not spec.path.lower().endswith(".zip")
    if plain_file and "field" not in spec_entry:
        spec.field = list(dict.fromkeys([*spec.field, *TEXT_FALLBACK]))
    if plain_file and "answer_field" not in spec_entry and spec.answer_field:
        spec.answer_field = list(dict.fromkeys([*spec.answer_field, *ANSWER_FALLBACK]))
    raw_items = load_benchmark(spec, base_dir, keep_row=True)
    if limit:
        raw_items = raw_items[:limit]
    has_choices = any(_is_gpqa(it["row"]) or _row_choices(it["row"]) for it in raw_items[:5])
    proto = protocol_for(spec.name, has_choices)
    if n:
        proto = Protocol(proto.kind, n, proto.template, proto.system_prompt)
    system = system_prompt if system_prompt is not None else proto.system_prompt
    items = [_item(spec.name, proto, it, system, seed) for it in raw_items]
    seen: dict[str, int] = {}
    for item in items:  # a repeated id (or none) must not merge two items' samples
        count = seen[item.item_id] = seen.get(item.item_id, 0) + 1
        if count > 1:
            item.item_id = f"{item.item_id}~{count}"
    return Benchmark(spec.name, proto, items, _source(spec, Path(base_dir)))


class _NoGlobals(pickle.Unpickler):
    """LiveCodeBench pickles its private tests (a JSON string); nothing but plain data may load."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refusing {module}.{name} in LiveCodeBench private tests")


def _decode_private(value: str) -> list:
    try:
        return json.loads(value)
    except ValueError:
        data = _NoGlobals(io.BytesIO(zlib.decompress(base64.b64decode(value)))).load()
        return json.loads(data)


def lcb_row(row: dict) -> dict:
    """A Hub ``code_generation_lite`` row in the shape the code preset reads: ``tests`` = public
    + private tests (LiveCodeBench scores on both), ``metadata`` parsed; other rows unchanged."""
    if "public_test_cases" not in row:
        return row
    tests = json.loads(row["public_test_cases"] or "[]") + _decode_private(row.get("private_test_cases") or "[]")
    meta = row.get("metadata")
    meta = json.loads(meta) if isinstance(meta, str) and meta.strip() else meta or {}
    return {**row, "problem": row.get("question_content"), "tests": tests, "metadata": meta}


def _item(name: str, proto: Protocol, raw: dict, system: str | None, seed: int) -> EvalItem:
    row, item_id, problem = raw["row"], raw["item_id"], raw["text"]
    if proto.kind == "code":
        rec = code_stdin(lcb_row(row), Context(source=name))
        starter = rec.get("starter_code")
        fmt = CODE_FORMAT_STARTER.format(starter=starter) if starter else CODE_FORMAT_STDIN
        prompt = proto.template.format(problem=problem, format=fmt)
        return EvalItem(name, item_id, problem, messages_for(prompt, system), "code", tests=rec["tests"],
                        starter_code=starter, fn_name=(rec.get("meta") or {}).get("fn_name"))
    if proto.kind == "choice":
        if _is_gpqa(row):
            options, reference = gpqa_options(row, item_id, seed)
        else:
            options, reference = _row_choices(row), raw["answer"]
            if not options:
                raise BenchmarkError(f"benchmark {name!r} item {item_id}: no choices among {CHOICE_FIELDS}")
        prompt = proto.template.format(problem=problem, options=_options_text(options))
        return EvalItem(name, item_id, problem, messages_for(prompt, system), "choice", reference, options)
    if raw["answer"] is None:
        raise BenchmarkError(f"benchmark {name!r} item {item_id}: no answer; set `answer_field:`")
    prompt = proto.template.format(problem=problem)
    return EvalItem(name, item_id, problem, messages_for(prompt, system), "math", raw["answer"])
