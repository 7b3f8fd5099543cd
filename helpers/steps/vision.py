"""Step 1: frame the problem, test whether ML is the right tool, set realistic KPIs.

Everything here sees the training side only. Candidates (dummy, one-rule heuristic,
quick standard model) are cross-validated once; their out-of-fold predictions are
cached, so changing a KPI in the explorer re-scores without refitting.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from markupsafe import Markup
from sklearn.base import clone
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.impute import SimpleImputer
from sklearn.metrics import f1_score
from sklearn.pipeline import make_pipeline

from helpers.core import exercises, leakage, sections, tables
from helpers.core import kpis as kpi_mod
from helpers.core.baselines import (
    class_codes,
    class_predictions,
    heuristic_pipeline_and_kind,
    make_folds,
    rule_onehot,
    rule_text,
    rule_tree,
    trivial_split,
)
from helpers.core.errors import PlaybookError
from helpers.core.families import quick_family
from helpers.core.features import (
    as_model_input,
    feature_columns,
    make_preprocessor,
    split_kinds,
    with_model,
)
from helpers.core.leakage import encode_frame, leakage_suspects
from helpers.core.paths import STEP_NOTEBOOKS
from helpers.core.problem import identifier_columns
from helpers.core.sampling import subsample
from helpers.core.scaling import fit_power_law
from helpers.core.sections import Fact, Section

STEP = STEP_NOTEBOOKS[0]

# --- problem framing ----------------------------------------------------------------








def target_distribution_figure(y: pd.Series, problem_type: str):
    fig, ax = plt.subplots(figsize=(5, 3))
    if problem_type == "classification":
        y.value_counts().sort_index().plot.bar(ax=ax, color="#4c72b0")
        ax.set_ylabel("rows")
    else:
        ax.hist(pd.to_numeric(y, errors="coerce").dropna(), bins=30, color="#4c72b0")
        ax.set_ylabel("rows")
    ax.set_title(f"Target: {y.name}")
    fig.tight_layout()
    return fig


def kpi_meanings(contract: kpi_mod.KpiContract) -> pd.DataFrame:
    """What each KPI means for this problem, in words."""
    rows = []
    for metric, threshold in contract.kpis.items():
        m = kpi_mod.METRICS[metric]
        meaning = m.meaning
        if contract.is_binary and metric in ("precision", "recall", "f1"):
            meaning += f" (positive class: {contract.positive_label!r})"
        elif contract.problem_type == "classification" and metric in ("precision", "recall", "f1") and contract.classes:
            meaning += f" ({contract.average} average over {len(contract.classes)} classes)"
        rows.append({"metric": metric, "target": threshold, "better": m.direction, "meaning": meaning})
    return pd.DataFrame(rows)


# --- columns set aside ----------------------------------------------------------------------














# --- candidates: dummy, heuristic, quick model ------------------------------------------------


@dataclass
class Candidate:
    """Cross-validated out-of-fold predictions of one candidate (cached for re-scoring)."""

    name: str
    kind: str  # baseline | heuristic | model
    pred: np.ndarray
    proba: np.ndarray | None = None  # (n, k) class probabilities, classes in contract order
    description: str = ""
    fit_seconds: float = 0.0


@dataclass
class Framing:
    """Everything step 1 computed on the training side; the explorer reads it."""

    contract: kpi_mod.KpiContract
    y: pd.Series | None
    folds: np.ndarray  # fold number of each training row
    candidates: list[Candidate] = field(default_factory=list)
    X_cluster: np.ndarray | None = None  # preprocessed features (clustering only)
    heuristic: dict[str, Any] = field(default_factory=dict)
    X_encoded: pd.DataFrame | None = None  # features as ``encode_frame`` codes (supervised only)
    leak_columns: tuple[str, ...] = ()  # leakage suspects among the features (kept by keep_columns)

    def candidate(self, name: str) -> Candidate:
        return next(c for c in self.candidates if c.name == name)

    @property
    def heuristic_leak(self) -> str | None:
        """The leakage suspect the one-rule heuristic is built on (None: an honest column)."""
        column = self.heuristic.get("column")
        return column if column in self.leak_columns else None








def _oof(pipeline, X, y: pd.Series, folds: np.ndarray, contract: kpi_mod.KpiContract) -> Candidate:
    """Out-of-fold predictions (and class probabilities, classes in contract order) with the given folds."""
    import time

    n = len(X)
    classification = contract.problem_type == "classification"
    target = class_codes(y, contract) if classification else np.asarray(y, dtype=float)
    pred = np.empty(n, dtype=object if classification else float)
    proba = np.zeros((n, len(contract.classes))) if classification else None
    started = time.perf_counter()
    for f in np.unique(folds):
        train, valid = folds != f, folds == f
        model = clone(pipeline).fit(X[train], target[train])
        if classification:
            pred[valid], proba[valid] = class_predictions(model, X[valid], contract)
        else:
            pred[valid] = model.predict(X[valid])
    return Candidate("", "", pred, proba, fit_seconds=(time.perf_counter() - started) / len(np.unique(folds)))














def rule_oof(values: np.ndarray, numeric: bool, y: pd.Series, folds: np.ndarray, contract: kpi_mod.KpiContract,
             seed: int) -> Candidate:
    """Out-of-fold predictions of ``heuristic_pipeline`` on one column, from ``encoded_column`` values.

    The same imputation, encoding and tree as the pipeline, fitted per fold on the codes
    (tests check the predictions are identical).
    """
    first = SimpleImputer(strategy="median") if numeric else rule_onehot()
    return _oof(make_pipeline(first, rule_tree(contract.problem_type, seed)), values, y, folds, contract)


def best_single_rule(X: pd.DataFrame, y: pd.Series, folds: np.ndarray, contract: kpi_mod.KpiContract,
                     seed: int, X_encoded: pd.DataFrame | None = None) -> tuple[Candidate, dict[str, Any]]:
    """The best one-rule heuristic (a depth-1 tree on one feature).

    Rules are ranked by balanced accuracy (classification) or R² (regression): a measure
    that a rule cannot game by predicting one class everywhere, as it could on recall.
    """
    primary = "balanced_accuracy" if contract.problem_type == "classification" else "r2"
    if X_encoded is None:
        X_encoded = encode_frame(X)[0]
    best: tuple[float, Candidate, str] | None = None
    for col in X.columns:
        if X[col].nunique(dropna=True) < 2:
            continue
        values = X_encoded[[col]].to_numpy()
        cand = rule_oof(values, pd.api.types.is_float_dtype(X_encoded[col]), y, folds, contract, seed)
        value = kpi_mod.score(primary, contract, y, cand.pred, cand.proba)
        if np.isfinite(value) and (best is None or value > best[0]):
            best = (value, cand, col)
    if best is None:
        raise PlaybookError("No feature varies, so no rule can be built.", "check the data: every feature is constant.")
    _, cand, col = best
    fitted, numeric = heuristic_pipeline_and_kind(X, col, contract.problem_type, seed)
    rule = rule_text(fitted.fit(X[[col]], y), col, contract, numeric)
    cand.name, cand.kind, cand.description = "heuristic", "heuristic", rule
    return cand, {"column": col, "rule": rule}


EARLY_STOPPING_MIN_ROWS = 500


def quick_model(problem_type: str, numeric: Sequence[str], categorical: Sequence[str], seed: int,
                smallest_fit: int, coded: bool = False):
    """The registry's quick family in a pipeline; boosted trees stop early on a validation share.

    Early stopping halves the fit time on the demo at no cost in score (measured), which keeps
    step 1 interactive; step 4 compares and tunes the families without it. It needs a
    validation share with every class, so only fits of ``EARLY_STOPPING_MIN_ROWS`` rows or more use it.
    ``coded``: the categorical columns hold ``encode_frame`` codes (missing is already a
    category, so the constant imputer is skipped; the one-hot columns are the same).
    """
    family = quick_family(problem_type)
    estimator = family.build(seed, 1)
    if "early_stopping" in estimator.get_params() and smallest_fit >= EARLY_STOPPING_MIN_ROWS:
        estimator.set_params(early_stopping=True)
    scaler = "standard" if family.scales_features else "none"
    preprocessor = make_preprocessor(numeric, categorical, scaler=scaler)
    if coded:
        preprocessor.set_params(categorical__simpleimputer="passthrough")
    return with_model(preprocessor, estimator), family


def supervised_framing(X: pd.DataFrame, y: pd.Series, contract: kpi_mod.KpiContract, seed: int,
                       leak_columns: Sequence[str] = ()) -> Framing:
    """Cross-validate the dummy baseline, the best one-rule heuristic and the quick model.

    ``leak_columns``: leakage suspects kept among the features (``set_aside["kept"]``); a
    heuristic built on one of them never makes the verdict "heuristic_suffices".
    """
    X = as_model_input(X, *split_kinds(X, list(X.columns)), columns=list(X.columns))
    y = y.reset_index(drop=True)
    X = X.reset_index(drop=True)
    folds = make_folds(y, len(y), contract.problem_type, seed)
    X_encoded, numeric, categorical = encode_frame(X)
    framing = Framing(contract, y, folds, X_encoded=X_encoded, leak_columns=tuple(leak_columns))
    dummy = (DummyClassifier(strategy="prior") if contract.problem_type == "classification"
             else DummyRegressor(strategy="mean"))
    cand = _oof(dummy, np.zeros((len(y), 1)), y, folds, contract)
    cand.name, cand.kind = "dummy", "baseline"
    cand.description = "always the majority class / class shares" if contract.problem_type == "classification" else "always the mean"
    framing.candidates.append(cand)
    heuristic, info = best_single_rule(X, y, folds, contract, seed, X_encoded)
    framing.candidates.append(heuristic)
    framing.heuristic = info
    smallest_fit = min(int((folds != f).sum()) for f in np.unique(folds))
    pipe, family = quick_model(contract.problem_type, numeric, categorical, seed, smallest_fit, coded=True)
    cand = _oof(pipe, X_encoded, y, folds, contract)
    cand.name, cand.kind, cand.description = "quick_model", "model", family.name
    framing.candidates.append(cand)
    return framing


def clustering_framing(X: pd.DataFrame, contract: kpi_mod.KpiContract, seed: int, k: int = 3) -> Framing:
    """Trivial split (quantiles of the first principal component) against k-means."""
    numeric, categorical = split_kinds(X, list(X.columns))
    X = as_model_input(X, numeric, categorical, columns=list(X.columns))
    Z = make_preprocessor(numeric, categorical).fit_transform(X)
    framing = Framing(contract, None, np.zeros(len(X), dtype=int), X_cluster=Z)
    framing.candidates.append(Candidate("trivial_split", "heuristic", trivial_split(Z, k, seed),
                                        description=f"{k} groups by quantiles of the first principal component"))
    family = quick_family("clustering")
    labels = family.build(seed, 1).set_params(n_clusters=k).fit_predict(Z)
    framing.candidates.append(Candidate("quick_model", "model", labels, description=f"{family.name} (k={k})"))
    framing.heuristic = {"column": "first principal component", "rule": framing.candidates[0].description}
    return framing


# --- scoring, verdict, realism -------------------------------------------------------------------


def candidate_scores(framing: Framing, metric: str, candidate: Candidate) -> tuple[float, float]:
    """Mean and spread (std over folds) of one candidate on one metric."""
    c = framing.contract
    if c.problem_type == "clustering":
        return kpi_mod.score(metric, c, None, X=framing.X_cluster, labels=candidate.pred), 0.0
    values = []
    for f in np.unique(framing.folds):
        idx = framing.folds == f
        proba = None if candidate.proba is None else candidate.proba[idx]
        if proba is not None and c.is_binary:
            proba = proba[:, c.classes.index(c.positive_label)]
        values.append(kpi_mod.score(metric, c, framing.y[idx].to_numpy(), candidate.pred[idx], proba))
    values = np.asarray(values, dtype=float)
    return float(np.nanmean(values)), float(np.nanstd(values))


def score_table(framing: Framing, contract: kpi_mod.KpiContract | None = None) -> pd.DataFrame:
    """Candidates x KPIs: cross-validated mean, spread and pass/fail against the contract."""
    contract = contract or framing.contract
    rows = []
    for cand in framing.candidates:
        row: dict[str, Any] = {"candidate": cand.name, "description": cand.description}
        for metric in contract.kpis:
            mean, std = candidate_scores(framing, metric, cand)
            row[metric] = mean
            row[f"{metric}_std"] = std
            row[f"{metric}_passed"] = contract.passed(metric, mean)
        rows.append(row)
    return pd.DataFrame(rows)


@dataclass
class Verdict:
    code: str  # heuristic_suffices | proceed | revisit
    text: str


def verdict(table: pd.DataFrame, contract: kpi_mod.KpiContract, margin: float = 0.02,
            heuristic_leak: str | None = None) -> Verdict:
    """Is ML the right tool? Compare the heuristic and the quick model against the KPIs.

    ``heuristic_leak``: the leakage suspect the heuristic's rule is built on (``Framing.heuristic_leak``):
    a rule on a column recorded after the outcome proves nothing, so it never "suffices".
    """
    rows = {r["candidate"]: r for r in table.to_dict(orient="records")}
    heuristic = rows.get("heuristic") or rows.get("trivial_split")
    model = rows["quick_model"]
    metrics = list(contract.kpis)
    note = ""
    if all(heuristic[f"{m}_passed"] for m in metrics) and heuristic_leak:
        note = (f"The one-rule heuristic meets every KPI only through {heuristic_leak!r}, a leakage suspect kept by "
                "keep_columns: a rule on a column recorded after the outcome does not show that ML is unneeded. ")
    elif all(heuristic[f"{m}_passed"] for m in metrics):
        return Verdict("heuristic_suffices",
                       f"The one-rule heuristic ({heuristic['description']}) already meets every KPI: "
                       "consider not using ML, or raise the targets if the rule is not good enough in practice.")
    baseline = _best_baseline(rows, metrics)  # a model must beat the rule AND the dummy
    clearly_better = [m for m in metrics if _normalised_gain(m, model, baseline) > max(margin, _noise(m, model, baseline))]
    model_passes = [m for m in metrics if model[f"{m}_passed"]]
    if len(clearly_better) * 2 > len(metrics) or (clearly_better and len(model_passes) == len(metrics)):
        extra = ("and meets every KPI" if len(model_passes) == len(metrics)
                 else f"and meets {len(model_passes)} of {len(metrics)} KPIs (see realism below)")
        return Verdict("proceed", note + f"The quick model clearly beats the heuristic and the dummy baseline on "
                                         f"{', '.join(clearly_better)} {extra}: "
                                         "ML is worth it, proceed.")
    if note:
        return Verdict("revisit", note + "The quick model adds little over that rule: check when the column is "
                                         "recorded, or set it aside (remove it from keep_columns).")
    return Verdict("revisit", "Neither the heuristic nor the quick model comes close to the KPIs and ML adds little "
                              "over the rule: revisit the data (more signal, more rows) or the KPI targets.")


def _best_baseline(rows: Mapping[str, Mapping[str, Any]], metrics: Sequence[str]) -> dict[str, Any]:
    """Per metric, the better of the non-ML candidates (heuristic or trivial split, dummy)."""
    others = [r for name, r in rows.items() if name != "quick_model"]
    best: dict[str, Any] = {}
    for m in metrics:
        finite = [r for r in others if np.isfinite(r[m])]
        if not finite:
            best[m] = np.nan
            continue
        pick = max if kpi_mod.METRICS[m].direction == "higher" else min
        best[m] = pick(r[m] for r in finite)
    return best


def _scale(metric: str, reference: float) -> float:
    """Bounded metrics compare in absolute units, unbounded ones (errors) relative to the reference."""
    return 1.0 if np.isfinite(kpi_mod.METRICS[metric].high) else max(abs(reference), 1e-9)


def _normalised_gain(metric: str, model: Mapping[str, Any], heuristic: Mapping[str, Any]) -> float:
    sign = 1 if kpi_mod.METRICS[metric].direction == "higher" else -1
    gain = sign * (model[metric] - heuristic[metric]) / _scale(metric, heuristic[metric])
    return gain if np.isfinite(gain) else -np.inf


def _noise(metric: str, model: Mapping[str, Any], heuristic: Mapping[str, Any]) -> float:
    """Two fold-spreads of the model: a gain smaller than this could be chance."""
    return 2 * model.get(f"{metric}_std", 0.0) / _scale(metric, heuristic[metric])


def kpi_realism(framing: Framing, seed: int, n_boot: int = 200) -> pd.DataFrame:
    """Bootstrap 95% interval of each KPI for the quick model; targets beyond the interval are flagged."""
    c = framing.contract
    model = framing.candidate("quick_model")
    if c.problem_type == "clustering":
        rows = []
        for metric in c.kpis:
            value = kpi_mod.score(metric, c, None, X=framing.X_cluster, labels=model.pred)
            rows.append({"metric": metric, "target": c.kpis[metric], "direction": c.direction(metric), "achieved": value,
                         "ci_low": np.nan, "ci_high": np.nan, "passed": c.passed(metric, value)})
        table = pd.DataFrame(rows)
    else:
        proba = model.proba
        if proba is not None and c.is_binary:
            proba = proba[:, c.classes.index(c.positive_label)]
        table = kpi_mod.kpi_intervals(c, framing.y.to_numpy(), model.pred, proba, n_boot=n_boot, seed=seed)
    table["realistic"] = [_realistic(r, c) for r in table.to_dict(orient="records")]
    return table


def _realistic(row: Mapping[str, Any], contract: kpi_mod.KpiContract) -> str:
    lo, hi, target = row["ci_low"], row["ci_high"], row["target"]
    if not np.isfinite(lo):
        return "met" if row["passed"] else "not met (no interval for this metric)"
    if contract.is_binary and kpi_mod.m_needs_labels(row["metric"]) and not row["passed"]:
        return "not met at the default 0.5 threshold: step 4 tunes the decision threshold"
    if row["direction"] == "higher":
        return "met" if target <= lo else "within reach" if target <= hi else "above the interval: unrealistic with this data"
    return "met" if target >= hi else "within reach" if target >= lo else "below the interval: unrealistic with this data"


def learning_curve_points(framing: Framing, seed: int, shares: Sequence[float] = (0.2, 0.45),
                          n_folds: int = 3) -> pd.DataFrame:
    """Quick-model validation score of each KPI at growing training sizes.

    Uses the first ``n_folds`` of step 1's folds: the full-size point is the quick model's
    out-of-fold score on them (already computed), smaller points refit the quick model on a
    random ``share`` of each fold's training rows and score it on the same validation rows.
    """
    contract, y, folds = framing.contract, framing.y, framing.folds
    X = framing.X_encoded
    numeric = [c for c in X.columns if pd.api.types.is_float_dtype(X[c])]
    categorical = [c for c in X.columns if c not in numeric]
    model = framing.candidate("quick_model")
    classification = contract.problem_type == "classification"
    target = class_codes(y, contract) if classification else y.to_numpy(dtype=float)
    rng = np.random.default_rng(seed)
    used = np.unique(folds)[:n_folds]
    smallest_fold = min(int((folds != f).sum()) for f in used)
    counts = [max(10, int(share * smallest_fold)) for share in shares]  # same sizes in every fold
    rows = []

    def add(rows_used: int, valid: np.ndarray, pred: np.ndarray, proba: np.ndarray | None) -> None:
        if proba is not None and contract.is_binary:
            proba = proba[:, contract.classes.index(contract.positive_label)]
        for metric in contract.kpis:
            rows.append({"rows": rows_used, "metric": metric,
                         "score": kpi_mod.score(metric, contract, y[valid].to_numpy(), pred, proba)})

    for f in used:
        train_idx = np.flatnonzero(folds != f)
        valid = folds == f
        order = rng.permutation(train_idx)
        for count in counts:
            idx = np.sort(order[:count])
            if classification and len(np.unique(target[idx])) < 2:
                continue
            pipe, _ = quick_model(contract.problem_type, numeric, categorical, seed, count, coded=True)
            fitted = clone(pipe).fit(X.iloc[idx], target[idx])
            if classification:
                add(count, valid, *class_predictions(fitted, X[valid], contract))
            else:
                add(count, valid, fitted.predict(X[valid]), None)
        add(smallest_fold, valid, model.pred[valid], None if model.proba is None else model.proba[valid])
    return pd.DataFrame(rows).groupby(["metric", "rows"], as_index=False)["score"].mean()


def rows_needed(points: pd.DataFrame, contract: kpi_mod.KpiContract, current_rows: int,
                max_factor: float = 10.0, sample_rows: int | None = None) -> pd.DataFrame:
    """Labelled rows each KPI target would need, from a power law fitted to the learning curve.

    The gap to the metric's best value is modelled as ``gap = c * n^-alpha`` (a straight
    line in log-log). Extrapolation beyond ``max_factor`` x the current rows is "unknown".
    ``current_rows``: the labelled training rows the table has; ``sample_rows``: the rows the
    curve was measured on (its folds fit on a share of them), when step 1 sampled
    (``feasibility_rows``; None: every training row). Fit sizes are converted to labelled
    rows with the sample's ratio, and the answer is judged against the table's real rows.
    """
    sample_rows = current_rows if sample_rows is None else int(sample_rows)
    rows = []
    for metric, target in contract.kpis.items():
        m = kpi_mod.METRICS[metric]
        pts = points[points["metric"] == metric].dropna()
        best = m.high if m.direction == "higher" else m.low
        gap = (best - pts["score"]) if m.direction == "higher" else (pts["score"] - best)
        target_gap = (best - target) if m.direction == "higher" else (target - best)
        current = pts.sort_values("rows")["score"].iloc[-1] if len(pts) else np.nan
        estimate, note = None, ""
        if contract.passed(metric, current):
            note = "already met at the current size"
        elif target_gap <= 0 or not np.isfinite(best):
            note = "unknown (target at the metric's limit)" if target_gap <= 0 else "unknown"
        elif len(pts) < 3 or (gap <= 0).any():
            note = "unknown (too few points)"
        else:
            # the gap falls with rows: no floor on the exponent (step 3's cost laws floor it at 0)
            law = fit_power_law(pts["rows"], gap, min_exponent=-np.inf)
            alpha = -law.b
            if alpha <= 0.01:
                note = "unknown: the learning curve is flat (more rows of the same data will not help)"
            else:
                n_needed = law.solve(target_gap)
                per_fold_rows = pts["rows"].max()
                scaled = n_needed * sample_rows / per_fold_rows
                if scaled <= max_factor * current_rows:
                    estimate, note = int(scaled), f"about {int(scaled):,} labelled rows"
                    if sample_rows < current_rows:
                        note += (f" (curve measured on a sample of {sample_rows:,}; the table has {current_rows:,}: "
                                 + ("more rows of this table should reach it)" if scaled <= current_rows
                                    else "more than it has)"))
                else:
                    note = f"unknown: more than {max_factor:g}x the current rows"
                    if sample_rows < current_rows:
                        note += f" ({current_rows:,}; curve measured on a sample of {sample_rows:,})"
        rows.append({"metric": metric, "target": target, "current": current, "rows_needed": estimate, "note": note})
    return pd.DataFrame(rows)


def learning_curve_figure(points: pd.DataFrame, contract: kpi_mod.KpiContract):
    metrics = list(contract.kpis)
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.6 * len(metrics), 3), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        pts = points[points["metric"] == metric]
        ax.plot(pts["rows"], pts["score"], "o-", color="#4c72b0", label="quick model")
        ax.axhline(contract.kpis[metric], color="#c44e52", ls="--", label="target")
        ax.set_xscale("log")
        # ticks at the measured sizes only: a log axis's default minor ticks triple the render time
        ax.set_xticks(pts["rows"], [f"{int(r):,}" for r in pts["rows"]])
        ax.minorticks_off()
        ax.set_title(metric)
        ax.set_xlabel("training rows")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def comparison_figure(table: pd.DataFrame, contract: kpi_mod.KpiContract, metrics: Sequence[str] | None = None):
    """Bars: each candidate's cross-validated score per KPI, with the target as a line."""
    metrics = list(metrics or contract.kpis)
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.6 * len(metrics), 3), squeeze=False)
    colors = {"baseline": "#8c8c8c", "heuristic": "#dd8452", "model": "#4c72b0"}
    for ax, metric in zip(axes[0], metrics, strict=True):
        kinds = ["baseline" if c == "dummy" else "model" if c == "quick_model" else "heuristic" for c in table["candidate"]]
        ax.bar(table["candidate"], table[metric], yerr=table.get(f"{metric}_std"),
               color=[colors[k] for k in kinds], capsize=3)
        ax.axhline(contract.kpis[metric], color="#c44e52", ls="--")
        ax.set_title(f"{metric} (target {contract.kpis[metric]:g})", fontsize=10)
        ax.tick_params(axis="x", labelrotation=20, labelsize=8)
    fig.tight_layout()
    return fig


