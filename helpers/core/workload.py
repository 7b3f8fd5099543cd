"""Step 4's workload, counted in fits and scored rows, and its duration predicted from step 3's costs.

Step 3 measures each family's ``CostModel`` (seconds to fit on n rows, to score m rows)
and predicts step 4's duration with ``predict_modeling`` for each family that might be
tuned; step 4 calls the same function with its own parameters and the family it tuned,
and records the prediction next to the time it took. The schedule below mirrors what
step 4 runs (``helpers.steps.modeling``; a test keeps the constants in step with it):

- leaderboard: on each rung of the selection sample (``core.plan.rungs``) the families still in the race
  (all of them on the first rung, then the better half, ``surviving``) and two baselines, ``folds_for``
  folds, training rows scored too;
- explorer grid: the two leaders on ``EXPLORER_ROWS`` rows, ``min(folds, 3)`` folds, two
  learning-curve sizes, one curve per value of the family's main hyperparameter;
- tuning: the default plus ``iterations`` configurations of the leader (``folds_for`` folds
  each), stopped once ``tuning_budget_s`` is spent; halving follows scikit-learn's schedule;
- threshold (binary): out-of-fold probabilities, ``folds`` folds;
- final: one fit on all training rows, the test side scored, the heuristic refitted;
- permutation importance: the test side scored ``n_features * IMPORTANCE_REPEATS + 1`` times.

Baselines are costed as the cheapest family (an upper bound: they fit the same
preprocessing and a trivial model). Figures, tables and the model file are not counted.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from helpers.core.families import get_family
from helpers.core.scaling import CostModel

EXPLORER_ROWS = 400  # modeling.EXPLORER_ROWS
EXPLORER_FOLDS = 3  # modeling.subsample: min(folds, 3)
LEARNING_SIZES = (0.4, 1.0)  # modeling.explorer_grid(sizes=...)
IMPORTANCE_REPEATS = 5  # modeling.importance_table(n_repeats=...)
HALVING_FACTOR = 2  # modeling._halving: HalvingGridSearchCV(factor=2)
BASELINES = 2  # dummy and the one-rule heuristic
# From this many rows a selection sample is cross-validated on at most LARGE_SAMPLE_FOLDS folds: each validation
# part then holds over 16,000 rows and scores within a few thousandths, so more folds buy little precision for
# their cost (FLAML goes further and switches from cross-validation to one holdout from 100,000 rows).
LARGE_SAMPLE_ROWS = 50_000
LARGE_SAMPLE_FOLDS = 3

WHICH = ("nominal", "low", "high")


def folds_for(rows: int, folds: int) -> int:
    """The folds a sample of ``rows`` rows is cross-validated on: ``cv_folds``, at most 3 from ``LARGE_SAMPLE_ROWS``."""
    return folds if rows < LARGE_SAMPLE_ROWS else min(folds, LARGE_SAMPLE_FOLDS)


def surviving(families: int) -> int:
    """How many families the next rung cross-validates: the better half, never fewer than two.

    Successive halving (Jamieson and Talwalkar, 2016) over families: a family far behind on a
    small sample is not refitted on 4x the rows. Two stay in the race because learning curves
    cross (a linear model often leads on a few thousand rows and boosting overtakes it later).
    """
    return min(families, max(2, math.ceil(families / 2)))


def _fit(cost: CostModel, n: float, which: str) -> float:
    return cost.fit_s(n) if which == "nominal" else cost.fit_range(n)[which == "high"]


def _score(cost: CostModel, n: float, m: float, which: str) -> float:
    return cost.score_s(n, m) if which == "nominal" else cost.score_range(n, m)[which == "high"]


def _cv(cost: CostModel, n_fit: float, n_valid: float, folds: int, which: str, train_score: bool) -> float:
    """One cross-validation: per fold a fit on ``n_fit`` rows, ``n_valid`` rows scored (and the training rows)."""
    fold = _fit(cost, n_fit, which) + _score(cost, n_fit, n_valid, which)
    if train_score:
        fold += _score(cost, n_fit, n_fit, which)
    return folds * fold


def _halving(cost: CostModel, n: float, folds: int, candidates: int, which: str) -> float:
    """HalvingGridSearchCV with ``min_resources='exhaust'``: candidates halve while the rows double."""
    required = 1 + int(math.floor(math.log(max(candidates, 1), HALVING_FACTOR)))
    smallest = folds * 2 * 2  # scikit-learn's 'smallest' resource for classifiers: 2 * n_splits * n_classes
    start = max(smallest, int(n) // HALVING_FACTOR ** (required - 1))
    possible = 1 + int(math.floor(math.log(max(int(n) // start, 1), HALVING_FACTOR)))
    total = 0.0
    for i in range(min(required, possible)):
        rows = min(start * HALVING_FACTOR**i, n)
        left = math.ceil(candidates / HALVING_FACTOR**i)
        # scikit-learn subsamples the whole data set to the round's rows (training and validation parts)
        total += left * _cv(cost, rows * (folds - 1) / folds, rows / folds, folds, which, train_score=True)
    return total


def modeling_parts(costs: Mapping[str, CostModel], *, problem_type: str, n_train: int, n_test: int, n_features: int,
                   folds: int, iterations: int, strategy: str, tuning_budget_s: float, tuned: str,
                   explored: Sequence[str], binary: bool, which: str = "nominal",
                   rungs: Sequence[int] | None = None, n_refit: int | None = None,
                   importance_rows: int | None = None,
                   racing: Sequence[Sequence[str]] | None = None) -> dict[str, float]:
    """Predicted seconds of each part of step 4 (``which``: the nominal laws, or the low or high jackknife bound).

    ``n_train`` is the selection sample (tuning and threshold run on it); ``rungs`` the sizes the
    leaderboard visited (default: ``n_train`` alone), ``racing`` the families each rung fitted (known
    after step 4's selection; before it, the costliest ``surviving`` ones are counted), ``n_refit`` the final refit's rows (default
    ``n_train``) and ``importance_rows`` the test rows permutation importance scores (default ``n_test``).
    """
    if which not in WHICH:
        raise ValueError(f"which must be one of {WHICH}")
    cv_folds, folds = folds, folds_for(n_train, folds)
    n_fit, n_valid = n_train * (folds - 1) / folds, n_train / folds
    cheapest = min(costs.values(), key=lambda c: c.fold_s(n_fit, n_valid))
    leaderboard = 0.0
    alive = len(costs)
    for i, rows in enumerate(rungs or [n_train]):
        r_folds = folds_for(rows, cv_folds)
        r_fit, r_valid = rows * (r_folds - 1) / r_folds, rows / r_folds
        each = {n: _cv(c, r_fit, r_valid, r_folds, which, train_score=True) for n, c in costs.items()}
        if racing is not None:
            leaderboard += sum(each[n] for n in racing[i])
        else:  # who survives a rung is known only once it ran: the costliest ones are counted (an upper bound)
            leaderboard += sum(sorted(each.values(), reverse=True)[:alive])
            alive = surviving(alive)
        leaderboard += BASELINES * _cv(cheapest, r_fit, r_valid, r_folds, which, train_score=True)

    rows = min(EXPLORER_ROWS, n_train)
    e_folds = min(folds, EXPLORER_FOLDS)
    explorer = 0.0
    for name in explored:
        values = len(get_family(problem_type, name).main_values)
        for share in LEARNING_SIZES:  # learning_curve scores the training subset too
            explorer += values * _cv(costs[name], rows * (e_folds - 1) / e_folds * share, rows / e_folds, e_folds,
                                     which, train_score=True)

    cost = costs[tuned]
    candidates = iterations + 1
    per_config = _cv(cost, n_fit, n_valid, folds, which, train_score=False)
    if strategy == "halving":
        tuning = _halving(cost, n_train, folds, candidates, which)
    else:
        # the default always runs; each further configuration starts while the budget is not spent
        run = min(candidates, int(tuning_budget_s // per_config) + 1) if per_config > 0 else candidates
        tuning = run * per_config
    threshold = per_config if binary else 0.0
    n_refit = n_train if n_refit is None else n_refit
    final = (_fit(cost, n_refit, which) + _score(cost, n_refit, n_test, which)
             + _fit(cheapest, n_refit, which) + _score(cheapest, n_refit, n_test, which))
    scored = n_test if importance_rows is None else min(importance_rows, n_test)
    importance = (n_features * IMPORTANCE_REPEATS + 1) * _score(cost, n_refit, scored, which)
    return {"leaderboard": leaderboard, "explorer": explorer, "tuning": tuning, "threshold": threshold,
            "final": final, "importance": importance}


def predict_modeling(costs: Mapping[str, CostModel], *, problem_type: str, n_train: int, n_test: int,
                     n_features: int, folds: int, iterations: int, strategy: str, tuning_budget_s: float,
                     tuned: str, explored: Sequence[str], binary: bool, rungs: Sequence[int] | None = None,
                     n_refit: int | None = None, importance_rows: int | None = None,
                     racing: Sequence[Sequence[str]] | None = None) -> dict[str, Any]:
    """Step 4's predicted duration: total, its low-high range and the parts (None for clustering).

    ``tuned`` is the family step 4 tunes, ``explored`` the two in its explorer grid; ``costs``
    must hold every candidate family of the problem type (the leaderboard fits them all).
    """
    if problem_type == "clustering":
        return {"total_s": None, "low_s": None, "high_s": None, "parts": {}, "tuned": None,
                "note": "not predicted for clustering: step 4 fits a fixed-size sample there"}
    kwargs = dict(problem_type=problem_type, n_train=n_train, n_test=n_test, n_features=n_features, folds=folds,
                  iterations=iterations, strategy=strategy, tuning_budget_s=tuning_budget_s, tuned=tuned,
                  explored=list(explored), binary=binary, rungs=rungs, n_refit=n_refit, importance_rows=importance_rows,
                  racing=racing)
    parts = modeling_parts(costs, **kwargs)
    low = sum(modeling_parts(costs, **kwargs, which="low").values())
    high = sum(modeling_parts(costs, **kwargs, which="high").values())
    total = sum(parts.values())
    return {"total_s": total, "low_s": min(low, total), "high_s": max(high, total), "parts": parts,
            "tuned": tuned, "explored": list(explored)}
