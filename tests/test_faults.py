"""Teaching faults (helpers.core.faults): each fault alone, injected into a clean built-in table, fires its
own check and no other high-severity finding; injection is seeded; bad names are one clear error.

The checks are the real ones: step 2's quality checks (``data.find_issues`` on the training side, with
its leakage check), step 2's class balance and step 1's set-aside screen. The end-to-end teaching run
(manifest record, marked issues, the report's notice) is the wine scenario of tests/test_scenarios.py.
"""

from __future__ import annotations

import pandas as pd
import pytest

from helpers.core import artifacts, config, datasets, faults
from helpers.core.errors import PlaybookError
from helpers.steps import vision
from helpers.steps.foundation import data, quality

# Regression (diabetes: 442 rows, fast leakage check) for the column and row faults; wine for the class faults.
TABLE = {"leak": "diabetes", "duplicates": "diabetes", "spelling": "diabetes", "missing": "diabetes",
         "numbers_as_text": "diabetes", "constant": "diabetes", "identifier": "diabetes", "outliers": "diabetes",
         "imbalance": "wine"}


def _params(name: str, **extra) -> config.Params:
    return config.Params(config.merge({"dataset": f"builtin:{name}", **extra}))


def _step2(frame: pd.DataFrame, params) -> tuple[pd.DataFrame, list[dict], str]:
    """Step 2's findings on the training side of ``frame``: (training side, issues, problem type)."""
    ptype, _ = data.resolve_problem_type(frame, params)
    train = frame[~data.hold_out(frame, params, ptype)]
    leaks, _ = data.leakage_check(train, params, ptype)
    return train, data.find_issues(train, params, quality.profile(train), leaks), ptype


def _inject(name: str, fault: str, seed: int = 42):
    params = _params(name)
    return faults.inject(datasets.load_builtin(name), [fault], target=params["target"],
                         problem_type=params["problem_type"], seed=seed)


@pytest.fixture(scope="module")
def clean_findings():
    """The clean tables' own step-2 findings: what a fault's issue must not already be."""
    return {name: _step2(datasets.load_builtin(name), _params(name))[1] for name in set(TABLE.values())}


def test_every_fault_is_documented():
    assert list(faults.FAULTS) == ["leak", "duplicates", "spelling", "missing", "numbers_as_text", "constant",
                                   "identifier", "imbalance", "outliers"]
    for name, fault in faults.FAULTS.items():
        assert fault.name == name and fault.what and fault.teaches.endswith(".") and fault.finds.startswith("step ")
        assert fault.check in {None, *(f.check for f in faults.FAULTS.values())}
    with pytest.raises(AttributeError):
        faults.FAULTS["leak"].what = "x"  # frozen


@pytest.mark.parametrize("fault", [f for f in faults.FAULTS if f != "imbalance"])
def test_each_fault_alone_fires_its_own_check_and_no_other_severe_finding(fault, clean_findings):
    name = TABLE[fault]
    params = _params(name)
    faulted, record = _inject(name, fault)
    entry = record["faults"][fault]
    columns = entry["columns"] or [None]
    _, issues, _ = _step2(faulted, params)

    own = [i for i in issues if i["check"] == faults.FAULTS[fault].check and i["column"] in columns]
    assert own, f"{fault}: {entry} fired no {faults.FAULTS[fault].check!r} issue: {issues}"
    assert all(i["injected"] and i["fault"] == fault and i["evidence"].startswith("injected for teaching") for i in own)
    assert not [i for i in clean_findings[name] if i["check"] == own[0]["check"] and i["column"] in columns]
    severe = [i for i in issues if i["severity"] == "high" and i not in own]
    assert not severe, f"{fault} caused other high-severity findings: {severe}"
    assert [i for i in issues if i.get("injected")] == own  # nothing else is marked as injected
    assert [i for i in clean_findings[name] if i["severity"] == "high"] == []