# --- explorer -----------------------------------------------------------------------------------


def kpi_explorer_controls(contract: kpi_mod.KpiContract) -> dict[str, Any]:
    """Metric dropdown and threshold slider, starting at the contract's first KPI."""
    import ipywidgets as w

    metric, target = next(iter(contract.kpis.items()))
    bounded = kpi_mod.METRICS[metric].high <= 1
    return {"metric": w.Dropdown(options=metrics_for(contract.problem_type), value=metric, description="KPI"),
            "threshold": w.FloatSlider(value=target, min=0.0, max=1.0 if bounded else max(10 * target, 1.0),
                                       step=0.01, description="threshold", continuous_update=False)}


def kpi_explorer_update(framing: Framing):
    """An update function for the KPI explorer: metric + threshold -> verdict, from cached predictions."""
    base = framing.contract
    cache: dict[str, pd.DataFrame] = {}

    def update(metric: str, threshold: float):
        contract = dataclasses.replace(base, kpis={metric: float(threshold)})
        if metric not in cache:  # scores do not depend on the threshold: compute them once per metric
            cache[metric] = score_table(framing, contract)
        table = cache[metric].copy()
        table[f"{metric}_passed"] = [contract.passed(metric, v) for v in table[metric]]
        v = verdict(table, contract, heuristic_leak=framing.heuristic_leak)
        parts = [f"{r['candidate']} {r[metric]:.3f} ({'pass' if r[f'{metric}_passed'] else 'fail'})"
                 for r in table.to_dict(orient="records")]
        text = f"{metric} {'>=' if base.direction(metric) == 'higher' else '<='} {threshold:g}: " + "; ".join(parts) + f". Verdict: {v.code}."
        return text, comparison_figure(table, contract, [metric])

    return update


