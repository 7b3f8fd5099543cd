"""Model package, schema validation, chunked prediction, the KPI gate, workflow and model card."""

from __future__ import annotations

import pickle
import shutil
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from helpers.core import artifacts, features, modelio
from helpers.core.cleaning import apply_cleaning
from helpers.core.errors import PlaybookError
from helpers.core.features import as_model_input, make_preprocessor, with_model, with_threshold
from helpers.core.prepared import Prepared
from helpers.steps.operations import deployment

NUMERIC, CATEGORICAL = ["tenure", "charges"], ["contract"]


def make_frame(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    tenure = rng.integers(1, 72, n).astype(float)
    contract = rng.choice(["monthly", "yearly"], size=n)
    logit = -0.05 * (tenure - 30) + 1.2 * (contract == "monthly")
    y = np.where(rng.random(n) < 1 / (1 + np.exp(-logit)), "yes", "no")
    return pd.DataFrame({"customer_id": [f"C{i}" for i in range(n)], "tenure": tenure,
                         "charges": rng.normal(60, 15, n).round(2), "contract": contract, "churn": y})


SCHEMA = {"schema_version": 1, "target": "churn", "id_column": "customer_id", "columns": [
    {"name": "customer_id", "kind": "identifier", "dtype": "object", "nullable": False, "min": None, "max": None, "categories": None},
    {"name": "tenure", "kind": "numeric", "dtype": "float64", "nullable": True, "min": 1.0, "max": 71.0, "categories": None},
    {"name": "charges", "kind": "numeric", "dtype": "float64", "nullable": True, "min": 0.0, "max": 150.0, "categories": None},
    {"name": "contract", "kind": "categorical", "dtype": "object", "nullable": True, "min": None, "max": None,
     "categories": ["monthly", "yearly"]},
]}


def make_run(path, kpis=None, champion=True, model=None, numeric=NUMERIC, categorical=CATEGORICAL) -> artifacts.Run:
    """A run folder holding what steps 1-4 leave for step 5: a fitted champion and its metadata.

    ``model``: a champion fitted on ``numeric + categorical`` (target "churn", classes no/yes);
    by default a logistic regression on ``make_frame(400)``.
    """
    run = artifacts.open_run(str(path))
    if model is None:
        train = make_frame(400)
        model = with_model(make_preprocessor(NUMERIC, CATEGORICAL), LogisticRegression())
        model.fit(train[NUMERIC + CATEGORICAL], train["churn"])
    folder = run.models_dir(1)
    folder.mkdir(parents=True)
    modelio.save_model(model, folder / "model.skops")
    meta = {"version": 1, "family": "logistic_regression", "params": {"C": 1.0}, "features": [*numeric, *categorical],
            "numeric": list(numeric), "categorical": list(categorical), "target": "churn", "problem_type": "classification",
            "classes": ["no", "yes"], "positive_label": "yes", "threshold": 0.3, "kpis": kpis or [],
            "id_column": "customer_id", "sensitive_columns": [], "schema_version": 1}
    artifacts.write_json(folder / "model_meta.json", meta)
    run.update_manifest(kpis=kpis or [], champion={"version": 1, "path": "models/v1", "family": "logistic_regression"}
                        if champion else None)
    return run


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    run = make_run(tmp_path_factory.mktemp("deploy") / "run")
    deployment.write_package(run, schema=SCHEMA, cleaning={})
    return run


@pytest.fixture(scope="module")
def package(run):
    return deployment.package_for_run(run)


def test_package_holds_everything_serving_needs(run):
    table = deployment.package_contents(deployment.champion_dir(run))
    assert set(table["file"]) == set(deployment.PACKAGE_FILES)
    lock = (deployment.champion_dir(run) / "requirements.lock.txt").read_text()
    assert "scikit-learn==" in lock and "captured by step 5" in lock
    assert table.set_index("file").loc["requirements.lock.txt", "source"] == "step 5 (captured environment)"


def test_predict_end_to_end(run, tmp_path, capsys):
    frame = make_frame(250, seed=1).drop(columns="churn")
    frame.to_csv(tmp_path / "new.csv", index=False)
    code = deployment.predict_cli(str(run.path), str(tmp_path / "new.csv"), str(tmp_path / "pred.csv"), chunk_size=100)
    assert code == 0
    out = pd.read_csv(tmp_path / "pred.csv")
    assert len(out) == 250 and list(out.columns) == ["customer_id", "prediction", "proba_yes"]
    assert list(out["customer_id"]) == list(frame["customer_id"])
    assert out["proba_yes"].between(0, 1).all()
    # the decision threshold (0.3) decides the label, not argmax
    assert ((out["proba_yes"] >= 0.3) == (out["prediction"] == "yes")).all()
    assert "Wrote 250 predictions" in capsys.readouterr().out


def test_chunked_prediction_equals_one_batch(run, package, tmp_path):
    frame = make_frame(300, seed=2)
    frame.to_parquet(tmp_path / "new.parquet")
    deployment.predict_file(package, tmp_path / "new.parquet", tmp_path / "p.csv", chunk_size=64)
    whole, _ = deployment.predict_batch(package, frame)
    chunked = pd.read_csv(tmp_path / "p.csv")
    np.testing.assert_allclose(chunked["proba_yes"], whole["proba_yes"], rtol=1e-5)


def test_existing_output_is_not_overwritten_unless_told(run, tmp_path):
    make_frame(20).to_csv(tmp_path / "new.csv", index=False)
    (tmp_path / "pred.csv").write_text("keep me")
    with pytest.raises(PlaybookError, match="already exists and was not overwritten.*--overwrite"):
        deployment.predict_cli(str(run.path), str(tmp_path / "new.csv"), str(tmp_path / "pred.csv"))
    assert (tmp_path / "pred.csv").read_text() == "keep me"
    deployment.predict_cli(str(run.path), str(tmp_path / "new.csv"), str(tmp_path / "pred.csv"), overwrite=True)
    assert len(pd.read_csv(tmp_path / "pred.csv")) == 20


def test_missing_columns_are_an_error_naming_them(run, tmp_path):
    make_frame(20).drop(columns=["tenure", "contract"]).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(PlaybookError, match="missing column\\(s\\) tenure, contract"):
        deployment.predict_cli(str(run.path), str(tmp_path / "bad.csv"), str(tmp_path / "out.csv"))
    assert not (tmp_path / "out.csv").exists()


def test_wrong_types_are_an_error_naming_the_column_and_rows(run, tmp_path):
    frame = make_frame(30).astype({"charges": object})
    frame.loc[25, "charges"] = "lots"
    frame.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(PlaybookError, match="column charges expects numbers.*'lots'.*rows 21-30"):
        deployment.predict_cli(str(run.path), str(tmp_path / "bad.csv"), str(tmp_path / "out.csv"), chunk_size=10)
    assert not (tmp_path / "out.csv").exists()  # nothing half-written


def test_extra_columns_out_of_range_and_unseen_categories_are_warnings(package, capsys, run, tmp_path):
    frame = make_frame(40).assign(note="x")
    frame.loc[:2, "tenure"] = 500.0
    frame.loc[:4, "contract"] = "weekly"
    preds, v = deployment.predict_batch(package, frame)
    assert len(preds) == 40 and not v.errors
    assert any("extra column(s) ignored: note" in w for w in v.warnings)
    assert v.counts == {"tenure above the training range (> 71)": 3, "contract has categories unseen in training": 5}
    frame.to_csv(tmp_path / "warn.csv", index=False)
    deployment.predict_cli(str(run.path), str(tmp_path / "warn.csv"), str(tmp_path / "o.csv"))
    out = capsys.readouterr().out
    assert "warning: 3 value(s): tenure above the training range" in out


def test_without_the_id_column_rows_are_numbered(package):
    preds, v = deployment.predict_batch(package, make_frame(5).drop(columns="customer_id"))
    assert list(preds["row"]) == [0, 1, 2, 3, 4]
    assert any("keyed by row number" in w for w in v.warnings)


def test_bad_input_files_are_clear_errors(run, tmp_path):
    with pytest.raises(PlaybookError, match="does not exist"):
        deployment.predict_cli(str(run.path), str(tmp_path / "nope.csv"), str(tmp_path / "o.csv"))
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(PlaybookError, match="must be .csv or .parquet"):
        deployment.predict_cli(str(run.path), str(tmp_path / "x.json"), str(tmp_path / "o.csv"))
    with pytest.raises(PlaybookError, match="not a run folder"):
        deployment.predict_cli(str(tmp_path), str(tmp_path / "x.json"), str(tmp_path / "o.csv"))


def test_a_pickle_in_the_package_is_refused(run, tmp_path):
    folder = tmp_path / "pkg"
    folder.mkdir()
    for name in ("model_meta.json", "schema.json"):
        (folder / name).write_bytes((deployment.champion_dir(run) / name).read_bytes())
    (folder / "model.skops").write_bytes(pickle.dumps({"evil": 1}))
    with pytest.raises(PlaybookError, match="pickle.*refused"):
        deployment.load_package(folder)


def test_a_skops_file_with_an_unexpected_type_is_refused(run, tmp_path):
    import skops.io as sio

    folder = tmp_path / "pkg2"
    folder.mkdir()
    for name in ("model_meta.json", "schema.json"):
        (folder / name).write_bytes((deployment.champion_dir(run) / name).read_bytes())
    frame = make_frame(50)
    ball_tree = KNeighborsClassifier(algorithm="ball_tree").fit(frame[NUMERIC], frame["churn"])
    sio.dump(ball_tree, folder / "model.skops")  # its BallTree index is not on the trusted list
    with pytest.raises(PlaybookError, match="not trusted: .*BallTree"):
        deployment.load_package(folder)


def _kpis(passed: list[bool | None]) -> list[dict]:
    """Scoreboard rows as runs before verdicts recorded them: the gate applies the rule to their numbers."""
    rows = []
    for m, p in zip(["recall", "precision"], passed, strict=False):
        achieved = None if p is None else (0.7 if p else 0.3)
        rows.append({"metric": m, "target": 0.5, "direction": "higher", "achieved": achieved,
                     "ci_low": None if p is None else achieved - 0.1, "ci_high": None if p is None else achieved + 0.1,
                     "passed": p})
    return rows


@pytest.mark.parametrize(("passed", "code", "verdict"), [([True, True], 0, "PASSED"), ([True, False], 1, "FAILED"),
                                                         ([], 2, "no measured KPIs"), ([None, None], 2, "no measured")])
def test_gate_exit_codes(tmp_path, capsys, passed, code, verdict):
    run = artifacts.open_run(str(tmp_path / "r"))
    run.update_manifest(kpis=_kpis(passed))
    assert deployment.gate_cli(str(run.path)) == code
    out = capsys.readouterr().out
    assert verdict in out
    if code < 2:
        assert "recall" in out and "0.700" in out


def test_gate_passes_a_kpi_on_watch_with_a_warning_and_strict_fails_it(tmp_path, capsys):
    run = artifacts.open_run(str(tmp_path / "r"))
    watch = {"metric": "recall", "target": 0.7, "direction": "higher", "achieved": 0.696, "ci_low": 0.62,
             "ci_high": 0.74, "passed": None, "verdict": "watch"}
    met = {"metric": "precision", "target": 0.5, "direction": "higher", "achieved": 0.58, "ci_low": 0.53,
           "ci_high": 0.63, "passed": True, "verdict": "pass"}
    run.update_manifest(kpis=[watch, met])
    assert deployment.gate_cli(str(run.path)) == 0
    out = capsys.readouterr().out
    assert "WATCH" in out and "PASS" in out and "Gate: PASSED with a warning: recall on watch" in out
    assert deployment.gate_cli(str(run.path), strict=True) == 1
    assert "Gate: FAILED (--strict: recall on watch)" in capsys.readouterr().out
    run.update_manifest(kpis=[{**watch, "achieved": 0.55, "ci_high": 0.62, "verdict": "fail"}, met])
    assert deployment.gate_cli(str(run.path)) == 1
    assert "its interval excludes the target" in capsys.readouterr().out


def test_workflow_is_valid_yaml_with_the_expected_stages():
    text = deployment.render_workflow(project_name='churn "demo": v2', python_version="3.11")
    doc = yaml.safe_load(text)
    assert doc["name"] == 'ml-playbook churn "demo": v2'
    assert list(doc["jobs"]) == ["test", "playbook", "deploy"]
    assert doc["jobs"]["playbook"]["needs"] == "test"
    stages = deployment.workflow_stages(text)
    runs = " ".join(stages["runs"])
    for command in ("pip install", "pytest", "playbook run -f project.yaml", "playbook gate", "upload-artifact"):
        assert command in runs
    assert doc["jobs"]["test"]["steps"][1]["with"]["python-version"] == "3.11"


def test_model_card_has_every_section_and_escapes_user_text():
    context = {"project": "<b>demo</b>", "version": "v1", "family": "logistic_regression", "created_at": "today",
               "params": {"C": 1.0}, "problem_type": "classification", "target": "churn", "positive_label": "yes",
               "threshold": 0.3, "features": NUMERIC + CATEGORICAL, "model_path": "models/v1/model.skops",
               "problem_statement": "Flag <script>x</script> customers", "sensitive_columns": ["gender"],
               "kpis": _kpis([True, False]), "test_rows": 100, "dataset": "builtin:churn", "train_rows": 400,
               "training_sha": "abc", "cleaning": ["contract spellings unified"], "group_metric": "recall",
               "groups": [{"column": "gender", "group": "f", "rows": 50, "value": 0.7, "ci_low": 0.5, "ci_high": 0.9}],
               "caveats": ["KPI precision missed its target."]}
    card = deployment.render_model_card(context)
    for section in ("Model details", "Intended use", "Factors", "Metrics", "Evaluation data", "Training data",
                    "Quantitative analyses", "Ethical considerations", "Caveats and recommendations"):
        assert f"## {section}" in card
    assert "<script>" not in card and "&lt;script&gt;" in card
    assert "| recall | 0.5 | higher | 0.700 | [0.600, 0.800] | pass |" in card
    assert "| precision | 0.5 | higher | 0.300 | [0.200, 0.400] | FAIL |" in card
    watch = {**context["kpis"][1], "achieved": 0.49, "ci_high": 0.55, "passed": None, "verdict": "watch"}
    assert "| 0.490 | [0.200, 0.550] | watch |" in deployment.render_model_card({**context, "kpis": [watch]})
    assert "| gender | f | 50 | 0.700 |" in card
    assert "[to be completed by the team]" in card


def test_a_run_without_a_champion_says_which_step_to_run(tmp_path):
    run = artifacts.open_run(str(tmp_path / "empty"))
    with pytest.raises(PlaybookError, match="04_model_development"):
        deployment.champion_dir(run)


# --- the model file decides like `playbook predict` -------------------------------------------------------


def test_playbook_predict_gives_the_decisions_of_the_model_file(tmp_path):
    train = make_frame(400)
    model = with_threshold(with_model(make_preprocessor(NUMERIC, CATEGORICAL), LogisticRegression()), 0.3, "yes")
    run = make_run(tmp_path / "run", model=model.fit(train[NUMERIC + CATEGORICAL], train["churn"]))
    deployment.write_package(run, schema=SCHEMA, cleaning={})
    new = make_frame(300, seed=3).drop(columns="churn")
    new.to_csv(tmp_path / "new.csv", index=False)
    deployment.predict_cli(str(run.path), str(tmp_path / "new.csv"), str(tmp_path / "pred.csv"), chunk_size=128)
    served = pd.read_csv(tmp_path / "pred.csv")
    loaded = modelio.load_model(deployment.champion_dir(run) / "model.skops")  # as any consumer of the file
    decided = loaded.predict(as_model_input(new, NUMERIC, CATEGORICAL))
    np.testing.assert_array_equal(served["prediction"].to_numpy(), decided)
    argmax = loaded.classes_[loaded.predict_proba(as_model_input(new, NUMERIC, CATEGORICAL)).argmax(axis=1)]
    assert (decided != argmax).sum() > 10  # the threshold (0.3), not 0.5, decided those rows


def test_a_package_of_an_earlier_run_applies_the_threshold_of_its_metadata(package):
    # the module's package holds a plain pipeline and the threshold (0.3) in model_meta.json only
    assert features.decision_threshold(package.model) is None
    frame = make_frame(300, seed=4)
    preds, _ = deployment.predict_batch(package, frame)
    assert ((preds["proba_yes"] >= 0.3) == (preds["prediction"] == "yes")).all()
    assert (preds["prediction"] != package.model.predict(as_model_input(frame, NUMERIC, CATEGORICAL))).any()


# --- the serving checks behind the readiness facts --------------------------------------------------------


def centre_on_batch(X):
    """A real serving bug: features centred on the batch's own mean (a single row becomes all zeros)."""
    return X - X.mean(axis=0)


def batch_dependent(package: deployment.Package) -> deployment.Package:
    """The package with a champion whose answer for a row depends on the other rows of its batch."""
    train = make_frame(400)
    model = Pipeline([("preprocess", make_preprocessor(NUMERIC, CATEGORICAL)),
                      ("centre", FunctionTransformer(centre_on_batch)), ("model", LogisticRegression())])
    return replace(package, model=model.fit(train[NUMERIC + CATEGORICAL], train["churn"]))


def damaged(package: deployment.Package, folder) -> deployment.Package:
    """A copy of the package folder whose model file lost its second half (the package in memory is intact)."""
    shutil.copytree(package.path, folder)
    data = (folder / "model.skops").read_bytes()
    (folder / "model.skops").write_bytes(data[: len(data) // 2])
    return replace(package, path=folder)


CLEANING = {"spellings": {"contract": {"monthly": "monthly", "yearly": "yearly"}}, "numeric_text": ["charges"]}


def serving_setup(path) -> tuple[deployment.Package, Prepared, pd.DataFrame]:
    """A package, step 2's hand-over and the raw snapshot it came from: raw rows with spelling variants and
    numbers stored as text, which step 2's fixes (``CLEANING``) repair for training and the package for serving."""
    raw = make_frame(300, seed=5)
    raw["contract"] = np.where(np.arange(300) % 3 == 0, raw["contract"].str.title() + " ", raw["contract"])
    raw.loc[::7, "charges"] *= 20  # thousands: "1,234.50"
    raw["charges"] = raw["charges"].map(lambda v: f"{v:,.2f}").astype(object)
    raw.loc[::11, "tenure"] = np.nan
    clean = apply_cleaning(raw, CLEANING)
    test = np.arange(300) % 4 == 0
    prepared = Prepared(clean[~test], clean[test], "churn", "classification", NUMERIC, CATEGORICAL, "customer_id",
                        cleaning=CLEANING)
    run = make_run(path)
    deployment.write_package(run, schema=SCHEMA, cleaning=CLEANING)
    return deployment.package_for_run(run), prepared, raw


@pytest.fixture(scope="module")
def serving(tmp_path_factory):
    return serving_setup(tmp_path_factory.mktemp("serving") / "run")


def test_a_fresh_process_loads_the_package_and_predicts_like_this_one(serving, tmp_path):
    package, prepared, raw = serving
    run = artifacts.open_run(str(tmp_path / "r"))
    run.raw_snapshot_path.parent.mkdir(parents=True, exist_ok=True)
    raw.to_parquet(run.raw_snapshot_path)
    checks = deployment.serving_checks(run, package, prepared, n_rows=12)  # all three, as step 5 runs them
    check = checks["package_loads"]
    assert check["holds"] and check["rows"] == 12 and check["differing_rows"] == 0
    assert check["evidence"].startswith("models/v1 loaded from disk in a fresh process")
    assert "predictions identical for all 12 rows" in check["evidence"]
    table = deployment.checks_table(checks)
    assert list(table["fact"]) == ["package_loads", "single_rows", "same_code_path"] and table["holds"].all()
    rows = deployment.check_rows(prepared, 12)
    assert rows[NUMERIC].isna().any(axis=1).iloc[:6].all() and "churn" not in rows.columns  # missing values first
    broken = deployment.fresh_process_check(damaged(package, tmp_path / "v1"), rows)
    assert not broken["holds"]
    assert "failed to load and predict in a fresh process" in broken["evidence"]
    assert "damaged skops model file" in broken["evidence"] or "not a skops model file" in broken["evidence"]


def test_predictions_of_single_rows_must_equal_the_batch(serving):
    package, prepared, _ = serving
    rows = deployment.check_rows(prepared, 10)
    check = deployment.single_row_check(package, rows)
    assert check["holds"] and check["differing_rows"] == 0 and check["max_abs_diff"] < 1e-12
    broken = deployment.single_row_check(batch_dependent(package), rows)
    assert not broken["holds"] and broken["differing_rows"] > 0
    assert "proba_yes" in broken["columns"] and f"of {len(rows)} rows" in broken["evidence"]


def test_training_and_serving_inputs_are_compared_from_the_raw_rows(serving):
    package, prepared, raw = serving
    check = deployment.training_serving_check(package, prepared, raw)
    assert check["holds"], check["evidence"]
    assert check["rows"] == len(prepared.test) and check["features"] == 3 and check["differing_values"] == {}
    # the package forgot step 2's fixes: "Monthly " and "1,234.50" reach the model as they came in
    skewed = deployment.training_serving_check(replace(package, cleaning={}), prepared, raw)
    assert not skewed["holds"] and set(skewed["differing_values"]) == {"contract", "charges"}
    assert skewed["differing_values"]["contract"] == (prepared.test.index % 3 == 0).sum()
    assert "training and serving inputs differ" in skewed["evidence"] and "contract" in skewed["evidence"]
    # a column serving converts as text while training converts numbers
    meta = {**package.meta, "numeric": ["charges"], "categorical": ["contract", "tenure"]}
    kinds = deployment.training_serving_check(replace(package, meta=meta), prepared, raw)
    assert not kinds["holds"] and "tenure" in kinds["differing_values"]
    lost = deployment.training_serving_check(package, prepared, raw.drop(index=prepared.test.index[:3]))
    assert not lost["holds"] and "lacks 3 of the" in lost["evidence"]


# --- step 5 at scale: samples of fixed size, the fresh process started early, one pass per prediction -----------------


def test_training_serving_comparison_above_its_cap_replays_a_seeded_sample_and_says_so(serving):
    package, prepared, raw = serving
    check = deployment.training_serving_check(package, prepared, raw, max_rows=40, seed=2)
    assert check["holds"] and check["rows"] == 40
    assert check["evidence"].startswith(f"40 of {len(prepared.test)} (a seeded sample: deployment.SKEW_CHECK_ROWS) "
                                        "held-out rows x 3 features")
    assert check["sampled"].text == (f"Training/serving comparison on 40 of {len(prepared.test)} held-out rows "
                                     "(a seeded sample; at most 40: deployment.SKEW_CHECK_ROWS).")
    rows, _ = deployment.skew_check_rows(prepared, max_rows=40, seed=2)
    assert rows.index.equals(deployment.skew_check_rows(prepared, max_rows=40, seed=2)[0].index)
    skewed = deployment.training_serving_check(replace(package, cleaning={}), prepared, raw, max_rows=40, seed=2)
    assert not skewed["holds"] and skewed["rows"] == 40  # a sample still catches the skew
    whole = deployment.training_serving_check(package, prepared, raw)  # below the cap: every held-out row
    assert whole["rows"] == len(prepared.test) and whole["sampled"].text.startswith("Training/serving comparison on all")


def test_only_the_compared_rows_are_read_from_the_raw_snapshot(serving, tmp_path):
    _, prepared, raw = serving
    run = artifacts.open_run(str(tmp_path / "r"))
    run.raw_snapshot_path.parent.mkdir(parents=True, exist_ok=True)
    raw.set_axis(pd.Index(raw.index.to_list())).to_parquet(run.raw_snapshot_path)  # the row numbers as a column
    wanted = prepared.test.index[[5, 0, 3]]
    whole = pd.read_parquet(run.raw_snapshot_path)
    pd.testing.assert_frame_equal(deployment.raw_rows(run, wanted), whole.loc[sorted(wanted)])
    raw.to_parquet(run.raw_snapshot_path)  # a RangeIndex is metadata, not a column: the snapshot is read whole
    assert deployment.raw_rows(run, wanted).index.equals(raw.index)
    assert deployment.raw_rows(artifacts.open_run(str(tmp_path / "none")), wanted).empty


def test_a_fresh_process_started_early_is_collected_later_with_its_own_duration(serving):
    import time

    package, prepared, _ = serving
    rows = deployment.check_rows(prepared, 8)
    started = time.perf_counter()
    early = deployment.FreshProcessCheck(package, rows)
    while early._process.poll() is None:  # the process works while this one would compute the monitoring
        time.sleep(0.1)
    time.sleep(1.5)
    check = early.result()
    waited = time.perf_counter() - started
    assert check["holds"] and check["rows"] == 8 and check["differing_rows"] == 0
    assert check["seconds"] < waited - 1.0  # the process's own time, not the time until it was collected
    assert early.result() is check  # collected once
    assert deployment.check_rows_sampled(prepared, 8).text == (
        f"Single-row and fresh-process checks on 8 of {len(prepared.test)} held-out rows (rows with a missing "
        "value first, in file order; at most 8: serving_checks(n_rows)).")


def test_labels_from_the_probabilities_are_the_model_files_decisions_for_either_positive_class():
    train = make_frame(400)
    X_new = as_model_input(make_frame(500, seed=8), NUMERIC, CATEGORICAL)
    for positive, threshold in (("yes", 0.3), ("no", 0.6)):
        model = with_threshold(with_model(make_preprocessor(NUMERIC, CATEGORICAL), LogisticRegression()),
                               threshold, positive).fit(train[NUMERIC + CATEGORICAL], train["churn"])
        proba = model.predict_proba(X_new)
        np.testing.assert_array_equal(deployment._model_decisions(model, proba), model.predict(X_new))
        at = proba.copy()
        at[:, list(model.classes_).index(positive)] = threshold  # exactly at the threshold: positive, as sklearn
        assert (deployment._model_decisions(model, at) == positive).all()
