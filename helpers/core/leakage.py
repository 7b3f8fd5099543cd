"""Target leakage: single columns that predict the target (almost) perfectly.

Steps 1 and 2 both run this check; it lives here so that they share one implementation.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.metrics import r2_score, roc_auc_score
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor
from sklearn.utils import resample

from helpers.core.features import as_model_input, split_kinds

LEAK_THRESHOLD = 0.99


def encode_frame(X: pd.DataFrame) -> tuple[pd.DataFrame, list[str], list[str]]:
    """``encoded_column`` of every column (numbers as floats, categories as integer codes),
    and the numeric and categorical column names."""
    encoded, numeric, categorical = {}, [], []
    for col in X.columns:
        values, is_numeric = encoded_column(X[col])
        encoded[col] = values[:, 0]
        (numeric if is_numeric else categorical).append(col)
    return pd.DataFrame(encoded, index=X.index), numeric, categorical


def encoded_column(x: pd.Series) -> tuple[np.ndarray, bool]:
    """One column as a 2-D array that per-fold fits can use directly, and whether it is numeric.

    Numbers stay floats (missing as NaN). Categories are coded once as integers in sorted
    order, missing values as the category "missing" (what the pipelines' constant imputer
    does), so an encoder fitted on the codes of a fold produces exactly the columns it would
    produce on the strings. Why by hand: the string handling of the per-column pipelines
    (imputer and encoder on object arrays, 50-60 fits) was most of step 1's run time.
    """
    if pd.api.types.is_numeric_dtype(x):
        return x.to_numpy(dtype=float).reshape(-1, 1), True
    filled = x.astype(object).where(x.notna(), "missing").astype(str)
    codes, _ = pd.factorize(filled, sort=True)  # Python string order, as the encoders sort
    return codes.reshape(-1, 1), False


def _single_feature_score(values: np.ndarray, y: np.ndarray, estimator, splits, metric: str) -> float:
    """Mean validation score of ``estimator`` fitted on one encoded column.

    A plain loop over the folds: a tree on one column fits in a millisecond, and
    ``cross_val_score``'s per-call checks cost ten times that (measured).
    """
    scores = []
    for train, valid in splits:
        fitted = clone(estimator).fit(values[train], y[train])
        if metric == "r2":
            scores.append(r2_score(y[valid], fitted.predict(values[valid])))
            continue
        proba = np.zeros((len(valid), int(y.max()) + 1))
        proba[:, fitted.classes_] = fitted.predict_proba(values[valid])
        if proba.shape[1] == 2:
            scores.append(roc_auc_score(y[valid], proba[:, 1]))
        else:
            scores.append(roc_auc_score(y[valid], proba, multi_class="ovr", labels=np.arange(proba.shape[1])))
    return float(np.mean(scores))


def leakage_suspects(X: pd.DataFrame, y: pd.Series, problem_type: str, seed: int = 0,
                     threshold: float = LEAK_THRESHOLD, max_rows: int = 50_000) -> pd.DataFrame:
    """Single features that predict the target almost perfectly (cross-validated).

    Classification: ROC AUC of a small tree on the one feature (one-vs-rest for
    multi-class); regression: R². A score of at least ``threshold`` marks a suspect:
    such a column is usually recorded after the outcome. The tree sees ``encoded_column``
    values and routes missing values itself (a column whose missingness reveals the
    target is a leak too). Tables longer than ``max_rows`` are checked on a random
    (stratified) sample of that size: a near-perfect score shows on any large sample,
    and the check stays fast on millions of rows.
    """
    columns = ["column", "metric", "score", "suspect"]
    if problem_type not in ("classification", "regression") or y is None:
        return pd.DataFrame(columns=columns)
    X = as_model_input(X, *split_kinds(X, list(X.columns)), columns=list(X.columns))
    mask = y.notna().to_numpy()
    X, y = X[mask].reset_index(drop=True), y[mask].reset_index(drop=True)
    if problem_type == "classification":
        y = pd.Series(pd.factorize(y.astype(str), sort=True)[0])  # integer classes: faster fits and scoring
        if y.value_counts().min() < 3:
            return pd.DataFrame(columns=columns)
        metric = "roc_auc"
        estimator = DecisionTreeClassifier(max_depth=4, min_samples_leaf=5, random_state=seed)
        cv = StratifiedKFold(3, shuffle=True, random_state=seed)
    else:
        y = pd.to_numeric(y)
        metric = "r2"
        estimator = DecisionTreeRegressor(max_depth=6, min_samples_leaf=5, random_state=seed)
        cv = KFold(3, shuffle=True, random_state=seed)
    if len(X) > max_rows:
        keep = np.sort(resample(np.arange(len(X)), n_samples=max_rows, replace=False, random_state=seed,
                                stratify=y if problem_type == "classification" else None))
        X, y = X.iloc[keep].reset_index(drop=True), y.iloc[keep].reset_index(drop=True)
    splits = list(cv.split(np.zeros(len(y)), y))
    target = y.to_numpy()
    rows = []
    for col in X.columns:
        if X[col].nunique(dropna=True) < 2:
            continue
        score = _single_feature_score(encoded_column(X[col])[0], target, estimator, splits, metric)
        rows.append({"column": col, "metric": metric, "score": score, "suspect": score >= threshold})
    out = pd.DataFrame(rows, columns=columns)
    return out.sort_values("score", ascending=False, ignore_index=True)
