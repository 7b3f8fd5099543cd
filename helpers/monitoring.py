"""Step 5b: production batches, drift and KPI tracking, the retraining policy.

Drift per feature is measured two ways: the Population Stability Index (PSI, bands
0.1 and 0.25: an industry rule of thumb) and a statistical test from scipy
(Kolmogorov-Smirnov for numeric, chi-square for categorical columns). Production is
either real new data (``monitor_data``) or a seeded simulation drawn from the held-out
test side with a documented drift schedule (``simulate_batches``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from helpers.errors import PlaybookError
from helpers.kpis import KpiContract, bootstrap_interval, kpi_intervals, score

PSI_BANDS = (0.1, 0.25)  # below 0.1 stable, 0.1-0.25 moderate, above 0.25 significant
MISSING = "<missing>"
_EPS = 1e-4  # floor for empty bins: PSI's log ratio is undefined at 0


def psi_band(value: float) -> str:
    """The PSI band of a value: stable (< 0.1), moderate (< 0.25) or significant."""
    if value is None or not np.isfinite(value):
        return "n/a"
    return "stable" if value < PSI_BANDS[0] else "moderate" if value < PSI_BANDS[1] else "significant"


def psi_from_shares(expected: np.ndarray, actual: np.ndarray) -> float:
    """PSI = sum((a - e) * ln(a / e)) over bins, with empty bins floored at 1e-4."""
    e = np.clip(np.asarray(expected, dtype=float), _EPS, None)
    a = np.clip(np.asarray(actual, dtype=float), _EPS, None)
    return float(np.sum((a - e) * np.log(a / e)))


def quantile_edges(reference: Sequence[float], n_bins: int = 10) -> np.ndarray:
    """Inner bin edges at the reference's quantiles (ties merged), for PSI binning."""
    values = pd.Series(reference, dtype=float).dropna().to_numpy()
    if values.size == 0:
        return np.array([])
    return np.unique(np.quantile(values, np.linspace(0, 1, n_bins + 1)[1:-1]))


def numeric_shares(values: Sequence[float], edges: np.ndarray) -> np.ndarray:
    """Shares per quantile bin, plus a last bin for missing values."""
    v = pd.Series(values, dtype=float).to_numpy()
    missing = np.isnan(v)
    counts = np.bincount(np.searchsorted(edges, v[~missing], side="right"), minlength=len(edges) + 1)
    counts = np.append(counts, missing.sum()).astype(float)
    return counts / max(counts.sum(), 1.0)


def category_counts(values: Sequence[Any], categories: Sequence[str]) -> np.ndarray:
    """Counts per known category, plus one last bin for unseen ones (missing is a category)."""
    s = pd.Series(values, dtype=object).where(pd.notna(pd.Series(values, dtype=object)), MISSING).astype(str)
    counts = s.value_counts()
    known = np.array([counts.get(c, 0) for c in categories], dtype=float)
    return np.append(known, counts.sum() - known.sum())


def psi_numeric(reference: Sequence[float], current: Sequence[float], n_bins: int = 10) -> float:
    edges = quantile_edges(reference, n_bins)
    return psi_from_shares(numeric_shares(reference, edges), numeric_shares(current, edges))


def psi_categorical(reference: Sequence[Any], current: Sequence[Any]) -> float:
    categories = _categories(reference)
    ref, cur = category_counts(reference, categories), category_counts(current, categories)
    return psi_from_shares(ref / max(ref.sum(), 1), cur / max(cur.sum(), 1))


