"""The parameter registry, notebook parameter cells, project.yaml and type conversion."""

from __future__ import annotations

import nbformat
import papermill as pm
import pytest
import yaml

from helpers.core import config, paths
from helpers.core.errors import PlaybookError

STEPS = paths.available_steps()


def parameters_cells(step):
    nb = nbformat.read(paths.notebooks_dir() / f"{step}.ipynb", as_version=4)
    return [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]


@pytest.mark.parametrize("step", STEPS)
def test_notebook_parameters_cell_matches_registry(step):
    cells = parameters_cells(step)
    assert len(cells) == 1, f"{step} must have exactly one cell tagged parameters"
    assert cells[0].source == config.parameters_cell_source(step)


@pytest.mark.parametrize("step", STEPS)
def test_papermill_sees_types_and_help(step):
    found = pm.inspect_notebook(str(paths.notebooks_dir() / f"{step}.ipynb"))
    for p in config.params_for_step(step):
        assert found[p.name]["inferred_type_name"] == p.annotation
        assert found[p.name]["help"] == p.help
    assert set(found) == {p.name for p in config.params_for_step(step)}


def test_project_yaml_documents_every_parameter():
    text = (paths.templates_dir() / "project.yaml").read_text()
    assert text == config.project_yaml_text()
    values = yaml.safe_load(text)
    expected = {n: p.default for n, p in config.REGISTRY.items() if n not in ("run_dir", "interactive")}
    assert values == expected
    for p in config.REGISTRY.values():
        if p.name not in ("run_dir", "interactive"):
            assert p.help in text


def test_project_yaml_is_a_valid_run_configuration():
    values = config.merge(config.load_project_file(paths.templates_dir() / "project.yaml"))
    assert values["target"] == "churn" and values["problem_type"] == "classification"


@pytest.mark.parametrize(("name", "text", "expected"), [
    ("seed", "007", 7), ("test_size", "0.3", 0.3), ("interactive", "false", False),
    ("interactive", "True", True), ("target", "None", None), ("project_name", "123", "123"),
    ("kpis", "{recall: 0.8}", {"recall": 0.8}), ("sensitive_columns", "[a, b]", ["a", "b"]),
    ("sensitive_columns", "gender", ["gender"]), ("tuning_iterations", "1e1", None),
])
def test_convert_from_text(name, text, expected):
    if name not in config.REGISTRY:
        pytest.skip(f"{name} not in registry")
    if expected is None and name == "tuning_iterations":
        with pytest.raises(PlaybookError, match="expects int"):
            config.convert(name, text, from_text=True)
        return
    assert config.convert(name, text, from_text=True) == expected


@pytest.mark.parametrize(("name", "value", "fragment"), [
    ("seed", "abc", "expects int"),
    ("test_size", "1.5", "must be <"),
    ("test_size", "0", "must be >"),
    ("test_size", "-0.2", "must be >"),
    ("problem_type", "forecasting", "not one of"),
    ("interactive", "maybe", "true or false"),
    ("kpis", "{recall: [", "cannot parse"),
    ("kpis", "[1, 2]", "mapping"),
    ("test_size", "nan", "finite"),
])
def test_convert_rejects_bad_values(name, value, fragment):
    with pytest.raises(PlaybookError, match=fragment):
        config.convert(name, value, from_text=True)


@pytest.mark.parametrize(("name", "fragment"), [
    ("tagret", "Unknown parameter"), ('__import__("os").system("id"); a', "not a valid parameter name"),
    ("class", "not a valid parameter name"), ("1abc", "not a valid parameter name"),
])
def test_check_name(name, fragment):
    with pytest.raises(PlaybookError, match=fragment):
        config.check_name(name)


def test_merge_order_defaults_preset_file_yaml_cli():
    merged = config.merge({"dataset": "builtin:diabetes"})
    assert merged["target"] == "progression"  # preset
    assert merged["kpis"] == {"r2": 0.40, "mae": 48.0}
    merged = config.merge({"dataset": "builtin:diabetes", "seed": 1}, {"seed": 2}, text_layer={"seed": "3"})
    assert merged["seed"] == 3
    merged = config.merge({"dataset": "builtin:diabetes", "kpis": {"r2": 0.3}})
    assert merged["kpis"] == {"r2": 0.3}  # the file beats the preset


@pytest.mark.parametrize(("layer", "fragment"), [
    ({"kpis": {"r2": 0.5}}, "does not fit a classification problem"),
    ({"kpis": {"recall": 1.5}}, "outside the metric's range"),
    ({"kpis": {"recal": 0.5}}, "Unknown KPI metric"),
    ({"dataset": "data.csv", "problem_type": "regression"}, "no target column"),
    ({"dataset": "builtin:nope"}, "Unknown built-in"),
])
def test_merge_rejects_inconsistent_values(layer, fragment):
    with pytest.raises(PlaybookError, match=fragment):
        config.merge(layer)


def test_malformed_yaml_names_line():
    with pytest.raises(PlaybookError, match=r"Malformed YAML in x at line \d+"):
        config.parse_yaml_mapping("seed: 1\nkpis: {recall: [\n", where="x")


def test_validate_step_resolves_preset_and_rejects_bad_injected_value():
    namespace = {p.name: p.default for p in config.params_for_step(STEPS[0])}
    params = config.validate_step(STEPS[0], namespace)
    assert params.target == "churn" and params.kpis["recall"] == 0.7
    namespace["seed"] = "not a number"
    with pytest.raises(PlaybookError, match="seed"):
        config.validate_step(STEPS[0], namespace)


RUNNER_PARAMS = {"tracking"}  # taken by the runner after the steps, declared by no notebook


def test_every_parameter_is_declared_by_a_step():
    for p in config.REGISTRY.values():
        assert p.steps or p.name in RUNNER_PARAMS
        assert all(s in paths.STEP_NOTEBOOKS for s in p.steps)
        assert p.help and p.type in ("str", "int", "float", "bool", "dict", "list")
