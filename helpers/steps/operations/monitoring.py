"""Step 5b: production batches, drift and KPI tracking, the retraining policy.

Drift per feature is measured two ways: the Population Stability Index (PSI, bands
0.1 and 0.25: an industry rule of thumb, raised to the PSI chance alone reaches at the
batch's size) and a statistical test from scipy (Kolmogorov-Smirnov plus chi-square on
the PSI bins for numeric, chi-square for categorical columns). Alerts are decided for a
whole run at once, Benjamini-Hochberg over every feature of every batch
(``control_false_alarms``), and KPIs get the core's pass / watch / fail verdict
(``kpis.kpi_verdict``) on intervals sized for the run's number of checks. Production is
either real new data (``monitor_data``) or a seeded simulation drawn from the held-out
test side with a documented drift schedule (``simulate_batches``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import special, stats

from helpers.core import artifacts, exercises, modelio, sections, tables
from helpers.core.cleaning import is_number
from helpers.core.datasets import load_source
from helpers.core.errors import PlaybookError
from helpers.core.exercises import Feedback
from helpers.core.inspection import permutation_importance_table
from helpers.core.kpis import (
    BATCH_COLUMNS,
    KPI_ALPHA,
    MIN_JUDGE_COUNT,
    KpiContract,
    batch_kpis,
    bootstrap_interval,
    has_fast_bootstrap,
    resample_scores,
    score,
    simultaneous_level,
)
from helpers.core.kpis import percentile_interval as _percentiles
from helpers.core.paths import STEP_NOTEBOOKS
from helpers.core.sampling import subsample
from helpers.core.sections import Fact, Section
from helpers.core.split import time_values
from helpers.core.system import LOCK_FILE
from helpers.steps.operations import deployment, readiness, requestlog

PSI_BANDS = (0.1, 0.25)  # below 0.1 stable, 0.1-0.25 moderate, above 0.25 significant
MISSING = "<missing>"
PREDICTIONS = "(predictions)"  # the drift row of the model's outputs
_EPS = 1e-4  # floor for empty bins: PSI's log ratio is undefined at 0
CHANCE_QUANTILE = 0.99  # a PSI band starts no lower than the PSI 1% of drift-free batches of that size reach
_CHANCE_DRAWS = 1000  # simulated drift-free batches per (feature, batch size): ten beyond the 99th percentile


def psi_band(value: float, chance: float = 0.0, edges: tuple[float, float] = PSI_BANDS) -> str:
    """The PSI band of a value: stable (< 0.1), moderate (< 0.25) or significant.

    ``chance``: the PSI drift-free batches of this size reach by chance (``DriftDetector.chance_psi``);
    both edges are raised to it, so a small batch's chance PSI is never called a shift.
    """
    if value is None or not np.isfinite(value):
        return "n/a"
    low, high = max(edges[0], chance), max(edges[1], chance)
    return "stable" if value < low else "moderate" if value < high else "significant"


def psi_from_shares(expected: np.ndarray, actual: np.ndarray) -> float | np.ndarray:
    """PSI = sum((a - e) * ln(a / e)) over bins (the last axis), with empty bins floored at 1e-4."""
    e = np.clip(np.asarray(expected, dtype=float), _EPS, None)
    a = np.clip(np.asarray(actual, dtype=float), _EPS, None)
    value = np.sum((a - e) * np.log(a / e), axis=-1)
    return float(value) if np.ndim(value) == 0 else value


def quantile_edges(reference: Sequence[float], n_bins: int = 10) -> np.ndarray:
    """Inner bin edges at the reference's quantiles (ties merged), for PSI binning."""
    values = pd.Series(reference, dtype=float).dropna().to_numpy()
    if values.size == 0:
        return np.array([])
    return np.unique(np.quantile(values, np.linspace(0, 1, n_bins + 1)[1:-1]))


