"""The dataset-level boilerplate stage drops responses sharing a frequent 20-gram."""

from __future__ import annotations

from reasonmill import Pipeline
from reasonmill.engine.workdir import Workdir


def test_boilerplate_stage_drops_shared_ngram_responses(tmp_path):
    boiler = "I am sorry but I cannot help with that request because it would not be appropriate for me to do so here today."
    rows = []
    for i in range(30):
        answer = f"Reply {i}: {boiler}" if i < 25 else f"A unique and specific answer number {i} about topic {i * 7}."
        rows.append({"messages": [{"role": "user", "content": f"Question number {i} about a topic?"},
                                  {"role": "assistant", "content": f"<think>thinking {i}</think>{answer}"}]})
    data = tmp_path / "chat.jsonl"
    data.write_text("".join(__import__("json").dumps(r) + "\n" for r in rows))
    cfg = {"name": "b", "workdir": "work", "sources": [{"name": "chat", "path": str(data), "preset": "messages"}],
           "stages": [{"filter.boilerplate": {"n": 20, "max_count": 20}}]}
    result = Pipeline.from_dict(cfg, base_dir=tmp_path).run()
    stage = result.stages[1]
    assert stage.records_in == 30 and stage.kept == 5 and stage.dropped == 25
    assert stage.reasons["boilerplate"] == 25 and stage.reasons["no_response_left"] == 25
    ledger = [r for r in Workdir(tmp_path / "work").stage_dirs()[1].iter_ledger() if r["kind"] == "response"]
    assert "cannot help with that request" in __import__("json").loads(ledger[0]["evidence"])["ngram"]
