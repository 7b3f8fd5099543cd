"""Step 3: choose libraries, compute and platform from measurements of this problem on this machine.

The step measures how fit time, scoring time and peak memory of every candidate model
family grow with the number of training rows (beyond the rows the table has, on the table
grown by resampling, while the budget lasts), fits a cost law per family (a fixed part plus
a power law, ``core.scaling``), projects it to the current size, 10x and 100x with a range
that says how sure each projection is, predicts step 4's duration (``core.workload``), and
turns the projections into compute verdicts with the table-driven rules below
(``COMPUTE_TIERS``, ``LIBRARY_RULES``, ``CLOUD_RULES``).
"""

from __future__ import annotations

import datetime as dt
import math
import os
import platform
import shutil
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from scipy import optimize

from helpers.core import compute as compute_mod
from helpers.core import documents, exercises, sections, tables
from helpers.core.artifacts import Run
from helpers.core.config import REGISTRY
from helpers.core.errors import PlaybookError
from helpers.core.exercises import Feedback
from helpers.core.families import Family, get_family
from helpers.core.paths import STEP_NOTEBOOKS, data_dir
from helpers.core.plan import PARALLEL_EFFICIENCY, Plan, make_plan, memory_laws
from helpers.core.prepared import Prepared
from helpers.core.sampling import grow
from helpers.core.scaling import (
    CostModel,
    PowerLaw,
    fit_cost_law,
    fit_power_law,
    jackknife_error,
    jackknife_laws,
)
from helpers.core.sections import Fact, Section
from helpers.core.system import LOCK_FILE, lock_text, memory_info, usable_cores
from helpers.core.tables import (  # the report's one formatting of times and sizes
    format_bytes,
    format_seconds,
)
from helpers.core.workload import predict_modeling

STEP = STEP_NOTEBOOKS[2]
DECISION_FILE = "stack_decision.md"
FIGURE_TIME = "scaling_time.png"
FIGURE_MEMORY = "scaling_memory.png"
GIB = 1024**3

KEY_PACKAGES = ("numpy", "pandas", "scikit-learn", "scipy", "matplotlib", "pyarrow", "skops",
                "papermill", "ipywidgets", "jupyterlab")

# --- environment ---------------------------------------------------------------------------


def detect_gpu(which: Callable[[str], str | None] = shutil.which, root: str | os.PathLike = "/") -> dict[str, Any]:
    """GPU presence from driver files and tools on PATH; imports no GPU library."""
    root = Path(root)
    evidence = []
    if which("nvidia-smi"):
        evidence.append("nvidia-smi on PATH")
    nvidia = root / "proc/driver/nvidia/gpus"
    if nvidia.is_dir() and any(nvidia.iterdir()):
        evidence.append("NVIDIA driver lists a GPU (/proc/driver/nvidia/gpus)")
    if (root / "dev/nvidia0").exists():
        evidence.append("/dev/nvidia0 exists")
    if (root / "dev/kfd").exists() or which("rocm-smi"):
        evidence.append("AMD ROCm device or rocm-smi found")
    return {"present": bool(evidence), "evidence": evidence}


def cpu_info(cpuinfo_path: str | os.PathLike = "/proc/cpuinfo") -> dict[str, Any]:
    """Logical cores, cores this process may use (affinity and container quota), and the CPU model name when known."""
    usable = usable_cores()
    model = platform.processor() or None
    try:
        for line in Path(cpuinfo_path).read_text(errors="replace").splitlines():
            if line.lower().startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"logical_cores": os.cpu_count(), "usable_cores": usable, "model": model}


def package_versions(names: Iterable[str] = KEY_PACKAGES) -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def environment_report() -> dict[str, Any]:
    """Python, OS, CPU, memory, GPU and key library versions of this machine."""
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "os": f"{platform.system()} {platform.release()}",
        "platform": platform.platform(),
        "cpu": cpu_info(),
        "memory": memory_info(),
        "gpu": detect_gpu(),
        "packages": package_versions(),
    }


def environment_table(env: Mapping[str, Any]) -> pd.DataFrame:
    """The environment report as a two-column table for people."""
    mem, cpu, gpu = env["memory"], env["cpu"], env["gpu"]
    rows = [("Python", f"{env['python']} ({env['implementation']})"), ("Operating system", env["platform"]),
            ("CPU", f"{cpu['usable_cores']} usable of {cpu['logical_cores']} logical cores"
                    + (f" ({cpu['model']})" if cpu.get("model") else "")),
            ("Memory", f"{format_bytes(mem['available_bytes'])} available of {format_bytes(mem['total_bytes'])}"),
            ("GPU", "yes: " + "; ".join(gpu["evidence"]) if gpu["present"] else "none detected")]
    rows += [(name, version or "not installed") for name, version in env["packages"].items()]
    return pd.DataFrame(rows, columns=["item", "value"]).set_index("item")


# --- lock file ---------------------------------------------------------------------------------


def write_lock(run: Run) -> Path:
    """Save the lock file in the step folder and name it in the manifest."""
    path = run.write_artifact_text(STEP, LOCK_FILE, lock_text(captured_by="step 3"))
    run.update_manifest(lock_file=run.relative(path))
    return path


# --- measurement ----------------------------------------------------------------------------


def subsample_sizes(n_rows: int, *, smallest: int = 250, floor: int = 50, ratio: int = 2) -> list[int]:
    """Geometric training sizes (each ``ratio`` times the last) from a small subsample up to all ``n_rows``."""
    if n_rows < 2:
        raise PlaybookError(f"Only {n_rows} training row(s): nothing to measure.",
                            "step 3 needs a training set with at least a few dozen rows (re-run step 2).")
    start = max(min(smallest, n_rows // 8), min(floor, n_rows))
    sizes = []
    size = start
    while size < n_rows:
        sizes.append(int(size))
        size *= ratio
    if sizes and n_rows < sizes[-1] * 1.25:  # the last step would be a near-duplicate point
        sizes.pop()
    return sizes + [n_rows]


PROC_STATUS = Path("/proc/self/status")
PROC_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_bytes(field_name: str) -> int:
    """A ``VmHWM``/``VmRSS`` figure of this process in bytes, from /proc/self/status."""
    for line in PROC_STATUS.read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1]) * 1024
    raise OSError(f"{field_name} not in {PROC_STATUS}")


def peak_rss_supported() -> bool:
    """Whether this process can reset and read its peak resident memory (Linux 4.0 and later)."""
    try:
        _status_bytes("VmHWM")
        return os.access(PROC_CLEAR_REFS, os.W_OK)
    except OSError:
        return False


def _release_free_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc only; best effort).

    Without this, a fit re-uses memory an earlier fit freed and its peak looks like zero.
    """
    import ctypes
    import gc

    gc.collect(1)  # young generations: a full collection costs ~0.15 s with pandas and sklearn loaded
    if platform.system() == "Linux":
        try:
            ctypes.CDLL(None).malloc_trim(0)  # the process's own symbols include libc's
        except (OSError, AttributeError):
            pass


def fit_with_peak_rss(model: Any, X: pd.DataFrame, y: pd.Series | None,
                      clock: Callable[[], float] = time.perf_counter) -> tuple[float, int]:
    """Fit once; return (seconds, peak resident memory added during the fit in bytes).

    Writing 5 to /proc/self/clear_refs resets the process's peak RSS (VmHWM), so
    VmHWM after the fit minus VmRSS before it is what the fit added at its peak,
    native allocations (OpenMP, BLAS, C++) included, at no cost to the timing.
    """
    _release_free_memory()
    PROC_CLEAR_REFS.write_text("5")
    before = _status_bytes("VmRSS")
    start = clock()
    model.fit(X, y)
    took = clock() - start
    return took, max(_status_bytes("VmHWM") - before, 0)


def time_fit(make: Callable[[], Any], X: pd.DataFrame, y: pd.Series | None, *, min_total_s: float = 0.1,
             min_repeats: int = 1, max_repeats: int = 3, rss: bool = False,
             clock: Callable[[], float] = time.perf_counter) -> tuple[float, int | None, Any]:
    """(seconds, peak bytes or None, the last fitted model) of one fit: the minimum over a few repeats for short fits.

    As with timeit, the minimum is the best estimate: repeats only add noise from other
    processes and one-off costs (lazy imports, caches) of the first fit. Peak memory is
    read from the same fits when ``rss`` is True (see ``fit_with_peak_rss``).
    """
    best_s, best_peak, total, model = math.inf, None, 0.0, None
    for i in range(max_repeats):
        model = make()
        if rss:
            took, peak = fit_with_peak_rss(model, X, y, clock)
            best_peak = peak if best_peak is None else min(best_peak, peak)
        else:
            start = clock()
            model.fit(X, y)
            took = clock() - start
        best_s, total = min(best_s, took), total + took
        if i + 1 >= min_repeats and total >= min_total_s:
            break
    return best_s, best_peak, model


def time_call(fn: Callable[[], Any], *, min_total_s: float = 0.05, max_repeats: int = 3,
              clock: Callable[[], float] = time.perf_counter) -> float:
    """Seconds of one call: the minimum over a few repeats while they stay short (as ``time_fit``)."""
    best, total = math.inf, 0.0
    for _ in range(max_repeats):
        start = clock()
        fn()
        took = clock() - start
        best, total = min(best, took), total + took
        if total >= min_total_s:
            break
    return best


REPEAT_BELOW_S = 0.3  # a point's fits repeat (at most 3) until they took this long: the minimum is steadier
SCORE_ROWS = 1000  # rows scored per measured point: enough to see the per-row cost, cheap for k-NN
SCORE_BASE_ROWS = 10  # a tiny batch: its time is the fixed cost of one scoring call


def scoring_method(model: Any, problem_type: str) -> Callable[[pd.DataFrame], Any] | None:
    """What step 4 calls to score: class probabilities for classifiers, else predictions (None: cannot score)."""
    if problem_type == "classification" and hasattr(model, "predict_proba"):
        return model.predict_proba
    return getattr(model, "predict", None)


def peak_fit_memory(make: Callable[[], Any], X: pd.DataFrame, y: pd.Series | None) -> int:
    """Peak bytes allocated during one fit, measured with tracemalloc (fallback off Linux).

    An estimate, not the exact footprint: tracemalloc sees allocations made through
    Python's and NumPy's allocators (arrays, Python objects) but not memory that native
    libraries (OpenMP thread pools, BLAS buffers, C++ containers) allocate directly.
    It also slows fits with many small allocations down a lot (about 13x for
    HistGradientBoosting here), which is why peak RSS is preferred where available.
    """
    model = make()
    tracemalloc.start()
    try:
        model.fit(X, y)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return int(peak)


@dataclass
class Measurement:
    """One (family, training size) point: fit time, scoring times and peak memory (None if not measured)."""

    family: str
    n_rows: int
    fit_s: float
    peak_bytes: int | None
    score_s: float | None = None  # scoring ``score_rows`` rows with the fitted model
    score_rows: int = 0
    score_base_s: float | None = None  # scoring ``SCORE_BASE_ROWS`` rows: the fixed cost of a call


MEASUREMENT_COLUMNS = ["family", "n_rows", "fit_s", "peak_bytes", "score_s", "score_rows", "score_base_s"]
MAX_GROWTH = 16  # measure up to 16x the training rows (grown synthetically) while the budget lasts
SIZE_RATIO = 4  # each measured size is 4x the last


def measurement_sizes(n_rows: int, max_growth: int = MAX_GROWTH, ratio: int = SIZE_RATIO,
                      smallest: int = 500) -> list[int]:
    """``subsample_sizes`` up to all rows, then the table grown ``ratio``-fold at a time up to ``max_growth`` x.

    At a few thousand rows the fixed cost of a fit still hides how it grows, and the 10x
    and 100x projections are only as good as the largest sizes measured. Sizes 4x apart
    cost a third less than doublings for the same largest size; four of them (the fixed
    part, the growth and a jackknife check) are enough for the three-parameter law. Below
    ``smallest`` rows boosted trees cannot grow their usual number of leaves (20 rows per
    leaf): a cheaper regime that would bend the law.
    """
    sizes = subsample_sizes(n_rows, smallest=smallest, ratio=ratio)
    growth = ratio
    while growth <= max_growth:
        sizes.append(n_rows * growth)
        growth *= ratio
    return sizes


def thread_limit(n_jobs: int | None) -> int | None:
    """Threads per fit: ``n_jobs`` (None: one; negative: all cores, no limit)."""
    if n_jobs is None:
        return 1
    return None if n_jobs < 0 else max(n_jobs, 1)


def _growth_exponent(history: Sequence[tuple[int, float]]) -> float:
    """How fast a family's cost grew between its last two points (at least linear, at most cubic)."""
    if len(history) < 2:
        return 1.0
    (n0, t0), (n1, t1) = history[-2], history[-1]
    if n1 <= n0 or t0 <= 0 or t1 <= 0:
        return 1.0
    return float(np.clip(math.log(t1 / t0) / math.log(n1 / n0), 1.0, 3.0))


