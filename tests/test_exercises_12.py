"""The checkers of steps 1 and 2's exercises: the right answer passes, typical wrong answers get
their own feedback, an untouched scaffold is "not answered"; every one on small frames."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score, precision_score, recall_score
from sklearn.model_selection import train_test_split

from helpers.core import exercises, kpis, prepared
from helpers.steps import vision
from helpers.steps.foundation import data


def binary_framing(n=400, seed=3):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"plan": rng.choice(["monthly", "yearly"], n), "age": rng.normal(40, 10, n).round(),
                      "noise": rng.normal(size=n)})
    churn = (X["plan"] == "monthly") & (rng.random(n) < 0.6) | (rng.random(n) < 0.1)
    y = pd.Series(np.where(churn | (X["age"] < 30) & (rng.random(n) < 0.5), "yes", "no"), name="churn")
    contract = kpis.KpiContract("classification", {"recall": 0.7, "precision": 0.5}, "yes", "macro", ["no", "yes"])
    return X, y, contract, vision.supervised_framing(X, y, contract, seed=0)


@pytest.fixture(scope="module")
def binary():
    return binary_framing()


def said(feedback: exercises.Feedback, *words: str) -> bool:
    text = feedback.text.lower()
    return all(w.lower() in text for w in words)


# --- 1.1 the heuristic's F1 ------------------------------------------------------------------------


def test_exercise_1_1_f1_and_its_typical_mistakes(binary):
    _, _, contract, framing = binary
    y, pred = framing.y, framing.candidate("heuristic").pred
    right = f1_score(y, pred, pos_label="yes")
    ok = vision.check_exercise_1(right, framing)
    assert ok.passed and ok.exercise == "1.1" and set(exercises.number_forms(right)) <= set(ok.giveaways)
    assert vision.check_exercise_1(round(right, 3), framing).passed
    recall = vision.check_exercise_1(recall_score(y, pred, pos_label="yes"), framing)
    assert not recall.passed and said(recall, "recall, not its f1") and recall.hint
    swapped = vision.check_exercise_1(f1_score(y, pred, pos_label="no"), framing)
    assert not swapped.passed and said(swapped, "positive label is swapped", "pos_label")
    macro = vision.check_exercise_1(f1_score(y, pred, average="macro"), framing)
    assert not macro.passed and said(macro, "macro")
    assert said(vision.check_exercise_1(precision_score(y, pred, pos_label="yes"), framing), "precision, not")
    assert said(vision.check_exercise_1(100 * right, framing), "percentage")
    assert said(vision.check_exercise_1("0.5", framing), "one number")
    blank = vision.check_exercise_1(..., framing)
    assert not blank.passed and not blank.answered and blank.giveaways == ok.giveaways


def test_exercise_1_1_regression_asks_for_the_mae():
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"x": rng.normal(size=300), "z": rng.normal(size=300)})
    y = pd.Series(3 * X["x"] + rng.normal(size=300), name="y")
    contract = kpis.KpiContract("regression", {"r2": 0.3})
    framing = vision.supervised_framing(X, y, contract, seed=0)
    pred = framing.candidate("heuristic").pred
    assert vision.check_exercise_1(float(np.mean(np.abs(framing.y - pred))), framing).passed
    rmse = vision.check_exercise_1(float(np.sqrt(np.mean((framing.y - pred) ** 2))), framing)
    assert not rmse.passed and said(rmse, "root mean squared")


# --- 1.2 a rule of your own ------------------------------------------------------------------------


def test_exercise_1_2_a_rule_on_another_column(binary):
    X, y, _, framing = binary
    features = list(X.columns)
    young = np.where(X["age"] < 32, "yes", "no")
    ok = vision.check_exercise_2(young, "age", X, framing, features)
    assert ok.passed and said(ok, "'age'", framing.heuristic["rule"])
    swapped = vision.check_exercise_2(np.where(X["age"] < 32, "no", "yes"), "age", X, framing, features)
    assert not swapped.passed and said(swapped, "swapped")
    own = vision.check_exercise_2(young, framing.heuristic["column"], X, framing, features)
    assert not own.passed and said(own, "column of the playbook's own rule")
    constant = vision.check_exercise_2(np.repeat("no", len(X)), "age", X, framing, features)
    assert said(constant, "dummy baseline")
    booleans = vision.check_exercise_2(X["age"] < 32, "age", X, framing, features)
    assert said(booleans, "no class of the target", "np.where")
    two_columns = np.where((X["age"] < 32) | (X["noise"] > 1), "yes", "no")
    assert said(vision.check_exercise_2(two_columns, "age", X, framing, features), "something else too")
    assert said(vision.check_exercise_2(young[:100], "age", X, framing, features), "100 predictions")
    assert said(vision.check_exercise_2(young, "churn", X.assign(churn=y), framing, features), "target itself")
    blank = vision.check_exercise_2(..., ..., X, framing, features)
    assert not blank.answered and not blank.passed


# --- 1.3 targets under which a rule suffices ---------------------------------------------------------


def test_exercise_1_3_targets_at_the_rules_score(binary):
    _, _, contract, framing = binary
    rule = vision.score_table(framing).set_index("candidate").loc["heuristic"]
    at_rule = {m: float(np.floor(rule[m] * 1000) / 1000) for m in contract.kpis}
    assert vision.check_exercise_3(at_rule, framing).passed
    above = vision.check_exercise_3({**at_rule, "recall": min(1.0, rule["recall"] + 0.01)}, framing)
    assert not above.passed and said(above, "still misses recall", "at or above")
    loose = vision.check_exercise_3({m: 0.0 for m in contract.kpis}, framing)
    assert not loose.passed and said(loose, "heuristic_suffices", "far from")
    assert said(vision.check_exercise_3("heuristic_suffices", framing), "not a verdict code")
    assert said(vision.check_exercise_3({"recall": 0.5}, framing), "one target for each kpi")
    assert said(vision.check_exercise_3({"recall": 0.5, "precision": 2.0}, framing), "not valid")
    assert not vision.check_exercise_3(None, framing).answered


# --- 2.1 rows with a gap -------------------------------------------------------------------------------


def gappy():
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"a": rng.normal(size=60), "b": rng.choice(["x", "y"], 60).astype(object),
                          "c": [f"{v:.2f}" for v in rng.normal(size=60)]})
    frame.loc[[0, 1, 2, 3], "a"] = np.nan
    frame.loc[[3, 4], "b"] = None
    frame.loc[[5, 6], "c"] = ["", "  "]
    return frame


def test_exercise_2_1_rows_with_a_missing_value():
    raw = pd.concat([gappy(), gappy().iloc[:20].assign(a=np.nan)], ignore_index=True)
    train = raw.iloc[:60]
    ok = data.check_exercise_1(7, train, raw)  # rows 0-6: 0-3 NaN, 3-4 None, 5-6 blank text
    assert ok.passed and "7 rows" in ok.giveaways and said(ok, "2 of them only as blank text")
    assert said(data.check_exercise_1(5, train, raw), "blank text is not missing to pandas")
    assert said(data.check_exercise_1(8, train, raw), "missing cells, not rows")
    assert said(data.check_exercise_1(7 / 60, train, raw), "share of rows")
    assert said(data.check_exercise_1(int(data.rows_with_missing(raw).sum()), train, raw), "test side included")
    assert said(data.check_exercise_1(train.isna().sum(), train, raw), "one number")
    assert not data.check_exercise_1(..., train, raw).answered


# --- 2.2 copies across a plain split -----------------------------------------------------------------


def test_exercise_2_2_copies_straddle_a_plain_split():
    rng = np.random.default_rng(2)
    base = pd.DataFrame({"id": [f"C{i}" for i in range(200)], "x": rng.normal(size=200)})
    raw = pd.concat([base, base.iloc[:40]], ignore_index=True)  # 40 exact copies
    params = {"test_size": 0.25, "seed": 0}
    plain_train, plain_test = train_test_split(raw, test_size=0.25, random_state=0)
    hashes = pd.util.hash_pandas_object(raw, index=False)
    right = int(hashes[plain_test.index].isin(hashes[plain_train.index]).sum())
    mask = pd.Series(raw["id"].isin([f"C{i}" for i in range(150, 200)]), index=raw.index)  # copies on one side
    ok = data.check_exercise_2(right, raw, mask, params)
    assert right > 0 and ok.passed and f"{right} rows" in ok.giveaways and said(ok, "playbook's split has 0")
    assert said(data.check_exercise_2(0, raw, mask, params), "playbook's split")
    assert said(data.check_exercise_2(40, raw, mask, params), "every copy in the table")
    assert said(data.check_exercise_2(right / len(plain_test), raw, mask, params), "share")
    assert not data.check_exercise_2(right + 1, raw, mask, params).passed
    assert not data.check_exercise_2(None, raw, mask, params).answered


# --- 2.3 preprocessing fitted on every row ------------------------------------------------------------


def test_exercise_2_3_selection_on_every_row_is_optimistic():
    y = pd.Series(np.where(np.random.default_rng(4).random(240) < 0.3, "yes", "no"), name="churn")
    frame = pd.DataFrame({"x": np.arange(240.0), "churn": y})
    prep = prepared.Prepared(train=frame, test=frame.iloc[:0], target="churn", problem_type="classification",
                             numeric=["x"], categorical=[])
    X, labels = data.noise_table(prep, seed=0, rows=200, columns=300)
    assert X.shape == (200, 300) and set(labels) == {"yes", "no"}
    whole, inside = data.selection_scores(X, labels)
    assert whole - inside > 0.08 and abs(inside - 0.5) < 0.12  # the lesson holds on this draw
    ok = data.check_exercise_3((whole, inside), X, labels)
    assert ok.passed and f"{whole:.3f}" in ok.giveaways
    assert said(data.check_exercise_3((inside, whole), X, labels), "swapped")
    assert said(data.check_exercise_3((inside, inside), X, labels), "about the same")
    assert said(data.check_exercise_3((whole, whole), X, labels), "still saw the validation rows")
    assert said(data.check_exercise_3((100 * whole, 100 * inside), X, labels), "percentages")
    assert said(data.check_exercise_3(whole, X, labels), "pair of numbers")
    assert not data.check_exercise_3(..., X, labels).answered


def test_exercise_2_2_on_a_table_without_copies():
    raw = pd.DataFrame({"x": np.arange(50.0)})
    ok = data.check_exercise_2(0, raw, pd.Series(np.arange(50) < 10, index=raw.index), {"test_size": 0.2, "seed": 1})
    assert ok.passed and said(ok, "no row of this table has an exact copy")
