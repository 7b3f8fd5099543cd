"""Step 4 helpers on small synthetic data: leaderboard, tuning, threshold, clustering, saving."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, TransformerMixin

from helpers.core import artifacts, hashing, kpis, modelio
from helpers.core.errors import PlaybookError
from helpers.core.prepared import Prepared, save_prepared
from helpers.steps import modeling


def _frame(n: int, seed: int, problem_type: str) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    colour = rng.choice(["red", "green", "blue"], size=n).astype(object)
    frame = pd.DataFrame({"x1": x1, "x2": x2, "noise": rng.normal(size=n), "colour": colour,
                          "group": rng.choice(["a", "b"], size=n).astype(object)})
    frame.loc[frame.index[::17], "x2"] = np.nan
    signal = 1.5 * x1 + (colour == "red") - 0.8 * x2
    if problem_type == "classification":
        frame["target"] = np.where(signal + rng.normal(scale=0.8, size=n) > 0.9, "yes", "no").astype(object)
    elif problem_type == "regression":
        frame["target"] = 3 * signal + rng.normal(scale=0.5, size=n)
    return frame


def make_inputs(problem_type: str = "classification", n: int = 240, seed: int = 0, folds: int = 3,
                kpi: dict | None = None) -> modeling.Inputs:
    frame = _frame(n, seed, problem_type)
    if problem_type == "clustering":
        centres = np.array([[0, 0], [6, 6], [0, 6]])
        labels = np.arange(n) % 3
        frame = pd.DataFrame(centres[labels] + np.random.default_rng(seed).normal(scale=0.6, size=(n, 2)),
                             columns=["x1", "x2"])
    test = np.arange(n) % 5 == 0
    target = None if problem_type == "clustering" else "target"
    numeric = ["x1", "x2"] if problem_type == "clustering" else ["x1", "x2", "noise"]
    categorical = [] if problem_type == "clustering" else ["colour"]
    sensitive = [] if problem_type == "clustering" else ["group"]
    prepared = Prepared(frame[~test], frame[test], target, problem_type, numeric, categorical, None, sensitive)
    default = {"classification": {"recall": 0.7, "precision": 0.5, "roc_auc": 0.8},
               "regression": {"r2": 0.5, "mae": 2.0}, "clustering": {"silhouette": 0.3}}[problem_type]
    classes = ["no", "yes"] if problem_type == "classification" else []
    contract = kpis.KpiContract(problem_type, kpi or default, "yes" if classes else None, "macro", classes)
    heuristic = {"column": "x1", "rule": "if x1 <= 0.5 then 'no' else 'yes'"} if target else None
    return modeling.Inputs(prepared, contract, heuristic, seed=seed, folds=folds, n_jobs=1)


@pytest.fixture(scope="module")
def clf() -> modeling.Inputs:
    return make_inputs("classification")


@pytest.fixture(scope="module")
def clf_board(clf) -> pd.DataFrame:
    return modeling.leaderboard(clf)


def test_leaderboard_has_baselines_families_and_kpi_units(clf, clf_board):
    assert set(clf_board["model"]) == {"dummy", "heuristic", "logistic_regression", "random_forest",
                                       "hist_gradient_boosting", "k_nearest_neighbors"}
    for metric in ("recall", "precision", "roc_auc"):
        assert {f"{metric}_mean", f"{metric}_std", f"{metric}_train"} <= set(clf_board.columns)
    scores = clf_board["roc_auc_mean"].to_numpy()
    assert np.all(np.diff(scores) <= 1e-12), "best first"
    dummy = clf_board.set_index("model").loc["dummy"]
    assert dummy["roc_auc_mean"] == pytest.approx(0.5) and dummy["recall_mean"] == 0.0
    assert clf_board.set_index("model").loc["logistic_regression", "roc_auc_mean"] > 0.85
    assert clf_board["fit_time_s"].gt(0).all()


def test_leaderboard_is_deterministic_for_a_seed(clf, clf_board):
    again = modeling.leaderboard(clf)
    cols = [c for c in clf_board.columns if c != "fit_time_s"]
    pd.testing.assert_frame_equal(clf_board[cols], again[cols])


def test_overfitting_flag_catches_a_memorising_model(clf, clf_board):
    table = modeling.overfitting_table(clf_board, "roc_auc").set_index("model")
    assert table.loc["random_forest", "train"] == pytest.approx(1.0)  # fully grown trees memorise
    assert table.loc["random_forest", "gap"] > table.loc["logistic_regression", "gap"]
    assert modeling.is_overfitting("roc_auc", 1.0, 0.8, 0.01)
    assert not modeling.is_overfitting("roc_auc", 0.82, 0.8, 0.01)
    assert not modeling.is_overfitting("roc_auc", 1.0, 0.8, 0.2), "a gap inside the fold noise is not flagged"
    assert modeling.is_overfitting("mae", 1.0, 2.0, 0.1), "lower-is-better metrics: train error far below validation"


class RowCounter(BaseEstimator, TransformerMixin):
    """Passes data through, recording how many rows each fit saw."""

    fitted_on: list[int] = []

    def __init__(self, inner=None):
        self.inner = inner

    def fit(self, X, y=None):
        RowCounter.fitted_on.append(len(X))
        self.inner_ = self.inner.fit(X, y) if self.inner is not None else None
        return self

    def transform(self, X):
        return self.inner_.transform(X)


def test_preprocessing_is_fitted_inside_each_fold(monkeypatch):
    inputs = make_inputs("classification", n=150)
    original = Prepared.make_preprocessor
    monkeypatch.setattr(Prepared, "make_preprocessor", lambda self, scaler=None: RowCounter(original(self, scaler)))
    RowCounter.fitted_on = []
    modeling.evaluate(inputs, modeling.family_pipeline(inputs, modeling.fam.get_family("classification", "logistic_regression")))
    n_train = len(inputs.X)
    assert len(RowCounter.fitted_on) == inputs.folds
    assert all(rows < n_train for rows in RowCounter.fitted_on), "fitted on all training rows: validation folds leak"
    assert sum(RowCounter.fitted_on) == (inputs.folds - 1) * n_train


def test_one_pool_of_fold_fits_scores_each_pipeline_as_its_own_cross_validation():
    """evaluate_all (every (pipeline, fold) fit in one pool of 2 jobs) equals cross_validate per pipeline."""
    from sklearn.model_selection import cross_validate

    inputs = replace(make_inputs("classification", n=300), n_jobs=2)
    names = ["logistic_regression", "random_forest", "hist_gradient_boosting"]
    pipes = [modeling.family_pipeline(inputs, modeling.fam.get_family("classification", n)) for n in names]
    cv = modeling.cv_folds(inputs)
    rows = modeling.evaluate_all(inputs, pipes, cv)
    scoring = modeling.KpiScorer(inputs.contract, inputs.metrics)
    for pipe, row in zip(pipes, rows, strict=True):
        alone = cross_validate(pipe, inputs.X, inputs.y, cv=cv, scoring=scoring, return_train_score=True)
        for m in inputs.metrics:
            assert row[f"{m}_mean"] == pytest.approx(float(np.nanmean(alone[f"test_{m}"])), abs=1e-12)
            assert row[f"{m}_std"] == pytest.approx(float(np.nanstd(alone[f"test_{m}"])), abs=1e-12)
            assert row[f"{m}_train"] == pytest.approx(float(np.nanmean(alone[f"train_{m}"])), abs=1e-12)
    assert len({round(r["roc_auc_mean"], 9) for r in rows}) == len(names)  # each row is its own pipeline's


def test_tuning_in_groups_of_parallel_fits_equals_tuning_one_by_one():
    one = modeling.tune(make_inputs("classification", n=300), ["random_forest"], "random", 5, 60)
    two = modeling.tune(replace(make_inputs("classification", n=300), n_jobs=2), ["random_forest"], "random", 5, 60)
    assert len(one.results) == len(two.results) >= 3
    pd.testing.assert_frame_equal(one.results.drop(columns="fit_time_s"), two.results.drop(columns="fit_time_s"))


def test_regression_leaderboard_and_tuning_are_deterministic():
    inputs = make_inputs("regression")
    board = modeling.leaderboard(inputs)
    assert board.iloc[0]["model"] in ("ridge", "hist_gradient_boosting", "random_forest")
    assert board.set_index("model").loc["ridge", "r2_mean"] > 0.8
    assert board.set_index("model").loc["dummy", "r2_mean"] < 0.05
    first = modeling.tune(inputs, ["ridge"], "random", 4, 60)
    second = modeling.tune(inputs, ["ridge"], "random", 4, 60)
    assert first.best_params == second.best_params
    assert first.results["params"].tolist() == second.results["params"].tolist()
    assert bool(first.results.sort_values("rank").iloc[0]["default"]) == (first.best_params == {"alpha": 1.0})
    assert len(first.results) == 5 and first.results["default"].sum() == 1


def test_candidates_start_with_the_library_default_and_respect_iterations():
    family = modeling.fam.get_family("classification", "random_forest")
    for strategy in ("grid", "random"):
        cands = modeling.candidates(family, strategy, 5, seed=1)
        assert cands[0] == {"max_depth": None, "min_samples_leaf": 1, "max_features": "sqrt"}
        assert 2 <= len(cands) <= 6
        assert len({tuple(sorted(c.items(), key=str)) for c in cands}) == len(cands), "no duplicates"


def test_budget_stops_the_search_with_a_warning(clf):
    with pytest.warns(UserWarning, match="tuning_budget_s=1e-09 reached"):
        tuning = modeling.tune(clf, ["logistic_regression"], "random", 5, 1e-9)
    assert tuning.stopped_by_budget and len(tuning.results) == 1 and bool(tuning.results["default"].iloc[0])


def test_halving_search_returns_a_surviving_candidate(clf):
    tuning = modeling.tune(clf, ["logistic_regression"], "halving", 4, 60)
    assert tuning.results["survived"].any()
    best = tuning.results[tuning.results["params"].map(lambda p: p == tuning.best_params)]
    assert bool(best["survived"].iloc[0])


def test_threshold_meets_a_feasible_recall_target():
    curve = pd.DataFrame({"threshold": [0.1, 0.3, 0.5, 0.7], "precision": [0.4, 0.55, 0.7, 0.9],
                          "recall": [1.0, 0.8, 0.6, 0.3]})
    thr, feasible, rule, message = modeling.select_threshold(curve, {"recall": 0.7, "precision": 0.5})
    assert thr == 0.3 and feasible is True and "recall >= 0.7" in rule and "precision 0.550" in message


def test_threshold_reports_infeasible_targets():
    curve = pd.DataFrame({"threshold": [0.1, 0.3, 0.5], "precision": [0.3, 0.4, 0.8], "recall": [1.0, 0.8, 0.2]})
    thr, feasible, _, message = modeling.select_threshold(curve, {"recall": 0.7, "precision": 0.5})
    assert feasible is False and thr == 0.3 and "cannot both be met" in message
    thr, feasible, _, message = modeling.select_threshold(curve, {"precision": 0.9})
    assert feasible is False and thr == 0.5 and "infeasible" in message
    thr, feasible, _, _ = modeling.select_threshold(curve, {"roc_auc": 0.8})
    assert thr == 0.5 and feasible is None


def test_chosen_threshold_meets_recall_on_cross_validated_predictions(clf):
    choice = modeling.choose_threshold(clf, modeling.family_pipeline(clf, modeling.fam.get_family("classification", "logistic_regression")))
    recall = kpis.score("recall", clf.contract, choice.y, modeling.labels_at(choice.proba, choice.threshold, clf.contract))
    assert recall >= 0.7
    text, cm, scores = modeling.threshold_readout(choice, clf.contract, choice.threshold)
    assert scores["recall"] == pytest.approx(recall) and "recall" in text and cm.sum() == len(clf.X)
    low, _, _ = modeling.threshold_readout(choice, clf.contract, 0.02)
    assert "recall 1.000 (pass" in low


def relabelled(inputs: modeling.Inputs, labels: dict, positive) -> modeling.Inputs:
    """``inputs`` with the target's classes "no"/"yes" renamed by ``labels`` (e.g. integers, booleans)."""
    prepared = inputs.prepared
    train, test = (side.assign(target=side["target"].map(labels)) for side in (prepared.train, prepared.test))
    prepared = Prepared(train, test, "target", "classification", prepared.numeric, prepared.categorical, None,
                        prepared.sensitive_columns)
    contract = kpis.KpiContract("classification", inputs.contract.kpis, positive, "macro", kpis.class_order(train["target"]))
    return modeling.Inputs(prepared, contract, None, seed=inputs.seed, folds=inputs.folds, n_jobs=1)


