"""Step 1 as a feasibility study on at most ``feasibility_rows`` training rows, and step 2's sampled checks.

The sample is seeded and stratified, stated with both counts (notebook output and summary.json),
never drawn below the cap (small tables keep their results exactly), and a verdict on a sample
agrees with the verdict on the whole table when the signal is clear.
"""

from __future__ import annotations

import pandas as pd
import pytest

from helpers.core import artifacts, config, datasets, problem, split
from helpers.steps import vision
from helpers.steps.foundation import data


def params_for(step: str, **overrides) -> config.Params:
    namespace = config.defaults()
    namespace.update(interactive=False, **overrides)
    return config.validate_step(step, namespace)


def training_side(n_rows: int, seed: int = 7, **overrides):
    """make_churn's table cut by the playbook's split, as step 1's notebook does (labelled training rows)."""
    params = params_for(vision.STEP, **overrides)
    raw = datasets.make_churn(n_rows, seed=seed)
    ptype, _ = problem.frame_problem(raw, params.target, params.problem_type)
    is_test = split.assign_test(raw, target=params.target, problem_type=ptype, test_size=params.test_size,
                                seed=params.seed, id_column=params.id_column)
    train, _ = vision.labelled_rows(raw[~is_test], params.target)
    return params, ptype, train, train[params.target]


def study(params, ptype, train, y):
    """Step 1's notebook path on the training side: sample, set aside, baselines, verdict, realism, curve."""
    sample = vision.feasibility_sample(train, y, params, ptype)
    set_aside = vision.set_aside_columns(train, params, ptype, y, sample=sample)
    contract = vision.build_contract(params, ptype, y)
    framing = vision.supervised_framing(sample.train[set_aside["features"]], sample.y, contract, params.seed,
                                        leak_columns=set_aside["kept"])
    table = vision.score_table(framing)
    verdict = vision.verdict(table, contract, heuristic_leak=framing.heuristic_leak)
    realism = vision.kpi_realism(framing, params.seed, n_boot=50)
    curve = vision.learning_curve_points(framing, params.seed)
    needed = vision.rows_needed(curve, contract, current_rows=len(train), sample_rows=sample.rows)
    result = vision.VisionResult(params, ptype, "", contract, table, verdict, realism, needed, set_aside, framing,
                                 unlabelled_rows=0, training_rows=len(train), feasibility=sample)
    return sample, set_aside, table, verdict, needed, vision.summary(result)


@pytest.fixture(scope="module")
def above_cap():
    """3,000 rows with feasibility_rows = 1,000 (the registry's minimum is 500): about 2,400 training rows."""
    params, ptype, train, y = training_side(3000, feasibility_rows=1000)
    return params, ptype, train, y, study(params, ptype, train, y)


def test_a_table_above_the_cap_is_sampled_stratified_and_stated_with_both_counts(above_cap):
    _, _, train, y, (sample, set_aside, table, verdict, _, summary) = above_cap
    assert sample.sampled and sample.rows == 1000 and sample.of == len(train) > 2000
    assert len(sample.train) == len(sample.y) == 1000 and sample.train.index.is_unique
    assert set(sample.train.index) <= set(train.index) and (sample.y == train.loc[sample.train.index, "churn"]).all()
    # stratified: the class shares of the sample are those of the training side (within one row)
    shares, sampled_shares = y.value_counts(), sample.y.value_counts()
    assert ((sampled_shares - shares * 1000 / len(train)).abs() <= 1).all()
    stated = summary["feasibility"]
    assert stated["sampled"] and stated["rows"] == 1000 and stated["of"] == len(train)
    assert f"1,000 of {len(train):,} training rows" in stated["text"] and "feasibility_rows" in stated["text"]
    assert summary["training_rows"] == len(train)  # the real count, not the sample's
    # the leakage check ran on the sample and still finds the demo's leak
    assert set_aside["leakage"] == ["retention_call_minutes"]
    assert verdict.code == "proceed"


def test_the_sample_is_deterministic_for_a_seed(above_cap):
    params, ptype, train, y, (sample, _, table, verdict, needed, _) = above_cap
    again, _, table2, verdict2, needed2, _ = study(params, ptype, train, y)
    assert list(again.train.index) == list(sample.train.index)
    pd.testing.assert_frame_equal(table, table2)
    assert verdict2 == verdict
    pd.testing.assert_frame_equal(needed, needed2)
    other = vision.feasibility_sample(train, y, config.Params(params, seed=params.seed + 1), ptype)
    assert set(other.train.index) != set(sample.train.index)  # another seed, another sample


