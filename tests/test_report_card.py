"""The dataset card counts rows, problems and responses as the exported files hold them."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from reasonmill import Pipeline
from reasonmill.report.card import CardStats


def _run(tmp: Path) -> tuple:
    src = tmp / "problems.jsonl"
    rows = [
        # three responses to one problem, two to another, none to a third
        {"problem": "What is 2 + 3? Give the number.", "responses": ["<think>add</think>5", "<think>sum</think>5", "5"]},
        {"problem": "What is 7 times 6? Give the number.", "responses": ["<think>mul</think>42", "42"]},
        {"problem": "Name the largest planet of the solar system.", "responses": []},
    ]
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp / "out"
    cfg = {
        "name": "card-counts", "workdir": str(tmp / "run"),
        "sources": [{"name": "toy", "path": str(src), "columns": {"problem": "problem", "responses": "responses"}}],
        "stages": [],
        "exports": [{"path": str(out / "am.jsonl"), "format": "am"},
                    {"path": str(out / "messages.parquet"), "format": "messages"}],
    }
    return Pipeline.from_dict(cfg, base_dir=tmp).run(), out


def test_card_counts_equal_the_files(tmp_path):
    result, out = _run(tmp_path)
    am_rows = (out / "am.jsonl").read_text().splitlines()
    msg_rows = pq.read_table(out / "messages.parquet").num_rows
    assert (len(am_rows), msg_rows) == (6, 5)  # 5 responses; AM adds a user-only row for the third problem
    card = (out / "DATASET_CARD.md").read_text()
    assert "3 problems with 5 responses (1 problems without a response)" in card
    assert "| `am.jsonl` | am | 6 | 3 | 5 |" in card
    assert "| `messages.parquet` | messages | 5 | 3 | 5 |" in card
    entry = result.exports[-1]
    assert entry == {"path": str(out / "DATASET_CARD.md"), "format": "card", "rows": None, "problems": 3, "responses": 5}
    # the front matter names each file as a config; the pipeline is there to run again
    front = card.split("---\n")[1]
    assert "config_name: am" in front and "path: am.jsonl" in front and "path: messages.parquet" in front
    assert "```yaml\nname: card-counts\n" in card and "workdir" not in card.split("```yaml")[1]


def test_a_card_whose_counts_disagree_with_the_files_is_refused(tmp_path):
    from reasonmill.report.card import write_card

    stats = CardStats()
    stats.add_many([{"id": "a", "problem": "p", "responses": [{"think": "t", "answer": "a"}] * 2}])
    exports = [{"path": str(tmp_path / "am.jsonl"), "format": "am", "rows": 1}]
    with pytest.raises(ValueError, match="am.jsonl: 1 rows, the card counts 2"):
        write_card(tmp_path / "DATASET_CARD.md", "x", stats, [], {"per_source": {}, "per_benchmark": {}}, exports)
    assert not (tmp_path / "DATASET_CARD.md").exists()
