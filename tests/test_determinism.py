"""Two runs with the same parameters and seed give the same results.

The two runs: the session demo run, and the demo run that test_resume SIGKILLs during step 2
and resumes (step 1 from its first process, steps 2-5 re-executed): same parameters, same
seed, so metrics, summaries (apart from timings and timestamps) and predictions must match.
"""

from __future__ import annotations

import re
from typing import Any

import pandas as pd
import pytest

from helpers.core.artifacts import Run
from helpers.run import cli
from tests.test_resume import killed_and_resumed_run

STEPS = ["01_vision_and_goals", "02_data_foundation", "03_tools_and_stack", "04_model_development",
         "05_deployment_and_monitoring"]
# keys whose values are clock readings (timestamps, durations, speeds) or machine state (free memory)
VOLATILE = re.compile(r"(_at$|_s$|seconds|per_s|elapsed|duration|available)")
# step 3 measures fit times and memory, and its thresholds and decisions follow from them:
# only what does not come from a clock is compared
STEP3_STABLE = ("n_rows", "memory_method")


def stable(value: Any, run: Run) -> Any:
    """The value with timing keys removed and the run folder's path replaced."""
    if isinstance(value, dict):
        return {k: stable(v, run) for k, v in value.items() if not VOLATILE.search(k)}
    if isinstance(value, list):
        return [stable(v, run) for v in value]
    if isinstance(value, str):
        return value.replace(str(run.path), "<run>")
    return value


@pytest.fixture(scope="module")
def second_run() -> Run:
    out, _, _, result = killed_and_resumed_run()
    assert result.returncode == 0, result.stdout + result.stderr
    return Run(out)


def _same_code(a: Run, b: Run) -> None:
    """Both runs executed the same helpers source (else a difference proves nothing about determinism)."""
    for ea, eb in zip(a.read_manifest()["steps"], b.read_manifest()["steps"], strict=True):
        assert ea["inputs"]["helpers"] == eb["inputs"]["helpers"], \
            f"the helpers source changed between the two runs (step {ea['step']}): re-run the tests"


def _same_parameters(a: Run, b: Run) -> None:
    _same_code(a, b)
    skip = ("run_dir", "interactive")
    pa, pb = a.read_manifest()["parameters"], b.read_manifest()["parameters"]
    assert {k: v for k, v in pa.items() if k not in skip} == {k: v for k, v in pb.items() if k not in skip}


@pytest.mark.slow
def test_same_metrics_and_champion(demo_run, second_run):
    _same_parameters(demo_run, second_run)
    ma, mb = demo_run.read_manifest(), second_run.read_manifest()
    assert ma["dataset"]["sha256"] == mb["dataset"]["sha256"]
    assert ma["kpis"] == mb["kpis"]  # achieved values and bootstrap intervals, bit for bit
    assert ma["champion"] == mb["champion"]


@pytest.mark.slow
@pytest.mark.parametrize("step", [s for s in STEPS if s != "03_tools_and_stack"])
def test_same_summaries_apart_from_timings(demo_run, second_run, step):
    _same_code(demo_run, second_run)
    a = stable(demo_run.read_summary(step), demo_run)
    b = stable(second_run.read_summary(step), second_run)
    jobs = [run.read_summary("03_tools_and_stack")["plan"]["parameters"].get("n_jobs") for run in (demo_run, second_run)]
    if step == "04_model_development" and jobs[0] != jobs[1]:
        # n_jobs None is planned from step 3's measured work (a clock result: the fast configuration's work is
        # near plan.MIN_PARALLEL_WORK_S); the results never depend on it, only where it is recorded
        for summary, n_jobs in zip((a, b), jobs, strict=True):
            assert summary["sampling"].pop("n_jobs") == n_jobs and summary["engine"].pop("threads") == n_jobs
    differing = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    assert not differing, f"{step}: {differing}"


@pytest.mark.slow
def test_step3_results_that_do_not_come_from_a_clock(demo_run, second_run):
    a, b = (r.read_summary("03_tools_and_stack") for r in (demo_run, second_run))
    assert {k: a[k] for k in STEP3_STABLE} == {k: b[k] for k in STEP3_STABLE}
    # How many families fit into step 3's time budget is a clock result (2 of 4 on a machine at load 20, in
    # parallel lanes whose order varies): both runs measured some, and only registry candidates.
    from helpers.core import families

    candidates = {f.name for f in families.families_for("classification")}
    assert a["curves"] and b["curves"] and set(a["curves"]) | set(b["curves"]) <= candidates
    assert a["environment"]["packages"] == b["environment"]["packages"]


@pytest.mark.slow
def test_time_cap_did_not_decide_the_search(demo_run, second_run):
    for run in (demo_run, second_run):
        tuning = run.read_summary("04_model_development")["tuning"]
        assert tuning["stopped_by_budget"] is False and not tuning["warnings"]
    assert demo_run.read_summary("04_model_development")["tuning"]["configurations"] == \
        second_run.read_summary("04_model_development")["tuning"]["configurations"]


@pytest.mark.slow
def test_same_predictions(demo_run, second_run, tmp_path, capsys):
    rows = pd.read_parquet(demo_run.raw_snapshot_path).drop(columns="churn").head(400)
    rows.to_csv(tmp_path / "new.csv", index=False)
    outputs = []
    for i, run in enumerate((demo_run, second_run)):
        out = tmp_path / f"pred{i}.csv"
        assert cli.main(["predict", "--run", str(run.path), "--input", str(tmp_path / "new.csv"),
                         "--output", str(out)]) == 0, capsys.readouterr().err
        outputs.append(pd.read_csv(out))
    assert len(outputs[0]) == 400
    pd.testing.assert_frame_equal(outputs[0], outputs[1], check_exact=True)