def numeric_counts(values: Sequence[float], edges: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Rows (or summed ``weights``) per quantile bin, plus a last bin for missing values."""
    v = pd.Series(values, dtype=float).to_numpy()
    w = np.ones(len(v)) if weights is None else np.asarray(weights, dtype=float)
    missing = np.isnan(v)
    counts = np.bincount(np.searchsorted(edges, v[~missing], side="right"), weights=w[~missing],
                         minlength=len(edges) + 1)
    return np.append(counts, w[missing].sum()).astype(float)


def numeric_shares(values: Sequence[float], edges: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Shares per quantile bin, plus a last bin for missing values."""
    counts = numeric_counts(values, edges, weights)
    return counts / max(counts.sum(), 1.0)


def category_counts(values: Sequence[Any], categories: Sequence[str] | Mapping[str, int]) -> np.ndarray:
    """Counts per known category, plus one last bin for unseen ones (missing is a category).

    A value is matched by its text (``str``), missing values as ``MISSING``. ``categories``: the
    list, or its ``{category: position}`` lookup (``DriftDetector`` keeps one per column).
    """
    lookup = categories if isinstance(categories, Mapping) else {c: i for i, c in enumerate(categories)}
    arr = pd.Series(values, dtype=object).to_numpy(dtype=object)
    missing = pd.isna(arr)
    get, gap = lookup.get, lookup.get(MISSING, -1)
    # a dict lookup per value: several times faster than pandas' where/astype(str)/get_indexer on batches
    codes = np.fromiter((gap if m else get(v if type(v) is str else str(v), -1)
                         for v, m in zip(arr, missing, strict=True)), dtype=np.intp, count=len(arr))
    known = np.bincount(codes[codes >= 0], minlength=len(lookup)).astype(float)
    return np.append(known, float((codes < 0).sum()))


def psi_numeric(reference: Sequence[float], current: Sequence[float], n_bins: int = 10) -> float:
    edges = quantile_edges(reference, n_bins)
    return psi_from_shares(numeric_shares(reference, edges), numeric_shares(current, edges))


def psi_categorical(reference: Sequence[Any], current: Sequence[Any]) -> float:
    categories = _categories(reference)
    ref, cur = category_counts(reference, categories), category_counts(current, categories)
    return psi_from_shares(ref / max(ref.sum(), 1), cur / max(cur.sum(), 1))


def ks_test(reference: Sequence[float], current: Sequence[float]) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov statistic and p-value (missing values dropped)."""
    a, b = _finite_values(reference), _finite_values(current)
    if a.size == 0 or b.size == 0:
        return float("nan"), float("nan")
    result = stats.ks_2samp(a, b)
    return float(result.statistic), float(result.pvalue)


def _finite_values(values: Sequence[float]) -> np.ndarray:
    """The values as floats, missing ones dropped (an ndarray of floats is used as it is: no copy)."""
    plain = isinstance(values, np.ndarray) and values.dtype == float
    v = values if plain else pd.Series(values, dtype=float).to_numpy()
    return v[~np.isnan(v)] if np.isnan(v).any() else v


def chi2_test(ref_counts: np.ndarray, cur_counts: np.ndarray) -> tuple[float, float]:
    """Chi-square test of homogeneity on two count vectors (bins empty in both dropped).

    ``scipy.stats.chi2_contingency(table, correction=False)``'s arithmetic, step by step (the same
    expected counts, sum and ``chdtrc`` p-value): its input checks cost ~2 ms a call, and a run makes
    thousands (every feature of every batch, of the false-alarm trials and of the drift simulator).
    """
    table = np.vstack([ref_counts, cur_counts]).astype(float)
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return 0.0, 1.0
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
    statistic = ((table - expected) ** 2 / expected).sum()
    dof = table.shape[1] - 1  # (rows - 1) x (columns - 1), two rows
    return float(statistic), float(special.chdtrc(dof, statistic))


def _categories(values: Sequence[Any]) -> list[str]:
    return _category_table(values)[0]


def _category_table(values: Sequence[Any]) -> tuple[list[str], np.ndarray]:
    """The sorted categories of ``values`` (their text, missing as ``MISSING``) and ``category_counts`` of the
    values themselves (the last, unseen bin empty), from one count."""
    s = pd.Series(values, dtype=object)
    counts = s.where(pd.notna(s), MISSING).astype(str).value_counts(sort=False)
    categories = sorted(counts.index)
    return categories, np.append(counts.reindex(categories).to_numpy(dtype=float), 0.0)


DRIFT_COLUMNS = ["feature", "psi", "psi_chance", "band", "test", "statistic", "p_value", "q_value", "alert"]


class DriftDetector:
    """Per-feature drift of a batch against a reference table (scikit-learn style).

    ``fit`` learns quantile bins (numeric) and categories from the reference;
    ``score`` returns one row per feature: PSI, the PSI chance reaches at this batch size
    (``psi_chance``), its band, the test, statistic, p-value, the p-value adjusted
    (Benjamini-Hochberg) across the batch's features and whether it alerts (q < ``alpha``).
    A run decides its alerts across all its batches with ``control_false_alarms``.

    Numeric features combine Kolmogorov-Smirnov (most sensitive to a moved distribution)
    with chi-square on the PSI bins (which sees a changed share of missing values, KS
    drops them), Bonferroni over the two. ``psi_alert``: the PSI from which a shift is
    "significant" (raised to the chance level for small batches, see ``psi_band``).
    """

    def __init__(self, numeric: Sequence[str] = (), categorical: Sequence[str] = (), *, n_bins: int = 10,
                 alpha: float = 0.01, psi_alert: float = PSI_BANDS[1], seed: int = 0):
        self.numeric = numeric
        self.categorical = categorical
        self.n_bins = n_bins
        self.alpha = alpha
        self.psi_alert = psi_alert
        self.seed = seed

    def fit(self, X: pd.DataFrame) -> DriftDetector:
        missing = [c for c in [*self.numeric, *self.categorical] if c not in X.columns]
        if missing:
            raise PlaybookError(f"The reference table lacks the columns {', '.join(missing)}.",
                                "fit the drift detector on a table with every feature.")
        self.edges_ = {c: quantile_edges(X[c], self.n_bins) for c in self.numeric}
        self.ref_counts_ = {c: numeric_counts(X[c], self.edges_[c]) for c in self.numeric}
        self.ref_shares_ = {c: self.ref_counts_[c] / max(self.ref_counts_[c].sum(), 1.0) for c in self.numeric}
        self.ref_values_ = {c: pd.Series(X[c], dtype=float).dropna().to_numpy() for c in self.numeric}
        tables = {c: _category_table(X[c]) for c in self.categorical}
        self.categories_ = {c: categories for c, (categories, _) in tables.items()}
        self.lookup_ = {c: {v: i for i, v in enumerate(self.categories_[c])} for c in self.categorical}
        self.ref_counts_.update({c: counts for c, (_, counts) in tables.items()})
        self.chance_: dict[tuple[str, int], float] = {}
        return self

    def chance_psi(self, column: str, n_rows: int) -> float:
        """The PSI that drift-free batches of ``n_rows`` reach in 1% of cases (``CHANCE_QUANTILE``).

        Its null distribution, simulated: reference and batch drawn (multinomial) from the
        reference's own bin shares, so both samples' noise counts, as in the real comparison.
        """
        key = (column, int(n_rows))
        if key not in self.chance_:
            ref = self.ref_counts_[column]
            shares = ref / max(ref.sum(), 1.0)
            rng = np.random.default_rng([self.seed, int(n_rows)])
            a = rng.multinomial(max(int(n_rows), 1), shares, size=_CHANCE_DRAWS) / max(int(n_rows), 1)
            e = rng.multinomial(max(int(ref.sum()), 1), shares, size=_CHANCE_DRAWS) / max(ref.sum(), 1.0)
            self.chance_[key] = float(np.quantile(psi_from_shares(e, a), CHANCE_QUANTILE))
        return self.chance_[key]

    def feature_row(self, column: str, values: Sequence[Any]) -> dict[str, Any]:
        """Drift of one feature of a batch (``alert``: its own p-value below ``alpha``, before any control)."""
        ref = self.ref_counts_[column]
        if column in self.edges_:
            cur = numeric_counts(values, self.edges_[column])
            stat, p_ks = ks_test(self.ref_values_[column], values)
            _, p_bins = chi2_test(ref, cur)
            p = min(1.0, 2 * min(p_ks, p_bins)) if np.isfinite(p_ks) else p_bins
            test = "ks+chi2"
        else:
            cur = category_counts(values, self.lookup_[column])
            stat, p = chi2_test(ref, cur)
            test = "chi2"
        value = psi_from_shares(ref / max(ref.sum(), 1), cur / max(cur.sum(), 1))
        chance = self.chance_psi(column, int(cur.sum()))
        band = psi_band(value, chance, (PSI_BANDS[0], self.psi_alert))
        return {"feature": column, "psi": value, "psi_chance": chance, "band": band, "test": test,
                "statistic": stat, "p_value": p, "q_value": p, "alert": bool(p < self.alpha)}

    def score(self, X: pd.DataFrame) -> pd.DataFrame:
        table = pd.DataFrame([self.feature_row(c, X[c]) for c in [*self.numeric, *self.categorical]],
                             columns=DRIFT_COLUMNS)
        return _control(table, self.alpha) if len(table) else table


def _control(table: pd.DataFrame, alpha: float) -> pd.DataFrame:
    """Benjamini-Hochberg over every row of ``table``: q-values, and alert where q < ``alpha``."""
    p = table["p_value"].astype(float).fillna(1.0).to_numpy()
    q = stats.false_discovery_control(p, method="bh") if len(p) else p
    return table.assign(q_value=q, alert=q < alpha)


def false_alarm_trials(reference: pd.DataFrame, numeric: Sequence[str], categorical: Sequence[str], *,
                       batch_size: int, n_batches: int = 1, n_trials: int = 100, alpha: float = 0.01,
                       psi_alert: float = PSI_BANDS[1], seed: int = 0) -> pd.DataFrame:
    """Drift-free runs on undrifted data: one row per trial, batch and feature.

    Each trial splits the data at random into two halves: one is the reference, the
    ``n_batches`` batches of a run are drawn from the other (so batch and reference are
    independent samples of the same distribution, as a drift-free production batch would
    be). A fresh split per trial matters: with one fixed split, every trial would share that
    split's chance difference and the rates would be badly off. ``alert`` is decided for
    each trial's run as a whole (``control_false_alarms``).
    """
    rng = np.random.default_rng(seed)
    half = len(reference) // 2
    if half < 2:
        raise PlaybookError("Too few reference rows to estimate false alarms.", "use more training rows.")
    size = min(batch_size, len(reference) - half)
    rows = []
    for trial in range(n_trials):
        order = rng.permutation(len(reference))
        detector = DriftDetector(numeric, categorical, alpha=alpha, psi_alert=psi_alert, seed=seed).fit(
            reference.iloc[order[:half]])
        tables = [detector.score(reference.iloc[rng.choice(order[half:], size=size, replace=False)]).assign(batch=b)
                  for b in range(1, n_batches + 1)]
        rows.append(_control(pd.concat(tables, ignore_index=True), alpha).assign(trial=trial))
    out = pd.concat(rows, ignore_index=True)
    return out.assign(test_alarm=out["p_value"] < alpha, psi_alarm=out["psi"] >= psi_alert, nominal=alpha,
                      batch_size=size)


def false_alarm_rates(reference: pd.DataFrame, numeric: Sequence[str], categorical: Sequence[str], *,
                      batch_size: int, n_trials: int = 100, n_batches: int = 1, alpha: float = 0.01,
                      psi_alert: float = PSI_BANDS[1], seed: int = 0,
                      trials: pd.DataFrame | None = None) -> pd.DataFrame:
    """How often each check alarms per batch on undrifted data at ``batch_size`` rows (``false_alarm_trials``).

    ``test_alarm_rate``: the test's own p < alpha (about alpha by design); ``psi_alarm_rate``:
    PSI >= ``psi_alert``; ``alert_rate``: alerts after the run-level control (far below alpha).
    """
    if trials is None:
        trials = false_alarm_trials(reference, numeric, categorical, batch_size=batch_size, n_batches=n_batches,
                                    n_trials=n_trials, alpha=alpha, psi_alert=psi_alert, seed=seed)
    out = trials.groupby("feature", sort=False).agg(test=("test", "first"), test_alarm_rate=("test_alarm", "mean"),
                                                    psi_alarm_rate=("psi_alarm", "mean"), alert_rate=("alert", "mean"),
                                                    mean_psi=("psi", "mean"), psi_chance=("psi_chance", "mean"),
                                                    nominal=("nominal", "first"), batch_size=("batch_size", "first"))
    return out.reset_index()


def run_false_alarms(trials: pd.DataFrame) -> dict[str, Any]:
    """Per drift-free run of ``false_alarm_trials``: how many tests, how many false alarms the tests make on
    their own (expected: tests x alpha) and how many runs raise any alert before and after the control."""
    per_run = trials.groupby("trial").agg(raw=("test_alarm", "sum"), psi=("psi_alarm", "sum"), alerts=("alert", "sum"))
    tests = len(trials) / max(trials["trial"].nunique(), 1)
    alpha = float(trials["nominal"].iloc[0])
    return {"runs": int(len(per_run)), "batches_per_run": int(trials["batch"].max()), "tests_per_run": int(tests),
            "alpha": alpha, "expected_raw_alarms_per_run": tests * alpha,
            "raw_alarms_per_run": float(per_run["raw"].mean()),
            "runs_with_a_raw_alarm": float(((per_run["raw"] > 0) | (per_run["psi"] > 0)).mean()),
            "runs_with_an_alert": float((per_run["alerts"] > 0).mean())}


def expected_false_alarms(n_features: int, n_batches: int, n_kpis: int, *, alpha: float = 0.01,
                          kpi_alpha: float = KPI_ALPHA) -> pd.DataFrame:
    """What a drift-free run of ``n_batches`` should raise by chance, check by check, without and with control.

    Drift: one test per feature and batch plus the predictions' test, each wrong with
    probability ``alpha`` on its own; Benjamini-Hochberg at ``alpha`` across the run keeps the
    chance of any false drift alert at ``alpha``. KPIs: a 95% interval wrongly excludes a target
    the model exactly meets 2.5% of the time; intervals at ``simultaneous_level`` for the run's
    checks keep the chance of any false failure at ``kpi_alpha``.
    """
    drift_tests, kpi_checks = (n_features + 1) * n_batches, n_kpis * n_batches
    alone = "false alarms without control (at most)"
    return pd.DataFrame([
        {"check": "drift tests (features and predictions)", "tests per run": drift_tests,
         "one test alone": f"p < {alpha:g}", alone: drift_tests * alpha,
         "control": f"Benjamini-Hochberg at {alpha:g} across the run",
         "chance of any false alarm (at most)": alpha},
        {"check": "KPI failures (labelled batches)", "tests per run": kpi_checks,
         "one test alone": "95% interval excludes the target", alone: kpi_checks * KPI_ALPHA,
         "control": f"intervals at {simultaneous_level(kpi_checks, kpi_alpha):.2%} (Bonferroni)",
         "chance of any false alarm (at most)": kpi_alpha},
    ])


# --- production batches --------------------------------------------------------------------------


@dataclass(frozen=True)
class DriftSchedule:
    """The documented drift of a simulation, per batch (ramp r = batch / (n - 1)).

    - covariate shift on ``feature``: rows are resampled with weight exp(1.5 * m * r * z),
      z the feature's normal score (from ranks); P(y | x) is unchanged;
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
    """Seeded production batches drawn from ``frame`` under ``DriftSchedule`` (weighted sampling,
    without replacement unless a batch needs more than half the rows)."""
    if len(frame) < 10:
        raise PlaybookError(f"Only {len(frame)} held-out rows: too few to simulate production.",
                            "use a larger test_size or more data.")
    schedule = DriftSchedule(n_batches, magnitude, feature).table()
    size = batch_size or max(50, min(len(frame) // 2, SIMULATED_BATCH_ROWS))  # half the held-out rows, at most 1000
    rng = np.random.default_rng(seed)
    all_weights = simulation_weights(frame, schedule, target=target, problem_type=problem_type, feature=feature,
                                     positive_label=positive_label)
    batches = []
    for row, weights in zip(schedule.itertuples(), all_weights, strict=True):
        # without replacement: repeated rows would make KS and chi-square overconfident
        idx = rng.choice(len(frame), size=size, replace=size > len(frame) // 2, p=weights / weights.sum())
        batch = frame.iloc[idx].copy()
        if target and row.concept_flip_share > 0:
            batch[target] = _concept_drift(batch, frame, target, problem_type, feature, row.concept_flip_share, rng)
        batch["batch"] = row.batch
        batches.append(batch)
    return batches, schedule


def simulation_weights(frame: pd.DataFrame, schedule: pd.DataFrame, *, target: str | None, problem_type: str,
                       feature: str | None, positive_label: Any = None) -> list[np.ndarray]:
    """Per batch of ``schedule``, each row's sampling weight: the simulation's full distribution (covariate and
    label-prior shift; concept drift changes labels, not weights)."""
    z = _standardised(frame[feature]) if feature else np.zeros(len(frame))
    prior_mask = _prior_mask(frame, target, problem_type, positive_label)
    return [np.exp(np.clip(row.covariate_shift * z, -20, 20)) * np.where(prior_mask, row.label_prior_weight, 1.0)
            for row in schedule.itertuples()]


def _standardised(values: pd.Series) -> np.ndarray:
    """Normal scores from ranks: robust to outliers (a units error must not dominate the weights)."""
    v = pd.Series(values, dtype=float)
    ranks = v.rank(method="average")
    z = pd.Series(stats.norm.ppf(ranks / (v.notna().sum() + 1)), index=v.index)
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


def batches_from_data(frame: pd.DataFrame, *, time_column: str | None, n_batches: int,
                      max_rows: int | None = None, seed: int = 0) -> list[pd.DataFrame]:
    """Cut real production data into ``n_batches`` periods of equal row counts, in time order.

    ``max_rows``: a period with more rows keeps a seeded sample of that many (``sampling.subsample``),
    still in time order.
    """
    if frame.empty:
        raise PlaybookError("monitor_data has no rows.", "give a file with production rows.")
    if time_column:
        if time_column not in frame.columns:
            raise PlaybookError(f"monitor_data has no time column {time_column!r}.",
                                f"add the column {time_column!r} or set time_column to None (file order).")
        order = time_values(frame[time_column])  # the split's rule, so batches follow the same clock
        frame = frame.iloc[np.argsort(order.to_numpy(), kind="stable")]
    n = max(1, min(n_batches, len(frame)))
    periods = np.array_split(np.arange(len(frame)), n)
    out = []
    for b, idx in enumerate(periods, start=1):
        if max_rows is not None and len(idx) > max_rows:
            kept, _ = subsample(pd.DataFrame(index=idx), None, max_rows, seed + b, stratify=False)
            idx = np.sort(kept.index.to_numpy())
        batch = frame.iloc[idx].copy()
        batch["batch"] = b
        out.append(batch)
    return out


# --- tracking -------------------------------------------------------------------------------------

Predictor = Callable[[pd.DataFrame], tuple[np.ndarray, np.ndarray | None]]  # X -> (labels, proba or None)




def prediction_shares(labels: np.ndarray, proba: np.ndarray | None) -> np.ndarray:
    """What prediction drift is measured on: the positive-class probability when binary, else labels."""
    if proba is not None and np.ndim(proba) == 1:
        return np.asarray(proba, dtype=float)
    return np.asarray(labels)


def prediction_detector(reference_pred: np.ndarray, *, alpha: float = 0.01, seed: int = 0) -> DriftDetector:
    """A drift detector of the model's outputs (scores or labels), fitted on the reference predictions."""
    frame = pd.DataFrame({PREDICTIONS: np.asarray(reference_pred)})
    numeric = [PREDICTIONS] if is_number(frame[PREDICTIONS]) else []  # labels are text (pandas' str dtype)
    return DriftDetector(numeric, [c for c in [PREDICTIONS] if c not in numeric], alpha=alpha, seed=seed).fit(frame)


def track_batch(batch: pd.DataFrame, *, features: Sequence[str], predictor: Predictor, detector: DriftDetector,
                contract: KpiContract, target: str | None, reference_pred: np.ndarray,
                n_boot: int = 200, seed: int = 0, level: float = 0.95, min_count: int = MIN_JUDGE_COUNT,
                predictions: DriftDetector | None = None) -> dict[str, Any]:
    """Drift of every feature and of the predictions (last drift row), and KPIs (when labelled) of one batch.

    KPI intervals are at ``level`` (``track_all`` passes the run's ``simultaneous_level``); alerts are
    controlled across this batch only until ``control_false_alarms`` decides them for the run.
    ``predictions``: the ``prediction_detector`` of ``reference_pred``, when already fitted.
    """
    X = batch[list(features)]
    labels, proba = predictor(X)
    outputs = prediction_shares(labels, proba)
    if predictions is None:
        predictions = prediction_detector(reference_pred, alpha=detector.alpha, seed=detector.seed)
    drift = _control(pd.concat([detector.score(X), pd.DataFrame([predictions.feature_row(PREDICTIONS, outputs)])],
                               ignore_index=True), detector.alpha)
    labelled = bool(target) and target in batch.columns and batch[target].notna().all()
    kpi_table = batch_kpis(contract, batch[target], labels, proba, n_boot=n_boot, seed=seed, level=level,
                           min_count=min_count) if labelled else None
    return {"drift": drift, "kpis": kpi_table, "prediction_psi": float(drift["psi"].iloc[-1]),
            "labels": labels, "proba": proba, "n_rows": len(batch)}


def control_false_alarms(results: Sequence[dict[str, Any]], *, alpha: float = 0.01) -> list[dict[str, Any]]:
    """Decide the drift alerts of a whole run at once: Benjamini-Hochberg at ``alpha`` over every feature and the
    predictions of every batch, so a drift-free run raises a false drift alert with chance ``alpha`` at most
    (not once per test). Updates each result's ``drift`` table (``q_value``, ``alert``) and returns ``results``."""
    tables = [r["drift"].assign(_batch=b) for b, r in enumerate(results) if len(r["drift"])]
    if not tables:
        return list(results)
    pooled = _control(pd.concat(tables, ignore_index=True), alpha)
    for b, part in pooled.groupby("_batch", sort=False):
        results[b]["drift"] = part.drop(columns="_batch").reset_index(drop=True)
    return list(results)


def timeline(results: Sequence[dict[str, Any]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-batch KPI rows and per-batch drift rows (long format) from ``track_batch`` results."""
    kpi_rows, drift_rows = [], []
    for b, res in enumerate(results, start=1):
        if res["kpis"] is not None:
            kpi_rows.append(res["kpis"].assign(batch=b))
        drift_rows.append(res["drift"].assign(batch=b, prediction_psi=res["prediction_psi"]))
    kpi = pd.concat(kpi_rows, ignore_index=True) if kpi_rows else pd.DataFrame(columns=[*BATCH_COLUMNS, "batch"])
    return kpi, pd.concat(drift_rows, ignore_index=True)


ALERT_COLUMNS = ["batch", "feature", "kind", "reason"]


def _p_phrase(name: str, value: float) -> str:
    """``p < 0.001`` or ``p = 0.012``: what a reader takes in, never e-notation."""
    text = tables.format_p(value)
    return f"{name} {text}" if text.startswith("<") else f"{name} = {text}"


def alerts_table(kpi: pd.DataFrame, drift: pd.DataFrame) -> pd.DataFrame:
    """One row per alert: batch, feature (or metric), kind, reason.

    Drift alerts are the rows ``control_false_alarms`` decided; a KPI alerts only when its verdict
    is "fail" (watch and too-few-rows verdicts are in ``kpi_notes``).
    """
    rows = []
    for r in drift[drift["alert"].astype(bool)].itertuples():
        kind = "prediction drift" if r.feature == PREDICTIONS else "drift"
        rows.append({"batch": r.batch, "feature": r.feature, "kind": kind,
                     "reason": f"PSI {r.psi:.2f} ({r.band}); {r.test} {_p_phrase('p', r.p_value)}, "
                               f"{_p_phrase('q', r.q_value)} across the run"})
    for r in kpi[kpi["verdict"] == "fail"].itertuples():
        rows.append({"batch": r.batch, "feature": r.metric, "kind": "KPI breach",
                     "reason": f"{r.metric} {r.achieved:.3f} vs target {r.target:g} ({r.direction} is better): "
                               f"its {r.level:.2%} interval [{r.ci_low:.3f}, {r.ci_high:.3f}] excludes the target"})
    return pd.DataFrame(rows, columns=ALERT_COLUMNS).sort_values(["batch", "kind"], kind="stable").reset_index(drop=True)


def kpi_notes(kpi: pd.DataFrame) -> pd.DataFrame:
    """KPIs shown but not alerted on: "KPI watch" (the point misses, the interval contains the target) and
    "KPI not judged" (too few rows). Neither counts toward retraining."""
    rows = []
    for r in kpi[kpi["verdict"].isin(["watch", "too few rows"])].itertuples():
        if r.verdict == "watch":
            rows.append({"batch": r.batch, "feature": r.metric, "kind": "KPI watch",
                         "reason": f"{r.metric} {r.achieved:.3f} misses {r.target:g} but its {r.level:.2%} interval "
                                   f"[{r.ci_low:.3f}, {r.ci_high:.3f}] contains it: could be chance"})
        else:
            rows.append({"batch": r.batch, "feature": r.metric, "kind": "KPI not judged",
                         "reason": f"too few rows to judge {r.metric}: it averages over {int(r.count)} rows "
                                   "(positives for recall, flagged rows for precision, ...)"})
    return pd.DataFrame(rows, columns=ALERT_COLUMNS)


# --- retraining ----------------------------------------------------------------------------------------


class RetrainingPolicy:
    """When to retrain: ``k`` consecutive KPI breaches (verdict "fail"), or PSI above ``drift_threshold``
    on one of the ``important_features`` that alerted. The breach counter restarts after a retrain;
    a batch with no judged KPI (unlabelled, too few rows) neither extends nor breaks it.
    """

    def __init__(self, k: int = 2, drift_threshold: float = 0.25, important_features: Sequence[str] = ()):
        self.k = k
        self.drift_threshold = drift_threshold
        self.important_features = important_features

    def decide(self, breached: Sequence[bool | None], drift: Sequence[dict[str, float]]) -> list[dict[str, Any]]:
        """One decision per batch. ``breached[i]``: any KPI failed (False: none failed, watch included;
        None: no KPI judged); ``drift[i]``: {feature: PSI} of the features whose drift alerted."""
        decisions, streak = [], 0
        for b, (breach, psis) in enumerate(zip(breached, drift, strict=True), start=1):
            streak = streak if breach is None else streak + 1 if breach else 0
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
    if has_fast_bootstrap(contract, metric):
        idx = np.random.default_rng(seed).integers(0, len(y), (n_boot, len(y)))
        lo, hi = _percentiles(sign * (resample_scores(metric, contract, y, *challenger, idx)
                                      - resample_scores(metric, contract, y, *champion, idx)))
    else:
        lo, hi = bootstrap_interval(lambda idx: sign * (value(challenger, idx) - value(champion, idx)), len(y),
                                    n_boot=n_boot, seed=seed)
    promote = bool(np.isfinite(gain) and gain >= margin)
    verdict = (f"promote: {metric} improves by {gain:+.3f} (>= margin {margin:g})" if promote else
               f"keep champion: {metric} changes by {gain:+.3f} (< margin {margin:g})")
    return {"metric": metric, "champion": champ, "challenger": chall, "gain": gain, "gain_ci_low": lo,
            "gain_ci_high": hi, "margin": margin, "promote": promote, "verdict": verdict}


# --- the notebook's monitoring half ------------------------------------------------------------------

MAX_CHALLENGERS = 2  # at most this many retrains per run keeps step 5 fast; later triggers are recorded only
N_IMPORTANT = 3  # the policy watches drift on this many most important features

# Step 5 answers each question on a seeded sample of fixed, documented size, so its time stays flat with the
# data (the demo's 4,000 training and 1,000 test rows fit under every cap but the importance one, as before).
IMPORTANCE_SAMPLE_ROWS = 800  # test rows permutation importance ranks the features on (3 repeats: a ranking)
REFERENCE_ROWS = 20_000  # training rows the drift reference keeps; test rows of the reference predictions
FALSE_ALARM_ROWS = 2 * REFERENCE_ROWS  # training rows the false-alarm trials halve: each half a reference as large
CHALLENGER_ROWS = 20_000  # training rows a challenger is refitted on (plus the labelled batches before it)
MONITOR_BATCH_ROWS = 20_000  # rows tracked per period of monitor_data (validation, drift and KPIs)
SIMULATED_BATCH_ROWS = 1_000  # rows per simulated batch: half the held-out rows, at most this
SCENARIO_BATCH_ROWS = 300  # rows per batch of the drift simulator (explorer)


def _stratify(prepared) -> bool:
    return prepared.problem_type == "classification"


def feature_importance(model, X: pd.DataFrame, y: pd.Series | None, contract: KpiContract, *, seed: int,
                       n_rows: int = IMPORTANCE_SAMPLE_ROWS) -> pd.DataFrame:
    """Permutation importance of each feature on a sample of ``n_rows``: the drop in the contract's primary KPI
    (clustering: in the model's own objective). ``attrs["sampled"]``: the ``deployment.Sampled`` that says so."""
    table = permutation_importance_table(model, X, y, contract, deployment.primary_metric(contract), n_repeats=3,
                                         seed=seed, n_jobs=1, max_rows=n_rows)
    table.attrs["sampled"] = deployment.Sampled("Permutation importance", min(len(X), n_rows), len(X), "test rows",
                                                n_rows, "monitoring.IMPORTANCE_SAMPLE_ROWS")
    return table


def heldout_importance(model, prepared, contract: KpiContract, *, seed: int,
                    n_rows: int = IMPORTANCE_SAMPLE_ROWS) -> pd.DataFrame:
    """``feature_importance`` on the held-out side, its sample drawn before the conversion to model input (the
    same rows ``permutation_importance_table`` would draw from the converted table, so the same ranking):
    converting 200,000 rows to rank features on 800 would cost more than the ranking."""
    rows, labels = subsample(prepared.test, prepared.y("test"), n_rows, seed, stratify=_stratify(prepared))
    table = feature_importance(model, replace(prepared, test=rows).X("test"), labels, contract, seed=seed,
                               n_rows=n_rows)
    table.attrs["sampled"] = replace(table.attrs["sampled"], of=len(prepared.test))
    return table


def challenger_sampled(prepared, max_rows: int = CHALLENGER_ROWS) -> deployment.Sampled:
    """The training rows ``retrain_challengers`` refits each challenger on, stated."""
    n = len(prepared.train)
    return deployment.Sampled("Challengers refitted", min(n, max_rows), n, "training rows", max_rows,
                              "monitoring.CHALLENGER_ROWS",
                              how="a stratified, seeded sample" if _stratify(prepared) else "a seeded sample",
                              note="each plus the labelled batches before its trigger")


def drift_reference(prepared, *, seed: int, max_rows: int = REFERENCE_ROWS) -> tuple[pd.DataFrame, deployment.Sampled]:
    """The training rows drift is measured against (model input, at most ``max_rows``, seeded).

    A batch of 1,000 rows compared with 20,000 reference rows: the reference's own noise adds 5% to
    the batch's; ``DriftDetector.chance_psi`` counts it at the reference's real size.
    """
    rows, _, sampled = deployment.capped(prepared.train, None, max_rows, seed, what="Drift reference",
                                         unit="training rows", cap_name="monitoring.REFERENCE_ROWS")
    return replace(prepared, train=rows).X("train"), sampled


def reference_predictions(package, prepared, *, seed: int,
                          max_rows: int = REFERENCE_ROWS) -> tuple[np.ndarray, deployment.Sampled]:
    """The model's outputs on held-out rows (at most ``max_rows``, seeded): prediction drift's reference."""
    rows, _, sampled = deployment.capped(prepared.test, None, max_rows, seed, what="Reference predictions",
                                         unit="test rows", cap_name="monitoring.REFERENCE_ROWS")
    return prediction_shares(*deployment.predict_arrays(package, rows)), sampled


def false_alarm_pool(prepared, *, seed: int,
                     max_rows: int = FALSE_ALARM_ROWS) -> tuple[pd.DataFrame, deployment.Sampled]:
    """The undrifted training rows ``false_alarm_trials`` halves into reference and batches (at most ``max_rows``)."""
    rows, _, sampled = deployment.capped(prepared.train, None, max_rows, seed, what="False-alarm trials",
                                         unit="training rows", cap_name="monitoring.FALSE_ALARM_ROWS")
    return replace(prepared, train=rows).X("train"), sampled


def important_features(importance: pd.DataFrame, n: int = N_IMPORTANT) -> list[str]:
    return importance.loc[importance["importance"] > 0, "feature"].head(n).tolist()


def shift_feature(importance: pd.DataFrame, numeric: Sequence[str]) -> str | None:
    """The feature the simulation shifts: the most important numeric feature."""
    ranked = [f for f in importance["feature"] if f in numeric]
    return ranked[0] if ranked else None


def production_batches(params, prepared, *, feature: str | None, positive_label: Any = None,
                       time_column: str | None = None) -> tuple[list[pd.DataFrame], pd.DataFrame, str]:
    """Real ``monitor_data`` cut into periods (each at most ``MONITOR_BATCH_ROWS``, seeded), or the simulation from
    the test side; and its source. ``schedule.attrs["sampled"]``: the ``deployment.Sampled`` of the batches' rows."""
    if params.get("monitor_data"):
        source = params["monitor_data"]
        if requestlog.is_log(source):  # the --log-dir of `playbook serve`: served rows in time order, labels joined
            frame = requestlog.read_log(source, id_column=prepared.id_column, target=prepared.target)
            time_column = requestlog.TIME_COLUMN
        else:
            frame = load_source(source)
        batches = batches_from_data(frame, time_column=time_column if time_column in frame.columns else None,
                                    n_batches=params["n_batches"], max_rows=MONITOR_BATCH_ROWS,
                                    seed=params.get("seed", 0))
        if time_column == requestlog.TIME_COLUMN:  # the log's clock ordered the periods; it is no model input
            batches = [b.drop(columns=time_column) for b in batches]
        schedule = pd.DataFrame({"batch": [int(b["batch"].iloc[0]) for b in batches],
                                 "rows": [len(b) for b in batches],
                                 "labelled": [bool(prepared.target and prepared.target in b.columns
                                                   and b[prepared.target].notna().all()) for b in batches]})
        schedule.attrs["sampled"] = deployment.Sampled(
            f"{len(batches)} periods of monitor_data tracked", int(schedule["rows"].sum()), len(frame), "rows",
            MONITOR_BATCH_ROWS, "monitoring.MONITOR_BATCH_ROWS per period", how="a seeded sample of each period")
        return batches, schedule, "monitor_data"
    batches, schedule = simulate_batches(prepared.test, target=prepared.target, problem_type=prepared.problem_type,
                                         n_batches=params["n_batches"], magnitude=params["drift_magnitude"],
                                         feature=feature, seed=params["seed"],
                                         positive_label=positive_label)
    schedule.attrs["sampled"] = deployment.Sampled(
        f"{len(batches)} simulated production batches, each", len(batches[0]), len(prepared.test), "test rows",
        SIMULATED_BATCH_ROWS, "monitoring.SIMULATED_BATCH_ROWS", how="drawn with the drift schedule's weights, seeded")
    return batches, schedule, "simulation"


def track_all(package, batches: Sequence[pd.DataFrame], detector: DriftDetector, contract: KpiContract, *,
              reference_pred: np.ndarray, n_boot: int = 200, seed: int = 0) -> list[dict[str, Any]]:
    """Validate (as ``playbook predict`` does), predict and track every batch; then decide the run's alerts.

    KPI intervals are at the ``simultaneous_level`` of the run's checks (KPIs x batches) and drift
    alerts are controlled across the run (``control_false_alarms``): a drift-free run alerts by
    chance at most ``KPI_ALPHA`` + ``detector.alpha`` of the time.
    """
    level = simultaneous_level(len(contract.kpis) * len(batches))
    predictions = prediction_detector(reference_pred, alpha=detector.alpha, seed=detector.seed)
    results = []
    for batch in batches:
        fixed, v = deployment.validate(batch.drop(columns="batch", errors="ignore"), package)
        if v.errors:
            results.append({"drift": pd.DataFrame(columns=DRIFT_COLUMNS),
                            "kpis": None, "prediction_psi": float("nan"), "labels": None, "proba": None,
                            "n_rows": len(batch), "validation": v, "fixed": fixed})
            continue
        res = track_batch(fixed, features=package.features,
                          predictor=lambda X: deployment.predict_arrays(package, X), detector=detector,
                          contract=contract, target=package.meta.get("target"), reference_pred=reference_pred,
                          n_boot=n_boot, seed=seed, level=level, predictions=predictions)
        res.update(validation=v, fixed=fixed)
        results.append(res)
    return control_false_alarms(results, alpha=detector.alpha)


def alert_counts(alerts: pd.DataFrame) -> pd.DataFrame:
    """Alerts per batch and kind (the full table is saved as alerts.csv)."""
    if alerts.empty:
        return pd.DataFrame(index=pd.Index([], name="batch"))
    return alerts.pivot_table(index="batch", columns="kind", values="reason", aggfunc="size", fill_value=0)


def validation_alerts(results: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """Schema findings per batch (errors stop a batch; warnings are counted)."""
    rows = []
    for b, res in enumerate(results, start=1):
        for r in res["validation"].table().itertuples():
            rows.append({"batch": b, "feature": "(schema)", "kind": f"schema {r.severity}", "reason": r.finding})
    return pd.DataFrame(rows, columns=["batch", "feature", "kind", "reason"])


def policy_inputs(results: Sequence[dict[str, Any]]) -> tuple[list[bool | None], list[dict[str, float]]]:
    """Per batch: whether any KPI failed (None when no KPI was judged: unlabelled or too few rows; a watch is
    not a failure) and {feature: PSI} of the features whose drift alerted (chance shifts are not evidence)."""
    breached = [None if r["kpis"] is None or not r["kpis"]["verdict"].isin(["pass", "watch", "fail"]).any()
                else bool((r["kpis"]["verdict"] == "fail").any()) for r in results]
    drift = [{f: v for f, v, a in zip(r["drift"]["feature"], r["drift"]["psi"], r["drift"]["alert"], strict=True) if a}
             for r in results]
    return breached, drift


def retrain_challengers(package, prepared, batches: Sequence[pd.DataFrame], results: Sequence[dict[str, Any]],
                        decisions: Sequence[dict[str, Any]], contract: KpiContract, *, margin: float, seed: int,
                        run=None, promote_for_real: bool = False,
                        max_rows: int = CHALLENGER_ROWS) -> list[dict[str, Any]]:
    """For each batch where the policy fires: train a challenger, compare, record the decision.

    The challenger is the champion's pipeline (``sklearn.base.clone``) refitted on the
    training side (a seeded, stratified sample of at most ``max_rows``: ``challenger_sampled``
    states it) plus the labelled batches before the firing one; both models are
    compared on the firing batch. Challengers are saved as ``models/v2``, ... when
    ``run`` is given; the manifest's champion changes only when ``promote_for_real``.
    """
    from sklearn.base import clone

    metric = deployment.primary_metric(contract)
    target = prepared.target
    # challengers of this champion are numbered from its version + 1 (a re-run replaces them)
    records, version = [], int(package.meta.get("version") or 1) + 1
    fired = [d for d in decisions if d["retrain"]][:MAX_CHALLENGERS]
    base = subsample(prepared.train, prepared.y("train"), max_rows, seed, stratify=_stratify(prepared))[0] \
        if fired else prepared.train
    for d in fired:
        b = d["batch"] - 1
        latest = results[b]
        if latest["kpis"] is None or metric is None:
            records.append({"batch": d["batch"], "reason": d["reason"], "verdict": "no labels: cannot compare",
                            "promote": False})
            continue
        earlier = [results[i]["fixed"] for i in range(b) if results[i]["kpis"] is not None]
        train = pd.concat([base, *earlier], ignore_index=True)
        challenger = clone(package.model).fit(deployment.model_input(train, package), train[target])
        chall_pkg = deployment.Package(challenger, package.meta, package.schema, package.cleaning, package.path)
        record = compare_models(contract, metric, latest["fixed"][target], (latest["labels"], latest["proba"]),
                                deployment.predict_arrays(chall_pkg, latest["fixed"]), margin=margin, seed=seed)
        record.update(batch=d["batch"], reason=d["reason"], trained_on_rows=len(train))
        if run is not None:
            folder = run.models_dir(version)
            modelio.save_model(challenger, folder / "model.skops")
            artifacts.write_json(folder / "model_meta.json", {**package.meta, "version": version,
                                                              "challenger_of": package.meta.get("version", 1),
                                                              "comparison": record, "training_rows": len(train)})
            record["saved_as"] = run.relative(folder)
            if record["promote"] and promote_for_real:
                run.update_manifest(champion={"version": version, "path": f"models/v{version}/model.skops",
                                              "family": package.meta.get("family")})
            version += 1
        records.append(record)
    return records




def timeline_figure(kpi: pd.DataFrame, drift: pd.DataFrame, features: Sequence[str]):
    """KPIs per batch against the contract's thresholds (top) and drift scores per batch (bottom)."""
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    for i, (metric, rows) in enumerate(kpi.groupby("metric", sort=False)):
        color = f"C{i}"
        err = np.vstack([rows["achieved"] - rows["ci_low"], rows["ci_high"] - rows["achieved"]]).clip(0)
        top.errorbar(rows["batch"], rows["achieved"], yerr=None if np.isnan(err).all() else err, marker="o",
                     color=color, label=metric, capsize=3)
        top.axhline(rows["target"].iloc[0], color=color, linestyle="--", linewidth=1)
    top.set_ylabel("KPI (dashed: target)")
    level = kpi["level"].iloc[0] if len(kpi) and "level" in kpi else 0.95
    top.set_title(f"KPIs per production batch, with the {level:.2%} intervals their verdicts use")
    if len(kpi):
        top.legend(fontsize=8)
    for i, feature in enumerate(features):
        rows = drift[drift["feature"] == feature]
        bottom.plot(rows["batch"], rows["psi"], marker="o", color=f"C{i + 3}", label=feature)
    preds = drift.drop_duplicates("batch")
    bottom.plot(preds["batch"], preds["prediction_psi"], marker="s", color="black", label="(predictions)")
    for level, name in zip(PSI_BANDS, ("moderate", "significant"), strict=True):
        bottom.axhline(level, color="grey", linestyle=":", linewidth=1)
        bottom.text(drift["batch"].max() + 0.05, level, name, fontsize=7, va="bottom")
    bottom.set_ylabel("PSI")
    bottom.set_xlabel("batch")
    bottom.set_title("Drift of the most important features and of the predictions")
    bottom.legend(fontsize=8)
    fig.tight_layout()
    return fig


def false_alarm_figure(rates: pd.DataFrame):
    """Share of undrifted batches each check would flag, against the test's nominal level."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3))
    x = np.arange(len(rates))
    ax.bar(x - 0.27, rates["test_alarm_rate"], width=0.27, label="test alone: p < alpha")
    ax.bar(x, rates["psi_alarm_rate"], width=0.27, label="PSI >= 0.25")
    ax.bar(x + 0.27, rates["alert_rate"], width=0.27, label="alert, controlled across the run")
    ax.axhline(rates["nominal"].iloc[0], color="black", linestyle="--", label="nominal level alpha")
    ax.set_xticks(x, rates["feature"], rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("false-alarm rate")
    ax.set_title(f"Alarms on undrifted batches of {int(rates['batch_size'].iloc[0])} rows")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


# --- the drift simulator (explorer) -------------------------------------------------------------------


def drift_scenarios(package, prepared, contract: KpiContract, detector: DriftDetector, policy: RetrainingPolicy, *,
                    features: Sequence[str], magnitudes: Sequence[float], n_batches: int, seed: int,
                    reference_pred: np.ndarray, positive_label: Any = None,
                    only: Sequence[Mapping[str, Any]] | None = None) -> dict[tuple[str, float], dict]:
    """Precomputed simulations for the explorer: one per (shifted feature, magnitude), tracked like the run.

    ``only``: the explorer's cases ({"feature", "magnitude"}) to simulate, e.g. its ``static_cases`` in a
    batch run, which shows nothing else; each scenario is seeded on its own, so it is the same either way.
    """
    out = {}
    wanted = None if only is None else {(c["feature"], float(c["magnitude"])) for c in only}
    for feature in features:
        for m in magnitudes:
            if wanted is not None and (feature, float(m)) not in wanted:
                continue
            batches, _ = simulate_batches(prepared.test, target=prepared.target, problem_type=prepared.problem_type,
                                          n_batches=n_batches, magnitude=m, feature=feature, seed=seed,
                                          batch_size=SCENARIO_BATCH_ROWS, positive_label=positive_label)
            results = track_all(package, batches, detector, contract, reference_pred=reference_pred, n_boot=100,
                                seed=seed)
            kpi, drift = timeline(results)
            breached, psis = policy_inputs(results)
            out[(feature, float(m))] = {"kpi": kpi, "drift": drift, "alerts": alerts_table(kpi, drift),
                                        "decisions": policy.decide(breached, psis)}
    return out


def scenarios_sampled(n_test: int, n_scenarios: int, n_batches: int) -> deployment.Sampled:
    """The drift simulator's batches, stated (``drift_scenarios``)."""
    return deployment.Sampled(f"Drift simulator: {n_scenarios} scenarios x {n_batches} batches, each",
                              min(SCENARIO_BATCH_ROWS, n_test), n_test, "test rows", SCENARIO_BATCH_ROWS,
                              "monitoring.SCENARIO_BATCH_ROWS", how="drawn with the drift schedule's weights, seeded")


def scenario_update(scenarios: dict[tuple[str, float], dict], metric: str | None):
    """The explorer's update function: (feature, magnitude) -> readout text and figure."""
    import matplotlib.pyplot as plt

    def update(feature: str, magnitude: float):
        s = scenarios[(feature, float(magnitude))]
        rows = s["drift"][s["drift"]["feature"] == feature]
        last = rows.iloc[-1]
        fired = [d for d in s["decisions"] if d["retrain"]]
        text = (f"Shift on {feature} x{magnitude:g}: last batch PSI {last['psi']:.2f} ({last['band']}), "
                f"{last['test']} {_p_phrase('p', last['p_value'])}; {len(s['alerts'])} alert(s). ")
        k = s["kpi"][s["kpi"]["metric"] == metric] if metric else s["kpi"].iloc[0:0]
        if len(k):
            text += f"{metric}: {k['achieved'].iloc[0]:.3f} -> {k['achieved'].iloc[-1]:.3f}. "
        text += (f"Retraining first fires at batch {fired[0]['batch']} ({fired[0]['reason']})." if fired
                 else "Retraining never fires.")
        fig, (a, b) = plt.subplots(1, 2, figsize=(8, 2.6))
        a.plot(rows["batch"], rows["psi"], marker="o")
        for level in PSI_BANDS:
            a.axhline(level, color="grey", linestyle=":")
        a.set_title(f"PSI of {feature}")
        a.set_xlabel("batch")
        if len(k):
            b.plot(k["batch"], k["achieved"], marker="o")
            b.axhline(k["target"].iloc[0], color="red", linestyle="--")
            b.set_title(f"{metric} (dashed: target)")
        b.set_xlabel("batch")
        fig.tight_layout()
        return text, fig

    return update


def scenario_controls(features: Sequence[str], magnitudes: Sequence[float]) -> dict[str, Any]:
    import ipywidgets as w

    return {"feature": w.Dropdown(options=list(features), description="feature"),
            "magnitude": w.SelectionSlider(options=[float(m) for m in magnitudes], value=float(magnitudes[-1]),
                                           description="magnitude")}


# --- exercises ---------------------------------------------------------------------------------------------
# Each checker returns a ``Feedback`` (helpers.core.exercises); the notebook's check cell displays it.

PSI_FLOOR = _EPS  # exercise 5.2: empty bins are floored at this share, as the playbook does
BAND_EXERCISE = {"psi": 0.18, "psi_chance": 0.21, "rows": 200}  # exercise 5.3's batch


def _psi_variants(reference: pd.Series, values: pd.Series) -> dict[str, float]:
    """PSIs computed the wrong ways learners compute them (exercise 5.2's targeted feedback)."""
    ref = _finite_values(reference)
    out: dict[str, float] = {"log10": psi_numeric(reference, values) / math.log(10)}
    if ref.size and _finite_values(values).size:
        for name, edges in (("batch bins", quantile_edges(values)),
                            ("equal width", np.histogram_bin_edges(ref, bins=10)[1:-1])):
            out[name] = psi_from_shares(numeric_shares(reference, edges), numeric_shares(values, edges))
    return out


PSI_MISTAKES = {
    "batch bins": ("your bins come from the new batch's quantiles: the bins must be the reference's, fixed once, "
                   "or each batch is measured with its own ruler."),
    "equal width": ("your bins are of equal width (np.histogram(..., bins=10)): PSI uses the reference's deciles, "
                    "so each bin holds a tenth of the reference rows."),
    "log10": "you used log10: PSI uses the natural logarithm (np.log).",
}


def check_exercise_2(answer: Any, reference: pd.DataFrame, batch: pd.DataFrame, feature: str) -> Feedback:
    """Exercise 5.2: the PSI of numeric ``feature`` in ``batch`` against ``reference``, by hand (``psi_numeric``,
    the drift detector's computation)."""
    hint = ("edges = np.quantile(reference values, [0.1, ..., 0.9]); count both sides in the bins those edges make "
            "(np.histogram with -inf and inf added at the ends) plus a bin for missing values, divide by the rows, "
            "floor the shares at 1e-4, then PSI = sum((new - ref) * ln(new / ref)).")
    if not pd.api.types.is_numeric_dtype(reference[feature]):
        return exercises.correct("5.2", f"{feature!r} is not a numeric feature, so there are no quantile bins: "
                                 "nothing to check.")
    expected = psi_numeric(reference[feature], batch[feature])
    value = exercises.number_answer("5.2", answer, "the PSI you computed (a number)", hint, expected=expected)
    if isinstance(value, Feedback):
        return value
    if not np.isfinite(value):
        return exercises.wrong("5.2", "your PSI is not finite: a bin is empty on one side, and ln(0) is -inf.",
                               "floor the shares at 1e-4 (np.clip(shares, 1e-4, None)) before the logarithm.",
                               expected=expected)
    if math.isclose(value, expected, rel_tol=0.01, abs_tol=1e-3):
        return exercises.correct("5.2", f"PSI {expected:.3f} ({psi_band(expected)} on the fixed bands), the value "
                                 "the playbook's drift detector computes: the reference's deciles as bins, shares "
                                 "per bin, floored, summed log ratios.", expected=expected)
    distance = {name: abs(value - v) / max(abs(v), 1e-3)
                for name, v in _psi_variants(reference[feature], batch[feature]).items()}
    closest = min(distance, key=distance.get, default=None)
    if closest is not None and distance[closest] <= 0.02:
        return exercises.wrong("5.2", PSI_MISTAKES[closest], hint, expected=expected)
    if value > 10 * max(expected, 0.01) and value > 1:
        return exercises.wrong("5.2", "a PSI this large usually means counts instead of shares.",
                               "divide each side's counts by its number of rows first.", expected=expected)
    return exercises.wrong("5.2", f"{value:.4g} is not the PSI of {feature} in this batch.", hint, expected=expected)


def check_exercise_3(answer: Any) -> Feedback:
    """Exercise 5.3: the band of a PSI of 0.18 on a batch whose chance PSI is 0.21."""
    x = BAND_EXERCISE
    expected = psi_band(x["psi"], x["psi_chance"])
    giveaways = (f"{x['psi']:g} is {expected}",)
    hint = (f"the bands are < {PSI_BANDS[0]:g} stable, < {PSI_BANDS[1]:g} moderate, else significant, but each edge "
            "is raised to psi_chance: a small batch reaches a large PSI by chance alone.")
    options = '"stable", "moderate" or "significant"'
    if exercises.is_unanswered(answer):
        return exercises.unanswered("5.3", f"Set `answer` to {options}.", hint, giveaways=giveaways)
    word = str(answer).strip().strip('"\'').lower()
    if word == expected:
        return exercises.correct("5.3", f"both edges are raised to psi_chance = {x['psi_chance']:g}, and "
                                 f"{x['psi']:g} is below it: 1% of drift-free batches of {x['rows']} rows reach "
                                 "more, so this one is no evidence of a shift.", giveaways=giveaways)
    if word == psi_band(x["psi"]):
        return exercises.wrong("5.3", f"{x['psi']:g} would be {word} on a large batch, but this one has "
                               f"{x['rows']} rows and psi_chance {x['psi_chance']:g}.", hint, giveaways=giveaways)
    if word in ("stable", "moderate", "significant"):
        return exercises.wrong("5.3", f"not {word}.", hint, giveaways=giveaways)
    return exercises.wrong("5.3", f"{answer!r} is not a band.", f"answer {options}.", giveaways=giveaways)


def unlabelled_decisions(results: Sequence[dict[str, Any]], policy: RetrainingPolicy) -> list[dict[str, Any]]:
    """``policy``'s decisions had no batch been labelled: no KPI is judged, only drift can trigger retraining."""
    _, drift = policy_inputs(results)
    return policy.decide([None] * len(results), drift)


def first_retrain(decisions: Sequence[Mapping[str, Any]]) -> int:
    """The batch of the first retraining decision, 0 when none fires."""
    return next((int(d["batch"]) for d in decisions if d["retrain"]), 0)


def check_exercise_4(answer: Any, results: Sequence[dict[str, Any]], policy: RetrainingPolicy) -> Feedback:
    """Exercise 5.4: without labels, which batch first triggers retraining (0: none)?"""
    expected = first_retrain(unlabelled_decisions(results, policy))
    hint = ("without labels only drift can fire: the first batch where a feature of `important` has a drift alert "
            "(alert True after the run-level control) with PSI above drift_threshold.")
    value = exercises.number_answer("5.4", answer, "a batch number, or 0 if retraining never fires", hint,
                                    expected=expected)
    if isinstance(value, Feedback):
        return value
    if not value.is_integer():
        return exercises.wrong("5.4", f"{answer!r} is not a batch number.", hint, expected=expected)
    value = int(value)
    if value == expected:
        why = "no batch has an alerted drift on an important feature above the threshold" if expected == 0 else \
            next(d["reason"] for d in unlabelled_decisions(results, policy) if d["retrain"])
        return exercises.correct("5.4", f"{'never' if expected == 0 else f'batch {expected}'}: {why}. Concept drift "
                                 "(the rule itself changes) would stay invisible: only KPIs on labelled batches see "
                                 "it.", expected=expected)
    if value == first_retrain(policy.decide(*policy_inputs(results))) and value != 0:
        return exercises.wrong("5.4", "that is the first trigger with labels: it may come from failing KPIs, which "
                               "an unlabelled batch cannot show.", hint, expected=expected)
    drift = pd.concat([r["drift"].assign(batch=b) for b, r in enumerate(results, start=1)], ignore_index=True)
    alerted = drift[drift["alert"]]
    if len(alerted) and value == int(alerted["batch"].min()):
        return exercises.wrong("5.4", "that is the first drift alert on any feature, at any PSI.",
                               "only features in `important` with PSI above drift_threshold count.",
                               expected=expected)
    above = drift[drift["feature"].isin(policy.important_features) & (drift["psi"] > policy.drift_threshold)]
    if len(above) and value == int(above["batch"].min()):
        return exercises.wrong("5.4", "that batch has a PSI above the threshold, but its drift test did not alert: "
                               "a shift chance could explain is no evidence.", hint, expected=expected)
    return exercises.wrong("5.4", f"batch {value} is not the first trigger without labels.", hint, expected=expected)


# --- readiness facts, save, report -----------------------------------------------------------------------

STEP = STEP_NOTEBOOKS[4]


MEASURED_FACTS = ("package_loads", "single_rows", "same_code_path")  # by deployment.serving_checks


def readiness_facts(*, package_dir, sample_check, gate_code: int, card: str, groups: pd.DataFrame,
                    importance: pd.DataFrame, results: Sequence[dict[str, Any]], alerts: pd.DataFrame,
                    decisions: Sequence[dict[str, Any]], challengers: Sequence[dict[str, Any]],
                    throughput: dict[str, Any], checks: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """What this step measured, as the facts the ML Test Score rubric looks up (falsy = not shown).

    ``checks``: ``deployment.serving_checks``' measurements; a fact it did not measure earns nothing.
    """
    labelled = [r for r in results if r["kpis"] is not None]
    predicted = [r for r in results if r["labels"] is not None]
    finite = bool(predicted) and all(_finite_outputs(r) for r in predicted)  # nothing predicted proves nothing
    where = "/".join(Path(package_dir).parts[-2:])

    def file_fact(name: str, extra: str = "") -> readiness.Fact:
        found = (Path(package_dir) / name).exists()
        return readiness.Fact(found, f"file {where}/{name}{extra if found else ' (missing)'}")

    rows = sum(len(r["labels"]) for r in predicted)
    measured = {name: readiness.Fact(bool(c["holds"]), c["evidence"]) for name, c in (checks or {}).items()}
    not_measured = readiness.Fact(False, "not measured (deployment.serving_checks did not run)")
    return {
        "schema_validation": file_fact("schema.json", "; the sample batch validated against it")
        if sample_check is not None else readiness.Fact(False, "no batch was validated against the schema"),
        "feature_importance": f"{len(importance)} features ranked" if len(importance) else None,
        "cleaning_replayed": file_fact("cleaning.json", ", replayed on every batch"),
        "model_card": readiness.Fact(bool(card), f"model card of {len(card.splitlines())} lines, saved as "
                                                 f"artifacts/{STEP}/model_card.md"),
        "batch_kpis": f"{len(labelled)} labelled batches" if labelled else None,
        "staleness": f"KPI decay over {len(labelled)} batches" if len(labelled) > 1 else None,
        "group_metrics": f"{len(groups)} groups" if len(groups) else None,
        "lock_file": file_fact(LOCK_FILE),
        "gate": f"exit code {gate_code}" if gate_code in (0, 1) else None,
        "challenger_compared": f"{len(challengers)} challenger(s)" if any("gain" in c for c in challengers) else None,
        "batch_validation": f"{len(results)} batches validated",
        "retraining_policy": f"{sum(d['retrain'] for d in decisions)} trigger(s) in {len(decisions)} batches",
        "finite_predictions": readiness.Fact(finite, f"{rows} predictions in {len(predicted)} batches: " + (
            "all finite, probabilities in [0, 1]" if finite else "non-finite values or probabilities outside [0, 1]")),
        **{name: measured.get(name, not_measured) for name in MEASURED_FACTS},
        "throughput": f"{throughput['rows_per_s']:,} rows/s",
        "kpi_alerts": f"{int((alerts['kind'] == 'KPI breach').sum())} KPI alert(s)" if labelled else None,
    }


def _finite_outputs(result: dict[str, Any]) -> bool:
    proba = result["proba"]
    if proba is None:
        labels = np.asarray(result["labels"])
        return bool(not np.issubdtype(labels.dtype, np.number) or np.isfinite(labels.astype(float)).all())
    p = np.asarray(proba, dtype=float)
    return bool(np.isfinite(p).all() and (p >= 0).all() and (p <= 1).all())


@dataclass
class OperationsResult:
    """What step 5 produced: the package and its gate, the monitoring story, retraining, readiness."""

    package_dir: Any
    gate_code: int
    throughput: Mapping[str, Any]
    groups: pd.DataFrame
    workflow: str
    card: str
    source: str  # where the production batches came from: simulated, or monitor_data
    shifted: str | None
    important: Sequence[str]
    schedule: pd.DataFrame
    kpi_timeline: pd.DataFrame
    drift_timeline: pd.DataFrame
    alerts: pd.DataFrame
    decisions: Sequence[Mapping[str, Any]]
    challengers: Sequence[Mapping[str, Any]]
    false_alarms: pd.DataFrame
    readiness_table: pd.DataFrame
    readiness_summary: Mapping[str, Any]
    policy: Mapping[str, Any]  # retrain_after_breaches, drift_threshold, promotion_margin
    figures: Mapping[str, Any] = field(default_factory=dict)
    kpi_notes: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=ALERT_COLUMNS))  # watch, not judged
    expected_false_alarms: pd.DataFrame = field(default_factory=pd.DataFrame)  # expected_false_alarms()
    measured_false_alarms: Mapping[str, Any] = field(default_factory=dict)  # run_false_alarms()
    samples: Sequence[deployment.Sampled] = ()  # every sampled decision of the step (sampling_summary)


def summary(result: OperationsResult) -> dict[str, Any]:
    """Step 5's machine-readable findings (``summary.json``)."""
    package_path = "/".join(Path(result.package_dir).parts[-2:])  # models/vN inside the run folder
    package_files = deployment.package_contents(result.package_dir)["file"].tolist()
    from_gate = {0: "passed", 1: "failed"}
    code_text = from_gate.get(result.gate_code) or deployment.gate_message(result.gate_code, pd.DataFrame()).splitlines()[-1]
    alerts, challengers = result.alerts, result.challengers
    return {
        "package": {"path": package_path, "files": list(package_files)},
        "throughput_rows_per_s": result.throughput["rows_per_s"],
        "gate": {"exit_code": result.gate_code, "result": code_text},
        "monitoring": {"source": result.source, "batches": len(result.schedule), "shifted_feature": result.shifted,
                       "important_features": list(result.important), "alerts": len(alerts),
                       "alerts_by_kind": alerts["kind"].value_counts().to_dict(),
                       "first_drift_alert_batch": _first(alerts, "drift"),
                       "first_kpi_breach_batch": _first(alerts, "KPI breach"),
                       "kpi_watch": int((result.kpi_notes["kind"] == "KPI watch").sum()),
                       "kpi_not_judged": int((result.kpi_notes["kind"] == "KPI not judged").sum()),
                       "false_alarms": {"expected": result.expected_false_alarms.to_dict(orient="records"),
                                        "measured": dict(result.measured_false_alarms)}},
        "retraining": {"policy": {k: result.policy[k] for k in ("retrain_after_breaches", "drift_threshold",
                                                                "promotion_margin")},
                       "decisions": list(result.decisions), "challengers": list(challengers),
                       "champion_changed": any(c.get("promote") for c in challengers)
                       and result.source == "monitor_data"},
        "readiness": {**result.readiness_summary,
                      "scores": result.readiness_table[["id", "score", "status"]].to_dict(orient="records")},
        "documents": {"model_card": f"artifacts/{STEP}/model_card.md", "ci_workflow": f"artifacts/{STEP}/ci_workflow.yml"},
        "sampling": sampling_summary(result.samples),
    }


def sampling_summary(samples: Sequence[deployment.Sampled]) -> dict[str, Any]:
    """Every sampled decision of step 5: the rows each part used, of how many, and the sentences that say so."""
    return {"decisions": [s.to_dict() for s in samples], "statements": [s.text for s in samples]}


def sampling_table(samples: Sequence[deployment.Sampled]) -> pd.DataFrame:
    """The sampled decisions as a table: what, rows used, of how many, the cap, and the sentence."""
    columns = ["what", "rows", "of", "unit", "cap", "text"]
    return pd.DataFrame([{k: v for k, v in s.to_dict().items() if k in columns} for s in samples], columns=columns)


def save(run, result: OperationsResult) -> dict[str, Any]:
    """Write every step-5 artifact, then the summary (last: its presence means the step finished)."""
    run.write_artifact_text(STEP, "ci_workflow.yml", result.workflow)
    run.write_artifact_text(STEP, "model_card.md", result.card)
    tables = {"schedule.csv": result.schedule, "kpi_timeline.csv": result.kpi_timeline,
              "drift_timeline.csv": result.drift_timeline, "alerts.csv": result.alerts,
              "decisions.csv": pd.DataFrame(result.decisions), "challengers.csv": pd.DataFrame(result.challengers),
              "false_alarms.csv": result.false_alarms, "readiness.csv": result.readiness_table,
              "kpi_notes.csv": result.kpi_notes, "expected_false_alarms.csv": result.expected_false_alarms,
              "group_metrics.csv": result.groups}
    for name, table in tables.items():
        run.write_table(STEP, name, table)
    for name, fig in result.figures.items():
        run.save_figure(STEP, name, fig)
    run.write_summary(STEP, summary(result))
    return run.read_summary(STEP)


def _first(alerts: pd.DataFrame, kind: str) -> int | None:
    rows = alerts.loc[alerts["kind"] == kind, "batch"]
    return int(rows.min()) if len(rows) else None


def summary_overview(summary: dict[str, Any]) -> pd.DataFrame:
    """The headline numbers of step 5 as a small table."""
    m, r, ready = summary["monitoring"], summary["retraining"], summary["readiness"]
    promoted = [c for c in r["challengers"] if c.get("promote")]
    facts = {"model package": summary["package"]["path"], "KPI gate": summary["gate"]["result"],
             "prediction throughput (rows/s)": f"{summary['throughput_rows_per_s']:,}",
             "production batches": f"{m['batches']} ({m['source']})", "alerts": m["alerts"],
             "retraining triggers": sum(d["retrain"] for d in r["decisions"]),
             "challengers (promoted)": f"{len(r['challengers'])} ({len(promoted)})",
             "readiness (ML Test Score)": f"{ready['final']:g} (weakest: {ready['weakest_section']})"}
    return pd.DataFrame({"value": [str(v) for v in facts.values()]}, index=list(facts))


def headline(run) -> dict[str, Any]:
    """First-screen facts for the report: readiness score and band, gate result, monitoring alerts."""
    s = run.read_summary(STEP)
    ready = s["readiness"]
    return {"readiness": {"score": ready["final"], "final": ready["final"], "band": ready["band"], "sections": ready["sections"],
                          "weakest_section": ready["weakest_section"]},
            "gate": s["gate"]["result"], "alerts": s["monitoring"]["alerts"],
            "retraining_triggers": sum(d["retrain"] for d in s["retraining"]["decisions"])}


def report_section(run) -> Section:
    """Step 5's report section: readiness, gate and monitoring up front; every table and its evidence in details."""
    s = run.read_summary(STEP)
    ready, m, gate = s["readiness"], s["monitoring"], s["gate"]["result"]
    triggers = sum(d["retrain"] for d in s["retraining"]["decisions"])
    takeaway = (f"Production readiness {ready['final']:g} (ML Test Score: {ready['band'].rstrip('.')}); the KPI gate {gate}; "
                f"{m['alerts']} alerts in {m['batches']} production batches led to {triggers} retraining trigger(s).")
    facts = [Fact("production readiness (ML Test Score)", f"{ready['final']:g}", note=f"weakest: {ready['weakest_section']}"),
             Fact("KPI gate", str(gate), "pass" if gate == "passed" else "fail"),
             Fact("alerts / retraining triggers", f"{m['alerts']} / {triggers}", "watch" if m["alerts"] else "pass")]
    folder = run.artifacts / STEP
    body = [tables.key_values(summary_overview(s)["value"].to_dict())]
    parts: list = []
    if (folder / "readiness.csv").exists():  # every score with the evidence it rests on (or failed on), in full
        parts.append(tables.table(pd.read_csv(folder / "readiness.csv"), ["section", "test", "score", "status", "evidence"],
                                  caption="ML Test Score: every test and its evidence"))
    parts += sections.images(folder, [("readiness.png", "readiness per section")])
    monitoring = []
    if (folder / "alerts.csv").exists():
        monitoring.append(tables.table(pd.read_csv(folder / "alerts.csv"), caption=f"Alerts in {m['batches']} batches"))
    if (folder / "kpi_notes.csv").exists() and len(notes := pd.read_csv(folder / "kpi_notes.csv")):
        monitoring.append(tables.table(notes, caption="KPIs shown but not alerted on (watch: the interval contains the "
                                                      "target; not judged: too few rows); neither counts toward retraining"))
    expected = (m.get("false_alarms") or {}).get("expected")
    if expected:
        monitoring.append(tables.table(expected, caption="Expected false alarms of a drift-free run, without and with "
                                                         "the run-level control"))
    if (folder / "decisions.csv").exists():
        monitoring.append(tables.table(pd.read_csv(folder / "decisions.csv"), caption="Retraining decisions per batch"))
    monitoring += [sections.paragraph(t) for t in (s.get("sampling") or {}).get("statements") or []]
    docs = s["documents"]
    links = [("model card", docs["model_card"]), ("CI workflow", docs["ci_workflow"]),
             ("model package", s["package"]["path"]), ("executed notebook", f"{STEP}.ipynb")]
    return Section("step-5", "5. Deployment and monitoring", takeaway, facts,
                   sections.images(folder, [("monitoring_timeline.png", "drift and KPIs per production batch")]), body,
                   [sections.Details("Readiness: every test and its evidence", parts),
                    sections.Details("Monitoring: alerts, notes, false alarms and retraining decisions", monitoring)],
                   links)
