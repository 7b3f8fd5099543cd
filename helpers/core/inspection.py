"""Permutation importance in KPI units: steps 4 and 5 rank features by the same computation."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.inspection import permutation_importance

from helpers.core import kpis as kpi_mod
from helpers.core.sampling import subsample


class KpiScorer:
    """A ``cross_validate`` scoring callable: every metric in its own units from one prediction.

    ``cross_validate`` accepts a callable returning a dict; building one scorer per metric
    with ``make_scorer`` would predict once per metric.
    """

    def __init__(self, contract: kpi_mod.KpiContract, metrics: Sequence[str]):
        self.contract = contract
        self.metrics = list(metrics)

    def __call__(self, estimator, X, y) -> dict[str, float]:
        proba = None
        if any(kpi_mod.METRICS[m].needs == "proba" for m in self.metrics):
            full = estimator.predict_proba(X)  # labels from the same probabilities: one pass, not two
            y_pred = np.asarray(estimator.classes_)[full.argmax(axis=1)]
            proba = kpi_mod.contract_proba(full, estimator.classes_, self.contract)
        else:
            y_pred = estimator.predict(X)
        return {m: kpi_mod.score(m, self.contract, np.asarray(y), y_pred, proba) for m in self.metrics}


class MetricScorer:
    """One metric as a scorer; ``signed=True`` negates lower-is-better metrics (for importances and searches)."""

    def __init__(self, contract: kpi_mod.KpiContract, metric: str, signed: bool = False):
        self.contract = contract
        self.metric = metric
        self.signed = signed

    def __call__(self, estimator, X, y) -> float:
        value = KpiScorer(self.contract, [self.metric])(estimator, X, y)[self.metric]
        return -value if self.signed and kpi_mod.METRICS[self.metric].direction == "lower" else value


def kpi_scorer(contract: kpi_mod.KpiContract, metric: str) -> MetricScorer:
    """A scikit-learn scoring callable for one supervised KPI, negated when lower is better (higher is better)."""
    return MetricScorer(contract, metric, signed=True)


def permutation_importance_table(model, X: pd.DataFrame, y, contract: kpi_mod.KpiContract, metric: str | None = None,
                                 *, n_repeats: int = 5, seed: int = 0, n_jobs: int | None = 1,
                                 max_rows: int | None = None) -> pd.DataFrame:
    """Permutation importance of each column of ``X``: how much ``metric`` (default: the contract's
    first KPI) worsens when the column is shuffled; columns feature, importance, std, most important first.

    ``max_rows`` scores a seeded sample (stratified for classification) instead of every row.
    Clustering is scored by the model's own objective (k-means: minus the inertia), not by a KPI.
    """
    metric = metric or next(iter(contract.kpis))
    if max_rows is not None:
        labels = None if y is None else pd.Series(np.asarray(y), index=X.index)
        X, labels = subsample(X, labels, max_rows, seed, stratify=contract.problem_type == "classification")
        y = None if labels is None else labels.to_numpy()
    # Clustering: a silhouette barely moves when one column of a few rows is shuffled (on the
    # 36-row wine test side it ranked magnesium first); the objective the clusters were fitted
    # to ranks the separating columns first, stably.
    scoring = None if contract.problem_type == "clustering" else kpi_scorer(contract, metric)
    result = permutation_importance(model, X, y, scoring=scoring, n_repeats=n_repeats, random_state=seed,
                                    n_jobs=n_jobs)
    table = pd.DataFrame({"feature": X.columns, "importance": result.importances_mean, "std": result.importances_std})
    return table.sort_values("importance", ascending=False, kind="stable").reset_index(drop=True)
