"""papermill's nbclient engine, with the output notebook written less often.

papermill writes the whole output notebook before and after every cell, markdown cells
included: about 120 writes of a growing notebook for a 60-cell step, 0.5-0.7 s of a
10 s step on this project's machines (measured). This engine writes at most every
``SAVE_INTERVAL_S`` seconds, and always when the notebook starts and when it ends. The
final write runs in papermill's ``finally`` block, so a failed, timed-out or interrupted
step still leaves its partially executed notebook; a long cell is saved when it starts
(if the last write is older than the interval) and by papermill's autosave while it runs.

Kernels off the critical path: inside ``kernels.kernel_pool(kernel_name)``, ``execute_notebook`` runs
the notebook in a kernel the pool started (with its imports) while the notebook before it ran.

Progress: ``execute_notebook(..., cell_listener=L)`` calls ``L.notebook_started(code_cells)``,
``L.next_kernel_due()`` once (at ``next_kernel_cell``; listeners without it are skipped), ``L.cell_started(stage)`` (the nearest preceding markdown heading of the code cell, e.g.
"4.3 Training vs validation") and ``L.cell_completed()`` from papermill's execution manager.
"""

from __future__ import annotations

import os

import nbformat
import papermill as pm
from papermill.clientwrap import PapermillNotebookClient
from papermill.engines import NBClientEngine, NotebookExecutionManager, papermill_engines
from papermill.execute import remove_error_markers
from papermill.log import logger
from papermill.utils import merge_kwargs, remove_args

from helpers.run.kernels import WARM_MODULES, KernelPool, kernel_pool, playbook_kernel, pools  # noqa: F401 - the engine's API

ENGINE_NAME = "playbook"
SAVE_INTERVAL_S = 2.0
# Stop a step's kernel at once when its notebook is done: every cell has finished and artifacts are
# written atomically inside the cells, so papermill's graceful shutdown only waits for the kernel's
# own exit (0.8 s typically, 3 s at times, against 0.1 s; measured on step 1).
SHUTDOWN = "immediate"
# A kernel's start and imports take a core for ~3 s. A step that runs its fits on every core tags
# the first cell after them: the next kernel then starts beside single-core cells, not against the fits.
NEXT_KERNEL_TAG = "next-kernel"
RAISES_TAG = "raises-exception"  # nbclient's tag of a cell allowed to raise
PRESTARTED_START_TIMEOUT_S = 300  # for a prestarted kernel to answer: its imports count, on a busy machine too


def cell_stages(cells) -> list[str]:
    """For each cell, the nearest markdown heading at or before it ("" before the first heading)."""
    stages, current = [], ""
    for cell in cells:
        if cell.get("cell_type") == "markdown":
            for line in str(cell.get("source", "")).splitlines():
                if line.startswith("#"):
                    current = line.lstrip("#").strip() or current
        stages.append(current)
    return stages


def next_kernel_cell(cells) -> int | None:
    """Where the next notebook's kernel should start: the first code cell tagged ``NEXT_KERNEL_TAG``,
    else the first code cell (None: no code cell)."""
    code = [i for i, c in enumerate(cells) if c.get("cell_type") == "code"]
    tagged = [i for i in code if NEXT_KERNEL_TAG in cells[i].get("metadata", {}).get("tags", [])]
    return (tagged or code or [None])[0]


