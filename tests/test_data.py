"""Step 2 helpers: the demo's injected faults are all found, a clean data set raises no severe
alarm, cleaning replays on new data, the split holds its properties, loaders and bad inputs."""

from __future__ import annotations

import sqlite3

import numpy as np
import pandas as pd
import pytest

from helpers.core import artifacts, cleaning, config, datasets, prepared
from helpers.core import schema as data_schema
from helpers.core.errors import PlaybookError
from helpers.steps.foundation import data, quality


def step2_params(run_dir, **overrides) -> config.Params:
    namespace = config.defaults()
    namespace.update(run_dir=str(run_dir), interactive=False, **overrides)
    return config.validate_step(data.STEP, namespace)


@pytest.fixture(scope="module")
def churn(tmp_path_factory):
    folder = tmp_path_factory.mktemp("churn")
    params = step2_params(folder)
    run = artifacts.open_run(params.run_dir)
    return run, params, data.run_core(run, params)


def found(result, check: str) -> set:
    return {i["column"] for i in result["issues"] if i["check"] == check}


def test_every_injected_churn_fault_is_found(churn):
    _, _, result = churn
    assert {"monthly_charges", "tenure_months", "payment_method"} <= found(result, "missing values")
    assert {"contract", "has_partner"} <= found(result, "inconsistent spellings")
    assert found(result, "numbers stored as text") == {"total_charges"}
    assert found(result, "duplicate rows") == {None}
    assert "monthly_charges" in found(result, "outliers")
    assert found(result, "constant column") == {"country"}
    assert found(result, "target leakage") == {"retention_call_minutes"}
    assert found(result, "identifier column") == {"customer_id"}
    severe = {(i["check"], i["column"]) for i in result["issues"] if i["severity"] == "high"}
    assert severe == {("target leakage", "retention_call_minutes")}


def test_churn_cleaning_decisions_and_features(churn):
    _, _, result = churn
    p = result["prepared"]
    actions = {(d["action"], d["column"]) for d in result["decisions"]}
    assert {("coerce to numbers", "total_charges"), ("canonicalise spellings", "contract"),
            ("canonicalise spellings", "has_partner"), ("drop column", "country"),
            ("drop column", "retention_call_minutes"), ("remove duplicate rows", None)} <= actions
    assert sorted(p.train["contract"].unique()) == ["Month-to-month", "One year", "Two year"]
    assert sorted(p.train["has_partner"].unique()) == ["No", "Yes"]
    assert p.train["total_charges"].dtype == float
    assert not {"country", "retention_call_minutes", "customer_id", "gender", "senior_citizen", "churn"} & set(p.features)
    assert {"customer_id", "gender", "senior_citizen"} <= set(p.train.columns)  # kept, not features
    assert not p.train.duplicated().any()


def test_churn_split_comes_from_the_raw_mask(churn):
    _, params, result = churn
    raw, mask, p = result["raw"], result["mask"], result["prepared"]
    assert mask.equals(data.hold_out(raw, params, "classification"))  # deterministic
    assert set(p.test.index) <= set(mask.index[mask]) and set(p.train.index) <= set(mask.index[~mask])
    assert not set(p.train["customer_id"]) & set(p.test["customer_id"])  # duplicates stay on one side
    balance = result["split"]
    assert abs(balance["train_balance"]["yes"] - balance["test_balance"]["yes"]) < 0.01  # stratified


def test_bias_and_scale_on_churn(churn):
    _, _, result = churn
    bias = result["bias"]
    assert bias["positive_label"] == "yes"
    assert set(bias["groups"]) == {"gender", "senior_citizen"}
    assert bias["class_balance"]["minority"] == "yes"
    scale = result["scale"]
    assert [r["rows"] for r in scale["projection"]] == [len(result["raw"]) * f for f in (1, 10, 100)]
    assert scale["compact_bytes"] < scale["memory_bytes"]


