"""The report: first screen, offline HTML, escaped user strings, partial runs."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from markupsafe import escape

from helpers.core import tables
from helpers.core.artifacts import Run
from helpers.run import report
from tests.conftest import run_cli


def test_report_html_is_offline_and_code_free(demo_run: Run):
    html = (demo_run.path / "report.html").read_text()
    assert not re.search(r"<script[^>]+src=[\"']https?:", html, re.I)
    assert not re.search(r"<link[^>]+href=[\"']https?:", html, re.I)
    assert "report.show_first_screen" not in html  # inputs hidden
    assert "data:image/png;base64" in html  # figures inlined
    assert "Widget" not in html or "application/vnd.jupyter.widget-view" not in html


def test_first_screen_comes_first_and_has_the_outline(demo_run: Run):
    html = (demo_run.path / "report.html").read_text()
    first = html.index("ML project report: churn-demo</h1>")
    step1 = html.index('id="step-1"')
    for fragment in ("Go / no-go (step 1):", "KPI scoreboard", "Recommended next actions", "Most severe data issues",
                     "Production readiness"):
        assert first < html.index(fragment, first) < step1, fragment
    assert html.index("<caption>Steps</caption>") > step1  # the steps' table closes the report (The run)


def test_the_demo_report_is_a_document(demo_run: Run):
    """Contents that link to every section, takeaways, collapsed details, tables for people, under 3 MB."""
    html = (demo_run.path / "report.html").read_text()
    assert len(html.encode()) < 3_000_000
    anchors = re.findall(r'<nav[^>]*class="pb-toc"[^>]*>.*?</nav>', html, re.S)[0]
    targets = re.findall(r'href="#([\w-]+)"', anchors)
    assert targets == ["summary", "step-1", "step-2", "step-3", "step-4", "step-5", "run"]
    for target in targets:
        assert f'id="{target}"' in html
    assert html.count('<p class="pb-takeaway">') == 6 and html.count("<details") >= 8
    board = html[html.index("Leaderboard (cross-validated)"):]
    assert board.index("Leaderboard (cross-validated)") < board.index("</details>")  # the full leaderboard is a detail
    assert "@media print" in html and "beforeprint" in html
    tables_html = "".join(re.findall(r'<table[^>]*class="pb-table"[^>]*>.*?</table>', html, re.S))
    for raw in (">ci_low<", ">roc_auc_train<", ">True<", ">False<", "dataframe"):
        assert raw not in tables_html, raw
    evidence = pd.read_csv(demo_run.artifacts / "05_deployment_and_monitoring" / "readiness.csv")["evidence"].dropna()
    assert len(evidence) > 5 and all(escape(e) in tables_html for e in evidence)  # long text whole, never cut
    numbers = re.findall(r'<td class="pb-(?:metric|number|count|seconds|share|bytes)">(.*?)</td>', tables_html)
    assert len(numbers) > 100 and not [n for n in numbers if re.search(r"\de[-+]\d", n)]  # never 5.078468e-03
    assert "ROC AUC (train)" in tables_html and "✓</span> pass" in tables_html
    assert "<svg" in html[:html.index('id="step-1"')]  # the scoreboard is a figure on the first screen


def _synthetic_run(tmp_path, evil: str = "<b>evil</b>") -> Run:
    """A run folder with the summaries the first screen reads (steps 1, 2 and 5), no notebook executed."""
    run = Run(tmp_path / "run")
    run.path.mkdir()
    run.write_manifest({"schema_version": 1, "project": evil, "dataset": {"source": "d.csv", "rows": 5075, "columns": 3},
                        "steps": [{"step": "01_vision_and_goals", "status": "succeeded", "notebook": "01.ipynb",
                                   "duration_s": 12.3}],
                        "kpis": [{"metric": "recall", "target": 0.7, "direction": "higher", "achieved": 0.716,
                                  "ci_low": 0.673, "ci_high": 0.769, "verdict": "pass"},
                                 {"metric": "rmse", "target": 3.0, "direction": "lower", "achieved": 3.4,
                                  "ci_low": 3.1, "ci_high": 3.8, "verdict": "fail"}]})
    run.write_summary("01_vision_and_goals", {"verdict": {"code": "revisit", "text": f"too weak {evil}"},
                                              "problem_type": "classification", "target": "y",
                                              "problem_statement": evil, "set_aside": {}})
    issues = [{"check": "outliers", "column": "a", "severity": "low", "evidence": "few", "fix": "none"},
              {"check": "constant column", "column": "c", "severity": "low", "evidence": "one value", "fix": "drop"},
              {"check": "duplicate rows", "column": None, "severity": "medium", "evidence": "60 rows", "fix": "drop"},
              {"check": "target leakage", "column": evil, "severity": "high", "evidence": "AUC 0.999", "fix": "set aside"}]
    run.write_summary("02_data_foundation", {"issues": issues, "issue_counts": {"high": 1, "medium": 1, "low": 2}})
    run.write_summary("05_deployment_and_monitoring", {
        "readiness": {"final": 2.5, "band": "Reasonably tested", "sections": {}, "weakest_section": "data"},
        "gate": {"result": "failed"}, "monitoring": {"alerts": 0}, "retraining": {"decisions": []}})
    return run


def test_first_screen_shows_verdict_scoreboard_issues_readiness_and_actions(tmp_path):
    html = report.first_screen_html(_synthetic_run(tmp_path))
    verdict = html[html.index('id="pb-verdict"'):html.index('id="pb-scoreboard"')]
    assert 'pb-card pb-verdict pb-fail"' in html and "No-go" in verdict and "too weak &lt;b&gt;evil&lt;/b&gt;" in verdict
    svg = html[html.index("<svg"):html.index("</svg>")]
    assert "target 0.7" in svg and "target 3" in svg and "✓ pass  0.716" in svg and "✗ fail  3.400" in svg
    assert "1 of 2 met on the test set" in html
    issues = html[html.index('id="pb-issues"'):]
    issues = issues[:issues.index("</div>")]
    assert issues.index("target leakage") < issues.index("duplicate rows") < issues.index("outliers")  # most severe first
    assert "constant column" not in issues and "1 high · 1 medium · 2 low" in issues  # three at most
    readiness = html[html.index('id="pb-readiness"'):html.index('id="pb-issues"')]
    assert '<p class="pb-big">2.5</p>' in readiness and "weakest section: data" in readiness
    assert "Revisit the data or the KPI targets" in html and "KPI(s) missed on the test set: rmse." in html
    assert "<b>evil</b>" not in html and "ML project report: &lt;b&gt;evil&lt;/b&gt;" in html


def test_extra_sections_have_one_place_and_join_the_contents(tmp_path, monkeypatch):
    from helpers.core import sections

    run = _synthetic_run(tmp_path)
    monkeypatch.setattr(report, "EXTRA_SECTIONS", [
        lambda r: sections.markdown_section("since-last-run", "Since the last run", "recall rose.", "- recall: +0.01"),
        lambda r: None])
    extra = report.extra_sections(run)
    assert [s.anchor for s in extra] == ["since-last-run"]
    toc = report.table_of_contents([*extra, report.run_section(run)])
    assert toc == [("summary", "Summary"), ("since-last-run", "Since the last run"), ("run", "The run")]
    assert 'href="#since-last-run"' in report.first_screen_html(run, toc)
    assert "<li>recall: +0.01</li>" in str(extra[0].render())


def test_scoreboard_and_next_actions_from_manifest():
    manifest = {"kpis": [{"metric": "recall", "target": 0.7, "direction": "higher", "achieved": 0.65,
                          "ci_low": 0.6, "ci_high": 0.69, "passed": False},
                         {"metric": "precision", "target": 0.5, "direction": "higher", "achieved": 0.49,
                          "ci_low": 0.44, "ci_high": 0.54, "passed": None, "verdict": "watch"}],
                "steps": [{"step": "01_vision_and_goals", "status": "succeeded"}]}
    board = report.kpi_scoreboard(manifest)
    assert board.iloc[0].to_dict() == {"metric": "recall", "target": "≥ 0.7", "achieved": 0.65,
                                       "interval": "0.600 to 0.690", "verdict": "fail"}
    assert board.iloc[1]["verdict"] == "watch"
    shown = tables.table(board)
    assert ">95% interval</th>" in shown and ">0.650</td>" in shown and "✗</span> fail" in shown
    assert "!</span> watch" in shown and "ci_low" not in shown
    actions = report.next_actions(manifest, {"01_vision_and_goals": {"verdict": {"code": "revisit"}}})
    assert any("Revisit" in a for a in actions)
    assert any(a.startswith("KPI(s) missed on the test set: recall.") for a in actions)
    assert any(a.startswith("KPI(s) on watch: precision") for a in actions)


@pytest.mark.slow
def test_user_strings_are_escaped_everywhere(tmp_path):
    evil = "<script>alert(1)</script>"
    col = "<img src=x onerror=alert(2)>"
    rng = np.random.default_rng(0)
    data = tmp_path / "d.csv"
    x = rng.normal(size=300)
    pd.DataFrame({col: x, "other": rng.normal(size=300),
                  "y": np.where(x + rng.normal(0, 0.5, 300) > 0, "yes", "no")}).to_csv(data, index=False)
    out = tmp_path / "run"
    result = run_cli("run", "--steps", "1", "--out", str(out), "-p", "dataset", str(data), "-p", "target", "y",
                     "-p", "project_name", evil, "-p", "problem_statement", evil)
    assert result.returncode == 0, result.stdout + result.stderr
    html = (out / "report.html").read_text()
    charter = (out / "artifacts" / "01_vision_and_goals" / "charter.md").read_text()
    for text in (html, charter):
        assert evil not in text and col not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert Run(out).read_manifest()["project"] == evil  # stored as given, escaped when shown


def test_pdf_without_chromium_is_one_clear_message_before_anything_is_built(tmp_path, monkeypatch, capsys):
    from helpers.run import cli

    run = _synthetic_run(tmp_path)
    monkeypatch.setenv("PLAYBOOK_CHROMIUM", str(tmp_path / "no-such-chromium"))
    assert cli.main(["report", str(run.path), "--pdf"]) == 2
    err = capsys.readouterr().err
    assert "--pdf needs the system Chromium" in err and "apt-get install chromium" in err
    assert not (run.path / "report.ipynb").exists() and not (run.path / "report.pdf").exists()
    monkeypatch.delenv("PLAYBOOK_CHROMIUM")
    assert cli.main(["report", str(run.path), "--pdf", "--no-html"]) == 2
    assert "--pdf prints report.html, which --no-html skips" in capsys.readouterr().err


def test_first_screen_of_a_run_that_stopped_after_step_1(tmp_path):
    run = Run(tmp_path / "run")
    run.path.mkdir()
    run.write_manifest({"schema_version": 1, "project": "p", "steps": [],
                        "kpis": [{"metric": "recall", "target": 0.7, "direction": "higher", "achieved": None}]})
    run.write_summary("01_vision_and_goals", {"verdict": {"code": "proceed", "text": "ok"}, "problem_type": "classification",
                                              "target": "y", "set_aside": {}})
    html = report.first_screen_html(run)
    assert "targets set, not measured yet (step 4 measures them)" in html and "not measured" in html
    assert "Step 2 has not run yet." in html and "Not scored yet (step 5 scores it)." in html
    assert "The run" in str(report.run_section(run).render())
