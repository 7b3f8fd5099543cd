"""papermill's nbclient engine, with the output notebook written less often.

papermill writes the whole output notebook before and after every cell, markdown cells
included: about 120 writes of a growing notebook for a 60-cell step, 0.5-0.7 s of a
10 s step on this project's machines (measured). This engine writes at most every
``SAVE_INTERVAL_S`` seconds, and always when the notebook starts and when it ends. The
final write runs in papermill's ``finally`` block, so a failed, timed-out or interrupted
step still leaves its partially executed notebook; a long cell is saved when it starts
(if the last write is older than the interval) and by papermill's autosave while it runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import papermill as pm
from papermill.engines import NBClientEngine, NotebookExecutionManager, papermill_engines

from helpers.run.resume import KERNEL_ENV

ENGINE_NAME = "playbook"
KERNEL_NAME = "playbook-python"
SAVE_INTERVAL_S = 2.0
# Stop a step's kernel at once when its notebook is done: every cell has finished and artifacts are
# written atomically inside the cells, so papermill's graceful shutdown only waits for the kernel's
# own exit (0.8 s typically, 3 s at times, against 0.1 s; measured on step 1).
SHUTDOWN = "immediate"


class ThrottledSaves(NotebookExecutionManager):
    """A ``NotebookExecutionManager`` whose cell-by-cell writes are rate-limited."""

    force_save = True  # the first write (notebook start) and the last (notebook complete) always happen

    def save(self, **kwargs):
        elapsed = (self.now() - self.last_save_time).total_seconds()
        if self.force_save or elapsed >= SAVE_INTERVAL_S:
            super().save(**kwargs)
        self.force_save = False

    def notebook_complete(self, **kwargs):
        self.force_save = True
        super().notebook_complete(**kwargs)


class PlaybookEngine(NBClientEngine):
    @classmethod
    def execute_notebook(cls, nb, kernel_name, output_path=None, progress_bar=True, log_output=False,
                         autosave_cell_every=30, **kwargs):
        # papermill's Engine.execute_notebook, with ThrottledSaves as the execution manager
        # (papermill has no parameter for the manager class)
        nb_man = ThrottledSaves(nb, output_path=output_path, progress_bar=progress_bar, log_output=log_output,
                                autosave_cell_every=autosave_cell_every)
        nb_man.notebook_start()
        try:
            cls.execute_managed_notebook(nb_man, kernel_name, log_output=log_output, **kwargs)
        finally:
            nb_man.cleanup_pbar()
            nb_man.notebook_complete()
        return nb_man.nb


def register() -> str:
    """Register the engine with papermill (idempotent) and return its name."""
    papermill_engines.register(ENGINE_NAME, PlaybookEngine)
    return ENGINE_NAME


def execute_notebook(source: str | os.PathLike, output: str | os.PathLike, **kwargs):
    """``papermill.execute_notebook`` with this engine and the immediate kernel stop (every run uses it)."""
    return pm.execute_notebook(str(source), str(output), engine_name=register(), shutdown_kernel=SHUTDOWN, **kwargs)


@contextlib.contextmanager
def playbook_kernel(run_path: str | os.PathLike | None = None) -> Iterator[str]:
    """A kernelspec that runs this very Python (not whatever "python3" the user has).

    Its kernels carry the run folder in their environment (``KERNEL_ENV``) so the
    kernels of a run can be found and stopped; ipykernel itself exits when the runner
    that started it dies (jupyter_client sets ``JPY_PARENT_PID``).
    """
    tmp = Path(tempfile.mkdtemp(prefix="playbook-kernel-"))
    spec_dir = tmp / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True)
    package_root = str(Path(__file__).resolve().parents[2])  # the folder holding helpers/
    env_path = os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))
    # kernel log lines (tracebacks of interrupted cells, transport warnings) would reach the terminal
    # as raw noise: the executed notebook keeps the full story, the command line prints one message
    # no input history: a batch kernel never reads it, and its SQLite writes cost time at every cell and exit
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}",
                     "--IPKernelApp.log_level=CRITICAL", "--HistoryManager.enabled=False"],
            "display_name": "Playbook (this Python)", "language": "python",
            # one OpenMP thread per kernel unless the user says otherwise: parallelism comes from
            # n_jobs; nested OpenMP threads oversubscribe small machines (20x slower measured here)
            "env": {"PYTHONPATH": env_path, "PYDEVD_DISABLE_FILE_VALIDATION": "1",
                    "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}}
    if run_path is not None:
        spec["env"][KERNEL_ENV] = str(Path(run_path).resolve())
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    old = os.environ.get("JUPYTER_PATH")
    os.environ["JUPYTER_PATH"] = os.pathsep.join(filter(None, [str(tmp), old]))
    try:
        yield KERNEL_NAME
    finally:
        if old is None:
            os.environ.pop("JUPYTER_PATH", None)
        else:
            os.environ["JUPYTER_PATH"] = old
        shutil.rmtree(tmp, ignore_errors=True)

