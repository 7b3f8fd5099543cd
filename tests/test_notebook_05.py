"""Step 5's notebook end to end: on the shared demo run, with real monitor_data, and without upstream steps."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pandas as pd
import pytest
import yaml

from helpers.core.exercises import MIME_TYPE
from helpers.steps.operations import deployment

ROOT = Path(__file__).resolve().parent.parent
STEP = "05_deployment_and_monitoring"
NOTEBOOK = ROOT / "playbook" / f"{STEP}.ipynb"

pytestmark = pytest.mark.slow


def papermill(out: Path, run_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "papermill", str(NOTEBOOK), str(out), "-p", "run_dir", str(run_dir),
           "-p", "interactive", "False", "--no-progress-bar", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900)


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "artifacts" / STEP / "summary.json").read_text())


def test_demo_run_packages_gates_monitors_and_scores_readiness(demo_run):
    s = summary(demo_run.path)
    assert set(s["package"]["files"]) == set(deployment.PACKAGE_FILES)
    manifest = json.loads((demo_run.path / "manifest.json").read_text())
    expected_gate = 1 if any(k["verdict"] == "fail" for k in manifest["kpis"]) else 0  # watch passes
    assert s["gate"]["exit_code"] == expected_gate
    m = s["monitoring"]
    assert m["source"] == "simulation" and m["batches"] == 3 and m["important_features"]
    assert len(s["retraining"]["decisions"]) == 3
    assert s["retraining"]["champion_changed"] is False
    assert manifest["champion"]["version"] == 1  # a simulation never replaces the champion
    ready = s["readiness"]
    assert len(ready["scores"]) == 28 and ready["final"] == min(ready["sections"].values())
    assert 1.0 <= ready["final"] <= 7.0 and ready["band"]
    table = pd.read_csv(demo_run.path / "artifacts" / STEP / "readiness.csv").set_index("id")
    # measured, not asserted: each of these facts shows what it measured on this run
    assert table.loc["infrastructure_2", "score"] == 0.5
    assert "loaded from disk in a fresh process" in table.loc["infrastructure_2", "evidence"]
    assert "one row at a time vs one batch: predictions identical" in table.loc["infrastructure_5", "evidence"]
    assert "training and serving inputs identical" in table.loc["monitoring_3", "evidence"]
    folder = demo_run.path / "artifacts" / STEP
    for name in ("ci_workflow.yml", "model_card.md", "alerts.csv", "kpi_timeline.csv", "readiness.csv",
                 "monitoring_timeline.png", "readiness.png"):
        assert (folder / name).exists(), name
    workflow = yaml.safe_load((folder / "ci_workflow.yml").read_text())
    assert list(workflow["jobs"]) == ["test", "playbook", "deploy"]
    card = (folder / "model_card.md").read_text()
    assert "## Quantitative analyses" in card and "| gender |" in card
    executed = nbformat.read(demo_run.path / f"{STEP}.ipynb", as_version=4)
    feedback = [o["data"][MIME_TYPE] for c in executed.cells if c.metadata.get("exercise") for o in c.outputs
                if MIME_TYPE in o.get("data", {})]
    assert [f["exercise"] for f in feedback if f["passed"]] == ["5.1", "5.2", "5.3", "5.4"]  # the solutions are kept


def test_every_sampled_decision_is_stated_and_the_demo_fits_under_the_row_caps(demo_run):
    import nbformat

    from helpers.core.prepared import load_prepared

    prepared = load_prepared(demo_run)
    n_train, n_test = len(prepared.train), len(prepared.test)
    sampling = summary(demo_run.path)["sampling"]
    statements = sampling["statements"]
    assert len(statements) == len(sampling["decisions"]) == 9
    for d in sampling["decisions"]:
        assert d["rows"] <= d["of"] and d["sampled"] == (d["rows"] < d["of"])
    # the demo is below every cap on rows drawn from the training or test side: those parts use every row, as before
    for text in (f"Drift reference on all {n_train:,} training rows.", f"Reference predictions on all {n_test:,} test rows.",
                 f"False-alarm trials on all {n_train:,} training rows.",
                 f"Challengers refitted on all {n_train:,} training rows, each plus the labelled batches before its trigger.",
                 f"Training/serving comparison on all {n_test:,} held-out rows."):
        assert text in statements
    assert f"Permutation importance on 800 of {n_test:,} test rows (a seeded sample" in " ".join(statements)
    # each statement is shown where the decision is made, in the executed notebook
    nb = nbformat.read(demo_run.path / f"{STEP}.ipynb", as_version=4)
    shown = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert all(text in shown for text in statements), [t for t in statements if t not in shown]


def test_predict_and_gate_commands_on_the_demo_run(demo_run, tmp_path, capsys):
    from helpers.core.prepared import load_prepared

    prepared = load_prepared(demo_run)
    new = prepared.test.drop(columns=prepared.target).head(50)
    new.to_csv(tmp_path / "new.csv", index=False)
    assert deployment.predict_cli(str(demo_run.path), str(tmp_path / "new.csv"), str(tmp_path / "p.csv")) == 0
    out = pd.read_csv(tmp_path / "p.csv")
    assert list(out["customer_id"]) == list(new["customer_id"]) and out["proba_yes"].between(0, 1).all()
    code = deployment.gate_cli(str(demo_run.path))
    assert code == summary(demo_run.path)["gate"]["exit_code"]
    assert "Gate:" in capsys.readouterr().out


@pytest.fixture(scope="module")
def monitored_run(demo_run, tmp_path_factory) -> Path:
    """A copy of the demo run, step 5 re-run on real monitor_data (labelled, with a week column)."""
    from helpers.core.prepared import load_prepared

    folder = tmp_path_factory.mktemp("nb05")
    run_dir = folder / "run"
    shutil.copytree(demo_run.path, run_dir)
    prepared = load_prepared(demo_run)
    data = prepared.test.assign(week=[f"2024-W{1 + i * 4 // len(prepared.test):02d}" for i in range(len(prepared.test))])
    data.to_csv(folder / "production.csv", index=False)
    done = papermill(folder / "out.ipynb", run_dir, "-p", "monitor_data", str(folder / "production.csv"),
                     "-p", "n_batches", "4")
    assert done.returncode == 0, done.stderr[-3000:]
    return run_dir


def test_real_monitor_data_is_cut_into_periods(monitored_run):
    s = summary(monitored_run)
    assert s["monitoring"]["source"] == "monitor_data" and s["monitoring"]["batches"] == 4
    schedule = pd.read_csv(monitored_run / "artifacts" / STEP / "schedule.csv")
    assert schedule["labelled"].all() and schedule["rows"].sum() > 0


def test_missing_upstream_steps_name_the_step_to_run(tmp_path):
    done = papermill(tmp_path / "out.ipynb", tmp_path / "empty")
    assert done.returncode != 0
    assert "PlaybookError" in done.stderr and "01_vision_and_goals" in done.stderr


def test_headline_and_report_section(demo_run):
    from helpers.steps.operations import monitoring

    head = monitoring.headline(demo_run)
    s = summary(demo_run.path)
    assert head["readiness"]["score"] == s["readiness"]["final"] and head["readiness"]["band"]
    assert head["gate"] in ("passed", "failed")
    json.dumps(head)  # JSON-friendly
    out = str(monitoring.report_section(demo_run).render())
    assert "data:image/png;base64," in out  # the saved figures are shown
    assert "package_loads: models/v1 loaded from disk in a fresh process" in out  # and the evidence, in full