def test_saved_artifacts_schema_and_hand_over(churn):
    run, params, result = churn
    p = result["prepared"]
    doc = data.datasheet(params, result["provenance"], p, {"rows": 1}, result["issues"], result["decisions"],
                         result["bias"], result["split"])
    step = data.FoundationResult(prepared=p, profile=result["profile"], issues=result["issues"],
                                 decisions=result["decisions"], split_info=result["split"], bias=result["bias"],
                                 scale=result["scale"], provenance=result["provenance"], facts={},
                                 problem_type_reason="test", datasheet=doc)
    saved = data.save(run, step)
    for key in ("issues", "decisions", "split", "bias", "scale", "profile_columns", "provenance"):
        assert key in saved
    schema = data_schema.load_schema(run)
    kinds = {c["name"]: c["kind"] for c in schema["columns"]}
    assert kinds["customer_id"] == "identifier" and kinds["monthly_charges"] == "numeric"
    contract = next(c for c in schema["columns"] if c["name"] == "contract")
    assert contract["categories"] == ["Month-to-month", "One year", "Two year"] and contract["nullable"] is False
    back = prepared.load_prepared(run)
    assert back.features == p.features and back.train.index.equals(p.train.index)
    assert back.cleaning == p.cleaning
    assert "**[human]**" in doc and "Motivation" in doc and "Maintenance" in doc
    shown = str(data.report_section(run).render())
    head = data.headline(run)
    assert head["n_issues"] == len(result["issues"])
    assert [i["column"] for i in head["severe_issues"]] == ["retention_call_minutes"]
    assert head["top_issues"][0]["severity"] == "high" and len(head["top_issues"]) == 3
    assert "remove duplicate rows" in shown[shown.index("<details"):]  # the decision log, in the details


def test_apply_cleaning_replays_on_new_data_without_target(churn):
    _, _, result = churn
    new = pd.DataFrame({"customer_id": ["X1", "X2", "X3"], "contract": ["MONTH TO MONTH", "two year ", None],
                        "has_partner": ["y", "No", "maybe"], "total_charges": ["12.5", " ", "1,024.00"],
                        "country": ["NL"] * 3, "retention_call_minutes": [0.0, 1.0, 2.0]})
    out = cleaning.apply_cleaning(new, result["cleaning"])
    assert len(out) == 3
    assert out["contract"].tolist()[:2] == ["Month-to-month", "Two year"] and pd.isna(out["contract"].iloc[2])
    assert out["has_partner"].tolist() == ["Yes", "No", "maybe"]
    assert out["total_charges"].tolist()[0] == 12.5 and np.isnan(out["total_charges"].iloc[1])
    assert out["total_charges"].iloc[2] == 1024.0
    assert "country" not in out and "retention_call_minutes" not in out
    assert cleaning.apply_cleaning(new, {}).equals(new)


def test_missing_schema_names_step_2(tmp_path):
    run = artifacts.open_run(str(tmp_path))
    with pytest.raises(PlaybookError, match="02_data_foundation"):
        data_schema.load_schema(run, needed_by="step 5")


def test_breast_cancer_has_no_severe_issue(tmp_path):
    params = step2_params(tmp_path, dataset="builtin:breast_cancer")
    result = data.run_core(artifacts.open_run(params.run_dir), params)
    assert [i for i in result["issues"] if i["severity"] == "high"] == []
    assert result["decisions"] == []


def test_split_keeps_groups_together_and_time_order(tmp_path):
    rng = np.random.default_rng(3)
    n = 300
    frame = pd.DataFrame({"patient": rng.integers(0, 60, n).astype(str), "x": rng.normal(size=n),
                          "day": pd.date_range("2024-01-01", periods=n, freq="D").astype(str),
                          "y": rng.choice(["a", "b"], n)})
    params = step2_params(tmp_path, dataset="x.csv", target="y", problem_type="classification", group_column="patient")
    mask = data.hold_out(frame, params, "classification")
    report = data.split_report(frame, mask, params, "classification")
    assert report["groups_on_both_sides"] == 0 and 0 < report["test_rows"] < n
    timed = step2_params(tmp_path, dataset="x.csv", target="y", problem_type="classification", time_column="day")
    mask = data.hold_out(frame, timed, "classification")
    assert data.split_report(frame, mask, timed, "classification")["time_order_holds"] is True
    assert mask.equals(data.hold_out(frame, timed, "classification"))


def test_small_sensitive_group_warns(tmp_path):
    rng = np.random.default_rng(4)
    n = 200
    frame = pd.DataFrame({"x": rng.normal(size=n), "region": ["north"] * 190 + ["island"] * 10,
                          "y": rng.choice(["no", "yes"], n)})
    p = prepared.Prepared(train=frame, test=frame.iloc[:0], target="y", problem_type="classification",
                          numeric=["x"], categorical=[], sensitive_columns=["region"])
    report = data.bias_report(p, "yes")
    assert any("'island' has only 10 training rows" in w for w in report["warnings"])
    table = data.bias_tables(report)["region"]
    assert bool(table.loc["island", "too_small"]) and not bool(table.loc["north", "too_small"])


