"""A learner in JupyterLab (real Chromium): a student copy runs, the first exercise is answered, the checker says correct.

Generic: the answer typed is whatever the facilitator copy holds in the first exercise's solution cell.
"""

from __future__ import annotations

import os
import re

import browser_lab
import pytest
from playwright.sync_api import expect
from test_browser import browser_context_args, browser_type_launch_args  # noqa: F401 - the system Chromium

from helpers.core import paths
from helpers.run import cli, teaching

pytestmark = [pytest.mark.browser, pytest.mark.slow]

STEP = paths.available_steps()[0]
RUN_TIMEOUT_MS = int(float(os.environ.get("PLAYBOOK_BROWSER_TIMEOUT_S", "600")) * 1000)

# The rendered feedback of a cell (its class and text), after scrolling it into view
FEEDBACK = """(i) => {
  const w = window.jupyterapp.shell.currentWidget;
  const cell = w.content.widgets[i];
  cell.node.scrollIntoView({block: 'center'});
  const node = cell.node.querySelector('.playbook-feedback');
  return node ? {cls: node.className, text: node.textContent} : null;
}"""

ACTIVATE = """(i) => {
  const w = window.jupyterapp.shell.currentWidget;
  w.content.activeCellIndex = i;
  w.content.mode = 'command';
  return w.content.activeCellIndex;
}"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """JupyterLab serving a student copy (its scratch run folder fresh); the facilitator copy beside it."""
    browser_lab.require_chromium()
    work = tmp_path_factory.mktemp("teaching-lab")
    assert cli.main(["init", str(work / "student"), "--student"]) == 0
    assert cli.main(["init", str(work / "facilitator"), "--facilitator"]) == 0
    with browser_lab.jupyterlab(work / "student", {"PLAYBOOK_RUN_DIR": str(work / "run")}, work) as server:
        yield server, work


@pytest.fixture
def notebook_page(page):
    yield page
    try:  # the kernel is shut down afterwards (kernels share 2 cores)
        page.evaluate("async () => { const w = window.jupyterapp.shell.currentWidget;"
                      " if (w && w.sessionContext) await w.sessionContext.shutdown(); }")
    except Exception:  # noqa: BLE001 - best effort: the page may already be gone after a failure
        pass


def feedback(page, index: int, state: str) -> dict:
    """Wait until cell ``index`` shows a feedback of ``state`` (passed or failed); return its class and text."""
    page.wait_for_function(f"(i) => {{ const f = ({FEEDBACK})(i); return !!f && f.cls.includes('{state}'); }}",
                           arg=index, timeout=60_000, polling=250)
    return page.evaluate(FEEDBACK, index)


def test_a_learner_answers_the_first_exercise_and_reads_correct(lab, notebook_page):
    server, work = lab
    page = notebook_page
    student = teaching.read_notebook(work / "student" / f"{STEP}.ipynb")
    first = teaching.exercises_of(student, STEP)[0]
    facilitator = teaching.read_notebook(work / "facilitator" / f"{STEP}.ipynb")
    answer = facilitator.cells[first.solution_cell].source
    assert teaching.exercises_of(facilitator, STEP)[0] == first  # the same cells in both copies

    browser_lab.open_notebook(page, server, STEP)
    try:
        errors = browser_lab.run_all(page, RUN_TIMEOUT_MS)
        assert errors == [], f"the student copy of {STEP} raised in JupyterLab: {errors}"
        before = feedback(page, first.check_cell, "failed")
        assert f"Exercise {first.id}: not answered yet" in before["text"]

        # the learner clicks into the scaffold, selects it and types the answer, then Shift+Enter
        assert page.evaluate(ACTIVATE, first.solution_cell) == first.solution_cell
        page.locator(".jp-Cell.jp-mod-active .cm-content").click()
        page.keyboard.press("Control+A")
        page.keyboard.insert_text(answer)
        typed = page.evaluate("(i) => window.jupyterapp.shell.currentWidget.content.widgets[i]"
                              ".model.sharedModel.getSource()", first.solution_cell)
        assert typed == answer
        page.keyboard.press("Shift+Enter")
        page.wait_for_function(browser_lab.KERNEL_IDLE, arg=f"{STEP}.ipynb", timeout=60_000)
        page.evaluate(ACTIVATE, first.check_cell)
        page.keyboard.press("Shift+Enter")
        after = feedback(page, first.check_cell, "passed")
        assert re.search(rf"Exercise {re.escape(first.id)}: correct\.", after["text"]), after
        assert "playbook-feedback passed" in after["cls"]
        expect(page.locator(".playbook-feedback.passed")).to_have_count(1)
        browser_lab.record(f"teaching: exercise {first.id} of {STEP} answered in the browser: {after['text'][:80]}")
    finally:
        browser_lab.screenshot(page, f"teaching-{STEP}")
