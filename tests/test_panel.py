"""The parameter panel without a browser: set widget values, click buttons, assert state and messages."""

from __future__ import annotations

import html
import re

import ipywidgets as w
import pytest

from helpers.core import config, kpis
from helpers.core.errors import PlaybookError
from helpers.core.paths import STEP_NOTEBOOKS
from helpers.ui import panel

S1, S2, S3, S4, S5 = STEP_NOTEBOOKS


def defaults_namespace(step: str) -> dict:
    """What a fresh notebook's parameters cell holds."""
    return {p.name: p.default for p in config.params_for_step(step)}


def make_panel(step: str = S1, tmp_path=None, **overrides):
    namespace = {**defaults_namespace(step), **overrides}
    params = config.validate_step(step, namespace)
    return panel.ParameterPanel(step, params, namespace=namespace, project_dir=tmp_path), namespace, params


def text_of(html_value: str) -> str:
    """The visible text of an HTML widget's value."""
    return html.unescape(re.sub(r"<[^>]+>", "", html_value))


def cli_message(name: str, value) -> str:
    with pytest.raises(PlaybookError) as info:
        config.convert(name, value)
    return str(info.value)


# --- generation -------------------------------------------------------------------------


def test_fields_follow_the_registry_of_the_step():
    p, _, _ = make_panel(S1)
    expected = [q.name for q in config.params_for_step(S1) if q.name not in ("run_dir", "interactive")]
    assert list(p.fields) == expected
    controls = {name: f.control for name, f in p.fields.items()}
    assert isinstance(controls["dataset"], w.Combobox)
    assert "builtin:diabetes" in controls["dataset"].options
    assert isinstance(controls["problem_type"], w.Dropdown)
    assert controls["problem_type"].options[0] == (panel.NO_VALUE, None)
    assert [v for _, v in controls["problem_type"].options[1:]] == list(config.PROBLEM_TYPES)
    assert isinstance(controls["test_size"], w.BoundedFloatText)
    assert (controls["test_size"].min, controls["test_size"].max) == (0.0, 1.0)
    assert isinstance(controls["seed"], w.BoundedIntText) and controls["seed"].min == 0
    assert isinstance(controls["encoding"], w.Text) and controls["encoding"].value == "utf-8"
    assert isinstance(p.fields["kpis"], panel.KpiField)


def test_fields_start_from_the_values_in_force_with_presets_resolved():
    p, _, params = make_panel(S1)
    assert p.fields["target"].control.value == "churn"
    assert p.fields["problem_type"].control.value == "classification"
    assert p.fields["sensitive_columns"].control.value == "gender, senior_citizen"
    assert p.fields["sep"].control.value == "" and p.fields["sep"].raw() is None
    assert p.fields["kpis"].raw() == params.kpis == {"recall": 0.7, "precision": 0.5, "roc_auc": 0.8}
    assert all(f.message.value == "" for f in p.fields.values())


def test_other_steps_get_their_own_controls():
    p4, _, _ = make_panel(S4)
    assert isinstance(p4.fields["cv_folds"].control, w.BoundedIntText)
    assert (p4.fields["cv_folds"].control.min, p4.fields["cv_folds"].control.max) == (2, 20)
    assert isinstance(p4.fields["n_jobs"].control, w.Text)  # nullable: empty means "planned"
    assert p4.fields["n_jobs"].control.placeholder.startswith("None (automatic")
    assert [v for _, v in p4.fields["tuning_strategy"].control.options] == ["grid", "random", "halving"]
    p2, _, _ = make_panel(S2)
    assert p2.fields["scaler"].control.value == "standard"
    assert "kpis" not in p2.fields  # declared by step 1 only


def test_panel_widget_tree_has_stable_classes():
    p, _, _ = make_panel(S3)
    assert "playbook-panel" in p.widget._dom_classes
    assert "playbook-apply" in p.apply_button._dom_classes
    assert "playbook-save" in p.save_button._dom_classes
    assert "playbook-field-growth_factor" in p.fields["growth_factor"].row._dom_classes


# --- per-field messages equal the CLI's ----------------------------------------------------------


def test_out_of_range_number_shows_the_cli_message_next_to_the_field():
    p, _, _ = make_panel(S1)
    p.fields["test_size"].control.value = 1.0  # the widget allows the bound; the parameter excludes it
    assert text_of(p.fields["test_size"].message.value) == cli_message("test_size", 1.0)
    p.fields["test_size"].control.value = 0.25
    assert p.fields["test_size"].message.value == ""


