"""The papermill engine: fewer writes of the output notebook, none of its content lost."""

from __future__ import annotations

import nbformat
import papermill as pm
import papermill.engines
import pytest
from nbclient.exceptions import CellTimeoutError

from helpers.core import artifacts, paths
from helpers.run import engine, resume


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
    # a print can reach the notebook as two stream outputs ("cell 28", "\n") on a busy machine
    printed = ["".join(o.get("text", "") for o in c.outputs if o.output_type == "stream") for c in code[:15]]
    assert printed == [f"cell {i}\n" for i in range(0, 30, 2)]
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


# --- kernels started ahead of their notebook (engine.KernelPool) ------------------------------

PROBE = [
    "import os, sys\nprint(os.getpid())",
    "print(sorted(k for k in globals() if not k.startswith('_')), get_ipython().execution_count)",
    "print(os.environ.get('OMP_NUM_THREADS'), os.environ.get('PLAYBOOK_RUNNER_RUN'),\n"
    "      os.environ['PYTHONPATH'].split(os.pathsep)[0] == os.getcwd() or 'helpers' in sys.modules)",
    "import matplotlib.pyplot as plt\nplt.plot([1, 2], [3, 4])\nplt.show()",
    "x = 6 * 7\nx",
]


def _outputs(path):
    """Per cell: its printed text (stream messages joined: their split varies) and the kinds of its other outputs."""
    cells = nbformat.read(path, as_version=4).cells
    return [("".join(o.get("text", "") for o in c.get("outputs", []) if o.output_type == "stream"),
             [sorted(o.get("data", {})) for o in c.get("outputs", []) if o.output_type != "stream"])
            for c in cells]


def test_a_prestarted_kernel_runs_the_notebook_as_a_fresh_one_would_and_is_shut_down(tmp_path):
    source = notebook(tmp_path / "in.ipynb", PROBE)
    run_path = tmp_path / "run"
    with engine.playbook_kernel(run_path) as kernel:
        engine.execute_notebook(source, tmp_path / "fresh.ipynb", kernel_name=kernel, progress_bar=False)
        with engine.kernel_pool(kernel) as pool:
            pool.prestart()
            assert pool.waiting == 1
            [pid] = resume.kernel_processes(run_path)  # the run's marker is in its environment
            engine.execute_notebook(source, tmp_path / "warm.ipynb", kernel_name=kernel, progress_bar=False)
            assert pool.waiting == 0
            assert resume.kernel_processes(run_path) == []  # shut down at the end of its notebook
    fresh, warm = _outputs(tmp_path / "fresh.ipynb"), _outputs(tmp_path / "warm.ipynb")
    assert warm[0][0] == f"{pid}\n"  # the notebook ran in the kernel the pool started
    assert warm[1:] == fresh[1:]  # same namespace, execution count, environment, figure, results
    assert fresh[1][0].startswith("['In', 'Out', 'exit', 'get_ipython', 'open', 'os', 'quit', 'sys'] ")
    assert fresh[2][0] == f"1 {run_path.resolve()} True\n"
    assert fresh[3][1] == [["image/png", "text/plain"]] and fresh[4][1] == [["text/plain"]]


def test_a_prestarted_kernel_has_imported_its_modules_before_the_notebook_starts(tmp_path):
    source = notebook(tmp_path / "in.ipynb", ["import sys\nprint(sorted(m for m in ('pandas', 'sklearn', "
                                              "'helpers.core.config', 'json.tool') if m in sys.modules))"])
    with engine.playbook_kernel() as kernel, engine.kernel_pool(kernel) as pool:
        pool.prestart(("pandas", "helpers.core.config", "no_such_module_xyz"))  # a missing one is skipped
        engine.execute_notebook(source, tmp_path / "out.ipynb", kernel_name=kernel, progress_bar=False)
    [(text, others)] = _outputs(tmp_path / "out.ipynb")
    assert text == "['helpers.core.config', 'pandas']\n"  # pandas pulls in no sklearn, no json.tool
    assert others == []  # the skipped import put nothing into the notebook


