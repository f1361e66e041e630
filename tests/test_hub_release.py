"""The Hub export: huggingface_hub's real upload path against a local server speaking its
endpoints (tests/hub_server.py). Uploads once; refuses an unchanged re-upload and a card
whose counts are wrong; refuses malformed rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("huggingface_hub")

import hub_server  # noqa: E402
from reasonmill import Pipeline  # noqa: E402
from reasonmill.io.hub_release import CHECKSUMS, ReleaseError, push_release  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture
def export(tmp_path) -> tuple[list, Path]:
    out = tmp_path / "out"
    cfg = {
        "name": "hub-release", "workdir": str(tmp_path / "run"),
        "sources": [{"name": "math_traces", "path": str(EXAMPLES / "math_traces.jsonl"), "preset": "am"}],
        "stages": ["dedup.exact"],
        "exports": [{"path": str(out / "am.jsonl"), "format": "am"},
                    {"path": str(out / "messages.parquet"), "format": "messages"}],
    }
    Pipeline.from_dict(cfg, base_dir=tmp_path).run()
    return [(out / "am.jsonl", "am"), (out / "messages.parquet", "messages")], out / "DATASET_CARD.md"


@pytest.fixture
def hub():
    server, state, url = hub_server.start()
    yield state, url
    server.shutdown()


def test_upload_then_unchanged_reupload_is_refused(export, hub):
    files, card = export
    state, url = hub
    commit = push_release(files, card, "org/reasoning", token="hf_test", private=True, endpoint=url)
    repo = state.repos["org/reasoning"]
    assert commit.endswith(repo["sha"]) and repo["private"] is True
    assert set(repo["files"]) == {"README.md", "am.jsonl", "messages.parquet", CHECKSUMS}
    assert repo["files"]["am.jsonl"] == files[0][0].read_bytes()
    assert repo["files"]["README.md"] == card.read_bytes()
    sums = dict(line.split("  ")[::-1] for line in repo["files"][CHECKSUMS].decode().splitlines())
    import hashlib

    assert sums["messages.parquet"] == hashlib.sha256(files[1][0].read_bytes()).hexdigest()
    assert "Bearer hf_test" in state.tokens
    assert [c["config_name"] for c in state.validated[0]["configs"]] == ["am", "messages"]  # the card's front matter
    with pytest.raises(ReleaseError, match="already holds these exact files"):
        push_release(files, card, "org/reasoning", token="hf_test", endpoint=url)
    assert len(state.commits) == 1
    # a changed file is a new release
    with open(files[0][0], "a", encoding="utf-8") as fh:
        fh.write(files[0][0].read_text().splitlines()[0] + "\n")
    with pytest.raises(ReleaseError, match="am.jsonl: the card says"):
        push_release(files, card, "org/reasoning", endpoint=url)
    card.write_text(card.read_text().replace(f"| `am.jsonl` | am | {len(files[0][0].read_text().splitlines()) - 1} |",
                                             f"| `am.jsonl` | am | {len(files[0][0].read_text().splitlines())} |"))
    push_release(files, card, "org/reasoning", endpoint=url)
    assert len(state.commits) == 2


def test_card_with_wrong_counts_is_refused(export, hub):
    files, card = export
    state, url = hub
    text = card.read_text()
    rows = len(files[0][0].read_text().splitlines())
    card.write_text(text.replace(f"| `am.jsonl` | am | {rows} |", f"| `am.jsonl` | am | {rows + 7} |"))
    with pytest.raises(ReleaseError, match=f"am.jsonl: the card says {rows + 7} rows, the file holds {rows}"):
        push_release(files, card, "org/reasoning", endpoint=url)
    assert state.repos == {} and state.commits == []


def test_malformed_rows_are_refused(export, hub):
    files, card = export
    state, url = hub
    lines = files[0][0].read_text().splitlines()
    row = json.loads(lines[0])
    row["messages"][1]["content"] = "no think tags"
    lines[0] = json.dumps(row)
    files[0][0].write_text("\n".join(lines) + "\n")
    with pytest.raises(ReleaseError, match="am.jsonl row 1: assistant content lacks <think>/<answer>"):
        push_release(files, card, "org/reasoning", endpoint=url)
    assert state.commits == []


def test_pipeline_hub_export(tmp_path, hub, monkeypatch):
    """``exports: - {hf: org/name, private: true, token_env: ..., format: messages}`` in a pipeline."""
    import pyarrow.parquet as pq

    state, url = hub
    monkeypatch.setenv("MY_HF_TOKEN", "hf_pipeline")
    cfg = {
        "name": "hub-pipeline", "workdir": str(tmp_path / "run"),
        "sources": [{"name": "math_traces", "path": str(EXAMPLES / "math_traces.jsonl"), "preset": "am"}],
        "stages": ["dedup.exact"],
        "exports": [{"path": str(tmp_path / "out" / "am.jsonl"), "format": "am"},
                    {"hf": "org/pipe", "private": True, "token_env": "MY_HF_TOKEN", "format": "messages",
                     "endpoint": url}],
    }
    result = Pipeline.from_dict(cfg, base_dir=tmp_path).run()
    hub_export = result.exports[1]
    assert hub_export["hub"].endswith(state.repos["org/pipe"]["sha"])
    files = state.repos["org/pipe"]["files"]
    assert set(files) == {"README.md", "messages.parquet", CHECKSUMS}
    staged = Path(hub_export["path"])
    assert files["messages.parquet"] == staged.read_bytes()
    assert pq.read_table(staged).num_rows == hub_export["rows"] > 0
    assert f"| `messages.parquet` | messages | {hub_export['rows']} |" in files["README.md"].decode()
    assert "Bearer hf_pipeline" in state.tokens
    # the same run again: every stage and the export are skipped, nothing is uploaded
    Pipeline.from_dict(cfg, base_dir=tmp_path).run()
    assert len(state.commits) == 1
    # a new run of the same data refuses the identical upload
    with pytest.raises(ReleaseError, match="already holds these exact files"):
        Pipeline.from_dict(cfg, base_dir=tmp_path).run(fresh=True)