def test_kpi_metric_that_does_not_fit_the_problem_type_is_flagged():
    p, _, _ = make_panel(S1)
    p.fields["problem_type"].control.value = "regression"
    with pytest.raises(PlaybookError) as info:
        kpis.validate_kpis({"recall": 0.7, "precision": 0.5, "roc_auc": 0.8}, "regression")
    assert text_of(p.fields["kpis"].message.value) == str(info.value)
    options = [v for _, v in p.fields["kpis"].rows[0].children[0].options]
    assert options[:4] == ["r2", "mae", "rmse", "mape"] and "recall" in options  # kept, so the message makes sense


def test_kpi_editor_adds_removes_and_checks_rows():
    p, _, _ = make_panel(S1)
    editor = p.fields["kpis"]
    editor.add_button.click()
    assert len(editor.rows) == 4
    assert editor.raw()["accuracy"] == 0.5  # the first classification metric not used yet
    editor.rows[-1].children[0].value = "recall"
    assert "KPI 'recall' is listed twice." in text_of(editor.message.value)
    editor.rows[-1].children[2].click()  # remove
    assert editor.raw() == {"recall": 0.7, "precision": 0.5, "roc_auc": 0.8}
    assert editor.message.value == ""
    editor.rows[0].children[1].value = 1.5
    assert "outside the metric's range [0, 1]" in text_of(editor.message.value)


def test_empty_kpi_editor_means_the_preset():
    p, namespace, params = make_panel(S1)
    for row in list(p.fields["kpis"].rows):
        row.children[2].click()
    assert p.fields["kpis"].raw() is None
    assert "preset" in text_of(p.fields["kpis"].message.value)
    assert p.apply()
    assert namespace["kpis"] is None
    assert params.kpis == {"recall": 0.7, "precision": 0.5, "roc_auc": 0.8}  # as validate_step resolves it


def test_list_and_nullable_text_fields_convert():
    p, _, _ = make_panel(S1)
    p.fields["sensitive_columns"].control.value = " gender ,, region "
    assert p.fields["sensitive_columns"].value() == ["gender", "region"]
    p.fields["sensitive_columns"].control.value = "  "
    assert p.fields["sensitive_columns"].value() is None
    p.fields["project_name"].control.value = ""
    assert p.fields["project_name"].value() == ""  # not nullable: empty stays a string


# --- apply ------------------------------------------------------------------------------


def test_apply_writes_namespace_and_params_and_says_what_to_run():
    p, namespace, params = make_panel(S1)
    p.fields["test_size"].control.value = 0.3
    p.fields["project_name"].control.value = "my-project"
    p.fields["kpis"].rows[0].children[1].value = 0.75
    p.apply_button.click()
    status = text_of(p.status.value)
    assert status.startswith(panel.APPLIED_MESSAGE)
    assert "Changed: test_size, project_name, kpis." in status
    assert namespace["test_size"] == 0.3 and namespace["project_name"] == "my-project"
    assert namespace["kpis"] == {"recall": 0.75, "precision": 0.5, "roc_auc": 0.8}
    assert params.test_size == 0.3 and params.kpis["recall"] == 0.75
    assert params.run_dir is None and params.interactive is True  # untouched
    assert config.validate_step(S1, namespace) == params  # what re-running the setup cell gives


def test_apply_with_a_field_error_changes_nothing():
    p, namespace, params = make_panel(S1)
    before_ns, before_params = dict(namespace), dict(params)
    p.fields["test_size"].control.value = 0.0
    p.fields["project_name"].control.value = "changed"
    assert p.apply() is False
    assert text_of(p.status.value) == "Nothing changed: 1 field(s) have errors (test_size); see the messages next to them."
    assert namespace == before_ns and dict(params) == before_params


def test_apply_reports_cross_parameter_problems():
    p, namespace, _ = make_panel(S1)
    p.fields["problem_type"].control.value = "clustering"
    p.fields["kpis"].set_value({"silhouette": 0.2})
    p.apply_button.click()
    assert text_of(p.status.value) == ("Nothing changed: problem_type is 'clustering' but target is 'churn'. Fix: clustering "
                                       "has no target: leave target empty, or choose classification/regression.")
    assert namespace["problem_type"] is None


