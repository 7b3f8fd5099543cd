"""Kernels for the runner: the kernelspec of this very Python, and kernels started ahead of use.

A kernel starts and imports pandas, scikit-learn and the helpers (2-3 s, more on a busy machine)
before its notebook's first cell can run. A ``KernelPool`` starts the next notebook's kernel, with
those imports, while the current notebook runs; ``engine.execute_notebook`` of that kernelspec takes
it over (and shuts it down at the end, exactly like a kernel it started itself). The imports run in
a throw-away namespace, so the notebook sees the same empty namespace, execution counts and
environment as in a fresh kernel.

Light on purpose (the standard library and jupyter_client, imported when a kernel starts): the
``playbook`` command starts the first kernel before it imports the runner, pandas and papermill,
so that kernel's 3 s start runs beside those imports instead of after them.
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

from jupyter_core.utils import run_sync  # jupyter_client's own helper

from helpers.run import registry  # the step table only: no step module is imported

KERNEL_NAME = "playbook-python"
KERNEL_ENV = "PLAYBOOK_RUNNER_RUN"  # a run's kernels carry its folder: resume.stop_kernels finds them
# imported by every kernel the pool starts, before its notebook connects (a module that fails to
# import is skipped there: the notebook's own import then reports the error where it belongs)
WARM_MODULES = ("numpy", "pandas", "scipy", "sklearn", "matplotlib.pyplot", "IPython.display",
                "helpers.core.artifacts", "helpers.core.config", "helpers.ui.widgets")


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


@contextlib.contextmanager
def run_kernels(run_path: str | os.PathLike) -> Iterator[tuple[str, KernelPool]]:
    """The kernelspec of a run (its kernels carry ``run_path``) and the pool that starts them ahead."""
    with playbook_kernel(run_path) as kernel, kernel_pool(kernel) as pool:
        yield kernel, pool


def warm_modules(step: str | None) -> tuple[str, ...]:
    """What a prestarted kernel imports: the common stack and the step's module (the report's without a step)."""
    own = registry.get(step).module if step in registry.TITLES else "helpers.run.report"
    return (*WARM_MODULES, own)


def pools() -> dict[str, KernelPool]:
    """The open pools by kernelspec name (``engine.execute_notebook`` takes its kernels from them)."""
    return _POOLS
