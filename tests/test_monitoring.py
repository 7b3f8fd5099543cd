"""Drift measures, false alarms, simulated batches and the retraining policy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from helpers.core import kpis
from helpers.core.errors import PlaybookError
from helpers.core.kpis import KpiContract
from helpers.steps.operations import monitoring as mon


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 4000
    return pd.DataFrame({"x": rng.normal(0, 1, n), "w": rng.exponential(2.0, n),
                         "c": rng.choice(["a", "b", "c"], size=n, p=[0.5, 0.3, 0.2])})


def test_psi_of_identical_data_is_about_zero(reference):
    assert mon.psi_numeric(reference["x"], reference["x"]) == pytest.approx(0.0, abs=1e-9)
    assert mon.psi_categorical(reference["c"], reference["c"]) == pytest.approx(0.0, abs=1e-9)


def test_psi_of_a_same_distribution_sample_is_stable(reference):
    rng = np.random.default_rng(1)
    value = mon.psi_numeric(reference["x"], rng.normal(0, 1, 2000))
    assert value < 0.02
    assert mon.psi_band(value) == "stable"


def test_a_one_sd_mean_shift_crosses_the_significant_band(reference):
    rng = np.random.default_rng(2)
    value = mon.psi_numeric(reference["x"], rng.normal(1.0, 1, 2000))
    assert value > 0.25
    assert mon.psi_band(value) == "significant"
    assert mon.psi_band(0.15) == "moderate"


def test_categorical_shift_and_unseen_categories_raise_psi(reference):
    shifted = np.random.default_rng(3).choice(["a", "b", "c", "new"], size=2000, p=[0.2, 0.3, 0.2, 0.3])
    assert mon.psi_categorical(reference["c"], shifted) > 0.25


def test_ks_and_chi2_detect_a_shift_and_not_a_resample(reference):
    rng = np.random.default_rng(4)
    _, p_same = mon.ks_test(reference["x"], rng.normal(0, 1, 500))
    _, p_shift = mon.ks_test(reference["x"], rng.normal(0.5, 1, 500))
    assert p_same > 0.01 and p_shift < 1e-6
    _, p_chi = mon.chi2_test(np.array([500.0, 300, 200]), np.array([100.0, 300, 600]))
    assert p_chi < 1e-6


def test_detector_scores_every_feature_and_alerts_only_on_the_drifted_one(reference):
    det = mon.DriftDetector(["x", "w"], ["c"]).fit(reference)
    rng = np.random.default_rng(5)
    batch = pd.DataFrame({"x": rng.normal(1.5, 1, 800), "w": rng.exponential(2.0, 800),
                          "c": rng.choice(["a", "b", "c"], size=800, p=[0.5, 0.3, 0.2])})
    table = det.score(batch).set_index("feature")
    assert list(table.index) == ["x", "w", "c"]
    assert list(table["test"]) == ["ks+chi2", "ks+chi2", "chi2"]
    assert table.loc["x", "alert"] and table.loc["x", "band"] == "significant"
    assert not table.loc["w", "alert"] and not table.loc["c", "alert"]


def test_detector_refuses_a_reference_without_the_features(reference):
    with pytest.raises(PlaybookError, match="lacks the columns zz"):
        mon.DriftDetector(["x", "zz"], []).fit(reference)


def test_false_alarm_rate_on_undrifted_data_is_near_the_nominal_level(reference):
    rates = mon.false_alarm_rates(reference, ["x"], ["c"], batch_size=300, n_trials=200, alpha=0.05, seed=0)
    rates = rates.set_index("feature")
    assert rates.loc["x", "nominal"] == 0.05
    # binomial sd of a 5% rate over 200 trials is 1.5 points: allow about 3 sd
    assert 0.0 < rates.loc["x", "test_alarm_rate"] < 0.10
    assert rates.loc["c", "test_alarm_rate"] < 0.10
    assert rates.loc["x", "psi_alarm_rate"] == 0.0  # PSI 0.25 is far above sampling noise at 300 rows


@pytest.fixture(scope="module")
def labelled() -> pd.DataFrame:
    rng = np.random.default_rng(6)
    n = 1000
    x = rng.normal(0, 1, n)
    y = np.where(rng.random(n) < 1 / (1 + np.exp(-2 * x)), "yes", "no")
    return pd.DataFrame({"x": x, "c": rng.choice(["a", "b"], size=n), "y": y})


def test_simulation_is_seeded_and_follows_its_schedule(labelled):
    kw = dict(target="y", problem_type="classification", n_batches=6, magnitude=1.0, feature="x", seed=3,
              batch_size=400, positive_label="yes")
    batches, schedule = mon.simulate_batches(labelled, **kw)
    again, _ = mon.simulate_batches(labelled, **kw)
    assert len(batches) == 6 and all(len(b) == 400 for b in batches)
    pd.testing.assert_frame_equal(batches[-1], again[-1])
    assert schedule.loc[0, "drift"] == "none"
    assert "concept drift" in schedule.iloc[-1]["drift"] and "label-prior shift" in schedule.iloc[-1]["drift"]
    assert batches[-1]["x"].mean() > batches[0]["x"].mean() + 0.5  # covariate shift moved x up
    none, _ = mon.simulate_batches(labelled, **{**kw, "magnitude": 0.0})
    assert abs(none[-1]["x"].mean() - labelled["x"].mean()) < 0.2


def test_batches_from_data_cut_in_time_order():
    frame = pd.DataFrame({"t": ["2024-03-01", "2024-01-01", "2024-02-01", "2024-04-01"], "v": [3, 1, 2, 4]})
    batches = mon.batches_from_data(frame, time_column="t", n_batches=2)
    assert [list(b["v"]) for b in batches] == [[1, 2], [3, 4]]
    with pytest.raises(PlaybookError, match="no time column 'when'"):
        mon.batches_from_data(frame, time_column="when", n_batches=2)


def _contract() -> KpiContract:
    return KpiContract("classification", {"recall": 0.7, "roc_auc": 0.8}, "yes", classes=["no", "yes"])


def test_tracking_gives_kpis_drift_and_alerts(labelled):
    contract = _contract()
    det = mon.DriftDetector(["x"], ["c"]).fit(labelled)

    def predictor(X):
        p = 1 / (1 + np.exp(-2 * X["x"].to_numpy()))
        return np.where(p >= 0.5, "yes", "no"), p

    ref_pred = predictor(labelled)[1]
    batches, _ = mon.simulate_batches(labelled, target="y", problem_type="classification", n_batches=4,
                                      magnitude=2.0, feature="x", seed=0, batch_size=300, positive_label="yes")
    results = [mon.track_batch(b, features=["x", "c"], predictor=predictor, detector=det, contract=contract,
                               target="y", reference_pred=ref_pred, n_boot=20) for b in batches]
    kpi, drift = mon.timeline(results)
    assert set(kpi["metric"]) == {"recall", "roc_auc"} and set(kpi["batch"]) == {1, 2, 3, 4}
    assert (kpi["ci_low"] <= kpi["achieved"]).all() and (kpi["achieved"] <= kpi["ci_high"]).all()
    alerts = mon.alerts_table(kpi, drift)
    assert 1 not in set(alerts.loc[alerts["kind"] == "drift", "batch"])
    assert ((alerts["batch"] == 4) & (alerts["feature"] == "x")).any()
    assert (alerts["kind"] == "prediction drift").any()


def test_policy_fires_after_k_consecutive_breaches_and_restarts():
    policy = mon.RetrainingPolicy(k=2, drift_threshold=0.25, important_features=["x"])
    breached = [False, True, False, True, True, True, True]
    decisions = policy.decide(breached, [{"x": 0.0}] * 7)
    assert [d["retrain"] for d in decisions] == [False, False, False, False, True, False, True]
    assert "2 batches in a row" in decisions[4]["reason"]


def test_policy_fires_on_drift_of_important_features_only():
    policy = mon.RetrainingPolicy(k=3, drift_threshold=0.25, important_features=["x"])
    decisions = policy.decide([None, None], [{"x": 0.1, "c": 0.9}, {"x": 0.4, "c": 0.0}])
    assert [d["retrain"] for d in decisions] == [False, True]
    assert "important feature x" in decisions[1]["reason"]
    assert decisions[0]["reason"] == "no trigger"


def test_compare_models_promotes_only_a_clearly_better_challenger():
    contract = _contract()
    rng = np.random.default_rng(0)
    y = np.where(rng.random(400) < 0.4, "yes", "no")
    good = (np.where(rng.random(400) < 0.95, y, "no"), None)
    bad = (np.where(rng.random(400) < 0.6, y, "no"), None)
    better = mon.compare_models(contract, "recall", y, bad, good, margin=0.01, n_boot=50)
    assert better["promote"] and better["gain"] > 0.2 and better["gain_ci_low"] > 0
    assert better["verdict"].startswith("promote")
    same = mon.compare_models(contract, "recall", y, good, good, margin=0.01, n_boot=50)
    assert not same["promote"] and same["gain"] == 0
    worse = mon.compare_models(contract, "recall", y, good, bad, margin=0.01, n_boot=50)
    assert not worse["promote"] and worse["verdict"].startswith("keep champion")


@pytest.mark.parametrize("metric", ["accuracy", "balanced_accuracy", "precision", "recall", "f1", "roc_auc", "log_loss"])
def test_vectorised_resample_scores_equal_sklearn_binary(metric):
    from helpers.core.kpis import score

    contract = KpiContract("classification", {metric: 0.5}, "yes", classes=["no", "yes"])
    rng = np.random.default_rng(0)
    y = np.where(rng.random(120) < 0.3, "yes", "no").astype(object)
    proba = np.clip(rng.random(120) * 0.6 + (y == "yes") * 0.3, 0, 1).round(2)  # ties, as real scores have
    labels = np.where(proba >= 0.5, "yes", "no").astype(object)
    idx = rng.integers(0, 120, (5, 120))
    fast = kpis.resample_scores(metric, contract, y, labels, proba, idx)
    slow = [score(metric, contract, y[i], labels[i], proba[i]) for i in idx]
    np.testing.assert_allclose(fast, slow, rtol=1e-9)


@pytest.mark.parametrize("metric", ["mae", "rmse", "r2", "mape"])
def test_vectorised_resample_scores_equal_sklearn_regression(metric):
    from helpers.core.kpis import score

    contract = KpiContract("regression", {metric: 1.0})
    rng = np.random.default_rng(1)
    y = rng.normal(10, 3, 80)
    pred = y + rng.normal(0, 1, 80)
    idx = rng.integers(0, 80, (5, 80))
    fast = kpis.resample_scores(metric, contract, y, pred, None, idx)
    np.testing.assert_allclose(fast, [score(metric, contract, y[i], pred[i]) for i in idx], rtol=1e-9)


def test_batch_kpis_intervals_bracket_the_point_value():
    contract = _contract()
    rng = np.random.default_rng(2)
    y = np.where(rng.random(300) < 0.4, "yes", "no")
    proba = np.clip(rng.random(300) * 0.5 + (y == "yes") * 0.4, 0, 1)
    table = mon.batch_kpis(contract, y, np.where(proba >= 0.5, "yes", "no"), proba, n_boot=200).set_index("metric")
    assert (table["ci_low"] < table["achieved"]).all() and (table["achieved"] < table["ci_high"]).all()
    assert 0.02 < table.loc["recall", "ci_high"] - table.loc["recall", "ci_low"] < 0.3


def test_real_monitor_data_end_to_end_promotes_and_updates_the_champion(tmp_path):
    from test_deployment import CATEGORICAL, NUMERIC, SCHEMA, make_frame, make_run

    from helpers.core.prepared import Prepared
    from helpers.steps.operations import deployment

    run = make_run(tmp_path / "run")  # its run folder is checked below: the champion is promoted there
    deployment.write_package(run, schema=SCHEMA, cleaning={})
    package = deployment.package_for_run(run)
    train = make_frame(400)
    prepared = Prepared(train=train, test=make_frame(200, seed=9), target="churn", problem_type="classification",
                        numeric=NUMERIC, categorical=CATEGORICAL, id_column="customer_id")
    # production: three monthly periods (file order shuffled) where the outcome has flipped (concept drift)
    new = make_frame(3000, seed=3)
    new["churn"] = np.where(new["churn"] == "yes", "no", "yes")
    new["month"] = np.repeat(["2024-01", "2024-02", "2024-03"], 1000)
    new.sample(frac=1, random_state=0).to_csv(tmp_path / "prod.csv", index=False)
    params = {"monitor_data": str(tmp_path / "prod.csv"), "n_batches": 3}
    batches, schedule, source = mon.production_batches(params, prepared, feature=None, time_column="month")
    assert source == "monitor_data" and list(schedule["rows"]) == [1000, 1000, 1000]
    assert all(b["month"].nunique() == 1 for b in batches) and schedule["labelled"].all()
    contract = KpiContract("classification", {"roc_auc": 0.7}, "yes", classes=["no", "yes"])
    detector = mon.DriftDetector(NUMERIC, CATEGORICAL).fit(train)
    ref = mon.prediction_shares(*deployment.predict_arrays(package, prepared.test))
    results = mon.track_all(package, batches, detector, contract, reference_pred=ref, n_boot=20)
    assert any("extra column(s) ignored: month" in w for w in results[0]["validation"].warnings)
    decisions = mon.RetrainingPolicy(k=1, important_features=NUMERIC).decide(*mon.policy_inputs(results))
    assert [d["retrain"] for d in decisions] == [True, True, True]
    records = mon.retrain_challengers(package, prepared, batches, results, decisions, contract, margin=0.05,
                                      seed=0, run=run, promote_for_real=True)
    assert records[0]["promote"] is False and records[0]["trained_on_rows"] == 400  # nothing new to learn from
    assert records[1]["promote"] is True and records[1]["trained_on_rows"] == 1400
    assert records[1]["saved_as"] == "models/v3"
    assert (run.path / "models" / "v3" / "model.skops").exists()
    assert run.read_manifest()["champion"]["version"] == 3


def test_drift_simulator_reads_precomputed_scenarios_and_updates_its_readout(tmp_path):
    from test_deployment import CATEGORICAL, NUMERIC, make_frame

    from helpers.core.prepared import Prepared
    from helpers.steps.operations import deployment
    from helpers.ui import widgets

    package = _packaged_model(tmp_path)
    train = make_frame(400)
    prepared = Prepared(train=train, test=make_frame(600, seed=4), target="churn", problem_type="classification",
                        numeric=NUMERIC, categorical=CATEGORICAL, id_column="customer_id")
    contract = KpiContract("classification", {"recall": 0.7}, "yes", classes=["no", "yes"])
    detector = mon.DriftDetector(NUMERIC, CATEGORICAL).fit(train)
    ref = mon.prediction_shares(*deployment.predict_arrays(package, prepared.test))
    policy = mon.RetrainingPolicy(k=2, drift_threshold=0.25, important_features=["tenure"])
    scenarios = mon.drift_scenarios(package, prepared, contract, detector, policy, features=["tenure", "charges"],
                                    magnitudes=(0.0, 2.0), n_batches=3, seed=0, reference_pred=ref,
                                    positive_label="yes")
    assert set(scenarios) == {("tenure", 0.0), ("tenure", 2.0), ("charges", 0.0), ("charges", 2.0)}
    update = mon.scenario_update(scenarios, "recall")
    calm, _ = update("tenure", 0.0)
    shifted, fig = update("tenure", 2.0)
    assert calm.startswith("Shift on tenure x0: last batch PSI") and "recall:" in calm
    assert fig is not None and "significant" in shifted and "Retraining first fires at batch" in shifted
    explorer = widgets.Explorer("Drift simulator", mon.scenario_controls(["tenure", "charges"], (0.0, 2.0)), update)
    assert explorer.last_text.startswith("Shift on tenure x2")
    explorer.controls["feature"].value = "charges"
    assert explorer.last_text.startswith("Shift on charges x2")
    assert "Shift on charges x2" in explorer.readout.value


# --- alerts that are not noise: batch-sized PSI bands, run-level control, KPI verdicts --------------------------------


def test_psi_bands_rise_to_the_chance_level_of_small_batches(reference):
    det = mon.DriftDetector(["x"], ["c"]).fit(reference)
    small, large = det.chance_psi("x", 40), det.chance_psi("x", 1000)
    assert small > 0.25 > 0.05 > large  # 40 rows in 11 bins: large PSIs by chance alone
    assert mon.psi_band(0.3) == "significant" and mon.psi_band(0.3, chance=small) != "significant"
    assert mon.psi_band(0.15, chance=0.05) == "moderate" and mon.psi_band(0.15, chance=0.2) == "stable"
    # the chance level is what it says: about 1% of drift-free batches of that size exceed it
    rng = np.random.default_rng(7)
    exceed = [det.feature_row("x", rng.normal(0, 1, 40))["psi"] > small for _ in range(600)]
    assert np.mean(exceed) < 0.03
    row = det.feature_row("x", rng.normal(0, 1, 40))
    assert row["psi_chance"] == small and row["band"] != "significant"


def test_a_changed_share_of_missing_values_alerts_though_ks_cannot_see_it(reference):
    det = mon.DriftDetector(["x"], []).fit(reference)
    rng = np.random.default_rng(8)
    x = rng.normal(0, 1, 800)
    x[:240] = np.nan  # 30% missing, the rest from the same distribution
    row = det.score(pd.DataFrame({"x": x})).iloc[0]
    assert mon.ks_test(reference["x"], x)[1] > 0.01  # the distribution of the values is unchanged
    assert row["alert"] and row["test"] == "ks+chi2" and row["p_value"] < 1e-6


def _drift_free_results(reference, n_batches, seed=0):
    det = mon.DriftDetector(["x", "w"], ["c"]).fit(reference.iloc[:2000])
    rng = np.random.default_rng(seed)
    rest = reference.iloc[2000:]
    return [{"drift": det.score(rest.iloc[rng.choice(len(rest), 300, replace=False)]), "prediction_psi": 0.0}
            for _ in range(n_batches)]


def test_control_across_the_run_removes_chance_alarms_and_matches_scipy_bh(reference):
    results = _drift_free_results(reference, 40)
    raw = np.concatenate([r["drift"]["p_value"].to_numpy() for r in results])
    assert (raw < 0.01).any()  # 120 tests: single tests alarm by chance
    controlled = mon.control_false_alarms(results, alpha=0.01)
    q = np.concatenate([r["drift"]["q_value"].to_numpy() for r in controlled])
    np.testing.assert_allclose(q, stats.false_discovery_control(raw, method="bh"))
    assert not any(r["drift"]["alert"].any() for r in controlled)


def test_control_keeps_a_real_shift(reference):
    results = _drift_free_results(reference, 6)
    det = mon.DriftDetector(["x", "w"], ["c"]).fit(reference.iloc[:2000])
    shifted = reference.iloc[2000:2300].assign(x=lambda f: f["x"] + 0.5)
    results[3]["drift"] = det.score(shifted)
    controlled = mon.control_false_alarms(results, alpha=0.01)
    alerted = [(b, f) for b, r in enumerate(controlled, start=1) for f in r["drift"].loc[r["drift"]["alert"], "feature"]]
    assert alerted == [(4, "x")]


def _kpi_rows(verdicts):
    rows = {"watch": (0.696, 0.62, 0.74), "fail": (0.55, 0.48, 0.62), "pass": (0.72, 0.65, 0.79),
            "too few rows": (0.4, 0.1, 0.7)}
    return pd.DataFrame([{"metric": "recall", "target": 0.7, "direction": "higher", "achieved": rows[v][0],
                          "ci_low": rows[v][1], "ci_high": rows[v][2], "passed": kpis.verdict_passed(v), "verdict": v,
                          "count": 150 if v != "too few rows" else 9, "level": 0.9972, "batch": b}
                         for b, v in enumerate(verdicts, start=1)])


def test_only_a_failed_kpi_is_an_alert_watch_and_too_few_rows_are_notes():
    kpi = _kpi_rows(["watch", "pass", "fail", "too few rows"])
    drift = pd.DataFrame(columns=[*mon.DRIFT_COLUMNS, "batch", "prediction_psi"])
    alerts = mon.alerts_table(kpi, drift)
    assert alerts[["batch", "kind"]].values.tolist() == [[3, "KPI breach"]]
    assert "99.72% interval [0.480, 0.620] excludes the target" in alerts.loc[0, "reason"]
    notes = mon.kpi_notes(kpi)
    assert notes[["batch", "kind"]].values.tolist() == [[1, "KPI watch"], [4, "KPI not judged"]]
    assert "0.696 misses 0.7" in notes.loc[0, "reason"] and "contains it" in notes.loc[0, "reason"]
    assert "too few rows to judge recall: it averages over 9 rows" in notes.loc[1, "reason"]


def test_watch_does_not_count_toward_retraining_and_unjudged_batches_hold_the_streak():
    def result(verdict):
        return {"kpis": _kpi_rows([verdict]), "drift": pd.DataFrame({"feature": ["x"], "psi": [0.4], "alert": [False]})}

    results = [result(v) for v in ["fail", "watch", "fail", "too few rows", "fail"]]
    breached, drift = mon.policy_inputs(results)
    assert breached == [True, False, True, None, True]
    assert drift == [{}] * 5  # PSI 0.4 without an alert is not evidence of drift
    decisions = mon.RetrainingPolicy(k=2, important_features=["x"]).decide(breached, drift)
    assert [d["breach_streak"] for d in decisions] == [1, 0, 1, 1, 2]
    assert [d["retrain"] for d in decisions] == [False, False, False, False, True]


def test_a_drift_free_demo_like_run_raises_nothing_and_its_near_miss_is_a_watch(labelled):
    contract = KpiContract("classification", {"recall": 0.7}, "yes", classes=["no", "yes"])
    det = mon.DriftDetector(["x"], ["c"]).fit(labelled.iloc[:500])

    def predictor(X):
        p = 1 / (1 + np.exp(-2 * X["x"].to_numpy()))
        return np.where(p >= 0.5, "yes", "no"), p

    test = labelled.iloc[500:]
    batches, _ = mon.simulate_batches(test, target="y", problem_type="classification", n_batches=6, magnitude=0.0,
                                      feature="x", seed=1, batch_size=250, positive_label="yes")
    truth = kpis.score("recall", contract, test["y"], predictor(test)[0])
    contract.kpis["recall"] = truth  # the model exactly at its target: the hardest case for false alarms
    level = kpis.simultaneous_level(len(batches))
    results = mon.control_false_alarms(
        [mon.track_batch(b, features=["x", "c"], predictor=predictor, detector=det, contract=contract, target="y",
                         reference_pred=predictor(test)[1], level=level) for b in batches])
    kpi, drift = mon.timeline(results)
    assert mon.alerts_table(kpi, drift).empty
    assert (kpi["verdict"] == "watch").any() and set(kpi["verdict"]) <= {"pass", "watch"}
    assert drift["feature"].tolist()[:3] == ["x", "c", mon.PREDICTIONS]


def test_false_alarm_trials_measure_runs_with_and_without_control(reference):
    trials = mon.false_alarm_trials(reference, ["x", "w"], ["c"], batch_size=200, n_batches=6, n_trials=15,
                                    alpha=0.05, seed=0)
    assert len(trials) == 15 * 6 * 3 and set(trials["batch"]) == set(range(1, 7))
    runs = mon.run_false_alarms(trials)
    assert runs["tests_per_run"] == 18 and runs["expected_raw_alarms_per_run"] == pytest.approx(0.9)
    assert runs["runs_with_a_raw_alarm"] > 0.2  # 18 tests at 5% each: most runs have a chance alarm
    assert runs["runs_with_an_alert"] <= 0.2 and runs["runs_with_an_alert"] < runs["runs_with_a_raw_alarm"]
    rates = mon.false_alarm_rates(None, [], [], batch_size=0, trials=trials).set_index("feature")
    assert (rates["alert_rate"] <= rates["test_alarm_rate"]).all()


def test_expected_false_alarms_table():
    table = mon.expected_false_alarms(9, 6, 3, alpha=0.01).set_index("check")
    drift, kpi = table.iloc[0], table.iloc[1]
    assert drift["tests per run"] == 60 and drift["false alarms without control (at most)"] == pytest.approx(0.6)
    assert drift["chance of any false alarm (at most)"] == 0.01
    assert kpi["tests per run"] == 18 and kpi["false alarms without control (at most)"] == pytest.approx(0.45)
    assert "99.72%" in kpi["control"] and kpi["chance of any false alarm (at most)"] == 0.025


# --- samples of fixed size: seeded, stated, and the whole table below the caps ----------------------------------------


def _packaged_model(tmp_path):
    """The model package of a fresh run folder (test_deployment's demo model and schema)."""
    from test_deployment import SCHEMA, make_run

    from helpers.steps.operations import deployment

    run = make_run(tmp_path / "run")
    deployment.write_package(run, schema=SCHEMA, cleaning={})
    return deployment.package_for_run(run)


def _churn_prepared(n_train: int, n_test: int):
    from test_deployment import CATEGORICAL, NUMERIC, make_frame

    from helpers.core.prepared import Prepared

    return Prepared(train=make_frame(n_train), test=make_frame(n_test, seed=9), target="churn",
                    problem_type="classification", numeric=NUMERIC, categorical=CATEGORICAL, id_column="customer_id")


def test_drift_reference_and_false_alarm_pool_are_seeded_samples_stated_with_both_counts():
    prepared = _churn_prepared(3000, 200)
    small, said = mon.drift_reference(prepared, seed=4, max_rows=500)
    again, _ = mon.drift_reference(prepared, seed=4, max_rows=500)
    other, _ = mon.drift_reference(prepared, seed=5, max_rows=500)
    pd.testing.assert_frame_equal(small, again)
    assert len(small) == 500 and not small.index.equals(other.index)
    assert small.index.isin(prepared.train.index).all() and list(small.columns) == prepared.features
    assert said.text == ("Drift reference on 500 of 3,000 training rows (a seeded sample; at most 500: "
                         "monitoring.REFERENCE_ROWS).")
    pool, pool_said = mon.false_alarm_pool(prepared, seed=4, max_rows=1000)
    assert len(pool) == 1000 and "1,000 of 3,000 training rows" in pool_said.text
    # below the cap: every row, in order, exactly what step 5 used before the caps existed
    whole, whole_said = mon.drift_reference(prepared, seed=4)
    pd.testing.assert_frame_equal(whole, prepared.X("train"))
    assert whole_said.text == "Drift reference on all 3,000 training rows." and not whole_said.sampled
    pd.testing.assert_frame_equal(mon.false_alarm_pool(prepared, seed=4)[0], prepared.X("train"))


def test_reference_predictions_and_importance_state_their_samples(tmp_path):

    from helpers.steps.operations import deployment

    package = _packaged_model(tmp_path)
    prepared = _churn_prepared(400, 900)
    preds, said = mon.reference_predictions(package, prepared, seed=1, max_rows=300)
    assert preds.shape == (300,) and "300 of 900 test rows" in said.text
    np.testing.assert_array_equal(preds, mon.reference_predictions(package, prepared, seed=1, max_rows=300)[0])
    full, full_said = mon.reference_predictions(package, prepared, seed=1)
    np.testing.assert_array_equal(full, mon.prediction_shares(*deployment.predict_arrays(package, prepared.test)))
    assert full_said.text == "Reference predictions on all 900 test rows."
    contract = KpiContract("classification", {"roc_auc": 0.7}, "yes", classes=["no", "yes"])
    table = mon.feature_importance(package.model, prepared.X("test"), prepared.y("test"), contract, seed=0, n_rows=250)
    assert table.attrs["sampled"].text.startswith("Permutation importance on 250 of 900 test rows (a seeded sample")
    again = mon.feature_importance(package.model, prepared.X("test"), prepared.y("test"), contract, seed=0, n_rows=250)
    pd.testing.assert_frame_equal(table, again)
    # the sample drawn before the conversion to model input: the same rows, the same ranking, the same statement
    heldout = mon.heldout_importance(package.model, prepared, contract, seed=0, n_rows=250)
    pd.testing.assert_frame_equal(heldout, table)
    assert heldout.attrs["sampled"] == table.attrs["sampled"]


def test_production_periods_above_the_cap_keep_a_seeded_sample_in_time_order(tmp_path, monkeypatch):
    frame = pd.DataFrame({"t": np.repeat(["2024-01", "2024-02"], 500), "v": np.arange(1000)})
    batches = mon.batches_from_data(frame, time_column="t", n_batches=2, max_rows=120, seed=3)
    again = mon.batches_from_data(frame, time_column="t", n_batches=2, max_rows=120, seed=3)
    assert [len(b) for b in batches] == [120, 120]
    assert all(b["v"].is_monotonic_increasing for b in batches) and (batches[0]["t"] == "2024-01").all()
    assert all(a.equals(b) for a, b in zip(batches, again, strict=True))
    whole = mon.batches_from_data(frame, time_column="t", n_batches=2, max_rows=500)
    assert [list(b["v"]) for b in whole] == [list(range(500)), list(range(500, 1000))]  # at the cap: every row
    prepared = _churn_prepared(100, 100)
    frame.assign(churn="no").to_csv(tmp_path / "prod.csv", index=False)
    monkeypatch.setattr(mon, "MONITOR_BATCH_ROWS", 200)
    _, schedule, _ = mon.production_batches({"monitor_data": str(tmp_path / "prod.csv"), "n_batches": 2, "seed": 0},
                                            prepared, feature=None, time_column="t")
    assert list(schedule["rows"]) == [200, 200]
    assert schedule.attrs["sampled"].text == ("2 periods of monitor_data tracked on 400 of 1,000 rows (a seeded "
                                              "sample of each period; at most 200: monitoring.MONITOR_BATCH_ROWS "
                                              "per period).")


def test_simulated_batches_state_their_size():
    prepared = _churn_prepared(100, 3000)
    params = {"n_batches": 3, "drift_magnitude": 1.0, "seed": 0}
    batches, schedule, _ = mon.production_batches(params, prepared, feature="tenure", positive_label="yes")
    assert [len(b) for b in batches] == [1000] * 3  # half the held-out rows, at most SIMULATED_BATCH_ROWS
    assert schedule.attrs["sampled"].text.startswith("3 simulated production batches, each on 1,000 of 3,000 test rows")


def test_challengers_are_refitted_on_a_capped_seeded_sample_plus_the_labelled_batches(tmp_path):
    from test_deployment import NUMERIC, make_frame

    from helpers.steps.operations import deployment

    package = _packaged_model(tmp_path)
    prepared = _churn_prepared(2000, 200)
    contract = KpiContract("classification", {"roc_auc": 0.7}, "yes", classes=["no", "yes"])
    new = make_frame(600, seed=3).assign(churn=lambda f: np.where(f["churn"] == "yes", "no", "yes"))
    batches = [new.iloc[:300].assign(batch=1), new.iloc[300:].assign(batch=2)]
    detector = mon.DriftDetector(NUMERIC, ["contract"]).fit(prepared.train)
    ref = mon.prediction_shares(*deployment.predict_arrays(package, prepared.test))
    results = mon.track_all(package, batches, detector, contract, reference_pred=ref, n_boot=20)
    decisions = [{"batch": 1, "retrain": False, "reason": ""}, {"batch": 2, "retrain": True, "reason": "test"}]

    def challenge(**kw):
        return mon.retrain_challengers(package, prepared, batches, results, decisions, contract, margin=0.05,
                                       seed=1, **kw)

    capped = challenge(max_rows=500)
    assert capped[0]["trained_on_rows"] == 500 + 300  # the sample plus the labelled batch before the trigger
    assert capped[0]["challenger"] == challenge(max_rows=500)[0]["challenger"]  # same seed, same sample, same model
    assert challenge()[0]["trained_on_rows"] == 2000 + 300  # below CHALLENGER_ROWS: every training row
    said = mon.challenger_sampled(prepared, max_rows=500)
    assert said.text.startswith("Challengers refitted on 500 of 2,000 training rows (a stratified, seeded sample")
    assert mon.challenger_sampled(prepared).text.startswith("Challengers refitted on all 2,000 training rows")


def test_a_batch_run_simulates_only_the_scenarios_it_shows(tmp_path):
    from test_deployment import CATEGORICAL, NUMERIC

    from helpers.steps.operations import deployment

    package = _packaged_model(tmp_path)
    prepared = _churn_prepared(400, 600)
    contract = KpiContract("classification", {"recall": 0.7}, "yes", classes=["no", "yes"])
    detector = mon.DriftDetector(NUMERIC, CATEGORICAL).fit(prepared.train)
    ref = mon.prediction_shares(*deployment.predict_arrays(package, prepared.test))
    policy = mon.RetrainingPolicy(k=2, drift_threshold=0.25, important_features=["tenure"])
    kw = dict(features=["tenure", "charges"], magnitudes=(0.0, 1.0, 2.0), n_batches=3, seed=0, reference_pred=ref,
              positive_label="yes")
    every = mon.drift_scenarios(package, prepared, contract, detector, policy, **kw)
    shown = mon.drift_scenarios(package, prepared, contract, detector, policy, **kw,
                                only=[{"feature": "tenure", "magnitude": m} for m in (0.0, 2.0)])
    assert len(every) == 6 and set(shown) == {("tenure", 0.0), ("tenure", 2.0)}
    for key, scenario in shown.items():  # each scenario is seeded on its own: the same as in the full sweep
        pd.testing.assert_frame_equal(scenario["drift"], every[key]["drift"])
        assert scenario["decisions"] == every[key]["decisions"]
    assert mon.scenarios_sampled(600, 2, 3).text.startswith("Drift simulator: 2 scenarios x 3 batches, each on 300 of 600")


def test_chi2_test_is_scipys_chi2_contingency():
    rng = np.random.default_rng(2)
    for _ in range(300):
        k = int(rng.integers(2, 12))
        ref, cur = rng.integers(0, 400, k).astype(float), rng.integers(0, 60, k).astype(float)
        ref[rng.integers(k)] = 0
        table = np.vstack([ref, cur])
        table = table[:, table.sum(axis=0) > 0]
        if table.shape[1] < 2:
            continue
        expected = stats.chi2_contingency(table, correction=False)
        assert mon.chi2_test(ref, cur) == (expected.statistic, expected.pvalue)


def test_category_counts_match_values_by_their_text_and_count_missing_and_unseen():
    values = pd.Series(["a", None, "b", "a", np.nan, "zz", True, 1.5], dtype=object)
    categories = mon._categories(values)
    assert categories == sorted(["1.5", mon.MISSING, "True", "a", "b", "zz"])
    counts = mon.category_counts(values, ["a", "b", "True", "1.5", mon.MISSING])
    assert list(counts) == [2, 1, 1, 1, 2, 1]  # "zz" is unseen: the last bin
    table_categories, table_counts = mon._category_table(values)
    assert table_categories == categories
    np.testing.assert_array_equal(table_counts, mon.category_counts(values, categories))
    arrow = pd.Series(["a", None, "b"], dtype="string[pyarrow]")
    assert list(mon.category_counts(arrow, {"a": 0, "b": 1, mon.MISSING: 2})) == [1, 1, 1, 0]


def test_summary_records_every_sampled_decision():
    from helpers.steps.operations.deployment import Sampled

    samples = [Sampled("Drift reference", 20_000, 800_000, "training rows", 20_000, "monitoring.REFERENCE_ROWS"),
               Sampled("Reference predictions", 1_000, 1_000, "test rows", 20_000, "monitoring.REFERENCE_ROWS")]
    record = mon.sampling_summary(samples)
    assert record["statements"] == [
        "Drift reference on 20,000 of 800,000 training rows (a seeded sample; at most 20,000: monitoring.REFERENCE_ROWS).",
        "Reference predictions on all 1,000 test rows."]
    assert [d["sampled"] for d in record["decisions"]] == [True, False]
    table = mon.sampling_table(samples)
    assert list(table["rows"]) == [20_000, 1_000] and list(table["of"]) == [800_000, 1_000]


def test_drift_alert_reasons_write_p_values_as_a_reader_takes_them():
    drift = pd.DataFrame([{"feature": "x", "psi": 0.41, "band": "significant", "test": "KS", "p_value": 3e-9,
                           "q_value": 0.0123, "alert": True, "batch": 2}])
    kpi = _kpi_rows(["pass"])
    reason = mon.alerts_table(kpi, drift).loc[0, "reason"]
    assert reason == "PSI 0.41 (significant); KS p < 0.001, q = 0.012 across the run"
