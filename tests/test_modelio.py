"""Safe model files: skops round trips, and refusal of pickle, damaged and untrusted files."""

from __future__ import annotations

import io
import json
import pickle
import zipfile

import joblib
import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn.neighbors import KNeighborsClassifier

from helpers.core import families, features, modelio
from helpers.core.errors import PlaybookError


def _data(n: int = 80, seed: int = 0) -> tuple[pd.DataFrame, pd.Series, pd.Series]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n),
                      "c": rng.choice(["x", "y", "z"], size=n).astype(object)})
    X.loc[3, "a"] = np.nan
    y_class = pd.Series(np.where(X["b"] + rng.normal(scale=0.5, size=n) > 0, "yes", "no"))
    y_reg = 2 * X["b"] + rng.normal(scale=0.1, size=n)
    return X, y_class, y_reg


def _pipeline(estimator):
    return features.with_model(features.make_preprocessor(["a", "b"], ["c"]), estimator)


@pytest.mark.parametrize("family", [f for f in families.FAMILIES if f.deployable], ids=lambda f: f"{f.problem_type}-{f.name}")
def test_every_deployable_family_round_trips(tmp_path, family):
    X, y_class, y_reg = _data()
    model = _pipeline(family.build(0, 1))
    y = {"classification": y_class, "regression": y_reg, "clustering": None}[family.problem_type]
    model.fit(X, y)
    path = tmp_path / "model.skops"
    modelio.save_model(model, path)
    loaded = modelio.load_model(path)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    assert not list(tmp_path.glob(".*.tmp")), "the atomic write left a temporary file"


@pytest.mark.parametrize("family", [f for f in families.FAMILIES if f.deployable and f.problem_type == "classification"],
                         ids=lambda f: f.name)
def test_a_thresholded_classifier_round_trips_and_decides_at_its_threshold(tmp_path, family):
    X, y_class, _ = _data()
    model = features.with_threshold(_pipeline(family.build(0, 1)), 0.3, "yes").fit(X, y_class)
    assert modelio.untrusted_types(model) == []  # skops trusts scikit-learn's FixedThresholdClassifier itself
    path = tmp_path / "model.skops"
    modelio.save_model(model, path)
    loaded = modelio.load_model(path)
    assert features.decision_threshold(loaded) == 0.3
    proba = loaded.predict_proba(X)[:, list(loaded.classes_).index("yes")]
    np.testing.assert_array_equal(loaded.predict(X), np.where(proba >= 0.3, "yes", "no"))
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    assert features.decision_threshold(_pipeline(family.build(0, 1)).fit(X, y_class)) is None


def test_trusted_list_is_needed_and_sufficient(tmp_path):
    X, y_class, _ = _data()
    model = _pipeline(families.get_family("classification", "random_forest").build(0, 1)).fit(X, y_class)
    path = tmp_path / "forest.skops"
    modelio.save_model(model, path)
    with pytest.raises(sio.exceptions.UntrustedTypesFoundException):
        sio.load(path, trusted=[])  # skops alone refuses the forest's trees ...
    assert modelio.load_model(path).predict(X[:5]).tolist() == model.predict(X[:5]).tolist()  # ... our list allows them


def test_pickle_and_joblib_files_are_refused(tmp_path):
    X, y_class, _ = _data()
    model = _pipeline(KNeighborsClassifier()).fit(X, y_class)
    pkl = tmp_path / "model.pkl"
    pkl.write_bytes(pickle.dumps(model))
    job = tmp_path / "model.joblib"
    joblib.dump(model, job)
    for path in (pkl, job):
        with pytest.raises(PlaybookError, match="pickle/joblib file.*refused"):
            modelio.load_model(path)


def test_truncated_and_corrupt_files_are_refused(tmp_path):
    X, y_class, _ = _data()
    model = _pipeline(KNeighborsClassifier()).fit(X, y_class)
    good = tmp_path / "good.skops"
    modelio.save_model(model, good)
    data = good.read_bytes()
    truncated = tmp_path / "truncated.skops"
    truncated.write_bytes(data[: len(data) // 2])
    garbage = tmp_path / "garbage.skops"
    garbage.write_bytes(b"PK\x03\x04" + bytes(range(256)) * 4)
    empty = tmp_path / "empty.skops"
    empty.write_bytes(b"")
    for path in (truncated, garbage, empty):
        with pytest.raises(PlaybookError, match="not a skops model file|damaged"):
            modelio.load_model(path)


def test_archive_without_valid_schema_is_refused(tmp_path):
    path = tmp_path / "noschema.skops"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("schema.json", "{not json")
    with pytest.raises(PlaybookError, match="damaged skops model file"):
        modelio.load_model(path)
    other = tmp_path / "other.skops"
    with zipfile.ZipFile(other, "w") as archive:
        archive.writestr("readme.txt", "hello")
    with pytest.raises(PlaybookError, match="damaged skops model file"):
        modelio.load_model(other)


def test_file_needing_an_unexpected_type_is_refused(tmp_path):
    X, y_class, _ = _data()
    model = _pipeline(KNeighborsClassifier(algorithm="ball_tree")).fit(X, y_class)
    path = tmp_path / "balltree.skops"
    sio.dump(model, path)  # written by someone else, bypassing save_model's check
    with pytest.raises(PlaybookError, match="not trusted: .*BallTree"):
        modelio.load_model(path)
    with pytest.raises(PlaybookError, match="not on the trusted list: .*BallTree"):
        modelio.save_model(model, tmp_path / "refused.skops")
    assert not (tmp_path / "refused.skops").exists()


def test_schema_tampered_to_name_an_untrusted_function_is_refused(tmp_path):
    X, y_class, _ = _data()
    model = _pipeline(KNeighborsClassifier()).fit(X, y_class)
    good = tmp_path / "good.skops"
    modelio.save_model(model, good)
    with zipfile.ZipFile(good) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    schema = json.loads(members["schema.json"])
    schema["__class__"], schema["__module__"] = "system", "os"
    members["schema.json"] = json.dumps(schema).encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    evil = tmp_path / "evil.skops"
    evil.write_bytes(buf.getvalue())
    with pytest.raises(PlaybookError, match="not trusted: os.system"):
        modelio.load_model(evil)


def test_missing_file_and_non_model_are_clear(tmp_path):
    with pytest.raises(PlaybookError, match="does not exist.*run step 4"):
        modelio.load_model(tmp_path / "nope.skops")
    path = tmp_path / "dict.skops"
    sio.dump({"a": 1}, path)
    with pytest.raises(PlaybookError, match="not a model with predict"):
        modelio.load_model(path)
