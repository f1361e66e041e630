"""The report's plots, drawn with matplotlib into inline SVG strings.

SVG needs no JavaScript and no network to display, scales with the page and, with text
kept as ``<text>`` elements (``svg.fonttype: none``), costs a few tens of KB per plot.
``matplotlib.figure.Figure`` is used directly (no pyplot): no global state, no GUI backend.
"""

from __future__ import annotations

import io
from typing import Sequence

PALETTE = ["#3b6ea5", "#e07b39", "#4c9a5b", "#b54a4a", "#7d5ba6", "#8c6d4f", "#d17fb6", "#7f7f7f", "#b8b83a", "#3ab0c0"]
RC = {"svg.fonttype": "none", "svg.hashsalt": "reasonmill", "font.size": 9, "axes.spines.top": False,
      "axes.spines.right": False, "font.family": "sans-serif"}


def _svg(fig) -> str:
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "reasonmill"}):
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buf.getvalue()
    text = text[text.index("<svg"):]  # drop the XML prolog and doctype: inline SVG
    start, end = text.find("<metadata>"), text.find("</metadata>")
    if start != -1 and end != -1:  # the RDF block names creator and licence URLs: not needed inline
        text = text[:start] + text[end + len("</metadata>"):]
    return text


def _figure(width: float, height: float):
    import matplotlib
    from matplotlib.figure import Figure

    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(width, height), layout="constrained")
        return fig, fig.add_subplot()


def barh(labels: Sequence[str], series: dict[str, Sequence[float]], title: str, xlabel: str = "records",
         max_bars: int = 25) -> str:
    """Horizontal (stacked) bars, one row per label, the first label on top."""
    import matplotlib

    labels = [str(x) for x in labels][:max_bars]
    n = len(labels)
    with matplotlib.rc_context(RC):
        fig, ax = _figure(7.0, 0.9 + 0.26 * max(n, 2))
        left = [0.0] * n
        for (name, values), color in zip(series.items(), PALETTE):
            vals = [float(v) for v in list(values)[:max_bars]]
            ax.barh(range(n), vals, left=left, color=color, label=name, height=0.7)
            left = [a + b for a, b in zip(left, vals)]
        for i, total in enumerate(left):
            ax.text(total, i, f" {total:,.0f}", va="center", fontsize=8)
        ax.set_yticks(range(n), [_short(x) for x in labels])
        ax.invert_yaxis()
        ax.set_xlabel(xlabel)
        ax.set_title(title, loc="left", fontsize=10)
        ax.set_xlim(0, max(left + [1]) * 1.15)
        if len(series) > 1:
            ax.legend(loc="lower right", fontsize=8, frameon=False)
        return _svg(fig)


def rate_bars(rows: Sequence[tuple[str, int, int]], title: str, max_bars: int = 25) -> str:
    """Pass rate (passed / scored) per label, with the counts written beside each bar."""
    import matplotlib

    rows = [r for r in rows if r[2]][:max_bars]
    n = len(rows)
    with matplotlib.rc_context(RC):
        fig, ax = _figure(7.0, 0.9 + 0.26 * max(n, 2))
        rates = [p / t for _, p, t in rows]
        ax.barh(range(n), rates, color=PALETTE[2], height=0.7)
        for i, (_, p, t) in enumerate(rows):
            ax.text(rates[i], i, f" {p:,}/{t:,} ({rates[i]:.0%})", va="center", fontsize=8)
        ax.set_yticks(range(n), [_short(k) for k, _, _ in rows])
        ax.invert_yaxis()
        ax.set_xlim(0, 1.35)
        ax.set_xticks([0, 0.25, 0.5, 0.75, 1.0], ["0%", "25%", "50%", "75%", "100%"])
        ax.set_title(title, loc="left", fontsize=10)
        return _svg(fig)


def histograms(edges: Sequence[int], per_series: dict[str, Sequence[int]], title: str, xlabel: str) -> str:
    """Step histograms over log-spaced bins, one line per series (teacher model)."""
    import matplotlib

    with matplotlib.rc_context(RC):
        fig, ax = _figure(7.0, 3.0)
        xs = list(range(len(edges) - 1))
        for (name, counts), color in zip(list(per_series.items())[:len(PALETTE)], PALETTE):
            total = sum(counts) or 1
            ax.step(xs, [c / total for c in counts], where="mid", color=color, label=f"{_short(name)} ({sum(counts):,})")
            ax.fill_between(xs, [c / total for c in counts], step="mid", color=color, alpha=0.12)
        ax.set_xticks(xs, [_edge(e) for e in edges[:-1]], rotation=45, ha="right")
        ax.set_ylabel("share of responses")
        ax.set_xlabel(xlabel)
        ax.set_title(title, loc="left", fontsize=10)
        ax.legend(fontsize=8, frameon=False)
        return _svg(fig)


def score_histogram(counts: Sequence[int], title: str) -> str:
    import matplotlib

    n = len(counts)
    with matplotlib.rc_context(RC):
        fig, ax = _figure(7.0, 2.6)
        ax.bar([i / n for i in range(n)], counts, width=1 / n, align="edge", color=PALETTE[0], edgecolor="white")
        ax.set_xlim(0, 1)
        ax.set_xlabel("verify score")
        ax.set_ylabel("responses")
        ax.set_title(title, loc="left", fontsize=10)
        return _svg(fig)


def _edge(e: int) -> str:
    return f"{e // 1024}k" if e >= 1024 else str(e)


def _short(text: str, n: int = 38) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"
