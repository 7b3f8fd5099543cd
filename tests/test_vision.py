"""Step 1 logic: problem type, set-aside columns, baselines and the verdict, KPI realism."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from helpers.core import baselines, kpis, leakage, problem
from helpers.core.errors import PlaybookError
from helpers.steps import vision


def contract_for(y, metrics, positive=None):
    classes = sorted(pd.unique(y).tolist(), key=str)
    return kpis.KpiContract("classification", metrics, positive if positive is not None else classes[-1],
                            "macro", classes)


def framing_verdict(X, y, metrics):
    c = contract_for(y, metrics)
    framing = vision.supervised_framing(X, y, c, seed=0)
    table = vision.score_table(framing)
    return vision.verdict(table, c), table, framing


def test_a_simple_rule_suffices():
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"x1": rng.normal(size=600), "x2": rng.normal(size=600)})
    y = pd.Series(np.where(X["x1"] > 0.2, "yes", "no"))
    v, table, framing = framing_verdict(X, y, {"accuracy": 0.95})
    assert v.code == "heuristic_suffices"
    assert framing.heuristic["column"] == "x1"
    assert "x1 <= 0.2" in framing.heuristic["rule"][:20] or "x1 <=" in framing.heuristic["rule"]


def test_ml_needed_for_an_interaction():
    rng = np.random.default_rng(1)
    X = pd.DataFrame({"x1": rng.normal(size=1200), "x2": rng.normal(size=1200), "noise": rng.normal(size=1200)})
    y = pd.Series(np.where(X["x1"] * X["x2"] > 0, "yes", "no"))
    v, table, _ = framing_verdict(X, y, {"accuracy": 0.85})
    scores = table.set_index("candidate")["accuracy"]
    assert scores["quick_model"] > scores["heuristic"] + 0.2
    assert v.code == "proceed"


def test_nothing_comes_close_on_noise():
    rng = np.random.default_rng(2)
    X = pd.DataFrame({"x1": rng.normal(size=500), "x2": rng.normal(size=500)})
    y = pd.Series(rng.choice(["yes", "no"], 500))
    v, _, _ = framing_verdict(X, y, {"accuracy": 0.9})
    assert v.code == "revisit"


def test_leakage_suspect_found_and_clean_feature_not():
    rng = np.random.default_rng(3)
    y = pd.Series(rng.choice(["a", "b"], 400))
    X = pd.DataFrame({"leak": np.where(y == "a", 1.0, 0.0) + rng.normal(0, 0.01, 400),
                      "signal": (y == "a") * 0.5 + rng.normal(size=400)})
    table = leakage.leakage_suspects(X, y, "classification", seed=0)
    flagged = table.set_index("column")["suspect"]
    assert flagged["leak"] and not flagged["signal"]
    reg = leakage.leakage_suspects(pd.DataFrame({"copy": np.arange(300.0) * 2, "z": rng.normal(size=300)}),
                                  pd.Series(np.arange(300.0)), "regression", seed=0)
    assert reg.set_index("column")["suspect"].to_dict() == {"copy": True, "z": False}


def test_identifier_columns():
    n = 200
    frame = pd.DataFrame({"customer_id": [f"C{i}" for i in range(n)], "row": np.arange(n),
                          "amount": np.random.default_rng(0).normal(size=n), "city": ["a", "b"] * (n // 2)})
    assert problem.identifier_columns(frame) == ["customer_id", "row"]


@pytest.mark.parametrize(("values", "expected"), [
    (["a", "b"] * 10, "classification"), ([0, 1] * 50, "classification"),
    (list(np.linspace(0, 1, 100)), "regression"), (None, "clustering"),
])
def test_infer_problem_type(values, expected):
    y = None if values is None else pd.Series(values)
    kind, reason = problem.infer_problem_type(y, "auto")
    assert kind == expected and reason


@pytest.mark.parametrize(("frame", "target", "ptype", "fragment"), [
    (pd.DataFrame({"y": ["a"] * 10, "x": range(10)}), "y", "classification", "single class"),
    (pd.DataFrame({"y": [None] * 10, "x": range(10)}), "y", "classification", "entirely missing"),
    (pd.DataFrame({"y": ["1", "x", "3"], "x": [1, 2, 3]}), "y", "regression", "non-numeric values"),
    (pd.DataFrame({"x": [1, 2]}), "label", "classification", "not in the data"),
])
def test_check_target_errors(frame, target, ptype, fragment):
    with pytest.raises(PlaybookError, match=fragment):
        problem.check_target(frame, target, ptype)


def test_rows_needed_from_a_known_power_law():
    c = kpis.KpiContract("regression", {"r2": 0.9, "mae": 0.01})
    rows = np.array([100, 200, 400, 800])
    gap = 0.5 * (rows / 100.0) ** -0.5  # r2 = 1 - gap
    points = pd.DataFrame({"rows": np.r_[rows, rows], "metric": ["r2"] * 4 + ["mae"] * 4,
                           "score": np.r_[1 - gap, np.full(4, 0.5)]})
    needed = vision.rows_needed(points, c, current_rows=1000).set_index("metric")
    # gap 0.1 at n = 100 * (0.5 / 0.1)^2 = 2500 per-fold rows -> scaled by 1000/800
    assert needed.loc["r2", "rows_needed"] == pytest.approx(2500 * 1000 / 800, rel=0.02)
    assert "flat" in needed.loc["mae", "note"]


def test_realism_flags_targets_above_the_interval():
    rng = np.random.default_rng(4)
    X = pd.DataFrame({"x1": rng.normal(size=600)})
    y = pd.Series(np.where(X["x1"] + rng.normal(0, 1, 600) > 0, "yes", "no"))
    c = contract_for(y, {"roc_auc": 0.99, "accuracy": 0.5})
    framing = vision.supervised_framing(X, y, c, seed=0)
    realism = vision.kpi_realism(framing, seed=0, n_boot=100).set_index("metric")
    assert "unrealistic" in realism.loc["roc_auc", "realistic"]
    assert realism.loc["accuracy", "realistic"] == "met"


def test_clustering_framing_beats_a_trivial_split_on_blobs():
    from sklearn.datasets import make_blobs

    X, _ = make_blobs(600, centers=3, n_features=4, random_state=0)
    c = kpis.KpiContract("clustering", {"silhouette": 0.3})
    framing = vision.clustering_framing(pd.DataFrame(X, columns=list("abcd")), c, seed=0)
    table = vision.score_table(framing).set_index("candidate")
    assert table.loc["quick_model", "silhouette"] > table.loc["trivial_split", "silhouette"]


def test_explorer_update_rescoring_without_refit():
    rng = np.random.default_rng(5)
    X = pd.DataFrame({"x1": rng.normal(size=400), "x2": rng.normal(size=400)})
    y = pd.Series(np.where(X["x1"] + 0.3 * rng.normal(size=400) > 0, "yes", "no"))
    c = contract_for(y, {"accuracy": 0.8})
    framing = vision.supervised_framing(X, y, c, seed=0)
    update = vision.kpi_explorer_update(framing)
    low, fig = update("accuracy", 0.5)
    high, _ = update("accuracy", 0.99)
    assert "heuristic" in low and "(pass)" in low and "Verdict: heuristic_suffices" in low
    assert "Verdict: heuristic_suffices" not in high and "(fail)" in high
    assert fig is not None


def messy_frame(n=600, seed=6):
    """Numbers with gaps, categories with gaps, many rare categories, one category only near the end."""
    rng = np.random.default_rng(seed)
    num = rng.normal(size=n)
    num[rng.random(n) < 0.1] = np.nan
    colour = rng.choice(["red", "Green", "blue ", None], n).astype(object)
    many = np.array([f"v{i % 37}" for i in rng.integers(0, 500, n)], dtype=object)
    late = np.where(np.arange(n) > n - 40, "late", rng.choice(["a", "b"], n)).astype(object)
    return pd.DataFrame({"num": num, "colour": colour, "many": many, "late": late})


@pytest.mark.parametrize("problem_type", ["binary", "multiclass", "regression"])
def test_fast_rule_search_matches_the_heuristic_pipeline(problem_type):
    """The rule search fits on encoded columns; its predictions equal heuristic_pipeline's."""
    from sklearn.base import clone

    X = messy_frame()
    rng = np.random.default_rng(7)
    if problem_type == "regression":
        y = pd.Series(rng.normal(size=len(X)) + X["num"].fillna(0))
        c = kpis.KpiContract("regression", {"r2": 0.5})
    else:
        labels = ["no", "yes"] if problem_type == "binary" else ["a", "b", "c"]
        y = pd.Series(rng.choice(labels, len(X)))
        c = contract_for(y, {"balanced_accuracy": 0.6})
    folds = baselines.make_folds(y, len(y), c.problem_type, seed=0)
    encoded, _, _ = leakage.encode_frame(X)
    for col in X.columns:
        fast = vision.rule_oof(encoded[[col]].to_numpy(), col == "num", y, folds, c, seed=0)
        expected = np.empty(len(X), dtype=object if c.problem_type == "classification" else float)
        for f in np.unique(folds):
            fitted = clone(baselines.heuristic_pipeline(X, col, c.problem_type, 0)).fit(X.loc[folds != f, [col]], y[folds != f])
            expected[folds == f] = fitted.predict(X.loc[folds == f, [col]])
        assert (fast.pred == expected).all(), col