def test_below_the_cap_nothing_is_sampled_and_results_are_those_of_every_row():
    params, ptype, train, y = training_side(1200, feasibility_rows=5000)
    sample, set_aside, table, verdict, _, summary = study(params, ptype, train, y)
    assert not sample.sampled and sample.train is train and sample.y is y
    assert summary["feasibility"]["sampled"] is False and f"all {len(train):,} training rows" in sample.text
    # exactly what step 1 computed before the cap existed: the same calls on every training row
    contract = vision.build_contract(params, ptype, y)
    whole = vision.supervised_framing(train[set_aside["features"]], y, contract, params.seed,
                                      leak_columns=set_aside["kept"])
    pd.testing.assert_frame_equal(table, vision.score_table(whole))
    plain = vision.set_aside_columns(train, params, ptype, y)
    pd.testing.assert_frame_equal(set_aside["leakage_table"], plain["leakage_table"])


def test_the_verdict_on_a_sample_agrees_with_the_whole_table(above_cap):
    params, ptype, train, y, (sample, _, table, verdict, _, _) = above_cap
    whole, _, whole_table, whole_verdict, _, _ = study(config.Params(params, feasibility_rows=len(train)), ptype,
                                                       train, y)
    assert sample.sampled and not whole.sampled
    assert verdict.code == whole_verdict.code == "proceed"
    scores = table.set_index("candidate")["roc_auc"]
    whole_scores = whole_table.set_index("candidate")["roc_auc"]
    assert abs(scores["quick_model"] - whole_scores["quick_model"]) < 0.03
    assert scores["quick_model"] > scores["heuristic"] + 0.05
    assert table.set_index("candidate").loc["heuristic", "description"] == \
        whole_table.set_index("candidate").loc["heuristic", "description"]  # the same rule on 1,000 rows


def test_rows_needed_are_judged_against_the_real_row_count():
    import numpy as np

    from helpers.core import kpis

    c = kpis.KpiContract("regression", {"r2": 0.9})
    rows = np.array([100, 200, 400, 800])
    points = pd.DataFrame({"rows": rows, "metric": "r2", "score": 1 - 0.5 * (rows / 100.0) ** -0.5})
    # the curve was measured on a sample of 1,000 rows (800 per fold): 2,500 fit rows -> 3,125 labelled rows
    sampled = vision.rows_needed(points, c, current_rows=50_000, sample_rows=1000).set_index("metric")
    assert sampled.loc["r2", "rows_needed"] == pytest.approx(2500 * 1000 / 800, rel=0.02)
    assert "sample of 1,000" in sampled.loc["r2", "note"] and "50,000" in sampled.loc["r2", "note"]
    assert "should reach it" in sampled.loc["r2", "note"]
    # r2 0.99 needs 250,000 fit rows (312,500 labelled): within 10x of the table's 50,000 rows, more than it has ...
    strict = kpis.KpiContract("regression", {"r2": 0.99})
    far = vision.rows_needed(points, strict, current_rows=50_000, sample_rows=1000).set_index("metric")
    assert far.loc["r2", "rows_needed"] == pytest.approx(250_000 * 1000 / 800, rel=0.02)
    assert "more than it has" in far.loc["r2", "note"]
    # ... and "unknown" when judged against the sample's 1,000 rows (what the curve alone would say)
    alone = vision.rows_needed(points, strict, current_rows=1000).set_index("metric")
    assert alone.loc["r2", "rows_needed"] is None and "unknown" in alone.loc["r2", "note"]


def test_step_2_samples_its_leakage_check_and_states_it(tmp_path):
    frame = datasets.make_churn(3000, seed=7)
    path = tmp_path / "churn.parquet"
    frame.to_parquet(path)
    namespace = config.defaults()
    namespace.update(run_dir=str(tmp_path / "run"), interactive=False, dataset=str(path), target="churn",
                     feasibility_rows=1000)
    params = config.validate_step(data.STEP, namespace)
    run = artifacts.open_run(params.run_dir)
    result = data.run_core(run, params)
    (statement,) = result["sampled_checks"]
    labelled = int(result["split"]["train_rows"])
    assert statement["sampled"] and statement["rows"] == 1000 and statement["of"] == labelled
    assert f"1,000 of {labelled:,} training rows" in statement["text"]
    assert {i["column"] for i in result["issues"] if i["check"] == "target leakage"} == {"retention_call_minutes"}
    # whole-row checks still see every row: duplicates are counted on the whole training side
    assert any(i["check"] == "duplicate rows" for i in result["issues"])
    stated = data.feasibility(result["sampled_checks"], labelled)
    assert stated["sampled"] and stated["rows"] == 1000 and "duplicates" in stated["text"]
    assert f"uses all {labelled:,} training rows" in stated["text"]
