"""Step 2's notebook end to end under papermill.

The demo is the session's shared `playbook run` (steps in order); a clean data set and a
bad input run step 2 alone (it loads the data itself and reads step 1's summary only
when it exists).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "playbook"
STEP2 = NOTEBOOKS / "02_data_foundation.ipynb"

pytestmark = pytest.mark.slow


def papermill(notebook: Path, out: Path, run_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "papermill", str(notebook), str(out), "-p", "run_dir", str(run_dir),
           "-p", "interactive", "False", "--no-progress-bar", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


def run_steps(folder: Path, *extra: str) -> Path:
    run_dir = folder / "run"
    done = papermill(STEP2, folder / "02.ipynb", run_dir, *extra)
    assert done.returncode == 0, done.stderr[-3000:]
    return run_dir


@pytest.fixture(scope="module")
def demo_dir(demo_run) -> Path:
    """The session's shared demo run (tests/conftest.py): steps 1 -> 2 -> ... by `playbook run`."""
    return demo_run.path


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "artifacts" / "02_data_foundation" / "summary.json").read_text())


def test_demo_summary_and_artifacts(demo_dir):
    s = summary(demo_dir)
    severe = {(i["check"], i["column"]) for i in s["issues"] if i["severity"] == "high"}
    assert severe == {("target leakage", "retention_call_minutes")}
    checks = {i["check"] for i in s["issues"]}
    assert {"missing values", "numbers stored as text", "inconsistent spellings", "duplicate rows", "outliers",
            "constant column", "identifier column"} <= checks
    assert s["split"]["train_rows"] + s["split"]["test_rows"] == s["provenance"]["rows"]
    assert set(s["dropped_columns"]) == {"country", "retention_call_minutes"}
    folder = demo_dir / "artifacts" / "02_data_foundation"
    for name in ("train.parquet", "test.parquet", "schema.json", "datasheet.md", "cleaning.json",
                 "missingness.png", "distributions.png", "target_balance.png"):
        assert (folder / name).stat().st_size > 0, name
    assert (demo_dir / "artifacts" / "raw.parquet").exists()


def test_executed_notebook_shows_static_explorers(demo_dir):
    nb = json.loads((demo_dir / "02_data_foundation.ipynb").read_text())
    html = "".join("".join(o.get("data", {}).get("text/html", "")) for c in nb["cells"] if c["cell_type"] == "code"
                   for o in c.get("outputs", []))
    assert "playbook-readout" in html and "Imputation and scaling picker" in "".join(
        "".join(o.get("data", {}).get("text/markdown", "")) for c in nb["cells"] for o in c.get("outputs", []))


def test_clean_data_set_has_no_severe_issue(tmp_path):
    run_dir = run_steps(tmp_path, "-p", "dataset", "builtin:breast_cancer")
    assert [i for i in summary(run_dir)["issues"] if i["severity"] == "high"] == []


def test_bad_input_is_one_clear_error(tmp_path):
    bad = tmp_path / "empty.csv"
    bad.write_text("")
    done = papermill(STEP2, tmp_path / "02.ipynb", tmp_path / "run", "-p", "dataset", str(bad))
    assert done.returncode != 0
    assert "PlaybookError" in done.stderr and "is empty" in done.stderr
