"""The exercise checkers of steps 3, 4 and 5: the right answer, typical wrong ones and no answer, on small inputs.

Each checker returns a ``Feedback``; a wrong answer gets a message that names the mistake. The giveaways (what
must not be printed above an exercise) are checked too, with the exercise key on.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import precision_recall_curve
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline

from helpers.core import artifacts, exercises
from helpers.core.exercises import Feedback
from helpers.steps import modeling, stack
from helpers.steps.operations import deployment
from helpers.steps.operations import monitoring as mon
from tests.test_modeling import make_inputs
from tests.test_stack import make_study


def passed(feedback: Feedback) -> bool:
    assert isinstance(feedback, Feedback)
    return feedback.passed


def unanswered(feedback: Feedback) -> bool:
    return not feedback.passed and not feedback.answered and bool(feedback.message)


def test_number_answer_reads_numbers_and_says_what_is_missing():
    assert exercises.number_answer("9.1", np.float64(2.5), "a number") == 2.5
    assert exercises.number_answer("9.1", "3", "a number") == 3.0
    missing = exercises.number_answer("9.1", ..., "a factor, e.g. 12", "a hint")
    assert unanswered(missing) and missing.message == "Set `answer` to a factor, e.g. 12." and missing.hint == "a hint"
    for bad in ("lots", True, [1, 2]):
        feedback = exercises.number_answer("9.1", bad, "a factor")
        assert isinstance(feedback, Feedback) and feedback.answered and "is not a number" in feedback.message


# --- step 3 -----------------------------------------------------------------------------------------------------


@pytest.fixture
def study() -> stack.ScalingStudy:
    study = make_study({"fast": (1e-6, 1.0), "slow": (1e-9, 2.0)})
    # slow: 100 s fixed part, 1e-6 * n^2 growing (100 s at today's 10,000 rows); measured at three sizes
    study.curves["slow"].time = stack.PowerLaw(1e-6, 2.0, 1.0, 3, c=100.0)
    study.curves["slow"].points = [{"n_rows": n, "fit_s": 100.0 + 1e-6 * n**2, "peak_bytes": None}
                                   for n in (1000, 4000, 16000)]
    return study


def test_3_1_the_factor_at_ten_times_the_rows(study):
    family = stack.exercise_family(study)
    assert family == "slow"  # the most measured sizes
    assert unanswered(stack.check_exercise_1(..., study, family))
    right = (100 + 1e-6 * 100_000**2) / (100 + 1e-6 * 10_000**2)  # 50.5, not 10**2
    assert passed(stack.check_exercise_1(right, study, family))
    linear = stack.check_exercise_1(10, study, family)
    assert not linear.passed and "not 10 times the time" in linear.message
    no_fixed = stack.check_exercise_1(100, study, family)
    assert not no_fixed.passed and "fixed part" in no_fixed.message
    seconds = stack.check_exercise_1(study.fit_s(family, 100_000), study, family)
    assert not seconds.passed and "seconds, not a factor" in seconds.message
    assert "not a number" in stack.check_exercise_1("lots", study, family).message
    assert stack.check_exercise_1(right, study, family).giveaways == ("50.5000",)


def test_3_2_the_pure_power_law_exponent(study):
    points = stack.exercise_points(study)
    assert points.attrs["family"] == "slow" and list(points["n_rows"]) == [1000, 4000, 16000]
    slope, intercept = np.polyfit(np.log(points["n_rows"]), np.log(points["fit_s"]), 1)
    assert unanswered(stack.check_exercise_2(None, points))
    right = stack.check_exercise_2(slope, points)
    assert right.passed and "smaller than the cost law's" in right.message
    assert right.giveaways == (f"{slope:.4f}",)
    cost = stack.check_exercise_2(stack.fit_cost_law(points["n_rows"], points["fit_s"]).b, points)
    assert not cost.passed and "cost law's exponent" in cost.message
    assert "1/b" in stack.check_exercise_2(1 / slope, points).message
    assert "intercept" in stack.check_exercise_2(intercept, points).message
    raw = np.polyfit(points["n_rows"], points["fit_s"], 1)[0]
    assert "seconds per row" in stack.check_exercise_2(raw, points).message


def test_3_2_falls_back_to_the_example_points_when_too_few_sizes_were_measured():
    points = stack.exercise_points(make_study({"only": (1e-6, 1.0)}))  # one measured size
    assert list(points["n_rows"]) == stack.EXAMPLE_POINTS["n_rows"] and "example" in points.attrs["family"]
    slope = np.polyfit(np.log(points["n_rows"]), np.log(points["fit_s"]), 1)[0]
    assert passed(stack.check_exercise_2(slope, points))
    assert slope < 1.0 < stack.fit_cost_law(points["n_rows"], points["fit_s"]).b  # the lesson holds on them


def test_3_3_where_the_steeper_family_overtakes():
    x = stack.CROSSING
    assert stack.crossing_growth() == pytest.approx(100.0)
    assert unanswered(stack.check_exercise_3(None))
    assert passed(stack.check_exercise_3(100))
    assert "ratio of today's times" in stack.check_exercise_3(x["a_s"] / x["b_s"]).message
    assert "only B grow" in stack.check_exercise_3(10 ** (1 / 1.5)).message
    assert "not 10^0.5" in stack.check_exercise_3(10**0.5).message
    assert not passed(stack.check_exercise_3(7))


# --- step 4 -----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clf() -> modeling.Inputs:
    return make_inputs("classification")


def test_4_1_preprocessing_inside_and_outside_the_folds(clf):
    X, y = modeling.exercise_rows(clf, rows=150)
    model, scoring = modeling.exercise_model(clf), modeling.exercise_scoring(clf)
    assert len(X) == 150 and scoring == "neg_log_loss"
    inside = cross_val_score(make_pipeline(clf.prepared.make_preprocessor(), model), X, y, cv=5,
                             scoring=scoring).mean()
    outside = cross_val_score(model, clf.prepared.make_preprocessor().fit_transform(X), y, cv=5,
                              scoring=scoring).mean()
    assert inside != outside

    assert passed(modeling.check_exercise_1((inside, outside), clf, X, y, model, scoring))  # the notebook's solution

    def check(answer):  # the same verdicts, without cross-validating again for each answer
        return modeling.leakage_feedback(answer, inside, outside)

    assert unanswered(check(...))
    assert "swapped" in check((outside, inside)).message
    leaky = check((outside, outside))
    assert not leaky.passed and "outside the folds" in leaky.message
    assert "Pipeline's again" in check((inside, inside)).message
    assert "not a pair" in check(inside).message
    assert "neither score matches" in check((0.1, 0.2)).message


def test_4_1_works_for_regression_and_clustering():
    for problem_type in ("regression", "clustering"):
        inputs = make_inputs(problem_type)
        X, y = modeling.exercise_rows(inputs, rows=120)
        model, scoring = modeling.exercise_model(inputs), modeling.exercise_scoring(inputs)
        right = modeling.leakage_scores(inputs.prepared, X, y, model, scoring)
        assert passed(modeling.check_exercise_1(right, inputs, X, y, model, scoring)), problem_type


def test_4_2_the_threshold_for_a_raised_recall_target(clf):
    pipeline = modeling.family_pipeline(clf, modeling.fam.get_family("classification", "logistic_regression"))
    choice = modeling.choose_threshold(clf, pipeline)
    target = modeling.exercise_recall_target(clf.contract)
    assert target == pytest.approx(0.8)
    precision, recall, thresholds = precision_recall_curve(choice.y == "yes", choice.proba)
    meets = recall[:-1] >= target
    best = thresholds[meets][np.argmax(precision[:-1][meets])]

    def check(answer):
        return modeling.check_exercise_2(answer, choice, clf.contract, target)

    assert unanswered(check(None))
    right = check(best)
    assert right.passed and right.giveaways == (f"{best:.3f}", f"{best:.4f}")
    too_high = check(0.99)
    assert not too_high.passed and "below the target" in too_high.message
    old = check(choice.threshold)
    assert not old.passed and "contract's recall target" in old.message
    assert "between 0 and 1" in check(1.5).message
    assert passed(modeling.check_exercise_2(None, None, make_inputs("regression").contract, None))  # nothing to do


def test_4_2_names_the_typical_mistakes():
    contract = modeling.kpi_mod.KpiContract("classification", {"recall": 0.7, "precision": 0.9}, "yes", "macro",
                                            ["no", "yes"])
    y = np.array(["yes"] * 5 + ["no"] * 5, dtype=object)
    proba = np.array([0.9, 0.8, 0.7, 0.4, 0.3, 0.6, 0.35, 0.2, 0.1, 0.05])
    choice = modeling.ThresholdChoice(0.6, True, "", "", y, proba, modeling.pr_table(y, proba, "yes"))
    target = modeling.exercise_recall_target(contract)
    assert target == pytest.approx(0.8)

    def check(answer):
        return modeling.check_exercise_2(answer, choice, contract, target)

    assert passed(check(0.4))  # recall 0.8, precision 0.8: the most precise of those with recall >= 0.8
    assert "meets the precision target" in check(0.7).message  # precision 1.0, recall 0.6
    assert "contract's recall target" in check(0.6).message  # the step's own threshold
    assert "better precision" in check(0.35).message  # recall 0.8 too, precision 0.67
    assert "below the target" in check(0.95).message


def test_4_3_test_reuse_is_optimistic():
    assert unanswered(modeling.check_exercise_3(...))
    assert passed(modeling.check_exercise_3(" Optimistic"))
    assert "maximum of several noisy" in modeling.check_exercise_3("unbiased").message
    assert "lucky" in modeling.check_exercise_3("pessimistic").message
    assert not passed(modeling.check_exercise_3("biased"))


# --- step 5 -----------------------------------------------------------------------------------------------------


def test_5_1_gate_exit_codes_match_the_gate_itself(tmp_path):
    run = artifacts.open_run(tmp_path / "run")
    run.write_manifest({"kpis": list(deployment.GATE_EXERCISE)})
    codes = (deployment.gate(run)[0], deployment.gate(run, strict=True)[0])
    assert codes == deployment.GATE_EXERCISE_CODES == (0, 1)
    assert unanswered(deployment.check_exercise_1(None))
    assert passed(deployment.check_exercise_1((0, 1)))
    assert "not a fail" in deployment.check_exercise_1((1, 1)).message
    assert "--strict treats" in deployment.check_exercise_1((0, 0)).message
    assert "no measured KPIs" in deployment.check_exercise_1((2, 2)).message
    assert "not a pair" in deployment.check_exercise_1(1).message


@pytest.fixture(scope="module")
def drift_case():
    rng = np.random.default_rng(0)
    reference = pd.DataFrame({"x": rng.exponential(1.0, 3000), "c": rng.choice(["a", "b"], 3000)})
    reference.loc[::50, "x"] = np.nan
    batch = pd.DataFrame({"x": rng.exponential(1.3, 400), "c": rng.choice(["a", "b"], 400)})
    batch.loc[::40, "x"] = np.nan
    return reference, batch


def psi_by_hand(reference: pd.Series, batch: pd.Series, edges_from: pd.Series | None = None) -> float:
    """The notebook's solution, step by step (bins from ``edges_from``: the reference unless told)."""
    ref, new = reference.to_numpy(dtype=float), batch.to_numpy(dtype=float)
    source = ref if edges_from is None else edges_from.to_numpy(dtype=float)
    edges = np.quantile(source[~np.isnan(source)], np.linspace(0.1, 0.9, 9))
    bins = np.concatenate([[-np.inf], np.unique(edges), [np.inf]])
    p_ref = np.append(np.histogram(ref[~np.isnan(ref)], bins)[0], np.isnan(ref).sum()) / len(ref)
    p_new = np.append(np.histogram(new[~np.isnan(new)], bins)[0], np.isnan(new).sum()) / len(new)
    p_ref, p_new = np.clip(p_ref, 1e-4, None), np.clip(p_new, 1e-4, None)
    return float(np.sum((p_new - p_ref) * np.log(p_new / p_ref)))


