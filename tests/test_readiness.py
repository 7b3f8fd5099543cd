"""The ML Test Score rubric: data file, evidence lookups, section sums and bands."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from helpers.core import artifacts
from helpers.steps.operations import deployment, monitoring, readiness
from tests.test_deployment import batch_dependent, damaged, serving_setup


def all_facts() -> dict:
    names = {item["fact"] for t in readiness.load_rubric()["tests"] for item in t["evidence"] if "fact" in item}
    return {name: True for name in names}


def full_run(path) -> artifacts.Run:
    """A run holding every file, summary key and manifest field the rubric looks for."""
    run = artifacts.open_run(str(path))
    for test in readiness.load_rubric()["tests"]:
        for item in test["evidence"]:
            if "file" in item:
                artifacts.write_text(run.path / item["file"], "x")
            if "summary" in item:
                summary = run.optional_summary(item["summary"]) or {}
                node = summary
                *parents, last = item["key"].split(".")
                for part in parents:
                    node = node.setdefault(part, {})
                node[last] = [1]
                summary.pop("step", None)
                summary.pop("written_at", None)
                run.write_summary(item["summary"], summary)
            if "manifest" in item:
                manifest = run.read_manifest()
                node = manifest
                *parents, last = item["manifest"].split(".")
                for part in parents:
                    if not isinstance(node.get(part), dict):
                        node[part] = {}
                    node = node[part]
                node[last] = "yes"
                run.write_manifest(manifest)
    return run


def test_rubric_has_28_tests_in_four_sections_of_seven():
    rubric = readiness.load_rubric()
    assert len(rubric["tests"]) == 28
    assert rubric["sections"] == ["data", "model", "infrastructure", "monitoring"]
    assert len({t["id"] for t in rubric["tests"]}) == 28
    assert all(t["score"] in (0, 0.5, 1) and t["todo"] for t in rubric["tests"])


def test_bands_follow_the_paper():
    assert readiness.band(0).startswith("More of a research project")
    assert readiness.band(0.5).startswith("Not totally untested")
    assert readiness.band(2).startswith("There's been first pass")
    assert readiness.band(3).startswith("Reasonably tested")
    assert readiness.band(4.5).startswith("Strong levels")
    assert readiness.band(6).startswith("Exceptional")


def test_an_empty_run_scores_zero_and_says_what_is_missing(tmp_path):
    run = artifacts.open_run(str(tmp_path / "empty"))
    table = readiness.score_run(run, {})
    assert table["score"].sum() == 0
    assert set(table["status"]) == {"missing evidence", readiness.NOT_VERIFIABLE}
    row = table.set_index("id").loc["data_1"]
    assert "missing: file artifacts/02_data_foundation/schema.json" in row["evidence"]
    summary = readiness.summarise(table)
    assert summary["final"] == 0 and summary["band"].startswith("More of a research project")


def test_a_run_with_all_evidence_earns_each_tests_score(tmp_path):
    run = full_run(tmp_path / "full")
    table = readiness.score_run(run, all_facts()).set_index("id")
    rubric = {t["id"]: t for t in readiness.load_rubric()["tests"]}
    for test_id, row in table.iterrows():
        assert row["score"] == float(rubric[test_id]["score"]), test_id
    assert table.loc["data_3", "status"] == readiness.NOT_VERIFIABLE
    assert table.loc["model_3", "status"] == "automated"
    assert "step 04 summary tuning.configurations" in table.loc["model_3", "evidence"]
    summary = readiness.summarise(table.reset_index())
    assert summary["final"] == min(summary["sections"].values())
    assert summary["sections"]["data"] == 3.0 and summary["weakest_section"] == "data"


@pytest.mark.parametrize(("missing", "test_id"), [("fact:gate", "infrastructure_4"),
                                                    ("file:artifacts/02_data_foundation/schema.json", "data_1"),
                                                    ("summary:04_model_development", "model_3"),
                                                    ("manifest:champion", "infrastructure_7")])
def test_each_kind_of_missing_evidence_zeroes_its_test(tmp_path, missing, test_id):
    run = full_run(tmp_path / "r")
    facts = all_facts()
    kind, what = missing.split(":", 1)
    if kind == "fact":
        facts.pop(what)
    elif kind == "file":
        (run.path / what).unlink()
    elif kind == "summary":
        run.summary_path(what).unlink()
    else:
        run.update_manifest(**{what: None})
    table = readiness.score_run(run, facts).set_index("id")
    assert table.loc[test_id, "score"] == 0
    assert table.loc[test_id, "status"] == "missing evidence"
    full = readiness.score_run(full_run(tmp_path / "other"), all_facts())
    assert table["score"].sum() < full["score"].sum()


def test_section_figure_marks_the_final_score():
    fig = readiness.section_figure({"sections": {"data": 1, "model": 3, "infrastructure": 2, "monitoring": 4},
                                    "final": 1, "weakest_section": "data"})
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["data", "model", "infrastructure", "monitoring"]
    assert "final score 1" in ax.get_legend().get_texts()[0].get_text()


# --- the facts behind the score are measured: break each one and the score drops ---------------------------


@pytest.fixture(scope="module")
def serving(tmp_path_factory):
    return serving_setup(tmp_path_factory.mktemp("ready") / "run")


def facts_of(package, checks) -> dict:
    """The facts step 5 hands the rubric (``monitoring.readiness_facts``), with these serving checks."""
    batch = {"labels": np.array(["no", "yes"]), "proba": np.array([0.2, 0.7]), "kpis": None}
    return monitoring.readiness_facts(
        package_dir=package.path, sample_check=deployment.Validation(), gate_code=0, card="# card", groups=pd.DataFrame(),
        importance=pd.DataFrame(), results=[batch], alerts=pd.DataFrame(columns=["kind"]), decisions=[],
        challengers=[], throughput={"rows_per_s": 1000}, checks=checks)


def measured(package, prepared, raw) -> dict:
    rows = deployment.check_rows(prepared, 8)
    return {"package_loads": deployment.fresh_process_check(package, rows),
            "single_rows": deployment.single_row_check(package, rows),
            "same_code_path": deployment.training_serving_check(package, prepared, raw)}


@pytest.fixture(scope="module")
def healthy(serving):
    package, prepared, raw = serving
    return measured(package, prepared, raw)


def test_measured_facts_show_their_evidence(tmp_path, serving, healthy):
    package, _, _ = serving
    facts = facts_of(package, healthy)
    table = readiness.score_run(full_run(tmp_path / "r"), facts).set_index("id")
    assert table.loc["infrastructure_2", "score"] == 0.5 and table.loc["infrastructure_5", "score"] == 0.5
    assert table.loc["monitoring_3", "score"] == 1
    assert "loaded from disk in a fresh process" in table.loc["infrastructure_2", "evidence"]
    assert "predictions identical for all 8 rows" in table.loc["infrastructure_5", "evidence"]
    assert "training and serving inputs identical" in table.loc["monitoring_3", "evidence"]
    assert "file models/v1/schema.json; the sample batch validated" in table.loc["data_1", "evidence"]
    assert "file models/v1/requirements.lock.txt" in table.loc["monitoring_1", "evidence"]
    assert "2 predictions in 1 batches: all finite" in table.loc["monitoring_5", "evidence"]


@pytest.mark.parametrize(("fault", "test_id", "reason"), [
    ("damaged package", "infrastructure_2", "failed to load and predict in a fresh process"),
    ("single-row mismatch", "infrastructure_5", "predictions differ for"),
    ("diverging conversion", "monitoring_3", "training and serving inputs differ")])
def test_breaking_a_measured_fact_drops_the_score(tmp_path, serving, healthy, fault, test_id, reason):
    package, prepared, raw = serving
    rows = deployment.check_rows(prepared, 8)
    checks = dict(healthy)
    if fault == "damaged package":
        checks["package_loads"] = deployment.fresh_process_check(damaged(package, tmp_path / "v1"), rows)
    elif fault == "single-row mismatch":
        checks["single_rows"] = deployment.single_row_check(batch_dependent(package), rows)
    else:  # the package lost step 2's data fixes
        checks["same_code_path"] = deployment.training_serving_check(replace(package, cleaning={}), prepared, raw)
    run = full_run(tmp_path / "r")
    before = readiness.score_run(run, facts_of(package, healthy)).set_index("id")
    after = readiness.score_run(run, facts_of(package, checks)).set_index("id")
    assert before.loc[test_id, "score"] > 0 and after.loc[test_id, "score"] == 0
    assert after.loc[test_id, "status"] == "missing evidence" and reason in after.loc[test_id, "evidence"]
    section = before.loc[test_id, "section"]
    assert readiness.summarise(after.reset_index())["sections"][section] < \
        readiness.summarise(before.reset_index())["sections"][section]
    assert after["score"].sum() == before["score"].sum() - before.loc[test_id, "score"]  # only that test moved


def test_facts_that_were_not_measured_earn_nothing(tmp_path, serving):
    package, _, _ = serving
    table = readiness.score_run(full_run(tmp_path / "r"), facts_of(package, None)).set_index("id")
    for test_id in ("infrastructure_2", "infrastructure_5", "monitoring_3"):
        assert table.loc[test_id, "score"] == 0 and "not measured" in table.loc[test_id, "evidence"]
    nothing = monitoring.readiness_facts(
        package_dir=package.path, sample_check=None, gate_code=2, card="", groups=pd.DataFrame(),
        importance=pd.DataFrame(), results=[], alerts=pd.DataFrame(columns=["kind"]), decisions=[], challengers=[],
        throughput={"rows_per_s": 0})
    assert not nothing["finite_predictions"].holds and not nothing["schema_validation"].holds
    assert not nothing["model_card"].holds


def test_checks_on_samples_score_like_checks_on_every_row_and_a_sample_still_catches_skew(tmp_path, serving, healthy):
    package, prepared, raw = serving
    sampled = {**healthy, "same_code_path": deployment.training_serving_check(package, prepared, raw, max_rows=30)}
    run = full_run(tmp_path / "r")
    whole = readiness.score_run(run, facts_of(package, healthy)).set_index("id")
    table = readiness.score_run(run, facts_of(package, sampled)).set_index("id")
    assert table["score"].equals(whole["score"])
    assert f"30 of {len(prepared.test)} (a seeded sample" in table.loc["monitoring_3", "evidence"]
    skewed = {**healthy, "same_code_path": deployment.training_serving_check(replace(package, cleaning={}), prepared,
                                                                             raw, max_rows=30)}
    assert readiness.score_run(run, facts_of(package, skewed)).set_index("id").loc["monitoring_3", "score"] == 0
