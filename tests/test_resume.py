"""`playbook run --resume`: a killed run is continued, unchanged steps are reused, nothing is corrupt."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from helpers.core import artifacts, config
from helpers.core.artifacts import Run
from helpers.run import cli, resume
from tests.conftest import fast_args, run_cli

STEPS = ["01_vision_and_goals", "02_data_foundation", "03_tools_and_stack", "04_model_development",
         "05_deployment_and_monitoring"]
S1, S2 = STEPS[:2]


# --- the reuse logic on small folders --------------------------------------------------------------


def _run_with_step1(tmp_path: Path) -> tuple[Run, dict, Path]:
    run = Run(tmp_path / "run")
    run.path.mkdir()
    artifacts.write_parquet(run.raw_snapshot_path, pd.DataFrame({"x": [1, 2]}))
    notebook = tmp_path / f"{S1}.ipynb"
    notebook.write_text("{}")
    values = config.merge()
    run.write_summary(S1, {"verdict": "proceed"})
    (run.path / f"{S1}.ipynb").write_text("{}")
    return run, values, notebook


def test_step_is_reused_only_when_every_input_is_unchanged(tmp_path):
    run, values, notebook = _run_with_step1(tmp_path)
    inputs = resume.step_inputs(run, S1, values, notebook)
    assert set(inputs) == {"parameters", "notebook", "helpers", "data"}
    entry = {"step": S1, "status": "succeeded", "inputs": inputs}
    assert resume.reuse_decision(run, entry, inputs) == (True, "inputs unchanged")
    changed = resume.step_inputs(run, S1, {**values, "seed": 7}, notebook)
    assert resume.reuse_decision(run, entry, changed) == (False, "changed since it ran: parameters")
    assert resume.step_inputs(run, S1, {**values, "cv_folds": 9}, notebook) == inputs  # not a step-1 parameter
    notebook.write_text('{"edited": 1}')
    assert resume.reuse_decision(run, entry, resume.step_inputs(run, S1, values, notebook))[1] == \
        "changed since it ran: notebook"
    artifacts.write_parquet(run.raw_snapshot_path, pd.DataFrame({"x": [1, 3]}))
    assert "data" in resume.reuse_decision(run, entry, resume.step_inputs(run, S1, values, notebook))[1]


def test_steps_that_did_not_finish_are_never_reused(tmp_path):
    run, values, notebook = _run_with_step1(tmp_path)
    inputs = resume.step_inputs(run, S1, values, notebook)
    for status in ("running", "failed", "interrupted", "not_run"):
        reuse, why = resume.reuse_decision(run, {"step": S1, "status": status, "inputs": inputs}, inputs)
        assert not reuse and (status in why or "not run" in why)
    assert resume.reuse_decision(run, {"step": S1, "status": "succeeded"}, inputs) == \
        (False, "no input hashes were recorded for it")
    run.summary_path(S1).unlink()
    assert resume.reuse_decision(run, {"step": S1, "status": "succeeded", "inputs": inputs}, inputs) == \
        (False, "its outputs are missing")


def test_upstream_summaries_are_inputs_of_later_steps(tmp_path):
    run, values, notebook = _run_with_step1(tmp_path)
    before = resume.step_inputs(run, S2, values, notebook)
    assert f"upstream {S1}" in before
    run.write_summary(S1, {"verdict": "revisit"})
    assert resume.step_inputs(run, S2, values, notebook)[f"upstream {S1}"] != before[f"upstream {S1}"]


def test_attempts_temp_files_and_data_source(tmp_path):
    run, values, _ = _run_with_step1(tmp_path)
    assert resume.keep_previous_attempt(run, S1).name == f"{S1}.attempt-1.ipynb"
    (run.path / f"{S1}.ipynb").write_text("{}")
    assert resume.keep_previous_attempt(run, S1).name == f"{S1}.attempt-2.ipynb"
    assert resume.keep_previous_attempt(run, S1) is None  # nothing to keep
    leftover = run.artifacts / S1 / ".summary.abc123.tmp.json"
    leftover.write_text("{half")
    keep = run.artifacts / S1 / "notes.tmp.md"  # not a name atomic_path makes
    keep.write_text("mine")
    assert resume.remove_temp_files(run) == [leftover] and keep.exists()
    resume.check_same_data(values, dict(values))
    with pytest.raises(Exception, match="cannot change the data source"):
        resume.check_same_data(values, {**values, "dataset": "other.csv"})


def test_resume_refuses_another_data_set(tmp_path, capsys):
    run, values, _ = _run_with_step1(tmp_path)
    run.write_manifest({**artifacts.empty_manifest(), "parameters": values,
                        "steps": [{"step": S1, "status": "succeeded"}]})
    assert cli.main(["run", "--resume", str(run.path), "-p", "dataset", "builtin:wine"]) == 2
    err = capsys.readouterr().err
    assert "cannot change the data source (dataset" in err and "Traceback" not in err


# --- kill a real run during step 2, then resume it ---------------------------------------------------


def _wait_for(predicate, timeout: float, every: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return predicate()


def _step_status(out: Path, step: str) -> str | None:
    try:
        manifest = json.loads((out / "manifest.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return next((e["status"] for e in manifest.get("steps", []) if e["step"] == step), None)


CACHE_KEY = "PLAYBOOK_TEST_RESUMED_RUN"  # the run is shared with test_determinism (compared with the demo run)


def killed_and_resumed_run() -> tuple[Path, bool, dict, subprocess.CompletedProcess]:
    """`playbook run` (fast demo) SIGKILLed with its process group during step 2, then resumed; once per session.

    The outcome is kept in a JSON file beside the run folder, found through an environment variable, so
    that every test module importing this function shares one run.
    """
    if os.environ.get(CACHE_KEY):
        saved = json.loads(Path(os.environ[CACHE_KEY]).read_text())
        return (Path(saved["out"]), saved["orphans_gone"], saved["killed_manifest"],
                subprocess.CompletedProcess(saved["args"], saved["returncode"], saved["stdout"], saved["stderr"]))
    out = Path(tempfile.mkdtemp(prefix="playbook-resume-")) / "run"
    proc = subprocess.Popen([sys.executable, "-m", "helpers.run.cli", "run", "--out", str(out), *fast_args()],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        assert _wait_for(lambda: _step_status(out, S2) == "running", timeout=300), "step 2 never started"
        assert _wait_for(lambda: resume.kernel_processes(out), timeout=60), "no kernel of step 2 was found"
        time.sleep(3)  # well inside step 2
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the whole process group, as a CI runner or OOM killer would
        proc.wait()
    # the kernel is in a session of its own; it must notice its parent died and exit by itself
    orphans_gone = _wait_for(lambda: not resume.kernel_processes(out), timeout=15)
    killed_manifest = json.loads((out / "manifest.json").read_text())
    result = run_cli("run", "--resume", str(out))
    record = out.parent / "outcome.json"
    record.write_text(json.dumps({"out": str(out), "orphans_gone": orphans_gone, "killed_manifest": killed_manifest,
                                  "args": result.args, "returncode": result.returncode, "stdout": result.stdout,
                                  "stderr": result.stderr}))
    os.environ[CACHE_KEY] = str(record)
    return out, orphans_gone, killed_manifest, result


@pytest.fixture(scope="module")
def killed_and_resumed():
    return killed_and_resumed_run()


@pytest.mark.slow
def test_killed_run_leaves_no_kernel_behind(killed_and_resumed):
    out, orphans_gone, killed_manifest, _ = killed_and_resumed
    assert orphans_gone
    statuses = {e["step"]: e["status"] for e in killed_manifest["steps"]}
    assert statuses[S1] == "succeeded" and statuses[S2] == "running"


@pytest.mark.slow
def test_resume_completes_the_run_and_reuses_step_1(killed_and_resumed):
    out, _, _, result = killed_and_resumed
    text = result.stdout + result.stderr
    assert result.returncode == 0, text
    assert f"{S1}: reused (inputs unchanged)" in text
    assert f"{S2}: re-run (it was interrupted)" in text
    manifest = Run(out).read_manifest()
    assert [e["status"] for e in manifest["steps"]] == ["reused"] + ["succeeded"] * 4
    assert all(len(e["inputs"]["helpers"]) == 64 and e["inputs"]["data"] for e in manifest["steps"])
    assert manifest["resumes"][0]["command"].startswith("playbook run --resume")
    assert (out / f"{S2}.attempt-1.ipynb").exists()  # the killed attempt is kept
    assert not (out / f"{S1}.attempt-1.ipynb").exists()


@pytest.mark.slow
def test_resumed_run_has_no_corrupt_artifact_and_a_complete_report(killed_and_resumed):
    out = killed_and_resumed[0]
    assert not [p for p in out.rglob("*") if ".tmp" in p.name]
    for path in out.rglob("*.json"):
        json.loads(path.read_text())
    for path in out.rglob("*.parquet"):
        pd.read_parquet(path)
    for step in STEPS:
        nbformat.validate(nbformat.read(out / f"{step}.ipynb", as_version=4))
        assert Run(out).has_summary(step)
    html = (out / "report.html").read_text()
    for title in ("1. Vision", "2. Data foundation", "3. Tools and stack", "4. Model development", "5. Deployment"):
        assert title in html
    assert Run(out).read_manifest()["champion"]


@pytest.mark.slow
def test_a_changed_parameter_reruns_only_its_step(killed_and_resumed, tmp_path):
    out = tmp_path / "copy"  # a copy: the resumed run itself is compared with the demo run by test_determinism
    shutil.copytree(killed_and_resumed[0], out)
    result = run_cli("run", "--resume", str(out), "--no-html", "-p", "n_batches", "2")
    text = result.stdout + result.stderr
    assert result.returncode == 0, text
    for step in STEPS[:4]:
        assert f"{step}: reused (inputs unchanged)" in text
    assert "05_deployment_and_monitoring: re-run (changed since it ran: parameters)" in text
    manifest = Run(out).read_manifest()
    assert [e["status"] for e in manifest["steps"]] == ["reused"] * 4 + ["succeeded"]
    assert manifest["parameters"]["n_batches"] == 2 and len(manifest["resumes"]) == 2
