"""`reasonmill browse`: the real server in a subprocess, driven in headless Chromium."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from chromium import Browser
from reasonmill import Pipeline

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("browse")
    cfg = {
        "name": "browse", "workdir": str(tmp / "run"), "shard_size": 10,
        "sources": [
            {"name": "word_problems", "path": str(EXAMPLES / "word_problems.jsonl"), "preset": "gsm8k", "on_error": "skip"},
            {"name": "math_traces", "path": str(EXAMPLES / "math_traces.jsonl"), "preset": "am"},
        ],
        "stages": [{"clean": {"min_chars": 20}}, "dedup.exact", {"replay": {"drop_without_response": True}}],
    }
    Pipeline.from_dict(cfg, base_dir=tmp).run()
    return tmp / "run"


@pytest.fixture(scope="module")
def server(workdir):
    proc = subprocess.Popen([sys.executable, "-m", "reasonmill.cli", "browse", str(workdir), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        m = re.search(r"on (http://127\.0\.0\.1:\d+/)", line)
        assert m, (line, proc.stderr.read() if proc.poll() is not None else "")
        yield m.group(1)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def test_api_counts_equal_the_ledger(server, workdir):
    summary = json.loads((workdir / "summary.json").read_text())
    reasons = {k: v for s in summary["stages"] for k, v in s["reasons"].items()}
    facets = _get(server + "api/facets")
    assert dict(map(tuple, facets["reason"])) == reasons
    kept = summary["stages"][-1]["kept"]
    assert _get(server + "api/records?status=kept")["total"] == kept
    assert _get(server + "api/records?status=dropped&reason=no_existing_response")["total"] == reasons["no_existing_response"]
    hits = _get(server + "api/records?q=figures/segment_ab")["rows"]
    assert [(h["status"], h["reason"]) for h in hits] == [("dropped", "image_ref")]


def _choose(b: Browser, select: str, value: str) -> None:
    b.js(f"(() => {{ const s = document.getElementById({select!r}); s.value = {value!r}; "
         "s.dispatchEvent(new Event('change')); })()")


def test_filter_open_evidence_and_page_in_chromium(server, tmp_path):
    with Browser(1280, 900) as b:
        b.goto(server + "?size=3")
        b.wait_for("document.body.dataset.loaded >= 1")
        # filter by reason
        _choose(b, "reason", "no_existing_response")
        b.wait_for("document.body.dataset.loaded >= 2")
        rows = b.js("[...document.querySelectorAll('tr.row')].map(t => [t.dataset.id, t.dataset.reason])")
        assert len(rows) == 3 and {r for _, r in rows} == {"no_existing_response"}
        assert b.js("document.getElementById('pageinfo').textContent").startswith("page 1 of 3 · 9 rows")
        # open a dropped record: its evidence and its problem are shown
        b.js("document.querySelector('tr.row').click()")
        b.wait_for("document.getElementById('detail').dataset.id")
        assert b.js("document.getElementById('detail').dataset.id") == rows[0][0]
        drop = b.js("document.querySelector('#drop h3').textContent")
        assert drop == "dropped at replay: no_existing_response"
        assert b.js("document.querySelector('pre.problem').textContent").strip()
        # page on
        b.js("document.getElementById('next').click()")
        b.wait_for("document.body.dataset.loaded >= 3")
        page2 = b.js("[...document.querySelectorAll('tr.row')].map(t => t.dataset.id)")
        assert len(page2) == 3 and not set(page2) & {i for i, _ in rows}
        assert b.js("document.getElementById('pageinfo').textContent").startswith("page 2 of 3")
        # a drop with evidence: the duplicate names the record it duplicates, which was kept
        _choose(b, "reason", "duplicate_of")
        b.wait_for("document.body.dataset.loaded >= 4")
        b.js("document.querySelector('tr.row').click()")
        b.wait_for("document.querySelector('#drop h3') && "
                   "document.querySelector('#drop h3').textContent.includes('duplicate_of')")
        evidence = json.loads(b.js("document.querySelector('#drop pre.evidence').textContent"))
        assert set(evidence) >= {"representative", "text_hash"}
        b.screenshot(tmp_path / "browse-open.png", full_page=False)


def test_binds_to_loopback_only(server):
    host = server.split("//")[1].split(":")[0]
    assert host == "127.0.0.1"
