"""Run folder, manifest and atomic writes."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from helpers.core import artifacts, paths
from helpers.core.errors import PlaybookError


def test_atomic_write_keeps_old_content_when_writer_fails(tmp_path):
    target = tmp_path / "a.json"
    artifacts.write_json(target, {"v": 1})
    with pytest.raises(RuntimeError), artifacts.atomic_path(target) as tmp:
        tmp.write_text("half-writ")
        raise RuntimeError("crash mid-write")
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]  # no temporary file left


def test_jsonable_handles_numpy_pandas_and_nan(tmp_path):
    data = {"a": np.int64(3), "b": np.float32(0.5), "c": float("nan"), "d": pd.Timestamp("2024-01-01"),
            "e": np.array([1, 2]), "f": pd.DataFrame({"x": [1]}), "g": np.inf}
    artifacts.write_json(tmp_path / "x.json", data)
    back = json.loads((tmp_path / "x.json").read_text())
    assert back == {"a": 3, "b": 0.5, "c": None, "d": "2024-01-01T00:00:00", "e": [1, 2], "f": [{"x": 1}], "g": None}


def test_manifest_step_status_and_fields(tmp_path):
    run = artifacts.open_run(str(tmp_path / "run"))
    manifest = run.read_manifest()
    assert manifest["schema_version"] == artifacts.SCHEMA_VERSION
    run.set_step_status("02_data_foundation", "running")
    run.set_step_status("01_vision_and_goals", "succeeded", duration_s=1.5)
    steps = run.read_manifest()["steps"]
    assert [s["step"] for s in steps] == ["01_vision_and_goals", "02_data_foundation"]
    assert steps[0]["duration_s"] == 1.5 and steps[1]["status"] == "running"
    with pytest.raises(ValueError):
        run.set_step_status("01_vision_and_goals", "exploded")
    run.update_manifest(project="p")
    assert run.read_manifest()["project"] == "p"


def test_missing_summary_names_the_step_to_run(tmp_path):
    run = artifacts.open_run(str(tmp_path / "run"))
    with pytest.raises(PlaybookError, match=r"results of step 02_data_foundation.*playbook run --steps 1-2"):
        run.read_summary("02_data_foundation", needed_by="Step 4")
    run.write_summary("02_data_foundation", {"x": 1})
    assert run.read_summary("02_data_foundation")["x"] == 1


def test_tables_and_figures_round_trip(tmp_path):
    import matplotlib.pyplot as plt

    run = artifacts.open_run(str(tmp_path / "run"))
    frame = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    run.write_table("01_vision_and_goals", "t.csv", frame)
    run.write_table("01_vision_and_goals", "t.parquet", frame)
    pd.testing.assert_frame_equal(run.read_table("01_vision_and_goals", "t.csv"), frame)
    pd.testing.assert_frame_equal(run.read_table("01_vision_and_goals", "t.parquet"), frame)
    fig, ax = plt.subplots()
    ax.plot([1, 2])
    path = run.save_figure("01_vision_and_goals", "fig", fig)
    plt.close(fig)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_shown_figure_is_saved_from_the_same_render(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    from helpers.ui import widgets

    run = artifacts.open_run(str(tmp_path / "run"))
    fig, ax = plt.subplots()
    ax.plot([1, 2])
    renders = []
    original = fig.savefig
    monkeypatch.setattr(fig, "savefig", lambda *a, **k: renders.append(1) or original(*a, **k))
    shown = widgets.figure_image(fig)  # what widgets.show_figure displays
    path = run.save_figure("01_vision_and_goals", "fig", fig)
    assert renders == [1] and path.read_bytes() == shown.data
    assert fig not in [plt.figure(n) for n in plt.get_fignums()]  # closed: the inline backend does not show it again


def test_damaged_manifest_is_a_clear_error(tmp_path):
    run = artifacts.open_run(str(tmp_path / "run"))
    run.manifest_path.write_text("{not json")
    with pytest.raises(PlaybookError, match="not valid JSON"):
        run.read_manifest()


def test_run_names_are_unique_and_safe():
    names = {paths.new_run_name("my project/<x>") for _ in range(20)}
    assert len(names) == 20
    assert all("/" not in n and "<" not in n and n.startswith("my-project--x") for n in names)