def test_unused_prestarted_kernels_are_stopped_by_the_pool_and_found_by_stop_kernels(tmp_path):
    run_path = tmp_path / "run"
    with engine.playbook_kernel(run_path) as kernel:
        with engine.kernel_pool(kernel) as pool:
            pool.prestart(())
            pool.prestart(())
            assert len(resume.kernel_processes(run_path)) == 2
        assert resume.kernel_processes(run_path) == []  # closing the pool shut both down
        with engine.kernel_pool(kernel) as pool:
            pool.prestart(())
            assert len(resume.stop_kernels(run_path)) == 1  # e.g. after a failed or interrupted step
            assert pool.take() is None  # a dead kernel is never handed to a notebook
            assert pool.waiting == 0


def test_cell_stages_are_the_nearest_heading_above():
    cells = [nbformat.v4.new_code_cell("a"), nbformat.v4.new_markdown_cell("# 4. Title\ntext"),
             nbformat.v4.new_code_cell("b"), nbformat.v4.new_markdown_cell("intro\n## 4.3 Tune the leader"),
             nbformat.v4.new_code_cell("c"), nbformat.v4.new_markdown_cell("no heading here"),
             nbformat.v4.new_code_cell("d")]
    assert [s for s, c in zip(engine.cell_stages(cells), cells, strict=True) if c.cell_type == "code"] == \
        ["", "4. Title", "4.3 Tune the leader", "4.3 Tune the leader"]


class Recorder:
    def __init__(self):
        self.events = []

    def notebook_started(self, code_cells):
        self.events.append(("start", code_cells))

    def cell_started(self, stage):
        self.events.append(("cell", stage))

    def cell_completed(self):
        self.events.append(("done",))

    def next_kernel_due(self):
        self.events.append(("next kernel",))


def test_the_cell_listener_hears_each_code_cell_with_its_stage(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("## 1.1 Load"), nbformat.v4.new_code_cell("x = 1"),
                nbformat.v4.new_code_cell("y = 2"), nbformat.v4.new_markdown_cell("## 1.2 Fail"),
                nbformat.v4.new_code_cell("raise ValueError('stop')"), nbformat.v4.new_code_cell("z = 3")]
    nbformat.write(nb, tmp_path / "in.ipynb")
    rec = Recorder()
    with engine.playbook_kernel() as kernel, pytest.raises(pm.PapermillExecutionError):
        engine.execute_notebook(tmp_path / "in.ipynb", tmp_path / "out.ipynb", kernel_name=kernel,
                                progress_bar=False, cell_listener=rec)
    assert rec.events == [("start", 4), ("next kernel",), ("cell", "1.1 Load"), ("done",), ("cell", "1.1 Load"),
                          ("done",), ("cell", "1.2 Fail"), ("done",)]


def test_the_next_kernel_is_due_at_the_cell_tagged_for_it(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("## 4.2 Fits on every core"), nbformat.v4.new_code_cell("x = 1"),
                nbformat.v4.new_markdown_cell("## 4.5 One core"),
                nbformat.v4.new_code_cell("y = 2", metadata={"tags": [engine.NEXT_KERNEL_TAG]}),
                nbformat.v4.new_code_cell("z = 3")]
    nbformat.write(nb, tmp_path / "in.ipynb")
    rec = Recorder()
    with engine.playbook_kernel() as kernel:
        engine.execute_notebook(tmp_path / "in.ipynb", tmp_path / "out.ipynb", kernel_name=kernel,
                                progress_bar=False, cell_listener=rec)
    assert rec.events == [("start", 3), ("cell", "4.2 Fits on every core"), ("done",), ("next kernel",),
                          ("cell", "4.5 One core"), ("done",), ("cell", "4.5 One core"), ("done",)]
    assert engine.next_kernel_cell([nbformat.v4.new_markdown_cell("# t")]) is None


def test_step_4_starts_the_next_kernel_after_its_fits_on_every_core():
    cells = nbformat.read(paths.notebooks_dir() / "04_model_development.ipynb", as_version=4).cells
    due = engine.next_kernel_cell(cells)
    sources = [c.source for c in cells[:due] if c.cell_type == "code"]
    # the leaderboard, the learning curves and the tuning search run on n_jobs cores: all before it
    assert all(any(call in s for s in sources) for call in ("modeling.select(", "modeling.explorer_grid(", "modeling.tune("))


def test_a_failing_listener_never_fails_the_notebook(tmp_path):
    class Broken(Recorder):
        def cell_started(self, stage):
            raise RuntimeError("display gone")

    source = notebook(tmp_path / "in.ipynb", ["print('ran')", "print('also')"])
    with engine.playbook_kernel() as kernel:
        engine.execute_notebook(source, tmp_path / "out.ipynb", kernel_name=kernel, progress_bar=False,
                                cell_listener=Broken())
    assert [text for text, _ in _outputs(tmp_path / "out.ipynb")] == ["ran\n", "also\n"]


