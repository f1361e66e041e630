"""Mapping records to and from the exchange formats: AM (SPEC §2), OpenAI messages, ShareGPT.

One record holds one problem with several responses; the AM, messages and ShareGPT
formats hold one conversation per response. ``to_am`` therefore yields one row per
response, and ``from_am`` rebuilds a single-response record. Every label reasonmill
computed (category, language, difficulty, verdicts, problem-level provenance) rides in
the ``info`` dicts, so ``from_am(to_am(r))`` loses nothing.
"""

from __future__ import annotations

import json
from typing import Any, Iterator

from reasonmill.records import join_think, new_record, new_response, split_think

_RECORD_INFO_KEYS = ("id", "category", "language", "difficulty", "starter_code", "meta")
_RESPONSE_INFO_KEYS = ("model", "params", "request_id", "tokens", "finish_reason", "passed", "verdicts", "meta")


def to_am(record: dict) -> Iterator[dict]:
    """One AM row per response (a record with no responses yields a user-only row)."""
    user_info: dict[str, Any] = {
        "source": record.get("source"),
        "reference_answer": record.get("reference_answer"),
        "test_case": record.get("tests") or None,
    }
    for key in _RECORD_INFO_KEYS:
        user_info[key] = record.get(key)
    user = {"role": "user", "content": record["problem"], "info": user_info}
    responses = record.get("responses") or []
    if not responses:
        yield {"messages": [user]}
        return
    for resp in responses:
        info: dict[str, Any] = {
            "source": resp.get("source"),
            "think_content": resp.get("think") or "",
            "answer_content": resp.get("answer") or "",
            "verify_score": resp.get("verify_score"),
            "model_name": resp.get("model"),
        }
        for key in _RESPONSE_INFO_KEYS:
            info[key] = resp.get(key)
        content = join_think(resp.get("think"), resp.get("answer"))
        if resp.get("raw") is not None and resp["raw"] != content:
            info["raw"] = resp["raw"]  # the original text, when it differs from the AM form
        yield {"messages": [user, {"role": "assistant", "content": content, "info": info}]}


def from_am(row: dict) -> dict:
    """An AM row back to a record. Rows produced by ``to_am`` round-trip exactly."""
    messages = row.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ValueError("AM record needs a non-empty 'messages' list")
    user = next((m for m in messages if m.get("role") == "user"), None)
    if user is None:
        raise ValueError("AM record has no user message")
    uinfo = user.get("info") or {}
    responses = []
    for m in messages:
        if m.get("role") != "assistant":
            continue
        info = m.get("info") or {}
        think = info.get("think_content")
        answer = info.get("answer_content")
        if think is None and answer is None:
            think, answer = split_think(m.get("content") or "")
        resp = new_response(
            m.get("content"),
            think=think,
            answer=answer or "",
            model=info.get("model_name") or info.get("model"),
            source=info.get("source"),
            params=info.get("params"),
            request_id=info.get("request_id"),
            tokens=info.get("tokens"),
            finish_reason=info.get("finish_reason"),
            meta=info.get("meta"),
        )
        resp["raw"] = info.get("raw") or join_think(resp["think"], resp["answer"])
        resp["verify_score"] = info.get("verify_score")
        resp["passed"] = info.get("passed")
        resp["verdicts"] = info.get("verdicts") or []
        responses.append(resp)
    source = uinfo.get("source") or "am"
    record = new_record(
        source=source,
        problem=user.get("content") or "",
        category=uinfo.get("category"),
        language=uinfo.get("language"),
        difficulty=uinfo.get("difficulty"),
        reference_answer=uinfo.get("reference_answer"),
        tests=_tests_from_am(uinfo.get("test_case")),
        starter_code=uinfo.get("starter_code"),
        responses=responses,
        meta=uinfo.get("meta"),
    )
    if uinfo.get("id"):
        record["id"] = uinfo["id"]
    return record


def _tests_from_am(test_case: Any) -> list[dict]:
    if not test_case:
        return []
    if isinstance(test_case, str):
        try:
            test_case = json.loads(test_case)
        except json.JSONDecodeError:
            return [{"input": test_case, "output": "", "kind": "assert"}]
    if isinstance(test_case, dict) and "inputs" in test_case:
        return [
            {"input": str(i), "output": str(o), "kind": "stdin"}
            for i, o in zip(test_case["inputs"], test_case["outputs"])
        ]
    if isinstance(test_case, list):
        return [
            {"input": t.get("input", ""), "output": t.get("output", ""), "kind": t.get("kind", "stdin")}
            for t in test_case
            if isinstance(t, dict)
        ]
    return []


def to_messages(record: dict) -> Iterator[dict]:
    """OpenAI chat rows: ``{"id", "messages": [{role, content}...], labels...}``."""
    for i, resp in enumerate(record.get("responses") or []):
        yield {
            "id": f"{record['id']}-{i}",
            "messages": [
                {"role": "user", "content": record["problem"]},
                {"role": "assistant", "content": join_think(resp.get("think"), resp.get("answer"))},
            ],
            "source": record.get("source"),
            "category": record.get("category"),
            "language": record.get("language"),
            "difficulty": record.get("difficulty"),
            "verify_score": resp.get("verify_score"),
            "model": resp.get("model"),
        }


def to_sharegpt(record: dict) -> Iterator[dict]:
    """ShareGPT rows: ``{"id", "conversations": [{from, value}...], labels...}``."""
    for row in to_messages(record):
        row["conversations"] = [
            {"from": "human" if m["role"] == "user" else "gpt", "value": m["content"]} for m in row.pop("messages")
        ]
        yield row


EXPORT_FORMATS = {"am": to_am, "messages": to_messages, "sharegpt": to_sharegpt}


def validate_am_row(row: dict) -> list[str]:
    """Schema check before export (SPEC §4: published datasets shipped malformed rows)."""
    errors = []
    msgs = row.get("messages")
    if not isinstance(msgs, list) or len(msgs) not in (1, 2):
        return ["messages must hold one user turn and at most one assistant turn"]
    user = msgs[0]
    if user.get("role") != "user" or not isinstance(user.get("content"), str) or not user["content"].strip():
        errors.append("first message must be a non-empty user turn")
    for key in ("source", "reference_answer", "test_case"):
        if key not in (user.get("info") or {}):
            errors.append(f"user info lacks {key!r}")
    if len(msgs) == 1:  # a problem exported without responses (no generation in the pipeline)
        return errors
    assistant = msgs[1]
    if assistant.get("role") != "assistant":
        errors.append("second message must be the assistant turn")
    content = assistant.get("content") or ""
    info = assistant.get("info") or {}
    if "<think>" not in content or "</think>" not in content or "<answer>" not in content:
        errors.append("assistant content lacks <think>/<answer> structure")
    if not (info.get("answer_content") or "").strip():
        errors.append("assistant answer_content is empty")
    if content.strip() == (user.get("info") or {}).get("source"):
        errors.append("assistant content equals the source name")
    score = info.get("verify_score")
    if score is not None and not (0.0 <= float(score) <= 1.0):
        errors.append(f"verify_score {score} outside [0, 1]")
    return errors