DEFAULT_KPIS = {"classification": {"balanced_accuracy": 0.70}, "regression": {"r2": 0.50},
                "clustering": {"silhouette": 0.25}}


def build_contract(params: Mapping[str, Any], problem_type: str, y: pd.Series | None) -> kpi_mod.KpiContract:
    """The KPI contract: validated thresholds, resolved positive label, averaging, classes."""
    kpis = kpi_mod.validate_kpis(params.get("kpis") or DEFAULT_KPIS[problem_type], problem_type)
    if problem_type != "classification":
        return kpi_mod.KpiContract(problem_type, kpis)
    classes = kpi_mod.class_order(y)  # the order of every fitted classifier's classes_
    positive = kpi_mod.resolve_positive_label(y, params.get("positive_label")) if len(classes) == 2 else None
    return kpi_mod.KpiContract(problem_type, kpis, positive, params.get("kpi_average", "macro"), classes)


def labelled_rows(frame: pd.DataFrame, target: str | None) -> tuple[pd.DataFrame, int]:
    """Rows with a known target (rows without one cannot be used to learn or score)."""
    if not target:
        return frame, 0
    keep = frame[target].notna()
    return frame[keep], int((~keep).sum())


@dataclass
class Feasibility:
    """The training rows step 1's studies run on: all of them, or a seeded (stratified) sample of ``feasibility_rows``."""

    train: pd.DataFrame  # the rows used (the whole training side when not sampled)
    y: pd.Series | None
    rows: int
    of: int
    sampled: bool
    cap: int
    stratified: bool

    @property
    def short(self) -> str:
        """E.g. 'on 20,000 of 800,000 training rows (stratified sample, feasibility_rows)' or 'on all 4,000 training rows'."""
        if self.sampled:
            kind = "stratified" if self.stratified else "random"
            return f"on {self.rows:,} of {self.of:,} training rows ({kind} sample, feasibility_rows)"
        return f"on all {self.of:,} training rows"

    @property
    def text(self) -> str:
        what = ("The leakage check, the baselines, KPI realism and the learning curve run" if self.y is not None
                else "The baselines and KPI realism run")  # clustering: no target, no leakage check or curve
        if self.sampled:
            return (f"{what} {self.short}: a seeded feasibility study of at most feasibility_rows = {self.cap:,} rows; "
                    "identifiers are found on every training row, and steps 3 and 4 size their own samples.")
        return f"{what} {self.short} (fewer than feasibility_rows = {self.cap:,}: no sample)."

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "of": self.of, "sampled": self.sampled, "cap": self.cap,
                "stratified": self.stratified, "text": self.text}


