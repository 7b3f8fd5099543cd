"""The KPI scoreboard as a figure: per KPI its target line, the achieved value and its interval.

Drawn with matplotlib and kept as SVG with real text (crisp on screen and in print, small, and
its labels readable by tests). One row per KPI, each on its own scale (recall and RMSE do not
share an axis). The verdict is written as a word and a mark next to the row, so the figure reads
without colour.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib
from markupsafe import Markup
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from helpers.core import tables
from helpers.core.kpis import METRICS

TONES = {"pass": "#1a7f37", "watch": "#9a6700", "fail": "#cf222e", None: "#57606a"}


def _span(row: Mapping[str, Any]) -> tuple[float, float]:
    """The axis range of one KPI: target, value and interval with a margin, kept inside the metric's bounds."""
    values = [float(v) for v in (row.get("target"), row.get("achieved"), row.get("ci_low"), row.get("ci_high"))
              if v is not None and math.isfinite(float(v))]
    lo, hi = min(values), max(values)
    pad = max(hi - lo, abs(hi) * 0.05, 1e-3) * 0.35
    metric = METRICS.get(str(row.get("metric")))
    low = max(lo - pad, metric.low) if metric else lo - pad
    high = min(hi + pad, metric.high) if metric else hi + pad
    return (low, high) if high > low else (lo - pad, hi + pad)


def figure(rows: Sequence[Mapping[str, Any]]) -> Figure:
    """One row per KPI (manifest ``kpis`` rows with ``verdict``): interval bar, achieved dot, dashed target line."""
    fig = Figure(figsize=(6.2, 0.42 + 0.62 * len(rows)))
    axes = fig.subplots(len(rows), 1, squeeze=False)[:, 0]
    for ax, row in zip(axes, rows, strict=True):
        tone = TONES.get(row.get("verdict"), TONES[None])
        ax.set_xlim(*_span(row))
        ax.set_ylim(-0.7, 1)
        ax.xaxis.set_major_locator(MaxNLocator(5))
        ax.set_yticks([])
        for side in ("left", "right", "top"):
            ax.spines[side].set_visible(False)
        ax.tick_params(axis="x", labelsize=8, length=2, pad=1)
        ax.axvline(float(row["target"]), color="#24292f", linestyle=(0, (3, 2)), linewidth=1.2)
        ax.annotate(f"target {tables.format_number(row['target'])}", (float(row["target"]), 0.95), fontsize=7.5,
                    ha="center", va="bottom", color="#24292f", annotation_clip=False)
        if row.get("ci_low") is not None and row.get("ci_high") is not None:
            ax.plot([row["ci_low"], row["ci_high"]], [0, 0], color=tone, linewidth=5, alpha=0.35,
                    solid_capstyle="butt")
        if row.get("achieved") is not None:
            ax.plot([row["achieved"]], [0], marker="o", markersize=7, color=tone)
        ax.text(-0.03, 0.1, tables.format_kpi(row["metric"]), transform=ax.transAxes, ha="right", va="center",
                fontsize=9.5, fontweight="bold")
        mark, word = tables.VERDICT_MARKS[tables.verdict_word(row.get("verdict"))]
        achieved = "not measured" if row.get("achieved") is None else tables.format_metric(row["achieved"])
        ax.text(1.02, 0.1, f"{mark} {word}  {achieved}", transform=ax.transAxes, ha="left", va="center",
                fontsize=9.5, color=tone, fontweight="bold")
    fig.subplots_adjust(left=0.2, right=0.76, top=1 - 0.28 / fig.get_figheight(), bottom=0.3 / fig.get_figheight(),
                        hspace=1.1)
    return fig


def svg(rows: Sequence[Mapping[str, Any]]) -> Markup:
    """The scoreboard figure as inline SVG (text kept as text), or an empty string without KPIs."""
    if not rows:
        return Markup("")
    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "kpi-scoreboard",
                                "font.family": "sans-serif"}):
        figure(rows).savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    start = text.index("<svg")
    return Markup('<div class="pb-scoreboard" role="img" aria-label="KPI scoreboard">{}</div>').format(
        Markup(text[start:]))
