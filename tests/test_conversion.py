"""Training and serving convert inputs with the same function (``features.as_model_input``).

An awkward table goes through the training path (``Prepared.X``, what steps 3-4 fit and
score on) and through the serving path (``deployment.model_input`` and what the model
receives inside ``predict_batch`` / ``predict_file``, i.e. ``playbook predict``): the
inputs and the predictions must be identical, and the input table must not change.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from helpers.core.cleaning import apply_cleaning
from helpers.core.features import as_model_input, with_model
from helpers.core.prepared import Prepared
from helpers.core.schema import make_schema
from helpers.steps.operations import deployment
from tests.test_deployment import make_run

NUMERIC = ["score", "amount", "visits"]
CATEGORICAL = ["plan", "code", "flag"]


def awkward_frame(n: int, seed: int, *, unseen: bool = False, unparseable: bool = True) -> pd.DataFrame:
    """Nullable ``string`` with pd.NA, numbers mixed with text, +/-inf, None/NaN, Int64 with NA,
    booleans; ``unseen``: categories training never saw."""
    rng = np.random.default_rng(seed)
    score = rng.normal(0, 1, n)
    score[::17], score[5::23], score[3::29] = np.inf, -np.inf, np.nan
    amount = pd.Series(rng.integers(1, 100, n), dtype=object)
    amount[::7] = [f" {v} " if i % 2 else f"{v}.5" for i, v in enumerate(amount[::7])]  # numbers stored as text
    amount[4::19] = None
    if unparseable:
        amount[6::31] = "abc"
    visits = pd.array(rng.integers(0, 10, n), dtype="Int64")
    visits[2::11] = pd.NA
    plan = pd.array(rng.choice(["basic", "plus", "pro"], n), dtype="string")
    plan[1::9] = pd.NA
    code = pd.Series(rng.choice(["A", "B"], n), dtype=object)
    code[::5], code[1::8], code[2::13] = 1, 2.5, np.nan  # numbers, text and NaN in one column
    flag = pd.array(rng.random(n) < 0.4, dtype="boolean")
    flag[3::10] = pd.NA
    if unseen:
        plan[::6] = "enterprise"
        code[3::7] = "Z"
    logit = 0.8 * np.nan_to_num(score, posinf=2, neginf=-2) + 1.2 * (plan == "pro").fillna(False).to_numpy(dtype=float)
    churn = np.where(rng.random(n) < 1 / (1 + np.exp(-logit)), "yes", "no")
    return pd.DataFrame({"customer_id": [f"C{seed}-{i}" for i in range(n)], "score": score, "amount": amount,
                         "visits": visits, "plan": plan, "code": code, "flag": flag, "churn": churn})


@pytest.fixture(scope="module")
def prepared():
    """Step 2's hand-over: the training side after step 2's fixes (numbers from text, no infinities;
    pd.NA, Int64 and booleans stay), the test side as awkward as new data, with unseen categories."""
    train = apply_cleaning(awkward_frame(300, 0, unparseable=False), {"numeric_text": ["amount"]})
    return Prepared(train=train, test=awkward_frame(120, 1, unseen=True, unparseable=False),
                    target="churn", problem_type="classification", numeric=NUMERIC, categorical=CATEGORICAL,
                    id_column="customer_id")


@pytest.fixture(scope="module")
def package(prepared, tmp_path_factory):
    """A real package whose champion was fitted on the training conversion (``Prepared.X``)."""
    model = with_model(prepared.make_preprocessor(), LogisticRegression(max_iter=1000))
    model.fit(prepared.X("train"), prepared.y("train"))
    run = make_run(tmp_path_factory.mktemp("conversion") / "run", model=model, numeric=NUMERIC,
                   categorical=CATEGORICAL)
    deployment.write_package(run, schema=make_schema(prepared), cleaning={})
    return deployment.package_for_run(run)


class Recording:
    """The package's model, keeping every table ``predict_proba`` receives."""

    def __init__(self, model):
        self.model, self.seen = model, []

    @property
    def classes_(self):
        return self.model.classes_

    def predict_proba(self, X):
        self.seen.append(X.copy())
        return self.model.predict_proba(X)


def recording(package: deployment.Package) -> deployment.Package:
    return deployment.Package(Recording(package.model), package.meta, package.schema, package.cleaning, package.path)


