"""The package's structure: import-linter layers, the step registry and protocol, old import paths."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.core import artifacts, paths
from helpers.core.errors import PlaybookError
from helpers.run import cli, registry, report

ROOT = Path(__file__).resolve().parent.parent


def test_import_linter_contracts_are_kept():
    """Layers (run > ui | steps > core), independent steps, no import circles: see pyproject.toml."""
    lint = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run([str(lint), "--config", str(ROOT / "pyproject.toml")], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(" KEPT") == 3 and "BROKEN" not in result.stdout


def test_registry_lists_every_step_in_order_with_the_protocol():
    assert [s.id for s in registry.STEPS] == list(paths.STEP_NOTEBOOKS)
    for step_id, module in registry.load_all().items():
        assert module.STEP == step_id
        for name in registry.PROTOCOL:
            assert callable(getattr(module, name)) or name == "STEP", (step_id, name)


@pytest.fixture
def broken_step(tmp_path, monkeypatch):
    """Step 3's registry entry points at a module that fails on import."""
    (tmp_path / "broken_stack_step.py").write_text("raise RuntimeError('half-finished edit')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    steps = tuple(registry.Step(s.id, s.title, "broken_stack_step" if s.id == paths.STEP_NOTEBOOKS[2] else s.module)
                  for s in registry.STEPS)
    monkeypatch.setattr(registry, "STEPS", steps)
    yield paths.STEP_NOTEBOOKS[2]
    sys.modules.pop("broken_stack_step", None)


def test_a_step_that_fails_to_import_stops_playbook_report_naming_it(broken_step, tmp_path, capsys):
    run = artifacts.Run(tmp_path / "run")
    run.path.mkdir()
    run.write_manifest({"schema_version": 1, "project": "p", "steps": []})
    code = cli.main(["report", str(run.path)])
    err = capsys.readouterr().err
    assert code == 2
    assert f"Step {broken_step}" in err and "broken_stack_step cannot be imported" in err and "half-finished edit" in err
    assert not (run.path / "report.html").exists()


def test_a_step_without_the_protocol_is_named(monkeypatch):
    steps = tuple(registry.Step(s.id, s.title, "helpers.core.split" if s.id == paths.STEP_NOTEBOOKS[0] else s.module)
                  for s in registry.STEPS)
    monkeypatch.setattr(registry, "STEPS", steps)
    with pytest.raises(PlaybookError, match=r"Step 01_vision_and_goals: module helpers.core.split lacks STEP, summary"):
        registry.load(paths.STEP_NOTEBOOKS[0])


def test_a_section_that_fails_names_its_step(tmp_path, monkeypatch):
    run = artifacts.Run(tmp_path)
    run.write_summary(paths.STEP_NOTEBOOKS[1], {"issues": []})
    module = registry.load(paths.STEP_NOTEBOOKS[1])
    monkeypatch.setattr(module, "report_section", lambda run: {}["missing key"])
    with pytest.raises(RuntimeError, match=r"Step 02_data_foundation: its report section could not be built"):
        report.show_sections(str(tmp_path))


def test_old_import_paths_give_the_moved_code():
    old = importlib.import_module("helpers.vision")
    from helpers.steps import vision

    assert old.Framing is vision.Framing and old.supervised_framing is vision.supervised_framing
    from helpers.core import problem

    assert old.frame_problem is problem.frame_problem  # moved down into the core
    from helpers.prepared import load_prepared  # noqa: I001  (an old path, on purpose)
    from helpers.core.prepared import load_prepared as new_load_prepared

    assert load_prepared is new_load_prepared


def test_a_name_that_no_longer_exists_says_how_to_refresh_the_copies():
    old = importlib.import_module("helpers.data")
    with pytest.raises(AttributeError, match=r"helpers.data.step_summary no longer exists.*playbook init NEW_DIR"):
        old.step_summary  # noqa: B018
