"""Target leakage: columns recorded after the outcome, near-perfect or partial.

Steps 1 and 2 both run this check; it lives here so that they share one implementation.

The rule (validated on a generated corpus with known answers: ``benchmarks/bench_leakage.py``).
Every column gets a cross-validated single-column score: a small tree on that column alone,
ROC AUC for classification (one-vs-rest macro average for multi-class), R² for regression.
Scores are compared in *skill* units, (score - chance) / (1 - chance): Gini for ROC AUC, R² itself.

- **Near-perfect alone**: a single-column score of at least ``NEAR_PERFECT`` (ROC AUC 0.99, R² 0.98)
  makes a suspect whatever the other columns do.
- **Carries the model**: a column that is strong alone (``STRONG_ALONE``: ROC AUC 0.875, or R² 0.40:
  a normal column whose classes lie d = sqrt(2) * Phi^-1(AUC) apart explains d² / (d² + 4) of the
  variance, 40% at 0.875; honest columns rarely get there alone) is a suspect when
  it carries most of the all-feature model's skill while the other columns together are far
  below: alone it reaches at least ``DOMINANT_SHARE`` (80%) of the skill of a random forest on all
  columns, and without it the forest's error (1 - score) is at least ``ERROR_RATIO`` (2x) the
  error with it (and at least ``MIN_COST`` skill lower: three folds cannot see less). A strong
  column the other columns reproduce without it (tumour size measured three ways) is not a leak.
- **Post-outcome names** (``POST_OUTCOME_WORDS``: after, outcome, result, settled, refund,
  collections, closed, cancel, ...) raise the severity: a column strong alone whose name says it
  is recorded after the outcome is a suspect even when others reproduce it. A name never
  decides alone: a weak column is never a suspect, whatever it is called.

Suspects are set aside by default; ``keep_columns`` keeps a column the user knows is available at
prediction time. Columns are tested from the highest single score down, and a column's "others"
leave out the suspects found before it (a first leak would otherwise hide a second). Only the
``MAX_COMPARED`` strongest columns are compared with the others (one forest each); a table with
more strong columns than that has redundant signal, and the rest are "watch".
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.metrics import r2_score, roc_auc_score
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from helpers.core.errors import PlaybookError
from helpers.core.features import as_model_input, split_kinds
from helpers.core.sampling import subsample

CHANCE = {"roc_auc": 0.5, "r2": 0.0}
NEAR_PERFECT = {"roc_auc": 0.99, "r2": 0.98}
STRONG_ALONE = {"roc_auc": 0.875, "r2": 0.40}
DOMINANT_SHARE = 0.8
ERROR_RATIO = 2.0
MIN_COST = 0.02
MAX_COMPARED = 8  # strong columns compared with the others, strongest first (each costs one forest)
LEAK_THRESHOLD = NEAR_PERFECT["roc_auc"]  # the near-perfect line in the units the notebooks quote

# whole words, and stems that start a word (cancel: cancelled, cancellation)
POST_OUTCOME_WORDS = ("after", "post", "final", "exit")
POST_OUTCOME_STEMS = ("outcome", "result", "settl", "refund", "collection", "closed", "closing", "cancel", "resolv",
                      "resolution", "terminat", "retention", "chargeback", "recover", "writeoff", "payout")

LEAKAGE_COLUMNS = ["column", "metric", "score", "score_with", "score_without", "post_outcome_word",
                   "finding", "suspect", "reason"]


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


def _cv_score(values: np.ndarray, y: np.ndarray, estimator, splits, metric: str) -> float:
    """Mean validation score of ``estimator`` fitted on encoded columns (one or many).

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


def skill(score: float, metric: str) -> float:
    """A score in skill units: 0 is chance, 1 perfect (Gini for ROC AUC, R² itself)."""
    return (score - CHANCE[metric]) / (1 - CHANCE[metric])