def test_learning_curve_reuses_the_quick_models_out_of_fold_score():
    rng = np.random.default_rng(8)
    X = pd.DataFrame({"x1": rng.normal(size=900), "x2": rng.normal(size=900)})
    y = pd.Series(np.where(X["x1"] + 0.5 * rng.normal(size=900) > 0, "yes", "no"))
    c = contract_for(y, {"accuracy": 0.8, "roc_auc": 0.9})
    framing = vision.supervised_framing(X, y, c, seed=0)
    curve = vision.learning_curve_points(framing, seed=0)
    assert sorted(curve["metric"].unique()) == ["accuracy", "roc_auc"]
    sizes = sorted(curve["rows"].unique())
    assert len(sizes) == 3 and sizes[-1] == 720  # 4 of 5 folds
    full = curve[(curve["rows"] == 720) & (curve["metric"] == "accuracy")]["score"].item()
    model = framing.candidate("quick_model")
    per_fold = [(model.pred[framing.folds == f] == y[framing.folds == f]).mean() for f in range(3)]
    assert full == pytest.approx(np.mean(per_fold))
    small = curve[(curve["rows"] == sizes[0]) & (curve["metric"] == "roc_auc")]["score"].item()
    assert 0.6 < small < 1


def test_leakage_through_missingness_and_on_a_sample_of_a_long_table():
    rng = np.random.default_rng(9)
    n = 3000
    y = pd.Series(rng.choice(["churn", "stay"], n, p=[0.3, 0.7]))
    # recorded only for customers who left: whether it is missing gives the target away
    refund = np.where(y == "churn", rng.normal(50, 10, n), np.nan)
    X = pd.DataFrame({"refund": refund, "noise": rng.normal(size=n), "city": rng.choice(["a", "b", "c"], n)})
    table = leakage.leakage_suspects(X, y, "classification", seed=0).set_index("column")
    assert table.loc["refund", "suspect"] and not table.loc["noise", "suspect"] and not table.loc["city", "suspect"]
    sampled = leakage.leakage_suspects(X, y, "classification", seed=0, max_rows=500).set_index("column")
    assert sampled.loc["refund", "suspect"] and not sampled.loc["noise", "suspect"]
    multi = pd.Series(rng.choice(["a", "b", "c"], n))
    three = leakage.leakage_suspects(pd.DataFrame({"copy": multi.map({"a": 1.0, "b": 2.0, "c": 3.0}),
                                                  "noise": rng.normal(size=n)}), multi, "classification")
    assert three.set_index("column")["suspect"].to_dict() == {"copy": True, "noise": False}


def test_out_of_fold_predictions_are_the_most_probable_class():
    from sklearn.base import clone

    rng = np.random.default_rng(10)
    X = pd.DataFrame({"x1": rng.normal(size=400), "x2": rng.normal(size=400)})
    y = pd.Series(rng.choice(["a", "b", "c"], 400))
    c = contract_for(y, {"accuracy": 0.5})
    folds = baselines.make_folds(y, len(y), "classification", seed=0)
    pipe, _ = vision.quick_model("classification", ["x1", "x2"], [], seed=0, smallest_fit=320)
    cand = vision._oof(pipe, X, y, folds, c)
    for f in np.unique(folds):
        fitted = clone(pipe).fit(X[folds != f], y[folds != f])
        assert (cand.pred[folds == f] == fitted.predict(X[folds == f])).all()
        np.testing.assert_allclose(cand.proba[folds == f], fitted.predict_proba(X[folds == f]))
