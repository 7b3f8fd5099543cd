"""JupyterLab in a real browser: every step notebook runs, its explorer responds, the panel saves a project.

Drives the Debian Chromium (never a downloaded browser) through Playwright against a
JupyterLab started on loopback with a token and temporary Jupyter folders. The notebooks
are copies, and their scratch run folder (PLAYBOOK_RUN_DIR) is a copy of the session's
demo run, so upstream steps are not recomputed in the browser. Screenshots go to
``test-artifacts/`` so a failure can be seen.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

import browser_lab
import nbformat
import pytest
from playwright.sync_api import expect

from helpers.core import config, paths

pytestmark = [pytest.mark.browser, pytest.mark.slow]

STEPS = paths.available_steps()
RUN_TIMEOUT_MS = int(float(os.environ.get("PLAYBOOK_BROWSER_TIMEOUT_S", "600")) * 1000)
PROJECT_FILE = "browser-project.yaml"


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    """pytest-playwright's launch, pointed at the system Chromium (skips when it is absent)."""
    return {**browser_type_launch_args, "executable_path": browser_lab.require_chromium(),
            "args": browser_lab.CHROMIUM_FLAGS, "headless": True}


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args):
    return {**browser_context_args, "viewport": {"width": 1400, "height": 1000}}


def demo_parameters(run_path: Path, step: str) -> dict:
    """The demo run's values of a step's parameters where they differ from the defaults (its fast settings)."""
    manifest = json.loads((run_path / "manifest.json").read_text())
    values = manifest.get("parameters", {})
    return {p.name: values[p.name] for p in config.params_for_step(step)
            if p.name in values and p.name not in ("run_dir", "interactive") and values[p.name] != p.default
            and p.name not in config.PRESET_KEYS}


def notebook_copy(step: str, run_path: Path, target: Path) -> None:
    """Copy a step notebook, with the demo run's settings injected as papermill would inject them."""
    from papermill.iorw import load_notebook_node  # adds the metadata papermill's injection expects
    from papermill.parameterize import parameterize_notebook

    nb = load_notebook_node(str(paths.notebooks_dir() / f"{step}.ipynb"))
    overrides = demo_parameters(run_path, step)
    if overrides:
        nb = parameterize_notebook(nb, overrides)
    nbformat.write(nb, target / f"{step}.ipynb")


@pytest.fixture(scope="module")
def lab(request, tmp_path_factory):
    """JupyterLab serving copies of the notebooks, its scratch run folder a copy of the demo run."""
    browser_lab.require_chromium()  # skip before the (expensive) demo run
    # PLAYBOOK_BROWSER_DEMO_RUN: reuse a finished `playbook run` folder while working on these tests
    reuse = os.environ.get("PLAYBOOK_BROWSER_DEMO_RUN")
    demo_path = Path(reuse) if reuse else request.getfixturevalue("demo_run").path
    work = tmp_path_factory.mktemp("lab")
    run_copy = work / "run"
    shutil.copytree(demo_path, run_copy)
    root = work / "notebooks"
    root.mkdir()
    for step in STEPS:
        notebook_copy(step, run_copy, root)
    with browser_lab.jupyterlab(root, {"PLAYBOOK_RUN_DIR": str(run_copy)}, work) as server:
        yield server


@pytest.fixture
def notebook_page(page):
    """The page; afterwards the notebook's kernel is shut down (kernels share 2 cores)."""
    yield page
    try:
        page.evaluate("async () => { const w = window.jupyterapp.shell.currentWidget;"
                      " if (w && w.sessionContext) await w.sessionContext.shutdown(); }")
    except Exception:  # noqa: BLE001 - best effort: the page may already be gone after a failure
        pass


def change_first_control(explorer) -> tuple[str, str | None]:
    """Change the explorer's first dropdown with a choice (to another option), else its first slider.

    Returns a description and, for a dropdown, the label chosen (the readout should name it).
    """
    for select in explorer.locator(".widget-dropdown select").all():
        current = select.input_value()
        options = select.locator("option").evaluate_all("opts => opts.map(o => [o.value, o.textContent])")
        others = [(value, label) for value, label in options if value != current]
        if others:
            select.select_option(others[0][0])
            return f"dropdown {current!r} -> {others[0][1]!r}", others[0][1]
    handle = explorer.locator(".widget-slider .noUi-handle")
    assert handle.count(), "the explorer has neither a dropdown with a choice nor a slider to change"
    handle = handle.first
    before = handle.get_attribute("aria-valuenow")
    handle.focus()
    handle.press("ArrowRight")
    if handle.get_attribute("aria-valuenow") == before:  # already at the right end
        handle.press("ArrowLeft")
    return f"slider {before} -> {handle.get_attribute('aria-valuenow')}", None