CLASS_LABELS = [({"no": 10, "yes": 2}, 2), ({"no": 2, "yes": 10}, 10), ({"no": 9, "yes": 10}, 10),
                ({"no": False, "yes": True}, True), ({"no": True, "yes": False}, False), ({"no": "no", "yes": "yes"}, "yes")]


@pytest.mark.parametrize(("labels", "positive"), CLASS_LABELS, ids=lambda v: repr(v))
def test_cross_validated_probabilities_are_the_positive_class(clf, labels, positive):
    # 2 < 10 for the estimator but "10" < "2" as text: the wrong column ranks positives last
    inputs = relabelled(clf, labels, positive)
    proba = modeling.cv_positive_proba(inputs, modeling.family_pipeline(inputs, modeling.fam.get_family(
        "classification", "logistic_regression")))
    is_positive = (inputs.y == positive).to_numpy()
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(is_positive, proba) > 0.85
    choice = modeling.choose_threshold(inputs, modeling.family_pipeline(inputs, modeling.fam.get_family(
        "classification", "logistic_regression")))
    recall = kpis.score("recall", inputs.contract, choice.y, modeling.labels_at(choice.proba, choice.threshold,
                                                                               inputs.contract))
    assert recall >= 0.7 and choice.feasible


def test_classes_come_in_the_estimators_order():
    assert kpis.class_order(pd.Series([10, 2, 9, 2])) == [2, 9, 10]
    assert kpis.class_order(pd.Series([True, False, None], dtype=object)) == [False, True]
    assert kpis.class_order(pd.Series(["yes", "no", None])) == ["no", "yes"]
    from sklearn.linear_model import LogisticRegression

    y = np.array([10, 2, 9] * 5)
    fitted = LogisticRegression().fit(np.arange(15).reshape(-1, 1), y)
    assert kpis.class_order(y) == fitted.classes_.tolist()
    assert kpis.class_index(fitted.classes_, "10") == 2  # a label read back as text finds its class
    with pytest.raises(PlaybookError, match="do not include the positive label 3"):
        kpis.class_index(fitted.classes_, 3)


