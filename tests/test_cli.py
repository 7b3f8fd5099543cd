"""`playbook` end to end: the demo run, other built-ins, init, and bad input before any kernel."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
import yaml

from helpers.core import config
from helpers.core.artifacts import Run
from helpers.run import cli, resume
from tests.conftest import fast_args, run_cli

STEP1 = "01_vision_and_goals"


def test_console_script_is_installed():
    assert shutil.which("playbook", path=str(Path(sys.executable).parent)) is not None


def test_params_lists_every_parameter_with_type_and_help(capsys):
    assert cli.main(["params"]) == 0
    out = capsys.readouterr().out
    for p in config.REGISTRY.values():
        assert p.name in out and p.help in out
    assert cli.main(["params", "1"]) == 0
    out = capsys.readouterr().out
    assert "kpis" in out and "Optional[dict]" in out and "tuning_strategy" not in out


# --- bad input is rejected before any kernel starts -----------------------------------------

BAD_RUNS = [
    (["-p", "tagret", "x"], "Unknown parameter 'tagret'"),
    (["-p", "a; import os", "1"], "not a valid parameter name"),
    (["-p", "seed", "abc"], "expects int"),
    (["-p", "test_size", "1.5"], "must be <"),
    (["-p", "test_size", "-0.1"], "must be >"),
    (["-p", "kpis", "{r2: 0.5}"], "does not fit a classification problem"),
    (["-p", "kpis", "{recall: 2}"], "outside the metric's range"),
    (["-p", "problem_type", "forecasting"], "not one of"),
    (["-p", "dataset", "no/such/file.csv"], "does not exist"),
    (["-p", "dataset", "builtin:nope"], "Unknown built-in"),
    (["--steps", "9"], "do not exist"),
    (["--steps", "a-b"], "not a list or range"),
    (["-y", "seed: [1"], "Malformed YAML"),
]


def test_the_runner_skips_the_slow_optional_iri_checker_and_still_validates_notebooks():
    import subprocess

    code = ("import sys\nimport helpers.run.runner\nimport nbformat\n"
            "nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell('x = 1')])\n"
            "nbformat.validate(nb)\nbad = nbformat.from_dict({'cells': [], 'metadata': {}, 'nbformat': 4, 'nbformat_minor': 5, 'extra': 1})\n"
            "try:\n    nbformat.validate(bad)\nexcept nbformat.ValidationError:\n    print('invalid caught')\n"
            "print(sys.modules.get('rfc3987_syntax', 'never imported'))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split("\n")[:2] == ["invalid caught", "None"]


@pytest.mark.parametrize(("args", "fragment"), BAD_RUNS, ids=[a[1] for a in BAD_RUNS])
def test_bad_input_exits_2_before_any_kernel(args, fragment, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["run", "--out", str(out), *args]) == 2
    err = capsys.readouterr().err
    assert fragment in err and "Traceback" not in err
    assert not out.exists()  # no run folder
    assert resume.kernel_processes(out) == []  # the first step's kernel, started early, was stopped


def test_missing_target_for_a_supervised_problem(tmp_path, capsys):
    data = tmp_path / "d.csv"
    data.write_text("a,b\n1,2\n3,4\n")
    code = cli.main(["run", "--out", str(tmp_path / "r"), "-p", "dataset", str(data), "-p", "problem_type", "regression"])
    assert code == 2 and "no target column" in capsys.readouterr().err


def test_malformed_project_file(tmp_path, capsys):
    bad = tmp_path / "project.yaml"
    bad.write_text("dataset: builtin:churn\n  seed: 3\n")
    assert cli.main(["run", "-f", str(bad), "--out", str(tmp_path / "r")]) == 2
    assert "Malformed YAML" in capsys.readouterr().err


def test_existing_out_is_never_overwritten(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert cli.main(["run", "--out", str(out), "--steps", "1"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "mine" and len(list(out.iterdir())) == 1


# --- the shared demo run ---------------------------------------------------------------------


def test_demo_run_manifest(demo_run: Run):
    m = demo_run.read_manifest()
    for key in ("schema_version", "project", "parameters", "command", "dataset", "environment", "steps", "kpis", "report"):
        assert key in m
    assert m["project"] == "churn-demo" and m["command"].startswith("playbook run")
    assert m["dataset"]["source"] == "builtin:churn" and len(m["dataset"]["sha256"]) == 64
    assert m["environment"]["packages"]["scikit-learn"]
    assert all(s["status"] == "succeeded" and s["duration_s"] > 0 for s in m["steps"])
    # where each step ran: its own kernel; step 3 with its measuring processes, step 4 on the plan's cores
    ran = {s["step"]: s["ran_on"] for s in m["steps"]}
    assert all(r["kind"] == "local" and r["address"] is None and r["workers"] == 1 for r in ran.values())
    assert ran["01_vision_and_goals"]["threads"] == 1
    assert ran["04_model_development"]["threads"] == m["plan"]["parameters"]["n_jobs"]
    assert [k["metric"] for k in m["kpis"]] == ["recall", "precision", "roc_auc"]
    assert all(k["direction"] == "higher" for k in m["kpis"])
    assert m["report"] == {"notebook": "report.ipynb", "html": "report.html"}


def test_demo_run_files(demo_run: Run):
    for step in (s["step"] for s in demo_run.read_manifest()["steps"]):
        nb = nbformat.read(demo_run.path / f"{step}.ipynb", as_version=4)
        assert nb.metadata.papermill.parameters["interactive"] is False
        assert demo_run.has_summary(step)
    assert (demo_run.artifacts / "raw.parquet").exists()
    charter = (demo_run.artifacts / STEP1 / "charter.md").read_text()
    assert "# Project charter: churn-demo" in charter and "| recall | 0.7 | higher |" in charter
    assert "retention_call_minutes" in charter  # the leak is named


def test_demo_step1_findings(demo_run: Run):
    s = demo_run.read_summary(STEP1)
    assert s["problem_type"] == "classification"
    assert s["contract"]["positive_label"] == "yes"
    assert s["set_aside"]["leakage"] == ["retention_call_minutes"]
    assert s["verdict"]["code"] == "proceed"
    table = pd.DataFrame(s["baselines"]).set_index("candidate")
    assert table.loc["quick_model", "roc_auc"] > table.loc["heuristic", "roc_auc"] + 0.05 > table.loc["dummy", "roc_auc"]
    assert table.loc["heuristic", "roc_auc"] > 0.6  # the one rule is useful...
    assert "contract" in s["heuristic"]["rule"]  # ...and it is the month-to-month rule


def test_project_yaml_of_a_run_reproduces_its_parameters(demo_run: Run):
    """project.yaml = the run's parameters, with the values its plan resolved pinned (so a re-run re-plans nothing)."""
    saved = yaml.safe_load((demo_run.path / "project.yaml").read_text())
    merged = config.merge(saved)
    manifest = demo_run.read_manifest()
    pinned = manifest["plan"]["pinned"]
    assert {"selection_rows", "n_jobs", "refit_rows"} <= set(pinned)
    expected = {**manifest["parameters"], **pinned}
    assert {k: v for k, v in merged.items() if k not in ("run_dir", "interactive")} == \
        {k: v for k, v in expected.items() if k not in ("run_dir", "interactive")}