@pytest.mark.parametrize("step", STEPS)
def test_notebook_runs_and_its_explorer_responds(lab, notebook_page, step):
    page = notebook_page
    browser_lab.open_notebook(page, lab, step)
    try:
        errors = browser_lab.run_all(page, RUN_TIMEOUT_MS)
        assert errors == [], f"{step} raised in JupyterLab: {errors}"
        assert browser_lab.traceback_elements(page) == 0
        explorer = page.locator(".playbook-explorer").first
        readout = explorer.locator(".playbook-readout")
        readout.scroll_into_view_if_needed()
        # text_content, as expect() reads it: inner_text is "" while JupyterLab skips rendering an
        # off-screen cell (content-visibility), which once made "before" empty and the check a race
        expect(readout).not_to_have_text(re.compile(r"^\s*$"))
        before = readout.text_content()
        started = time.perf_counter()
        change, chosen = change_first_control(explorer)
        expect(readout).not_to_have_text(before, timeout=15_000)
        if chosen is not None:  # the readout describes the new choice
            expect(readout).to_contain_text(chosen, timeout=15_000)
        seconds = time.perf_counter() - started
        after = readout.text_content()
        assert not after.startswith("Could not update"), f"{change}: {after}"
        browser_lab.record(f"{step}: {change}: readout updated in {seconds:.2f} s (browser round trip)")
        page.wait_for_function(browser_lab.KERNEL_IDLE, arg=f"{step}.ipynb", timeout=15_000)
        explorer.evaluate("e => e.scrollIntoView({block: 'start'})")  # the screenshot shows the explorer
    finally:
        browser_lab.screenshot(page, step)


def kernel_output(page, code: str) -> str:
    """Run ``code`` in the notebook's kernel (as a hidden request) and return its printed output."""
    return page.evaluate("""async (code) => {
      const k = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
      const future = k.requestExecute({code, store_history: false});
      let out = '';
      future.onIOPub = msg => { if (msg.header.msg_type === 'stream') out += msg.content.text; };
      await future.done;
      return out;
    }""", code)


def run_through_panel(page) -> None:
    """Run the cells down to the parameter panel (Run > Run All Above the next cell)."""
    page.evaluate("""async () => {
      const w = window.jupyterapp.shell.currentWidget;
      const i = w.content.widgets.findIndex(c => c.model.sharedModel.getSource().includes('parameter_panel('));
      w.content.activeCellIndex = i + 1;
      await window.jupyterapp.commands.execute('notebook:run-all-above');
    }""")
    page.locator(".playbook-panel").wait_for(timeout=120_000)


def set_text(locator, value: str) -> None:
    """Type into a widget's input and commit it (Enter), as a person would."""
    locator.fill(value)
    locator.press("Enter")


@pytest.mark.skipif(config.S1 not in STEPS, reason="step 1 notebook not present")
def test_parameter_panel_applies_and_saves_a_project_file(lab, notebook_page):
    page = notebook_page
    browser_lab.open_notebook(page, lab, config.S1)
    try:
        run_through_panel(page)
        panel = page.locator(".playbook-panel")
        set_text(panel.locator(".playbook-field-project_name input"), "browser-demo")
        set_text(panel.locator(".playbook-field-test_size input"), "0.25")
        set_text(panel.locator(".playbook-kpi-row input").first, "0.65")
        set_text(panel.locator(".playbook-field-sensitive_columns input"), "gender")
        status = panel.locator(".playbook-panel-status")
        panel.locator("button.playbook-apply").click()
        expect(status).to_contain_text("Applied. Now use Run > Run Selected Cell and All Below", timeout=15_000)
        assert kernel_output(page, "print(params.project_name, project_name, params.test_size, params.kpis['recall'])") \
            == "browser-demo browser-demo 0.25 0.65\n"
        set_text(panel.locator(".playbook-project-path input"), PROJECT_FILE)
        panel.locator("button.playbook-save").click()
        expect(status).to_contain_text("Saved", timeout=15_000)
        saved = lab.root / PROJECT_FILE
        raw = config.load_project_file(saved)
        assert "run_dir" not in raw and "interactive" not in raw
        merged = config.merge(raw)
        assert (merged["project_name"], merged["test_size"], merged["sensitive_columns"]) == ("browser-demo", 0.25, ["gender"])
        assert merged["kpis"] == {"recall": 0.65, "precision": 0.5, "roc_auc": 0.8}
        panel.locator("button.playbook-save").click()  # a second save must not overwrite
        expect(status).to_contain_text("already exists and was not overwritten", timeout=15_000)
        assert panel.locator(".playbook-project-path input").input_value() == "browser-project-2.yaml"
        assert config.load_project_file(saved) == raw
        panel.scroll_into_view_if_needed()
    finally:
        browser_lab.screenshot(page, "01_parameter_panel")