@pytest.mark.parametrize(("labels", "positive"), CLASS_LABELS[:1] + CLASS_LABELS[3:], ids=lambda v: repr(v))
def test_the_saved_model_decides_at_the_tuned_threshold(tmp_path, clf, labels, positive):
    inputs = relabelled(clf, labels, positive)
    pipe = modeling.family_pipeline(inputs, modeling.fam.get_family("classification", "logistic_regression"))
    choice = modeling.choose_threshold(inputs, pipe)
    assert abs(choice.threshold - 0.5) > 0.05  # a threshold whose decisions differ from argmax
    final = modeling.final_evaluation(inputs, pipe, choice, n_boot=20)
    path = tmp_path / "model.skops"
    modelio.save_model(final.model, path)
    loaded = modelio.load_model(path)
    X_test = inputs.prepared.X("test")
    decided = loaded.predict(X_test)
    np.testing.assert_array_equal(decided, final.y_pred)
    proba = modeling.positive_proba(loaded, X_test, inputs.contract)
    np.testing.assert_array_equal(decided, modeling.labels_at(proba, choice.threshold, inputs.contract).astype(
        decided.dtype))
    argmax = loaded.classes_[loaded.predict_proba(X_test).argmax(axis=1)]
    assert (decided != argmax).any()  # the file's decisions are the threshold's, not 0.5's
    assert set(decided) <= set(labels.values())