def test_5_2_psi_by_hand(drift_case):
    reference, batch = drift_case
    right = psi_by_hand(reference["x"], batch["x"])
    detector = mon.DriftDetector(["x"], ["c"]).fit(reference)
    assert right == pytest.approx(detector.feature_row("x", batch["x"])["psi"], rel=1e-9)  # the playbook's value

    def check(answer):
        return mon.check_exercise_2(answer, reference, batch, "x")

    assert unanswered(check(None))
    assert passed(check(right)) and check(right).giveaways == (f"{right:.3f}", f"{right:.4f}")
    batch_bins = check(psi_by_hand(reference["x"], batch["x"], edges_from=batch["x"]))
    assert not batch_bins.passed and "new batch's quantiles" in batch_bins.message
    ref, new = reference["x"].dropna(), batch["x"].dropna()
    width = np.histogram_bin_edges(ref, bins=10)
    p_ref = np.clip(np.histogram(ref, width)[0] / len(ref), 1e-4, None)
    p_new = np.clip(np.histogram(new.clip(width[0], width[-1]), width)[0] / len(new), 1e-4, None)
    equal_width = check(float(np.sum((p_new - p_ref) * np.log(p_new / p_ref))))
    assert not equal_width.passed and "equal width" in equal_width.message
    assert "natural logarithm" in check(right / math.log(10)).message
    assert "not finite" in check(float("inf")).message
    assert "counts instead of shares" in check(right * 400).message
    assert not passed(check(0.5))
    assert passed(mon.check_exercise_2(None, reference, batch, "c"))  # a categorical feature: nothing to check