class ThrottledSaves(NotebookExecutionManager):
    """A ``NotebookExecutionManager`` whose cell-by-cell writes are rate-limited (and that reports progress)."""

    force_save = True  # the first write (notebook start) and the last (notebook complete) always happen

    def __init__(self, nb, *args, cell_listener=None, **kwargs):
        super().__init__(nb, *args, **kwargs)
        self.listener = cell_listener
        self.stages = cell_stages(nb.cells)
        self.next_kernel_cell = next_kernel_cell(nb.cells)

    def _tell(self, method: str, *args) -> None:
        # progress is a display: a failing one is switched off, it never fails the notebook
        if self.listener is None or not hasattr(self.listener, method):
            return
        try:
            getattr(self.listener, method)(*args)
        except Exception as exc:
            logger.warning(f"progress display switched off ({type(exc).__name__}: {exc})")
            self.listener = None

    def notebook_start(self, **kwargs):
        super().notebook_start(**kwargs)
        self._tell("notebook_started", sum(c.get("cell_type") == "code" for c in self.nb.cells))

    def cell_start(self, cell, cell_index=None, **kwargs):
        super().cell_start(cell, cell_index, **kwargs)
        if cell.get("cell_type") == "code":
            if cell_index == self.next_kernel_cell:
                self._tell("next_kernel_due")
            self._tell("cell_started", self.stages[cell_index] if cell_index is not None else "")

    def cell_complete(self, cell, cell_index=None, **kwargs):
        super().cell_complete(cell, cell_index, **kwargs)
        if cell.get("cell_type") == "code":
            self._tell("cell_completed")

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
                         autosave_cell_every=30, cell_listener=None, **kwargs):
        # papermill's Engine.execute_notebook, with ThrottledSaves as the execution manager
        # (papermill has no parameter for the manager class)
        nb_man = ThrottledSaves(nb, output_path=output_path, progress_bar=progress_bar, log_output=log_output,
                                autosave_cell_every=autosave_cell_every, cell_listener=cell_listener)
        nb_man.notebook_start()
        try:
            cls.execute_managed_notebook(nb_man, kernel_name, log_output=log_output, **kwargs)
        finally:
            nb_man.cleanup_pbar()
            nb_man.notebook_complete()
        return nb_man.nb

    @classmethod
    def execute_managed_notebook(cls, nb_man, kernel_name, log_output=False, stdout_file=None, stderr_file=None,
                                 start_timeout=60, execution_timeout=None, km=None, **kwargs):
        # papermill's NBClientEngine.execute_managed_notebook, plus: a kernel handed over (``km``, started
        # by a KernelPool) is shut down at the end like one nbclient started itself (nbclient leaves a
        # kernel it was given running)
        if km is not None:  # it may still be importing WARM_MODULES (a dead one is reported at once)
            start_timeout = max(start_timeout, PRESTARTED_START_TIMEOUT_S)
        kwargs = remove_args(["input_path"], **kwargs)
        safe_kwargs = remove_args(["timeout", "startup_timeout"], **kwargs)
        final_kwargs = merge_kwargs(safe_kwargs, timeout=execution_timeout if execution_timeout else kwargs.get("timeout"),
                                    startup_timeout=start_timeout, kernel_name=kernel_name, log=logger,
                                    log_output=log_output, stdout_file=stdout_file, stderr_file=stderr_file)
        return PapermillNotebookClient(nb_man, km=km, **final_kwargs).execute(cleanup_kc=True)


def register() -> str:
    """Register the engine with papermill (idempotent) and return its name."""
    papermill_engines.register(ENGINE_NAME, PlaybookEngine)
    return ENGINE_NAME


def execute_notebook(source: str | os.PathLike, output: str | os.PathLike, **kwargs):
    """``papermill.execute_notebook`` with this engine and the immediate kernel stop (every run uses it).

    Inside ``kernel_pool(kernel_name)`` the notebook runs in the pool's oldest waiting kernel (a
    fresh one when none is waiting); ``km=`` hands over a started kernel explicitly.
    """
    pool = pools().get(kwargs.get("kernel_name"))
    if kwargs.get("km") is None and pool is not None:
        kwargs["km"] = pool.take()
    try:
        return pm.execute_notebook(str(source), str(output), engine_name=register(), shutdown_kernel=SHUTDOWN, **kwargs)
    except pm.PapermillExecutionError:
        # nbclient runs on past a cell tagged ``raises-exception``, but papermill then fails the notebook for
        # its error output all the same: when every error is in such a cell, the notebook ran as its author
        # meant (``playbook check`` tags a learner's cells so). Write it without papermill's error banner.
        nb = nbformat.read(str(output), as_version=4)
        if not all(RAISES_TAG in c.get("metadata", {}).get("tags", []) for c in nb.cells
                   if any(o.get("output_type") == "error" for o in c.get("outputs", []))
                   or c.get("metadata", {}).get("papermill", {}).get("exception")):
            raise
        nb = remove_error_markers(nb)
        nbformat.write(nb, str(output))
        return nb