def test_clustering_picks_three_blobs_and_only_kmeans_is_champion():
    inputs = make_inputs("clustering", n=180)
    sweep = modeling.cluster_sweep(inputs)
    assert set(sweep["family"]) == {"k_means", "agglomerative", "dbscan", "heuristic"}
    tuning = modeling.cluster_tuning(inputs, sweep)
    assert tuning.best_family == "k_means" and tuning.best_params == {"n_clusters": 3}
    board = modeling.cluster_leaderboard(sweep)
    assert board.iloc[0]["silhouette_mean"] > 0.6
    final = modeling.final_evaluation(inputs, modeling.best_pipeline(inputs, tuning))
    assert final.table.loc[0, "metric"] == "silhouette" and bool(final.table.loc[0, "passed"])
    assert final.table.loc[0, "ci_low"] <= final.table.loc[0, "achieved"] <= final.table.loc[0, "ci_high"]
    assert modeling.cluster_profiles(inputs, final)["rows"].sum() == len(inputs.prepared.test)


def test_final_evaluation_save_and_reload(tmp_path, clf):
    run = artifacts.open_run(tmp_path / "run")
    tuning = modeling.tune(clf, ["logistic_regression"], "random", 2, 60)
    pipe = modeling.best_pipeline(clf, tuning)
    choice = modeling.choose_threshold(clf, pipe)
    final = modeling.final_evaluation(clf, pipe, choice, n_boot=50)
    assert list(final.table.columns) == ["metric", "target", "direction", "achieved", "ci_low", "ci_high", "passed",
                                         "verdict"]
    assert set(final.heuristic["metric"]) == {"recall", "precision", "roc_auc"}
    groups = modeling.group_metrics(clf, final)
    assert set(groups["group"]) == {"a", "b"} and groups["rows"].sum() == len(clf.prepared.test)
    meta = modeling.save_model_files(run, clf, tuning, final, choice)
    model = modelio.load_model(run.models_dir(1) / "model.skops")
    np.testing.assert_allclose(model.predict_proba(clf.prepared.X("test")), final.model.predict_proba(clf.prepared.X("test")))
    assert meta["threshold"] == pytest.approx(choice.threshold) and meta["positive_label"] == "yes"
    assert meta["features"] == ["x1", "x2", "noise", "colour"] and meta["schema_version"] == 1
    assert meta["training_data_sha256"] == hashing.frame_sha256(clf.prepared.train)
    manifest = run.read_manifest()
    assert manifest["champion"] == {"version": 1, "path": "models/v1/model.skops", "family": "logistic_regression"}
    assert [k["metric"] for k in manifest["kpis"]] == ["recall", "precision", "roc_auc"]
    assert all(k["achieved"] is not None for k in manifest["kpis"])
    board = modeling.leaderboard(clf)
    saved = modeling.save(run, modeling.ModelingResult(clf, board, tuning, choice, final, seconds=1.0))
    assert saved["champion"]["family"] == "logistic_regression" and (run.artifacts / modeling.STEP / "leaderboard.csv").exists()
    head = modeling.headline(run)
    assert head["champion"] == "logistic_regression" and len(head["kpis"]) == 3


