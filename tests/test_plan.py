"""The run's plan (core.plan) and step 4's sampled selection: sizes, jobs, determinism, same champion, round trip."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

from helpers.core import artifacts, datasets, kpis, plan
from helpers.core.prepared import Prepared
from helpers.core.scaling import CostModel, PowerLaw
from helpers.core.system import usable_cores
from helpers.steps import modeling

# --- rungs and jobs ---------------------------------------------------------------------------------------


def test_a_small_table_is_one_rung_of_every_row():
    assert plan.rungs(4000, None) == [4000]
    assert plan.rungs(4000, 50_000) == [4000]


def test_rungs_are_four_times_apart_and_capped():
    assert plan.rungs(800_000, 100_000) == [6250, 25_000, 100_000]
    assert plan.rungs(80_000, None) == [5000, 20_000, 80_000]
    assert all(r >= plan.FIRST_RUNG_ROWS for r in plan.rungs(10**7, 10**6))


def test_n_jobs_set_wins_and_short_work_stays_on_one_core():
    assert plan.resolve_n_jobs(3, 1000.0, 2) == 3
    assert plan.resolve_n_jobs(None, 1.0, 2) == 1
    assert plan.resolve_n_jobs(None, 100.0, 2) == 2
    assert plan.resolve_n_jobs(None, 100.0, 1) == 1
    assert plan.resolve_n_jobs(None, None, 8) == 1


def test_usable_cores_honours_a_container_quota(tmp_path):
    (tmp_path / "cpu.max").write_text("100000 100000\n")  # one core's worth
    assert usable_cores(tmp_path) == 1
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert usable_cores(tmp_path) >= 1


# --- the plan from costs ------------------------------------------------------------------------------------


def linear_costs(seconds_per_row: dict[str, float]) -> dict[str, CostModel]:
    """Cost models that grow linearly: fit ``a * n`` seconds, scoring a hundredth of that per row scored."""
    return {name: CostModel(PowerLaw(a, 1.0), PowerLaw(a / 100, 0.0), 0.0, measured_rows=10_000)
            for name, a in seconds_per_row.items()}


COSTS = linear_costs({"logistic_regression": 2e-6, "random_forest": 4e-5, "hist_gradient_boosting": 1e-5,
                      "k_nearest_neighbors": 1e-6})
COMMON = dict(problem_type="classification", n_train=800_000, n_test=200_000, n_features=20, folds=5, iterations=8,
              strategy="random", tuning_budget_s=120.0, binary=True, elapsed_s=60.0, cores=2, available_bytes=2e10)


def test_the_planned_selection_fits_the_budget_and_grows_with_it():
    small = plan.make_plan(COSTS, time_budget_s=300.0, **COMMON)
    large = plan.make_plan(COSTS, time_budget_s=3000.0, **COMMON)
    rows = small.parameters["selection_rows"]
    assert plan.FIRST_RUNG_ROWS <= rows < large.parameters["selection_rows"] <= 800_000
    work = plan.selection_cost_s(COSTS, problem_type="classification", rows=rows, folds=5, iterations=8,
                                 strategy="random", tuning_budget_s=120.0, binary=True, n_features=20)
    assert work / plan.speedup(small.parameters["n_jobs"], 2) <= 300.0 - 60.0 - plan.LATER_STEPS_RESERVE_S
    assert small.planned_s["04_model_development"] <= 300.0 - 60.0 - plan.LATER_STEPS_RESERVE_S + 1e-6
    assert "selection_rows" in small.planned and small.parameters["n_jobs"] == 2
    # the slowest family is refitted on fewer rows than the fastest when the budget is tight
    tight = plan.make_plan(COSTS, time_budget_s=150.0, **COMMON)
    assert tight.refit_rows["random_forest"] < tight.refit_rows["logistic_regression"] == 800_000
    assert "random_forest would be refitted on" in " ".join(tight.notes)


def test_step_4_is_projected_on_1_to_16_workers_from_the_same_costs():
    p = plan.make_plan(COSTS, time_budget_s=300.0, **COMMON)  # 2 cores, n_jobs 2
    projected = {int(w): s for w, s in p.workers_s.items()}
    assert sorted(projected) == [1, 2, 4, 8, 16]
    assert projected[2] == pytest.approx(p.planned_s["04_model_development"], abs=0.1)  # this machine's 2 cores
    work = plan.selection_cost_s(COSTS, problem_type="classification", rows=p.parameters["selection_rows"], folds=5,
                                 iterations=8, strategy="random", tuning_budget_s=120.0, binary=True, n_features=20)
    # only the selection is spread over the workers: the fixed part and the refit stay
    assert projected[1] - projected[16] == pytest.approx(work / plan.speedup(1, 1) - work / plan.speedup(16, 16), abs=0.2)
    assert plan.Plan.from_dict(p.to_dict()).workers_s == p.workers_s


def test_parameters_that_are_set_are_never_planned_over():
    fixed = {"selection_rows": 12_345, "refit_rows": 54_321, "n_jobs": 1}
    p = plan.make_plan(COSTS, time_budget_s=300.0, fixed=fixed, **COMMON)
    assert p.parameters == {"selection_rows": 12_345, "n_jobs": 1}
    assert set(p.refit_rows.values()) == {54_321}
    assert p.planned == []


def test_without_a_budget_the_fixed_defaults_apply():
    p = plan.make_plan(COSTS, time_budget_s=None, **COMMON)
    assert p.parameters["selection_rows"] == plan.DEFAULT_SELECTION_ROWS
    assert set(p.refit_rows.values()) == {800_000}
    assert "no time budget" in " ".join(p.notes)


def test_memory_caps_the_refit():
    memory = {"random_forest": lambda n: 1e5 * n}  # 100 kB per row: 800,000 rows need 80 GB
    p = plan.make_plan(COSTS, time_budget_s=10**6, memory_bytes=memory, **COMMON)
    assert p.refit_rows["random_forest"] * 1e5 <= plan.MEMORY_SHARE * 2e10
    assert p.refit_rows["logistic_regression"] == 800_000


def test_plan_round_trips_through_a_dict():
    p = plan.make_plan(COSTS, time_budget_s=300.0, **COMMON)
    assert plan.Plan.from_dict(p.to_dict()) == p


def test_pinned_parameters_land_in_the_manifest_and_project_file(tmp_path):
    run = artifacts.Run(tmp_path)
    run.write_manifest(artifacts.empty_manifest())
    (tmp_path / "project.yaml").write_text("# header kept\nseed: 3\nselection_rows: null\n")
    run.pin_parameters({"selection_rows": 5000, "n_jobs": 2}, plan={"notes": ["x"]})
    run.pin_parameters({"refit_rows": 7000})
    manifest = run.read_manifest()
    assert manifest["plan"]["notes"] == ["x"]
    assert manifest["plan"]["pinned"] == {"selection_rows": 5000, "n_jobs": 2, "refit_rows": 7000}
    text = (tmp_path / "project.yaml").read_text()
    assert text.startswith("# header kept\n")
    assert yaml.safe_load(text) == {"seed": 3, "selection_rows": 5000, "n_jobs": 2, "refit_rows": 7000}


# --- the sampled selection in step 4 -----------------------------------------------------------------------


def churn_inputs(n_rows: int, *, selection_rows: int | None, seed: int = 0, folds: int = 3) -> modeling.Inputs:
    """A generated churn table (not the demo's size), cleaned enough to model, as step 4's inputs."""
    frame = datasets.make_churn(n_rows, seed=11)
    frame = frame.drop(columns=["customer_id", "retention_call_minutes", "country"])
    frame["total_charges"] = pd.to_numeric(frame["total_charges"], errors="coerce")
    for column in ("contract", "has_partner"):
        frame[column] = frame[column].str.strip().str.lower()
    test = np.arange(len(frame)) % 5 == 0
    numeric = [c for c in frame.columns if c != "churn" and pd.api.types.is_numeric_dtype(frame[c])]
    categorical = [c for c in frame.columns if c not in numeric + ["churn", "gender", "senior_citizen"]]
    prepared = Prepared(frame[~test], frame[test], "churn", "classification", numeric, categorical, None,
                        ["gender", "senior_citizen"])
    classes = kpis.class_order(frame["churn"])
    contract = kpis.KpiContract("classification", {"roc_auc": 0.8}, "yes", "macro", classes)
    return modeling.Inputs(prepared, contract, {"column": "contract"}, seed=seed, folds=folds, n_jobs=1,
                           selection_rows=selection_rows)


@pytest.fixture(scope="module")
def sampled() -> modeling.Inputs:
    return churn_inputs(20_000, selection_rows=4_000)


@pytest.mark.slow
def test_the_sampled_leaderboard_picks_the_full_leaderboards_champion(sampled):
    full = modeling.leaderboard(churn_inputs(20_000, selection_rows=None))  # every training row, no rungs
    small = modeling.select(sampled)
    n_train = len(sampled.prepared.train)
    assert small.rows == 4_000 < n_train
    assert modeling.leaders(small.board, 1) == modeling.leaders(full, 1)
    assert f"4,000 of {n_train:,} training rows" in small.text


def test_sampling_is_deterministic_for_a_seed(sampled):
    first, second = modeling.selection_samples(sampled), modeling.selection_samples(sampled)
    assert [s.prepared.train.index.tolist() for s in first] == [s.prepared.train.index.tolist() for s in second]
    other = modeling.selection_samples(churn_inputs(20_000, selection_rows=4_000, seed=1))
    assert first[-1].prepared.train.index.tolist() != other[-1].prepared.train.index.tolist()


def test_rungs_are_nested_and_stratified(sampled):
    samples = modeling.selection_samples(churn_inputs(20_000, selection_rows=16_000))
    assert [len(s.prepared.train) for s in samples] == [4000, 16_000]  # 4,060 and 16,240 rows capped at 16,000
    assert set(samples[0].prepared.train.index) <= set(samples[1].prepared.train.index)
    share = sampled.prepared.train["churn"].eq("yes").mean()
    assert abs(samples[0].prepared.train["churn"].eq("yes").mean() - share) < 0.002


def test_the_sample_grows_only_while_it_helps():
    inputs = churn_inputs(20_000, selection_rows=16_000)
    never = modeling.select(modeling.Inputs(**{**inputs.__dict__, "sample_gain": 1.0}))
    assert never.rows == 16_000 and len(never.rungs) == 2  # the second rung is the first that can judge
    assert "stopped growing" in never.text


def test_families_far_behind_on_a_rung_do_not_race_on_the_next():
    inputs = churn_inputs(20_000, selection_rows=16_000)
    selection = modeling.select(modeling.Inputs(**{**inputs.__dict__, "sample_gain": -1.0}))  # always grow
    board, steps = selection.board, selection.rungs
    families = board[board["kind"] == "family"]
    assert list(steps["families"]) == [4, len(families[families["rows"] == 16_000])]
    assert steps["families"].iloc[1] < 4  # at most the better half and those the leader cannot be told from
    behind = families[families["rows"] == 4000]
    assert set(behind["model"]) == set(steps["dropped"].iloc[0].split(", "))
    assert list(board["rows"]) == sorted(board["rows"], reverse=True)  # the left-behind listed last
    assert list(board["rank"]) == list(range(1, len(board) + 1))
    for name in behind["model"]:
        assert f"{name}" in selection.text and "after 4,000 rows" in selection.text
    raced = modeling.racing_families(steps, list(families["model"]))
    assert raced[0] == list(families["model"]) and set(raced[1]) == set(families.loc[families["rows"] == 16_000, "model"])


def test_contenders_keep_the_better_half_and_whoever_the_leader_cannot_be_told_from():
    def board(scores, std=0.001):
        return pd.DataFrame({"model": list(scores), "kind": "family", "roc_auc_mean": list(scores.values()),
                             "roc_auc_std": std})
    clear = board({"a": 0.90, "b": 0.85, "c": 0.80, "d": 0.70})
    assert modeling.contenders(clear, "roc_auc", 5) == ["a", "b"]
    close = board({"a": 0.90, "b": 0.85, "c": 0.899, "d": 0.70}).sort_values("roc_auc_mean", ascending=False)
    assert modeling.contenders(close, "roc_auc", 5) == ["a", "c"]
    noisy = board({"a": 0.90, "b": 0.89, "c": 0.88, "d": 0.70}, std=0.02)  # c is within two standard errors
    assert modeling.contenders(noisy, "roc_auc", 5) == ["a", "b", "c"]


def test_refit_rows_are_stated_and_used(sampled):
    inputs = modeling.Inputs(**{**sampled.__dict__, "refit_rows": {"logistic_regression": 3000}})
    rows, text = modeling.refit_rows(inputs, "logistic_regression")
    n_train = len(sampled.prepared.train)
    assert rows == 3000 and f"3,000 of {n_train:,} training rows" in text
    pipeline = modeling.family_pipeline(inputs, modeling.fam.get_family("classification", "logistic_regression"))
    final = modeling.final_evaluation(inputs, pipeline, None, n_boot=0, rows=rows)
    assert final.training_rows == 3000
    assert len(final.y_pred) == len(inputs.prepared.test)  # the whole test side is scored
    assert modeling.refit_rows(sampled, "random_forest") == (n_train, f"random_forest refitted on all {n_train:,} training rows.")


# --- the plan round-trips through project.yaml -------------------------------------------------------------


@pytest.mark.slow
def test_a_planned_run_reproduces_from_its_project_file(tmp_path):
    """A tight budget plans a sample; re-running the run's project.yaml re-plans nothing and gives the same KPIs."""
    table = tmp_path / "churn.csv"
    datasets.make_churn(12_000, seed=5).to_csv(table, index=False)
    fast = ["-p", "scaling_budget_s", "2", "-p", "cv_folds", "3", "-p", "tuning_iterations", "1",
            "-p", "time_budget_s", "60", "-p", "feasibility_rows", "2000"]
    first = tmp_path / "first"
    cmd = [sys.executable, "-m", "helpers.run.cli", "run", "--no-html", "--steps", "1-4", "-p", "dataset", str(table),
           "-p", "target", "churn"]
    subprocess.run([*cmd, "--out", str(first), *fast], check=True, capture_output=True)
    pinned = yaml.safe_load((first / "project.yaml").read_text())
    assert {"selection_rows", "n_jobs", "refit_rows"} <= {k for k, v in pinned.items() if v is not None}
    second = tmp_path / "second"
    subprocess.run([sys.executable, "-m", "helpers.run.cli", "run", "--no-html", "--steps", "1-4", "-f",
                    str(first / "project.yaml"), "--out", str(second)], check=True, capture_output=True)
    one, two = (artifacts.Run(p).read_manifest() for p in (first, second))
    assert two["plan"]["planned"] == [], "a run from a pinned project file must not re-plan"
    assert one["kpis"] == two["kpis"]
    s1, s2 = (artifacts.Run(p).read_summary("04_model_development")["sampling"] for p in (first, second))
    assert s1 == s2


# --- n_jobs never oversubscribes ------------------------------------------------------------------------------

THREADS_CODE = """
import json
from joblib import Parallel, delayed
from threadpoolctl import threadpool_info
from helpers.core.plan import resolve_n_jobs
from helpers.core.system import usable_cores
from helpers.steps.modeling import _quiet

def threads():
    import numpy as np, sklearn.ensemble  # load the OpenMP and BLAS runtimes as a fit does
    return max(p["num_threads"] for p in threadpool_info())

cores = usable_cores()
n_jobs = resolve_n_jobs(None, 1000.0, cores)
with _quiet(n_jobs):
    workers = Parallel(n_jobs=n_jobs)(delayed(threads)() for _ in range(2 * n_jobs))
    main = threads()
print(json.dumps({"cores": cores, "n_jobs": n_jobs, "workers": workers, "main": main}))
"""


def test_automatic_n_jobs_never_oversubscribes_inside_a_kernel():
    """In a playbook kernel, n_jobs=None resolved for long work runs one native thread per worker process."""
    import json

    from jupyter_client.manager import start_new_kernel

    from helpers.run.engine import playbook_kernel

    with playbook_kernel() as name:
        manager, client = start_new_kernel(kernel_name=name)
        try:
            lines: list[str] = []
            client.execute_interactive(THREADS_CODE, timeout=120,
                                       output_hook=lambda msg: lines.append(msg["content"].get("text", "")))
        finally:
            client.stop_channels()
            manager.shutdown_kernel(now=True)
    found = json.loads("".join(lines).strip().splitlines()[-1])
    assert found["n_jobs"] == found["cores"]
    assert max(found["workers"]) * found["n_jobs"] <= found["cores"], found


def test_a_spent_budget_keeps_a_useful_minimum_and_says_so():
    p = plan.make_plan(COSTS, time_budget_s=10.0, **COMMON)  # steps 1-3 already took 60 s
    assert p.parameters["selection_rows"] == plan.MIN_SELECTION_ROWS
    assert min(p.refit_rows.values()) >= plan.MIN_SELECTION_ROWS  # never refitted on fewer rows than selected on
    assert "the budget is spent" in " ".join(p.notes)
