"""Built-in data, presets, the churn generator and the loaders."""

from __future__ import annotations

import sqlite3

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from helpers.core import datasets, kpis
from helpers.core.artifacts import open_run
from helpers.core.errors import PlaybookError


@pytest.fixture(scope="module")
def churn():
    return datasets.make_churn()


def test_churn_is_deterministic_and_sized(churn):
    again = datasets.make_churn()
    pd.testing.assert_frame_equal(churn, again)
    assert len(churn) > 4000
    assert not datasets.make_churn(seed=8).equals(churn)


def test_churn_has_each_documented_fault(churn):
    assert churn["monthly_charges"].isna().mean() > 0.02
    assert churn["payment_method"].isna().mean() > 0.03
    assert churn.duplicated().sum() > 0.01 * len(churn)
    assert churn["customer_id"].duplicated().sum() == churn.duplicated().sum()
    variants = set(churn["contract"].unique())
    assert {"Month-to-month", "month-to-month", "Month to month"} <= variants
    assert {"Yes", "yes", "Y"} <= set(churn["has_partner"].unique())
    assert not pd.api.types.is_numeric_dtype(churn["total_charges"]) and (churn["total_charges"] == " ").any()
    assert churn["country"].nunique() == 1
    charges = churn["monthly_charges"].dropna()
    assert (charges > 3 * charges.quantile(0.99)).any()  # the x10 units error
    assert churn["churn"].notna().all() and set(churn["churn"]) == {"yes", "no"}


def test_churn_leak_auc(churn):
    auc = roc_auc_score(churn["churn"] == "yes", churn["retention_call_minutes"])
    assert auc >= 0.995


@pytest.mark.parametrize("name", datasets.builtin_names())
def test_every_builtin_loads_offline_with_a_valid_preset(name):
    frame = datasets.load_builtin(name)
    preset = datasets.preset_for(f"builtin:{name}")
    assert len(frame) > 100
    kpis.validate_kpis(preset["kpis"], preset["problem_type"])
    if preset["target"]:
        assert preset["target"] in frame.columns
    else:
        assert "cultivar" not in frame.columns  # label columns are dropped for clustering


def test_problem_types_covered():
    types = {datasets.preset_for(f"builtin:{n}")["problem_type"] for n in datasets.builtin_names()}
    assert types == {"classification", "regression", "clustering"}


def test_csv_delimiter_detected_and_encoding(tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes("a;b;name\n1;2;Zoë\n3;4;Ana\n".encode("latin-1"))
    with pytest.raises(PlaybookError, match="encoding parameter"):
        datasets.load_source(str(path))
    frame = datasets.load_source(str(path), encoding="latin-1")
    assert list(frame.columns) == ["a", "b", "name"] and frame.loc[0, "name"] == "Zoë"


@pytest.mark.parametrize(("content", "fragment"), [
    (b"", "is empty"),
    (b"a,b,c\n", "header but no rows"),
    (b"a,b,a\n1,2,3\n", "duplicated column names"),
])
def test_bad_files(tmp_path, content, fragment):
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(PlaybookError, match=fragment):
        datasets.check_loaded(datasets.load_source(str(path)), str(path))


def test_missing_file_and_zero_byte_parquet(tmp_path):
    with pytest.raises(PlaybookError, match="does not exist"):
        datasets.load_source(str(tmp_path / "nope.csv"))
    (tmp_path / "z.parquet").write_bytes(b"")
    with pytest.raises(PlaybookError, match="empty"):
        datasets.load_source(str(tmp_path / "z.parquet"))


def test_parquet_and_sqlite(tmp_path):
    frame = pd.DataFrame({"x": [1.0, 2.0], "y": ["a", "b"]})
    frame.to_parquet(tmp_path / "d.parquet")
    pd.testing.assert_frame_equal(datasets.load_source(str(tmp_path / "d.parquet")), frame)
    db = tmp_path / "d.db"
    with sqlite3.connect(db) as conn:
        frame.to_sql("t", conn, index=False)
    got = datasets.load_source(f"sqlite:///{db}", query="SELECT * FROM t")
    pd.testing.assert_frame_equal(got, frame)
    with pytest.raises(PlaybookError, match="SQL query failed"):
        datasets.load_source(f"sqlite:///{db}", query="SELECT * FROM missing_table")
    with pytest.raises(PlaybookError, match="no query"):
        datasets.load_source(f"sqlite:///{db}")


def test_snapshot_is_read_once_and_provenance_recorded(tmp_path):
    csv = tmp_path / "d.csv"
    pd.DataFrame({"x": np.arange(30), "t": ["a", "b", "c"] * 10}).to_csv(csv, index=False)
    run = open_run(str(tmp_path / "run"))
    params = {"dataset": str(csv), "encoding": "utf-8", "sep": None, "query": None}
    frame, prov = datasets.load_snapshot(run, params)
    assert prov["rows"] == 30 and prov["columns"] == 2 and len(prov["sha256"]) == 64
    assert run.read_manifest()["dataset"]["sha256"] == prov["sha256"]
    csv.write_text("x,t\n1,z\n")  # the source changes underneath: the run keeps its snapshot
    again, _ = datasets.load_snapshot(run, params)
    pd.testing.assert_frame_equal(again, frame)


def test_churn_in_chunks_keeps_ids_unique_across_chunks(tmp_path):
    path = datasets.write_churn_parquet(tmp_path / "churn.parquet", 5000, chunk_rows=1200, seed=3)
    table = pd.read_parquet(path)
    assert len(table) > 5000  # every chunk adds its own duplicate rows
    # an id repeats only on an exact copy of its row: chunks never restart the ids
    assert table["customer_id"].duplicated().sum() == table.duplicated().sum() > 0
    assert table["customer_id"].nunique() == 5000
    first, second = list(datasets.churn_chunks(2400, chunk_rows=1200, seed=3))
    assert not set(first["customer_id"]) & set(second["customer_id"])
