"""Committed notebooks are stripped, follow the skeleton and hold no logic."""

from __future__ import annotations

import re

import nbformat
import pytest

from helpers.core import paths

NOTEBOOKS = sorted(paths.notebooks_dir().glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_notebook_is_stripped(path):
    nb = nbformat.read(path, as_version=4)
    dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
    assert not dirty, f"{path.name}: cells {dirty} carry outputs or execution counts"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_defines_no_functions(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not re.search(r"^\s*(def|class) \w+", cell.source, re.M), f"{path.name} defines logic in a cell"


@pytest.mark.parametrize("step", paths.available_steps())
def test_step_notebook_skeleton(step):
    nb = nbformat.read(paths.notebooks_dir() / f"{step}.ipynb", as_version=4)
    markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert markdown.lstrip().startswith(f"# {int(step[:2])}.")
    for heading in ("In this notebook you will", "## Explore", "## Recap", "## Exercises"):
        assert heading in markdown, f"{step} lacks {heading!r}"
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert 'config.validate_step(STEP, globals())' in code
    assert "widgets.parameter_panel(STEP, params" in code
