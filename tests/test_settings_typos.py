"""A misspelled key at any level of any stage's settings fails the pipeline at load.

Walks every registered stage's ``Settings`` model and every nested settings model in it,
misspells one key at that level, and checks that ``config_from_dict`` raises a
``ConfigError`` naming the key, the path (``stages[0].verify.math``) and the valid keys
before any stage runs.
"""

from __future__ import annotations

import types
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel

from reasonmill.config import ConfigError, config_from_dict
from reasonmill.stages.base import get_stage, registered_stages

#: the least each stage needs to be valid (required keys)
MINIMAL: dict[str, dict] = {
    "generate": {"model": "m"},
    "resample": {"generate": {"model": "m"}},
}


def _models(annotation: typing.Any) -> list[type[BaseModel]]:
    """Settings models a field holds directly or in a union (``M | None``, ``M | bool``);
    models inside lists and dicts are keyed by the user's names and skipped here."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [m for arg in typing.get_args(annotation) for m in _models(arg)]
    return []


def _levels(model: type[BaseModel], path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], type[BaseModel]]]:
    """Every (path, model) reachable through nested settings models."""
    out = [(path, model)]
    for name, field in model.model_fields.items():
        if field.exclude:
            continue
        for sub in _models(field.annotation):
            if len(path) < 3 and sub is not model:
                out += _levels(sub, (*path, field.alias or name))
    return out


def _cases() -> list[tuple[str, tuple[str, ...]]]:
    return [(name, path) for name in registered_stages() for path, _ in _levels(get_stage(name).Settings)]


def _settings_with_typo(stage: str, path: tuple[str, ...]) -> dict:
    settings = {k: (dict(v) if isinstance(v, dict) else v) for k, v in MINIMAL.get(stage, {}).items()}
    node = settings
    for part in path:
        node = node.setdefault(part, {}) if isinstance(node.get(part), dict) or part not in node else node[part]
    node["zz_misspelled"] = 1
    return settings


@pytest.mark.parametrize("stage,path", _cases(), ids=lambda v: ".".join(v) if isinstance(v, tuple) else v)
def test_a_typo_at_every_level_fails_at_load(tmp_path: Path, stage: str, path: tuple[str, ...]) -> None:
    (tmp_path / "a.jsonl").write_text('{"question": "q", "answer": "#### 1"}\n')
    raw = {
        "sources": [{"name": "a", "path": "a.jsonl", "preset": "gsm8k"}],
        "stages": [{stage: _settings_with_typo(stage, path)}],
    }
    with pytest.raises(ConfigError) as info:
        config_from_dict(raw, base_dir=tmp_path, where="pipe.yaml")
    message = str(info.value)
    where = ".".join(("stages[0]", stage, *path))
    assert "unknown key 'zz_misspelled'" in message, message
    assert f"pipe.yaml: {where}: unknown key" in message, message
    assert "valid keys: " in message or "takes no keys" in message, message


def test_the_walk_reaches_nested_verify_settings() -> None:
    cases = set(_cases())
    assert ("verify", ("math",)) in cases
    assert ("verify", ("code", "limits")) in cases
    assert ("resample", ("verify", "math")) in cases


def test_verify_math_typo_suggests_the_key(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text('{"question": "q", "answer": "#### 1"}\n')
    raw = {"sources": [{"name": "a", "path": "a.jsonl", "preset": "gsm8k"}],
           "stages": ["clean", "dedup.exact", "replay", "label", {"verify": {"math": {"timeuot": 5}}}]}
    with pytest.raises(ConfigError, match=r"pipe.yaml: stages\[4\].verify.math: unknown key 'timeuot' "
                                          r"\(did you mean 'timeout'\?\); valid keys: .*timeout"):
        config_from_dict(raw, base_dir=tmp_path, where="pipe.yaml")


def test_a_missing_benchmark_file_fails_at_load(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text('{"question": "q", "answer": "#### 1"}\n')
    raw = {"sources": [{"name": "a", "path": "a.jsonl", "preset": "gsm8k"}],
           "stages": ["clean", {"decontaminate": {"benchmarks": [{"name": "math500", "path": "evals/nope.jsonl"}]}}]}
    with pytest.raises(ConfigError, match=r"pipe.yaml: stages\[1\].decontaminate: file not found: .*evals/nope.jsonl"):
        config_from_dict(raw, base_dir=tmp_path, where="pipe.yaml")
