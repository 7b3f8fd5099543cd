"""The catalogue of bad inputs: each one ends with one clear message, the exit code the README documents
and a consistent run folder (or none at all when it is rejected before anything starts).

Parameter and data errors are caught before any kernel starts, so they run in-process through
``cli.main``; the few cases that need a kernel (data the playbook repairs, runtime failures) run
``playbook run`` in a subprocess with small files and ``--steps 1`` or ``--steps 1,2``.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest

from helpers.core.artifacts import Run
from helpers.run import cli, resume
from tests.conftest import ROOT, run_cli

STEP1, STEP2 = "01_vision_and_goals", "02_data_foundation"


def check_clean_rejection(code: int, err: str, fragment: str, out: Path) -> None:
    """Rejected before anything started: exit 2, one message with a fix, no traceback, no run folder."""
    assert code == 2, err
    assert fragment in err, err
    assert "Fix:" in err and "Traceback" not in err
    assert err.count("error:") == 1
    assert not out.exists()


def check_consistent_run(out: Path, failed_step: str | None, status: str = "failed") -> dict:
    """A run folder that a failure left behind: valid manifest, the step marked, report, no temp files."""
    manifest = json.loads((out / "manifest.json").read_text())
    if failed_step:
        entry = next(e for e in manifest["steps"] if e["step"] == failed_step)
        assert entry["status"] == status, manifest["steps"]
    assert (out / "report.ipynb").exists()
    nbformat.read(out / "report.ipynb", as_version=4)  # complete, valid JSON
    assert not [p for p in out.rglob("*") if ".tmp" in p.name]
    for summary in out.glob("artifacts/*/summary.json"):
        json.loads(summary.read_text())
    return manifest


# --- parameters and config: rejected before any kernel (in-process, well under a second each) -----

PARAMETER_CASES = [
    ("unknown name", ["-p", "tagret", "x"], "Unknown parameter 'tagret'"),
    ("non-identifier name", ["-p", "a; import os", "1"], "not a valid parameter name"),
    ("keyword as name", ["-p", "class", "1"], "not a valid parameter name"),
    ("wrong type int", ["-p", "seed", "abc"], "expects int"),
    ("wrong type float", ["-p", "growth_factor", "ten"], "expects float"),
    ("wrong type dict", ["-p", "kpis", "[1, 2]"], "expects Optional[dict]"),
    ("empty non-nullable", ["-p", "seed", "None"], "cannot be empty"),
    ("malformed YAML -y", ["-y", "seed: [1"], "Malformed YAML"),
    ("YAML not a mapping", ["-y", "- seed"], "must be a mapping"),
    ("negative test size", ["-p", "test_size", "-0.1"], "must be >"),
    ("test size 1", ["-p", "test_size", "1"], "must be <"),
    ("test size above 1", ["-p", "test_size", "1.5"], "must be <"),
    ("KPI of another problem type", ["-p", "kpis", "{r2: 0.5}"], "does not fit a classification problem"),
    ("KPI threshold out of range", ["-p", "kpis", "{recall: 2}"], "outside the metric's range"),
    ("unknown KPI metric", ["-p", "kpis", "{happiness: 1}"], "Unknown KPI metric"),
    ("unknown problem type", ["-p", "problem_type", "forecasting"], "not one of"),
    ("clustering with a target", ["-p", "problem_type", "clustering"], "clustering has no target"),
    ("unknown choice", ["-p", "scaler", "quantile"], "not one of"),
    ("step out of range", ["--steps", "9"], "do not exist"),
    ("step zero", ["--steps", "0-2"], "do not exist"),
    ("steps not numbers", ["--steps", "a-b"], "not a list or range"),
    ("steps reversed", ["--steps", "3-1"], "not a list or range"),
    ("unknown built-in", ["-p", "dataset", "builtin:nope"], "Unknown built-in"),
    ("notebooks not a folder", ["--notebooks", "/no/such/folder"], "is not a folder"),
    ("resume of a non-run", ["--resume", "/no/such/run"], "not a run folder"),
]


@pytest.mark.parametrize(("case", "args", "fragment"), PARAMETER_CASES, ids=[c[0] for c in PARAMETER_CASES])
def test_parameter_errors_are_rejected_before_any_kernel(case, args, fragment, tmp_path, capsys):
    out = tmp_path / "run"
    code = cli.main(["run", "--out", str(out), *args] if "--resume" not in args else ["run", *args])
    check_clean_rejection(code, capsys.readouterr().err, fragment, out)


def test_project_file_errors(tmp_path, capsys):
    out = tmp_path / "run"
    cases = {"dataset: builtin:churn\n  seed: 3\n": "Malformed YAML",
             "- a\n- b\n": "must be a mapping",
             "seed: !!python/object/apply:os.system ['echo hacked']\n": "Malformed YAML"}  # safe loading only
    for i, (text, fragment) in enumerate(cases.items()):
        project = tmp_path / f"p{i}.yaml"
        project.write_text(text)
        check_clean_rejection(cli.main(["run", "-f", str(project), "--out", str(out)]), capsys.readouterr().err,
                              fragment, out)
    check_clean_rejection(cli.main(["run", "-f", str(tmp_path / "none.yaml"), "--out", str(out)]),
                          capsys.readouterr().err, "does not exist", out)


def test_resume_with_out_is_refused(tmp_path, capsys):
    run = tmp_path / "old"
    run.mkdir()
    (run / "manifest.json").write_text(json.dumps({"steps": [{"step": STEP1, "status": "succeeded"}], "parameters": {}}))
    check_clean_rejection(cli.main(["run", "--resume", str(run), "--out", str(tmp_path / "new")]),
                          capsys.readouterr().err, "use only one of them", tmp_path / "new")


# --- data: loaded and checked by the runner before any kernel (in-process) ----------------------


def _csv(text: str) -> Callable[[Path], list[str]]:
    def write(folder: Path) -> list[str]:
        (folder / "d.csv").write_text(text)
        return ["-p", "dataset", str(folder / "d.csv"), "-p", "target", "y"]
    return write


def _frame(frame: pd.DataFrame, *extra: str, name: str = "d.csv") -> Callable[[Path], list[str]]:
    def write(folder: Path) -> list[str]:
        path = folder / name
        frame.to_parquet(path) if name.endswith(".parquet") else frame.to_csv(path, index=False)
        return ["-p", "dataset", str(path), "-p", "target", "y", *extra]
    return write


def _bytes(data: bytes, name: str, *extra: str) -> Callable[[Path], list[str]]:
    def write(folder: Path) -> list[str]:
        (folder / name).write_bytes(data)
        return ["-p", "dataset", str(folder / name), *extra]
    return write


def _sqlite(query: str) -> Callable[[Path], list[str]]:
    def write(folder: Path) -> list[str]:
        db = folder / "d.db"
        with sqlite3.connect(db) as conn:
            conn.execute("CREATE TABLE customers (x REAL, y TEXT)")
        return ["-p", "dataset", f"sqlite:///{db}", "-p", "query", query, "-p", "target", "y"]
    return write


RNG = np.random.default_rng(0)
GOOD = pd.DataFrame({"x": RNG.normal(size=40).round(3), "y": ["a", "b"] * 20})

DATA_CASES = [
    ("missing file", lambda f: ["-p", "dataset", str(f / "nope.csv")], "does not exist"),
    ("a folder", lambda f: ["-p", "dataset", str(f)], "is a folder"),
    ("empty file", _csv(""), "is empty"),
    ("blank lines only", _csv("\n\n  \n"), "is empty"),
    ("header only", _csv("x,y\n"), "has a header but no rows"),
    ("one row", _csv("x,y\n1,a\n"), "only 1 row(s)"),
    ("a single class", _frame(GOOD.assign(y="a")), "has a single class"),
    ("a class with one row", _frame(GOOD.assign(y=["a"] * 39 + ["b"])), "has only 1 row(s)"),
    ("target all missing", _frame(GOOD.assign(y=np.nan)), "entirely missing"),
    ("target column absent", _frame(GOOD.rename(columns={"y": "label"})), "Target column 'y' is not in the data"),
    ("non-numeric target for regression", _frame(GOOD, "-p", "problem_type", "regression"), "non-numeric values"),
    ("constant regression target", _frame(GOOD.assign(y=1.0), "-p", "problem_type", "regression"), "is constant"),
    ("target that is the row number", _frame(GOOD.assign(y=np.arange(40.0))), "the row number"),
    ("every row the same", _frame(pd.concat([GOOD.head(1)] * 30)), "has a single class"),
    ("duplicated column names", _csv("x,x,y\n" + "1,2,a\n3,4,b\n" * 10), "duplicated column names: x.1"),
    ("undecodable bytes", _bytes(b"x,y\n1,caf\xe9\n" * 20, "d.csv", "-p", "target", "y"), "Cannot decode"),
    ("unknown encoding", _bytes(b"x,y\n1,a\n", "d.csv", "-p", "encoding", "klingon"), "Unknown encoding"),
    ("wrong delimiter given", _frame(GOOD, "-p", "sep", ";"), "Target column 'y' is not in the data"),
    ("zero-byte Parquet", _bytes(b"", "d.parquet"), "is empty (0 bytes)"),
    ("damaged Parquet", _bytes(b"PAR1 this is not parquet", "d.parquet"), "Cannot read"),
    ("failing SQL query", _sqlite("SELECT * FROM no_such_table"), "The SQL query failed"),
    ("database without a query", lambda f: ["-p", "dataset", f"sqlite:///{f / 'x.db'}"], "no query is set"),
    ("id column absent", _frame(GOOD, "-p", "id_column", "customer"), "id_column 'customer' is not a column"),
    ("sensitive column absent", _frame(GOOD, "-p", "sensitive_columns", "[gender]"), "sensitive_columns 'gender'"),
]


@pytest.mark.parametrize(("case", "make", "fragment"), DATA_CASES, ids=[c[0] for c in DATA_CASES])
def test_bad_data_is_rejected_before_any_kernel(case, make, fragment, tmp_path, capsys):
    out = tmp_path / "run"
    code = cli.main(["run", "--steps", "1,2", "--no-html", "--out", str(out), *make(tmp_path)])
    check_clean_rejection(code, capsys.readouterr().err, fragment, out)


# --- data the playbook repairs: one file with many faults, steps 1-2 in a kernel ----------------


def faulty_table(n: int = 60, seed: int = 0) -> pd.DataFrame:
    """Small table with the faults step 2 must repair (and record) rather than reject."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    y = np.where(x1 + 0.5 * x2 + rng.normal(scale=0.5, size=n) > 0, "yes", "no").astype(object)
    y[[3, 17]] = None  # target partly missing
    frame = pd.DataFrame({
        "row": np.arange(1, n + 1),  # an identifier: the row number
        "x1": x1.round(3), "x2": x2.round(3),
        "amount": [f"{v:,.2f}" for v in rng.uniform(1000, 90000, n)],  # thousands separators
        "ratio": np.where(rng.random(n) < 0.1, np.inf, rng.normal(size=n).round(3)),  # infinities
        "signup": pd.date_range("2023-01-01", periods=n, freq="D").strftime("%Y-%m-%d"),  # dates as strings
        "country": "NL",  # one value
        "code": [f"K{rng.integers(10**9)}" for _ in range(n)],  # a distinct category per row
        "note": ["lorem ipsum " * 500 + str(i) for i in range(n)],  # very long strings
        "": rng.integers(0, 3, n),  # an unnamed column
        "churned": y,
    })
    return pd.concat([frame, frame], ignore_index=True)  # every row a duplicate


