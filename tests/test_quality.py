"""Each quality check on a small hand-made frame with exactly one fault, and on a clean frame."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from helpers.steps.foundation import quality


@pytest.fixture
def clean() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 60
    return pd.DataFrame({
        "age": rng.integers(20, 70, n).astype(float),
        "income": rng.normal(50, 10, n).round(2),
        "city": rng.choice(["Paris", "Lyon", "Nice"], n),
        "member": rng.choice(["yes", "no"], n),
        "label": rng.choice(["a", "b"], n),
    })


def only(issues: list[dict], check: str) -> list[dict]:
    return [i for i in issues if i["check"] == check]


def test_clean_frame_raises_no_issue(clean):
    kinds = {c: quality.semantic_type(clean[c]) for c in clean.columns}
    found = (quality.check_missing(clean, "label") + quality.check_numeric_text(clean) + quality.check_spellings(clean)
             + quality.check_duplicates(clean) + quality.check_constant(clean) + quality.check_identifiers(clean)
             + quality.check_high_cardinality(clean, kinds) + quality.check_outliers(clean, kinds)
             + quality.check_conflicting_labels(clean, "label", ["age", "income", "city", "member"]))
    assert found == []


def test_missing_values_counts_blanks_and_rates_severity(clean):
    clean.loc[:5, "city"] = " "
    clean.loc[:40, "income"] = np.nan
    found = {i["column"]: i for i in quality.check_missing(clean)}
    assert set(found) == {"city", "income"}
    assert found["city"]["evidence"].startswith("6 of 60")
    assert found["city"]["severity"] == "medium"
    assert found["income"]["severity"] == "high"  # 41 of 60 missing


def test_missing_target_is_high(clean):
    clean.loc[3, "label"] = None
    (found,) = quality.check_missing(clean, "label")
    assert found["severity"] == "high" and "target" in found["evidence"]


def test_numbers_stored_as_text(clean):
    clean["income"] = [f"{v:.2f}" for v in clean["income"]]
    clean.loc[2, "income"] = " "
    (found,) = quality.check_numeric_text(clean)
    assert found["column"] == "income" and "1 blank" in found["evidence"]
    assert quality.semantic_type(clean["income"]) == "numeric"


def test_inconsistent_spellings_case_whitespace_and_abbreviations(clean):
    clean.loc[0, "member"] = "Y"
    clean.loc[1, "member"] = "yes "
    clean.loc[2, "city"] = "paris"
    found = {i["column"]: i for i in quality.check_spellings(clean)}
    assert set(found) == {"member", "city"}
    groups = quality.spelling_groups(clean["member"])
    assert set(groups["yes"]) == {"yes", "Y", "yes "}


def test_duplicate_rows_and_conflicting_ids(clean):
    clean["id"] = [f"C{i}" for i in range(len(clean))]
    doubled = pd.concat([clean, clean.iloc[:3]], ignore_index=True)
    (found,) = quality.check_duplicates(doubled, "id")
    assert found["check"] == "duplicate rows" and found["evidence"].startswith("3 rows")
    clash = doubled.copy()
    clash.loc[len(clean), "age"] = 999  # same id, different content
    assert {i["check"] for i in quality.check_duplicates(clash, "id")} == {"duplicate rows", "conflicting ids"}


def test_constant_and_near_constant(clean):
    clean["country"] = "NL"
    found = quality.check_constant(clean)
    assert [(i["column"], i["check"]) for i in found] == [("country", "constant column")]
    big = pd.DataFrame({"flag": ["x"] * 199 + ["y"]})
    assert quality.check_constant(big)[0]["check"] == "near-constant column"


def test_identifier_column(clean):
    clean["customer_id"] = [f"C{1000 + i}" for i in range(len(clean))]
    (found,) = quality.check_identifiers(clean)
    assert found["column"] == "customer_id" and found["severity"] == "medium"
    (declared,) = quality.check_identifiers(clean, id_column="customer_id")
    assert declared["severity"] == "low"


def test_high_cardinality_category():
    frame = pd.DataFrame({"shop": [f"shop {i % 80}" for i in range(400)]})
    (found,) = quality.check_high_cardinality(frame, {"shop": "categorical"})
    assert "80 distinct" in found["evidence"]


def test_outliers_robust_rule_flags_units_error():
    frame = pd.DataFrame({"income": np.random.default_rng(1).normal(50, 10, 300).round(2)})
    frame.loc[0, "income"] = frame["income"].median() * 10
    (found,) = quality.check_outliers(frame, {"income": "numeric"})
    assert found["column"] == "income" and "units error" in found["evidence"]
    assert quality.outlier_share(frame["income"]) == pytest.approx(1 / 300)


def test_conflicting_labels(clean):
    twin = clean.iloc[[0]].copy()
    twin["label"] = "b" if clean.loc[0, "label"] == "a" else "a"
    frame = pd.concat([clean, twin], ignore_index=True)
    (found,) = quality.check_conflicting_labels(frame, "label", ["age", "income", "city", "member"])
    assert found["evidence"].startswith("2 rows")


def test_conflicting_labels_group_missing_values_and_text_columns_of_any_dtype(clean):
    clean.loc[0, "income"] = np.nan  # a missing value matches a missing value
    twin = clean.iloc[[0]].copy()
    twin["label"] = "b" if clean.loc[0, "label"] == "a" else "a"
    near = clean.iloc[[1]].copy()
    near["income"] += 0.01  # a different value: not the same features
    near["label"] = "b" if clean.loc[1, "label"] == "a" else "a"
    frame = pd.concat([clean, twin, near], ignore_index=True)
    for city_dtype in (object, "string"):  # numpy objects and pandas strings (Parquet snapshots) alike
        typed = frame.astype({"city": city_dtype, "member": city_dtype})
        (found,) = quality.check_conflicting_labels(typed, "label", ["age", "income", "city", "member"])
        assert found["evidence"].startswith("2 rows (") and "in 1 groups" in found["evidence"]


def test_text_shares_count_every_cell_whatever_the_string_dtype():
    values = [" 12.5", "12.5 ", "12.5", "1,000", "n/a", " ", None, "abc"] * 5 + [7]  # 7: a number among strings
    for dtype in (object, "string"):
        series = pd.Series(values[:-1], dtype=dtype)  # strings only: counted once per distinct value
        assert quality.numeric_text_share(series) == pytest.approx(4 / 5)  # 12.5 x3 and 1,000 of 5 non-blank
    mixed = pd.Series(values, dtype=object)  # a mixed column is stripped cell by cell, as before
    assert quality.numeric_text_share(mixed) == pytest.approx(21 / 26)


def test_leakage_issue_from_suspects_table():
    table = pd.DataFrame({"column": ["leak", "kept_one", "ok"], "metric": ["roc_auc"] * 3, "score": [0.999, 0.95, 0.7],
                          "score_with": [0.995, 0.96, None], "score_without": [0.81, 0.83, None],
                          "post_outcome_word": [None, None, None], "finding": ["suspect", "kept", ""],
                          "suspect": [True, False, False], "reason": ["near-perfect alone (at least 0.99)", "r", ""]})
    high, low = quality.check_leakage(table)
    assert high["column"] == "leak" and high["severity"] == "high" and "0.999" in high["evidence"]
    assert "0.810 without it and 0.995 with it" in high["evidence"] and "keep_columns: [leak]" in high["fix"]
    assert low["column"] == "kept_one" and low["severity"] == "low" and "kept by keep_columns" in low["fix"]


def test_semantic_types():
    n = 40
    frame = pd.DataFrame({
        "n": np.arange(n) * 1.5, "flag": ["Y", "N"] * 20, "when": pd.date_range("2024-01-01", periods=n).astype(str),
        "note": [f"the customer said thing number {i} today" for i in range(n)], "cat": ["a", "b", "c", "d"] * 10,
        "code": [f"X{i:04d}" for i in range(n)],
    })
    kinds = quality.profile(frame).set_index("column")["semantic_type"].to_dict()
    assert kinds == {"n": "numeric", "flag": "boolean", "when": "datetime", "note": "free text", "cat": "categorical",
                     "code": "identifier"}


def test_profile_numbers(clean):
    clean.loc[:2, "age"] = np.nan
    row = quality.profile(clean).set_index("column").loc["age"]
    assert row["missing_share"] == pytest.approx(3 / 60)
    assert row["min"] == clean["age"].min() and row["max"] == clean["age"].max()
    facts = quality.dataset_facts(clean, "label")
    assert facts["rows"] == 60 and facts["duplicate_rows"] == 0 and set(facts["class_balance"]) == {"a", "b"}


def test_issues_table_orders_by_severity():
    table = quality.issues_table([quality.issue("b", "x", "low", "e", "f"), quality.issue("a", None, "high", "e", "f")])
    assert list(table["severity"]) == ["high", "low"]
    assert table.loc[0, "column"] is None