@pytest.mark.parametrize("problem, match", [
    ("single_row", "only 1 row"),
    ("target_all_missing", "entirely missing"),
    ("no_target_column", "not in the data"),
])
def test_bad_tables_are_clear_errors(tmp_path, problem, match):
    frame = pd.DataFrame({"x": np.arange(30.0), "y": ["a", "b"] * 15})
    if problem == "single_row":
        frame = frame.iloc[:1]
    if problem == "target_all_missing":
        frame["y"] = None
    if problem == "no_target_column":
        frame = frame.drop(columns="y")
    params = step2_params(tmp_path, dataset="x.csv", target="y", problem_type="classification")
    with pytest.raises(PlaybookError, match=match):
        ptype, _ = data.resolve_problem_type(frame, params)
        data.check_table(frame, params, ptype)


# --- loaders ---------------------------------------------------------------------------------------


def load(path, **kw) -> pd.DataFrame:
    return datasets.check_loaded(datasets.load_source(str(path), **kw), str(path))


@pytest.mark.parametrize("text, sep", [("a,b\n1,x\n2,y\n", None), ("a;b\n1;x\n2;y\n", None),
                                       ("a\tb\n1\tx\n2\ty\n", None), ("a|b\n1|x\n2|y\n", "|"),
                                       ("\ufeffa,b\n1,x\n2,y\n", None)])
def test_csv_variants(tmp_path, text, sep):
    path = tmp_path / "d.csv"
    path.write_text(text, encoding="utf-8")
    frame = load(path, sep=sep)
    assert list(frame.columns) == ["a", "b"] and frame["b"].tolist() == ["x", "y"]


def test_csv_encoding_parameter(tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes("city,n\nKöln,1\nZürich,2\n".encode("latin-1"))
    with pytest.raises(PlaybookError, match="encoding"):
        load(path)
    assert load(path, encoding="latin-1")["city"].tolist() == ["Köln", "Zürich"]


def test_parquet_and_sqlite(tmp_path):
    frame = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]})
    frame.to_parquet(tmp_path / "d.parquet")
    assert load(tmp_path / "d.parquet").equals(frame)
    db = tmp_path / "d.db"
    with sqlite3.connect(db) as conn:
        frame.to_sql("t", conn, index=False)
    out = load(f"sqlite:///{db}", query="SELECT * FROM t WHERE a > 1")
    assert out["b"].tolist() == ["y", "z"]
    assert load(db, query="SELECT a FROM t")["a"].tolist() == [1, 2, 3]
    with pytest.raises(PlaybookError, match="query failed"):
        load(f"sqlite:///{db}", query="SELECT * FROM missing_table")
    with pytest.raises(PlaybookError, match="no query"):
        load(f"sqlite:///{db}")


@pytest.mark.parametrize("content, match", [
    (b"", "empty"),
    (b"a,b\n", "no rows"),
    (b"a,a\n1,2\n", "duplicated column names"),
    (b"a,b\n1,\xff\xfe\n", "Cannot decode"),
    (b"a,b\n1,2\n3,4,5,6\n", "Cannot parse"),
])
def test_bad_files_are_clear_errors(tmp_path, content, match):
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(PlaybookError, match=match):
        load(path)


def test_snapshot_is_read_once(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("a,y\n" + "".join(f"{i},{'ab'[i % 2]}\n" for i in range(20)))
    params = step2_params(tmp_path / "run", dataset=str(path), target="y", problem_type="classification")
    run = artifacts.open_run(params.run_dir)
    first, prov = datasets.load_snapshot(run, params)
    path.write_text("a,y\n1,a\n")  # the source changes underneath
    again, prov2 = datasets.load_snapshot(run, params)
    assert again.equals(first) and prov2["sha256"] == prov["sha256"] and prov["rows"] == 20


# --- explorers and report ---------------------------------------------------------------------------


def test_explorer_updates_read_precomputed_data(churn):
    _, _, result = churn
    update = data.column_explorer_update(result["raw"], result["profile"], result["issues"])
    text, fig = update("contract")
    assert "inconsistent spellings" in text and fig is not None
    picker = data.imputation_explorer_update(result["prepared"])
    text, fig = picker("monthly_charges", "median", "robust")
    assert "missing values filled by the median" in text and "robust" in text
    missing = int(result["prepared"].X("train")["monthly_charges"].isna().sum())  # the column as models see it
    assert text.startswith(f"monthly_charges: {missing} missing values") and missing > 0
    assert quality.SEVERITIES == ("high", "medium", "low")
