"""Step 4's notebook end to end under papermill: demo, regression and clustering configurations.

The demo is the session's shared `playbook run`; the regression and clustering configurations write step 1's contract and step 2's hand-over with the helpers
(quicker, and independent of those notebooks), then execute step 4 through papermill.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest

from helpers.core import modelio
from helpers.core.exercises import MIME_TYPE

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "playbook"
STEP4 = "04_model_development"
FAST4 = ["-p", "cv_folds", "3", "-p", "tuning_iterations", "2"]

pytestmark = pytest.mark.slow


def papermill(step: str, out: Path, run_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "papermill", str(NOTEBOOKS / f"{step}.ipynb"), str(out / f"{step}.ipynb"),
           "-p", "run_dir", str(run_dir), "-p", "interactive", "False", "--no-progress-bar", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900)


def fake_upstream(run_dir: Path, name: str, kpi: dict, heuristic: str | None) -> None:
    """Step 1's contract and step 2's hand-over for a built-in, written with the helpers."""
    from helpers.core import artifacts, datasets, features, kpis, prepared, split

    run = artifacts.open_run(run_dir)
    preset = datasets.preset_for(f"builtin:{name}")
    frame = datasets.load_builtin(name)
    target, problem_type = preset["target"], preset["problem_type"]
    test = split.assign_test(frame, target=target, problem_type=problem_type, test_size=0.2, seed=42)
    numeric, categorical = features.split_kinds(frame, features.feature_columns(frame, {"target": target}))
    prepared.save_prepared(run, prepared.Prepared(frame[~test], frame[test], target, problem_type, numeric, categorical))
    contract = kpis.KpiContract(problem_type, kpi)
    run.write_summary("01_vision_and_goals", {"contract": contract.to_dict(),
                                              "heuristic": {"column": heuristic, "rule": "a one-column rule"}})
    run.write_summary("02_data_foundation", {"split": {"test_rows": int(test.sum())}})


def run_step4_only(folder: Path, name: str, kpi: dict, heuristic: str | None) -> Path:
    run_dir = folder / "run"
    fake_upstream(run_dir, name, kpi, heuristic)
    done = papermill(STEP4, folder, run_dir, *FAST4)
    assert done.returncode == 0, done.stderr[-3000:]
    return run_dir


def passed_exercises(executed) -> list[str]:
    """The exercises whose check passed in an executed step 4 notebook (read back from the feedback outputs)."""
    return [o["data"][MIME_TYPE]["exercise"] for c in executed.cells if c.metadata.get("exercise")
            for o in c.outputs if MIME_TYPE in o.get("data", {}) and o["data"][MIME_TYPE]["passed"]]


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "artifacts" / STEP4 / "summary.json").read_text())


@pytest.fixture(scope="module")
def churn_run(demo_run) -> Path:
    """The session's shared demo run (tests/conftest.py): steps 1 -> 5 by `playbook run`."""
    return demo_run.path


def test_demo_scoreboard_champion_and_model_file(churn_run):
    s = summary(churn_run)
    assert s["problem_type"] == "classification" and s["selection_metric"] == "roc_auc"
    assert [k["metric"] for k in s["kpis"]] == ["recall", "precision", "roc_auc"]
    for k in s["kpis"]:
        assert k["ci_low"] <= k["achieved"] <= k["ci_high"] and isinstance(k["passed"], bool)
    assert s["threshold"]["rule"] == "maximise precision subject to recall >= 0.7"
    assert 0 < s["threshold"]["value"] < 0.5, "a recall target below the base rate lowers the threshold"
    manifest = json.loads((churn_run / "manifest.json").read_text())
    assert manifest["champion"] == {"version": 1, "path": "models/v1/model.skops", "family": s["champion"]["family"]}
    assert [k["achieved"] for k in manifest["kpis"]] == [k["achieved"] for k in s["kpis"]]
    meta = json.loads((churn_run / "models" / "v1" / "model_meta.json").read_text())
    assert meta["threshold"] == s["threshold"]["value"] and meta["positive_label"] == "yes"
    assert "retention_call_minutes" not in meta["features"] and "customer_id" not in meta["features"]
    model = modelio.load_model(churn_run / "models" / "v1" / "model.skops")
    test = pd.read_parquet(churn_run / "artifacts" / "02_data_foundation" / "test.parquet")
    proba = model.predict_proba(test[meta["features"]])[:, list(model.classes_).index("yes")]
    pred = np.where(proba >= meta["threshold"], "yes", "no")
    recall = ((pred == "yes") & (test["churn"] == "yes")).sum() / (test["churn"] == "yes").sum()
    assert recall == pytest.approx(s["kpis"][0]["achieved"]), "the saved model and threshold reproduce the scoreboard"