# --- a run's kernels: prestarted, handed over, none left behind ------------------------------


def _fake_step(folder, name, cells):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "Python 3"}
    for kind, source in cells:
        nb.cells.append(nbformat.v4.new_markdown_cell(source) if kind == "md" else nbformat.v4.new_code_cell(source))
    nbformat.write(nb, folder / f"{name}.ipynb")


PLAN = {"planned_s": {"01_vision_and_goals": 30.0, "02_data_foundation": 20.0}}


def test_a_run_failing_in_step_2_runs_in_prestarted_kernels_and_leaves_none_behind(tmp_path):
    import gc
    import re

    import pandas as pd

    from helpers.core import config
    from helpers.run import runner
    from helpers.run.runner import EXIT_CRASH

    folder = tmp_path / "notebooks"
    folder.mkdir()
    probe = ("import sys\nfrom helpers.run.resume import kernel_processes\n"
             "print('pandas' in sys.modules, len(kernel_processes(run_dir)))")
    _fake_step(folder, "01_vision_and_goals", [
        ("md", "## 1.1 Probe"), ("code", probe),
        ("code", f"from helpers.core.artifacts import Run\nRun(run_dir).update_manifest(plan={PLAN!r})")])
    _fake_step(folder, "02_data_foundation", [
        ("md", "## 2.1 Work"), ("code", probe + "\nimport time; time.sleep(1.5)"),
        ("md", "## 2.2 Break"), ("code", "raise RuntimeError('step 2 broke')")])
    out = tmp_path / "run"
    lines, alive_tables = [], []

    def echo(line=""):
        lines.append(line)
        if line.startswith("[1/2] 01_vision_and_goals ..."):  # the steps run: is the loaded table still held?
            rows = artifacts.Run(out).read_manifest()["dataset"]["rows"]
            gc.collect()
            alive_tables.extend(o for o in gc.get_objects() if isinstance(o, pd.DataFrame) and len(o) == rows)

    code = runner.run_playbook(config.merge(), steps=["01_vision_and_goals", "02_data_foundation"], out=out,
                               html=False, notebooks=folder, echo=echo)
    assert code == EXIT_CRASH
    assert alive_tables == []  # the snapshot is written: the runner dropped its copy of the table
    assert resume.kernel_processes(out) == []  # the prestarted kernels (step 2's, the report's) are stopped
    printed = [next(o for c, o in zip(nbformat.read(out / f"{s}.ipynb", as_version=4).cells, _outputs(out / f"{s}.ipynb"),
                                      strict=True) if c.source.startswith(probe))[0]
               for s in ("01_vision_and_goals", "02_data_foundation")]
    # both steps ran in kernels that had imported pandas before the notebook began, and while each
    # step ran the next kernel (step 2's, then the report's) was already started
    assert printed == ["True 1\n", "True 1\n"]
    manifest = artifacts.Run(out).read_manifest()
    assert [(e["status"], e.get("planned_s")) for e in manifest["steps"]] == [("succeeded", 30.0), ("failed", 20.0)]
    stage_lines = [x for x in lines if x.startswith("[2/2] 02_data_foundation · ")]
    clocks = []
    for stage, text in zip(("2.1 Work", "2.2 Break"), stage_lines, strict=True):
        found = re.fullmatch(rf"\[2/2\] 02_data_foundation · {re.escape(stage)} · (\d+) s elapsed, ~(\d+) s left", text)
        assert found, text
        elapsed, left = int(found[1]), int(found[2])
        assert abs(elapsed + left - 20) <= 1  # the plan's 20 s for step 2
        clocks.append(elapsed)
    assert clocks[1] >= clocks[0] + 1  # the first stage slept 1.5 s
    assert "01_vision_and_goals ..." in lines[1] and any(x.strip().startswith("succeeded in") for x in lines)
    summary = lines[lines.index("Step                            status        time      planned"):]
    assert re.match(r"01_vision_and_goals +succeeded +\d+\.\d s +30\.0 s$", summary[1])
    assert re.match(r"02_data_foundation +failed +\d+\.\d s +20\.0 s$", summary[2])
