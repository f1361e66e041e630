"""Resume never reuses results computed by code that has since changed.

A stage's fingerprint covers every module its module imports (``engine.code_deps``):
editing a helper re-runs the stage that uses it, and only that stage and those after it.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from reasonmill.engine.code_deps import module_closure
from reasonmill.pipeline import Pipeline


def test_closures_hold_the_helpers_the_stages_use() -> None:
    verify = module_closure("reasonmill.stages.verify")
    assert {"reasonmill.verify.math", "reasonmill.verify.code", "reasonmill.sandbox.runner",
            "reasonmill.verify.format", "reasonmill.verify.reward"} <= set(verify)
    assert "reasonmill.dedup.minhash" in module_closure("reasonmill.stages.near_dedup")
    assert "reasonmill.text" in module_closure("reasonmill.stages.clean")
    ingest = set(module_closure("reasonmill.engine.ingest"))
    assert {"reasonmill.io.presets", "reasonmill.io.readers"} <= ingest
    assert "reasonmill.stages.verify" not in ingest, "editing a verifier must not re-run ingest"


def _plugin(tmp_path: Path, helper_body: str) -> None:
    pkg = tmp_path / "fp_plugin"
    pkg.mkdir(exist_ok=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "helper.py").write_text(helper_body)
    (pkg / "stage.py").write_text(textwrap.dedent('''
        from reasonmill.stages.base import Stage, StageOutput, stage


        @stage("fp.tag")
        class Tag(Stage):
            def process(self, records, index=None):
                from fp_plugin.helper import tag  # a lazy import, as stages do with verifiers

                for r in records:
                    r["meta"] = {**(r.get("meta") or {}), "tag": tag()}
                return StageOutput(kept=records)
    '''))


def test_editing_a_helper_module_reruns_the_dependent_stage_only(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    _plugin(tmp_path, "def tag():\n    return 'one'\n")
    (tmp_path / "a.jsonl").write_text("".join(
        json.dumps({"question": f"What is {i} + 1?", "answer": f"#### {i + 1}"}) + "\n" for i in range(5)
    ))
    raw = {
        "name": "fp",
        "workers": 1,
        "plugins": ["fp_plugin.stage"],
        "sources": [{"name": "a", "path": "a.jsonl", "preset": "gsm8k"}],
        "stages": ["dedup.exact", "fp.tag", "select"],
    }
    workdir = tmp_path / "work"
    first = Pipeline.from_dict(raw, base_dir=tmp_path).run(workdir)
    assert [s.skipped for s in first.stages[:4]] == [False, False, False, False]

    again = Pipeline.from_dict(raw, base_dir=tmp_path).run(workdir)
    assert all(s.skipped for s in again.stages), "nothing changed: everything is skipped"

    (tmp_path / "fp_plugin" / "helper.py").write_text("def tag():\n    return 'two'\n")
    edited = Pipeline.from_dict(raw, base_dir=tmp_path).run(workdir)
    skipped = {s.label: s.skipped for s in edited.stages}
    assert skipped == {"ingest": True, "dedup.exact": True, "fp.tag": False, "select": False, "export": True} \
        or skipped == {"ingest": True, "dedup.exact": True, "fp.tag": False, "select": False}, skipped