def test_the_conversion_gives_floats_and_real_strings():
    frame = pd.DataFrame({
        "score": [1.5, np.inf, -np.inf, np.nan, 2.0],
        "amount": np.array([3, " 7 ", "2.5", "abc", None], dtype=object),
        "visits": pd.array([1, pd.NA, 3, 4, 5], dtype="Int64"),
        "plan": pd.array(["basic", pd.NA, "pro", "plus", "basic"], dtype="string"),
        "code": np.array([1, "A", 2.5, None, np.nan], dtype=object),
        "flag": pd.array([True, False, pd.NA, True, False], dtype="boolean"),
    }, index=[10, 11, 12, 12, 14])
    X = as_model_input(frame, NUMERIC, CATEGORICAL)
    expected = pd.DataFrame({
        "score": [1.5, np.nan, np.nan, np.nan, 2.0], "amount": [3.0, 7.0, 2.5, np.nan, np.nan],
        "visits": [1.0, np.nan, 3.0, 4.0, 5.0],
        "plan": ["basic", np.nan, "pro", "plus", "basic"],  # pd.NA was the category "<NA>" in training
        "code": ["1", "A", "2.5", np.nan, np.nan],
        "flag": ["True", "False", np.nan, "True", "False"],
    }, index=frame.index).astype({c: object for c in CATEGORICAL})
    pd.testing.assert_frame_equal(X, expected)
    for c in CATEGORICAL:  # assert_frame_equal takes None or pd.NA for NaN: check the values themselves
        assert all(type(v) is str or v is np.nan for v in X[c]), (c, list(X[c]))
    order = ["flag", "score", "plan"]
    assert list(as_model_input(frame, NUMERIC, CATEGORICAL, columns=order).columns) == order
    with pytest.raises(ValueError, match="neither numeric nor categorical"):
        as_model_input(frame, ["score"], ["plan"], columns=["score", "amount"])


def test_training_and_serving_inputs_are_identical(prepared, package):
    new = prepared.test
    training = prepared.X("test")
    pd.testing.assert_frame_equal(deployment.model_input(new, package), training)
    spy = recording(package)
    _, v = deployment.predict_batch(spy, new)  # validation and step 2's fixes first, as `playbook predict`
    assert not v.errors and v.counts.get("plan has categories unseen in training")
    pd.testing.assert_frame_equal(spy.model.seen[-1], training)
    other = awkward_frame(80, 3, unseen=True)  # unparseable numbers too (predict_batch would refuse them)
    deployment.predict_arrays(spy, other)
    pd.testing.assert_frame_equal(spy.model.seen[-1], replace(prepared, test=other).X("test"))


def test_missing_categories_are_imputed_alike_and_never_a_category_of_their_own(package):
    encoder = package.model.named_steps["preprocess"].named_transformers_["categorical"][-1]
    for column, categories in zip(CATEGORICAL, encoder.categories_, strict=True):
        assert "missing" in set(categories), column  # pd.NA / NaN went through the constant imputer
        assert not {"<NA>", "nan", "None"} & set(map(str, categories)), column


def test_playbook_predict_gives_the_training_predictions(prepared, package, tmp_path):
    new = prepared.test
    expected = package.model.predict_proba(prepared.X("test"))[:, list(package.model.classes_).index("yes")]
    preds, _ = deployment.predict_batch(package, new)
    np.testing.assert_array_equal(preds["proba_yes"].to_numpy(), expected)
    new.drop(columns="churn").to_csv(tmp_path / "new.csv", index=False)
    spy = recording(package)
    deployment.predict_file(spy, tmp_path / "new.csv", tmp_path / "spy.csv", chunk_size=50)
    served = pd.concat(spy.model.seen, ignore_index=True)
    pd.testing.assert_frame_equal(served, prepared.X("test").reset_index(drop=True))  # floats via CSV: rtol 1e-5
    run_dir = package.path.parent.parent
    assert deployment.predict_cli(str(run_dir), str(tmp_path / "new.csv"), str(tmp_path / "pred.csv")) == 0
    out = pd.read_csv(tmp_path / "pred.csv")
    assert list(out["customer_id"]) == list(new["customer_id"])
    np.testing.assert_allclose(out["proba_yes"], expected, atol=1e-6)


def test_the_input_table_is_not_changed(prepared, package):
    for frame in (awkward_frame(90, 4, unseen=True), awkward_frame(90, 5, unseen=True, unparseable=False)):
        before = frame.copy(deep=True)
        as_model_input(frame, NUMERIC, CATEGORICAL)
        replace(prepared, test=frame).X("test")
        deployment.model_input(frame, package)
        deployment.predict_arrays(package, frame)
        if not frame["amount"].isin(["abc"]).any():
            deployment.predict_batch(package, frame)
        pd.testing.assert_frame_equal(frame, before)
        assert all(frame[c].dtype == before[c].dtype for c in frame.columns)
