"""The report's one formatting layer: labels, rounding, pass/fail, escaping, no index, text never cut."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
from markupsafe import Markup

from helpers.core import sections, tables


def cells(html: str) -> list[str]:
    return re.findall(r"<td[^>]*>(.*?)</td>", html, re.S)


def headers(html: str) -> list[str]:
    return re.findall(r"<th\b[^>]*>(.*?)</th>", html, re.S)


def test_labels_are_for_people():
    assert tables.label("ci_low") == "95% interval low"
    assert tables.label("roc_auc_train") == "ROC AUC (train)"
    assert tables.label("recall_mean") == "recall (CV)" and tables.label("precision_std") == "precision (CV sd)"
    assert tables.label("fit_time_s") == "fit time" and tables.label("rows_affected") == "rows affected"
    assert tables.label("some_new_column") == "some new column"  # undeclared: de-underscored, never raw


def test_numbers_are_rounded_to_what_they_mean():
    assert tables.format_metric(0.816244) == "0.816" and tables.format_metric(5.078468e-03) == "0.005"
    assert tables.format_metric(1.1e-16) == "0.000" and tables.format_metric(-1e-9) == "0.000"
    assert tables.format_p(3e-9) == "< 0.001" and tables.format_p(0.0123) == "0.012" and tables.format_p(None) == "–"
    assert tables.format_seconds(0.0123) == "12.3 ms" and tables.format_seconds(90) == "90 s"
    assert tables.format_seconds(3 * 3600) == "3 h" and tables.format_seconds(None) == "n/a"
    assert tables.format_share(0.0152) == "1.5%" and tables.format_count(4060) == "4,060"
    assert tables.format_bytes(3 * 1024 ** 3) == "3 GiB"
    assert tables.format_number(0.7) == "0.7" and tables.format_number(53938.0) == "53,938"


def test_a_table_has_no_index_human_headers_and_rounded_cells():
    board = pd.DataFrame({"model": ["lr", "rf"], "roc_auc_mean": [0.815842, 0.781034], "gap": [5.078468e-03, 0.22],
                          "fit_time_s": [0.117933, 0.916905], "overfitting": [False, True]}, index=[7, 8])
    html = tables.table(board)
    assert headers(html) == ["model", "ROC AUC (CV)", "train − CV gap", "fit time", "overfits"]
    assert cells(html) == ["lr", "0.816", "0.005", "118 ms", "no", "rf", "0.781", "0.220", "917 ms", "yes"]
    assert ">7<" not in html and ">8<" not in html  # the index is never shown
    assert "e-03" not in html


def test_pass_and_fail_read_as_words_and_marks_with_a_colour_class():
    html = tables.table([{"metric": "recall", "verdict": "pass"}, {"metric": "roc_auc", "verdict": "fail"},
                         {"metric": "f1", "verdict": "watch"}, {"metric": "r2", "verdict": None},
                         {"metric": "mae", "passed": True}])
    assert 'class="pb-badge pb-pass"><span aria-hidden="true">✓</span> pass' in html
    assert 'class="pb-badge pb-fail"><span aria-hidden="true">✗</span> fail' in html
    assert "!</span> watch" in html and "–</span> not judged" in html
    assert "True" not in html and "False" not in html
    assert tables.table([{"verdict": "one bigger machine"}]).count("pb-badge") == 0  # no verdict made up
    assert cells(html)[3] == "ROC AUC"  # metric names as people write them


def test_user_strings_are_escaped_and_trusted_markup_passes():
    evil = "<script>alert(1)</script>"
    html = tables.table([{"column": evil, "evidence": "a & b", "notebook": Markup('<a href="x.ipynb">x</a>')}])
    assert evil not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "a &amp; b" in html
    assert '<a href="x.ipynb">x</a>' in html
    frame_html = tables.table(pd.DataFrame({evil: [1]}))
    assert "<script>" not in frame_html  # column names too


def test_long_text_is_wrapped_never_cut():
    long = "word " * 200
    html = tables.table([{"evidence": long}])
    assert long.strip() in html and "..." not in html and 'class="pb-text"' in html


def test_max_rows_says_how_many_were_left_out():
    html = tables.table(pd.DataFrame({"rank": range(1, 13)}), max_rows=10, caption="Tuning")
    assert len(cells(html)) == 10 and "<caption>Tuning; first 10 of 12 rows</caption>" in html


def test_key_values_and_intervals():
    html = tables.key_values({"alerts": 12, "gate": "passed"})
    assert "<thead>" not in html and cells(html) == ["alerts", "12", "gate", "passed"]
    rows = tables.with_interval([{"ci_low": 0.6, "ci_high": 0.69}, {"ci_low": None, "ci_high": None}])
    assert list(rows["interval"]) == ["0.600 to 0.690", "–"]
    assert tables.format_metric(np.float64(0.5)) == "0.500" and tables.format_count(np.int64(3)) == "3"


def test_a_section_renders_takeaway_facts_and_collapsible_details():
    section = sections.Section("step-9", "9. <Odd> title", "It <works>.", [sections.Fact("gate", "passed", "pass")],
                               body=[tables.table([{"rank": 1}])],
                               details=[sections.Details("More", [sections.paragraph("<b>raw</b>")])],
                               links=[("card", "artifacts/card.md")])
    html = str(section.render())
    assert '<section class="pb-section" id="step-9">' in html and "9. &lt;Odd&gt; title" in html
    assert '<p class="pb-takeaway">It &lt;works&gt;.</p>' in html
    assert 'class="pb-fact pb-pass"' in html and html.index("pb-takeaway") < html.index("pb-facts")
    assert '<details class="pb-details"><summary>More</summary>' in html and "&lt;b&gt;raw&lt;/b&gt;" in html
    assert '<a href="artifacts/card.md">card</a>' in html


def test_markdown_sections_escape_raw_html():
    section = sections.markdown_section("since", "Since the last run", "Nothing changed.",
                                        "| KPI | change |\n|---|---|\n| recall | +0.01 |\n\n<script>x()</script>")
    html = str(section.render())
    assert "<table>" in html and "<td>+0.01</td>" in html and "<script>" not in html
