"""The report: first screen, offline HTML, escaped user strings, partial runs."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

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
    first = html.index("ML project report: churn-demo")
    for fragment in ("Go / no-go (step 1):", "KPI scoreboard", "Recommended next actions", "Steps"):
        assert html.index(fragment) > first
    assert html.index("Recommended next actions") < html.index("1. Vision and measurable goals")


def test_scoreboard_and_next_actions_from_manifest():
    manifest = {"kpis": [{"metric": "recall", "target": 0.7, "direction": "higher", "achieved": 0.65,
                          "ci_low": 0.6, "ci_high": 0.69, "passed": False},
                         {"metric": "precision", "target": 0.5, "direction": "higher", "achieved": 0.49,
                          "ci_low": 0.44, "ci_high": 0.54, "passed": None, "verdict": "watch"}],
                "steps": [{"step": "01_vision_and_goals", "status": "succeeded"}]}
    board = report.kpi_scoreboard(manifest)
    assert board.iloc[0].to_dict() == {"KPI": "recall", "target": ">= 0.7", "achieved": "0.650",
                                       "95% interval": "0.600 to 0.690", "result": "FAIL"}
    assert board.iloc[1]["result"] == "WATCH"
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
