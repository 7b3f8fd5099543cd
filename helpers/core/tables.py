"""Tables for people: the one formatting layer of every report section.

Every column a report shows is declared once in ``COLUMNS`` (its human label and its kind), and
every kind has one formatter in ``FORMATTERS``: metrics to 3 decimals, times and sizes with units,
shares as percentages, counts with thousands separators, pass/fail as a word and a mark (a class
gives the colour; the word and mark still read in grey print), long text wrapped, never cut.
Column names that are not declared get a label from their parts (``roc_auc_train`` ->
"ROC AUC (train)") and a kind from their values. ``table`` renders a frame as HTML with Jinja
(autoescape: every user string is escaped; only this module's own markup is trusted); it never
shows the frame's index.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jinja2
import pandas as pd
from markupsafe import Markup

from helpers.core.kpis import METRICS


@dataclass(frozen=True)
class Column:
    """How one column is shown: its label and its kind (a key of ``FORMATTERS``)."""

    label: str
    kind: str = "text"


# --- formatters: one per kind ---------------------------------------------------------------------


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA or value is pd.NaT


def format_seconds(s: float | None) -> str:
    """A duration with its unit: 12.3 ms, 90 s, 2.85 min, 3 h, 4.2 days."""
    if _missing(s) or not math.isfinite(s):
        return "n/a"
    for limit, unit, div in ((1, "ms", 1e-3), (120, "s", 1), (7200, "min", 60), (172800, "h", 3600)):
        if s < limit:
            return f"{s / div:.3g} {unit}"
    return f"{s / 86400:.3g} days"


def format_bytes(b: float | None) -> str:
    """A size with its binary unit: 3.48 MiB."""
    if _missing(b) or not math.isfinite(b):
        return "n/a"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(b) < 1024 or unit == "TiB":
            return f"{b:.3g} {unit}"
        b /= 1024
    return f"{b:.3g} TiB"


def _as_number(value: Any) -> float | str:
    """The value as a float, or the text shown instead: a dash when missing, its own text when not a number."""
    if _missing(value):
        return "–"
    if isinstance(value, bool) or not isinstance(value, numbers.Number):
        return str(value)
    return float(value)


def format_metric(value: Any) -> str:
    """A score to 3 decimals (what a KPI's target is written in); tiny values never in e-notation."""
    value = _as_number(value)
    if isinstance(value, str):
        return value
    if not math.isfinite(value):
        return str(value)
    text = f"{value:,.3f}"
    return "0.000" if text == "-0.000" else text


def format_share(value: Any) -> str:
    """A fraction as a percentage: 0.0152 -> 1.5%."""
    if _missing(value):
        return "–"
    return f"{100 * float(value):.1f}%"


def format_count(value: Any) -> str:
    """A whole number with thousands separators: 4,060."""
    if _missing(value):
        return "–"
    if isinstance(value, numbers.Number) and not isinstance(value, bool):
        return f"{int(round(float(value))):,}"
    return str(value)


def format_number(value: Any) -> str:
    """A number of no declared meaning: 3 significant digits, whole numbers as counts."""
    value = _as_number(value)
    if isinstance(value, str):
        return value
    if value.is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    return f"{value:,.3g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.1e}"


def format_p(value: Any) -> str:
    """A p- or q-value as a reader takes it: "< 0.001" below that, else 3 decimals (never e-notation)."""
    value = _as_number(value)
    if isinstance(value, str):
        return value
    return "< 0.001" if value < 1e-3 else f"{value:.3f}"


VERDICT_MARKS = {"pass": ("✓", "pass"), "watch": ("!", "watch"), "fail": ("✗", "fail"), None: ("–", "not judged")}
_TRUE = {"true", "yes", "1", "passed", "pass"}
_FALSE = {"false", "no", "0", "failed", "fail"}


def verdict_word(value: Any) -> str | None:
    """``pass``, ``watch``, ``fail`` or None (not judged) from a verdict or a pass/fail flag."""
    if _missing(value):
        return None
    text = str(value).strip().lower()
    if text in ("watch",):
        return "watch"
    if text in _TRUE:
        return "pass"
    if text in _FALSE:
        return "fail"
    return None


def verdict_badge(value: Any, text: str | None = None) -> Markup | str:
    """A verdict as a mark and a word in a coloured badge (``pb-pass``, ``pb-watch``, ``pb-fail``, ``pb-none``);
    a value that is no verdict (e.g. a compute tier) stays its own text, never a made-up verdict."""
    word = verdict_word(value)
    if word is None and not _missing(value):
        return format_text(value)
    mark, label = VERDICT_MARKS[word]
    return Markup('<span class="pb-badge pb-{}"><span aria-hidden="true">{}</span> {}</span>').format(
        word or "none", mark, text if text is not None else label)


SEVERITY_TONES = {"high": ("fail", "▲"), "medium": ("watch", "■"), "low": ("none", "·")}


def severity_badge(value: Any) -> Markup | str:
    """A data issue's severity as a mark and a word in a badge (high reads as a fail, medium as a watch)."""
    if _missing(value) or str(value) not in SEVERITY_TONES:
        return format_text(value)
    tone, mark = SEVERITY_TONES[str(value)]
    return Markup('<span class="pb-badge pb-{}"><span aria-hidden="true">{}</span> {}</span>').format(tone, mark, value)


def format_flag(value: Any) -> str:
    """A yes/no flag in words."""
    if _missing(value):
        return "–"
    word = str(value).strip().lower()
    return "yes" if word in _TRUE else "no" if word in _FALSE else str(value)


def format_kpi(value: Any) -> str:
    """A metric's name as people write it: roc_auc -> ROC AUC."""
    return "" if _missing(value) else METRIC_LABELS.get(str(value), str(value).replace("_", " "))


def format_text(value: Any) -> str | Markup:
    """Text as given (escaped when rendered; this module's own ``Markup`` passes through)."""
    if isinstance(value, Markup):
        return value
    return "" if _missing(value) else str(value)


FORMATTERS: dict[str, Callable[[Any], str | Markup]] = {
    "text": format_text, "metric": format_metric, "seconds": format_seconds, "bytes": format_bytes,
    "share": format_share, "count": format_count, "number": format_number, "verdict": verdict_badge,
    "flag": format_flag, "kpi": format_kpi, "severity": severity_badge,
}


# --- the columns the report shows, declared once -----------------------------------------------------

METRIC_LABELS = {"roc_auc": "ROC AUC", "f1": "F1", "r2": "R²", "mae": "MAE", "rmse": "RMSE", "mape": "MAPE",
                 "accuracy": "accuracy", "balanced_accuracy": "balanced accuracy", "precision": "precision",
                 "recall": "recall", "silhouette": "silhouette", "log_loss": "log loss", "pr_auc": "PR AUC"}
SUFFIXES = {"mean": "(CV)", "std": "(CV sd)", "train": "(train)", "test": "(test)", "val": "(validation)",
            "passed": "met", "ci_low": "interval low", "ci_high": "interval high"}

COLUMNS: dict[str, Column] = {
    # KPIs and scores
    "metric": Column("KPI", "kpi"), "KPI": Column("KPI", "kpi"), "target": Column("target", "number"),
    "direction": Column("better when"), "achieved": Column("achieved", "metric"),
    "ci_low": Column("95% interval low", "metric"), "ci_high": Column("95% interval high", "metric"),
    "interval": Column("95% interval"), "passed": Column("result", "verdict"), "verdict": Column("result", "verdict"),
    "result": Column("result", "verdict"), "realistic": Column("realistic?"), "gap": Column("train − CV gap", "metric"),
    "overfitting": Column("overfits", "flag"), "score": Column("score", "number"),
    # models
    "rank": Column("rank", "count"), "model": Column("model"), "family": Column("family"), "kind": Column("kind"),
    "candidate": Column("candidate"), "description": Column("description"), "default": Column("library default", "flag"),
    "fit_time_s": Column("fit time", "seconds"), "rows": Column("rows", "count"), "n_rows": Column("rows", "count"),
    # data
    "check": Column("check"), "column": Column("column"), "severity": Column("severity", "severity"),
    "evidence": Column("evidence"), "fix": Column("fix"), "action": Column("action"), "reason": Column("reason"),
    "rows_affected": Column("rows affected", "count"), "share": Column("share", "share"),
    # operations
    "batch": Column("batch", "count"), "feature": Column("feature"), "breach_streak": Column("breaches in a row", "count"),
    "retrain": Column("retrain", "flag"), "section": Column("section"), "test": Column("test"), "status": Column("status"),
    "item": Column("item"), "value": Column("value"), "step": Column("step"), "notebook": Column("notebook"),
    "duration_s": Column("time", "seconds"), "memory_bytes": Column("memory", "bytes"),
}


def label(name: Any) -> str:
    """The human label of a column: declared, else built from a metric name and its suffix, else de-underscored."""
    key = str(name)
    if key in COLUMNS:
        return COLUMNS[key].label
    if key in METRICS or key in METRIC_LABELS:
        return METRIC_LABELS.get(key, key.replace("_", " "))
    for suffix, words in SUFFIXES.items():
        base = key[: -len(suffix) - 1]
        if key.endswith("_" + suffix) and (base in METRICS or base in METRIC_LABELS):
            return f"{METRIC_LABELS.get(base, base.replace('_', ' '))} {words}".strip()
    if key.endswith("_s"):
        return key[:-2].replace("_", " ")
    return key.replace("_", " ")


def kind(name: Any, values: pd.Series | None = None) -> str:
    """The kind of a column: declared, else from its name (metrics, ``_s``, ``_bytes``, ``_passed``), else its values."""
    key = str(name)
    if key in COLUMNS:
        return COLUMNS[key].kind
    base = key.rsplit("_", 1)[0] if "_" in key else key
    if key.endswith("_passed"):
        return "verdict"
    if key in METRICS or base in METRICS or key.rsplit("_", 2)[0] in METRICS:
        return "metric"
    if key.endswith("_s"):
        return "seconds"
    if key.endswith("_bytes"):
        return "bytes"
    inferred = pd.api.types.infer_dtype(values, skipna=True) if values is not None else ""
    if inferred == "boolean":
        return "flag"
    if inferred in ("integer", "floating", "mixed-integer-float", "decimal"):
        return "number"
    return "text"


# --- rendering -----------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _template() -> jinja2.Template:
    """The table template, compiled once per process (compiling costs ~20 ms, a report shows ~20 tables)."""
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    return env.from_string(_TABLE)


_TABLE = """<div class="pb-table-wrap"><table class="pb-table">
{% if caption %}<caption>{{ caption }}</caption>{% endif %}
{% if columns|selectattr("label")|list %}<thead><tr>{% for c in columns %}<th scope="col" class="pb-{{ c.kind }}">{{ c.label }}</th>{% endfor %}</tr></thead>{% endif %}
<tbody>
{% for row in rows %}<tr>{% for c, cell in zip(columns, row) %}<td class="pb-{{ c.kind }}">{{ cell }}</td>{% endfor %}</tr>
{% endfor %}</tbody></table></div>"""


def _records(frame: pd.DataFrame | Sequence[Mapping[str, Any]]) -> tuple[list[Mapping[str, Any]], list[str]]:
    """Rows as mappings and the column names in order (records keep their values as given: ``Markup`` stays
    ``Markup``, which a pandas 3 frame would turn into plain strings)."""
    if isinstance(frame, pd.DataFrame):
        return frame.to_dict(orient="records"), [str(c) for c in frame.columns]
    records = list(frame)
    return records, list(dict.fromkeys(k for r in records for k in r))


def table(frame: pd.DataFrame | Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None, *,
          labels: Mapping[str, str] | None = None, kinds: Mapping[str, str] | None = None,
          caption: str | None = None, max_rows: int | None = None) -> Markup:
    """``frame`` as an HTML table for people: no index, human labels, values formatted by kind, strings escaped.

    ``columns`` picks and orders the columns (default: all); ``labels`` and ``kinds`` override the
    declarations for this table; ``max_rows`` keeps the first rows and says how many were left out.
    """
    records, all_names = _records(frame)
    names = list(columns) if columns is not None else all_names
    labels, kinds = labels or {}, kinds or {}
    shown = [Column(labels[n] if n in labels else label(n),
                    kinds.get(n) or kind(n, pd.Series([r.get(n) for r in records], dtype=object)))
             for n in names]
    body = records[:max_rows] if max_rows is not None else records
    rows = [[FORMATTERS[c.kind](record.get(n)) for c, n in zip(shown, names, strict=True)] for record in body]
    note = f"first {len(body)} of {len(records)} rows" if len(body) < len(records) else None
    caption = "; ".join(t for t in (caption, note) if t) or None
    return Markup(_template().render(columns=shown, rows=rows, caption=caption, zip=zip))


def with_interval(frame: pd.DataFrame | Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The rows with one ``interval`` column ("0.673 to 0.769") made from ``ci_low`` and ``ci_high``."""
    data = frame.copy() if isinstance(frame, pd.DataFrame) else pd.DataFrame(list(frame))
    lows = data["ci_low"] if "ci_low" in data else pd.Series([None] * len(data), index=data.index)
    highs = data["ci_high"] if "ci_high" in data else lows
    data["interval"] = ["–" if _missing(lo) or _missing(hi) else f"{format_metric(lo)} to {format_metric(hi)}"
                        for lo, hi in zip(lows, highs, strict=True)]
    return data


def key_values(pairs: Mapping[str, Any] | Sequence[tuple[str, Any]]) -> Markup:
    """A two-column table of facts (label, value), values escaped (an item's value may be trusted ``Markup``)."""
    items = pairs.items() if isinstance(pairs, Mapping) else pairs
    return table([{"item": str(k), "value": v} for k, v in items], labels={"item": "", "value": ""},
                 kinds={"item": "text", "value": "text"})