def feasibility_sample(train: pd.DataFrame, y: pd.Series | None, params: Mapping[str, Any],
                       problem_type: str) -> Feasibility:
    """At most ``feasibility_rows`` training rows (stratified by class for classification, seeded).

    Below the cap the training side is used as it is (same rows, same order), so small
    tables get exactly the results they had before the cap existed.
    """
    cap = int(params.get("feasibility_rows") or len(train))
    stratify = problem_type == "classification" and y is not None
    if cap >= len(train):
        return Feasibility(train, y, rows=len(train), of=len(train), sampled=False, cap=cap, stratified=stratify)
    positions, _ = subsample(pd.DataFrame({"row": np.arange(len(train))}), None if y is None else y.reset_index(drop=True),
                             cap, int(params.get("seed", 0)), stratify=stratify)
    rows = np.sort(positions["row"].to_numpy())  # the table's own row order (as step 2's leakage sample)
    return Feasibility(train.iloc[rows], None if y is None else y.iloc[rows], rows=len(rows), of=len(train),
                       sampled=True, cap=cap, stratified=stratify)


def set_aside_columns(train: pd.DataFrame, params: Mapping[str, Any], problem_type: str,
                      y: pd.Series | None, sample: Feasibility | None = None) -> dict[str, Any]:
    """Identifier columns and leakage suspects, named and removed before any comparison.

    ``keep_columns`` keeps suspects the user knows are available at prediction time (they are
    listed as ``leakage_kept``, with the same evidence). Identifiers are found on every
    training row (a sample makes any column look more unique); the leakage check runs on
    ``sample``'s rows when given (``feasibility_sample``).
    """
    keep = leakage.check_keep_columns(train.columns, params.get("keep_columns"))
    candidates = feature_columns(train, params)
    identifiers = identifier_columns(train[candidates])
    remaining = [c for c in candidates if c not in identifiers]
    rows, y_rows = (train, y) if sample is None else (sample.train, sample.y)
    cap = {} if sample is None else {"max_rows": max(sample.cap, sample.rows)}
    leaks = leakage_suspects(rows[remaining], y_rows, problem_type, seed=params.get("seed", 0), keep=keep, **cap) \
        if y is not None else pd.DataFrame(columns=leakage.LEAKAGE_COLUMNS)
    leaking = leaks.loc[leaks["suspect"].astype(bool), "column"].tolist()
    features = [c for c in remaining if c not in leaking]
    if not features:
        raise PlaybookError("No usable feature is left after setting aside identifiers and leakage suspects.",
                            "add feature columns, check id_column / sensitive_columns, or keep a column known at "
                            "prediction time with keep_columns.")
    return {"identifiers": identifiers, "leakage": leaking, "leakage_table": leaks, "features": features,
            "leakage_suspects": leakage.findings(leaks), "leakage_kept": leakage.findings(leaks, "kept"),
            "kept": leaks.loc[leaks["finding"] == "kept", "column"].tolist(),
            "excluded_by_parameters": [c for c in train.columns if c not in candidates]}


