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


# --- the one verdict rule: pass / watch / fail ----------------------------------------------------------------------


@pytest.mark.parametrize(("value", "lo", "hi", "target", "direction", "verdict"), [
    (0.696, 0.62, 0.74, 0.70, "higher", "watch"),  # the batch: a miss that chance explains
    (0.60, 0.55, 0.65, 0.70, "higher", "fail"),  # the whole interval below the target
    (0.72, 0.60, 0.80, 0.70, "higher", "pass"),
    (0.70, 0.60, 0.80, 0.70, "higher", "pass"),  # meeting the target exactly is a pass
    (0.65, 0.60, 0.70, 0.70, "higher", "watch"),  # an interval ending at the target still contains it
    (2.3, 2.1, 2.5, 2.0, "lower", "fail"),  # lower is better: the interval above the target
    (2.1, 1.9, 2.3, 2.0, "lower", "watch"),
    (1.8, 1.5, 2.2, 2.0, "lower", "pass"),
    (0.65, float("nan"), float("nan"), 0.70, "higher", "fail"),  # no interval: the point decides
    (None, None, None, 0.70, "higher", None),
    (float("nan"), 0.1, 0.2, 0.70, "higher", None),
])
def test_kpi_verdict_from_value_interval_and_target(value, lo, hi, target, direction, verdict):
    assert kpis.kpi_verdict(value, lo, hi, target, direction) == verdict
    assert kpis.verdict_passed(verdict) is {"pass": True, "fail": False}.get(verdict)


def test_too_few_rows_comes_before_any_judgement():
    assert kpis.kpi_verdict(0.1, 0.0, 0.2, 0.7, "higher", count=12, min_count=30) == "too few rows"
    assert kpis.kpi_verdict(0.1, 0.0, 0.2, 0.7, "higher", count=30, min_count=30) == "fail"
    assert kpis.verdict_passed("too few rows") is None and kpis.verdict_passed("watch") is None


def test_kpi_intervals_table_carries_the_verdict_and_passed_follows_it():
    c = kpis.KpiContract("classification", {"recall": 0.7, "precision": 0.9}, positive_label="p", classes=["n", "p"])
    rng = np.random.default_rng(3)
    y = np.array(["p"] * 150 + ["n"] * 150, dtype=object)
    # recall 102/150 = 0.68: below 0.7 by less than its interval; precision far below 0.9
    pred = np.array(["p"] * 102 + ["n"] * 48 + list(np.where(rng.random(150) < 0.4, "p", "n")), dtype=object)
    table = kpis.kpi_intervals(c, y, pred, n_boot=300, seed=0).set_index("metric")
    assert table.loc["recall", "verdict"] == "watch" and table.loc["recall", "passed"] is None
    assert table.loc["recall", "ci_low"] < 0.7 < table.loc["recall", "ci_high"]
    assert table.loc["precision", "verdict"] == "fail" and table.loc["precision", "passed"] is False
    assert table.loc["precision", "ci_high"] < 0.9


def test_simultaneous_level_is_bonferroni_and_95_for_one_check():
    assert kpis.simultaneous_level(1) == pytest.approx(0.95)
    assert kpis.simultaneous_level(18) == pytest.approx(1 - 0.05 / 18)
    assert kpis.simultaneous_level(18, alpha=0.05) == pytest.approx(1 - 0.1 / 18)


def test_normal_interval_is_z_bootstrap_standard_errors_wide():
    values = np.random.default_rng(0).normal(0.5, 0.02, 20_000)
    lo, hi = kpis.normal_interval(0.5, values, 0.95)
    assert lo == pytest.approx(0.5 - 1.96 * 0.02, abs=1e-3) and hi == pytest.approx(0.5 + 1.96 * 0.02, abs=1e-3)
    assert np.isnan(kpis.normal_interval(float("nan"), values)[0])
    with pytest.raises(PlaybookError, match="Unknown interval method"):
        kpis.kpi_intervals(kpis.KpiContract("regression", {"mae": 1.0}), [1.0, 2.0], [1.0, 2.5], interval="bca")


