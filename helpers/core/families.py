"""The model-family registry: candidate families per problem type with search spaces.

Steps 1 (quick model), 3 (scaling) and 4 (selection and tuning) all take their
families from here. Search spaces are documented data, not numbers in notebooks;
each space lists values around the library default, which is always a candidate.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from scipy.stats import loguniform
from sklearn.cluster import DBSCAN, AgglomerativeClustering, KMeans
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.neighbors import KNeighborsClassifier

from helpers.core.errors import PlaybookError


@dataclass(frozen=True)
class Family:
    """One candidate family: how to build it and how to tune it."""

    name: str
    problem_type: str
    build: Callable[[int, int], Any]  # (seed, n_jobs) -> unfitted estimator
    search_space: dict[str, Any] = field(default_factory=dict)  # keys are estimator params
    main_param: str | None = None  # for validation curves and explorers
    main_values: tuple = ()
    quick: bool = False  # the family step 1 uses as its "quick standard model"
    deployable: bool = True
    scales_features: bool = True  # needs scaled inputs (linear, distance-based)
    description: str = ""


FAMILIES: list[Family] = [
    # classification
    Family("logistic_regression", "classification",
           lambda seed, n_jobs: LogisticRegression(max_iter=1000),
           {"C": loguniform(1e-3, 1e2)}, "C", (0.001, 0.01, 0.1, 1.0, 10.0, 100.0),
           description="linear model of the log-odds; fast, interpretable, a strong baseline"),
    Family("random_forest", "classification",
           lambda seed, n_jobs: RandomForestClassifier(n_estimators=100, random_state=seed, n_jobs=n_jobs),
           {"max_depth": [None, 4, 8, 16], "min_samples_leaf": [1, 2, 5, 10], "max_features": ["sqrt", 0.5, 1.0]},
           "max_depth", (2, 4, 8, 16, None), scales_features=False,
           description="average of many decorrelated trees; robust, little tuning"),
    Family("hist_gradient_boosting", "classification",
           # early_stopping="auto" would switch on above 10,000 rows: a different model, and a cost
           # step 3 could not project from smaller samples
           lambda seed, n_jobs: HistGradientBoostingClassifier(early_stopping=False, random_state=seed),
           {"learning_rate": loguniform(0.01, 0.3), "max_leaf_nodes": [15, 31, 63], "min_samples_leaf": [10, 20, 50],
            "l2_regularization": [0.0, 0.1, 1.0]},
           "learning_rate", (0.01, 0.03, 0.1, 0.3), quick=True, scales_features=False,
           description="boosted trees on binned features; usually the strongest on tabular data"),
    Family("k_nearest_neighbors", "classification",
           lambda seed, n_jobs: KNeighborsClassifier(n_jobs=n_jobs),
           {"n_neighbors": [3, 5, 11, 21, 41], "weights": ["uniform", "distance"]},
           "n_neighbors", (1, 3, 5, 11, 21, 41),
           description="vote of the closest training rows; needs scaled features"),
    # regression
    Family("ridge", "regression", lambda seed, n_jobs: Ridge(),
           {"alpha": loguniform(1e-3, 1e3)}, "alpha", (0.001, 0.01, 0.1, 1.0, 10.0, 100.0, 1000.0),
           description="linear regression with an L2 penalty"),
    Family("random_forest", "regression",
           lambda seed, n_jobs: RandomForestRegressor(n_estimators=100, random_state=seed, n_jobs=n_jobs),
           {"max_depth": [None, 4, 8, 16], "min_samples_leaf": [1, 2, 5, 10], "max_features": [1.0, 0.5, "sqrt"]},
           "max_depth", (2, 4, 8, 16, None), scales_features=False,
           description="average of many decorrelated trees"),
    Family("hist_gradient_boosting", "regression",
           lambda seed, n_jobs: HistGradientBoostingRegressor(early_stopping=False, random_state=seed),
           {"learning_rate": loguniform(0.01, 0.3), "max_leaf_nodes": [15, 31, 63], "min_samples_leaf": [10, 20, 50],
            "l2_regularization": [0.0, 0.1, 1.0]},
           "learning_rate", (0.01, 0.03, 0.1, 0.3), quick=True, scales_features=False,
           description="boosted trees on binned features"),
    # clustering: only k-means assigns new rows (nearest centroid), so only it is deployable
    Family("k_means", "clustering", lambda seed, n_jobs: KMeans(n_clusters=3, n_init=10, random_state=seed),
           {"n_clusters": [2, 3, 4, 5, 6, 7, 8]}, "n_clusters", (2, 3, 4, 5, 6, 7, 8), quick=True,
           description="k centroids; new rows go to the nearest one"),
    Family("agglomerative", "clustering", lambda seed, n_jobs: AgglomerativeClustering(n_clusters=3),
           {"n_clusters": [2, 3, 4, 5, 6, 7, 8], "linkage": ["ward", "average"]}, "n_clusters", (2, 3, 4, 5, 6, 7, 8),
           deployable=False, description="merges the closest clusters bottom-up; no rule for new rows"),
    Family("dbscan", "clustering", lambda seed, n_jobs: DBSCAN(),
           {"eps": [0.5, 1.0, 1.5, 2.0, 3.0], "min_samples": [5, 10]}, "eps", (0.5, 1.0, 1.5, 2.0, 3.0),
           deployable=False, description="dense regions become clusters, the rest is noise"),
]


def families_for(problem_type: str) -> list[Family]:
    found = [f for f in FAMILIES if f.problem_type == problem_type]
    if not found:
        raise PlaybookError(f"No model families for problem type {problem_type!r}.",
                            "use classification, regression or clustering.")
    return found


def get_family(problem_type: str, name: str) -> Family:
    for f in families_for(problem_type):
        if f.name == name:
            return f
    names = ", ".join(f.name for f in families_for(problem_type))
    raise PlaybookError(f"Unknown {problem_type} family {name!r}.", f"use one of {names}.")


def quick_family(problem_type: str) -> Family:
    return next(f for f in families_for(problem_type) if f.quick)