# --- other built-ins, init, failures inside a notebook ---------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(("dataset", "problem_type"), [
    ("builtin:diabetes", "regression"), ("builtin:wine_segments", "clustering")])
def test_step1_on_other_builtins(dataset, problem_type, tmp_path):
    out = tmp_path / "run"
    result = run_cli("run", "--steps", "1", "--no-html", "--out", str(out), "-p", "dataset", dataset)
    assert result.returncode == 0, result.stdout + result.stderr
    s = Run(out).read_summary(STEP1)
    assert s["problem_type"] == problem_type
    assert s["verdict"]["code"] in ("proceed", "heuristic_suffices", "revisit")
    assert (out / "report.ipynb").exists() and not (out / "report.html").exists()


@pytest.mark.slow
def test_init_folder_is_accepted_by_run_multiclass(tmp_path):
    folder = tmp_path / "mine"
    assert cli.main(["init", str(folder)]) == 0
    assert (folder / "project.yaml").exists() and (folder / f"{STEP1}.ipynb").exists()
    text = (folder / "project.yaml").read_text().replace("dataset: builtin:churn", "dataset: builtin:wine")
    text = text.replace("project_name: churn-demo", "project_name: wine")
    (folder / "project.yaml").write_text(text)
    out = tmp_path / "run"
    result = run_cli("run", "-f", str(folder / "project.yaml"), "--notebooks", str(folder), "--steps", "1",
                     "--out", str(out), *fast_args())
    assert result.returncode == 0, result.stdout + result.stderr
    s = Run(out).read_summary(STEP1)
    assert s["contract"]["classes"] == ["class_0", "class_1", "class_2"] and s["contract"]["positive_label"] is None
    assert cli.main(["init", str(folder)]) == 2  # never overwrites


def test_missing_target_column_is_found_before_any_kernel(tmp_path, capsys):
    data = tmp_path / "d.csv"
    rng = np.random.default_rng(0)
    pd.DataFrame({"x": rng.normal(size=50), "y": rng.choice(["a", "b"], 50)}).to_csv(data, index=False)
    out = tmp_path / "run"
    assert cli.main(["run", "--steps", "1", "--out", str(out), "-p", "dataset", str(data), "-p", "target", "label"]) == 2
    err = capsys.readouterr().err
    assert "Target column 'label' is not in the data" in err and "x, y" in err and "Traceback" not in err
    assert not (out / f"{STEP1}.ipynb").exists()  # no kernel was started
