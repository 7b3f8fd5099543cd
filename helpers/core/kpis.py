"""KPI metrics, the KPI contract and scoring with bootstrap intervals.

Step 1 declares the contract; step 4 evaluates against exactly it; step 5 turns it
into alerts and the CI gate. All scores come from ``sklearn.metrics``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from sklearn import metrics as skm
from sklearn.preprocessing import LabelEncoder

from helpers.core.errors import PlaybookError
from helpers.core.paths import STEP_NOTEBOOKS


@dataclass(frozen=True)
class Metric:
    name: str
    direction: str  # "higher" or "lower"
    problem_type: str
    low: float
    high: float
    needs: str  # "label", "proba" or "features" (clustering)
    meaning: str


_INF = float("inf")
METRICS: dict[str, Metric] = {m.name: m for m in [
    Metric("accuracy", "higher", "classification", 0, 1, "label", "share of all predictions that are right"),
    Metric("balanced_accuracy", "higher", "classification", 0, 1, "label", "mean recall over classes: accuracy that ignores class imbalance"),
    Metric("precision", "higher", "classification", 0, 1, "label", "of the rows flagged positive, the share that really are"),
    Metric("recall", "higher", "classification", 0, 1, "label", "of the real positives, the share the model finds"),
    Metric("f1", "higher", "classification", 0, 1, "label", "harmonic mean of precision and recall"),
    Metric("roc_auc", "higher", "classification", 0, 1, "proba", "chance a random positive is ranked above a random negative"),
    Metric("average_precision", "higher", "classification", 0, 1, "proba", "area under the precision-recall curve"),
    Metric("log_loss", "lower", "classification", 0, _INF, "proba", "penalty for confident wrong probabilities"),
    Metric("r2", "higher", "regression", -_INF, 1, "label", "share of the target's variance explained"),
    Metric("mae", "lower", "regression", 0, _INF, "label", "mean absolute error, in target units"),
    Metric("rmse", "lower", "regression", 0, _INF, "label", "root mean squared error, in target units (punishes large errors)"),
    Metric("mape", "lower", "regression", 0, _INF, "label", "mean absolute percentage error (as a fraction)"),
    Metric("silhouette", "higher", "clustering", -1, 1, "features", "how much closer rows are to their own cluster than to the next"),
    Metric("davies_bouldin", "lower", "clustering", 0, _INF, "features", "average similarity of each cluster to its closest one"),
]}


def validate_kpis(kpis: Mapping[str, Any], problem_type: str | None) -> dict[str, float]:
    """Check KPI names, thresholds and fit with the problem type; return {metric: float}."""
    if not isinstance(kpis, Mapping) or not kpis:
        raise PlaybookError("kpis must be a non-empty mapping {metric: threshold}.",
                            "e.g. kpis: {recall: 0.7, precision: 0.5}.")
    out = {}
    for name, threshold in kpis.items():
        metric = METRICS.get(name)
        if metric is None:
            raise PlaybookError(f"Unknown KPI metric {name!r}.",
                                f"choose from {', '.join(METRICS)}.")
        if problem_type and metric.problem_type != problem_type:
            fitting = [m for m, v in METRICS.items() if v.problem_type == problem_type]
            raise PlaybookError(f"KPI {name!r} is a {metric.problem_type} metric; it does not fit a {problem_type} problem.",
                                f"use one of {', '.join(fitting)}.")
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not np.isfinite(threshold):
            raise PlaybookError(f"KPI {name!r} has threshold {threshold!r}, which is not a number.",
                                "give a number, e.g. recall: 0.7.")
        if not metric.low <= threshold <= metric.high:
            raise PlaybookError(f"KPI {name!r} threshold {threshold} is outside the metric's range [{metric.low}, {metric.high}].",
                                f"choose a threshold between {metric.low} and {metric.high}.")
        out[name] = float(threshold)
    return out


@dataclass
class KpiContract:
    """What success means: thresholds with directions, positive label and averaging."""

    problem_type: str
    kpis: dict[str, float]
    positive_label: Any = None
    average: str = "macro"
    classes: list = field(default_factory=list)

    def direction(self, metric: str) -> str:
        return METRICS[metric].direction

    def passed(self, metric: str, value: float | None) -> bool | None:
        if value is None or not np.isfinite(value):
            return None
        target = self.kpis[metric]
        return bool(value >= target) if self.direction(metric) == "higher" else bool(value <= target)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["kpis"] = [{"metric": m, "target": t, "direction": self.direction(m)} for m, t in self.kpis.items()]
        d["positive_label"] = _jsonable(self.positive_label)
        d["classes"] = [_jsonable(c) for c in self.classes]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> KpiContract:
        kpis = d["kpis"]
        if isinstance(kpis, list):
            kpis = {k["metric"]: float(k["target"]) for k in kpis}
        return cls(d["problem_type"], dict(kpis), d.get("positive_label"), d.get("average", "macro"),
                   list(d.get("classes", [])))

    @property
    def is_binary(self) -> bool:
        return self.problem_type == "classification" and len(self.classes) == 2


def _jsonable(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def resolve_positive_label(y: pd.Series, requested: Any) -> Any:
    """The class precision and recall refer to: the requested one, else the minority class."""
    classes = list(pd.unique(y.dropna()))
    if requested is not None:
        for c in classes:
            if str(c) == str(requested):
                return _jsonable(c)
        raise PlaybookError(f"positive_label {requested!r} is not a class of the target (classes: {', '.join(map(str, classes[:10]))}).",
                            "set positive_label to one of the target's classes, or None for the minority class.")
    counts = y.value_counts()
    return _jsonable(counts.index[-1])


def class_order(y) -> list:
    """The classes in the order a fitted scikit-learn classifier holds them in ``classes_`` (the columns of
    ``predict_proba``): natural order, 2 before 10 and False before True, not the order of their text.

    ``LabelEncoder`` is what classifiers and ``cross_val_predict`` order classes with.
    """
    return [_jsonable(c) for c in LabelEncoder().fit(pd.Series(y).dropna().to_numpy()).classes_]


def class_index(classes: Sequence[Any], label: Any) -> int:
    """Position of ``label`` among ``classes`` (e.g. a model's ``classes_``), matched by text: a label read
    back from JSON or YAML ("1", 1, True) finds the class it names."""
    for i, c in enumerate(classes):
        if str(c) == str(label):
            return i
    raise PlaybookError(f"The model's classes {list(classes)} do not include the positive label {label!r}.",
                        "re-run step 4: the model metadata and the model disagree.")


def contract_proba(proba: np.ndarray, classes: Sequence[Any], contract: KpiContract) -> np.ndarray:
    """A model's ``predict_proba`` columns (in its ``classes`` order) as ``score`` takes them: the
    positive column when binary, else every column in the contract's class order (matched by text)."""
    known = [str(c) for c in classes]
    proba = proba[:, [known.index(str(c)) for c in contract.classes]]
    if contract.is_binary:
        return proba[:, [str(c) for c in contract.classes].index(str(contract.positive_label))]
    return proba


def score(metric: str, contract: KpiContract, y_true, y_pred=None, proba=None, X=None, labels=None) -> float:
    """Score one KPI. ``proba``: positive-class probabilities (binary) or an (n, k) array."""
    m = METRICS[metric]
    if m.problem_type == "clustering":
        return _cluster_score(metric, X, labels)
    if m.problem_type == "regression":
        y_true = np.asarray(y_true, dtype=float)
        y_pred = np.asarray(y_pred, dtype=float)
        return float({
            "r2": skm.r2_score, "mae": skm.mean_absolute_error,
            "rmse": lambda a, b: np.sqrt(skm.mean_squared_error(a, b)),
            "mape": skm.mean_absolute_percentage_error,
        }[metric](y_true, y_pred))
    return _classification_score(metric, contract, np.asarray(y_true, dtype=object), y_pred, proba)


def _classification_score(metric, contract: KpiContract, y_true, y_pred, proba) -> float:
    binary = contract.is_binary
    pos = contract.positive_label
    avg = contract.average
    if m_needs_labels(metric):
        y_pred = np.asarray(y_pred, dtype=object)
        if binary:  # 0/1 indicators: sklearn scores them several times faster than object labels
            y_true, y_pred, pos = (y_true == pos).astype(int), (y_pred == pos).astype(int), 1
        if metric == "accuracy":
            return float(skm.accuracy_score(y_true, y_pred))
        if metric == "balanced_accuracy":
            return float(skm.balanced_accuracy_score(y_true, y_pred))
        fn = {"precision": skm.precision_score, "recall": skm.recall_score, "f1": skm.f1_score}[metric]
        if binary:
            return float(fn(y_true, y_pred, pos_label=pos, average="binary", zero_division=0))
        return float(fn(y_true, y_pred, average=avg, labels=contract.classes, zero_division=0))
    proba = np.asarray(proba, dtype=float)
    if binary:
        is_pos = (y_true == pos).astype(int)
        p = proba if proba.ndim == 1 else proba[:, list(contract.classes).index(pos)]
        if metric == "roc_auc":
            return float(skm.roc_auc_score(is_pos, p)) if 0 < is_pos.sum() < len(is_pos) else float("nan")
        if metric == "average_precision":
            return float(skm.average_precision_score(is_pos, p))
        return float(skm.log_loss(is_pos, np.clip(p, 1e-15, 1 - 1e-15), labels=[0, 1]))
    classes = list(contract.classes)
    if metric == "roc_auc":
        present = set(pd.unique(y_true))
        if len(present) < len(classes):
            return float("nan")
        return float(skm.roc_auc_score(y_true, proba, multi_class="ovr", average=avg if avg != "micro" else "macro", labels=classes))
    if metric == "average_precision":
        onehot = (y_true[:, None] == np.asarray(classes, dtype=object)[None, :]).astype(int)
        return float(skm.average_precision_score(onehot, proba, average=avg))
    return float(skm.log_loss(y_true, np.clip(proba, 1e-15, 1), labels=classes))


def m_needs_labels(metric: str) -> bool:
    return METRICS[metric].needs == "label"


def _cluster_score(metric: str, X, labels) -> float:
    labels = np.asarray(labels)
    if len(np.unique(labels)) < 2:
        return float("nan")
    if metric == "silhouette":
        return float(skm.silhouette_score(X, labels, sample_size=min(len(labels), 2000), random_state=0))
    return float(skm.davies_bouldin_score(X, labels))


def score_all(contract: KpiContract, y_true, y_pred=None, proba=None, X=None, labels=None) -> dict[str, float]:
    return {m: score(m, contract, y_true, y_pred, proba, X, labels) for m in contract.kpis}


def bootstrap_interval(fn: Callable[[np.ndarray], float], n: int, *, n_boot: int = 200,
                       seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of ``fn(indices)`` over ``n`` rows resampled with replacement."""
    rng = np.random.default_rng(seed)
    values = np.array([fn(rng.integers(0, n, n)) for _ in range(n_boot)], dtype=float)
    return percentile_interval(values, level)


# Vectorised bootstrap: scoring each resample through sklearn.metrics costs ~3 ms of input
# validation per call, which made steps 1, 4 and 5 (thousands of resamples per run) far too slow. These
# formulas score all resamples at once; `kpis.score` (sklearn) still gives every point value,
# and a unit test checks the formulas against sklearn.
_FAST_BINARY = {"accuracy", "balanced_accuracy", "precision", "recall", "f1", "roc_auc", "log_loss"}
_FAST_REGRESSION = {"mae", "rmse", "r2", "mape"}


def has_fast_bootstrap(contract: KpiContract, metric: str) -> bool:
    if contract.problem_type == "regression":
        return metric in _FAST_REGRESSION
    return contract.is_binary and metric in _FAST_BINARY


def resample_scores(metric: str, contract: KpiContract, y_true, y_pred, proba, idx: np.ndarray) -> np.ndarray:
    """``metric`` on every resample (rows of ``idx``), vectorised; NaN where undefined."""
    if contract.problem_type == "regression":
        y = np.asarray(y_true, dtype=float)[idx]
        e = np.asarray(y_pred, dtype=float)[idx] - y
        if metric == "mae":
            return np.abs(e).mean(axis=1)
        if metric == "rmse":
            return np.sqrt((e ** 2).mean(axis=1))
        if metric == "mape":
            return (np.abs(e) / np.maximum(np.abs(y), np.finfo(float).eps)).mean(axis=1)
        total = ((y - y.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(total > 0, 1 - (e ** 2).sum(axis=1) / total, np.nan)
    pos = (np.asarray(y_true, dtype=object) == contract.positive_label)[idx]
    if metric in ("roc_auc", "log_loss"):
        p = np.asarray(proba, dtype=float)[idx]
        if metric == "log_loss":
            p = np.clip(p, 1e-15, 1 - 1e-15)
            return -(pos * np.log(p) + (~pos) * np.log(1 - p)).mean(axis=1)
        n_pos = pos.sum(axis=1)
        n_neg = pos.shape[1] - n_pos
        ranks = stats.rankdata(p, axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            auc = ((ranks * pos).sum(axis=1) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
        return np.where((n_pos > 0) & (n_neg > 0), auc, np.nan)
    pred = (np.asarray(y_pred, dtype=object) == contract.positive_label)[idx]
    tp = (pos & pred).sum(axis=1)
    fp = (~pos & pred).sum(axis=1)
    fn = (pos & ~pred).sum(axis=1)
    if metric == "accuracy":
        return (pos == pred).mean(axis=1)
    if metric == "balanced_accuracy":  # sklearn's: the mean recall of the classes present in the resample's y_true
        tn = (~pos & ~pred).sum(axis=1)
        n_pos, n_neg = tp + fn, tn + fp
        with np.errstate(divide="ignore", invalid="ignore"):
            tpr, tnr = tp / n_pos, tn / n_neg
        return np.where(n_pos == 0, tnr, np.where(n_neg == 0, tpr, (tnr + tpr) / 2))
    num, den = {"precision": (tp, tp + fp), "recall": (tp, tp + fn), "f1": (2 * tp, 2 * tp + fp + fn)}[metric]
    return np.divide(num, den, out=np.zeros(len(num)), where=den > 0)


def percentile_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if not finite.size:
        return float("nan"), float("nan")
    alpha = (1 - level) / 2
    return float(np.quantile(finite, alpha)), float(np.quantile(finite, 1 - alpha))


def normal_interval(value: float, values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """``value`` plus or minus z standard errors, the standard error from the bootstrap ``values``.

    Used where the level is too extreme for percentiles of a few hundred resamples (the
    simultaneous intervals of monitoring, see ``simultaneous_level``).
    """
    finite = values[np.isfinite(values)]
    if finite.size < 2 or not np.isfinite(value):
        return float("nan"), float("nan")
    half = float(stats.norm.ppf(1 - (1 - level) / 2) * finite.std(ddof=1))
    return float(value - half), float(value + half)


BOOTSTRAP_ROWS = 20_000  # rows per resample; above it the m-out-of-n bootstrap (kpi_intervals)


def kpi_intervals(contract: KpiContract, y_true, y_pred=None, proba=None, *, n_boot: int = 200,
                  seed: int = 0, level: float = 0.95, interval: str = "percentile",
                  min_count: int = 0, max_rows: int = BOOTSTRAP_ROWS) -> pd.DataFrame:
    """Point value and bootstrap interval of every supervised KPI, with its verdict (``kpi_verdict``).

    ``interval``: "percentile" (default, 95%) or "normal" (see ``normal_interval``). With
    ``min_count`` the table also has ``count`` (``judged_count``) and a KPI judged on fewer
    rows gets the verdict "too few rows".

    Above ``max_rows`` rows, each resample draws ``max_rows`` rows (the m-out-of-n bootstrap) and
    the deviations from the point value are scaled by ``sqrt(max_rows / n)``: the same interval for
    these smooth statistics (benchmarks/bench_scale.py measures it against the full bootstrap) at a
    tenth of the time and memory on 200,000 test rows. The point value always uses every row.
    """
    if interval not in ("percentile", "normal"):
        raise PlaybookError(f"Unknown interval method {interval!r}.", "use 'percentile' or 'normal'.")
    y_true = np.asarray(y_true, dtype=object if contract.problem_type == "classification" else float)
    y_pred = None if y_pred is None else np.asarray(y_pred, dtype=y_true.dtype)
    proba = None if proba is None else np.asarray(proba, dtype=float)
    n = len(y_true)
    m = min(n, max_rows)
    idx = np.random.default_rng(seed).integers(0, n, (n_boot, m)) if n_boot else None
    scale = math.sqrt(m / n) if n else 1.0
    rows = []
    for metric in contract.kpis:
        def fn(rows_, metric=metric):
            return score(metric, contract, y_true[rows_], None if y_pred is None else y_pred[rows_],
                         None if proba is None else proba[rows_])
        value = fn(np.arange(n))
        if not n_boot:
            lo, hi = float("nan"), float("nan")
        else:
            # the same resamples either way: bootstrap_interval draws idx's rows one by one
            values = (resample_scores(metric, contract, y_true, y_pred, proba, idx) if has_fast_bootstrap(contract, metric)
                      else np.array([fn(i) for i in idx], dtype=float))
            if m < n:  # m-out-of-n: a resample of m rows spreads sqrt(n / m) times wider than one of n
                values = value + scale * (values - value)
            lo, hi = (percentile_interval(values, level) if interval == "percentile"
                      else normal_interval(value, values, level))
        count = judged_count(metric, contract, y_true, y_pred) if min_count else None
        verdict = kpi_verdict(value, lo, hi, contract.kpis[metric], contract.direction(metric), count=count,
                              min_count=min_count)
        row = {"metric": metric, "target": contract.kpis[metric], "direction": contract.direction(metric),
               "achieved": value, "ci_low": lo, "ci_high": hi, "passed": verdict_passed(verdict), "verdict": verdict}
        if min_count:
            row["count"] = count
        rows.append(row)
    return pd.DataFrame(rows)


# --- the one verdict rule -----------------------------------------------------------------------------
# Step 4's test-set verdict, `playbook gate`, monitoring and the report all decide with kpi_verdict.

VERDICTS = ("pass", "watch", "fail", "too few rows")
KPI_ALPHA = 0.025  # one-sided error of a 95% interval: how often a KPI exactly at its target is called a fail
# Rows a batch KPI averages over (positives for recall, ...) below which it is not judged: with fewer, a KPI
# exactly at its target is failed 4-7x as often as the interval's level says (benchmarks/bench_monitoring.py).
MIN_JUDGE_COUNT = 40


def kpi_verdict(value: float | None, ci_low: float | None, ci_high: float | None, target: float, direction: str, *,
                count: int | None = None, min_count: int = 0) -> str | None:
    """pass / watch / fail of one KPI from its value, interval and target (None: not measured).

    - fail: the interval excludes the target (the whole interval is on the wrong side);
    - watch: the point misses the target but the interval contains it: chance could explain
      the miss, so it is shown, not acted on;
    - pass: the point meets the target.
    Without an interval (not computed) the point decides. ``count`` rows below ``min_count``:
    "too few rows" (the interval of so few rows is not trustworthy enough to alert on).
    """
    if value is None or not np.isfinite(value):
        return None
    if count is not None and count < min_count:
        return "too few rows"
    higher = direction == "higher"
    if (value >= target) if higher else (value <= target):
        return "pass"
    near = ci_high if higher else ci_low  # the end of the interval on the target's side
    if near is not None and np.isfinite(near) and ((near >= target) if higher else (near <= target)):
        return "watch"
    return "fail"


def verdict_passed(verdict: str | None) -> bool | None:
    """The ``passed`` column of a KPI table: True for pass, False for fail, None otherwise (watch, too few rows,
    not measured)."""
    return {"pass": True, "fail": False}.get(verdict)


def row_verdict(row: Mapping[str, Any]) -> str | None:
    """The verdict of one scoreboard row (manifest ``kpis``): the recorded one, else the rule on its numbers
    (runs recorded before verdicts existed)."""
    if row.get("verdict") is not None:
        return str(row["verdict"])
    value = row.get("achieved")
    lo, hi = row.get("ci_low"), row.get("ci_high")
    return kpi_verdict(None if value is None else float(value), None if lo is None else float(lo),
                       None if hi is None else float(hi), float(row["target"]), str(row["direction"]))


def simultaneous_level(n_checks: int, alpha: float = KPI_ALPHA) -> float:
    """Interval level at which ``n_checks`` verdicts together call a fail wrongly (on KPIs that meet their
    targets) at most ``alpha`` of the time (Bonferroni): 0.95 for one check, 99.72% for 3 KPIs x 6 batches."""
    return 1 - 2 * alpha / max(int(n_checks), 1)


def judged_count(metric: str, contract: KpiContract, y_true, y_pred=None) -> int:
    """How many rows a KPI really averages over: the positives for recall, the flagged rows for precision,
    the smaller class for ranking metrics and balanced accuracy (multi-class: the smallest class), else all rows."""
    n = len(y_true)
    if contract.problem_type != "classification" or metric in ("accuracy", "log_loss"):
        return int(n)
    y = np.asarray(y_true, dtype=object)
    pred = None if y_pred is None else np.asarray(y_pred, dtype=object)
    if contract.is_binary:
        pos = int((y == contract.positive_label).sum())
        flagged = int((pred == contract.positive_label).sum()) if pred is not None else pos
        return {"recall": pos, "precision": flagged, "f1": min(pos, flagged)}.get(metric, min(pos, n - pos))
    counted = pred if metric == "precision" and pred is not None else y
    return int(min((counted == c).sum() for c in contract.classes)) if contract.classes else int(n)


def load_contract(run, *, needed_by: str | None = None) -> KpiContract:
    """The KPI contract step 1 recorded in the run (a clear error if step 1 has not run)."""
    summary = run.read_summary(STEP_NOTEBOOKS[0], needed_by=needed_by)
    return KpiContract.from_dict(summary["contract"])


BATCH_COLUMNS = ["metric", "target", "direction", "achieved", "ci_low", "ci_high", "passed", "verdict", "count",
                 "level"]


def batch_kpis(contract: KpiContract, y_true, y_pred, proba, *, n_boot: int = 200, seed: int = 0,
               level: float = 0.95, min_count: int = MIN_JUDGE_COUNT) -> pd.DataFrame:
    """Every KPI of the contract on one labelled batch, with its verdict.

    The interval is the normal bootstrap interval at ``level`` (a run of batches passes
    ``simultaneous_level``); a KPI averaged over fewer than ``min_count`` rows is "too few rows".
    """
    if contract.problem_type == "clustering":
        return pd.DataFrame(columns=BATCH_COLUMNS)
    table = kpi_intervals(contract, y_true, y_pred, proba, n_boot=n_boot, seed=seed, level=level, interval="normal",
                          min_count=max(int(min_count), 1))
    return table.assign(level=level)[BATCH_COLUMNS]



GROUP_COLUMNS = ["column", "group", "rows", "metric", "value", "ci_low", "ci_high", "passed"]


def group_kpis(contract: KpiContract, groups: pd.DataFrame, y_true, y_pred, proba=None, *,
               metrics: Sequence[str] | None = None, min_rows: int = 1, n_boot: int = 0,
               seed: int = 0) -> pd.DataFrame:
    """KPIs (all, or ``metrics``) per group of every column of ``groups``, one row per column, group and metric.

    ``groups`` holds the grouping columns, row for row with ``y_true``/``y_pred``/``proba``.
    Groups are the columns' values as text (missing values form the group "<missing>"),
    sorted; groups of fewer than ``min_rows`` rows are left out. With ``n_boot`` resamples
    the value gets a bootstrap 95% interval (NaN without). Clustering has no groups to score.
    """
    if contract.problem_type == "clustering":
        return pd.DataFrame(columns=GROUP_COLUMNS)
    names = list(metrics) if metrics is not None else list(contract.kpis)
    scoped = KpiContract(contract.problem_type, {m: contract.kpis[m] for m in names}, contract.positive_label,
                         contract.average, contract.classes)
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    proba = None if proba is None else np.asarray(proba)
    rows = []
    for column in groups.columns:
        col = groups[column]
        # str() per value: pandas 3's astype(str) keeps NaN, which cannot be sorted with text
        values = np.where(col.isna(), "<missing>", col.astype(object).map(str)).astype(str)
        for group in sorted(set(values)):
            idx = np.flatnonzero(values == group)
            if len(idx) < min_rows:
                continue
            table = kpi_intervals(scoped, y_true[idx], y_pred[idx], None if proba is None else proba[idx],
                                  n_boot=n_boot, seed=seed)
            rows += [{"column": column, "group": group, "rows": len(idx), "metric": t["metric"], "value": t["achieved"],
                      "ci_low": t["ci_low"], "ci_high": t["ci_high"], "passed": t["passed"]}
                     for t in table.to_dict(orient="records")]
    return pd.DataFrame(rows, columns=GROUP_COLUMNS)