def ks_test(reference: Sequence[float], current: Sequence[float]) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov statistic and p-value (missing values dropped)."""
    a = pd.Series(reference, dtype=float).dropna().to_numpy()
    b = pd.Series(current, dtype=float).dropna().to_numpy()
    if a.size == 0 or b.size == 0:
        return float("nan"), float("nan")
    result = stats.ks_2samp(a, b)
    return float(result.statistic), float(result.pvalue)


def chi2_test(ref_counts: np.ndarray, cur_counts: np.ndarray) -> tuple[float, float]:
    """Chi-square test of homogeneity on two count vectors (bins empty in both dropped)."""
    table = np.vstack([ref_counts, cur_counts])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return 0.0, 1.0
    result = stats.chi2_contingency(table, correction=False)
    return float(result.statistic), float(result.pvalue)


def _categories(values: Sequence[Any]) -> list[str]:
    s = pd.Series(values, dtype=object)
    return sorted(s.where(pd.notna(s), MISSING).astype(str).unique())


class DriftDetector:
    """Per-feature drift of a batch against a reference table (scikit-learn style).

    ``fit`` learns quantile bins (numeric) and categories from the reference;
    ``score`` returns one row per feature: PSI, its band, the test, statistic,
    p-value and whether it alerts (p < ``alpha`` or PSI >= ``psi_alert``).
    """

    def __init__(self, numeric: Sequence[str] = (), categorical: Sequence[str] = (), *, n_bins: int = 10,
                 alpha: float = 0.01, psi_alert: float = PSI_BANDS[1]):
        self.numeric = numeric
        self.categorical = categorical
        self.n_bins = n_bins
        self.alpha = alpha
        self.psi_alert = psi_alert

    def fit(self, X: pd.DataFrame) -> DriftDetector:
        missing = [c for c in [*self.numeric, *self.categorical] if c not in X.columns]
        if missing:
            raise PlaybookError(f"The reference table lacks the columns {', '.join(missing)}.",
                                "fit the drift detector on a table with every feature.")
        self.edges_ = {c: quantile_edges(X[c], self.n_bins) for c in self.numeric}
        self.ref_shares_ = {c: numeric_shares(X[c], self.edges_[c]) for c in self.numeric}
        self.ref_values_ = {c: pd.Series(X[c], dtype=float).dropna().to_numpy() for c in self.numeric}
        self.categories_ = {c: _categories(X[c]) for c in self.categorical}
        self.ref_counts_ = {c: category_counts(X[c], self.categories_[c]) for c in self.categorical}
        return self

    def feature_row(self, column: str, values: Sequence[Any]) -> dict[str, Any]:
        """Drift of one feature of a batch."""
        if column in self.edges_:
            value = psi_from_shares(self.ref_shares_[column], numeric_shares(values, self.edges_[column]))
            stat, p = ks_test(self.ref_values_[column], values)
            test = "ks"
        else:
            ref = self.ref_counts_[column]
            cur = category_counts(values, self.categories_[column])
            value = psi_from_shares(ref / max(ref.sum(), 1), cur / max(cur.sum(), 1))
            stat, p = chi2_test(ref, cur)
            test = "chi2"
        alert = bool((np.isfinite(p) and p < self.alpha) or value >= self.psi_alert)
        return {"feature": column, "psi": value, "band": psi_band(value), "test": test,
                "statistic": stat, "p_value": p, "alert": alert}

    def score(self, X: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame([self.feature_row(c, X[c]) for c in [*self.numeric, *self.categorical]])


def false_alarm_rates(reference: pd.DataFrame, numeric: Sequence[str], categorical: Sequence[str], *,
                      batch_size: int, n_trials: int = 100, alpha: float = 0.01,
                      psi_alert: float = PSI_BANDS[1], seed: int = 0) -> pd.DataFrame:
    """How often each check alerts on undrifted data at ``batch_size`` rows.

    The reference is split at random into two halves: one is the reference, batches
    are drawn from the other (so batch and reference are independent samples of the
    same distribution, as a drift-free production batch would be).
    """
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(reference))
    half = len(reference) // 2
    ref, pool = reference.iloc[order[:half]], reference.iloc[order[half:]]
    if len(pool) < 2:
        raise PlaybookError("Too few reference rows to estimate false alarms.", "use more training rows.")
    size = min(batch_size, len(pool))
    detector = DriftDetector(numeric, categorical, alpha=alpha, psi_alert=psi_alert).fit(ref)
    rows = []
    for _ in range(n_trials):
        batch = pool.iloc[rng.choice(len(pool), size=size, replace=False)]
        table = detector.score(batch)
        table["test_alarm"] = table["p_value"] < alpha
        table["psi_alarm"] = table["psi"] >= psi_alert
        rows.append(table)
    allr = pd.concat(rows)
    out = allr.groupby("feature", sort=False).agg(test=("test", "first"), test_alarm_rate=("test_alarm", "mean"),
                                                  psi_alarm_rate=("psi_alarm", "mean"), mean_psi=("psi", "mean"))
    out["nominal"] = alpha
    out["batch_size"] = size
    return out.reset_index()


# --- production batches --------------------------------------------------------------------------


@dataclass(frozen=True)
class DriftSchedule:
    """The documented drift of a simulation, per batch (ramp r = batch / (n - 1)).

    - covariate shift on ``feature``: rows are resampled with weight exp(1.5 * m * r * z),
      z the feature's standardised value (P(y | x) is unchanged);
    - label-prior shift, from the middle batch on: the positive class (classification)
      or the upper half of the target (regression) is weighted 1 + m * r;
    - concept drift, in the last third: in the segment where ``feature`` is above its
      median, a share 0.3 * m * r of labels flip (regression: shift by 0.5 * m * r sd).
    m is ``drift_magnitude``; batch 0 is always drift-free.
    """

    n_batches: int
    magnitude: float
    feature: str | None

    def table(self) -> pd.DataFrame:
        rows = []
        for b in range(self.n_batches):
            r = b / (self.n_batches - 1) if self.n_batches > 1 else 0.0
            cov = 1.5 * self.magnitude * r if self.feature else 0.0
            prior = 1 + self.magnitude * r if b >= self.n_batches / 2 else 1.0
            concept = 0.3 * self.magnitude * r if b >= 2 * self.n_batches / 3 else 0.0
            rows.append({"batch": b + 1, "covariate_shift": round(cov, 3), "label_prior_weight": round(prior, 3),
                         "concept_flip_share": round(min(concept, 0.5), 3),
                         "drift": _describe(cov, prior, concept, self.feature)})
        return pd.DataFrame(rows)


def _describe(cov: float, prior: float, concept: float, feature: str | None) -> str:
    parts = []
    if cov > 0:
        parts.append(f"covariate shift on {feature}")
    if prior > 1:
        parts.append("label-prior shift")
    if concept > 0:
        parts.append("concept drift")
    return ", ".join(parts) or "none"


def simulate_batches(frame: pd.DataFrame, *, target: str | None, problem_type: str, n_batches: int,
                     magnitude: float, feature: str | None, seed: int, batch_size: int | None = None,
                     positive_label: Any = None) -> tuple[list[pd.DataFrame], pd.DataFrame]:
    """Seeded production batches drawn (with replacement) from ``frame`` under ``DriftSchedule``."""
    if len(frame) < 10:
        raise PlaybookError(f"Only {len(frame)} held-out rows: too few to simulate production.",
                            "use a larger test_size or more data.")
    schedule = DriftSchedule(n_batches, magnitude, feature).table()
    size = batch_size or max(50, min(len(frame), 2000) // 2)
    rng = np.random.default_rng(seed)
    z = _standardised(frame[feature]) if feature else np.zeros(len(frame))
    prior_mask = _prior_mask(frame, target, problem_type, positive_label)
    batches = []
    for row in schedule.itertuples():
        weights = np.exp(np.clip(row.covariate_shift * z, -20, 20)) * np.where(prior_mask, row.label_prior_weight, 1.0)
        idx = rng.choice(len(frame), size=size, replace=True, p=weights / weights.sum())
        batch = frame.iloc[idx].copy()
        if target and row.concept_flip_share > 0:
            batch[target] = _concept_drift(batch, frame, target, problem_type, feature, row.concept_flip_share, rng)
        batch["batch"] = row.batch
        batches.append(batch)
    return batches, schedule


def _standardised(values: pd.Series) -> np.ndarray:
    v = pd.Series(values, dtype=float)
    z = (v - v.mean()) / (v.std() or 1.0)
    return z.fillna(0.0).to_numpy()


def _prior_mask(frame: pd.DataFrame, target: str | None, problem_type: str, positive_label: Any) -> np.ndarray:
    if not target or problem_type == "clustering":
        return np.zeros(len(frame), dtype=bool)
    y = frame[target]
    if problem_type == "regression":
        return (y.astype(float) > y.astype(float).median()).to_numpy()
    pos = positive_label if positive_label is not None else y.value_counts().index[-1]
    return (y.astype(str) == str(pos)).to_numpy()


def _concept_drift(batch: pd.DataFrame, frame: pd.DataFrame, target: str, problem_type: str,
                   feature: str | None, share: float, rng: np.random.Generator) -> pd.Series:
    """Labels of the batch after concept drift in the segment where ``feature`` is high."""
    y = batch[target].copy()
    segment = (batch[feature].astype(float) > frame[feature].astype(float).median()).to_numpy() if feature \
        else np.ones(len(batch), dtype=bool)
    hit = segment & (rng.random(len(batch)) < share)
    if problem_type == "regression":
        return y.astype(float) + np.where(hit, 0.5 * (share / 0.3) * frame[target].astype(float).std(), 0.0)
    classes = list(pd.unique(frame[target].dropna()))
    new = y.to_numpy(dtype=object).copy()
    for i in np.flatnonzero(hit):
        others = [c for c in classes if c != new[i]]
        new[i] = others[rng.integers(len(others))] if others else new[i]
    return pd.Series(new, index=y.index, name=target)


def batches_from_data(frame: pd.DataFrame, *, time_column: str | None, n_batches: int) -> list[pd.DataFrame]:
    """Cut real production data into ``n_batches`` periods of equal row counts, in time order."""
    if frame.empty:
        raise PlaybookError("monitor_data has no rows.", "give a file with production rows.")
    if time_column:
        if time_column not in frame.columns:
            raise PlaybookError(f"monitor_data has no time column {time_column!r}.",
                                f"add the column {time_column!r} or set time_column to None (file order).")
        order = pd.to_datetime(frame[time_column], errors="coerce")
        if order.isna().all():
            order = pd.to_numeric(frame[time_column], errors="coerce")
        frame = frame.iloc[np.argsort(order.to_numpy(), kind="stable")]
    n = max(1, min(n_batches, len(frame)))
    periods = np.array_split(np.arange(len(frame)), n)
    out = []
    for b, idx in enumerate(periods, start=1):
        batch = frame.iloc[idx].copy()
        batch["batch"] = b
        out.append(batch)
    return out


# --- tracking -------------------------------------------------------------------------------------

Predictor = Callable[[pd.DataFrame], tuple[np.ndarray, np.ndarray | None]]  # X -> (labels, proba or None)


def batch_kpis(contract: KpiContract, y_true, y_pred, proba, *, n_boot: int = 100, seed: int = 0) -> pd.DataFrame:
    """Every KPI of the contract on one labelled batch, with a bootstrap interval."""
    if contract.problem_type == "clustering":
        return pd.DataFrame(columns=["metric", "target", "direction", "achieved", "ci_low", "ci_high", "passed"])
    return kpi_intervals(contract, y_true, y_pred, proba, n_boot=n_boot, seed=seed)


def prediction_shares(labels: np.ndarray, proba: np.ndarray | None) -> np.ndarray:
    """What prediction drift is measured on: the positive-class probability when binary, else labels."""
    if proba is not None and np.ndim(proba) == 1:
        return np.asarray(proba, dtype=float)
    return np.asarray(labels)


def prediction_psi(reference_pred: np.ndarray, batch_pred: np.ndarray) -> float:
    """PSI of the model's outputs (scores or labels) between reference and batch."""
    if np.issubdtype(np.asarray(reference_pred).dtype, np.number):
        return psi_numeric(reference_pred, batch_pred)
    return psi_categorical(reference_pred, batch_pred)


