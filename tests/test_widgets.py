"""The shared explorer pattern and the batch rendering of the parameter panel, without a browser."""

from __future__ import annotations

import ipywidgets as w
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from helpers.core import config
from helpers.core.errors import PlaybookError  # noqa: E402
from helpers.ui import widgets  # noqa: E402

STEP = "01_vision_and_goals"


def square_update(calls: list):
    """An update function that records its calls and draws a small figure."""

    def update(n: int, label: str):
        calls.append((n, label))
        if n < 0:
            raise PlaybookError("n must not be negative.", "choose n >= 0.")
        fig, ax = plt.subplots(figsize=(2, 2))
        ax.bar([0], [n * n])
        return f"{label}: {n} squared is {n * n}", fig

    return update


def controls():
    return {"n": w.IntSlider(value=2, min=-1, max=9, description="number"),
            "label": w.Dropdown(options=["a <b>", "c"], value="a <b>", description="a long label")}


def test_explorer_updates_readout_when_a_control_changes():
    calls: list = []
    open_before = set(plt.get_fignums())  # other tests may leave figures open in this process
    ex = widgets.Explorer("Squares", controls(), square_update(calls))
    assert calls == [(2, "a <b>")]
    assert ex.last_text == "a <b>: 2 squared is 4"
    assert ex.readout.value == "<div class='playbook-readout-text'>a &lt;b&gt;: 2 squared is 4</div>"
    ex.controls["n"].value = 3
    assert calls[-1] == (3, "a <b>") and ex.last_text == "a <b>: 3 squared is 9"
    ex.controls["label"].value = "c"
    assert "c: 3 squared is 9" in ex.readout.value
    assert ex.last_seconds < 1.0
    assert set(plt.get_fignums()) == open_before  # every figure drawn was closed


def test_explorer_layout_has_the_stable_classes_and_full_labels():
    ex = widgets.Explorer("Squares", controls(), square_update([]))
    assert "playbook-explorer" in ex.widget._dom_classes
    assert widgets.READOUT_CLASS in ex.readout._dom_classes
    assert all(c.style.description_width == "initial" for c in ex.controls.values())
    header = ex.widget.children[0]
    assert header.value == "<b>Squares</b>"


def test_a_failing_update_is_shown_in_the_readout_not_lost():
    ex = widgets.Explorer("Squares", controls(), square_update([]))
    ex.controls["n"].value = -1
    assert ex.last_text == "Could not update: n must not be negative. Fix: choose n >= 0."
    assert "Could not update" in ex.readout.value
    ex.controls["n"].value = 1
    assert ex.last_text == "a <b>: 1 squared is 1"


def test_a_failing_first_update_raises():
    with pytest.raises(PlaybookError):
        widgets.Explorer("Squares", {"n": w.IntText(value=-1), "label": w.Text("x")}, square_update([]))


def test_batch_explorer_renders_static_cases_without_creating_controls(monkeypatch):
    calls: list = []
    shown: list = []
    open_before = set(plt.get_fignums())  # other tests may leave figures open in this process
    monkeypatch.setattr(widgets, "display", shown.append)

    def no_controls():
        raise AssertionError("batch runs must not build widgets")

    result = widgets.explorer("Squares", no_controls, square_update(calls), interactive=False,
                              static_cases=[{"n": 2, "label": "x"}, {"n": 5, "label": "y & z"}])
    assert result is None
    assert calls == [(2, "x"), (5, "y & z")]
    assert shown[0].data == "**Squares** (static view of the interactive explorer)"
    assert shown[3].data == ("<p><i>n = 5, label = y &amp; z</i></p>"
                             "<div class='playbook-readout-text'>y &amp; z: 5 squared is 25</div>")
    assert [type(x).__name__ for x in shown] == ["Markdown", "HTML", "Image", "HTML", "Image"]
    assert shown[2].format == "png" and shown[2].data.startswith(b"\x89PNG")
    assert set(plt.get_fignums()) == open_before


