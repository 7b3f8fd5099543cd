"""KPI validation per problem type, scoring and intervals."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from helpers.core import kpis
from helpers.core.errors import PlaybookError


@pytest.mark.parametrize(("problem_type", "good", "bad"), [
    ("classification", {"recall": 0.7, "log_loss": 0.4}, {"r2": 0.5}),
    ("regression", {"r2": 0.5, "mae": 10}, {"roc_auc": 0.8}),
    ("clustering", {"silhouette": 0.3, "davies_bouldin": 1.0}, {"accuracy": 0.9}),
])
def test_kpis_fit_problem_type(problem_type, good, bad):
    assert kpis.validate_kpis(good, problem_type) == {k: float(v) for k, v in good.items()}
    with pytest.raises(PlaybookError, match=f"does not fit a {problem_type} problem"):
        kpis.validate_kpis(bad, problem_type)


@pytest.mark.parametrize(("kpi", "fragment"), [
    ({"recall": 1.2}, "outside the metric's range"), ({"mae": -1}, "outside"), ({"silhouette": -2}, "outside"),
    ({"recall": "high"}, "not a number"), ({}, "non-empty"), ({"recal": 0.5}, "Unknown KPI"),
])
def test_bad_thresholds(kpi, fragment):
    with pytest.raises(PlaybookError, match=fragment):
        kpis.validate_kpis(kpi, None)


def test_binary_scores_use_positive_label():
    y = np.array(["a", "b", "b", "a", "b", "a"], dtype=object)
    pred = np.array(["a", "a", "b", "a", "b", "b"], dtype=object)
    c = kpis.KpiContract("classification", {"recall": 0.5, "precision": 0.5}, positive_label="a", classes=["a", "b"])
    assert kpis.score("recall", c, y, pred) == pytest.approx(skm.recall_score(y, pred, pos_label="a"))
    assert kpis.score("precision", c, y, pred) == pytest.approx(skm.precision_score(y, pred, pos_label="a"))
    proba_a = np.array([0.9, 0.6, 0.1, 0.8, 0.2, 0.4])
    assert kpis.score("roc_auc", c, y, pred, proba_a) == pytest.approx(skm.roc_auc_score(y == "a", proba_a))


def test_multiclass_uses_average_and_ovr():
    rng = np.random.default_rng(0)
    y = rng.choice(["x", "y", "z"], 300).astype(object)
    proba = rng.dirichlet([1, 1, 1], 300)
    pred = np.array(["x", "y", "z"], dtype=object)[proba.argmax(1)]
    c = kpis.KpiContract("classification", {"f1": 0.3}, average="macro", classes=["x", "y", "z"])
    assert kpis.score("f1", c, y, pred) == pytest.approx(skm.f1_score(y, pred, average="macro"))
    assert kpis.score("roc_auc", c, y, pred, proba) == pytest.approx(
        skm.roc_auc_score(y, proba, multi_class="ovr", average="macro", labels=["x", "y", "z"]))


def test_regression_and_direction():
    c = kpis.KpiContract("regression", {"rmse": 2.0, "r2": 0.5})
    y, pred = np.array([1.0, 2, 3, 4]), np.array([1.5, 2, 2.5, 4])
    assert kpis.score("rmse", c, y, pred) == pytest.approx(np.sqrt(0.125))
    assert c.passed("rmse", 1.9) and not c.passed("rmse", 2.1)
    assert c.passed("r2", 0.6) and not c.passed("r2", 0.4)
    assert c.passed("r2", float("nan")) is None


def test_bootstrap_interval_brackets_the_estimate():
    rng = np.random.default_rng(1)
    y = rng.choice(["p", "n"], 500).astype(object)
    pred = np.where(rng.random(500) < 0.8, y, np.where(y == "p", "n", "p")).astype(object)
    c = kpis.KpiContract("classification", {"accuracy": 0.75}, positive_label="p", classes=["n", "p"])
    table = kpis.kpi_intervals(c, y, pred, n_boot=200, seed=0)
    row = table.iloc[0]
    assert row.ci_low < row.achieved < row.ci_high
    assert row.ci_high - row.ci_low < 0.1
    assert bool(row.passed) == (row.achieved >= 0.75)


def test_contract_round_trip():
    c = kpis.KpiContract("classification", {"recall": 0.7}, positive_label=np.int64(1), classes=[0, 1])
    back = kpis.KpiContract.from_dict(c.to_dict())
    assert back == kpis.KpiContract("classification", {"recall": 0.7}, 1, "macro", [0, 1])
    assert c.to_dict()["kpis"] == [{"metric": "recall", "target": 0.7, "direction": "higher"}]