def test_5_3_the_band_starts_at_the_chance_psi():
    assert mon.psi_band(0.18, 0.21) == "stable"
    assert unanswered(mon.check_exercise_3(None))
    assert passed(mon.check_exercise_3("Stable"))
    assert "on a large batch" in mon.check_exercise_3("moderate").message
    assert not passed(mon.check_exercise_3("significant"))
    assert "not a band" in mon.check_exercise_3("high").message


def results_of(rows: list[tuple[list[tuple[str, float, bool]], list[str] | None]]) -> list[dict]:
    """Tracking results: per batch, drift rows (feature, psi, alert) and KPI verdicts (None: unlabelled)."""
    return [{"drift": pd.DataFrame(drift, columns=["feature", "psi", "alert"]),
             "kpis": None if verdicts is None else pd.DataFrame({"verdict": verdicts})} for drift, verdicts in rows]


def test_5_4_retraining_without_labels():
    results = results_of([
        ([("x", 0.05, False), ("z", 0.30, True)], ["pass"]),   # z alerts but is not important
        ([("x", 0.40, False), ("z", 0.01, False)], ["fail"]),  # x above the threshold, no alert
        ([("x", 0.20, True), ("z", 0.01, False)], ["fail"]),   # x alerts below the threshold; KPIs fail twice
        ([("x", 0.50, True), ("z", 0.01, False)], ["pass"]),   # the first drift trigger
    ])
    policy = mon.RetrainingPolicy(2, 0.25, ["x"])
    assert mon.first_retrain(policy.decide(*mon.policy_inputs(results))) == 3  # with labels: the KPI streak
    assert mon.first_retrain(mon.unlabelled_decisions(results, policy)) == 4
    assert unanswered(mon.check_exercise_4(None, results, policy))
    right = mon.check_exercise_4(4, results, policy)
    assert right.passed and "PSI 0.50 on important feature x" in right.message
    assert "with labels" in mon.check_exercise_4(3, results, policy).message
    assert "any feature" in mon.check_exercise_4(1, results, policy).message
    assert "did not alert" in mon.check_exercise_4(2, results, policy).message
    assert "not a batch number" in mon.check_exercise_4(2.5, results, policy).message
    calm = results_of([([("x", 0.01, False)], ["pass"])])
    assert passed(mon.check_exercise_4(0, calm, policy))