def post_outcome_word(column: str) -> str | None:
    """The word of a column name that says it is recorded after the outcome (None: no such word)."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", str(column))  # camelCase -> camel Case
    for word in re.split(r"[^a-z0-9]+", spaced.lower()):
        if word in POST_OUTCOME_WORDS or word.startswith(POST_OUTCOME_STEMS):
            return word
    return None


def check_keep_columns(columns: Sequence[str], keep: Sequence[str] | None) -> list[str]:
    """``keep_columns`` as a list, every name a column of the data (else one clear error)."""
    keep = list(keep or [])
    unknown = [c for c in keep if c not in set(columns)]
    if unknown:
        raise PlaybookError(f"keep_columns names {', '.join(map(repr, unknown))}, which "
                            f"{'is not a column' if len(unknown) == 1 else 'are not columns'} of the data.",
                            "list only columns of the data that are known at prediction time, "
                            f"e.g. keep_columns: [{', '.join(map(str, list(columns)[:2]))}].")
    return keep


def keep_fix(column: str) -> str:
    """The one-parameter override named in every leakage message."""
    return (f"if {column} is known when the model is used (before the outcome), keep it with "
            f"keep_columns: [{column}]")


def evidence(row: Mapping[str, Any]) -> str:
    """What a leakage finding rests on, with the cross-validated scores with and without the column."""
    text = f"alone it reaches cross-validated {row['metric']} = {row['score']:.3f}: {row['reason']}"
    with_it, without_it = row.get("score_with"), row.get("score_without")
    if _finite(with_it) and _finite(without_it):
        text += (f"; a forest on the other columns reaches {without_it:.3f} without it and {with_it:.3f} with it "
                 f"(setting it aside costs {with_it - without_it:.3f})")
    word = row.get("post_outcome_word")
    if word and "named like" not in row["reason"]:
        text += f"; its name ({word}) says it is recorded after the outcome"
    return text


def findings(table: pd.DataFrame, finding: str = "suspect") -> list[dict[str, Any]]:
    """The rows of one finding ("suspect" or "kept") as JSON-able records with their evidence and fix."""
    rows = table[table["finding"] == finding] if "finding" in table else table.iloc[:0]
    out = []
    for row in rows.to_dict(orient="records"):
        out.append({"column": row["column"], "metric": row["metric"], "score": row["score"],
                    "score_with": row["score_with"], "score_without": row["score_without"],
                    "reason": row["reason"], "post_outcome_word": row["post_outcome_word"],
                    "evidence": evidence(row), "fix": keep_fix(row["column"])})
    return out


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _folds(target: np.ndarray, classification: bool, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The check's three seeded folds (stratified for classification)."""
    cv = StratifiedKFold(3, shuffle=True, random_state=seed) if classification else KFold(3, shuffle=True, random_state=seed)
    return list(cv.split(np.zeros(len(target)), target))


def _sample(y: pd.Series, n: int, classification: bool, seed: int) -> np.ndarray | None:
    """Sorted row positions of a seeded (stratified) sample of ``n`` rows (``sampling.subsample``); None when all rows fit."""
    if len(y) <= n:
        return None
    positions, _ = subsample(pd.DataFrame({"row": np.arange(len(y))}), pd.Series(np.asarray(y)), n, seed,
                             stratify=classification)
    return np.sort(positions["row"].to_numpy())


class _Forest:
    """Cross-validated score of a random forest on a set of columns, cached per set."""

    def __init__(self, encoded: pd.DataFrame, target: np.ndarray, classification: bool, metric: str,
                 seed: int, max_rows: int):
        rows = _sample(pd.Series(target), max_rows, classification, seed)
        self.encoded = encoded if rows is None else encoded.iloc[rows].reset_index(drop=True)
        self.target = target if rows is None else target[rows]
        self.splits = _folds(self.target, classification, seed)
        # a forest: good on any mix of numbers, codes and missing values, about 1 s per set on 5,000 rows
        forest = RandomForestClassifier if classification else RandomForestRegressor
        self.estimator = forest(n_estimators=40, min_samples_leaf=3, max_features="sqrt", n_jobs=1, random_state=seed)
        self.metric = metric
        self.cache: dict[frozenset, float] = {}

    def score(self, columns: Sequence[str]) -> float:
        key = frozenset(columns)
        if not key:
            return CHANCE[self.metric]
        if key not in self.cache:
            values = self.encoded[sorted(key)].to_numpy(dtype=float)
            self.cache[key] = _cv_score(values, self.target, self.estimator, self.splits, self.metric)
        return self.cache[key]


def dominates(score: float, with_it: float, without_it: float, metric: str) -> bool:
    """Does a column carry most of the all-feature model's skill, the others together far below?"""
    alone, full, rest = skill(score, metric), skill(with_it, metric), skill(without_it, metric)
    carries = full <= 0 or alone >= DOMINANT_SHARE * full
    far_below = (1 - without_it) >= ERROR_RATIO * (1 - with_it) and full - rest >= MIN_COST
    return bool(carries and far_below)