def leakage_notice(set_aside: Mapping[str, Any]) -> str:
    """The step's opening warning: each suspect set aside (or kept), its evidence and the fix."""
    suspects, kept = set_aside.get("leakage_suspects") or [], set_aside.get("leakage_kept") or []
    if not suspects and not kept:
        return "Leakage check: no column looks recorded after the outcome; nothing was set aside."
    lines = [f"LEAKAGE SUSPECTS SET ASIDE ({len(suspects)}): the comparisons below run without them."] if suspects else []
    lines += [f"- {s['column']}: {s['evidence']}.\n  Fix: {s['fix']}." for s in suspects]
    if kept:
        lines.append(f"Kept by keep_columns although they score like leaks ({len(kept)}):")
        lines += [f"- {s['column']}: {s['evidence']}." for s in kept]
    return "\n".join(lines)


def metrics_for(problem_type: str) -> list[str]:
    return [m for m, v in kpi_mod.METRICS.items() if v.problem_type == problem_type]


# --- documents and report --------------------------------------------------------------------


def charter_context(params: Mapping[str, Any], contract: kpi_mod.KpiContract, table: pd.DataFrame, v: Verdict,
                    realism: pd.DataFrame, needed: pd.DataFrame, set_aside: Mapping[str, Any],
                    provenance: Mapping[str, Any], framing_reason: str) -> dict[str, Any]:
    return {
        "project": params["project_name"], "problem_statement": params.get("problem_statement") or "(to be written by the team)",
        "dataset": provenance.get("source", params.get("dataset")), "rows": provenance.get("rows"),
        "target": params.get("target"), "problem_type": contract.problem_type, "problem_type_reason": framing_reason,
        "positive_label": contract.positive_label, "average": contract.average,
        "kpis": kpi_meanings(contract).to_dict(orient="records"),
        "baselines": table.to_dict(orient="records"), "metrics": list(contract.kpis),
        "verdict": v, "realism": realism.to_dict(orient="records"), "needed": needed.to_dict(orient="records"),
        "set_aside": set_aside,
    }


# the go/no-go of each verdict code, and the tone that colours it (tables.verdict_word)
GO_NO_GO = {"proceed": ("Go", "pass"), "heuristic_suffices": ("Hold: a simple rule may do", "watch"),
            "revisit": ("No-go", "fail")}


