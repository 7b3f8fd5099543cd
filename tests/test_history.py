"""`playbook runs` and `playbook compare`: listing, what changed, the paired bootstrap, bad input, and
the "since the last run" section; step 4's per-row test predictions they rest on."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from helpers.core import artifacts, kpis
from helpers.core.errors import PlaybookError
from helpers.run import cli, history, report
from helpers.steps import modeling
from tests.conftest import run_cli
from tests.synthetic_runs import CONTRACT, labels, make_run, probabilities
from tests.test_modeling import make_inputs


@pytest.fixture(scope="module")
def y() -> np.ndarray:
    return labels()


@pytest.fixture
def base(tmp_path, y):
    return make_run(tmp_path / "runs" / "a", y=y, proba=probabilities(y, 0.5))


def _kpi_rows(comparison: history.Comparison) -> dict[str, dict]:
    return {r["KPI"]: r for r in comparison.kpis.to_dict(orient="records")}


def test_identical_predictions_differ_by_nothing_larger_than_chance(tmp_path, base, y):
    other = make_run(tmp_path / "runs" / "b", y=y, proba=probabilities(y, 0.5), params={"seed": 7},
                     created_at="2026-01-02T10:00:00+00:00")
    c = history.compare_runs([base.path, other.path])
    rows = _kpi_rows(c)
    assert set(rows) == {"recall", "roc_auc"}
    for row in rows.values():
        assert row["difference"] == pytest.approx(0.0) and row["larger than chance"] == "no"
        assert row["paired interval"] == "+0.000 to +0.000"
    assert c.parameters.to_dict(orient="records") == [{"parameter": "seed", "a": "42", "b": "7"}]
    assert c.notes == []


def test_clearly_better_predictions_are_larger_than_chance(tmp_path, base, y):
    better = make_run(tmp_path / "runs" / "b", y=y, proba=probabilities(y, 4.0))
    rows = _kpi_rows(history.compare_runs([base.path, better.path]))
    auc = rows["roc_auc"]
    assert auc["difference"] > 0.1 and auc["larger than chance"] == "yes: better"
    low, high = (float(x) for x in auc["paired interval"].split(" to "))
    assert 0 < low < auc["difference"] < high
    # the other way round it is worse, by the same amount
    rows = _kpi_rows(history.compare_runs([better.path, base.path]))
    assert rows["roc_auc"]["larger than chance"] == "yes: worse"


def test_paired_difference_matches_the_kpi_functions(tmp_path, base, y):
    """The difference is kpis.score on the saved rows: the same number the manifests hold."""
    other = make_run(tmp_path / "runs" / "b", y=y, proba=probabilities(y, 2.0, seed=3))
    row = _kpi_rows(history.compare_runs([base.path, other.path]))["roc_auc"]
    a, b = (pd.read_parquet(r.artifacts / modeling.STEP / modeling.PREDICTIONS_FILE) for r in (base, other))
    expected = (kpis.score("roc_auc", CONTRACT, b["actual"], proba=b["proba"])
                - kpis.score("roc_auc", CONTRACT, a["actual"], proba=a["proba"]))
    assert row["difference"] == pytest.approx(expected)


def test_runs_on_other_data_are_compared_unpaired_with_the_reason(tmp_path, base, y):
    other = make_run(tmp_path / "runs" / "b", y=y, proba=probabilities(y, 4.0), sha256="b" * 64)
    c = history.compare_runs([base.path, other.path])
    assert all(r["larger than chance"] == "not paired" for r in c.kpis.to_dict(orient="records"))
    assert "not paired: the runs read different data" in c.notes[0]
    assert c.data.set_index("data").loc["sha256"].tolist() == ["a" * 16, "b" * 16]
    (other.artifacts / modeling.STEP / modeling.PREDICTIONS_FILE).unlink()
    shutil.copyfile(base.manifest_path, other.manifest_path)  # same data again, but no predictions saved
    assert "b saved no per-row test predictions" in history.compare_runs([base.path, other.path]).notes[0]


def test_issues_that_appear_are_named(tmp_path, base, y):
    issue = {"severity": "high", "check": "target leakage", "column": "minutes"}
    other = make_run(tmp_path / "runs" / "b", y=y, proba=probabilities(y, 1.0), issues=[issue])
    issues = history.compare_runs([base.path, other.path]).issues.set_index("data issues")
    assert issues.loc["new since base", "b"] == "target leakage (minutes, high)"
    assert issues.loc["gone since base", "b"] == "none"


@pytest.mark.parametrize("change, message", [
    ("target", "different questions: a has target 'churn', b has 'price'"),
    ("problem_type", "different questions: a has problem_type 'classification', b has 'regression'"),
])
def test_runs_of_different_problems_are_refused(tmp_path, base, y, change, message):
    other = make_run(tmp_path / "runs" / "b", y=y, proba=probabilities(y, 1.0),
                     **({"target": "price"} if change == "target" else {"problem_type": "regression"}))
    with pytest.raises(PlaybookError, match=message):
        history.compare_runs([base.path, other.path])


def _cli(capsys, *args) -> tuple[int, str, str]:
    """``playbook ARGS`` in this process (a subprocess per case would cost seconds of imports each)."""
    code = cli.main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_bad_input_is_one_clear_message_with_exit_code_2(tmp_path, base, capsys):
    (tmp_path / "empty").mkdir()
    damaged = tmp_path / "runs" / "damaged"
    damaged.mkdir()
    (damaged / "manifest.json").write_text('{"steps": [', encoding="utf-8")
    for args, message in [((base.path, tmp_path / "empty"), "is not a run folder (no manifest.json)"),
                          ((base.path, damaged), "The manifest of"),
                          ((base.path, tmp_path / "missing"), "is not a folder"),
                          ((base.path, base.path), "The same run is given twice"),
                          ((base.path,), "compare needs at least two run folders")]:
        code, _, err = _cli(capsys, "compare", *args)
        assert code == 2 and message in err and err.count("error:") == 1, err
    before = base.manifest_path.read_bytes()
    result = run_cli("compare", str(base.path), str(damaged))  # once as a user runs it
    assert result.returncode == 2 and "The manifest of" in result.stderr and "Traceback" not in result.stderr
    assert base.manifest_path.read_bytes() == before  # nothing written


def test_runs_lists_every_run_of_a_folder(tmp_path, base, y, capsys):
    make_run(tmp_path / "runs" / "b", y=y, proba=probabilities(y, 0.0), created_at="2026-01-03T10:00:00+00:00")
    damaged = tmp_path / "runs" / "c"
    damaged.mkdir()
    (damaged / "manifest.json").write_text("[1, 2]", encoding="utf-8")
    table = history.list_runs(tmp_path / "runs")
    assert table["run"].tolist() == ["c", "a", "b"]  # the damaged one has no date
    a = table.set_index("run").loc["a"]
    assert a["data"] == "aaaaaaaaaaaa (2,000 rows)" and a["champion"] == "logistic_regression v1"
    assert a["KPIs"] == "2/2 pass" and a["status"] == "succeeded"
    assert table.set_index("run").loc["b", "KPIs"] == "0/2 pass, 2 fail"
    assert table.set_index("run").loc["c", "status"] == "damaged manifest"
    code, out, _ = _cli(capsys, "runs", tmp_path / "runs")
    assert code == 0 and out.splitlines()[0].split() == ["run", "date", "data", "champion", "KPIs", "status"]
    assert "0/2 pass, 2 fail" in out
    code, _, err = _cli(capsys, "runs", tmp_path / "nowhere")
    assert code == 2 and "is not a folder" in err


def test_compare_writes_an_escaped_offline_html_page(tmp_path, y, capsys):
    nasty = "<script>alert(1)</script>"
    a = make_run(tmp_path / "runs" / "a", y=y, proba=probabilities(y, 1.0), params={"problem_statement": "x"})
    b = make_run(tmp_path / "runs" / "b", y=y, proba=probabilities(y, 4.0), params={"problem_statement": nasty})
    out = tmp_path / "compare.html"
    code, stdout, err = _cli(capsys, "compare", a.path, b.path, "--html", out)
    assert code == 0, err
    assert "yes: better" in stdout and "problem_statement" in stdout
    page = out.read_text(encoding="utf-8")
    assert nasty not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "http://" not in page and "https://" not in page and "<script" not in page
    assert 'class="better">yes: better' in page


def test_since_last_run_compares_with_the_latest_earlier_run_of_the_project(tmp_path, base, y):
    assert history.since_last_run(base.path) is None  # the first run of the project
    make_run(tmp_path / "runs" / "other-project", y=y, proba=probabilities(y, 1.0), project="other",
             created_at="2026-01-01T12:00:00+00:00")
    make_run(tmp_path / "runs" / "other-target", y=y, proba=probabilities(y, 1.0), target="tenure",
             created_at="2026-01-01T12:00:00+00:00")
    latest = make_run(tmp_path / "runs" / "b", y=y, proba=probabilities(y, 4.0), params={"seed": 7},
                      created_at="2026-01-02T10:00:00+00:00")
    text = history.since_last_run(latest.path)
    assert text.startswith("### Since the last run of this project")
    assert "Compared with `a`" in text and "**Parameters:** `seed`." in text
    assert "**Data:** the same" in text and "**Champion:** logistic_regression v1 (unchanged)." in text
    assert "larger than chance: yes: better." in text
    assert history.previous_run(latest.path).name == "a"
    section = report.since_last_run_section(latest)  # the report shows it after the steps' sections
    assert section.anchor == "since-last-run" and section.takeaway.startswith("Compared with a (")
    assert "<strong>Parameters:</strong> <code>seed</code>." in str(section.render())
    assert report.since_last_run_section(base) is None
    assert report.since_last_run_section in report.EXTRA_SECTIONS


def test_step4_saves_the_per_row_test_predictions(tmp_path):
    inputs = make_inputs("classification")
    tuning = modeling.tune(inputs, ["logistic_regression"], "random", 1, 60)
    pipe = modeling.best_pipeline(inputs, tuning)
    final = modeling.final_evaluation(inputs, pipe, modeling.choose_threshold(inputs, pipe), n_boot=20)
    run = artifacts.open_run(tmp_path / "run")
    modeling.save(run, modeling.ModelingResult(inputs, modeling.leaderboard(inputs), tuning, None, final, seconds=1.0))
    saved = pd.read_parquet(run.artifacts / modeling.STEP / modeling.PREDICTIONS_FILE)
    assert saved.index.name == "row" and saved.index.tolist() == inputs.prepared.test.index.tolist()
    assert list(saved.columns) == ["actual", "predicted", "proba"]
    np.testing.assert_array_equal(saved["predicted"].to_numpy(), final.y_pred)
    # the saved rows reproduce the step's KPIs exactly
    scores = kpis.score_all(inputs.contract, saved["actual"], saved["predicted"], saved["proba"])
    assert scores == pytest.approx(dict(zip(final.table["metric"], final.table["achieved"], strict=True)))


def test_multiclass_predictions_keep_one_probability_column_per_class():
    inputs = make_inputs("classification")
    contract = kpis.KpiContract("classification", {"accuracy": 0.5}, None, "macro", ["a", "b", "c"])
    inputs = modeling.Inputs(inputs.prepared, contract)
    proba = np.tile([0.2, 0.3, 0.5], (len(inputs.prepared.test), 1))
    final = modeling.Final(None, pd.DataFrame(), pd.DataFrame(), np.array(["a"] * len(proba)),
                           np.array(["c"] * len(proba)), proba)
    frame = modeling.test_predictions(inputs, final)
    assert list(frame.columns) == ["actual", "predicted", "proba:a", "proba:b", "proba:c"]
    assert frame["proba:c"].eq(0.5).all()


def test_demo_run_compared_with_an_altered_copy(tmp_path, demo_run):
    """The demo's own saved predictions pair with themselves; an altered manifest shows up as changed."""
    copy = tmp_path / "runs" / "copy"
    shutil.copytree(demo_run.path, copy, ignore=shutil.ignore_patterns("*.ipynb"))
    manifest = json.loads((copy / "manifest.json").read_text(encoding="utf-8"))
    manifest["parameters"]["cv_folds"] = 9
    manifest["kpis"][0]["achieved"] -= 0.05
    (copy / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    c = history.compare_runs([demo_run.path, copy])
    assert c.parameters["parameter"].tolist() == ["cv_folds"]
    rows = c.kpis.to_dict(orient="records")
    assert rows[0]["difference"] == pytest.approx(-0.05)
    # the paired bootstrap reads the per-row predictions, which are the same: nothing beyond chance
    assert {r["larger than chance"] for r in rows} == {"no"} and c.notes == []


def test_multiclass_runs_are_paired_on_their_class_probabilities(tmp_path, y):
    contract = kpis.KpiContract("classification", {"accuracy": 0.5, "roc_auc": 0.6}, None, "macro", ["a", "b", "c"])
    truth = np.array(["a", "b", "c"] * 100, dtype=object)
    rng = np.random.default_rng(0)
    runs = []
    for name, skill in (("a", 0.3), ("b", 3.0)):
        proba = rng.dirichlet([1, 1, 1], len(truth)) + skill * (truth[:, None] == np.array(["a", "b", "c"]))
        proba /= proba.sum(axis=1, keepdims=True)
        predicted = np.array(["a", "b", "c"], dtype=object)[proba.argmax(axis=1)]
        run = make_run(tmp_path / "runs" / name, y=y, proba=probabilities(y, 1.0))
        frame = pd.DataFrame({"actual": truth, "predicted": predicted,
                              **{f"proba:{c}": proba[:, i] for i, c in enumerate(contract.classes)}})
        run.write_table(modeling.STEP, modeling.PREDICTIONS_FILE, frame.rename_axis("row"))
        table = kpis.kpi_intervals(contract, truth, predicted, proba, n_boot=20)
        run.update_manifest(kpis=table.to_dict(orient="records"))
        summary = run.read_summary("01_vision_and_goals")
        run.write_summary("01_vision_and_goals", {**summary, "contract": contract.to_dict()})
        runs.append(run)
    rows = _kpi_rows(history.compare_runs([r.path for r in runs], n_boot=200))
    assert rows["accuracy"]["larger than chance"] == rows["roc_auc"]["larger than chance"] == "yes: better"