def track_batch(batch: pd.DataFrame, *, features: Sequence[str], predictor: Predictor, detector: DriftDetector,
                contract: KpiContract, target: str | None, reference_pred: np.ndarray,
                n_boot: int = 100, seed: int = 0) -> dict[str, Any]:
    """Drift, prediction drift and KPIs (when labelled) of one batch."""
    X = batch[list(features)]
    labels, proba = predictor(X)
    drift = detector.score(X)
    labelled = bool(target) and target in batch.columns and batch[target].notna().all()
    kpi_table = batch_kpis(contract, batch[target], labels, proba, n_boot=n_boot, seed=seed) if labelled else None
    return {"drift": drift, "kpis": kpi_table, "prediction_psi": prediction_psi(reference_pred,
                                                                                prediction_shares(labels, proba)),
            "labels": labels, "proba": proba, "n_rows": len(batch)}


def timeline(results: Sequence[dict[str, Any]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-batch KPI rows and per-batch drift rows (long format) from ``track_batch`` results."""
    kpi_rows, drift_rows = [], []
    for b, res in enumerate(results, start=1):
        if res["kpis"] is not None:
            kpi_rows.append(res["kpis"].assign(batch=b))
        drift_rows.append(res["drift"].assign(batch=b, prediction_psi=res["prediction_psi"]))
    kpi = pd.concat(kpi_rows, ignore_index=True) if kpi_rows else pd.DataFrame(
        columns=["metric", "target", "direction", "achieved", "ci_low", "ci_high", "passed", "batch"])
    return kpi, pd.concat(drift_rows, ignore_index=True)


def alerts_table(kpi: pd.DataFrame, drift: pd.DataFrame, *, prediction_psi_alert: float = PSI_BANDS[1]) -> pd.DataFrame:
    """One row per alert: batch, feature (or metric), reason."""
    rows = []
    for r in drift[drift["alert"]].itertuples():
        why = f"PSI {r.psi:.2f} ({r.band})" if r.psi >= PSI_BANDS[1] else f"{r.test} p = {r.p_value:.2g}"
        rows.append({"batch": r.batch, "feature": r.feature, "kind": "drift", "reason": why})
    pred = drift.drop_duplicates("batch")
    for r in pred[pred["prediction_psi"] >= prediction_psi_alert].itertuples():
        rows.append({"batch": r.batch, "feature": "(predictions)", "kind": "prediction drift",
                     "reason": f"PSI of model outputs {r.prediction_psi:.2f}"})
    for r in kpi[kpi["passed"] == False].itertuples():  # noqa: E712 (None means unmeasured)
        rows.append({"batch": r.batch, "feature": r.metric, "kind": "KPI breach",
                     "reason": f"{r.metric} {r.achieved:.3f} vs target {r.target:g} ({r.direction} is better)"})
    return pd.DataFrame(rows, columns=["batch", "feature", "kind", "reason"]).sort_values(
        ["batch", "kind"], kind="stable").reset_index(drop=True)


# --- retraining ----------------------------------------------------------------------------------------


class RetrainingPolicy:
    """When to retrain: ``k`` consecutive KPI breaches, or PSI above ``drift_threshold``
    on one of the ``important_features``. The breach counter restarts after a retrain.
    """

    def __init__(self, k: int = 2, drift_threshold: float = 0.25, important_features: Sequence[str] = ()):
        self.k = k
        self.drift_threshold = drift_threshold
        self.important_features = important_features

    def decide(self, breached: Sequence[bool | None], drift: Sequence[dict[str, float]]) -> list[dict[str, Any]]:
        """One decision per batch. ``breached[i]``: any KPI failed (None: unlabelled);
        ``drift[i]``: {feature: PSI}."""
        decisions, streak = [], 0
        for b, (breach, psis) in enumerate(zip(breached, drift, strict=True), start=1):
            streak = streak + 1 if breach else 0
            drifted = {f: v for f, v in psis.items() if f in self.important_features and v > self.drift_threshold}
            reasons = []
            if streak >= self.k:
                reasons.append(f"KPI breached {streak} batches in a row (k = {self.k})")
            if drifted:
                top = max(drifted, key=drifted.get)
                reasons.append(f"PSI {drifted[top]:.2f} on important feature {top} > {self.drift_threshold:g}")
            decisions.append({"batch": b, "breach_streak": streak, "retrain": bool(reasons),
                              "reason": "; ".join(reasons) or "no trigger"})
            if reasons:
                streak = 0  # a retrain starts the count again
        return decisions


def compare_models(contract: KpiContract, metric: str, y_true, champion: tuple, challenger: tuple, *,
                   margin: float, n_boot: int = 200, seed: int = 0) -> dict[str, Any]:
    """Champion vs challenger on one labelled batch: scores, a paired bootstrap interval of
    the improvement (positive = challenger better), and whether to promote it.

    ``champion``/``challenger`` are (labels, proba). Promote only if the improvement is at
    least ``margin``.
    """
    y = np.asarray(y_true, dtype=object if contract.problem_type == "classification" else float)
    sign = 1.0 if contract.direction(metric) == "higher" else -1.0

    def value(pair, idx):
        labels, proba = pair
        return score(metric, contract, y[idx], np.asarray(labels)[idx], None if proba is None else np.asarray(proba)[idx])

    full = np.arange(len(y))
    champ, chall = value(champion, full), value(challenger, full)
    gain = sign * (chall - champ)
    lo, hi = bootstrap_interval(lambda idx: sign * (value(challenger, idx) - value(champion, idx)), len(y),
                                n_boot=n_boot, seed=seed)
    promote = bool(np.isfinite(gain) and gain >= margin)
    verdict = (f"promote: {metric} improves by {gain:+.3f} (>= margin {margin:g})" if promote else
               f"keep champion: {metric} changes by {gain:+.3f} (< margin {margin:g})")
    return {"metric": metric, "champion": champ, "challenger": chall, "gain": gain, "gain_ci_low": lo,
            "gain_ci_high": hi, "margin": margin, "promote": promote, "verdict": verdict}