def go_no_go(verdict: Mapping[str, Any]) -> dict[str, str]:
    """The verdict as the first screen shows it: its word (Go, No-go, Hold), tone, code and sentence."""
    word, tone = GO_NO_GO.get(verdict.get("code"), (str(verdict.get("code")), "watch"))
    return {"word": word, "tone": tone, "code": str(verdict.get("code")), "text": str(verdict.get("text", ""))}


def report_section(run) -> Section:
    """Step 1's section of the report: the verdict, how the candidates compare, KPI realism, the charter."""
    s = run.read_summary(STEP)
    verdict = go_no_go(s["verdict"])
    metrics = [k["metric"] for k in s["contract"]["kpis"]]
    baselines = pd.DataFrame(s["baselines"])
    suspects = s["set_aside"].get("leakage_suspects") or []
    realism = pd.DataFrame(s["kpi_realism"])
    met = int((realism["verdict"] == "pass").sum()) if "verdict" in realism else 0
    facts = [Fact("go / no-go", verdict["word"], verdict["tone"]),
             Fact("KPIs the quick model already meets", f"{met} of {len(realism)}"),
             Fact("leakage suspects set aside", str(len(suspects)), "watch" if suspects else None)]
    body = [tables.table(realism, ["metric", "target", "direction", "achieved", "verdict", "realistic"],
                         caption="KPI realism: the quick model on the training side (cross-validated)")]
    if suspects:
        body.append(sections.paragraph(f"{len(suspects)} column(s) set aside", lead="Leakage suspects"))
        body.append(sections.bullets([Markup("<b>{}</b>: {}. <i>Fix:</i> {}.").format(x["column"], x["evidence"], x["fix"])
                                      for x in suspects]))
    details = [sections.Details("How the candidates compare (baselines, framing, rows studied)", [
        tables.table(baselines, ["candidate", "description", *metrics]),
        sections.paragraph(f"{s['problem_type']} ({s['problem_type_reason']})", lead="Problem type"),
        sections.paragraph(str(s.get("heuristic", {}).get("rule", "n/a")), lead="Heuristic"),
        sections.paragraph((s.get("feasibility") or {}).get("text", ""), lead="Rows studied"),
        *sections.images(run.artifacts / STEP, [("learning_curve.png", "learning curve of the quick model")])])]
    return Section("step-1", "1. Vision and measurable goals", f"{verdict['word']}: {verdict['text']}", facts,
                   sections.images(run.artifacts / STEP, [("candidates.png", "the candidates against the KPI targets")]),
                   body, details, [("charter", f"artifacts/{STEP}/charter.md"), ("executed notebook", f"{STEP}.ipynb")])


def headline(run) -> dict[str, Any]:
    """First-screen facts for the report: the go/no-go verdict, the problem, the leakage suspects."""
    s = run.read_summary(STEP)
    return {"verdict": s["verdict"], "go_no_go": go_no_go(s["verdict"]), "problem_type": s["problem_type"],
            "target": s.get("target"), "leakage": s["set_aside"].get("leakage_suspects") or [],
            "leakage_kept": s["set_aside"].get("leakage_kept") or []}


@dataclass
class VisionResult:
    """What step 1 computed: the framing, the KPI contract, the baselines and the verdict."""

    params: Mapping[str, Any]
    problem_type: str
    problem_type_reason: str
    contract: kpi_mod.KpiContract
    baselines: pd.DataFrame
    verdict: Verdict
    realism: pd.DataFrame
    rows_needed: pd.DataFrame
    set_aside: Mapping[str, Any]
    framing: Framing
    unlabelled_rows: int
    training_rows: int
    feasibility: Feasibility | None = None  # the rows the studies ran on (None: every training row)


def summary(result: VisionResult) -> dict[str, Any]:
    """Step 1's machine-readable findings (``summary.json``); ``contract`` is read by later steps."""
    params, set_aside = result.params, result.set_aside
    return {
        "project": params["project_name"], "problem_statement": params.get("problem_statement"),
        "target": params.get("target"), "problem_type": result.problem_type,
        "problem_type_reason": result.problem_type_reason,
        "contract": result.contract.to_dict(), "baselines": result.baselines.to_dict(orient="records"),
        "verdict": {"code": result.verdict.code, "text": result.verdict.text}, "heuristic": result.framing.heuristic,
        "kpi_realism": result.realism.to_dict(orient="records"),
        "rows_needed": result.rows_needed.to_dict(orient="records"),
        "set_aside": {"identifiers": set_aside["identifiers"], "leakage": set_aside["leakage"],
                      "leakage_table": set_aside["leakage_table"].head(10).to_dict(orient="records"),
                      "leakage_suspects": set_aside["leakage_suspects"], "leakage_kept": set_aside["leakage_kept"],
                      "excluded_by_parameters": set_aside["excluded_by_parameters"]},
        "features": set_aside["features"], "training_rows": result.training_rows,
        "unlabelled_rows_left_out": result.unlabelled_rows,
        "feasibility": (result.feasibility.to_dict() if result.feasibility is not None else
                        {"rows": result.training_rows, "of": result.training_rows, "sampled": False,
                         "text": f"Every one of the {result.training_rows:,} training rows was used (no sample)."}),
    }


def save(run, result: VisionResult) -> dict[str, Any]:
    """Write step 1's summary and put its KPI contract in the manifest; return the summary."""
    run.write_summary(STEP, summary(result))
    record_contract(run, result.params, result.contract)
    return run.read_summary(STEP)


def record_contract(run, params: Mapping[str, Any], contract: kpi_mod.KpiContract) -> None:
    """Put the KPI targets in the manifest (achieved values are filled by step 4)."""
    manifest = run.read_manifest()
    achieved = {k["metric"]: k for k in manifest.get("kpis") or []}
    rows = []
    for metric, target in contract.kpis.items():
        old = achieved.get(metric, {})
        same = old.get("target") == target
        rows.append({"metric": metric, "target": target, "direction": contract.direction(metric),
                     "achieved": old.get("achieved") if same else None, "passed": old.get("passed") if same else None})
    run.update_manifest(project=manifest.get("project") or params["project_name"], kpis=rows)


# --- exercises --------------------------------------------------------------------------------------
# Three exercises (notebook section "Exercises"): score the heuristic with scikit-learn, write a
# rule of your own on another column, set targets under which a rule suffices. Each checker
# returns an ``exercises.Feedback``; the expected answer leaves it only as ``giveaways``.

NUMBER_TOLERANCE = 5e-4  # an answer rounded to 3 decimals still passes


def _number(answer: Any) -> float | None:
    """The answer as a float, or None when it is not one number (a string, a list, a bool)."""
    if isinstance(answer, bool) or isinstance(answer, (str, bytes)):
        return None
    try:
        value = float(answer)
    except (TypeError, ValueError):
        return None
    return value if np.isfinite(value) else None