def test_imbalance_makes_the_class_balance_warn_and_nothing_severe(clean_findings):
    params = _params("wine")
    faulted, record = _inject("wine", "imbalance")
    train, issues, _ = _step2(faulted, params)
    clean = datasets.load_builtin("wine")
    assert data.class_balance(clean["cultivar"])["imbalance_ratio"] < 3
    balance = data.class_balance(train["cultivar"])
    assert balance["imbalance_ratio"] >= 3 and balance["advice"].startswith("imbalanced")
    assert balance["minority"] == clean["cultivar"].value_counts().index[-1]
    assert record["faults"]["imbalance"]["rows"] == len(clean) - len(faulted)
    assert not [i for i in issues if i["severity"] == "high" or i.get("injected")]


def test_step1_sets_the_injected_leak_and_identifier_aside():
    """Classification here (step 2's test of the leak above is on a regression table)."""
    params = _params("wine")
    faulted, record = faults.inject(datasets.load_builtin("wine"), ["leak", "identifier"], target="cultivar",
                                    problem_type="classification", seed=0)
    train = faulted[~data.hold_out(faulted, params, "classification")]
    screen = vision.set_aside_columns(train, params, "classification", train["cultivar"])
    assert screen["leakage"] == record["faults"]["leak"]["columns"] == ["followup_score"]
    assert screen["identifiers"] == record["faults"]["identifier"]["columns"] == ["record_id"]
    assert screen["leakage_suspects"][0]["score"] >= 0.99


def test_spelling_uses_a_text_column_when_there_is_one():
    frame = datasets.load_builtin("wine")
    frame["region"] = pd.Series(["north", "south", "east"] * 60).iloc[:len(frame)].to_numpy()
    out, record = faults.inject(frame, ["spelling"], target="cultivar", problem_type="classification", seed=1)
    assert record["faults"]["spelling"]["columns"] == ["region"] and list(out.columns) == list(frame.columns)
    assert quality.check_spellings(out)[0]["column"] == "region" and not quality.check_spellings(frame)
    assert set(out["region"].str.strip().str.lower()) == {"north", "south", "east"}


def test_injection_is_seeded_and_leaves_the_input_alone():
    frame = datasets.load_builtin("wine")
    before = frame.copy()
    names = ["missing", "outliers", "duplicates", "spelling", "numbers_as_text", "leak"]
    one = faults.inject(frame, names, target="cultivar", problem_type="classification", seed=3)
    two = faults.inject(frame, names, target="cultivar", problem_type="classification", seed=3)
    other = faults.inject(frame, names, target="cultivar", problem_type="classification", seed=4)
    pd.testing.assert_frame_equal(one[0], two[0])
    assert one[1] == two[1] and list(one[1]["faults"]) == names  # in the order they were listed
    assert not one[0].equals(other[0])
    pd.testing.assert_frame_equal(frame, before)
    assert faults.record_of(one[0]) == one[1] and faults.record_of(one[0][one[0].index > 5]) == one[1]
    assert faults.inject(frame, [], target="cultivar", problem_type="classification", seed=3)[0] is frame


def test_faults_never_touch_the_target_or_excluded_columns():
    frame = datasets.load_builtin("diabetes")
    names = ["missing", "outliers", "numbers_as_text", "spelling"]
    out, record = faults.inject(frame, names, target="progression", problem_type="regression", seed=0,
                                exclude=["age", "sex", "bmi", "bp", "s1"])
    touched = {c for e in record["faults"].values() for c in e["columns"]}
    assert touched.isdisjoint({"progression", "age", "sex", "bmi", "bp", "s1"})
    pd.testing.assert_series_equal(out["progression"], frame["progression"])
    assert len(touched) == len(names)  # a different column per fault where the table has enough