def test_demo_tables_and_figures(churn_run):
    folder = churn_run / "artifacts" / STEP4
    board = pd.read_csv(folder / "leaderboard.csv")
    assert {"dummy", "heuristic", "logistic_regression", "random_forest", "hist_gradient_boosting",
            "k_nearest_neighbors"} == set(board["model"])
    assert board.set_index("model").loc["dummy", "roc_auc_mean"] == pytest.approx(0.5)
    tuning = pd.read_csv(folder / "tuning_results.csv")
    assert tuning["default"].sum() == 1 and len(tuning) == 3  # the default + 2 iterations
    for name in ("leaderboard", "learning_curves", "validation_curve", "tuning", "threshold", "diagnostics",
                 "importance"):
        assert (folder / f"{name}.png").stat().st_size > 5000, name
    groups = pd.read_csv(folder / "group_metrics.csv")
    assert set(groups["column"]) == {"gender", "senior_citizen"}
    executed = nbformat.read(churn_run / f"{STEP4}.ipynb", as_version=4)
    assert "playbook-readout" in json.dumps([c.get("outputs", []) for c in executed.cells])
    assert passed_exercises(executed) == ["4.1", "4.2", "4.3"]  # the solutions are kept


def test_regression_configuration(tmp_path):
    run_dir = run_step4_only(tmp_path, "diabetes", {"r2": 0.4, "mae": 48.0}, "bmi")
    s = summary(run_dir)
    assert s["problem_type"] == "regression" and s["threshold"] is None
    assert {k["metric"] for k in s["kpis"]} == {"r2", "mae"}
    assert (run_dir / "artifacts" / STEP4 / "diagnostics.png").exists()
    assert {k["metric"]: k["passed"] for k in s["kpis"]}["r2"] is True
    margin = {m["metric"]: m["margin"] for m in s["margin_over_heuristic"]}
    assert margin["r2"] > 0, "the model beats the one-column rule on bmi"
    meta = json.loads((run_dir / "models" / "v1" / "model_meta.json").read_text())
    assert meta["classes"] is None and meta["threshold"] is None and meta["target"] == "progression"
    assert modelio.load_model(run_dir / "models" / "v1" / "model.skops").predict(
        pd.read_parquet(run_dir / "artifacts" / "02_data_foundation" / "test.parquet")[meta["features"]]).shape[0] > 0
    # the solutions run on a regression too; 4.2 (a binary threshold) has nothing to do and says so
    assert passed_exercises(nbformat.read(tmp_path / f"{STEP4}.ipynb", as_version=4)) == ["4.1", "4.2", "4.3"]


def test_clustering_configuration(tmp_path):
    run_dir = run_step4_only(tmp_path, "wine_segments", {"silhouette": 0.2}, "first principal component")
    s = summary(run_dir)
    assert s["problem_type"] == "clustering" and s["champion"]["family"] == "k_means"
    assert s["kpis"][0]["metric"] == "silhouette"
    sweep = pd.read_csv(run_dir / "artifacts" / STEP4 / "cluster_sweep.csv")
    assert {"k_means", "agglomerative", "dbscan", "heuristic"} == set(sweep["family"])
    assert 2 <= s["champion"]["params"]["n_clusters"] <= 8
    assert passed_exercises(nbformat.read(tmp_path / f"{STEP4}.ipynb", as_version=4)) == ["4.1", "4.2", "4.3"]


def test_opened_alone_names_the_step_to_run(tmp_path):
    done = papermill(STEP4, tmp_path, tmp_path / "empty")
    assert done.returncode != 0
    assert "PlaybookError" in done.stderr and "02_data_foundation" in done.stderr