TRACEMALLOC_SLOWDOWN = 13.0  # a traced fit takes up to this many times an untraced one (HistGradientBoosting)
# measured (bench_stack.py --part parallel, 2 loaded cores): per family, the median point timed side by side is
# 0.95-1.19x the same point timed alone, its 10x/100x projections 0.86-1.21x (two runs alone differ by up to 1.13x)
PARALLEL_AGREEMENT = 1.25
PARALLEL_MIN_BUDGET_S = 5.0  # below this budget no worker process is started (unless one is up already)


def measurement_workers(n_jobs: int | None, n_families: int, cores: int | None = None) -> int:
    """Processes that measure at once: one per usable core, at most one per family; 1 for multi-threaded fits.

    Every point is timed in CPU seconds of the process that runs it, on one thread, so
    points of different families can run side by side on different cores and each keeps
    its own clock (and its own peak-RSS counter): the same figures in a fraction of the
    wall time. Multi-threaded fits would compete for the cores: they are measured one at
    a time.
    """
    if thread_limit(n_jobs) != 1:
        return 1
    return max(1, min(usable_cores() if cores is None else cores, n_families))


def _measure_point(prepared: Prepared, family: Family, X: pd.DataFrame, y: pd.Series | None, n: int, *,
                   seed: int, n_jobs: int | None, method: str, first: bool, timer: Callable[[], float],
                   trace_allowed: Callable[[float], bool]) -> Measurement:
    """One point: fit (repeated while short), score ``SCORE_ROWS`` and ``SCORE_BASE_ROWS`` rows, peak memory.

    ``first``: the family's first point, whose first fit also pays one-off costs (it is
    repeated). ``trace_allowed(seconds)`` says whether a separate traced fit of about
    that cost still fits the budget (``method`` "tracemalloc"). Raises ValueError when the
    family cannot fit these rows.
    """
    def make():
        return prepared.pipeline(family, seed, n_jobs)

    fit_s, peak, model = time_fit(make, X, y, min_total_s=REPEAT_BELOW_S, min_repeats=2 if first else 1,
                                  rss=method == "rss", clock=timer)
    point = Measurement(family.name, n, fit_s, peak)
    score = scoring_method(model, prepared.problem_type)
    if score is not None:
        probe = X.iloc[:SCORE_ROWS]
        point.score_s = time_call(lambda: score(probe), clock=timer)
        point.score_rows = len(probe)
        base = X.iloc[:SCORE_BASE_ROWS]
        point.score_base_s = time_call(lambda: score(base), clock=timer)
    if method == "tracemalloc" and trace_allowed(TRACEMALLOC_SLOWDOWN * (fit_s + (point.score_s or 0.0))):
        point.peak_bytes = peak_fit_memory(make, X, y)
    return point


_Rows = tuple[pd.DataFrame, pd.Series | None]


class _Samples:
    """The samples a measuring process is using (the latest few sizes: lanes move up a size at a time).

    Here they are drawn from the train side (``sampling.grow``). A worker process starts
    without rows (``X`` None) and is sent what it lacks (``rows_for``): the sample itself up
    to the real row count, the train side once to grow it beyond; so a worker holds only
    the rows it measures, not a large table.
    """

    def __init__(self, X: pd.DataFrame | None, y: pd.Series | None, seed: int, stratify: bool, *,
                 real_rows: int | None = None, keep: int = 2):
        self.X, self.y, self.seed, self.stratify, self.keep = X, y, seed, stratify, keep
        self.real_rows = len(X) if X is not None else int(real_rows or 0)
        self.cache: dict[int, _Rows] = {}
        self.lock = threading.Lock()  # this process's lanes share the samples

    def has(self, n: int) -> bool:
        """Whether ``get(n)`` needs no rows sent."""
        return n in self.cache or (n > self.real_rows and self.X is not None)

    def rows_for(self, n: int) -> _Rows:
        """What a worker needs for size ``n``: the sample, or (beyond the real rows) the train side to grow."""
        return self.get(n) if n <= self.real_rows else (self.X, self.y)

    def get(self, n: int, rows: _Rows | None = None) -> _Rows:
        with self.lock:
            if n not in self.cache:
                if rows is not None and n <= self.real_rows:
                    sample = rows
                else:
                    if rows is not None:
                        self.X, self.y = rows
                    sample = grow(self.X, self.y, n, self.seed, stratify=self.stratify)
                while len(self.cache) >= self.keep:
                    self.cache.pop(next(iter(self.cache)))
                self.cache[n] = sample
            return self.cache[n]


_WAIT = "wait"


class _LaneLost(Exception):
    """A lane cannot go on: its point fails (``retry`` False) or goes back to the other lanes (True)."""

    def __init__(self, message: str, retry: bool = False):
        super().__init__(message)
        self.retry = retry


class _Schedule:
    """Which (family, size) point is measured next, and the points measured so far (shared by the lanes).

    A lane is this process or a worker process, measuring one point at a time. Sizes are
    visited smallest first (at a size, the cheapest family first); a family's next point
    waits for its previous one (its growth so far predicts the next cost), and starts only
    while the budget is not used up and when that prediction ends inside it.
    """

    def __init__(self, families: Sequence[Family], sizes: Sequence[int], budget_s: float,
                 clock: Callable[[], float]):
        self.families, self.sizes, self.budget_s, self.clock = list(families), list(sizes), budget_s, clock
        self.start = clock()
        self.history: dict[str, list[tuple[int, float]]] = {}
        self.next_index = {f.name: 0 for f in self.families}  # the family's next size (an index into sizes)
        self.stopped: set[str] = set()
        self.busy: set[str] = set()
        self.failed: dict[str, str] = {}
        self.rows: list[Measurement] = []
        self.by_lane: dict[str, int] = {}  # points measured by each process
        self.dispatched: dict[tuple[str, int], int] = {}  # (family, rows) -> order in which points started
        self.error: BaseException | None = None  # raised by a lane: every lane stops
        self.closed = False  # no new point starts (this process's lane stopped)
        self.changed = threading.Condition()

    def predicted_s(self, name: str, n: int) -> float:
        if name not in self.history:
            return 0.0
        n_prev, t_prev = self.history[name][-1]
        return t_prev * (n / n_prev) ** _growth_exponent(self.history[name])

    def remaining_s(self) -> float:
        return self.budget_s - (self.clock() - self.start)

    def allows(self, cost_s: float) -> bool:
        """Whether work of ``cost_s`` seconds started now ends inside the budget."""
        elapsed = self.clock() - self.start
        return elapsed < self.budget_s and elapsed + cost_s <= self.budget_s

    def fits_in_budget(self, name: str, n: int) -> bool:
        return self.allows(self.predicted_s(name, n))

    def next_point(self) -> tuple[Family, int, bool] | str | None:
        """(family, rows, first point of the family), ``_WAIT`` while a lane may still unblock one, or None: done."""
        if self.error is not None or self.closed:
            return None
        order = {f.name: i for i, f in enumerate(self.families)}
        while True:
            ready = [f for f in self.families if f.name not in self.stopped and f.name not in self.busy
                     and self.next_index[f.name] < len(self.sizes)]
            if not ready:
                return _WAIT if self.busy else None
            family = min(ready, key=lambda f: (self.sizes[self.next_index[f.name]],
                                               self.predicted_s(f.name, self.sizes[self.next_index[f.name]]),
                                               order[f.name]))
            n = self.sizes[self.next_index[family.name]]
            if self.fits_in_budget(family.name, n):
                self.busy.add(family.name)
                self.dispatched[family.name, n] = len(self.dispatched)
                return family, n, family.name not in self.history
            self.stopped.add(family.name)

    def record(self, family: Family, n: int, point: Measurement | None, failure: str | None = None,
               lane: str = "this process") -> None:
        self.busy.discard(family.name)
        self.next_index[family.name] += 1
        if point is None:
            self.failed[family.name] = f"{n} rows: {failure}"
            self.stopped.add(family.name)
        else:
            self.history.setdefault(family.name, []).append((n, point.fit_s + (point.score_s or 0.0)))
            self.rows.append(point)
            self.by_lane[lane] = self.by_lane.get(lane, 0) + 1

    def measured(self) -> list[Measurement]:
        """The points by size, then in the order they started (with one lane: the order they were measured)."""
        return sorted(self.rows, key=lambda r: (r.n_rows, self.dispatched[r.family, r.n_rows]))

    def run_lane(self, measure: Callable[[Family, int, bool], Measurement], lane: str = "this process") -> None:
        """Measure points one at a time with ``measure`` until none is left (or a lane failed).

        ``measure`` raises ValueError when the family cannot be measured on those rows
        (it is reported, the others go on) and ``_LaneLost`` when this lane cannot go on.
        """
        while True:
            with self.changed:
                task = self.next_point()
                while task == _WAIT:
                    self.changed.wait()
                    task = self.next_point()
                if task is None:
                    return
            family, n, first = task
            point, failure = None, None
            try:
                point = measure(family, n, first)
            except ValueError as exc:  # e.g. too few rows for the family: report it, measure the others
                failure = str(exc)
            except _LaneLost as exc:
                with self.changed:
                    if exc.retry:
                        self.busy.discard(family.name)
                        self.dispatched.pop((family.name, n), None)
                    else:
                        self.record(family, n, None, str(exc), lane)
                    self.changed.notify_all()
                return
            except BaseException as exc:
                with self.changed:
                    self.error = self.error or exc
                    self.busy.discard(family.name)
                    self.changed.notify_all()
                raise
            with self.changed:
                self.record(family, n, point, failure, lane)
                self.changed.notify_all()


_WORKER: dict[str, Any] = {}  # in a measuring worker process: the data of the measurement it serves
_POOL: dict[str, Any] = {}  # in this process: the worker processes, kept between measurements
_POOL_LOCK = threading.RLock()
_RELOAD, _ROWS = "reload", "rows"  # what a worker asks for: the measurement's set-up, the rows of a size


def _worker_init() -> None:
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1)  # for the life of the worker: it measures one-core costs


def _worker_ready() -> int:
    return os.getpid()


def _worker_forget(token: str) -> None:
    """Drop a finished measurement's data (the worker stays, for the next measurement)."""
    if _WORKER.get("token") == token:
        _WORKER.clear()


def _worker_point(token: str, name: str, n: int, first: bool, remaining_s: float, payload: tuple | None = None,
                  rows: _Rows | None = None) -> tuple[str, Any]:
    """Measure one point in a worker process, timed by its own CPU clock.

    Returns ("point", Measurement), ("failed", why), or what the worker lacks, sent with
    the next call: (``_RELOAD``, None) for the measurement's set-up (``payload``),
    (``_ROWS``, None) for the rows of this size (``rows``, see ``_Samples``).
    """
    started = time.perf_counter()
    if _WORKER.get("token") != token:
        if payload is None:
            return _RELOAD, None
        prepared, families, seed, n_jobs, method, real_rows = payload
        _WORKER.clear()
        _WORKER.update(token=token, prepared=prepared, families={f.name: f for f in families}, seed=seed,
                       n_jobs=n_jobs, method=method,
                       samples=_Samples(None, None, seed, prepared.problem_type == "classification",
                                        real_rows=real_rows))
    if rows is None and not _WORKER["samples"].has(n):
        return _ROWS, None

    def trace_allowed(cost_s: float) -> bool:
        elapsed = time.perf_counter() - started
        return elapsed < remaining_s and elapsed + cost_s <= remaining_s

    X, y = _WORKER["samples"].get(n, rows)
    try:
        return "point", _measure_point(_WORKER["prepared"], _WORKER["families"][name], X, y, n,
                                       seed=_WORKER["seed"], n_jobs=_WORKER["n_jobs"], method=_WORKER["method"],
                                       first=first, timer=time.thread_time, trace_allowed=trace_allowed)
    except ValueError as exc:
        return "failed", str(exc)


