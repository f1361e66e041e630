"""The record schema: one row per problem, with its responses.

Records travel between stages as plain ``dict`` objects (cheap to build, picklable,
easy to test) and rest on disk as Parquet with the Arrow schema below. ``to_table`` and
``from_table`` convert between the two; nothing else should know about Arrow.

Test kinds (``tests[i].kind``):

- ``stdin``: ``input`` is fed on stdin, ``output`` is the expected stdout.
- ``functional``: ``input`` is newline-separated JSON arguments, ``output`` is the JSON
  of the expected return value; the function name comes from ``meta.fn_name`` or the
  starter code (LiveCodeBench shape).
- ``assert``: ``input`` is Python code (asserts) run after the solution (MBPP,
  LeetCode-contest shape); ``output`` is unused.
- ``check``: ``input`` is Python code defining ``check(candidate)``; ``output`` is the
  expression naming the candidate, e.g. ``has_close_elements`` or
  ``Solution().twoSum`` (HumanEval, LeetCode shape).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Iterable

import orjson
import pyarrow as pa

CATEGORIES = ("math", "code", "science", "instruction", "chat", "other")
TEST_KINDS = ("stdin", "functional", "assert", "check")

TEST_TYPE = pa.struct([("input", pa.string()), ("output", pa.string()), ("kind", pa.string())])

RESPONSE_TYPE = pa.struct(
    [
        ("think", pa.string()),
        ("answer", pa.string()),
        ("raw", pa.string()),
        ("model", pa.string()),
        ("source", pa.string()),
        ("params", pa.string()),  # JSON
        ("request_id", pa.string()),
        ("tokens", pa.int64()),
        ("finish_reason", pa.string()),
        ("verify_score", pa.float64()),
        ("passed", pa.bool_()),
        ("verdicts", pa.string()),  # JSON list of verdicts
        ("meta", pa.string()),  # JSON, e.g. the upstream correctness label
    ]
)

SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("source", pa.string()),
        ("category", pa.string()),
        ("language", pa.string()),
        ("difficulty", pa.float64()),
        ("problem", pa.string()),
        ("reference_answer", pa.string()),
        ("tests", pa.list_(TEST_TYPE)),
        ("starter_code", pa.string()),
        ("responses", pa.list_(RESPONSE_TYPE)),
        ("meta", pa.string()),  # JSON
    ]
)

RESPONSE_FIELDS = tuple(f.name for f in RESPONSE_TYPE)
JSON_RESPONSE_FIELDS = ("params", "verdicts", "meta")


def stable_id(source: str, original_id: Any = None, text: str | None = None) -> str:
    """A stable 16-hex-digit id: hash of source + original id, or of source + text."""
    key = f"{source}\x00{original_id}" if original_id is not None else f"{source}\x00\x01{text or ''}"
    return hashlib.blake2b(key.encode("utf-8"), digest_size=8).hexdigest()


def new_response(
    raw: str | None = None,
    *,
    think: str | None = None,
    answer: str | None = None,
    model: str | None = None,
    source: str | None = None,
    params: dict | None = None,
    request_id: str | None = None,
    tokens: int | None = None,
    finish_reason: str | None = None,
    meta: dict | None = None,
    reasoning_content: str | None = None,
) -> dict:
    """Build a response dict; splits ``raw`` into think/answer when they are not given."""
    if think is None and answer is None:
        think, answer = split_think(raw or "", reasoning_content=reasoning_content)
    if raw is None:
        raw = join_think(think, answer)
    return {
        "think": think,
        "answer": answer,
        "raw": raw,
        "model": model,
        "source": source,
        "params": params or {},
        "request_id": request_id,
        "tokens": tokens,
        "finish_reason": finish_reason,
        "verify_score": None,
        "passed": None,
        "verdicts": [],
        "meta": meta or {},
    }


def new_record(
    *,
    source: str,
    problem: str,
    original_id: Any = None,
    category: str | None = None,
    language: str | None = None,
    difficulty: float | None = None,
    reference_answer: str | None = None,
    tests: list[dict] | None = None,
    starter_code: str | None = None,
    responses: list[dict] | None = None,
    meta: dict | None = None,
) -> dict:
    return {
        "id": stable_id(source, original_id, problem),
        "source": source,
        "category": category,
        "language": language,
        "difficulty": difficulty,
        "problem": problem,
        "reference_answer": None if reference_answer is None else str(reference_answer),
        "tests": tests or [],
        "starter_code": starter_code,
        "responses": responses or [],
        "meta": meta or {},
    }


# --- think / answer splitting -------------------------------------------------------

_THINK_MARKERS = (
    ("<think>", "</think>"),
    ("<|begin_of_thought|>", "<|end_of_thought|>"),
    ("<thought>", "</thought>"),
)
_ANSWER_MARKERS = (
    ("<answer>", "</answer>"),
    ("<|begin_of_solution|>", "<|end_of_solution|>"),
)


def _strip_answer_tags(text: str) -> str:
    text = text.strip()
    for start, end in _ANSWER_MARKERS:
        i = text.find(start)
        if i != -1:
            j = text.find(end, i + len(start))
            return text[i + len(start) : j if j != -1 else len(text)].strip()
    return text


def split_think(raw: str, reasoning_content: str | None = None) -> tuple[str | None, str]:
    """Split a response into (think, answer).

    Handles ``<think>…</think>`` (also a missing opening tag, as R1 chat templates emit),
    ``<|begin_of_thought|>`` markers, and a separate ``reasoning_content`` field.
    ``think`` is None when the response carries no reasoning part at all.
    """
    raw = raw or ""
    if reasoning_content:
        return reasoning_content.strip(), _strip_answer_tags(raw)
    for start, end in _THINK_MARKERS:
        j = raw.find(end)
        if j == -1:
            if start in raw:  # opened but never closed: truncated thinking
                i = raw.find(start)
                return raw[i + len(start) :].strip(), ""
            continue
        i = raw.find(start)
        think_start = i + len(start) if i != -1 and i < j else 0
        return raw[think_start:j].strip(), _strip_answer_tags(raw[j + len(end) :])
    return None, _strip_answer_tags(raw)


def join_think(think: str | None, answer: str | None) -> str:
    """The AM content form: ``<think>\\n…\\n</think>\\n<answer>\\n…\\n</answer>``."""
    return f"<think>\n{think or ''}\n</think>\n<answer>\n{answer or ''}\n</answer>"


# --- Arrow conversion ---------------------------------------------------------------


def _dump(value: Any) -> str | None:
    if value is None:
        return None
    if not value:
        return "{}" if isinstance(value, dict) else "[]"
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode("utf-8")
    except TypeError:  # a value orjson does not know (sets, numpy scalars...)
        return json.dumps(value, ensure_ascii=False, default=str)


def _responses_column(records: list[dict]) -> list[list[dict]]:
    out = []
    for r in records:
        resps = r.get("responses")
        if not resps:
            out.append([])
            continue
        rows = []
        for resp in resps:
            row = {k: resp.get(k) for k in RESPONSE_FIELDS}
            for k in JSON_RESPONSE_FIELDS:
                row[k] = _dump(resp.get(k))
            rows.append(row)
        out.append(rows)
    return out


def to_table(records: list[dict]) -> pa.Table:
    """Records → Arrow table with SCHEMA. JSON-typed fields are serialized here.

    Built column by column (one ``pa.array`` per field): about 3× faster than
    ``Table.from_pylist`` on row dicts."""
    columns = []
    for f in SCHEMA:
        name = f.name
        if name == "meta":
            values = [_dump(r.get("meta") or {}) for r in records]
        elif name == "tests":
            values = [r.get("tests") or [] for r in records]
        elif name == "responses":
            values = _responses_column(records)
        else:
            values = [r.get(name) for r in records]
        columns.append(pa.array(values, type=f.type))
    return pa.Table.from_arrays(columns, schema=SCHEMA)


def _load(value: str | None, default: Any) -> Any:
    if value is None or value == "" or value == "{}" or value == "[]":
        return type(default)()
    return orjson.loads(value)


def from_table(table: pa.Table) -> list[dict]:
    """Arrow table → records, undoing ``to_table``."""
    records = table.to_pylist()
    has_meta = "meta" in table.column_names
    for r in records:
        if has_meta:
            r["meta"] = _load(r.get("meta"), {})
        r["tests"] = r.get("tests") or []
        resps = r.get("responses") or []
        for resp in resps:
            resp["params"] = _load(resp.get("params"), {})
            resp["verdicts"] = _load(resp.get("verdicts"), [])
            resp["meta"] = _load(resp.get("meta"), {})
        r["responses"] = resps
    return records


def validate_record(record: dict) -> list[str]:
    """Problems that would make the record unfit for export; empty when it is valid."""
    errors = []
    if not record.get("id"):
        errors.append("missing id")
    if not isinstance(record.get("problem"), str) or not record["problem"].strip():
        errors.append("empty problem")
    if record.get("category") is not None and record["category"] not in CATEGORIES:
        errors.append(f"unknown category {record['category']!r}")
    for i, t in enumerate(record.get("tests") or []):
        if t.get("kind") not in TEST_KINDS:
            errors.append(f"tests[{i}].kind {t.get('kind')!r} not in {TEST_KINDS}")
    for i, resp in enumerate(record.get("responses") or []):
        if not isinstance(resp.get("answer"), str):
            errors.append(f"responses[{i}].answer is not a string")
    return errors


def iter_responses(records: Iterable[dict]) -> Iterable[tuple[dict, dict]]:
    for r in records:
        for resp in r.get("responses") or []:
            yield r, resp


def is_unverified(response: dict) -> bool:
    """Whether ``verify`` found no verifier for this response (a general answer with no
    reward model or judge): its ``passed`` says nothing about its quality."""
    verdicts = response.get("verdicts") or []
    return bool(verdicts) and verdicts[0].get("reason") == "unverified"
