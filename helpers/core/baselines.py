"""Baselines every step compares against: cross-validation folds, the one-rule heuristic, the
trivial clustering split, and class predictions in the order of the KPI contract (steps 1 and 4 share them)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.decomposition import PCA
from sklearn.impute import SimpleImputer
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from helpers.core import kpis as kpi_mod


def make_folds(y: pd.Series | None, n_rows: int, problem_type: str, seed: int, n_splits: int = 5) -> np.ndarray:
    folds = np.zeros(n_rows, dtype=int)
    if problem_type == "classification":
        n_splits = max(2, min(n_splits, int(y.value_counts().min())))
        splitter = StratifiedKFold(n_splits, shuffle=True, random_state=seed)
        parts = splitter.split(np.zeros(n_rows), y.astype(str))
    else:
        splitter = KFold(min(n_splits, n_rows), shuffle=True, random_state=seed)
        parts = splitter.split(np.zeros(n_rows))
    for i, (_, valid) in enumerate(parts):
        folds[valid] = i
    return folds


def class_codes(y: pd.Series, contract: kpi_mod.KpiContract) -> np.ndarray:
    """Class labels as positions in ``contract.classes``: estimators fit faster on integers
    than on object labels, and positions map straight back to labels and probability columns."""
    return pd.Categorical(y, categories=contract.classes).codes.astype(int)


def class_predictions(model, X, contract: kpi_mod.KpiContract) -> tuple[np.ndarray, np.ndarray]:
    """Labels and (n, k) probabilities, classes in contract order, of a classifier fitted on ``class_codes``.

    predict() is the most probable class for every classifier used here: it is derived from
    predict_proba instead of running the pipeline twice.
    """
    p = model.predict_proba(X)
    proba = np.zeros((len(p), len(contract.classes)))
    proba[:, model.classes_] = p
    labels = np.asarray(contract.classes, dtype=object)[model.classes_[np.argmax(p, axis=1)]]
    return labels, proba


def rule_text(pipeline, column: str, contract: kpi_mod.KpiContract, numeric: bool) -> str:
    """A fitted depth-1 tree on one column, written as an if-then rule."""
    tree = pipeline[-1]
    prep = pipeline[0]
    if tree.tree_.node_count < 3:
        const = tree.classes_[np.argmax(tree.tree_.value[0])] if hasattr(tree, "classes_") else tree.tree_.value[0][0][0]
        return f"always predict {_fmt_value(const)}"
    threshold = tree.tree_.threshold[0]
    left, right = tree.tree_.children_left[0], tree.tree_.children_right[0]

    def outcome(node):
        if hasattr(tree, "classes_"):
            return _fmt_value(tree.classes_[int(np.argmax(tree.tree_.value[node]))])
        return _fmt_value(float(tree.tree_.value[node][0][0]))

    if numeric:
        return f"if {column} <= {threshold:.4g} then {outcome(left)} else {outcome(right)}"
    onehot = prep.named_transformers_["x"][-1]
    names = list(onehot.get_feature_names_out([column]))
    feature = names[tree.tree_.feature[0]]
    value = feature[len(column) + 1:]
    return f"if {column} == {value!r} then {outcome(right)} else {outcome(left)}"


def _fmt_value(v) -> str:
    if isinstance(v, (float, np.floating)):
        return f"{v:.4g}"
    return repr(v.item() if isinstance(v, np.generic) else v)


def rule_tree(problem_type: str, seed: int):
    # balanced class weights: each side of the rule predicts the class it is most enriched in,
    # so a rule on imbalanced data does not collapse to "always the majority class"
    return (DecisionTreeClassifier(max_depth=1, class_weight="balanced", random_state=seed)
            if problem_type == "classification" else DecisionTreeRegressor(max_depth=1, random_state=seed))


def rule_onehot() -> OneHotEncoder:
    return OneHotEncoder(handle_unknown="ignore", max_categories=20, sparse_output=False)


def heuristic_pipeline_and_kind(X: pd.DataFrame, column: str, problem_type: str, seed: int):
    numeric = pd.api.types.is_numeric_dtype(X[column])
    if numeric:
        prep = ColumnTransformer([("x", SimpleImputer(strategy="median"), [column])])
    else:
        prep = ColumnTransformer([("x", make_pipeline(SimpleImputer(strategy="constant", fill_value="missing"),
                                                      rule_onehot()), [column])])
    return make_pipeline(prep, rule_tree(problem_type, seed)), numeric


def heuristic_pipeline(X: pd.DataFrame, column: str, problem_type: str, seed: int = 0):
    """The one-rule heuristic on ``column``: a depth-1 tree (steps 1 and 4 share it)."""
    return heuristic_pipeline_and_kind(X, column, problem_type, seed)[0]


def trivial_split(Z: np.ndarray, k: int = 3, seed: int = 0) -> np.ndarray:
    """The clustering baseline: ``k`` groups of rows by quantiles of the first principal component of ``Z``.

    ``Z`` is the preprocessed (numeric, scaled) feature matrix; clusterings are scored
    against this split by silhouette in steps 1 and 4. Tied quantile edges are merged,
    so a near-constant component gives fewer than ``k`` groups.
    """
    pc1 = PCA(n_components=1, random_state=seed).fit_transform(Z)[:, 0]
    return np.asarray(pd.qcut(pc1, q=k, labels=False, duplicates="drop"))
