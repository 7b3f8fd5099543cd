"""Step 3's notebook end to end: the shared demo run (`playbook run`), and opened on its own."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from helpers.core.exercises import MIME_TYPE
from tests.conftest import FAST

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "playbook"
STEPS = ("01_vision_and_goals", "02_data_foundation", "03_tools_and_stack")
BUDGET_S = float(FAST["scaling_budget_s"])

pytestmark = pytest.mark.slow


def papermill(step: str, out: Path, run_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "papermill", str(NOTEBOOKS / f"{step}.ipynb"), str(out), "-p", "run_dir",
           str(run_dir), "-p", "interactive", "False", "--no-progress-bar", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def run_dir(demo_run) -> Path:
    """The session's shared demo run (tests/conftest.py), steps 1 -> 5 by `playbook run`."""
    return demo_run.path


def read_summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "artifacts" / STEPS[2] / "summary.json").read_text())


def test_summary_has_curves_projections_and_decisions(run_dir):
    s = read_summary(run_dir)
    assert set(s["curves"]) == {"logistic_regression", "random_forest", "hist_gradient_boosting",
                                "k_nearest_neighbors"}
    for curve in s["curves"].values():
        assert curve["points"] and curve["a"] > 0 and curve["b"] >= 0
    for scales in s["projections"].values():
        assert {"current", "10x", "100x"} <= set(scales)
        assert all(v["verdict"] in ("this_machine", "bigger_machine", "distributed") for v in scales.values())
    assert set(s["decisions"]) == {"language_and_libraries", "compute", "cloud"}
    assert s["context"]["data_kind"] == "tabular" and s["context"]["problem_type"] == "classification"
    assert s["environment"]["cpu"]["usable_cores"] >= 1
    assert s["slowest_family"] in s["curves"]


def test_budget_is_respected(run_dir):
    s = read_summary(run_dir)
    longest = max(p["fit_s"] for c in s["curves"].values() for p in c["points"])
    # at most one fit beyond the budget; a family's first point repeats its fit, hence 3x; generous margin
    assert s["measurement"]["elapsed_s"] <= BUDGET_S + 3 * longest + 2.0


def test_documents_lock_file_and_figures(run_dir):
    folder = run_dir / "artifacts" / STEPS[2]
    record = (folder / "stack_decision.md").read_text()
    assert "## Decisions" in record and "Amazon S3" in record
    assert "| problem type | classification |" in record
    # where step 4's fits run, the command for a cluster, and step 4's time on 1-16 workers (from the plan)
    plan = read_summary(run_dir)["plan"]
    assert "### Where the fits run" in record and "(`compute local`)" in record
    assert "playbook run -f project.yaml -p compute tcp://scheduler:8786" in record
    seconds = [plan["workers_s"][str(w)] for w in (1, 2, 4, 8, 16)]
    assert seconds == sorted(seconds, reverse=True) and seconds[0] > seconds[-1]
    assert all(f"| {w} | " in record for w in (1, 2, 4, 8, 16))
    lock = (folder / "requirements.lock.txt").read_text().splitlines()
    assert any(line.startswith("scikit-learn==") for line in lock)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["lock_file"] == f"artifacts/{STEPS[2]}/requirements.lock.txt"
    for name in ("scaling_time.png", "scaling_memory.png", "scaling_measurements.csv", "projections.csv"):
        assert (folder / name).stat().st_size > 0, name


def test_executed_notebook_shows_the_static_explorer(run_dir):
    nb = nbformat.read(run_dir / f"{STEPS[2]}.ipynb", as_version=4)
    html_outputs = [o.get("data", {}).get("text/html", "") for c in nb.cells if c.cell_type == "code"
                    for o in c.get("outputs", [])]
    readouts = [h for h in html_outputs if "playbook-readout" in h]
    assert len(readouts) == 3 and all("rows: one fit" in h for h in readouts)
    feedback = [o["data"][MIME_TYPE] for c in nb.cells if c.metadata.get("exercise") for o in c.outputs
                if MIME_TYPE in o.get("data", {})]
    assert [f["exercise"] for f in feedback if f["passed"]] == ["3.1", "3.2", "3.3"]  # the solutions are kept


def test_report_shows_the_step_3_section(run_dir):
    report = nbformat.read(run_dir / "report.ipynb", as_version=4)
    shown = json.dumps([c.get("outputs", []) for c in report.cells])
    assert "3. Tools and stack" in shown and "stack_decision.md" in shown and "image/png" in shown


def test_opened_on_its_own_it_names_the_step_to_run(tmp_path):
    done = papermill(STEPS[2], tmp_path / "out.ipynb", tmp_path / "empty-run")
    assert done.returncode != 0
    assert "PlaybookError" in done.stderr and "02_data_foundation" in done.stderr
