"""papermill's nbclient engine, with the output notebook written less often.

papermill writes the whole output notebook before and after every cell, markdown cells
included: about 120 writes of a growing notebook for a 60-cell step, 0.5-0.7 s of a
10 s step on this project's machines (measured). This engine writes at most every
``SAVE_INTERVAL_S`` seconds, and always when the notebook starts and when it ends. The
final write runs in papermill's ``finally`` block, so a failed, timed-out or interrupted
step still leaves its partially executed notebook; a long cell is saved when it starts
(if the last write is older than the interval) and by papermill's autosave while it runs.

Kernels off the critical path: a kernel starts and imports pandas, scikit-learn and the helpers
(2-3 s, more on a busy machine) before its notebook's first cell can run. A ``KernelPool`` starts
the next notebook's kernel, with those imports, while the current notebook runs; the next
``execute_notebook`` of that kernelspec takes it over (and shuts it down at the end, exactly
like a kernel it started itself). The imports run in a throw-away namespace, so the notebook
sees the same empty namespace, execution counts and environment as in a fresh kernel.

Progress: ``execute_notebook(..., cell_listener=L)`` calls ``L.notebook_started(code_cells)``,
``L.cell_started(stage)`` (the nearest preceding markdown heading of the code cell, e.g.
"4.3 Training vs validation") and ``L.cell_completed()`` from papermill's execution manager.
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
from jupyter_core.utils import run_sync
from papermill.clientwrap import PapermillNotebookClient
from papermill.engines import NBClientEngine, NotebookExecutionManager, papermill_engines
from papermill.log import logger
from papermill.utils import merge_kwargs, remove_args

from helpers.run.resume import KERNEL_ENV

ENGINE_NAME = "playbook"
KERNEL_NAME = "playbook-python"
SAVE_INTERVAL_S = 2.0
# Stop a step's kernel at once when its notebook is done: every cell has finished and artifacts are
# written atomically inside the cells, so papermill's graceful shutdown only waits for the kernel's
# own exit (0.8 s typically, 3 s at times, against 0.1 s; measured on step 1).
SHUTDOWN = "immediate"
# imported by every kernel the pool starts, before its notebook connects (a module that fails to
# import is skipped there: the notebook's own import then reports the error where it belongs)
WARM_MODULES = ("numpy", "pandas", "scipy", "sklearn", "matplotlib.pyplot", "IPython.display",
                "helpers.core.artifacts", "helpers.core.config", "helpers.ui.widgets")
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


class ThrottledSaves(NotebookExecutionManager):
    """A ``NotebookExecutionManager`` whose cell-by-cell writes are rate-limited (and that reports progress)."""

    force_save = True  # the first write (notebook start) and the last (notebook complete) always happen

    def __init__(self, nb, *args, cell_listener=None, **kwargs):
        super().__init__(nb, *args, **kwargs)
        self.listener = cell_listener
        self.stages = cell_stages(nb.cells)

    def _tell(self, method: str, *args) -> None:
        # progress is a display: a failing one is switched off, it never fails the notebook
        if self.listener is None:
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


class KernelPool:
    """Kernels of one kernelspec started ahead of the notebooks that will use them.

    ``prestart`` launches a kernel that imports ``modules`` while nobody waits for it;
    ``take`` hands the oldest waiting one over (None when none is alive); ``close``
    shuts down the ones nobody took. Every kernel is launched from the kernelspec, so it
    carries the spec's environment (``KERNEL_ENV``: ``resume.stop_kernels`` finds it too).
    """

    def __init__(self, kernel_name: str):
        self.kernel_name = kernel_name
        self._waiting: list = []

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def prestart(self, modules=WARM_MODULES) -> None:
        from jupyter_client import AsyncKernelManager  # the manager class nbclient uses by default

        km = AsyncKernelManager(kernel_name=self.kernel_name)
        self._waiting.append(km)  # listed first: an interrupt during the start still gets it shut down
        run_sync(km.start_kernel)(extra_arguments=[warmup_argument(modules)] if modules else [])

    def take(self):
        while self._waiting:
            km = self._waiting.pop(0)
            if km.has_kernel and run_sync(km.is_alive)():
                return km
            _shutdown(km)
        return None

    def close(self) -> None:
        while self._waiting:
            _shutdown(self._waiting.pop(0))


def warmup_argument(modules) -> str:
    """The ipykernel option that imports ``modules`` at kernel start, in a namespace thrown away after."""
    code = f"for m in {tuple(modules)!r}:\n    try:\n        __import__(m)\n    except BaseException:\n        pass\n"
    return f"--IPKernelApp.exec_lines=exec({code!r}, {{}})"


def _shutdown(km) -> None:
    try:
        if km.has_kernel:
            run_sync(km.shutdown_kernel)(now=True)
    except Exception:  # noqa: BLE001 - a kernel that cannot be stopped politely is killed
        process = getattr(getattr(km, "provisioner", None), "process", None)
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(timeout=5)


_POOLS: dict[str, KernelPool] = {}


@contextlib.contextmanager
def kernel_pool(kernel_name: str) -> Iterator[KernelPool]:
    """A ``KernelPool`` whose kernels ``execute_notebook`` takes over for this kernelspec; closed at the end."""
    pool = KernelPool(kernel_name)
    previous = _POOLS.get(kernel_name)
    _POOLS[kernel_name] = pool
    try:
        yield pool
    finally:
        pool.close()
        if previous is None:
            _POOLS.pop(kernel_name, None)
        else:
            _POOLS[kernel_name] = previous


def register() -> str:
    """Register the engine with papermill (idempotent) and return its name."""
    papermill_engines.register(ENGINE_NAME, PlaybookEngine)
    return ENGINE_NAME


def execute_notebook(source: str | os.PathLike, output: str | os.PathLike, **kwargs):
    """``papermill.execute_notebook`` with this engine and the immediate kernel stop (every run uses it).

    Inside ``kernel_pool(kernel_name)`` the notebook runs in the pool's oldest waiting kernel (a
    fresh one when none is waiting); ``km=`` hands over a started kernel explicitly.
    """
    pool = _POOLS.get(kwargs.get("kernel_name"))
    if kwargs.get("km") is None and pool is not None:
        kwargs["km"] = pool.take()
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