def test_bad_fault_names_and_misfits_are_one_clear_error():
    frame = datasets.load_builtin("wine")
    with pytest.raises(PlaybookError, match=r"Unknown teaching fault 'leek'.*leak, duplicates, spelling, missing, "
                                            r"numbers_as_text, constant, identifier, imbalance, outliers"):
        faults.inject(frame, ["leek"], target="cultivar", problem_type="classification", seed=0)
    with pytest.raises(PlaybookError, match="Unknown teaching faults 'x', 'y'"):
        config.merge({"dataset": "builtin:wine", "teaching_faults": ["x", "missing", "y"]})
    with pytest.raises(PlaybookError, match="'imbalance' needs classes, and this problem is regression"):
        config.merge({"dataset": "builtin:diabetes", "teaching_faults": ["imbalance"]})
    with pytest.raises(PlaybookError, match="'leak' needs a target"):
        config.merge({"dataset": "builtin:wine_segments", "teaching_faults": ["leak"]})
    with pytest.raises(PlaybookError, match="'leak' needs a target"):
        faults.inject(frame.drop(columns="cultivar"), ["leak"], target=None, problem_type="auto", seed=0)
    with pytest.raises(PlaybookError, match="'imbalance' needs classes"):  # "auto": settled from the target
        faults.inject(datasets.load_builtin("diabetes"), ["imbalance"], target="progression", problem_type="auto", seed=0)
    with pytest.raises(PlaybookError, match="data_engine is duckdb"):
        config.merge({"dataset": "data.csv", "target": "y", "data_engine": "duckdb", "teaching_faults": ["missing"]})
    with pytest.raises(PlaybookError, match="'outliers' needs a numeric feature"):
        faults.inject(pd.DataFrame({"y": ["a", "b"] * 20, "c": ["u", "v", "w", "x"] * 10}), ["outliers"], target="y",
                      problem_type="classification", seed=0)
    assert config.merge({"dataset": "builtin:wine", "teaching_faults": "missing"})["teaching_faults"] == ["missing"]


def test_the_snapshot_carries_the_faults_into_the_manifest_and_says_so(tmp_path, capsys):
    run = artifacts.open_run(tmp_path / "run")
    params = _params("diabetes", teaching_faults=["constant", "duplicates"])
    frame, provenance = datasets.load_snapshot(run, params)
    record = run.read_manifest()["teaching_faults"]
    assert list(record["faults"]) == ["constant", "duplicates"] and record["seed"] == params["seed"]
    assert record["faults"]["constant"]["columns"] == ["source_system"] and provenance["rows"] == 442 + 26
    assert faults.record_of(frame) == record
    notice = capsys.readouterr().out
    assert notice.startswith("Teaching run: injected faults constant (source_system), duplicates (26 rows).")
    again, _ = datasets.load_snapshot(run, params)  # read back: the same table and record, the notice again
    pd.testing.assert_frame_equal(again, frame, check_dtype=False)
    assert faults.record_of(again) == record and "Teaching run" in capsys.readouterr().out
    with pytest.raises(PlaybookError, match="teaching_faults"):  # a run folder never mixes two tables
        datasets.load_snapshot(run, _params("diabetes", teaching_faults=["missing"]))

    clean_run = artifacts.open_run(tmp_path / "clean")
    clean, _ = datasets.load_snapshot(clean_run, _params("diabetes"))
    assert clean_run.read_manifest()["teaching_faults"] is None and faults.record_of(clean) is None
    assert capsys.readouterr().out == ""


def test_issue_tables_of_runs_without_faults_keep_their_columns():
    issues = [quality.issue("outliers", "a", "low", "e", "f"), quality.issue("missing values", "b", "medium", "e", "f")]
    assert faults.mark_issues(issues, None) == issues
    assert list(quality.issues_table(issues).columns) == quality.ISSUE_COLUMNS
    record = {"seed": 0, "faults": {"missing": {"columns": ["b"], "rows": 3, "check": "missing values"}}}
    table = quality.issues_table(faults.mark_issues(issues, record))
    assert list(table.columns) == [*quality.ISSUE_COLUMNS, "injected", "fault"]
    assert table.set_index("column").loc["b", "injected"] and not table.set_index("column").loc["a", "injected"]
    assert table.set_index("column").loc["b", "evidence"] == "injected for teaching (fault missing): e"