@pytest.fixture(scope="module")
def repaired_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("repaired")
    data = folder / "faulty.csv"
    faulty_table().to_csv(data, sep=";", index=False)  # a ';' file: the delimiter is detected
    out = folder / "run"
    result = run_cli("run", "--steps", "1,2", "--no-html", "--out", str(out), "-p", "dataset", str(data),
                     "-p", "target", "churned", "-p", "project_name", "faulty")
    return result, out


HANDLED = [  # (fault, decision action, column)
    ("every row a duplicate", "remove duplicate rows", None),
    ("target partly missing", "drop unlabelled rows", "churned"),
    ("numbers with thousands separators", "coerce to numbers", "amount"),
    ("infinities", "replace infinities with missing", "ratio"),
    ("a column with one value", "drop column", "country"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("fault", "action", "column"), HANDLED, ids=[h[0] for h in HANDLED])
def test_repairable_data_is_handled_and_the_fix_recorded(repaired_run, fault, action, column):
    result, out = repaired_run
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    decisions = Run(out).read_summary(STEP2)["decisions"]
    assert any(d["action"] == action and d["column"] == column and d["rows_affected"] > 0 for d in decisions), decisions


@pytest.mark.slow
def test_repairable_data_run_is_consistent(repaired_run):
    result, out = repaired_run
    manifest = check_consistent_run(out, None)
    assert [e["status"] for e in manifest["steps"]] == ["succeeded", "succeeded"]
    assert manifest["dataset"]["rows"] == 120 and manifest["dataset"]["columns"] == 11
    features = Run(out).read_summary(STEP2)["features"]
    assert "country" not in features["numeric"] + features["categorical"]
    # kept, and made harmless by the encoder (categories rarer than rare_category_share are grouped):
    assert "Unnamed: 9" in features["numeric"]  # the unnamed column got pandas' name
    assert {"signup", "code", "note"} <= set(features["categorical"])  # dates as text, one value per row, long text


# --- bad input that only a notebook can find: exit 2, the step marked failed, partial report ------


@pytest.mark.slow
def test_bad_input_found_inside_a_notebook_exits_2(tmp_path):
    out = tmp_path / "run"
    result = run_cli("run", "--steps", "3", "--out", str(out))  # step 3 without the steps it builds on
    text = result.stdout + result.stderr
    assert result.returncode == 2, text
    assert "needs the results of step 02_data_foundation" in text and "Fix: run that step first" in text
    assert "Traceback" not in text and "03_tools_and_stack.ipynb" in text  # names the saved notebook
    manifest = check_consistent_run(out, "03_tools_and_stack")
    assert "needs the results of step 02_data_foundation" in manifest["steps"][0]["message"]
    assert (out / "report.html").exists()
    assert kernels_gone(out)


# --- runtime: slow cell, dead kernel, interrupt (a copied step 1 with one extra cell) -----------


def notebooks_with_extra_cell(folder: Path, code: str) -> Path:
    """A notebooks folder whose step 1 runs ``code`` right after its setup cell."""
    folder.mkdir()
    nb = nbformat.read(ROOT / "playbook" / f"{STEP1}.ipynb", as_version=4)
    setup = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code" and "validate_step" in c.source)
    nb.cells.insert(setup + 1, nbformat.v4.new_code_cell(code))
    nbformat.write(nb, folder / f"{STEP1}.ipynb")
    return folder


def kernels_gone(out: Path, wait_s: float = 5.0) -> bool:
    deadline = time.monotonic() + wait_s
    while resume.kernel_processes(out) and time.monotonic() < deadline:
        time.sleep(0.2)
    return not resume.kernel_processes(out)


@pytest.mark.slow
@pytest.mark.parametrize(("case", "code", "extra", "fragment"), [
    ("cell exceeds --timeout", "import time\ntime.sleep(60)", ["--timeout", "3"], "exceeded the --timeout of 3.0 s"),
    ("kernel dies", "import os\nos._exit(1)", [], "the kernel died"),
], ids=["timeout", "dead kernel"])
def test_runtime_failures_exit_1_with_a_partial_report(case, code, extra, fragment, tmp_path):
    notebooks = notebooks_with_extra_cell(tmp_path / "nbs", code)
    out = tmp_path / "run"
    result = run_cli("run", "--steps", "1", "--no-html", "--out", str(out), "--notebooks", str(notebooks), *extra,
                     timeout=300)
    text = result.stdout + result.stderr
    assert result.returncode == 1, text
    assert fragment in text and "Traceback" not in text
    manifest = check_consistent_run(out, STEP1)
    assert fragment in manifest["steps"][0]["message"]
    assert kernels_gone(out)


def ctrl_c_delivered() -> None:
    """Ctrl-C as in a terminal: SIGINT's default action, even when the tests run as a background job
    (a shell starts background jobs with SIGINT ignored, and Python then never raises KeyboardInterrupt)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow
def test_interrupt_exits_130_marks_the_step_and_leaves_no_kernel(tmp_path):
    marker = tmp_path / "sleeping"  # the extra cell creates it: the kernel is then in that cell
    notebooks = notebooks_with_extra_cell(tmp_path / "nbs",
                                          f"import pathlib, time\npathlib.Path({str(marker)!r}).touch()\ntime.sleep(120)")
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "helpers.run.cli", "run", "--steps", "1", "--no-html", "--out", str(out),
                             "--notebooks", str(notebooks)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=ctrl_c_delivered)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not marker.exists():  # wait until the kernel is in the sleeping cell
            time.sleep(0.2)
        assert resume.kernel_processes(out), "the step's kernel is not running"
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, stdout + stderr
    assert "Traceback" not in stdout + stderr and "nterrupted" in stdout + stderr
    check_consistent_run(out, STEP1, status="interrupted")
    assert kernels_gone(out)


# --- playbook predict on the demo run's model ----------------------------------------------------


def _rows(run: Run, n: int = 30) -> pd.DataFrame:
    return pd.read_parquet(run.raw_snapshot_path).drop(columns="churn").head(n)


PREDICT_CASES = [  # (case, write the input file -> path, expected exit code, message fragment)
    ("input missing", lambda run, f: f / "nope.csv", 2, "does not exist"),
    ("input empty", lambda run, f: (f / "in.csv").write_text("") or f / "in.csv", 2, "is empty"),
    ("input header only", lambda run, f: _rows(run, 0).to_csv(f / "in.csv", index=False) or f / "in.csv", 2,
     "has no data rows"),
    ("input not csv/parquet", lambda run, f: (f / "in.xlsx").write_text("x") and f / "in.xlsx", 2,
     "must be .csv or .parquet"),
    ("model columns missing", lambda run, f: _rows(run).drop(columns=["contract"]).to_csv(f / "in.csv", index=False)
     or f / "in.csv", 2, "missing column(s) contract"),
    ("text in a numeric column", lambda run, f: _rows(run).assign(monthly_charges="lots").to_csv(f / "in.csv", index=False)
     or f / "in.csv", 2, "monthly_charges expects numbers"),
    ("extra columns and HTML values (handled)", lambda run, f: _rows(run).assign(contract="<script>x</script>")
     .to_csv(f / "in.csv", index=False) or f / "in.csv", 0, "extra column(s) ignored"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("case", "make", "expected", "fragment"), PREDICT_CASES, ids=[c[0] for c in PREDICT_CASES])
def test_predict_bad_inputs(demo_run, case, make, expected, fragment, tmp_path, capsys):
    out = tmp_path / "pred.csv"
    code = cli.main(["predict", "--run", str(demo_run.path), "--input", str(make(demo_run, tmp_path)),
                     "--output", str(out)])
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert code == expected, text
    assert fragment in text and "Traceback" not in text
    assert out.exists() == (expected == 0)  # nothing half-written on failure
    assert not list(tmp_path.glob(".*tmp*"))


def test_predict_rejects_a_folder_that_is_not_a_run_or_has_no_model(tmp_path, capsys):
    args = ["--input", str(tmp_path / "in.csv"), "--output", str(tmp_path / "o.csv")]
    assert cli.main(["predict", "--run", str(tmp_path), *args]) == 2
    assert "is not a run folder" in capsys.readouterr().err
    Run(tmp_path).write_manifest({"steps": [], "champion": None})
    assert cli.main(["predict", "--run", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err
    assert "needs the results of step 04_model_development" in err and "Traceback" not in err