def heuristic_scores(framing: Framing) -> dict[str, float]:
    """The one-rule heuristic's out-of-fold predictions scored in the ways a learner might (exercise 1).

    Classification: ``f1`` (binary: of the positive label; multi-class: the contract's average),
    and the scores typically given instead: recall, precision, accuracy, balanced accuracy, the F1
    of the other class (binary) or other averages. Regression: ``mae`` first, then rmse and r2.
    """
    c = framing.contract
    y, pred = framing.y.to_numpy(), framing.candidate("heuristic").pred
    if c.problem_type == "regression":
        return {m: kpi_mod.score(m, c, y, pred) for m in ("mae", "rmse", "r2")}
    scores = {m: kpi_mod.score(m, c, y, pred) for m in ("f1", "recall", "precision", "accuracy", "balanced_accuracy")}
    if c.is_binary:
        other = next(label for label in c.classes if label != c.positive_label)
        scores["f1_other"] = kpi_mod.score("f1", dataclasses.replace(c, positive_label=other), y, pred)
        scores["f1_macro"] = float(f1_score(y, pred, average="macro"))
    else:
        for average in ("macro", "weighted", "micro"):
            if average != c.average:
                scores[f"f1_{average}"] = kpi_mod.score("f1", dataclasses.replace(c, average=average), y, pred)
    return scores


_EXERCISE_1_MISTAKES = {
    "recall": ("That is the rule's recall, not its F1.",
               "F1 is the harmonic mean of precision and recall: `sklearn.metrics.f1_score`."),
    "precision": ("That is the rule's precision, not its F1.",
                  "F1 is the harmonic mean of precision and recall: `sklearn.metrics.f1_score`."),
    "accuracy": ("That is the rule's accuracy (share of rows right), not its F1.",
                 "use `sklearn.metrics.f1_score`: it looks at the positive class only."),
    "balanced_accuracy": ("That is the rule's balanced accuracy, not its F1.",
                          "use `sklearn.metrics.f1_score`."),
    "f1_other": ("That is the F1 of the other class: the positive label is swapped.",
                 "pass `pos_label=contract.positive_label`: scikit-learn cannot guess which class matters."),
    "f1_macro": ("That is the macro average of both classes' F1, not the F1 of the positive class.",
                 "keep the default `average='binary'` and pass `pos_label=contract.positive_label`."),
    "f1_weighted": ("That is the weighted average F1, not the contract's average.", "pass `average=contract.average`."),
    "f1_micro": ("That is the micro average F1 (equal to accuracy), not the contract's average.",
                 "pass `average=contract.average`."),
    "rmse": ("That is the root mean squared error, not the mean absolute error.",
             "use `sklearn.metrics.mean_absolute_error`."),
    "r2": ("That is R², not the mean absolute error.", "use `sklearn.metrics.mean_absolute_error`."),
}


def check_exercise_1(answer: Any, framing: Framing) -> exercises.Feedback:
    """Exercise 1.1: the one-rule heuristic's F1 (regression: MAE) from its out-of-fold predictions."""
    ex = "1.1"
    if framing.contract.problem_type == "clustering":
        return exercises.correct(ex, "Nothing to score by hand for clustering: there are no labels to compare with.")
    scores = heuristic_scores(framing)
    main = "mae" if framing.contract.problem_type == "regression" else "f1"
    expected = scores[main]
    what = "its F1 score" if main == "f1" else "its mean absolute error"
    how = ("`f1_score(framing.y, framing.candidate('heuristic').pred, pos_label=contract.positive_label)`"
           if framing.contract.is_binary else
           "`f1_score(framing.y, framing.candidate('heuristic').pred, average=contract.average)`" if main == "f1" else
           "`mean_absolute_error(framing.y, framing.candidate('heuristic').pred)`")
    if exercises.is_unanswered(answer):
        return exercises.unanswered(ex, f"Set `answer` to the heuristic's score ({what}), a number.",
                                    f"import it from sklearn.metrics; for instance {how}.", expected=expected)
    value = _number(answer)
    if value is None:
        return exercises.wrong(ex, f"`answer` should be one number, not {type(answer).__name__}.",
                               "the metric functions of sklearn.metrics return a float: assign it to `answer`.",
                               expected=expected)
    if abs(value - expected) <= NUMBER_TOLERANCE:
        return exercises.correct(ex, f"{what[4:].capitalize()} of the rule '{framing.heuristic['rule']}' is "
                                     f"{expected:.3f}, from predictions it never saw its labels for (out of fold).",
                                 expected=expected)
    if abs(value - candidate_scores(framing, main, framing.candidate("heuristic"))[0]) <= NUMBER_TOLERANCE:
        return exercises.correct(ex, f"That is the mean of the per-fold scores; over all rows at once it is "
                                     f"{expected:.3f}, a near-identical figure.", expected=expected)
    if main == "f1" and 1 < value <= 100 and abs(value / 100 - expected) <= NUMBER_TOLERANCE:
        return exercises.wrong(ex, "That looks like a percentage.", "give the score as a share between 0 and 1.",
                               expected=expected)
    for name, score in scores.items():
        if name in _EXERCISE_1_MISTAKES and abs(value - score) <= NUMBER_TOLERANCE:
            message, hint = _EXERCISE_1_MISTAKES[name]
            return exercises.wrong(ex, message, hint, expected=expected)
    return exercises.wrong(ex, f"{value:.4g} is not {what} over the out-of-fold predictions.",
                           f"score `framing.candidate('heuristic').pred` against `framing.y`: {how}.", expected=expected)


def rule_problem(predictions: Any, column: Any, rows: pd.DataFrame, framing: Framing,
                 features: Sequence[str]) -> tuple[str, str] | None:
    """What makes ``predictions`` not a one-column rule on ``column`` (message, hint), or None (exercise 2)."""
    heuristic = framing.heuristic.get("column")
    if not isinstance(column, str) or column not in rows.columns:
        return (f"`column` should name a column of the training rows, not {column!r}.",
                "set `column` to a feature's name, as a string.")
    if column == heuristic:
        return (f"{column!r} is the column of the playbook's own rule.", "build your rule on another feature.")
    if column not in features:
        why = ("the target itself" if column == framing.y.name else
               "set aside before any comparison (an identifier, a sensitive column or a leakage suspect)")
        return (f"{column!r} is not a feature: it is {why}.",
                f"pick one of the features: {', '.join(map(str, features[:12]))}.")
    pred = pd.Series(np.asarray(predictions, dtype=object).ravel() if not isinstance(predictions, pd.Series)
                     else predictions.to_numpy(dtype=object))
    if len(pred) != len(rows):
        return (f"`answer` holds {len(pred):,} predictions, but `feasibility.train` has {len(rows):,} rows.",
                "predict every row of `feasibility.train` (not the whole table, not a sample).")
    if pred.isna().any():
        return (f"{int(pred.isna().sum()):,} rows got no prediction (a missing value in {column!r}?).",
                "every row needs a prediction: missing values must fall on one side of the rule.")
    classification = framing.contract.problem_type == "classification"
    if classification:
        known = set(map(str, framing.contract.classes))
        unknown = sorted({str(v) for v in pred.unique()} - known)
        if unknown:
            return (f"The predictions hold {', '.join(map(repr, unknown[:3]))}, which is no class of the target.",
                    f"predict the target's labels ({', '.join(map(repr, sorted(known)))}), e.g. with "
                    "np.where(condition, label_a, label_b).")
    if pred.astype(str).nunique() < 2:
        return (f"Your rule always predicts {pred.iloc[0]!r}: that is the dummy baseline, not a rule.",
                "the two sides of the rule must predict different values.")
    values = rows[column].astype(str).to_numpy()  # missing values form one group, like any value
    per_value = pd.Series(pred.astype(str).to_numpy()).groupby(values).nunique()
    if (per_value > 1).any():
        return (f"Rows with the same {column!r} get different predictions: the rule reads something else too.",
                f"a one-column rule depends on {column!r} alone (and keep the rows in their order).")
    return None