def test_choosing_a_builtin_dataset_fills_its_preset():
    p, namespace, params = make_panel(S1)
    p.fields["dataset"].control.value = "builtin:diabetes"
    assert p.fields["target"].control.value == "progression"
    assert p.fields["problem_type"].control.value == "regression"
    assert p.fields["id_column"].raw() is None and p.fields["positive_label"].raw() is None
    assert p.fields["kpis"].raw() == {"r2": 0.4, "mae": 48.0}
    assert p.apply()
    assert params.target == "progression" and params.kpis == {"r2": 0.4, "mae": 48.0}
    p.fields["dataset"].control.value = "builtin:nope"
    assert "Unknown built-in data set 'nope'." in text_of(p.fields["dataset"].message.value)


# --- project file ---------------------------------------------------------------------------


def test_saved_project_file_reproduces_the_panel_values(tmp_path):
    p, _, params = make_panel(S1, tmp_path)
    p.fields["dataset"].control.value = "builtin:wine"
    p.fields["sensitive_columns"].control.value = "alcohol, ash"
    p.fields["problem_statement"].control.value = "it's \"quoted\": yes\nno # not a comment"
    p.fields["positive_label"].control.value = "007"
    p.fields["test_size"].control.value = 0.25
    p.fields["seed"].control.value = 7
    p.fields["kpi_average"].control.value = "weighted"
    assert p.apply()
    path = p.save()
    assert path == tmp_path / "project.yaml"
    text = path.read_text()
    assert "run_dir" not in text and "interactive" not in text
    assert "# id_column: null  (from the dataset preset)" in text
    merged = config.merge(config.load_project_file(path))
    assert {k: merged[k] for k in params} == {**dict(params), "run_dir": None, "interactive": True}
    assert merged["positive_label"] == "007" and merged["kpis"] == {"accuracy": 0.9, "f1": 0.88}
    assert text_of(p.status.value) == f"Saved {path}. Run it with: playbook run -f {path}"


def test_save_writes_the_panel_values_even_before_apply(tmp_path):
    p, namespace, _ = make_panel(S4, tmp_path)
    p.fields["cv_folds"].control.value = 3
    p.fields["tuning_strategy"].control.value = "halving"
    p.save_button.click()
    path = p.project_path()
    assert path.exists()
    merged = config.merge(config.load_project_file(path))
    assert (merged["cv_folds"], merged["tuning_strategy"]) == (3, "halving")
    assert namespace["cv_folds"] == 5  # saving does not apply


def test_save_never_overwrites_silently(tmp_path):
    existing = tmp_path / "project.yaml"
    existing.write_text("dataset: mine.csv\n")
    p, _, _ = make_panel(S1, tmp_path)
    assert p.save() is None
    assert existing.read_text() == "dataset: mine.csv\n"
    assert "project.yaml already exists and was not overwritten" in text_of(p.status.value)
    assert p.path.value == "project-2.yaml"
    second = p.save()
    assert second == tmp_path / "project-2.yaml" and second.exists()
    p.path.value = "project.yaml"
    p.overwrite.value = True
    assert p.save() == existing
    assert config.load_project_file(existing)["dataset"] == "builtin:churn"


def test_save_with_invalid_values_writes_nothing(tmp_path):
    p, _, _ = make_panel(S1, tmp_path)
    p.fields["test_size"].control.value = 1.0
    assert p.save() is None
    assert not (tmp_path / "project.yaml").exists()
    assert text_of(p.status.value).startswith("Nothing changed: 1 field(s) have errors (test_size)")


def test_save_into_a_folder_name_is_refused(tmp_path):
    (tmp_path / "sub").mkdir()
    p, _, _ = make_panel(S1, tmp_path)
    p.path.value = "sub"
    assert p.save() is None
    assert "is a folder, not a file" in text_of(p.status.value)


def test_project_file_text_skips_runner_parameters():
    text = panel.project_file_text(S5, {"run_dir": "/x", "interactive": False, "n_batches": 4})
    assert "run_dir" not in text and "interactive" not in text
    assert config.parse_yaml_mapping(text, where="test") == {"n_batches": 4}


def test_free_name_skips_existing_files(tmp_path):
    for name in ("p.yaml", "p-2.yaml"):
        (tmp_path / name).write_text("")
    assert panel.free_name(tmp_path / "p.yaml") == tmp_path / "p-3.yaml"


def test_metric_options_filter_by_problem_type():
    assert [m for _, m in panel.metric_options("clustering")] == ["silhouette", "davies_bouldin"]
    assert len(panel.metric_options(None)) == len(kpis.METRICS) == len(panel.metric_options("auto"))
    assert panel.metric_options("regression")[1] == ("mae (lower is better)", "mae")
