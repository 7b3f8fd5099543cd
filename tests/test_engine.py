"""The papermill engine: fewer writes of the output notebook, none of its content lost."""

from __future__ import annotations

import nbformat
import papermill as pm
import papermill.engines
import pytest
from nbclient.exceptions import CellTimeoutError

from helpers.run import engine


def notebook(path, cells):
    nb = nbformat.v4.new_notebook()
    for source in cells:
        nb.cells.append(nbformat.v4.new_markdown_cell("Step") if source is None else nbformat.v4.new_code_cell(source))
    nbformat.write(nb, path)
    return path


@pytest.fixture
def counted_writes(monkeypatch):
    writes = []
    original = papermill.engines.write_ipynb

    def counting(nb, path):
        writes.append(path)
        return original(nb, path)

    monkeypatch.setattr(papermill.engines, "write_ipynb", counting)
    return writes


def test_a_failing_cell_leaves_every_output_before_it_with_few_writes(tmp_path, counted_writes):
    cells = [None if i % 2 else f"print('cell {i}')" for i in range(40)]
    cells[30] = "raise ValueError('boom')"
    source = notebook(tmp_path / "in.ipynb", cells)
    out = tmp_path / "out.ipynb"
    with engine.playbook_kernel() as kernel, pytest.raises(pm.PapermillExecutionError, match="boom"):
        pm.execute_notebook(str(source), str(out), kernel_name=kernel, progress_bar=False,
                            engine_name=engine.register())
    code = [c for c in nbformat.read(out, as_version=4).cells if c.cell_type == "code"]
    assert [c.outputs[0]["text"] for c in code[:15]] == [f"cell {i}\n" for i in range(0, 30, 2)]
    assert code[15].outputs[0]["ename"] == "ValueError"
    assert not any(c.outputs for c in code[16:])
    # papermill itself writes before and after each of the 40 cells
    assert len(counted_writes) < 10, len(counted_writes)


def test_a_timed_out_cell_still_leaves_the_partial_notebook(tmp_path):
    source = notebook(tmp_path / "in.ipynb", ["print('before')", "import time; time.sleep(30)", "print('after')"])
    out = tmp_path / "out.ipynb"
    with engine.playbook_kernel() as kernel, pytest.raises(CellTimeoutError):
        pm.execute_notebook(str(source), str(out), kernel_name=kernel, progress_bar=False,
                            engine_name=engine.register(), execution_timeout=1)
    executed = nbformat.read(out, as_version=4)
    assert executed.cells[0].outputs[0]["text"] == "before\n"
    assert executed.cells[1].outputs[0]["ename"] == "KeyboardInterrupt"  # nbclient interrupts the cell
    assert not executed.cells[2].outputs