POOL_IDLE_S = 120.0  # a worker that measures nothing for this long exits (another starts when needed)


def _workers(extra: int) -> tuple[Any, list[Any]]:
    """A pool of at least ``extra`` worker processes (started if needed), and ``extra`` futures done when they are up."""
    from joblib.externals.loky import ProcessPoolExecutor

    with _POOL_LOCK:
        for attempt in range(2):
            if _POOL.get("extra", 0) < extra:  # a larger pool serves as it is
                _stop_workers()
                one_thread = {v: "1" for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
                _POOL.update(extra=extra, executor=ProcessPoolExecutor(max_workers=extra, timeout=POOL_IDLE_S,
                                                                       initializer=_worker_init, env=one_thread))
            try:
                return _POOL["executor"], [_POOL["executor"].submit(_worker_ready) for _ in range(extra)]
            except RuntimeError:  # broken since (e.g. a worker killed for memory while idle): a new pool
                if attempt:
                    raise
                _stop_workers()
    raise AssertionError("unreachable")


def _stop_workers() -> None:
    with _POOL_LOCK:
        if _POOL:
            _POOL.pop("executor").shutdown(wait=False, kill_workers=True)
            _POOL.clear()


def start_measurement_workers(extra: int | None = None, *, wait: bool = False, budget_s: float | None = None) -> int:
    """Start the worker processes ``measure_scaling`` measures in beside this one (default: one per other core).

    A worker takes ``WORKER_START_S`` of CPU to start and import the libraries.
    ``measure_scaling`` does not wait for it (this process measures meanwhile), so
    starting the workers earlier (e.g. while the notebook loads the data) gives them more
    of the budget. With ``budget_s`` (the coming measurement's), they start in the
    background and only as ``measure_scaling`` would start them: on idle cores, for a
    budget of at least ``PARALLEL_MIN_BUDGET_S``; without it, at once (``wait``: return
    once they are up). The workers stay for later measurements and exit after
    ``POOL_IDLE_S`` seconds without work. Returns the number of workers asked for.
    """
    extra = max(1, usable_cores() - 1) if extra is None else int(extra)
    if budget_s is not None:
        if budget_s < PARALLEL_MIN_BUDGET_S or usable_cores() < 2:
            return 0

        def when_idle() -> None:
            idle = idle_cores()
            n = extra if idle is None else min(extra, int(idle + 1 - IDLE_CORE))
            with _POOL_LOCK:
                if n >= 1 and not _POOL:
                    try:
                        _workers(n)
                    except (OSError, ImportError):  # no worker processes here: measure_scaling measures alone
                        pass

        threading.Thread(target=when_idle, name="measure-workers-start", daemon=True).start()
        return extra
    _, ready = _workers(extra)
    if wait:
        for future in ready:
            future.result()
    return extra


WORKER_START_S = 2.7  # CPU seconds a worker takes to start and import the libraries (measured: 2.5 user + 0.2 system)
IDLE_SAMPLE_S = 0.5  # how long the machine's idle time is sampled before a worker is started
IDLE_CORE = 0.75  # a core idle this share of the sample counts as free for a worker


def idle_cores(interval_s: float = IDLE_SAMPLE_S, stat: str | os.PathLike = "/proc/stat") -> float | None:
    """Cores that no process used over the next ``interval_s`` seconds (from Linux /proc/stat; None elsewhere)."""
    def read() -> tuple[int, int, int]:
        lines = Path(stat).read_text().splitlines()
        values = [int(v) for v in lines[0].split()[1:9]]  # user nice system idle iowait irq softirq steal
        cpus = sum(1 for line in lines if line.startswith("cpu") and line[3:4].isdigit())
        return values[3] + values[4], sum(values), cpus

    try:
        idle0, total0, cpus = read()
        time.sleep(interval_s)
        idle1, total1, _ = read()
    except (OSError, ValueError, IndexError):
        return None
    if total1 <= total0 or cpus < 1:
        return None
    return (idle1 - idle0) / (total1 - total0) * cpus


def _measure_in_workers(schedule: _Schedule, measure_here: Callable[[Family, int, bool], Measurement] | None,
                        samples: _Samples, extra: int, payload: tuple, cluster: Any = None) -> dict[str, Any]:
    """This process measures as one lane while up to ``extra`` worker processes (loky, one thread each) join it.

    This process starts measuring at once. Workers are started only on cores the machine
    leaves idle (``idle_cores``, sampled again while none is): measuring side by side on
    a busy core would only share that core (and a worker's start-up, ``WORKER_START_S``
    of CPU, would take from it), and none starts when less than its start-up is left of
    the budget. Workers already up (``start_measurement_workers``) are used as they are.
    A worker's lane opens when the worker is up, so the start-up is off the critical path.
    A worker that dies (e.g. killed for memory) fails its point and closes its lane; the
    other lanes carry on. The workers stay for the next measurement (without its data),
    unless one died or this process stopped early. Returns how many workers measured
    beside this process ("workers") and the idle cores seen ("idle_cores", None: not sampled).

    With ``cluster`` (a Dask client's executor) every point is measured on the cluster's workers,
    ``extra`` lanes at once, and none in this process (``measure_here`` is not used); a worker that
    dies has its point retried on another by the scheduler.
    """
    import pickle
    import uuid

    from joblib.externals.loky.process_executor import BrokenProcessPool

    state: dict[str, Any] = {"workers": 0, "idle_cores": None, "executor": None}
    lost: list[str] = []  # a worker died: the pool is not kept
    token = uuid.uuid4().hex  # loky pickles the payload with cloudpickle (the families' builders are lambdas)

    def measure_there(family: Family, n: int, first: bool) -> Measurement:
        sent: dict[str, Any] = {}  # what the worker asked for, sent again if another worker takes the call
        try:
            while True:
                kind, value = state["executor"].submit(_worker_point, token, family.name, n, first,
                                                       schedule.remaining_s(), **sent).result()
                if kind == _RELOAD:
                    sent["payload"] = payload
                elif kind == _ROWS:
                    sent["rows"] = samples.rows_for(n)
                else:
                    break
        except BrokenProcessPool as exc:
            lost.append(family.name)
            raise _LaneLost(f"the worker process measuring it died ({exc}): too little memory?") from exc
        except pickle.PicklingError as exc:  # a family (or the data) cannot go to another process: measured here
            raise _LaneLost(str(exc), retry=True) from exc
        except Exception as exc:
            if type(exc).__name__ != "KilledWorker":  # dask: the point killed every worker it was retried on
                raise
            lost.append(family.name)
            raise _LaneLost(f"the Dask workers measuring it died ({exc}): too little memory?") from exc
        if kind == "failed":
            raise ValueError(value)
        return value

    def lane(i: int, ready: Any) -> None:
        try:
            ready.result()  # claim no point before a worker can measure it
            schedule.run_lane(measure_there, f"worker {i + 1}")
        except BaseException:  # noqa: BLE001 - a point's error is in schedule.error, raised by this process's lane
            pass

    def starter() -> None:
        while True:
            if schedule.closed or schedule.error is not None:
                return
            if _POOL:
                n = min(extra, _POOL["extra"])  # up already: their start-up is paid
                break
            if schedule.remaining_s() <= WORKER_START_S:
                return
            idle = idle_cores()
            state["idle_cores"] = idle if idle is None else round(idle, 2)
            n = extra if idle is None else min(extra, int(idle + 1 - IDLE_CORE))
            if n >= 1:
                break
        with schedule.changed:
            if schedule.closed:
                return
            try:
                executor, ready = _workers(n)
            except (OSError, ImportError):  # no worker processes here (a sandbox): this process measures alone
                return
            state.update(executor=executor, workers=n)
        for i, future in enumerate(ready):
            threading.Thread(target=lane, args=(i, future), name=f"measure-lane-{i + 1}", daemon=True).start()

    finished = False
    try:
        if cluster is not None:
            state.update(executor=cluster, workers=extra)
            lanes = [threading.Thread(target=schedule.run_lane, args=(measure_there, f"worker {i + 1}"),
                                      name=f"measure-lane-{i + 1}", daemon=True) for i in range(extra)]
            for t in lanes:
                t.start()
            for t in lanes:
                t.join()
        else:
            threading.Thread(target=starter, name="measure-workers", daemon=True).start()
            schedule.run_lane(measure_here)  # returns when no point is left and none is being measured
        finished = schedule.error is None and not lost
    finally:
        with schedule.changed:
            schedule.closed = True  # lanes still starting (or this one stopped early): no new point
            schedule.changed.notify_all()
        if state["executor"] is not None and finished:
            for _ in range(state["workers"]):
                state["executor"].submit(_worker_forget, token)
        elif state["executor"] is not None and cluster is None:  # a point may still run in a worker: stop them
            _stop_workers()
    if schedule.error is not None:
        raise schedule.error
    return state


def measure_scaling(prepared: Prepared, families: Sequence[Family], *, budget_s: float, seed: int = 0,
                    n_jobs: int | None = 1, sizes: Sequence[int] | None = None, memory: str = "auto",
                    clock: Callable[[], float] = time.perf_counter,
                    timer: Callable[[], float] | None = None, workers: int | None = None,
                    compute: str | None = None) -> pd.DataFrame:
    """Fit and score every family inside step 2's preprocessing on growing samples of the train side.

    Sizes (``measurement_sizes``) run from a small subsample to all rows, then beyond: the
    table grown by resampling with 1% jitter (``sampling.grow``), up to ``MAX_GROWTH`` x.
    Each point times one fit, then scoring ``SCORE_ROWS`` rows and ``SCORE_BASE_ROWS`` rows
    (step 4 scores every fold; for k-nearest neighbours scoring is the cost, not fitting).
    Sizes are visited smallest first for all families (at each size the cheapest first), so
    each family gets its cheap points before any gets expensive ones. A point starts only while the budget is not
    used up and when the family's last point, scaled up to the next size at the rate it
    grew so far, is predicted to end inside it: the budget is never exceeded by more than
    one point (per measuring process). ``memory`` is "rss" (peak resident memory, same fit), "tracemalloc" (a
    separate traced fit, only while the budget allows), "auto" (rss where supported) or
    "none". Returns one row per point (``MEASUREMENT_COLUMNS``; NaN when not measured);
    ``attrs`` hold the elapsed time, the memory method, the failures, the real row count,
    the number of measuring processes, how many points each measured and the idle cores
    seen before starting workers (None: not sampled).

    With ``compute`` naming a Dask cluster (``core.compute``) every point is measured on its
    workers, one per worker thread, each timed by its own CPU clock (``attrs["engine"]`` says where).
    Up to ``workers`` processes measure at once (None: ``measurement_workers``, one per
    usable core up to one per family, when fits run on one thread, on the default clocks
    and with a budget of at least ``PARALLEL_MIN_BUDGET_S`` or workers already up): this
    one and worker processes, each timing its points with its own CPU clock. Workers are
    started only on cores the machine leaves idle (``_measure_in_workers``; those already
    up are used), so ``workers`` is a maximum. Points timed side by side agree with points
    timed alone within ``PARALLEL_AGREEMENT`` (tests/test_stack.py, benchmarks/bench_stack.py).

    The budget runs on ``clock`` (wall time). Fits and scoring are timed with ``timer``:
    by default the process's CPU time when they run on one thread (other programs on a
    shared machine then do not inflate the measurements; on an idle machine it equals the
    wall time), else ``clock``; beside worker processes, the CPU time of the thread that
    measures (``time.thread_time``: a one-thread fit runs all its work on it, this
    process's other threads only wait for the workers). ``n_jobs`` None: one thread per fit.
    """
    from threadpoolctl import threadpool_limits  # a scikit-learn dependency

    method = ("rss" if peak_rss_supported() else "tracemalloc") if memory == "auto" else memory
    default_clocks = clock is time.perf_counter and timer is None
    timer = timer or (time.process_time if thread_limit(n_jobs) == 1 and clock is time.perf_counter else clock)
    if workers is None:
        workers = measurement_workers(n_jobs, len(families)) if default_clocks else 1
        if workers > 1 and budget_s < PARALLEL_MIN_BUDGET_S and not _POOL:
            workers = 1  # a worker would be up (~2.5 s of CPU) too late to take a share of the points
    workers = max(1, min(int(workers), len(families)))
    if workers > 1 and timer is time.process_time:
        timer = time.thread_time  # this process's other threads (the worker lanes' waits) are not the fit's
    X, y = prepared.X("train"), prepared.y("train")
    sizes = list(sizes) if sizes is not None else measurement_sizes(len(X))
    stratify = prepared.problem_type == "classification"
    schedule = _Schedule(families, sizes, budget_s, clock)
    samples = _Samples(X, y, seed, stratify, keep=3 if workers > 1 else 2)

    def measure_here(family: Family, n: int, first: bool) -> Measurement:
        Xn, yn = samples.get(n)
        return _measure_point(prepared, family, Xn, yn, n, seed=seed, n_jobs=n_jobs, method=method, first=first,
                              timer=timer, trace_allowed=schedule.allows)

    # OpenMP-parallel fits (HistGradientBoosting) otherwise take every core whatever
    # n_jobs says, and thrash when other processes share the machine.
    idle = None
    with threadpool_limits(limits=thread_limit(n_jobs)):
        # what another process needs to measure (the rows go separately: _Samples)
        light = replace(prepared, train=prepared.train.iloc[:0], test=prepared.test.iloc[:0])
        payload = (light, list(families), seed, n_jobs, method, len(X))
        if compute_mod.is_cluster(compute):  # every point on the cluster's workers, one per thread
            engine = compute_mod.engine(compute)
            workers = engine.threads
            # pure=False: dask would otherwise hand an identical call the first one's (cached) result
            executor = compute_mod.client(compute).get_executor(pure=False)
            _measure_in_workers(schedule, None, samples, workers, payload, cluster=executor)
        elif workers > 1:
            joined = _measure_in_workers(schedule, measure_here, samples, workers - 1, payload)
            workers, idle = 1 + joined["workers"], joined["idle_cores"]
            engine = compute_mod.Engine(compute_mod.LOCAL, None, 1, workers)
        else:
            schedule.run_lane(measure_here)
            engine = compute_mod.Engine(compute_mod.LOCAL, None, 1, 1)
    frame = pd.DataFrame([asdict(r) for r in schedule.measured()], columns=MEASUREMENT_COLUMNS)
    frame = frame.astype({"score_s": float, "score_base_s": float})  # None (not scored) as NaN
    frame.attrs.update(elapsed_s=clock() - schedule.start, memory_method=method, failed=schedule.failed,
                       real_rows=len(X), workers=workers, points_by_process=dict(schedule.by_lane),
                       idle_cores=idle, engine=engine.record())
    return frame


# --- power laws -------------------------------------------------------------------------------


@dataclass
class FamilyCurves:
    """The fitted time and memory laws of one family, with the points behind them.

    ``time`` is the fit-time law (fixed part plus power law); ``cost`` adds the scoring
    law and the jackknife spreads (``core.scaling.CostModel``), which step 4 reads back.
    """

    family: str
    time: PowerLaw
    memory: PowerLaw | None
    points: list[dict[str, Any]]
    cost: CostModel | None = None

    @property
    def costs(self) -> CostModel:
        return self.cost or CostModel(self.time)

    def to_dict(self) -> dict[str, Any]:
        return {"a": self.time.a, "b": self.time.b, "c": self.time.c, "r2": self.time.r2,
                "assumed": self.time.assumed, "memory": self.memory.to_dict() if self.memory else None,
                "points": self.points, "cost": self.costs.to_dict()}

    @classmethod
    def from_dict(cls, family: str, d: Mapping[str, Any]) -> FamilyCurves:
        time_law = PowerLaw(d["a"], d["b"], d.get("r2"), len(d.get("points", [])), d.get("assumed", False),
                            d.get("c", 0.0))
        memory = PowerLaw(**d["memory"]) if d.get("memory") else None
        cost = CostModel.from_dict(d["cost"]) if d.get("cost") else None
        return cls(family, time_law, memory, list(d.get("points", [])), cost)


def _above(points: pd.DataFrame, column: str, floor: float) -> pd.DataFrame:
    """Points with ``column`` at or above ``floor``, if at least two sizes remain (else all)."""
    kept = points[points[column] >= floor]
    return kept if kept["n_rows"].nunique() >= 2 else points


# per-row scoring cost: flat (linear models, trees) up to linear in the training rows (k-NN compares
# each scored row with every training row; nothing scores a row at more than that)
SCORE_LAW = {"min_exponent": 0.0, "max_exponent": 1.0}


def score_law_points(points: pd.DataFrame) -> pd.DataFrame:
    """Per measured point: seconds per scored row, the fixed cost of a scoring call taken out."""
    if "score_s" not in points:
        return pd.DataFrame(columns=["n_rows", "per_row_s"])
    scored = points.dropna(subset=["score_s", "score_base_s"])
    scored = scored[scored["score_rows"] >= 2 * SCORE_BASE_ROWS]
    per_row = (scored["score_s"] - scored["score_base_s"]).clip(lower=1e-9) / (scored["score_rows"] - SCORE_BASE_ROWS)
    return pd.DataFrame({"n_rows": scored["n_rows"], "per_row_s": per_row, "base_s": scored["score_base_s"]})


def _point(r: Any) -> dict[str, Any]:
    def number(v: Any) -> float | None:
        return None if v is None or pd.isna(v) else float(v)

    out = {"n_rows": int(r.n_rows), "fit_s": float(r.fit_s),
           "peak_bytes": None if pd.isna(r.peak_bytes) else int(r.peak_bytes)}
    if hasattr(r, "score_s"):
        out.update(score_s=number(r.score_s), score_rows=int(r.score_rows), score_base_s=number(r.score_base_s))
    return out


def fit_curves(measurements: pd.DataFrame, *, min_peak_bytes: float = 64 * 1024) -> dict[str, FamilyCurves]:
    """Per family: the fit-time, scoring and memory laws from the measured points.

    Fit time is ``c + a * n**b`` over all sizes (``fit_cost_law``): the fixed part ``c``
    takes up what dominates small sizes (building the pipeline, starting threads), so the
    exponent describes the growth the projections extrapolate. Scoring is a fixed cost per
    call (the median of the small-batch times) plus a per-row cost that may grow with the
    training rows. Peaks below ``min_peak_bytes`` are mostly allocator noise and are left
    out of the memory law when two or more larger points remain.
    """
    curves = {}
    for family, points in measurements.groupby("family", sort=False):
        time_law = fit_cost_law(points["n_rows"], points["fit_s"])
        scored = score_law_points(points)
        score_law, score_spread, score_error, fixed = None, [], 0.0, 0.0
        if len(scored):
            score_law = fit_cost_law(scored["n_rows"], scored["per_row_s"], **SCORE_LAW)
            score_spread = jackknife_laws(scored["n_rows"], scored["per_row_s"], **SCORE_LAW)
            score_error = jackknife_error(scored["n_rows"], scored["per_row_s"], score_spread)
            fixed = float(scored["base_s"].median())
        fit_spread = jackknife_laws(points["n_rows"], points["fit_s"])
        cost = CostModel(time_law, score_law, fixed, tuple(fit_spread), tuple(score_spread), int(points["n_rows"].max()),
                         jackknife_error(points["n_rows"], points["fit_s"], fit_spread), score_error)
        mem = points.dropna(subset=["peak_bytes"])
        mem = _above(mem, "peak_bytes", min_peak_bytes) if len(mem) else mem
        memory_law = fit_power_law(mem["n_rows"], mem["peak_bytes"]) if len(mem) else None
        curves[str(family)] = FamilyCurves(str(family), time_law, memory_law,
                                           [_point(r) for r in points.itertuples()], cost)
    return curves


# --- projections and compute verdicts ---------------------------------------------------------

MEMORY_HEADROOM = 0.5  # use at most half the memory: the OS, the notebook and data copies need the rest
TUNING_LIMIT_S = 3600.0  # a tuning run should finish within an hour (one working session)


@dataclass(frozen=True)
class ComputeTier:
    """A kind of compute a projection may fit on (cores and memory None: this machine's)."""

    name: str
    label: str
    cores: int | None
    memory_bytes: int | None
    engine: str


# Evaluated in order: the first tier on which the projected workload fits wins.
COMPUTE_TIERS = (
    ComputeTier("this_machine", "this machine", None, None,
                "run everything here: pandas and scikit-learn in one process"),
    ComputeTier("bigger_machine", "one bigger machine", 64, 512 * GIB,
                "rent one large machine (tens of cores, hundreds of GiB): same code, no cluster"),
    ComputeTier("distributed", "a distributed engine", None, None,
                "Dask or Ray for Python code, Spark when the data already lives in a Spark/Hadoop cluster"),
)


def tuning_fits() -> int:
    """Fits of one tuning run with step 4's defaults (folds x candidates, plus the refit)."""
    return REGISTRY["cv_folds"].default * REGISTRY["tuning_iterations"].default + 1


@dataclass(frozen=True)
class Machine:
    """What a projection is judged against: this machine's usable cores and memory."""

    cores: int
    memory_bytes: int

    @classmethod
    def from_environment(cls, env: Mapping[str, Any]) -> Machine:
        mem = env["memory"]
        return cls(int(env["cpu"]["usable_cores"] or 1), int(mem["available_bytes"] or mem["total_bytes"] or GIB))


def tier_capacity(tier: ComputeTier, machine: Machine) -> tuple[int, int]:
    return (tier.cores or machine.cores, tier.memory_bytes or machine.memory_bytes)


def tuning_wall_s(fit_s: float, cores: int) -> float:
    """Wall time of a tuning run of ``tuning_fits()`` folds taking ``fit_s`` each: in parallel, one per core,
    never faster than one fold."""
    return max(fit_s, fit_s * tuning_fits() / max(cores, 1))


def fits_tier(tier: ComputeTier, machine: Machine, fit_s: float, memory_bytes: float) -> bool:
    """Whether a workload (one fit's time on this machine, its memory) fits a compute tier."""
    if tier.name == "distributed":
        return True
    cores, memory = tier_capacity(tier, machine)
    per_core = fit_s  # assumption: a core of a bigger machine is about as fast as one here
    return memory_bytes <= MEMORY_HEADROOM * memory and tuning_wall_s(per_core, cores) <= TUNING_LIMIT_S


def choose_tier(machine: Machine, fit_s: float, memory_bytes: float) -> ComputeTier:
    return next(t for t in COMPUTE_TIERS if fits_tier(t, machine, fit_s, memory_bytes))


SURENESS = ((1.5, "firm"), (3.0, "rough"))  # spread (high / low) of a projection up to which it is called so


def sureness(low: float, high: float, checked: bool = True) -> str:
    """How sure a projection is, from how far its jackknife bounds spread: firm, rough or weak.

    ``checked`` is False when too few sizes were measured to leave one out: then it is weak.
    """
    spread = high / low if low > 0 else math.inf
    if not checked:
        return "weak"
    return next((label for limit, label in SURENESS if spread <= limit), "weak")


@dataclass
class ScalingStudy:
    """Everything the projections need: the fitted curves, the data size and this machine.

    A projection at ``n`` training rows is one fit on all of them (the final refit) and one
    cross-validation fold of step 4 on them: a fit on ``(folds - 1) / folds`` of the rows,
    then scoring the other ``1 / folds`` (the validation part).
    """

    curves: dict[str, FamilyCurves]
    n_rows: int
    bytes_per_row: float
    machine: Machine
    memory_method: str = "rss"  # how fit peaks were measured: rss, tracemalloc or none
    folds: int = field(default_factory=lambda: REGISTRY["cv_folds"].default)

    def memory_bytes(self, family: str, n: float) -> float:
        """Data in memory plus the fit's projected peak at ``n`` rows."""
        law = self.curves[family].memory
        return self.bytes_per_row * n + (float(law.predict(n)) if law else 0.0)

    def fit_s(self, family: str, n: float) -> float:
        return float(self.curves[family].time.predict(n))

    def fold_rows(self, n: float) -> tuple[float, float]:
        """Rows fitted and rows scored in one cross-validation fold of ``n`` rows."""
        return n * (self.folds - 1) / self.folds, n / self.folds

    def fold_s(self, family: str, n: float) -> float:
        """One cross-validation fold of ``n`` rows: fit its training part, score its validation part."""
        return self.curves[family].costs.fold_s(*self.fold_rows(n))

    def project(self, family: str, growth: float) -> dict[str, Any]:
        n = self.n_rows * growth
        cost = self.curves[family].costs
        fit_s, fold_s, mem = self.fit_s(family, n), self.fold_s(family, n), self.memory_bytes(family, n)
        low, high = cost.fold_range(*self.fold_rows(n))
        tier = choose_tier(self.machine, fold_s, mem)
        measured = cost.measured_rows or max(p["n_rows"] for p in self.curves[family].points)
        return {"family": family, "growth": growth, "n_rows": int(round(n)), "fit_s": fit_s, "fold_s": fold_s,
                "low_s": low, "high_s": high, "sure": sureness(low, high, bool(cost.fit_spread)), "beyond": n / measured,
                "tuning_s": tuning_wall_s(fold_s, self.machine.cores), "memory_bytes": mem,
                "memory_share": mem / self.machine.memory_bytes, "verdict": tier.name, "verdict_label": tier.label}

    def limit_rows(self, family: str, tier_name: str = "this_machine") -> dict[str, Any]:
        """Rows at which ``family`` stops fitting a tier, and what limits it (memory or time)."""
        tier = next(t for t in COMPUTE_TIERS if t.name == tier_name)
        cores, memory = tier_capacity(tier, self.machine)
        mem_rows = _solve_rows(lambda n: self.memory_bytes(family, n) - MEMORY_HEADROOM * memory)
        time_rows = _solve_rows(lambda n: tuning_wall_s(self.fold_s(family, n), cores) - TUNING_LIMIT_S)
        rows = min(mem_rows, time_rows)
        return {"rows": rows, "memory_rows": mem_rows, "time_rows": time_rows,
                "limited_by": "memory" if mem_rows <= time_rows else "time"}

    def costs(self) -> dict[str, CostModel]:
        return {name: c.costs for name, c in self.curves.items()}

    def to_dict(self) -> dict[str, Any]:
        return {"n_rows": self.n_rows, "bytes_per_row": self.bytes_per_row, "machine": asdict(self.machine),
                "memory_method": self.memory_method, "folds": self.folds,
                "curves": {name: c.to_dict() for name, c in self.curves.items()}}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ScalingStudy:
        curves = {name: FamilyCurves.from_dict(name, c) for name, c in d["curves"].items()}
        return cls(curves, int(d["n_rows"]), float(d["bytes_per_row"]), Machine(**d["machine"]),
                   d.get("memory_method", "rss"), int(d.get("folds", REGISTRY["cv_folds"].default)))


MEMORY_METHODS = {"rss": "the peak resident memory the process added during the fit, read from Linux /proc",
                  "tracemalloc": "a tracemalloc estimate, which misses memory native libraries allocate directly",
                  "none": "not measured: data only"}

MAX_ROWS = 1e13  # beyond any table: "never" for practical purposes


def _solve_rows(excess: Callable[[float], float]) -> float:
    """The smallest row count where ``excess`` turns positive (brentq on log rows), inf if never."""
    if excess(MAX_ROWS) <= 0:
        return math.inf
    if excess(1.0) > 0:
        return 1.0
    return float(math.exp(optimize.brentq(lambda log_n: excess(math.exp(log_n)), 0.0, math.log(MAX_ROWS))))


def build_study(prepared: Prepared, measurements: pd.DataFrame, env: Mapping[str, Any],
                folds: int | None = None) -> ScalingStudy:
    """Curves from the measurements, plus the data size and memory per row of the train side.

    ``folds`` (step 4's ``cv_folds``) sets the validation part a projected fold scores.
    """
    if measurements.empty:
        failed = "; ".join(f"{k}: {v}" for k, v in measurements.attrs.get("failed", {}).items())
        raise PlaybookError(f"No model family could be measured{' (' + failed + ')' if failed else ''}.",
                            "raise scaling_budget_s, or check step 2's training data (enough rows per class).")
    X = prepared.X("train")
    bytes_per_row = float(X.memory_usage(deep=True).sum()) / max(len(X), 1)
    return ScalingStudy(fit_curves(measurements), len(X), bytes_per_row, Machine.from_environment(env),
                        measurements.attrs.get("memory_method", "rss"), folds or REGISTRY["cv_folds"].default)


GROWTHS = {"current": 1.0, "10x": 10.0, "100x": 100.0}


def projections(study: ScalingStudy, growth_factor: float | None = None) -> pd.DataFrame:
    """Projected fit, fold (fit plus scoring) and tuning time, their range, memory and verdict per family.

    At 1x, 10x, 100x and the planned growth. ``low_s``-``high_s`` is the range of the fold
    time over the jackknife laws; ``sure`` names it (``sureness``); ``beyond`` is how far
    past the largest measured size the projection reaches (below 1: inside it).
    """
    growths = dict(GROWTHS)
    if growth_factor and growth_factor not in growths.values():
        growths[f"planned ({growth_factor:g}x)"] = growth_factor
    rows = [{"scale": label, **study.project(family, g)} for family in study.curves for label, g in growths.items()]
    return pd.DataFrame(rows)


def format_range(low: float, high: float) -> str:
    return f"{format_seconds(low)} to {format_seconds(high)}"


def projections_table(table: pd.DataFrame) -> pd.DataFrame:
    """Projections formatted for people."""
    out = table[["family", "scale", "n_rows", "fit_s", "fold_s", "low_s", "high_s", "sure", "beyond", "tuning_s",
                 "memory_bytes", "verdict_label"]].copy()
    out["range"] = [format_range(lo, hi) for lo, hi in zip(out.pop("low_s"), out.pop("high_s"), strict=True)]
    out["beyond"] = out["beyond"].map(lambda g: "measured" if g <= 1.0 else f"{g:.3g}x beyond")
    for column in ("fit_s", "fold_s", "tuning_s"):
        out[column] = out[column].map(format_seconds)
    out["memory_bytes"] = out["memory_bytes"].map(format_bytes)
    out["n_rows"] = out["n_rows"].map(lambda n: f"{n:,}")
    out = out[["family", "scale", "n_rows", "fit_s", "fold_s", "range", "sure", "beyond", "tuning_s", "memory_bytes",
               "verdict_label"]]
    return out.rename(columns={"fit_s": "one fit", "fold_s": "fit + scoring a fold", "sure": "how sure",
                               "beyond": "largest measured size", "tuning_s": f"tuning ({tuning_fits()} folds)",
                               "memory_bytes": "memory", "verdict_label": "verdict"}).set_index(["family", "scale"])


FIXED_COST_EXPONENT = 0.8  # a pure power law below this: fixed per-fit costs still dominate the measured sizes


def curve_caveat(law: PowerLaw, sure_100x: str = "") -> str:
    """A warning when a time law is unreliable for extrapolation, else an empty string.

    ``sure_100x`` is the ``sureness`` of the family's 100x projection.
    """
    if law.assumed:
        return "exponent assumed, not fitted: measure more sizes (raise scaling_budget_s)"
    if law.c == 0 and law.b < FIXED_COST_EXPONENT:
        return "fixed costs dominate the measured sizes: projections are likely optimistic"
    if sure_100x == "weak":
        return ("the 100x projection is weak (too few sizes, or one of them bends the law): raise scaling_budget_s "
                "to measure larger sizes")
    return ""


def curves_table(study: ScalingStudy) -> pd.DataFrame:
    """Fitted laws and fit quality per family, with a caveat where extrapolation is shaky."""
    rows = []
    for name, c in study.curves.items():
        lim = study.limit_rows(name)
        cost = c.costs
        sure = study.project(name, 100.0)["sure"]
        per_1000 = cost.score_s(study.n_rows, 1000) if cost.score_row else None
        rows.append({"family": name, "time exponent b": round(c.time.b, 2),
                     "fixed cost": format_seconds(c.time.c),
                     "time fit R²": None if c.time.r2 is None else round(c.time.r2, 3),
                     "memory exponent": None if c.memory is None else round(c.memory.b, 2),
                     "points": len(c.points), "measured up to": format_rows(cost.measured_rows) + " rows",
                     "fit at current size": format_seconds(study.fit_s(name, study.n_rows)),
                     "scoring 1,000 rows": format_seconds(per_1000),
                     "this machine enough up to": format_rows(lim["rows"]), "limited by": lim["limited_by"],
                     "caveat": curve_caveat(c.time, sure)})
    return pd.DataFrame(rows).set_index("family")


# --- step 4's duration ----------------------------------------------------------------------------


def binary_target(prepared: Prepared) -> bool:
    """Two classes: step 4 also chooses a decision threshold (out-of-fold probabilities)."""
    y = prepared.y("train")
    return prepared.problem_type == "classification" and y is not None and y.nunique() == 2


def modeling_forecast(study: ScalingStudy, prepared: Prepared, *, folds: int, iterations: int, strategy: str,
                      tuning_budget_s: float) -> pd.DataFrame:
    """Step 4's predicted duration on this data, one row per family it may tune (``workload.predict_modeling``).

    Which family leads is only known in step 4, so each deployable family is costed as the
    tuned one; the second family of its explorer grid is unknown too, so the totals average
    over the others (the range spans them all). Columns: family, total_s, low_s, high_s, sure
    and one column per part.
    """
    costs = study.costs()
    problem = prepared.problem_type
    names = [n for n in costs if _deployable(problem, n)]
    common = dict(problem_type=problem, n_train=study.n_rows, n_test=len(prepared.test),
                  n_features=len(prepared.features), folds=folds, iterations=iterations, strategy=strategy,
                  tuning_budget_s=tuning_budget_s, binary=binary_target(prepared))
    rows = []
    for name in names:
        others = [o for o in costs if o != name] or [None]
        runs = [predict_modeling(costs, tuned=name, explored=[x for x in (name, other) if x], **common)
                for other in others]
        if runs[0]["total_s"] is None:
            continue
        parts = pd.DataFrame([r["parts"] for r in runs]).mean()
        low, high = min(r["low_s"] for r in runs), max(r["high_s"] for r in runs)
        total = float(np.mean([r["total_s"] for r in runs]))
        rows.append({"family": name, "total_s": total, "low_s": low, "high_s": high, "sure": sureness(low, high, all(c.fit_spread for c in costs.values())),
                     **{f"{k}_s": float(v) for k, v in parts.items()}})
    return pd.DataFrame(rows)


def _deployable(problem_type: str, name: str) -> bool:
    try:
        return get_family(problem_type, name).deployable
    except PlaybookError:  # a family measured outside the registry (tests, experiments)
        return False


def forecast_table(forecast: pd.DataFrame) -> pd.DataFrame:
    """``modeling_forecast`` formatted for people."""
    if forecast.empty:
        return pd.DataFrame(columns=["if step 4 tunes", "step 4 takes about"])
    parts = [c for c in forecast.columns if c.endswith("_s") and c not in ("total_s", "low_s", "high_s")]
    out = pd.DataFrame({"if step 4 tunes": forecast["family"],
                        "step 4 takes about": forecast["total_s"].map(format_seconds),
                        "range": [format_range(lo, hi) for lo, hi in zip(forecast["low_s"], forecast["high_s"],
                                                                          strict=True)],
                        "how sure": forecast["sure"]})
    for column in parts:
        out[column[:-2]] = forecast[column].map(format_seconds)
    return out.set_index("if step 4 tunes")


def forecast_summary(forecast: pd.DataFrame) -> dict[str, Any]:
    """The forecast for ``summary.json``: per family, and the span over families."""
    if forecast.empty:
        return {"by_family": {}, "low_s": None, "high_s": None}
    return {"by_family": {r["family"]: {k: v for k, v in r.items() if k != "family"}
                          for r in forecast.to_dict(orient="records")},
            "low_s": float(forecast["total_s"].min()), "high_s": float(forecast["total_s"].max())}


# --- the run's plan (core.plan): step 4's sample sizes and jobs within time_budget_s --------------------

PLAN_KEYS = ("selection_rows", "refit_rows", "n_jobs")


def elapsed_before(run: Run) -> float:
    """Wall seconds the run's earlier steps took (their manifest durations; 0 when opened alone)."""
    steps = run.read_manifest().get("steps", [])
    return float(sum(e.get("duration_s") or 0.0 for e in steps if e.get("step") in STEP_NOTEBOOKS[:2]))


def plan_modeling(study: ScalingStudy, prepared: Prepared, params: Mapping[str, Any], *, elapsed_s: float) -> Plan:
    """Turn ``time_budget_s`` and the measured costs into step 4's explicit parameters (``core.plan``).

    Parameters the user set (``selection_rows``, ``refit_rows``, ``n_jobs``) are kept, never planned over.
    """
    costs = {n: c for n, c in study.costs().items() if _known(prepared.problem_type, n)}
    if prepared.problem_type == "clustering":
        costs = {}  # step 4 clusters a fixed-size sample: nothing to plan
    return make_plan(costs, problem_type=prepared.problem_type, n_train=len(prepared.train), n_test=len(prepared.test),
                     n_features=len(prepared.features), folds=params["cv_folds"], iterations=params["tuning_iterations"],
                     strategy=params["tuning_strategy"], tuning_budget_s=params["tuning_budget_s"],
                     binary=binary_target(prepared), time_budget_s=params["time_budget_s"], elapsed_s=elapsed_s,
                     cores=fit_engine(params, study).threads, available_bytes=study.machine.memory_bytes,
                     memory_bytes=memory_laws(study, list(costs)),
                     fixed={k: params.get(k) for k in PLAN_KEYS})


def fit_engine(params: Mapping[str, Any], study: ScalingStudy) -> compute_mod.Engine:
    """Where step 4's selection will run (``compute``): a Dask cluster's workers, or this machine's cores."""
    return compute_mod.engine(params.get("compute"), study.machine.cores)  # the cores count only locally


def _known(problem_type: str, name: str) -> bool:
    try:
        get_family(problem_type, name)
        return True
    except PlaybookError:  # a family measured outside the registry (tests, experiments)
        return False


def record_plan(run: Run, plan: Plan) -> dict[str, Any]:
    """Write the plan to the manifest and pin the values step 4 must use into the run's ``project.yaml``."""
    pinned = {k: v for k, v in plan.parameters.items() if k in plan.planned}
    return run.pin_parameters(pinned, plan=plan.to_dict())


def plan_table(plan: Plan) -> pd.DataFrame:
    """The plan for people: each parameter, its value and whether the plan chose it or it was set."""
    rows = [{"parameter": k, "value": v, "from": "plan" if k in plan.planned else "set"}
            for k, v in plan.parameters.items()]
    rows += [{"parameter": f"refit_rows ({name})", "value": rows_, "from": "plan" if "refit_rows" in plan.planned else "set"}
             for name, rows_ in plan.refit_rows.items()]
    rows += [{"parameter": f"planned time of {step}", "value": format_seconds(s), "from": "plan"}
             for step, s in plan.planned_s.items()]
    return pd.DataFrame(rows)


def slowest_family(study: ScalingStudy, growth: float = 1.0) -> str:
    """The family with the longest projected fit time at ``growth`` x the current rows."""
    return max(study.curves, key=lambda f: study.fit_s(f, study.n_rows * growth))


def most_demanding(study: ScalingStudy, growth: float) -> dict[str, Any]:
    """The projection that needs the most compute at ``growth`` (the worst tier, then the slowest)."""
    order = [t.name for t in COMPUTE_TIERS]
    projected = [study.project(f, growth) for f in study.curves]
    return max(projected, key=lambda p: (order.index(p["verdict"]), p["tuning_s"]))


# --- recommendations (table-driven) -----------------------------------------------------------


@dataclass(frozen=True)
class StackContext:
    """The facts the recommendation rules look at."""

    problem_type: str
    data_kind: str  # tabular, text, images or audio
    n_rows: int
    n_numeric: int
    n_categorical: int
    growth_factor: float
    current_tier: str
    planned_tier: str
    gpu: bool = False

    @property
    def n_features(self) -> int:
        return self.n_numeric + self.n_categorical


@dataclass(frozen=True)
class Rule:
    """One row of a decision table: when it applies, what it decides and why."""

    name: str
    applies: Callable[[StackContext], bool]
    decision: str
    reasons: str
    alternatives: str


TINY_ROWS = 1000

LIBRARY_RULES = (
    Rule("images", lambda c: c.data_kind == "images",
         "Python with PyTorch (torchvision) or TensorFlow/Keras, starting from a pretrained network",
         "pixels carry spatial structure that convolutional or transformer networks use and tree ensembles "
         "cannot; transfer learning needs far fewer labelled images than training from scratch",
         "scikit-learn on hand-made image features only as a quick baseline; a GPU is strongly advised"),
    Rule("audio", lambda c: c.data_kind == "audio",
         "Python with PyTorch (torchaudio) or TensorFlow, on spectrograms or a pretrained audio model",
         "raw waveforms need learned representations; pretrained audio models transfer well",
         "scikit-learn on summary features (e.g. MFCC statistics) as a baseline"),
    Rule("text", lambda c: c.data_kind == "text",
         "Python: scikit-learn TF-IDF with a linear model as the baseline; PyTorch with Hugging Face "
         "transformers if the baseline misses the KPIs",
         "a TF-IDF linear model is fast, strong and explainable on short texts; pretrained transformers "
         "capture meaning but need a GPU and more care to serve",
         "R (tidytext) for exploratory text statistics; TensorFlow instead of PyTorch if the team knows it"),
    Rule("tabular_beyond_one_machine", lambda c: c.planned_tier == "distributed",
         "Python with Dask-ML or Spark MLlib for training at the planned size (XGBoost/LightGBM have "
         "distributed trainers for both); pandas and scikit-learn for development on a sample",
         "the projected workload at the planned growth outgrows even one large machine",
         "Ray for Python-native parallel tuning; Spark when the data already lives in a Spark/Hadoop cluster"),
    Rule("tiny_tabular", lambda c: c.n_rows < TINY_ROWS,
         "Python: pandas + scikit-learn with simple, regularised models and repeated cross-validation",
         f"fewer than {TINY_ROWS:,} rows: the uncertainty of every estimate matters more than speed, and deep "
         "learning has too little data to learn from",
         "R (tidymodels) if the team works in R or needs classical statistical inference"),
    Rule("tabular", lambda c: True,
         "Python: pandas + scikit-learn (gradient-boosted trees as the strong default)",
         "tree ensembles are usually the most accurate on tabular data of this size and train in seconds "
         "on a CPU; one ecosystem from cleaning to a saved pipeline",
         "R (tidymodels) if the team works in R; PyTorch/TensorFlow are not justified on tables this size"),
)

COMPUTE_RULES = (
    Rule("this_machine", lambda c: c.planned_tier == "this_machine",
         "this machine", "the projected fits and tuning at the planned growth fit its memory and time limits",
         "a bigger machine only to tune faster; no cluster"),
    Rule("bigger_machine", lambda c: c.planned_tier == "bigger_machine",
         "one bigger machine", "the planned growth exceeds this machine but fits one large machine",
         "a distributed engine only if growth continues beyond that"),
    Rule("distributed", lambda c: True,
         "a distributed engine (Dask or Ray for Python; Spark when the data already lives there)",
         "the planned growth exceeds the memory or time limits of one large machine",
         "train on a representative sample on one machine if the learning curve has flattened"),
)

CLOUD_RULES = (
    Rule("no_cloud_needed", lambda c: c.planned_tier == "this_machine" and c.data_kind == "tabular",
         "no cloud compute needed for training; keep storage, tracking and serving on the platform the organisation already uses",
         "the workload fits this machine now and at the planned growth",
         "the managed services below if the organisation already runs on a cloud"),
    Rule("gpu_training", lambda c: c.data_kind in ("images", "audio", "text") and not c.gpu,
         "managed training jobs with GPUs (see the training row of the mapping)",
         "deep learning on unstructured data needs a GPU and this machine has none",
         "a local workstation with a GPU"),
    Rule("bigger_machine", lambda c: c.planned_tier == "bigger_machine",
         "one large cloud machine or a managed training job (big_machine and training rows)",
         "renting a large machine for the hours of a tuning run beats buying one",
         "an on-premises server if one is available"),
    Rule("managed_cluster", lambda c: c.planned_tier == "distributed",
         "a managed Spark/Dask/Ray cluster (distributed row of the mapping)",
         "the planned growth needs a cluster; managed clusters start and stop on demand",
         "a self-managed Kubernetes cluster with Dask or Ray"),
    Rule("default", lambda c: True,
         "keep training where it is; map storage, tracking and serving with the table",
         "nothing in the measurements calls for more compute", "any of the three clouds"),
)


def apply_rules(rules: Sequence[Rule], context: StackContext) -> Rule:
    """The first rule of a decision table that applies to the context."""
    return next(rule for rule in rules if rule.applies(context))


TEXT_MIN_LENGTH = 40  # median characters of a free-text column
TEXT_MIN_UNIQUE = 0.5  # share of distinct values


def detect_data_kind(frame: pd.DataFrame, categorical: Sequence[str]) -> str:
    """"text" when a categorical column holds long, mostly unique strings; else "tabular"."""
    for column in categorical:
        values = frame[column].dropna().astype(str)
        if len(values) and values.str.len().median() >= TEXT_MIN_LENGTH and values.nunique() / len(values) >= TEXT_MIN_UNIQUE:
            return "text"
    return "tabular"


def make_context(prepared: Prepared, study: ScalingStudy, env: Mapping[str, Any], growth_factor: float) -> StackContext:
    """The facts of this problem: data shape and kind, and the tiers now and at the planned growth."""
    return StackContext(
        problem_type=prepared.problem_type, data_kind=detect_data_kind(prepared.train, prepared.categorical),
        n_rows=study.n_rows, n_numeric=len(prepared.numeric), n_categorical=len(prepared.categorical),
        growth_factor=growth_factor, current_tier=most_demanding(study, 1.0)["verdict"],
        planned_tier=most_demanding(study, growth_factor)["verdict"], gpu=bool(env["gpu"]["present"]))


def decide(context: StackContext) -> dict[str, dict[str, str]]:
    """The stack decisions (language and libraries, compute, cloud) with reasons and alternatives."""
    tables = {"language_and_libraries": LIBRARY_RULES, "compute": COMPUTE_RULES, "cloud": CLOUD_RULES}
    out = {}
    for topic, rules in tables.items():
        rule = apply_rules(rules, context)
        out[topic] = {"rule": rule.name, "decision": rule.decision, "reasons": rule.reasons,
                      "alternatives": rule.alternatives}
    return out


def decisions_table(decisions: Mapping[str, Mapping[str, str]]) -> pd.DataFrame:
    return pd.DataFrame([{"topic": t.replace("_", " "), "decision": d["decision"], "why": d["reasons"],
                          "alternatives": d["alternatives"]} for t, d in decisions.items()]).set_index("topic")


def compute_thresholds(study: ScalingStudy) -> list[dict[str, Any]]:
    """Per family: the row counts at which this machine, then one bigger machine, stop being enough."""
    out = []
    for family in study.curves:
        here, big = study.limit_rows(family, "this_machine"), study.limit_rows(family, "bigger_machine")
        out.append({"family": family, "this_machine_rows": here["rows"], "this_machine_limited_by": here["limited_by"],
                    "bigger_machine_rows": big["rows"], "bigger_machine_limited_by": big["limited_by"]})
    return out


def thresholds_table(study: ScalingStudy) -> pd.DataFrame:
    """``compute_thresholds`` formatted for people."""
    rows = [{"family": t["family"], "this machine up to (rows)": format_rows(t["this_machine_rows"]),
             "limited by": t["this_machine_limited_by"],
             "one bigger machine up to (rows)": format_rows(t["bigger_machine_rows"]),
             "limited by ": t["bigger_machine_limited_by"]} for t in compute_thresholds(study)]
    return pd.DataFrame(rows).set_index("family")


# --- cloud mapping ----------------------------------------------------------------------------

CLOUD_NEEDS = ("storage", "training", "experiment_tracking", "serving", "monitoring")


def load_cloud_services(path: str | os.PathLike | None = None) -> dict[str, Any]:
    """The dated cloud mapping; a clear error if the file lacks a field the step relies on."""
    path = Path(path) if path else data_dir() / "cloud_services.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    reviewed = data.get("reviewed")
    if not isinstance(reviewed, dt.date):
        raise PlaybookError(f"{path} has no valid `reviewed:` date.", "add `reviewed: YYYY-MM-DD` after checking it.")
    providers = data.get("providers") or {}
    for need in CLOUD_NEEDS:
        entry = (data.get("needs") or {}).get(need) or {}
        missing = [p for p in providers if not entry.get(p)]
        if missing or not providers:
            raise PlaybookError(f"{path}: need {need!r} lacks a service for {', '.join(missing) or 'any provider'}.",
                                "fill in every provider for every need.")
    return data


def cloud_table(services: Mapping[str, Any]) -> pd.DataFrame:
    """One row per need, one column per provider."""
    providers = services["providers"]
    rows = [{"need": need, **{label: entry[key] for key, label in providers.items()}}
            for need, entry in services["needs"].items()]
    return pd.DataFrame(rows).set_index("need")


# --- figures ------------------------------------------------------------------------------------


def plot_curves(study: ScalingStudy, kind: str = "time", growth: float | None = None, family: str | None = None):
    """Measured points and fitted power laws on log-log axes, extended to 100x the current rows."""
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    fig, ax = plt.subplots(figsize=(7, 4.2))
    grid = np.geomspace(min(p["n_rows"] for c in study.curves.values() for p in c.points), study.n_rows * 100, 60)
    names = [family] if family else list(study.curves)
    for i, name in enumerate(names):
        color = f"C{i}"
        c = study.curves[name]
        if kind == "time":
            pts = [(p["n_rows"], p["fit_s"]) for p in c.points]
            ax.plot(grid, c.time.predict(grid), color=color, label=f"{name} (b = {c.time.b:.2f})")
        else:
            pts = [(p["n_rows"], (study.bytes_per_row * p["n_rows"] + p["peak_bytes"]) / 2**20)
                   for p in c.points if p["peak_bytes"] is not None]
            ax.plot(grid, [study.memory_bytes(name, n) / 2**20 for n in grid], color=color,
                    label=f"{name}" + (f" (fit peak b = {c.memory.b:.2f})" if c.memory else ""))
        if pts:
            ax.scatter(*zip(*pts, strict=True), color=color, zorder=3)
        if growth:
            n = study.n_rows * growth
            y = study.fit_s(name, n) if kind == "time" else study.memory_bytes(name, n) / 2**20
            ax.scatter([n], [y], marker="*", s=180, color=color, edgecolor="black", zorder=4)
    for g, label in ((1, "current"), (10, "10x"), (100, "100x")):
        ax.axvline(study.n_rows * g, color="grey", lw=0.8, ls=":")
        ax.text(study.n_rows * g, 1.0, f" {label}", transform=ax.get_xaxis_transform(), va="top", fontsize=8)
    if kind == "memory":
        ax.axhline(MEMORY_HEADROOM * study.machine.memory_bytes / 2**20, color="red", ls="--", lw=1,
                   label="half of available memory")
    ax.set(xscale="log", yscale="log")
    # plain tick labels (1,000 / 0.1), no minor ones: a log axis's default 10^k labels are
    # typeset by mathtext, which doubled this figure's render time
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else f"{v:g}"))
        axis.set_minor_locator(ticker.NullLocator())
    ax.set(xlabel="training rows",
           ylabel="fit time (s)" if kind == "time" else "memory: data + fit peak (MiB)",
           title=("Fit time" if kind == "time" else "Memory") + ": measured (dots), fitted power law (lines)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


# --- explorer -----------------------------------------------------------------------------------

GROWTH_OPTIONS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


def explorer_readout(study: ScalingStudy, growth: float, family: str) -> str:
    """The explorer's text: projected fit time, tuning time, memory and verdict (no refit)."""
    p = study.project(family, growth)
    lim = study.limit_rows(family)
    where = "inside the measured sizes" if p["beyond"] <= 1 else f"{p['beyond']:.3g}x beyond the largest measured size"
    return (f"{family} at {growth:g}x = {p['n_rows']:,} rows: one fit ≈ {format_seconds(p['fit_s'])}; "
            f"with scoring its validation fold ≈ {format_seconds(p['fold_s'])} "
            f"({format_range(p['low_s'], p['high_s'])}: {p['sure']}, {where}); "
            f"tuning ({tuning_fits()} folds) ≈ {format_seconds(p['tuning_s'])}, memory ≈ {format_bytes(p['memory_bytes'])} "
            f"({p['memory_share']:.1%} of available). Recommendation: {p['verdict_label']}. "
            f"This machine is enough up to {format_rows(lim['rows'])} rows (limited by {lim['limited_by']}).")


def explorer_update(study: ScalingStudy) -> Callable[..., tuple[str, Any]]:
    """The update function of the growth explorer: reads the fitted curves only."""

    def update(growth: float, family: str) -> tuple[str, Any]:
        return explorer_readout(study, growth, family), plot_curves(study, "time", growth=growth, family=family)

    return update


def explorer_controls(study: ScalingStudy) -> Callable[[], dict[str, Any]]:
    def controls() -> dict[str, Any]:
        import ipywidgets as w

        return {"growth": w.SelectionSlider(options=list(GROWTH_OPTIONS), value=10, description="growth (x)"),
                "family": w.Dropdown(options=list(study.curves), description="family")}

    return controls


def static_cases(study: ScalingStudy, growth_factor: float) -> list[dict[str, Any]]:
    """Batch renderings: the slowest family now, at the planned growth and at 1000x."""
    family = slowest_family(study, 100.0)
    return [{"growth": g, "family": family} for g in dict.fromkeys([1.0, float(growth_factor), 1000.0])]


# --- document and summary -----------------------------------------------------------------------


def render_decision(context: StackContext, env: Mapping[str, Any], study: ScalingStudy,
                    decisions: Mapping[str, Any], projections_frame: pd.DataFrame,
                    services: Mapping[str, Any], forecast: pd.DataFrame | None = None, *,
                    plan: Plan | None = None, engine: compute_mod.Engine | None = None) -> str:
    """The stack decision record (Markdown) from ``templates/stack_decision.md.j2``.

    With ``engine`` (``fit_engine``) it says where step 4's fits run, the command that runs them on a
    Dask cluster and, with a ``plan``, step 4's projected time on 1 to 16 one-core workers.
    """
    thresholds = [{**t, "this_machine_rows": format_rows(t["this_machine_rows"]),
                   "bigger_machine_rows": format_rows(t["bigger_machine_rows"])} for t in compute_thresholds(study)]
    table = projections_table(projections_frame).reset_index()
    proj = [dict(zip(("family", "scale", "rows", "fit", "fold", "range", "sure", "beyond", "tuning", "memory",
                      "verdict"), row, strict=True)) for row in table.itertuples(index=False)]
    step4 = [] if forecast is None else forecast_table(forecast).reset_index().to_dict(orient="records")
    return documents.render(
        "stack_decision.md.j2", date=dt.date.today().isoformat(), context=asdict(context),
        environment=environment_table(env).reset_index().to_dict(orient="records"),
        curves=curves_table(study).reset_index().to_dict(orient="records"), projections=proj,
        thresholds=thresholds, decisions=decisions, cloud=cloud_table(services).reset_index().to_dict(orient="records"),
        providers=list(services["providers"].values()), reviewed=str(services["reviewed"]),
        memory_method=MEMORY_METHODS.get(study.memory_method, study.memory_method),
        headroom=MEMORY_HEADROOM, tuning_limit=format_seconds(TUNING_LIMIT_S), tuning_fits=tuning_fits(),
        tiers=COMPUTE_TIERS, folds=study.folds, step4=step4, step4_columns=list(step4[0]) if step4 else [],
        engine=engine and {**engine.record(), "label": engine.label},
        cluster_command=compute_mod.command(engine.address if engine and engine.address else "tcp://scheduler:8786"),
        efficiency=PARALLEL_EFFICIENCY,
        workers_s={w: format_seconds(s) for w, s in (plan.workers_s if plan else {}).items()})


@dataclass
class StackResult:
    """What step 3 measured and decided: environment, scaling study, projections, stack decisions."""

    environment: Mapping[str, Any]
    study: ScalingStudy
    measurements: pd.DataFrame
    projections: pd.DataFrame
    context: StackContext
    decisions: Mapping[str, Any]
    budget_s: float
    decision_md: str = ""
    figures: Mapping[str, Any] = field(default_factory=dict)
    forecast: pd.DataFrame = field(default_factory=pd.DataFrame)  # step 4's duration (modeling_forecast)
    plan: Plan | None = None  # step 4's sample sizes and jobs within time_budget_s (plan_modeling)
    engine: compute_mod.Engine | None = None  # where step 4's fits will run (fit_engine)


def summary(result: StackResult) -> dict[str, Any]:
    """Step 3's machine-readable findings (``summary.json``)."""
    study, measurements = result.study, result.measurements
    proj: dict[str, dict[str, Any]] = {}
    for r in result.projections.to_dict(orient="records"):
        proj.setdefault(r["family"], {})[r["scale"]] = {k: r[k] for k in ("n_rows", "fit_s", "fold_s", "low_s", "high_s",
                                                                           "sure", "beyond", "tuning_s", "memory_bytes",
                                                                           "verdict")}
    return {
        "environment": dict(result.environment),
        "n_rows": study.n_rows,
        "bytes_per_row": study.bytes_per_row,
        "machine": asdict(study.machine),
        "memory_method": study.memory_method,
        "folds": study.folds,
        "curves": {name: c.to_dict() for name, c in study.curves.items()},
        "projections": proj,
        "thresholds": compute_thresholds(study),
        "context": asdict(result.context),
        "decisions": dict(result.decisions),
        "compute": result.decisions["compute"]["decision"],
        "slowest_family": slowest_family(study),
        "measurement": {"budget_s": result.budget_s, "elapsed_s": measurements.attrs.get("elapsed_s"),
                        "points": len(measurements), "failed": measurements.attrs.get("failed", {}),
                        "largest_rows": int(measurements["n_rows"].max()) if len(measurements) else 0,
                        "workers": measurements.attrs.get("workers"),
                        "points_by_process": measurements.attrs.get("points_by_process"),
                        "idle_cores": measurements.attrs.get("idle_cores")},
        "modeling_forecast": forecast_summary(result.forecast),
        "plan": None if result.plan is None else result.plan.to_dict(),
        # where this step's fits ran (this process and its measuring processes), and where step 4's will
        "engine": measurements.attrs.get("engine"),
        "step4_engine": None if result.engine is None else result.engine.record(),
        "documents": {"stack_decision": f"artifacts/{STEP}/{DECISION_FILE}", "lock_file": f"artifacts/{STEP}/{LOCK_FILE}"},
    }


def save(run: Run, result: StackResult) -> dict[str, Any]:
    """Write the lock file, decision record, tables and figures, then the summary (last); return it."""
    write_lock(run)
    run.write_artifact_text(STEP, DECISION_FILE, result.decision_md)
    run.write_table(STEP, "scaling_measurements.csv", result.measurements)
    run.write_table(STEP, "projections.csv", result.projections)
    if not result.forecast.empty:
        run.write_table(STEP, "modeling_forecast.csv", result.forecast)
    for name, fig in result.figures.items():
        run.save_figure(STEP, name, fig)
    run.write_summary(STEP, summary(result))
    return run.read_summary(STEP)


def study_from_summary(summary: Mapping[str, Any]) -> ScalingStudy:
    keys = ("n_rows", "bytes_per_row", "machine", "memory_method", "folds", "curves")
    return ScalingStudy.from_dict({k: summary[k] for k in keys if k in summary})


def headline(run: Run) -> dict[str, Any]:
    """First-screen facts for the report: the compute decision and the slowest family."""
    summary = run.read_summary(STEP)
    return {"compute": summary["compute"], "slowest_family": summary["slowest_family"]}


def report_section(run: Run) -> Section:
    """Step 3's section of the report: the stack decisions, the cost curves, projections and step 4's forecast."""
    summary = run.read_summary(STEP)
    folder = run.artifacts / STEP
    forecast_span = summary.get("modeling_forecast") or {}
    predicted = (format_range(forecast_span["low_s"], forecast_span["high_s"])
                 if forecast_span.get("low_s") is not None else "not forecast")
    takeaway = (f"Compute: {summary['compute']}; the slowest family to train is {summary['slowest_family']}, "
                f"and step 4 was forecast to take {predicted} on this data.")
    facts = [Fact("compute", str(summary["compute"])), Fact("slowest family to train", str(summary["slowest_family"])),
             Fact("step 4 forecast", predicted)]
    decisions = pd.DataFrame([{"item": t.replace("_", " "), "decision": d["decision"], "reasons": d.get("reasons", "")}
                              for t, d in summary["decisions"].items()])
    body = [tables.table(decisions, labels={"item": "question"}, caption="Stack decisions")]
    frame = pd.DataFrame([{"family": f, "scale": s, **v} for f, scales in summary["projections"].items()
                          for s, v in scales.items()])
    details_parts = [tables.table(environment_table(summary["environment"]).reset_index(), caption="This machine")]
    details_parts += sections.images(folder, [(FIGURE_MEMORY, "memory against rows")])
    if not frame.empty:
        frame["verdict_label"] = frame["verdict"].map({t.name: t.label for t in COMPUTE_TIERS})
        details_parts.append(tables.table(projections_table(frame).reset_index(), labels={"verdict": "verdict"},
                                          caption="Projections at 1x, 10x and 100x the data"))
    forecast = pd.DataFrame([{"family": f, **v} for f, v in forecast_span.get("by_family", {}).items()])
    if not forecast.empty:
        details_parts.append(tables.table(forecast_table(forecast).reset_index(),
                                          caption="Step 4's duration on this data, predicted from these measurements"))
    links = [(label.replace("_", " "), path) for label, path in summary.get("documents", {}).items()]
    return Section("step-3", "3. Tools and stack", takeaway, facts,
                   sections.images(folder, [(FIGURE_TIME, "fit time against rows, measured and projected")]), body,
                   [sections.Details("The machine, the cost curves and the projections", details_parts)],
                   [*links, ("executed notebook", f"{STEP}.ipynb")])


# --- exercises ----------------------------------------------------------------------------------
# Each checker returns a ``Feedback`` (helpers.core.exercises); the notebook's check cell displays it.

EXERCISE_GROWTH = 10.0  # exercise 3.1: the rows grow tenfold
# exercise 3.3: family A takes 2 s today and grows like n^1, family B 0.2 s and grows like n^1.5 (no fixed parts)
CROSSING = {"a_s": 2.0, "a_b": 1.0, "b_s": 0.2, "b_b": 1.5}


def exercise_family(study: ScalingStudy) -> str:
    """The family exercises 3.1 and 3.2 work on: the most measured sizes, then the slowest fit today."""

    def key(name: str) -> tuple[int, float]:
        return len({p["n_rows"] for p in study.curves[name].points}), study.fit_s(name, study.n_rows)

    return max(study.curves, key=key)


def _near(value: float, target: float, rel: float) -> bool:
    return math.isfinite(value) and math.isclose(value, target, rel_tol=rel, abs_tol=1e-12)


def check_exercise_1(answer: Any, study: ScalingStudy, family: str) -> Feedback:
    """Exercise 3.1: how many times longer one fit of ``family`` takes at 10x the rows, from its cost law."""
    law = study.curves[family].time
    now, later = study.fit_s(family, study.n_rows), study.fit_s(family, EXERCISE_GROWTH * study.n_rows)
    expected = later / now
    giveaways = (f"{expected:.4f}",)  # four decimals: a factor of 10 or 12 alone is printed everywhere
    hint = ("evaluate the law at both sizes and divide: law = study.curves[family].time; "
            "(law.c + law.a * (10 * n) ** law.b) / (law.c + law.a * n ** law.b) with n = study.n_rows.")
    value = exercises.number_answer("3.1", answer, "a factor (how many times longer), e.g. 12", hint,
                                    giveaways=giveaways)
    if isinstance(value, Feedback):
        return value
    if _near(value, expected, 0.02):
        return exercises.correct("3.1", f"the cost law of {family} says {expected:.2f} times longer "
                                 f"(b = {law.b:.2f}; the fixed part c = {format_seconds(law.c)} does not grow, "
                                 f"so the factor is at most 10^b = {EXERCISE_GROWTH ** law.b:.2f}).", giveaways=giveaways)
    if _near(value, EXERCISE_GROWTH, 0.02):
        return exercises.wrong("3.1", "10 times the rows is not 10 times the time: that would be b = 1 and no fixed "
                               "part.", f"fit time grows like c + a * n^b with this family's b = {law.b:.2f}. " + hint,
                               giveaways=giveaways)
    if _near(value, EXERCISE_GROWTH ** law.b, 0.02):
        return exercises.wrong("3.1", "10^b is the factor of the growing part alone: you left out the fixed part c, "
                               "which is paid at any size.", hint, giveaways=giveaways)
    if _near(value, later, 0.02):
        return exercises.wrong("3.1", "that is the projected time of one fit at 10x the rows in seconds, not a factor.",
                               "divide it by the time at today's rows. " + hint, giveaways=giveaways)
    return exercises.wrong("3.1", f"{value:g} is not what the law gives.", hint, giveaways=giveaways)


# exercise 3.2 when no family was measured at three sizes or more (a small scaling_budget_s): fit times of a
# family with a fixed cost of 0.3 s and a growing part 2e-5 * n^1.2, measured at five sizes
EXAMPLE_POINTS = {"n_rows": [250, 1000, 4000, 16000, 64000],
                  "fit_s": [0.3 + 2e-5 * n**1.2 for n in (250, 1000, 4000, 16000, 64000)]}


def exercise_points(study: ScalingStudy) -> pd.DataFrame:
    """Exercise 3.2's points (``n_rows``, ``fit_s``): the measured family with the most sizes if it has three or
    more, else ``EXAMPLE_POINTS``; ``attrs["family"]`` says which."""
    family = exercise_family(study)
    points = pd.DataFrame(study.curves[family].points)[["n_rows", "fit_s"]]
    if points["n_rows"].nunique() < 3:
        points, family = pd.DataFrame(EXAMPLE_POINTS), "an example family (too few sizes were measured here)"
    points.attrs["family"] = family
    return points


def check_exercise_2(answer: Any, points: pd.DataFrame) -> Feedback:
    """Exercise 3.2: the exponent b of a pure power law ``a * n^b`` fitted to ``points`` (``exercise_points``)."""
    pure = fit_power_law(points["n_rows"], points["fit_s"], min_exponent=-math.inf)
    cost_b = fit_cost_law(points["n_rows"], points["fit_s"]).b
    giveaways = (f"{pure.b:.4f}",)
    hint = ("take the logarithms of both columns and fit a straight line: "
            "np.polyfit(np.log(points['n_rows']), np.log(points['fit_s']), 1) returns [slope, intercept]; "
            "the slope is b.")
    value = exercises.number_answer("3.2", answer, "the fitted exponent b (a number)", hint, giveaways=giveaways)
    if isinstance(value, Feedback):
        return value
    if abs(value - pure.b) <= 0.01:
        verdict = ("smaller than" if pure.b < cost_b - 0.05 else "larger than" if pure.b > cost_b + 0.05
                   else "close to")
        return exercises.correct("3.2", f"the pure power law has b = {pure.b:.2f}, {verdict} the cost law's "
                                 f"b = {cost_b:.2f} on the same points: without a fixed part, the fixed costs of "
                                 "small fits pass for slow growth, and projections to 10x come out too low.",
                                 giveaways=giveaways)
    if abs(value - cost_b) <= 0.01:
        return exercises.wrong("3.2", "that is the cost law's exponent (c + a * n^b, with a fixed part).",
                               "fit the pure law a * n^b: a straight line on the logarithms. " + hint,
                               giveaways=giveaways)
    if pure.b != 0 and abs(value - 1 / pure.b) <= 0.01:
        return exercises.wrong("3.2", "that is 1/b: you regressed log(rows) on log(seconds).",
                               "put log(rows) on the x axis: np.polyfit(x, y, 1) fits y = slope * x + intercept.",
                               giveaways=giveaways)
    if abs(value - math.log(pure.a)) <= 0.01:
        return exercises.wrong("3.2", "that is the intercept, log(a), not the exponent.",
                               "np.polyfit returns the slope first: np.polyfit(x, y, 1)[0].", giveaways=giveaways)
    raw_slope = float(np.polyfit(points["n_rows"].astype(float), points["fit_s"].astype(float), 1)[0])
    if _near(value, raw_slope, 0.01):
        return exercises.wrong("3.2", "a slope this small is seconds per row: the line was fitted to the raw numbers.",
                               hint, giveaways=giveaways)
    return exercises.wrong("3.2", f"{value:g} is not the slope of log(seconds) against log(rows).", hint,
                           giveaways=giveaways)


def crossing_growth() -> float:
    """Exercise 3.3's answer: the growth g at which B (fast today, steep) is as slow as A: b_s g^b_b = a_s g^a_b."""
    x = CROSSING
    return (x["a_s"] / x["b_s"]) ** (1.0 / (x["b_b"] - x["a_b"]))


def check_exercise_3(answer: Any) -> Feedback:
    """Exercise 3.3: from what growth of the rows the steeper, faster family B is slower than A."""
    x, expected = CROSSING, crossing_growth()
    ratio = x["a_s"] / x["b_s"]
    giveaways = (f"B is slower than A from {expected:g}x", f"g = {expected:g}")
    hint = (f"both grow: B takes {x['b_s']:g} * g^{x['b_b']:g} s, A {x['a_s']:g} * g^{x['a_b']:g} s; "
            "set them equal and solve for g.")
    value = exercises.number_answer("3.3", answer, "a growth factor (a number of times the rows today)", hint,
                                    giveaways=giveaways)
    if isinstance(value, Feedback):
        return value
    if _near(value, expected, 0.02):
        return exercises.correct("3.3", f"g^{x['b_b'] - x['a_b']:g} = {ratio:g}, so g = {expected:g}: a family "
                                 f"{ratio:g} times faster today is slower from {expected:g} times the rows, because "
                                 "its exponent is larger.", giveaways=giveaways)
    if _near(value, ratio, 0.02):
        return exercises.wrong("3.3", f"{ratio:g} is the ratio of today's times; it is where the gap must be closed, "
                               "not the growth that closes it.", hint, giveaways=giveaways)
    if _near(value, ratio ** (1.0 / x["b_b"]), 0.02):
        return exercises.wrong("3.3", "you let only B grow: A's time grows with the rows too.", hint,
                               giveaways=giveaways)
    if _near(value, ratio ** (x["b_b"] - x["a_b"]), 0.02):
        return exercises.wrong("3.3", f"g^{x['b_b'] - x['a_b']:g} = {ratio:g} means g = {ratio:g}^(1/"
                               f"{x['b_b'] - x['a_b']:g}), not {ratio:g}^{x['b_b'] - x['a_b']:g}.", hint,
                               giveaways=giveaways)
    return exercises.wrong("3.3", f"at {value:g} times the rows the two times are not equal.", hint, giveaways=giveaways)


# --- formatting ---------------------------------------------------------------------------------


def format_rows(n: float) -> str:
    if not math.isfinite(n):
        return "beyond 10 trillion"
    for limit, suffix in ((1e12, "trillion"), (1e9, "billion"), (1e6, "million")):
        if n >= limit:
            return f"{n / limit:.3g} {suffix}"
    return f"{int(round(n)):,}"

