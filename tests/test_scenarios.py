"""The ready scenarios of templates/scenarios/ run end to end (`playbook run -f <scenario>`, small fast settings).

The churn scenario is the demo: its run is the shared ``demo_run`` (its parameters are checked to be the
demo's). The other three run side by side in one fixture (the suite itself runs on one core of two). The
wine scenario is also the end-to-end test of the teaching faults: the manifest's record, the marked
issues, the notices of notebook 02 and of the report's first screen.
"""

from __future__ import annotations

import subprocess
import sys

import nbformat
import pandas as pd
import pytest

from helpers.core import config, faults
from helpers.core.artifacts import Run
from tests.conftest import FAST, ROOT, fast_args

pytestmark = pytest.mark.slow

SCENARIOS = ROOT / "templates" / "scenarios"
RUN = ("wine_faults", "diabetes", "wine_segments")  # churn: the shared demo run
EXTRA = {"tracking": "off"}  # MLflow logging is tested with the demo run; not a scenario's point


def test_there_are_four_documented_scenarios():
    files = sorted(p.stem for p in SCENARIOS.glob("*.yaml"))
    assert files == ["churn", "diabetes", "wine_faults", "wine_segments"]
    kinds = {}
    for name in files:
        text = (SCENARIOS / f"{name}.yaml").read_text()
        assert text.startswith("# Scenario: ") and "What the session learns" in text
        assert f"playbook run -f templates/scenarios/{name}.yaml" in text
        values = config.merge(config.load_project_file(SCENARIOS / f"{name}.yaml"))
        kinds[name] = (values["problem_type"], len(values["teaching_faults"]))
    assert kinds == {"churn": ("classification", 0), "wine_faults": ("classification", len(faults.FAULTS)),
                     "diabetes": ("regression", 0), "wine_segments": ("clustering", 0)}


@pytest.fixture(scope="module")
def scenario_runs(tmp_path_factory) -> dict[str, Run]:
    """`playbook run -f templates/scenarios/<name>.yaml` for each scenario but churn, started together."""
    base = tmp_path_factory.mktemp("scenarios")
    started = {}
    for name in RUN:
        log = open(base / f"{name}.log", "w")  # noqa: SIM115 (closed below, after the run)
        command = [sys.executable, "-m", "helpers.run.cli", "run", "-f", str(SCENARIOS / f"{name}.yaml"),
                   "--out", str(base / name), *fast_args(**EXTRA)]
        started[name] = (subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                          cwd=base), log)
    failed = []
    for name, (process, log) in started.items():
        code = process.wait(timeout=900)
        log.close()
        if code != 0:
            failed.append(f"{name} exited {code}:\n{(base / f'{name}.log').read_text()[-3000:]}")
    assert not failed, "\n".join(failed)
    return {name: Run(base / name) for name in RUN}


def _ran_end_to_end(run: Run, scenario: str) -> dict:
    """Every step succeeded, the KPI table of the scenario's KPIs is in the manifest and the report."""
    manifest = run.read_manifest()
    assert [s["status"] for s in manifest["steps"]] == ["succeeded"] * 5, manifest["steps"]
    values = config.merge(config.load_project_file(SCENARIOS / f"{scenario}.yaml"))
    assert [k["metric"] for k in manifest["kpis"]] == list(values["kpis"])
    assert all(k["achieved"] is not None for k in manifest["kpis"])
    html = (run.path / "report.html").read_text()
    board = html[html.index("KPI scoreboard as a table"):html.index('id="step-1"')]
    assert board.count('<td class="pb-kpi">') == len(manifest["kpis"]) > 0
    return manifest


def test_churn_scenario_is_the_demo_run(demo_run: Run):
    scenario = config.load_project_file(SCENARIOS / "churn.yaml")
    values = config.merge(scenario, text_layer=FAST)
    ran = demo_run.read_manifest()["parameters"]
    resolved = ("max_memory", "data_engine")  # resolved once by the runner from the machine
    assert {k: v for k, v in values.items() if k not in resolved} == {k: ran[k] for k in values if k not in resolved}
    _ran_end_to_end(demo_run, "churn")


@pytest.mark.parametrize("scenario", ["diabetes", "wine_segments"])
def test_scenario_runs_end_to_end(scenario_runs, scenario):
    manifest = _ran_end_to_end(scenario_runs[scenario], scenario)
    assert manifest["teaching_faults"] is None
    assert "Teaching run" not in (scenario_runs[scenario].path / "report.html").read_text()


def test_wine_scenario_injects_records_marks_and_says_its_faults(scenario_runs):
    run = scenario_runs["wine_faults"]
    manifest = _ran_end_to_end(run, "wine_faults")
    listed = config.load_project_file(SCENARIOS / "wine_faults.yaml")["teaching_faults"]
    record = manifest["teaching_faults"]
    assert manifest["parameters"]["teaching_faults"] == listed == list(record["faults"])
    assert record["seed"] == manifest["parameters"]["seed"]
    columns = {name: entry["columns"] for name, entry in record["faults"].items()}
    assert columns["leak"] == ["followup_score"] and columns["constant"] == ["source_system"]

    # each fault is found where it should be, and said to be injected
    step1 = run.read_summary("01_vision_and_goals")["set_aside"]
    assert step1["leakage"] == ["followup_score"] and "record_id" in step1["identifiers"]
    step2 = run.read_summary("02_data_foundation")
    marked = {i["fault"]: i for i in step2["issues"] if i.get("injected")}
    assert set(marked) == {n for n, f in faults.FAULTS.items() if f.check}
    for name, found in marked.items():
        assert found["check"] == faults.FAULTS[name].check and found["column"] in (columns[name] or [None])
        assert found["evidence"].startswith(f"injected for teaching (fault {name}): ")
    assert [i for i in step2["issues"] if i["severity"] == "high"] == [marked["leak"]]  # nothing severe of its own
    assert {"followup_score", "source_system", "record_id"} <= set(step2["dropped_columns"])
    assert step2["bias"]["class_balance"]["imbalance_ratio"] >= 3
    issues_csv = pd.read_csv(run.artifacts / "02_data_foundation" / "issues.csv")
    assert issues_csv["injected"].sum() == len(marked)

    # notebook 02 says so when it reads the snapshot, the report on its first screen
    nb = nbformat.read(run.path / "02_data_foundation.ipynb", as_version=4)
    printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert printed.count("Teaching run: injected faults leak (followup_score), duplicates (") == 1
    html = (run.path / "report.html").read_text()
    first = html[:html.index('id="step-1"')]
    assert 'id="pb-teaching">Teaching run: injected faults leak (followup_score)' in first
    assert "injected for teaching (fault leak)" in first  # the most severe issue, said to be injected