def test_judged_count_is_the_rows_the_metric_averages_over():
    c = kpis.KpiContract("classification", {"recall": 0.7}, positive_label="p", classes=["n", "p"])
    y = np.array(["p"] * 10 + ["n"] * 40, dtype=object)
    pred = np.array(["p"] * 6 + ["n"] * 34 + ["p"] * 10, dtype=object)
    assert kpis.judged_count("recall", c, y, pred) == 10  # the positives
    assert kpis.judged_count("precision", c, y, pred) == 16  # the flagged rows
    assert kpis.judged_count("f1", c, y, pred) == 10
    assert kpis.judged_count("roc_auc", c, y, pred) == 10  # the smaller class
    assert kpis.judged_count("accuracy", c, y, pred) == 50
    multi = kpis.KpiContract("classification", {"f1": 0.5}, classes=["a", "b", "c"])
    assert kpis.judged_count("f1", multi, np.array(["a"] * 5 + ["b"] * 3 + ["c"] * 9, dtype=object)) == 3


def test_batch_kpis_says_too_few_rows_instead_of_failing():
    c = kpis.KpiContract("classification", {"recall": 0.7, "accuracy": 0.5}, positive_label="p", classes=["n", "p"])
    y = np.array(["p"] * 12 + ["n"] * 188, dtype=object)
    pred = np.array(["n"] * 12 + ["n"] * 188, dtype=object)  # every positive missed: recall 0
    table = kpis.batch_kpis(c, y, pred, None, n_boot=100).set_index("metric")
    assert list(table.columns) == [c for c in kpis.BATCH_COLUMNS if c != "metric"]
    assert table.loc["recall", "verdict"] == "too few rows" and table.loc["recall", "count"] == 12
    assert table.loc["accuracy", "verdict"] == "pass" and table.loc["accuracy", "count"] == 200
    assert (table["level"] == 0.95).all()
    judged = kpis.batch_kpis(c, y, pred, None, n_boot=100, min_count=10).set_index("metric")
    assert judged.loc["recall", "verdict"] == "fail"


def test_row_verdict_prefers_the_recorded_one_and_recomputes_old_rows():
    old = {"metric": "recall", "target": 0.7, "direction": "higher", "achieved": 0.69, "ci_low": 0.6,
           "ci_high": 0.75, "passed": False}  # a run recorded before verdicts: point-only "passed"
    assert kpis.row_verdict(old) == "watch"
    assert kpis.row_verdict({**old, "verdict": "fail"}) == "fail"
    assert kpis.row_verdict({**old, "achieved": None, "ci_low": None, "ci_high": None}) is None


def test_large_test_sides_use_the_m_out_of_n_bootstrap_with_the_same_interval():
    """Above max_rows each resample draws max_rows rows and the spread is rescaled: the interval matches the
    full bootstrap's (to Monte-Carlo noise) while costing a fraction of it; the point value uses every row."""
    rng = np.random.default_rng(3)
    n = 60_000
    y = np.where(rng.random(n) < 0.3, "yes", "no").astype(object)
    proba = np.clip(0.3 + 0.3 * (y == "yes") + rng.normal(0, 0.25, n), 0, 1)
    pred = np.where(proba > 0.45, "yes", "no").astype(object)
    contract = kpis.KpiContract("classification", {"recall": 0.7, "roc_auc": 0.8}, "yes", "macro", ["no", "yes"])
    full = kpis.kpi_intervals(contract, y, pred, proba, n_boot=300, seed=0, max_rows=n)
    sampled = kpis.kpi_intervals(contract, y, pred, proba, n_boot=300, seed=0, max_rows=6_000)
    assert np.allclose(full["achieved"], sampled["achieved"])
    width_full = full["ci_high"] - full["ci_low"]
    width_sampled = sampled["ci_high"] - sampled["ci_low"]
    assert np.all(np.abs(width_sampled / width_full - 1) < 0.2)
    assert np.all(np.abs(sampled["ci_low"] - full["ci_low"]) < 0.25 * width_full)
