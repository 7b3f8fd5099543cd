"""Unit tests of the computations steps share through the core: the trivial clustering split,
the power-law fit, per-group KPIs, permutation importance in KPI units, seeded subsampling and
the exercise messages (one implementation each; the steps call these)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.cluster import KMeans
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from helpers.core import kpis
from helpers.core.baselines import trivial_split
from helpers.core.errors import PlaybookError
from helpers.core.inspection import kpi_scorer, permutation_importance_table
from helpers.core.messages import say
from helpers.core.sampling import subsample
from helpers.core.scaling import PowerLaw, fit_power_law

BINARY = kpis.KpiContract("classification", {"recall": 0.6, "precision": 0.6}, "yes", "macro", ["no", "yes"])

# --- the trivial clustering split (steps 1 and 4) ---------------------------------------------------


def test_trivial_split_cuts_the_first_principal_component_into_equal_quantiles():
    rng = np.random.default_rng(0)
    x = np.arange(90.0)
    Z = np.column_stack([x, rng.normal(0, 0.01, 90)])  # the first component is the x axis
    labels = trivial_split(Z, 3, seed=0)
    assert sorted(np.bincount(labels)) == [30, 30, 30]
    # each group is one contiguous third of x (the component's sign is arbitrary)
    thirds = [set(labels[:30]), set(labels[30:60]), set(labels[60:])]
    assert all(len(t) == 1 for t in thirds) and len(set.union(*thirds)) == 3
    np.testing.assert_array_equal(labels, trivial_split(Z, 3, seed=0))


def test_trivial_split_merges_tied_quantiles_into_fewer_groups():
    x = np.r_[np.zeros(60), np.ones(20), np.full(20, 2.0)]
    labels = trivial_split(np.column_stack([x, np.zeros(100)]), 5)
    assert sorted(np.bincount(labels)) == [20, 20, 60]  # 3 groups, not 5: tied rows stay together
    assert all(len(set(labels[x == v])) == 1 for v in (0, 1, 2))


def test_trivial_split_scores_below_k_means_on_blobs_by_silhouette():
    rng = np.random.default_rng(1)
    centres = np.array([[0, 0], [0, 8], [8, 0], [8, 8]])  # a square: one direction cannot separate it
    Z = np.vstack([c + rng.normal(0, 0.5, (60, 2)) for c in centres])
    contract = kpis.KpiContract("clustering", {"silhouette": 0.3})
    split = kpis.score("silhouette", contract, None, X=Z, labels=trivial_split(Z, 4))
    k_means = kpis.score("silhouette", contract, None, X=Z, labels=KMeans(4, n_init=4, random_state=0).fit_predict(Z))
    assert k_means > 0.7 and split < k_means - 0.2


# --- the power-law fit (steps 1 and 3) ----------------------------------------------------------------


@pytest.mark.parametrize("a,b", [(2e-6, 1.3), (0.05, 0.3), (4.0, -0.5)])
def test_power_law_recovers_a_known_law_exactly_from_noiseless_points(a, b):
    n = np.array([250.0, 500, 1000, 2000, 4000])
    law = fit_power_law(n, a * n**b, min_exponent=-math.inf)
    assert law.a == pytest.approx(a, rel=1e-9) and law.b == pytest.approx(b, rel=1e-9, abs=1e-12)
    assert law.r2 == pytest.approx(1.0) and law.n_points == 5 and not law.assumed
    assert law.solve(float(law.predict(16_000))) == pytest.approx(16_000, rel=1e-9)


def test_power_law_fit_is_the_least_squares_line_in_log_log():
    rng = np.random.default_rng(2)
    n = np.array([100.0, 200, 400, 800, 1600])
    y = 0.3 * n**-0.4 * rng.lognormal(0, 0.1, len(n))
    law = fit_power_law(n, y, min_exponent=-math.inf)
    slope, intercept = np.polyfit(np.log(n), np.log(y), 1)  # what step 1 used before the merge
    assert law.b == pytest.approx(slope, rel=1e-10) and law.a == pytest.approx(math.exp(intercept), rel=1e-10)


def test_power_law_on_too_few_or_degenerate_points():
    one_size = fit_power_law([1000, 1000], [2.0, 2.0])
    assert one_size.assumed and one_size.b == 1.0 and one_size.r2 is None
    assert one_size.predict(2000) == pytest.approx(4.0)
    falling = fit_power_law([100, 200, 400], [0.3, 0.2, 0.1])  # costs never fall: floored at 0
    assert falling.assumed and falling.b == 0.0 and falling.solve(1.0) == math.inf
    assert fit_power_law([100, 200, 400], [0.3, 0.2, 0.1], min_exponent=-math.inf).b < 0
    kept = fit_power_law([0, np.nan, 100, 200], [5.0, 1.0, 1.0, 2.0])  # n <= 0 and NaN dropped
    assert kept.n_points == 2 and kept.b == pytest.approx(1.0)
    with pytest.raises(PlaybookError, match="No measured points"):
        fit_power_law([], [])
    assert PowerLaw(2.0, 1.0).to_dict() == {"a": 2.0, "b": 1.0, "r2": None, "n_points": 0, "assumed": False,
                                            "c": 0.0}
    assert PowerLaw(2.0, 1.0, c=3.0).predict(10) == pytest.approx(23.0)  # a fixed part on top
    assert PowerLaw(2.0, 1.0, c=3.0).solve(23.0) == pytest.approx(10.0) and PowerLaw(2.0, 1.0, c=3.0).solve(2.0) == 0


# --- per-group KPIs (steps 4 and 5) --------------------------------------------------------------------


def _group_table():
    groups = pd.DataFrame({"sex": ["a", "a", "a", "a", "b", "b", "b", "c"],
                           "age": ["old", "young", None, "old", "young", "old", "young", "old"]})
    y_true = np.array(["yes", "yes", "no", "no", "yes", "yes", "no", "yes"], dtype=object)
    y_pred = np.array(["yes", "no", "no", "yes", "yes", "yes", "yes", "no"], dtype=object)
    return groups, y_true, y_pred


def test_group_kpis_gives_known_values_per_group():
    groups, y_true, y_pred = _group_table()
    table = kpis.group_kpis(BINARY, groups[["sex"]], y_true, y_pred)
    assert list(table.columns) == kpis.GROUP_COLUMNS
    got = {(r["group"], r["metric"]): (r["rows"], r["value"], r["passed"]) for r in table.to_dict(orient="records")}
    assert got == {("a", "recall"): (4, 0.5, False), ("a", "precision"): (4, 0.5, False),
                   ("b", "recall"): (3, 1.0, True), ("b", "precision"): (3, pytest.approx(2 / 3), True),
                   ("c", "recall"): (1, 0.0, False), ("c", "precision"): (1, 0.0, False)}
    assert table["ci_low"].isna().all() and table["ci_high"].isna().all()  # no bootstrap by default


def test_group_kpis_leaves_out_small_groups_and_keeps_missing_values_as_a_group():
    groups, y_true, y_pred = _group_table()
    table = kpis.group_kpis(BINARY, groups, y_true, y_pred, metrics=["recall"], min_rows=2)
    assert table[["column", "group", "rows"]].values.tolist() == [
        ["sex", "a", 4], ["sex", "b", 3], ["age", "old", 4], ["age", "young", 3]]
    every = kpis.group_kpis(BINARY, groups[["age"]], y_true, y_pred, metrics=["recall"])
    assert every["group"].tolist() == ["<missing>", "old", "young"] and every["rows"].sum() == len(y_true)


def test_group_kpis_bootstrap_regression_and_clustering():
    groups, y_true, y_pred = _group_table()
    boot = kpis.group_kpis(BINARY, groups[["sex"]], y_true, y_pred, metrics=["recall"], n_boot=50, seed=0)
    assert boot["ci_low"].notna().all() and (boot["ci_low"] <= boot["ci_high"]).all()
    assert boot.equals(kpis.group_kpis(BINARY, groups[["sex"]], y_true, y_pred, metrics=["recall"], n_boot=50, seed=0))
    reg = kpis.KpiContract("regression", {"mae": 1.0})
    table = kpis.group_kpis(reg, pd.DataFrame({"g": ["p", "p", "q", "q"]}), [1, 2, 3, 4], [1, 2, 5, 6])
    assert table.set_index("group")["value"].to_dict() == {"p": 0.0, "q": 2.0}
    clustering = kpis.KpiContract("clustering", {"silhouette": 0.2})
    assert kpis.group_kpis(clustering, groups, y_true, y_pred).empty


# --- permutation importance in KPI units (steps 4 and 5) -------------------------------------------------


def _signal_and_noise(n: int = 400, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"noise": rng.normal(size=n), "signal": rng.normal(size=n)})
    y = np.where(X["signal"] + rng.normal(0, 0.3, n) > 0, "yes", "no").astype(object)
    return X, y


@pytest.mark.parametrize("metric", ["roc_auc", "recall", "log_loss"])
def test_a_feature_the_target_depends_on_ranks_above_noise(metric):
    X, y = _signal_and_noise()
    model = LogisticRegression().fit(X, y)
    contract = kpis.KpiContract("classification", {metric: 0.5}, "yes", "macro", ["no", "yes"])
    table = permutation_importance_table(model, X, y, contract, n_repeats=3, seed=0)
    assert table["feature"].tolist() == ["signal", "noise"]
    imp = table.set_index("feature")["importance"]
    assert imp["signal"] > 0.1 and abs(imp["noise"]) < 0.02  # lower-is-better log_loss is negated: a drop is > 0


def test_importance_is_deterministic_for_a_seed_and_samples_max_rows():
    X, y = _signal_and_noise()
    model = LogisticRegression().fit(X, y)
    first = permutation_importance_table(model, X, y, BINARY, n_repeats=3, seed=7, max_rows=150)
    again = permutation_importance_table(model, X, y, BINARY, n_repeats=3, seed=7, max_rows=150)
    pd.testing.assert_frame_equal(first, again)
    assert list(first.columns) == ["feature", "importance", "std"]
    everything = permutation_importance_table(model, X, y, BINARY, n_repeats=3, seed=7)
    assert not np.allclose(first["importance"], everything["importance"])  # 150 rows, not 400


def test_kpi_scorer_matches_step_4s_metric_scorer():
    from helpers.steps.modeling import MetricScorer

    X, y = _signal_and_noise()
    model = LogisticRegression().fit(X, y)
    for metric in ("roc_auc", "recall", "log_loss"):
        contract = kpis.KpiContract("classification", {metric: 0.5}, "yes", "macro", ["no", "yes"])
        assert kpi_scorer(contract, metric)(model, X, y) == pytest.approx(
            MetricScorer(contract, metric, signed=True)(model, X, y))


def test_importance_for_regression_and_clustering():
    rng = np.random.default_rng(3)
    X = pd.DataFrame({"noise": rng.normal(size=300), "signal": rng.normal(size=300)})
    model = LinearRegression().fit(X, 3 * X["signal"] + rng.normal(0, 0.1, 300))
    reg = kpis.KpiContract("regression", {"mae": 1.0})
    table = permutation_importance_table(model, X, 3 * X["signal"], reg, n_repeats=3, seed=0)
    assert table["feature"].tolist() == ["signal", "noise"] and table["importance"].iloc[0] > 1
    # two clusters along the diagonal of (a, b): shuffling a or b throws rows off their centroid
    # (the k-means objective worsens), shuffling the noise column does not
    centre = np.repeat([-3.0, 3.0], 150)
    blobs = pd.DataFrame({"noise": rng.normal(size=300), "a": centre + rng.normal(0, 0.3, 300),
                          "b": centre + rng.normal(0, 0.3, 300)})
    k_means = make_pipeline(StandardScaler(), KMeans(2, n_init=4, random_state=0)).fit(blobs)
    clustering = kpis.KpiContract("clustering", {"silhouette": 0.2})
    imp = permutation_importance_table(k_means, blobs, None, clustering, n_repeats=2, seed=0).set_index("feature")
    assert min(imp.loc["a", "importance"], imp.loc["b", "importance"]) > 10 * abs(imp.loc["noise", "importance"])


# --- seeded, stratified subsampling (steps 3 and 4) ------------------------------------------------------


def _classes(n: int = 200):
    X = pd.DataFrame({"x": np.arange(n)}, index=np.arange(n) + 1000)
    y = pd.Series(np.repeat(["a", "b", "c"], [n // 2, 3 * n // 10, n // 5]), index=X.index)
    return X, y


def test_subsample_has_the_size_and_keeps_class_shares():
    X, y = _classes()
    Xs, ys = subsample(X, y, 50, seed=0, stratify=True)
    assert len(Xs) == 50 and Xs.index.equals(ys.index) and Xs.index.isin(X.index).all()
    assert Xs.index.is_unique and ys.value_counts().to_dict() == {"a": 25, "b": 15, "c": 10}


def test_subsample_is_deterministic_and_is_step_4s_former_draw():
    X, y = _classes()
    first = subsample(X, y, 60, seed=3, stratify=True)[0]
    assert first.index.equals(subsample(X, y, 60, seed=3, stratify=True)[0].index)
    assert not first.index.equals(subsample(X, y, 60, seed=4, stratify=True)[0].index)
    former, _ = train_test_split(X, train_size=60, stratify=y.astype(str), random_state=3)
    assert first.index.equals(former.index)  # same rows, same order: step 4's explorer and sweep keep their numbers


def test_subsample_returns_everything_when_n_reaches_the_rows():
    X, y = _classes()
    for n in (len(X), len(X) + 10):
        Xs, ys = subsample(X, y, n, seed=0, stratify=True)
        assert Xs is X and ys is y
    Xs, ys = subsample(X, None, 20, seed=0, stratify=False)
    assert len(Xs) == 20 and ys is None


def test_subsample_falls_back_to_a_plain_draw_when_strata_cannot_be_kept():
    X, y = _classes(20)
    y.iloc[-1] = "lonely"  # a class with one row cannot be split by class
    Xs, ys = subsample(X, y, 10, seed=0, stratify=True)
    assert len(Xs) == 10 and Xs.index.equals(ys.index)
    Xs, ys = subsample(X, y.where(y != "lonely", "c"), 19, seed=0, stratify=True)  # 1 row left for 3 classes
    assert len(Xs) == 19


# --- messages ----------------------------------------------------------------------------------------


def test_say_prints_the_message_and_returns_it(capsys):
    assert say("Right: 42.") == "Right: 42."
    assert capsys.readouterr().out == "Right: 42.\n"