def test_report_section_escapes_and_links(tmp_path):
    run = artifacts.open_run(tmp_path / "run")
    run.write_summary(modeling.STEP, {"champion": {"family": "<b>x</b>", "reason": "a & b"}, "kpis": []})
    html = str(modeling.report_section(run).render())
    assert "&lt;b&gt;x&lt;/b&gt;" in html and "a &amp; b" in html and "<b>x</b>" not in html
    assert 'href="models/v1/model.skops"' in html


def test_missing_upstream_steps_name_the_step_to_run(tmp_path):
    run = artifacts.open_run(tmp_path / "empty")
    params = {"cv_folds": 5, "seed": 0, "n_jobs": 1}
    with pytest.raises(PlaybookError, match="02_data_foundation"):
        modeling.load_inputs(run, params)
    save_prepared(run, make_inputs().prepared)
    with pytest.raises(PlaybookError, match="01_vision_and_goals"):
        modeling.load_inputs(run, params)


def test_too_many_folds_is_a_clear_error():
    inputs = make_inputs(n=40)
    with pytest.raises(PlaybookError, match="lower cv_folds"):
        modeling.check_enough_rows(inputs.prepared, 20)


def test_explorers_read_the_cached_grid(clf, clf_board):
    top = modeling.leaders(clf_board, 1)
    grid = modeling.explorer_grid(clf, top, rows=120)
    update = modeling.model_explorer(grid, "roc_auc")
    text, fig = update(family=top[0], position=0)
    assert text.startswith(f"{top[0]}, ") and "validation roc_auc" in text
    assert fig is not None
    table = modeling.validation_curve_table(grid, top[0])
    assert len(table) == len(modeling.fam.get_family("classification", top[0]).main_values)