def check_exercise_2(answer: Any, column: Any, rows: pd.DataFrame, framing: Framing,
                     features: Sequence[str]) -> exercises.Feedback:
    """Exercise 1.2: a one-rule heuristic of your own, on another column (``rows``: ``feasibility.train``)."""
    ex = "1.2"
    c = framing.contract
    if c.problem_type == "clustering":
        return exercises.correct(ex, "Nothing to do for clustering: a rule needs a target to predict.")
    if exercises.is_unanswered(answer) or exercises.is_unanswered(column):
        return exercises.unanswered(ex, "Set `column` to a feature and `answer` to your rule's prediction for every "
                                        "row of `feasibility.train`.",
                                    "for instance np.where(feasibility.train[column] <= some_value, label_a, label_b).")
    problem = rule_problem(answer, column, rows, framing, features)
    if problem:
        return exercises.wrong(ex, *problem)
    pred = np.asarray(answer, dtype=object).ravel()
    y = framing.y.to_numpy()
    if c.problem_type == "classification":
        pred = np.asarray([next(k for k in c.classes if str(k) == str(v)) for v in pred], dtype=object) \
            if not set(pd.unique(pred)) <= set(c.classes) else pred
        mine, metric, chance = kpi_mod.score("balanced_accuracy", c, y, pred), "balanced accuracy", 1 / len(c.classes)
    else:
        mine, metric, chance = kpi_mod.score("r2", c, y, pred.astype(float)), "R²", 0.0
    best = candidate_scores(framing, "balanced_accuracy" if c.problem_type == "classification" else "r2",
                            framing.candidate("heuristic"))[0]
    if mine <= chance:
        swap = ("the two outcomes look swapped: predict the other label on each side" if c.is_binary
                else "each side should predict the value most typical of its rows")
        return exercises.wrong(ex, f"Your rule on {column!r} scores {metric} {mine:.3f}, no better than chance "
                                   f"({chance:.2f}).", f"{swap}.")
    return exercises.correct(ex, f"Your rule on {column!r} scores {metric} {mine:.3f} on the rows it was made on; "
                                 f"the playbook's rule ({framing.heuristic['rule']}) scores {best:.3f} cross-validated. "
                                 "The playbook tries such a rule on every column and keeps the best: that is the bar "
                                 "a model must clear.")


def rule_row(framing: Framing, contract: kpi_mod.KpiContract | None = None) -> pd.Series:
    """The score-table row of the non-ML rule (the heuristic; clustering: the trivial split)."""
    name = "trivial_split" if framing.contract.problem_type == "clustering" else "heuristic"
    return score_table(framing, contract).set_index("candidate").loc[name]


def check_exercise_3(answer: Any, framing: Framing) -> exercises.Feedback:
    """Exercise 1.3: KPI targets, as high as possible, under which the one-rule heuristic suffices.

    Giveaways: the rule's scores printed as a dict of targets (3 and 4 decimals).
    """
    ex = "1.3"
    c = framing.contract
    metrics = list(c.kpis)
    scores = rule_row(framing)
    giveaways = tuple("{" + ", ".join(f"{m!r}: {scores[m]:.{d}f}" for m in metrics) + "}" for d in (3, 4))

    def wrong(message: str, hint: str) -> exercises.Feedback:
        return exercises.wrong(ex, message, hint, giveaways=giveaways)

    if exercises.is_unanswered(answer):
        return exercises.unanswered(ex, "Set `answer` to a dict of targets, one per KPI of the contract: "
                                        f"{{{', '.join(f'{m!r}: ...' for m in metrics)}}}.",
                                    "read the heuristic's row of the baselines table, and mind each KPI's direction.",
                                    giveaways=giveaways)
    if isinstance(answer, str):
        return wrong("`answer` should be targets (a dict {metric: target}), not a verdict code.",
                     "the verdict follows from the targets: choose targets, the playbook gives the verdict.")
    if not isinstance(answer, Mapping) or set(answer) != set(metrics):
        given = sorted(map(str, answer)) if isinstance(answer, Mapping) else type(answer).__name__
        return wrong(f"`answer` should hold one target for each KPI of the contract ({', '.join(metrics)}); "
                     f"got {given}.", "keep the contract's metrics and change only their targets.")
    try:
        targets = kpi_mod.validate_kpis(dict(answer), c.problem_type)
    except PlaybookError as exc:
        return wrong(f"These targets are not valid: {exc}", "each target is a number the metric can reach.")
    contract = dataclasses.replace(c, kpis=targets)
    table = score_table(framing, contract)
    rule = rule_row(framing, contract)
    code = verdict(table, contract, heuristic_leak=framing.heuristic_leak).code
    failed = [m for m in metrics if not rule[f"{m}_passed"]]
    if failed:
        parts = []
        for m in failed:
            better = "at or below" if c.direction(m) == "lower" else "at or above"
            parts.append(f"{m} (the rule scores {rule[m]:.4f}; a target is met {better} it)")
        return wrong(f"The rule still misses {', '.join(parts)}: the verdict is {code!r}.",
                     "a higher-is-better target must be at most the rule's score, a lower-is-better one at least its score.")
    if code != "heuristic_suffices":
        return wrong(f"The rule meets every target, but the verdict is {code!r}: its rule is built on "
                     f"{framing.heuristic_leak!r}, a leakage suspect kept by keep_columns.",
                     "remove it from keep_columns, or accept that a leaky rule never suffices.")
    slack = {m: abs(rule[m] - targets[m]) / (1.0 if np.isfinite(kpi_mod.METRICS[m].high) else max(abs(rule[m]), 1e-9))
             for m in metrics}
    loose = [m for m in metrics if slack[m] > 0.05]
    if loose:
        return wrong(f"The verdict is 'heuristic_suffices', but the target of {', '.join(loose)} is far "
                     "from what the rule scores: any rule would pass such a target.",
                     "set each target as demanding as possible, at the rule's own score (or just under it).")
    return exercises.correct(ex, "The verdict is 'heuristic_suffices': when a one-line rule meets every target, the "
                                 "targets ask for no more than a rule can do. Either the rule is enough (no ML), or "
                                 "the targets are too low for what the project needs.", giveaways=giveaways)