def leakage_suspects(X: pd.DataFrame, y: pd.Series, problem_type: str, seed: int = 0,
                     keep: Sequence[str] = (), max_rows: int = 50_000, model_rows: int = 10_000) -> pd.DataFrame:
    """Columns that are probably recorded after the outcome (the rule is in the module docstring).

    One row per column, highest single score first: ``score`` (alone), ``score_with`` and
    ``score_without`` (a forest on the non-suspect columns with and without it: what setting it
    aside costs; computed for strong columns only), ``post_outcome_word``, ``finding``
    ("suspect": set it aside; "kept": a suspect ``keep`` keeps; "watch": strong alone, but the
    others reproduce it; "": nothing) and ``reason``. The tree sees ``encoded_column`` values
    and routes missing values itself (a column whose missingness reveals the target is a leak
    too). Single scores use at most ``max_rows`` rows and the forests ``model_rows``, drawn
    at random (stratified): a leak shows on any large sample, and the check stays fast.
    """
    if problem_type not in ("classification", "regression") or y is None:
        return pd.DataFrame(columns=LEAKAGE_COLUMNS)
    mask = y.notna().to_numpy()
    X, y = X[mask].reset_index(drop=True), y[mask].reset_index(drop=True)
    classification = problem_type == "classification"
    if classification:
        y = pd.Series(pd.factorize(y.astype(str), sort=True)[0])  # integer classes: faster fits and scoring
        if y.value_counts().min() < 3:
            return pd.DataFrame(columns=LEAKAGE_COLUMNS)
        metric = "roc_auc"
        estimator = DecisionTreeClassifier(max_depth=4, min_samples_leaf=5, random_state=seed)
    else:
        y = pd.to_numeric(y)
        metric = "r2"
        estimator = DecisionTreeRegressor(max_depth=6, min_samples_leaf=5, random_state=seed)
    rows = _sample(y, max_rows, classification, seed)
    if rows is not None:
        X, y = X.iloc[rows].reset_index(drop=True), y.iloc[rows].reset_index(drop=True)
    # converted after sampling: the conversion is value by value, and a million rows cost seconds
    X = as_model_input(X, *split_kinds(X, list(X.columns)), columns=list(X.columns))
    target = y.to_numpy()
    splits = _folds(target, classification, seed)
    columns = [c for c in X.columns if X[c].nunique(dropna=True) >= 2]
    if not columns:
        return pd.DataFrame(columns=LEAKAGE_COLUMNS)
    encoded = pd.DataFrame({c: encoded_column(X[c])[0][:, 0] for c in columns})
    single = {c: _cv_score(encoded[[c]].to_numpy(), target, estimator, splits, metric) for c in columns}
    forest = _Forest(encoded, target, classification, metric, seed, model_rows)
    order = sorted(columns, key=lambda c: -single[c])
    set_aside: list[str] = []
    found: dict[str, dict] = {}
    compared = 0
    for col in order:
        score, word = single[col], post_outcome_word(col)
        row = {"column": col, "metric": metric, "score": score, "score_with": math.nan, "score_without": math.nan,
               "post_outcome_word": word, "finding": "", "reason": ""}
        others = [c for c in columns if c != col and c not in set_aside]
        strong = f"strong alone (at least {STRONG_ALONE[metric]:g})"
        if score >= NEAR_PERFECT[metric]:
            row["reason"] = f"near-perfect alone (at least {NEAR_PERFECT[metric]:g})"
        elif score >= STRONG_ALONE[metric] and others and compared < MAX_COMPARED:
            compared += 1
            with_it, without_it = forest.score(others + [col]), forest.score(others)
            row["score_with"], row["score_without"] = with_it, without_it
            if dominates(score, with_it, without_it, metric):
                row["reason"] = "carries the all-column model: the other columns together are far below"
            elif not word:
                row["finding"], row["reason"] = "watch", f"{strong}, but the other columns reproduce it"
        elif score >= STRONG_ALONE[metric] and not word:
            row["finding"] = "watch"
            row["reason"] = f"{strong}, not compared (only the {MAX_COMPARED} strongest columns are)"
        if score >= STRONG_ALONE[metric] and word and not row["reason"]:
            row["reason"] = f"{strong} and named like a post-outcome record ({word})"
        if row["reason"] and not row["finding"]:
            row["finding"] = "kept" if col in keep else "suspect"
            if row["finding"] == "suspect":
                set_aside.append(col)
        found[col] = row
    honest = [c for c in columns if c not in set_aside]
    for col in set_aside + [c for c in columns if found[c]["finding"] == "kept"]:
        base = [c for c in honest if c != col]
        found[col]["score_with"], found[col]["score_without"] = forest.score(base + [col]), forest.score(base)
    out = pd.DataFrame([found[c] for c in order], columns=LEAKAGE_COLUMNS)
    out["suspect"] = out["finding"] == "suspect"
    return out
