"""``reasonmill report WORKDIR``: one self-contained HTML file about a run.

Everything is inline (CSS, SVG plots, a few lines of script that only mark each plot as
drawn), so the file opens offline and can be mailed or attached to an issue. The data
comes from ``report.collect`` (aggregates and capped samples), the plots from
``report.plots``.
"""

from __future__ import annotations

import time
from html import escape
from pathlib import Path
from typing import Any, Iterable

from reasonmill.report import plots
from reasonmill.report.collect import LENGTH_EDGES, collect

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#222;background:#fafafa}
header{background:#23395b;color:#fff;padding:14px 24px}header h1{margin:0;font-size:20px}
nav{position:sticky;top:0;background:#fff;border-bottom:1px solid #ddd;padding:6px 24px;z-index:2}
nav a{margin-right:14px;color:#23395b;text-decoration:none;font-size:13px}
main{padding:0 24px 40px;max-width:1300px}
section{background:#fff;border:1px solid #e3e3e3;border-radius:6px;margin:18px 0;padding:10px 18px}
h2{font-size:17px;margin:6px 0 10px}h3{font-size:14px;margin:14px 0 6px}
table{border-collapse:collapse;font-size:13px;margin:6px 0}td,th{border-bottom:1px solid #eee;padding:3px 10px;text-align:left;vertical-align:top}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(520px,1fr));gap:10px}
figure.plot{margin:4px 0}figure.plot svg{max-width:100%;height:auto}
.pair{display:grid;grid-template-columns:1fr 1fr;gap:10px;margin:10px 0;padding:8px;border:1px solid #e7e7e7;border-radius:5px}
.pair h4{margin:0 0 4px;font-size:12px;color:#555}
pre{white-space:pre-wrap;word-break:break-word;background:#f4f4f4;padding:6px 8px;border-radius:4px;margin:2px 0;font-size:12px;max-height:320px;overflow:auto}
.ev{font-size:12px;color:#444}.muted{color:#777;font-size:12px}
.ok{color:#2d7a3a;font-weight:600}.bad{color:#b03030;font-weight:600}
details{margin:6px 0}summary{cursor:pointer}
"""

# marks each plot whose SVG was laid out with a real size and shapes (the browser test reads it)
SCRIPT = """
document.querySelectorAll('figure.plot').forEach(function(f){
  var s=f.querySelector('svg'); if(!s) return; var b=s.getBoundingClientRect();
  var shapes=s.querySelectorAll('path,rect,use,line,polyline').length;
  f.dataset.drawn=(b.width>50&&b.height>50&&shapes>3)?'yes':'no'; f.dataset.shapes=shapes;
});
document.body.dataset.plotsDrawn=document.querySelectorAll('figure.plot[data-drawn=yes]').length;
"""


def _fig(name: str, svg: str) -> str:
    return f'<figure class="plot" data-plot="{escape(name)}">{svg}</figure>'


def _table(head: list[str], rows: Iterable[Iterable[Any]], cls: str = "", attrs: Iterable[str] | None = None) -> str:
    numeric = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)  # noqa: E731
    out = [f'<table class="{cls}"><tr>' + "".join(f"<th>{escape(h)}</th>" for h in head) + "</tr>"]
    attrs = list(attrs) if attrs is not None else None
    for i, row in enumerate(rows):
        extra = f" {attrs[i]}" if attrs else ""
        cells = "".join(
            f'<td class="n">{v:,}</td>' if numeric(v) else f"<td>{escape(str(v))}</td>" for v in row
        )
        out.append(f"<tr{extra}>{cells}</tr>")
    return "".join(out) + "</table>"


def _pre(text: Any, cls: str = "") -> str:
    return f'<pre class="{cls}">{escape("" if text is None else str(text))}</pre>'


def _verdicts(vs: list[dict]) -> str:
    if not vs:
        return '<span class="muted">no verdicts</span>'
    rows = [(v.get("verifier") or "?", "✓" if v.get("passed") else "✗" if v.get("passed") is False else "–",
             "" if v.get("score") is None else f"{v['score']:.2f}", v.get("reason") or "", v.get("details") or "")
            for v in vs]
    return _table(["verifier", "passed", "score", "reason", "details"], rows, "verdicts")


def _responses(resps: list[dict]) -> str:
    out = []
    for k, r in enumerate(resps):
        status = "ok" if r.get("passed") else "bad" if r.get("passed") is False else "muted"
        out.append(
            f'<div class="resp"><b>response {k}</b> · {escape(str(r.get("model") or "?"))} · '
            f'<span class="{status}">passed={r.get("passed")}</span> score={r.get("score")}'
            f"<h4>think</h4>{_pre(r.get('think'), 'think')}<h4>answer</h4>{_pre(r.get('answer'), 'answer')}"
            f"{_verdicts(r.get('verdicts') or [])}</div>"
        )
    return "".join(out)


def _section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{anchor}"><h2>{escape(title)}</h2>{body}</section>'


def render(data: dict) -> str:
    """The whole page for ``collect``'s data."""
    sections = [
        ("funnel", "Funnel", _funnel(data)),
        ("contents", "Contents", _contents(data)),
        ("lengths", "Lengths per teacher model", _lengths(data)),
        ("verification", "Verification", _verification(data)),
        ("disagreements", "Verifier disagreements", _disagreements(data)),
        ("decontamination", "Decontamination matches", _decontamination(data)),
        ("dedup", "Dedup clusters", _dedup(data)),
        ("samples", "Samples", _samples(data)),
    ]
    nav = "".join(f'<a href="#{a}">{escape(t)}</a>' for a, t, _ in sections)
    totals = dict(data["counts"].get("totals", []))
    head = (f"<header><h1>reasonmill report: {escape(data['name'])}</h1>"
            f"<div>{totals.get('records', 0):,} records and {totals.get('responses', 0):,} responses after "
            f"<b>{escape(str(data['final_stage']))}</b> · built {escape(data.get('built', ''))}</div></header>")
    body = "".join(_section(a, t, b) for a, t, b in sections)
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>reasonmill report: {escape(data["name"])}'
            f'</title><meta name="viewport" content="width=device-width"><style>{CSS}</style></head>'
            f"<body>{head}<nav>{nav}</nav><main>{body}</main><script>{SCRIPT}</script></body></html>")


def _funnel(data: dict) -> str:
    rows, attrs = [], []
    for s in data["funnel"]:
        top = ", ".join(f"{k} {v['records'] + v['responses']:,}" for k, v in list(s["reasons"].items())[:6])
        rows.append((s["label"], s["records_in"], s["kept"], s["dropped"], s["dropped_responses"], top))
        attrs.append(f'data-stage="{escape(s["label"])}" data-in="{s["records_in"]}" data-kept="{s["kept"]}" '
                     f'data-dropped="{s["dropped"]}"')
    table = _table(["stage", "in", "kept", "dropped records", "dropped responses", "drop reasons"], rows, "funnel", attrs)
    labels = [s["label"] for s in data["funnel"]]
    funnel_plot = plots.barh(labels, {"kept": [s["kept"] for s in data["funnel"]],
                                      "dropped": [s["dropped"] for s in data["funnel"]]}, "Records per stage")
    reasons = [(f"{s['label']}: {k}", v["records"], v["responses"]) for s in data["funnel"] for k, v in s["reasons"].items()]
    reasons.sort(key=lambda r: -(r[1] + r[2]))
    figs = [_fig("funnel", funnel_plot)]
    if reasons:
        figs.append(_fig("drop_reasons", plots.barh([r[0] for r in reasons], {"records": [r[1] for r in reasons],
                                                                               "responses": [r[2] for r in reasons]},
                                                     "Drop reasons (records and single responses)", "drops")))
    files = next((s.get("files") for s in data["funnel"] if s["label"] == "export"), None)
    extra = ""
    if files:
        extra = "<h3>Exported files</h3>" + _table(["file", "format", "rows"],
                                                   [(Path(f["path"]).name, f["format"], _file_rows(f)) for f in files])
    return table + f'<div class="grid">{"".join(figs)}</div>' + extra


def _file_rows(f: dict) -> Any:
    if f.get("rows") is not None:
        return f["rows"]
    if "problems" in f:  # the card: it describes the files
        return f"{f['problems']:,} problems, {f['responses']:,} responses"
    return ""


def _contents(data: dict) -> str:
    counts = data["counts"]
    if not counts:
        return '<p class="muted">no records</p>'
    figs = []
    for name in ("source", "category", "language", "difficulty"):
        rows = counts.get(name) or []
        if rows:
            figs.append(_fig(f"count_{name}", plots.barh([k for k, _ in rows], {"records": [n for _, n in rows]},
                                                        f"Records per {name}")))
    return (f'<p class="muted">what the final stage ({escape(str(data["final_stage"]))}) kept</p>'
            f'<div class="grid">{"".join(figs)}</div>')


def _lengths(data: dict) -> str:
    lengths = data["lengths"]
    if not lengths:
        return '<p class="muted">no responses</p>'
    figs = []
    for part in ("think", "answer"):
        series = {m: v[part] for m, v in lengths.items() if part in v}
        figs.append(_fig(f"length_{part}", plots.histograms(LENGTH_EDGES, series, f"{part} length per teacher model",
                                                             "characters (bin start)")))
    return f'<div class="grid">{"".join(figs)}</div>'


def _verification(data: dict) -> str:
    pr = data.get("pass_rates")
    if not pr:
        return '<p class="muted">no verify stage in this run</p>'
    figs = []
    for key, title in (("by_category", "Pass rate per category"), ("by_model", "Pass rate per teacher model"),
                       ("by_verifier", "Pass rate per verifier (verdicts)")):
        if any(t for _, _, t in pr[key]):
            figs.append(_fig(f"pass_{key}", plots.rate_bars(pr[key], title)))
    if sum(pr["score_hist"]):
        figs.append(_fig("score_hist", plots.score_histogram(pr["score_hist"], "Verify scores")))
    return (f'<p class="muted">responses as the verify stage ({escape(str(data["verify_stage"]))}) scored them, '
            f'before selection</p><div class="grid">{"".join(figs)}</div>')


def _disagreements(data: dict) -> str:
    d = data.get("disagreements")
    if not d or not d["pairs"]:
        return '<p class="muted">no response had verdicts that disagree</p>'
    out = ['<p class="muted">responses where one verifier passed and another failed</p>',
           _table(["verifiers", "responses"], d["pairs"], "disagree-pairs")]
    for e in d["examples"]:
        out.append(f'<details class="disagreement"><summary>{escape(e["id"])} response {e["response_index"]} '
                   f'({escape(str(e["source"]))})</summary><h4>problem</h4>{_pre(e["problem"])}'
                   f'<h4>answer</h4>{_pre(e["answer"])}{_verdicts(e["verdicts"])}</details>')
    return "".join(out)


def _decontamination(data: dict) -> str:
    d = data["decontamination"]
    if not d["per_benchmark"]:
        return '<p class="muted">no decontamination matches (or no decontaminate stage)</p>'
    out = [_table(["benchmark", "drops"], d["per_benchmark"], "per-benchmark")]
    for m in d["matches"]:
        theirs = (_pre(m["theirs"], "theirs") if m["theirs"] is not None
                  else '<p class="muted">benchmark file not found from here: evidence only</p>')
        ev = ", ".join(f"{k}={v}" for k, v in m["evidence"].items())
        what = "problem" if m["kind"] == "record" else f"response {m['response_index']}"
        out.append(
            f'<div class="match pair" data-id="{escape(m["id"])}"><div class="ours-col"><h4>ours: {escape(m["id"])} '
            f"({escape(what)})</h4>{_pre(m['ours'], 'ours')}</div>"
            f'<div class="theirs-col"><h4>{escape(str(m["benchmark"]))} item {escape(str(m["item_id"]))}</h4>{theirs}</div>'
            f'<div class="ev" style="grid-column:1/3">{escape(m["message"])}<br>{escape(ev)}</div></div>'
        )
    return "".join(out)


def _dedup(data: dict) -> str:
    d = data["dedup"]
    if not d["per_stage"]:
        return '<p class="muted">no dedup stage dropped anything</p>'
    out = [_table(["stage", "dropped", "clusters"], [(k, v["dropped"], v["clusters"]) for k, v in d["per_stage"].items()])]
    for c in d["clusters"]:
        dropped = "".join(f'<div class="ev">{escape(x["id"])}: {escape(x["message"])}</div>{_pre(x["text"], "dropped")}'
                          for x in c["dropped"])
        out.append(f'<div class="cluster pair"><div><h4>kept: {escape(c["kept"]["id"])} ({escape(c["stage"])}, '
                   f'cluster of {c["size"]})</h4>{_pre(c["kept"]["text"], "kept")}</div>'
                   f"<div><h4>dropped</h4>{dropped}</div></div>")
    return "".join(out)


def _samples(data: dict) -> str:
    out = ["<h3>Kept records</h3>"]
    for r in data["kept_samples"]:
        out.append(f'<details class="kept-sample"><summary>{escape(r["id"])} · {escape(str(r["source"]))} · '
                   f'{escape(str(r["category"]))}</summary>{_pre(r["problem"])}{_responses(r["responses"])}</details>')
    out.append("<h3>Dropped, per stage and reason</h3>")
    last = None
    for s in data["drop_samples"]:
        key = (s["stage"], s["kind"], s["reason"])
        if key != last:
            out.append(f"<h4>{escape(s['stage'])} · {escape(s['reason'])} ({escape(s['kind'])})</h4>")
            last = key
        what = "" if s["response_index"] is None else f" response {s['response_index']}"
        rec = s["record"]
        out.append(f'<details class="drop-sample"><summary>{escape(s["id"])}{escape(what)}: {escape(s["message"])}'
                   f'</summary><div class="ev">evidence: {escape(s["evidence"])}</div>'
                   f'{_pre(rec.get("problem")) if rec.get("problem") else ""}{_responses(rec.get("responses") or [])}</details>')
    return "".join(out)


def build_report(workdir: str | Path, out: str | Path) -> dict:
    """Write the report of ``workdir`` to ``out``; returns what was collected (and timings)."""
    t0 = time.monotonic()
    data = collect(workdir)
    data["built"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    t1 = time.monotonic()
    page = render(data)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    data["timing"] = {"collect_s": round(t1 - t0, 2), "render_s": round(time.monotonic() - t1, 2), "bytes": len(page.encode())}
    return data