def test_interactive_explorer_returns_the_explorer():
    ex = widgets.explorer("Squares", controls, square_update([]), interactive=True, static_cases=[])
    assert isinstance(ex, widgets.Explorer) and ex.last_text.endswith("squared is 4")


def test_readout_html_escapes_user_strings():
    assert widgets.readout_html("<script>x</script>") == \
        "<div class='playbook-readout-text'>&lt;script&gt;x&lt;/script&gt;</div>"


def test_batch_panel_is_a_static_table_of_the_values_in_force():
    params = config.validate_step(STEP, {p.name: p.default for p in config.params_for_step(STEP)})
    assert widgets.parameter_panel(STEP, params, interactive=False) is None
    table = widgets.values_table(params)
    assert table.loc["target", "value"] == "'churn'"
    assert table.loc["kpis", "value"] == "{'recall': 0.7, 'precision': 0.5, 'roc_auc': 0.8}"
    assert list(table.index) == list(params)


def test_interactive_panel_writes_into_the_given_namespace():
    namespace = {p.name: p.default for p in config.params_for_step(STEP)}
    params = config.validate_step(STEP, namespace)
    panel = widgets.parameter_panel(STEP, params, interactive=True, namespace=namespace)
    panel.fields["seed"].control.value = 3
    panel.apply_button.click()
    assert namespace["seed"] == 3 and params.seed == 3


# --- batch output of a real run (the session's demo run) ---------------------------------------

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def executed_code_cells(run_path):
    import nbformat

    from helpers.core import paths

    for step in paths.available_steps():
        path = run_path / f"{step}.ipynb"
        if path.exists():
            for cell in nbformat.read(path, as_version=4).cells:
                if cell.cell_type == "code":
                    yield step, cell


def output_data(cell, mime: str) -> list[str]:
    return [str(o["data"][mime]) for o in cell.get("outputs", []) if mime in o.get("data", {})]


@pytest.mark.slow
def test_batch_notebooks_show_static_explorers_and_parameter_tables(demo_run):
    explorers = panels = 0
    for step, cell in executed_code_cells(demo_run.path):
        mimes = {m for o in cell.get("outputs", []) for m in o.get("data", {})}
        assert WIDGET_VIEW not in mimes, f"{step}: a widget placeholder in a batch run: {cell.source[:80]}"
        lost = [o["data"]["text/plain"] for o in cell.get("outputs", []) if "image/png" not in o.get("data", {})
                and str(o.get("data", {}).get("text/plain", "")).startswith("<Figure size")]
        assert not lost, f"{step}: a figure shown as text (not an image): {cell.source[:80]}"
        if "widgets.explorer(" in cell.source:
            explorers += 1
            assert any("static view of the interactive explorer" in t for t in output_data(cell, "text/markdown")), step
            readouts = [t for t in output_data(cell, "text/html") if "playbook-readout-text" in t]
            assert readouts and all("Could not update" not in t for t in readouts), step
        if "parameter_panel(" in cell.source:
            panels += 1
            assert any("<table" in t and "seed" in t for t in output_data(cell, "text/html")), step
    assert explorers >= 1 and panels >= 1
    report = (demo_run.path / "report.html").read_text(encoding="utf-8")
    assert WIDGET_VIEW not in report and "<Figure size" not in report


@pytest.mark.slow
def test_batch_notebooks_keep_their_plots(demo_run):
    # A cell ending in widgets.show_figure(...) (not under an `if`) must carry its figure as an image.
    shown = [(step, cell) for step, cell in executed_code_cells(demo_run.path)
             if "widgets.show_figure(" in cell.source.rstrip().splitlines()[-1] and "if " not in cell.source]
    assert len(shown) >= 8
    missing = [f"{step}: {cell.source.splitlines()[0]}" for step, cell in shown if not output_data(cell, "image/png")]
    assert missing == [], (f"{len(missing)} plot(s) missing from the executed notebooks, e.g. {missing[:3]}: "
                           "the batch kernel must use the inline backend (no MPLBACKEND=agg in its env).")
