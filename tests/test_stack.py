"""Unit tests of step 3 (helpers.steps.stack): environment, lock file, measurements, power laws, rules."""

from __future__ import annotations

import inspect
import json
import math
import os
import time
from importlib import metadata

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from helpers.core import artifacts, families, features, sampling, scaling, workload
from helpers.core.errors import PlaybookError
from helpers.core.prepared import Prepared
from helpers.steps import stack

# --- fixtures -----------------------------------------------------------------------------------


def make_prepared(n: int = 600, problem_type: str = "classification", seed: int = 0) -> Prepared:
    """A small Prepared with numeric and categorical features (stands in for step 2's hand-over)."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "x1": rng.normal(size=n), "x2": rng.normal(size=n),
        "colour": rng.choice(["red", "green", "blue"], size=n),
    })
    frame.loc[rng.choice(n, 10, replace=False), "x1"] = np.nan
    if problem_type == "classification":
        frame["label"] = np.where(frame["x2"] + rng.normal(0, 0.5, n) > 0, "yes", "no")
    elif problem_type == "regression":
        frame["label"] = 3 * frame["x2"] + rng.normal(size=n)
    cut = int(n * 0.8)
    return Prepared(frame.iloc[:cut], frame.iloc[cut:], "label" if problem_type != "clustering" else None,
                    problem_type, ["x1", "x2"], ["colour"])


def make_study(time_laws: dict[str, tuple[float, float]], mem_laws: dict[str, tuple[float, float]] | None = None,
               *, n_rows: int = 10_000, bytes_per_row: float = 100.0, cores: int = 2,
               memory: int = 8 * stack.GIB) -> stack.ScalingStudy:
    curves = {}
    for name, (a, b) in time_laws.items():
        mem = (mem_laws or {}).get(name)
        curves[name] = stack.FamilyCurves(name, stack.PowerLaw(a, b, 1.0, 3),
                                          stack.PowerLaw(*mem, 1.0, 3) if mem else None,
                                          [{"n_rows": 1000, "fit_s": a * 1000**b, "peak_bytes": 1000}])
    return stack.ScalingStudy(curves, n_rows, bytes_per_row, stack.Machine(cores, memory))


# --- environment --------------------------------------------------------------------------------


def test_environment_report_has_the_documented_keys():
    env = stack.environment_report()
    assert set(env) >= {"python", "os", "platform", "cpu", "memory", "gpu", "packages"}
    assert env["cpu"]["usable_cores"] >= 1
    assert env["memory"]["total_bytes"] > 0 and env["memory"]["available_bytes"] > 0
    assert isinstance(env["gpu"]["present"], bool)
    assert env["packages"]["scikit-learn"] == metadata.version("scikit-learn")
    table = stack.environment_table(env)
    assert "Memory" in table.index and "GiB" in table.loc["Memory", "value"]


def test_gpu_detection_reads_driver_files_and_path(tmp_path):
    assert stack.detect_gpu(which=lambda name: None, root=tmp_path) == {"present": False, "evidence": []}
    gpus = tmp_path / "proc/driver/nvidia/gpus/0000:01:00.0"
    gpus.mkdir(parents=True)
    found = stack.detect_gpu(which=lambda name: None, root=tmp_path)
    assert found["present"] and "NVIDIA driver" in found["evidence"][0]
    smi = stack.detect_gpu(which=lambda name: "/usr/bin/nvidia-smi" if name == "nvidia-smi" else None,
                           root=tmp_path / "empty")
    assert smi["evidence"] == ["nvidia-smi on PATH"]


# --- lock file ----------------------------------------------------------------------------------


# read_meminfo, memory_info and lock_text live in helpers.core.system: tests/test_core_shared_system.py


def test_write_lock_saves_installed_packages_and_names_it_in_the_manifest(tmp_path):
    run = artifacts.open_run(str(tmp_path / "run"))
    path = stack.write_lock(run)
    assert f"numpy=={metadata.version('numpy')}" in path.read_text().splitlines()
    assert run.read_manifest()["lock_file"] == "artifacts/03_tools_and_stack/requirements.lock.txt"


# --- measurement --------------------------------------------------------------------------------


def test_subsample_sizes_are_geometric_and_end_at_all_rows():
    assert stack.subsample_sizes(4000) == [250, 500, 1000, 2000, 4000]
    assert stack.subsample_sizes(142) == [50, 100, 142]
    assert stack.subsample_sizes(2100)[-2:] == [1000, 2100]  # no near-duplicate 2000 before 2100
    assert stack.subsample_sizes(30) == [30]
    with pytest.raises(PlaybookError, match="training row"):
        stack.subsample_sizes(1)


def test_stratified_subsample_keeps_every_class():
    prepared = make_prepared(400)
    X, y = sampling.grow(prepared.X(), prepared.y(), 20, seed=1, stratify=True)  # fewer rows: a subsample
    assert len(X) == 20 and set(y) == {"yes", "no"} and X.index.equals(y.index)


def test_grow_adds_jittered_copies_beyond_the_rows():
    prepared = make_prepared(400)
    X, y = prepared.X(), prepared.y()
    big, labels = sampling.grow(X, y, 1000, seed=3)
    assert len(big) == len(labels) == 1000 and list(big.columns) == list(X.columns)
    pd.testing.assert_frame_equal(big.iloc[: len(X)], X.reset_index(drop=True), check_dtype=False)
    copies = big.iloc[len(X):]
    assert set(copies["colour"]) <= set(X["colour"]) and set(labels) == set(y)
    assert copies["x1"].isna().mean() > 0  # missing values stay missing
    # every copy is one source row with its numbers moved by about 1%: never an exact duplicate
    source = X.reset_index(drop=True)
    nearest = [np.abs(source["x2"] - v).min() / max(abs(v), 1e-9) for v in copies["x2"].head(50)]
    assert 0 < np.median(nearest) < 0.02
    assert not big.duplicated().any()
    again, _ = sampling.grow(X, y, 1000, seed=3)
    pd.testing.assert_frame_equal(big, again)


def test_measurement_sizes_go_beyond_the_rows_four_times_apart():
    assert stack.measurement_sizes(4000) == [500, 2000, 4000, 16000, 64000]
    assert stack.measurement_sizes(1500) == [187, 748, 1500, 6000, 24000]
    assert stack.measurement_sizes(4000, max_growth=4) == [500, 2000, 4000, 16000]


def test_measure_scaling_records_time_and_memory_for_every_family():
    prepared = make_prepared(600)
    fams = [families.get_family("classification", n) for n in ("logistic_regression", "k_nearest_neighbors")]
    m = stack.measure_scaling(prepared, fams, budget_s=30, seed=0, sizes=[100, 200, 480, 1200])
    assert list(m.columns) == stack.MEASUREMENT_COLUMNS
    assert set(m["family"]) == {f.name for f in fams}
    assert sorted(m["n_rows"].unique()) == [100, 200, 480, 1200]  # 1200: beyond the 480 rows, grown
    assert (m["fit_s"] > 0).all()
    assert m["peak_bytes"].notna().all() and (m["peak_bytes"] >= 0).all()
    assert m.attrs["memory_method"] in ("rss", "tracemalloc") and m.attrs["real_rows"] == 480
    # scored after each fit: up to SCORE_ROWS rows, and a tiny batch for the fixed cost of a call
    assert (m["score_rows"] == np.minimum(m["n_rows"], stack.SCORE_ROWS)).all()
    assert (m["score_s"] > 0).all() and (m["score_base_s"] > 0).all()


def test_measure_scaling_times_cpu_not_wall_on_one_thread():
    """A fit that sleeps costs wall time but no CPU: single-threaded points are timed in CPU seconds."""

    class Sleeps:
        def fit(self, X, y):
            time.sleep(0.05)
            return self

    sleepy = families.Family("sleepy", "classification", lambda seed, n_jobs: Sleeps(), scales_features=False)
    m = stack.measure_scaling(make_prepared(300), [sleepy], budget_s=20, sizes=[100], memory="none")
    assert m.loc[0, "fit_s"] < 0.03
    wall = stack.measure_scaling(make_prepared(300), [sleepy], budget_s=20, sizes=[100], memory="none",
                                 timer=time.perf_counter)
    assert wall.loc[0, "fit_s"] >= 0.05
    assert np.isnan(m.loc[0, "score_s"])  # no predict: nothing to score


@pytest.mark.skipif(not stack.peak_rss_supported(), reason="needs Linux /proc/self/clear_refs")
def test_peak_rss_sees_a_large_allocation():
    class Allocates:
        def fit(self, X, y):
            self.buffer_ = np.ones(5_000_000)  # 40 MB
            return self

    _, peak = stack.fit_with_peak_rss(Allocates(), None, None)
    assert 35e6 < peak < 80e6


def test_tracemalloc_peak_sees_a_large_allocation():
    class Allocates:
        def fit(self, X, y):
            np.ones(2_000_000).sum()  # 16 MB, freed before fit returns
            return self

    assert 15e6 < stack.peak_fit_memory(Allocates, None, None) < 30e6


def test_measurement_respects_the_budget():
    """Fits stop once the budget is spent: overshoot is at most one fit (plus a generous margin)."""
    prepared = make_prepared(100_000)
    fams = [families.get_family("classification", "random_forest"), families.get_family("classification",
                                                                                          "logistic_regression")]
    budget = 1.5
    start = time.perf_counter()
    m = stack.measure_scaling(prepared, fams, budget_s=budget, seed=0, workers=1)  # two processes: further below
    elapsed = time.perf_counter() - start
    # 100 trees on all 80,000 rows take several seconds on one core: the budget cut them
    assert m.loc[m["family"] == "random_forest", "n_rows"].max() < 80_000
    longest = m["fit_s"].max() * 3  # a point may repeat its fit (first fit of a family: twice)
    assert elapsed <= budget + longest + 2.0


def test_budget_logic_with_a_fake_clock():
    """The budget check uses the given clock: no fit starts once the budget is spent."""
    ticks = iter(range(0, 10_000))
    prepared = make_prepared(400)
    fam = [families.get_family("classification", "logistic_regression")]
    m = stack.measure_scaling(prepared, fam, budget_s=2.5, sizes=[50, 100, 200, 320], memory="none",
                              clock=lambda: float(next(ticks)), timer=lambda: float(next(ticks)))
    # each clock read advances 1 "second": the first fit (repeated for one-off costs) ends at 5 s > 2.5 s
    assert list(m["n_rows"]) == [50]
    assert m["peak_bytes"].isna().all()


# --- measurement in several processes ----------------------------------------------------------


class SleepsAndAllocates:
    """Holds its lane (sleeps: wall time, no CPU) and allocates 40 MB during the fit."""

    def __init__(self, sleep_s: float = 0.3):
        self.sleep_s = sleep_s

    def fit(self, X, y):
        time.sleep(self.sleep_s)
        self.buffer_ = np.ones(5_000_000)
        return self


def test_measurement_workers_one_per_core_up_to_one_per_family():
    assert stack.measurement_workers(1, 4, cores=2) == 2
    assert stack.measurement_workers(None, 4, cores=8) == 4  # None: one thread per fit
    assert stack.measurement_workers(1, 1, cores=8) == 1
    assert stack.measurement_workers(1, 4, cores=1) == 1
    assert stack.measurement_workers(-1, 4, cores=8) == 1  # multi-threaded fits would compete for the cores
    assert stack.measurement_workers(2, 4, cores=8) == 1


def test_measurement_in_two_processes_gives_the_points_and_times_of_one():
    """Points measured side by side (this process and a worker, one core each) agree with points measured alone."""
    prepared = make_prepared(2500)
    fams = [families.get_family("classification", n)
            for n in ("logistic_regression", "random_forest", "hist_gradient_boosting")]
    sizes = [250, 1000, 2000]
    stack.start_measurement_workers(1, wait=True)
    both = stack.measure_scaling(prepared, fams, budget_s=300, seed=0, sizes=sizes, workers=2)
    alone = stack.measure_scaling(prepared, fams, budget_s=300, seed=0, sizes=sizes, workers=1)
    assert list(both.columns) == stack.MEASUREMENT_COLUMNS and both.attrs["workers"] == 2
    assert alone.attrs["workers"] == 1 and alone.attrs["points_by_process"] == {"this process": 9}
    assert both.attrs["points_by_process"].get("worker 1", 0) >= 2  # the worker measured its share
    assert sum(both.attrs["points_by_process"].values()) == len(both) == 9
    assert list(both["n_rows"]) == sorted(both["n_rows"])  # by size, as one process measures them
    key = ["family", "n_rows"]
    merged = both.merge(alone, on=key, suffixes=("_both", "_alone"), validate="one_to_one")
    assert len(merged) == 9 and merged["peak_bytes_both"].notna().all() and merged["score_s_both"].gt(0).all()
    # fit plus scoring seconds per family from 1,000 rows (smaller fits take milliseconds: noise)
    big = merged[merged["n_rows"] >= 1000]
    side = (big["fit_s_both"] + big["score_s_both"]).groupby(big["family"]).sum()
    ratio = side / (big["fit_s_alone"] + big["score_s_alone"]).groupby(big["family"]).sum()
    # the benchmark (bench_stack.py --part parallel) finds PARALLEL_AGREEMENT on the demo; here, a CI machine
    # running other tests beside these adds its own noise to both sides (measured: up to 1.5x on a loaded
    # 2-core machine), hence 2x: it still fails if a worker timed anything but its own fit on one core
    assert ratio.between(1 / 2, 2).all(), ratio


def test_measurement_in_two_processes_respects_the_budget():
    prepared = make_prepared(100_000)
    fams = [families.get_family("classification", n)
            for n in ("random_forest", "logistic_regression", "hist_gradient_boosting")]
    budget = 2.0
    stack.start_measurement_workers(1, wait=True)
    start = time.perf_counter()
    m = stack.measure_scaling(prepared, fams, budget_s=budget, seed=0, workers=2)
    elapsed = time.perf_counter() - start
    assert m.attrs["workers"] == 2 and m.attrs["points_by_process"].get("worker 1", 0) >= 1
    assert m.loc[m["family"] == "random_forest", "n_rows"].max() < 80_000
    longest = m["fit_s"].max() * 3  # each process may overshoot by one point (a first fit: repeated)
    assert elapsed <= budget + longest + 2.0


@pytest.mark.skipif(not stack.peak_rss_supported(), reason="needs Linux /proc/self/clear_refs")
def test_a_worker_measures_its_own_peak_memory_and_reports_failures():
    """Peak RSS is per process: the worker resets and reads its own. Its failures are reported like ours."""
    pair = [families.Family(name, "classification", lambda seed, n_jobs: SleepsAndAllocates(),
                            scales_features=False) for name in ("first", "second")]
    broken = families.Family("broken", "classification", lambda seed, n_jobs: LogisticRegression(C=-1.0))
    prepared = make_prepared(300)
    stack.start_measurement_workers(1, wait=True)
    # each process takes one of the pair (they sleep: neither is done before the other starts), then "broken"
    m = stack.measure_scaling(prepared, [*pair, broken], budget_s=60, sizes=[100], workers=2)
    assert m.attrs["points_by_process"] == {"this process": 1, "worker 1": 1}
    assert list(m["family"]) == ["first", "second"]
    assert m["peak_bytes"].between(35e6, 80e6).all()  # 40 MB in each process
    assert (m["fit_s"] < 0.2).all()  # CPU time of the fitting thread: the sleep does not count
    assert m.attrs["failed"]["broken"].startswith("100 rows:") and "'C' parameter" in m.attrs["failed"]["broken"]


def test_a_worker_that_dies_fails_its_point_and_the_others_are_measured():
    parent = os.getpid()

    class DiesInAWorker:
        def fit(self, X, y):
            if os.getpid() != parent:
                os._exit(1)  # as if killed for memory
            time.sleep(0.5)  # here: hold this process while the worker takes the other one
            return self

    pair = [families.Family(name, "classification", lambda seed, n_jobs: DiesInAWorker(), scales_features=False)
            for name in ("first", "second")]
    ok = families.get_family("classification", "logistic_regression")
    stack.start_measurement_workers(1, wait=True)
    m = stack.measure_scaling(make_prepared(400), [*pair, ok], budget_s=60, sizes=[100, 200], workers=2)
    (lost, why), = m.attrs["failed"].items()  # the one the worker took
    assert why.startswith("100 rows:") and "died" in why
    survivor = ({"first", "second"} - {lost}).pop()
    assert set(m["family"]) == {survivor, "logistic_regression"} and len(m) == 4  # this process measured the rest


def test_families_that_cannot_go_to_a_worker_are_measured_here():
    import threading

    lock = threading.Lock()  # cannot be pickled: neither can a builder that holds it
    held = families.Family("held", "classification", lambda seed, n_jobs: (lock, LogisticRegression())[1])
    ok = families.get_family("classification", "logistic_regression")
    stack.start_measurement_workers(1, wait=True)
    m = stack.measure_scaling(make_prepared(300), [held, ok], budget_s=60, sizes=[100, 200], workers=2)
    assert m.attrs["failed"] == {} and len(m) == 4
    assert m.attrs["points_by_process"] == {"this process": 4}


def test_idle_cores_reads_the_machine():
    idle = stack.idle_cores(0.2)
    if idle is None:
        pytest.skip("no /proc/stat here")
    assert 0.0 <= idle <= os.cpu_count() + 0.01
    assert stack.idle_cores(0.0, stat="/nonexistent/stat") is None


@pytest.mark.skipif(stack.usable_cores() < (os.cpu_count() or 1),
                    reason="a CPU quota or affinity: spinning on every core of the host would not be ours to do")
def test_no_worker_starts_when_the_cores_are_busy():
    """A worker on a busy core would only share it: this process then measures alone, and says why."""
    import subprocess
    import sys

    stack._stop_workers()  # none up from an earlier test
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 1)]
    try:
        time.sleep(0.3)
        m = stack.measure_scaling(make_prepared(400), [families.get_family("classification", n) for n in
                                                        ("logistic_regression", "k_nearest_neighbors")],
                                  budget_s=6, sizes=[100, 200, 320], memory="none")
    finally:
        for p in spinners:
            p.kill()
    assert m.attrs["workers"] == 1 and list(m.attrs["points_by_process"]) == ["this process"]
    assert m.attrs["idle_cores"] is not None and m.attrs["idle_cores"] < stack.IDLE_CORE


def test_workers_started_ahead_for_a_budget_only_when_it_is_worth_it():
    stack._stop_workers()
    assert stack.start_measurement_workers(budget_s=stack.PARALLEL_MIN_BUDGET_S / 2) == 0  # too short: none
    assert not stack._POOL
    if stack.usable_cores() >= 2:
        assert stack.start_measurement_workers(budget_s=20) >= 1  # in the background, on an idle core
        assert stack.start_measurement_workers(1, wait=True) == 1  # and up (already, or now)
        m = stack.measure_scaling(make_prepared(300), [families.get_family("classification", n) for n in
                                                        ("logistic_regression", "k_nearest_neighbors")],
                                  budget_s=2, sizes=[100, 200], memory="none")  # short, but workers are up
        assert m.attrs["workers"] == 2 and m.attrs["idle_cores"] is None  # used as they are: nothing sampled


def test_measurement_accepts_n_jobs_none_as_one_thread():
    m = stack.measure_scaling(make_prepared(300), [families.get_family("classification", "logistic_regression")],
                              budget_s=20, sizes=[100], n_jobs=None, memory="none")
    assert len(m) == 1 and m.attrs["workers"] == 1


# --- power laws ---------------------------------------------------------------------------------


@pytest.mark.parametrize("a,b", [(2e-6, 1.0), (1e-7, 1.5), (3e-9, 2.0), (0.05, 0.3)])
def test_power_law_recovers_known_exponents_from_noisy_timings(a, b):
    rng = np.random.default_rng(3)
    n = np.array([250, 500, 1000, 2000, 4000, 8000])
    t = a * n**b * rng.lognormal(0, 0.05, len(n))
    law = stack.fit_power_law(n, t)
    assert law.b == pytest.approx(b, abs=0.08)
    assert law.predict(16000) == pytest.approx(a * 16000**b, rel=0.25)
    assert law.r2 > 0.95 and not law.assumed
    assert law.solve(float(law.predict(1e6))) == pytest.approx(1e6, rel=1e-6)


def test_power_law_with_one_size_assumes_linear_and_flags_it():
    law = stack.fit_power_law([1000, 1000], [2.0, 2.0])
    assert law.assumed and law.b == 1.0 and law.predict(2000) == pytest.approx(4.0)


def test_power_law_never_decreases_with_rows():
    law = stack.fit_power_law([100, 200, 400], [0.3, 0.2, 0.1])
    assert law.b == 0.0 and law.assumed
    with pytest.raises(PlaybookError, match="No measured points"):
        stack.fit_power_law([], [])


def measurements(fit, per_row=None, sizes=(500, 2000, 8000, 32000), noise=0.0, seed=0) -> pd.DataFrame:
    """Measurement rows of one family "f" with known fit and per-row scoring laws (optional lognormal noise)."""
    rng = np.random.default_rng(seed)
    rows = []
    for n in sizes:
        base = 0.004
        scored = min(n, stack.SCORE_ROWS)
        score = base + (scored - stack.SCORE_BASE_ROWS) * per_row(n) if per_row else np.nan
        rows.append(("f", n, fit(n) * rng.lognormal(0, noise), n * 100, score, scored, base if per_row else np.nan))
    return pd.DataFrame(rows, columns=stack.MEASUREMENT_COLUMNS)


def test_fit_curves_take_the_fixed_cost_out_of_the_exponent():
    m = measurements(lambda n: 0.2 + 1e-6 * n**1.5, sizes=(100, 200, 400, 800, 1600, 3200, 6400))
    curve = stack.fit_curves(m)["f"]
    # a pure power law through the same points: the fixed 0.2 s flattens it and it projects far too little
    pure = stack.fit_power_law(m["n_rows"], m["fit_s"])
    assert curve.time.b == pytest.approx(1.5, abs=0.01) and curve.time.c == pytest.approx(0.2, rel=0.01)
    assert curve.costs.fit_s(64_000) == pytest.approx(0.2 + 1e-6 * 64_000**1.5, rel=0.01)
    assert float(pure.predict(64_000)) < 0.5 * curve.costs.fit_s(64_000)
    assert curve.memory.b == pytest.approx(1.0, abs=1e-6)
    assert len(curve.points) == 7 and curve.costs.measured_rows == 6400


def test_fit_curves_learn_the_scoring_cost_per_row():
    """k-NN compares each scored row with every training row: its per-row cost grows with n; a tree's does not."""
    knn = stack.fit_curves(measurements(lambda n: 0.01 + 1e-6 * n, per_row=lambda n: 2e-9 * n))["f"].costs
    flat = stack.fit_curves(measurements(lambda n: 0.01 + 1e-6 * n, per_row=lambda n: 5e-6))["f"].costs
    assert knn.score_row.b == pytest.approx(1.0, abs=0.02) and flat.score_row.b == pytest.approx(0.0, abs=0.05)
    assert knn.score_fixed_s == pytest.approx(0.004)
    n, m = 320_000, 80_000
    assert knn.score_s(n, m) == pytest.approx(0.004 + m * 2e-9 * n, rel=0.05)
    assert flat.score_s(n, m) == pytest.approx(0.004 + m * 5e-6, rel=0.05)
    assert knn.fold_s(n, m) == pytest.approx(knn.fit_s(n) + knn.score_s(n, m))
    assert knn.score_s(n, 0) == 0.0


def test_cost_law_recovers_known_laws_from_noisy_timings():
    rng = np.random.default_rng(5)
    for c, a, b in [(0.05, 2e-6, 1.0), (0.2, 1e-7, 1.3), (0.01, 1e-9, 2.0)]:
        n = np.array([500, 2000, 4000, 16000, 64000])
        t = (c + a * n**b) * rng.lognormal(0, 0.05, len(n))
        law = stack.fit_cost_law(n, t)
        truth = c + a * 640_000**b
        assert float(law.predict(640_000)) == pytest.approx(truth, rel=0.5), (c, a, b)
        assert law.c >= 0 and 1.0 <= law.b <= 3.0 and not law.assumed


def test_cost_law_with_exact_derivatives_finds_the_finite_difference_optimum():
    # the law is fitted with its exact Jacobian; scipy's default finite differences, started from
    # the same exponents, must find no better fit (same projections at 100x)
    from scipy import optimize

    rng = np.random.default_rng(11)
    for _ in range(40):
        n = np.array([500.0, 2000, 4000, 16000, 64000])[: rng.integers(3, 6)]
        c, a, b = 10 ** rng.uniform(-3, 0), 10 ** rng.uniform(-7, -3), rng.uniform(0.8, 2.2)
        t = (c + a * n**b) * rng.lognormal(0, 0.1, len(n))
        law = stack.fit_cost_law(n, t)
        log_n, log_t = np.log(n), np.log(t)

        def residuals(p, log_n=log_n, log_t=log_t):
            return np.logaddexp(p[0], p[1] + p[2] * log_n) - log_t

        fits = [optimize.least_squares(residuals, [max(math.log(t.min() / 2), math.log(1e-12) + 1),
                                                   math.log(t.max() / 2) - b0 * math.log(n.max()), b0],
                                       bounds=([math.log(1e-12), -np.inf, 1.0], [math.log(t.max()), np.inf, 3.0]))
                for b0 in np.linspace(1.0, 3.0, 5)]
        best = min(fits, key=lambda f: f.cost)
        ours = 0.5 * float(np.sum((np.log(law.predict(n)) - log_t) ** 2))
        assert ours <= best.cost * (1 + 1e-6) + 1e-12
        reference = math.exp(np.logaddexp(best.x[0], best.x[1] + best.x[2] * math.log(n.max() * 100)))
        assert float(law.predict(n.max() * 100)) == pytest.approx(reference, rel=1e-3)


def test_cost_law_keeps_the_exponent_of_a_fit_at_least_linear():
    law = stack.fit_cost_law([500, 2000, 8000], [0.30, 0.31, 0.33])  # all fixed cost: no sign of growth yet
    assert law.b == pytest.approx(1.0) and law.c == pytest.approx(0.3, rel=0.1)
    few = stack.fit_cost_law([1000, 1000], [2.0, 2.0])
    assert few.assumed and few.b == 1.0 and few.c == 0.0


def test_jackknife_range_widens_where_one_size_bends_the_law():
    n = np.array([500, 2000, 8000, 32000])
    straight = 0.05 + 1e-5 * n
    laws = stack.jackknife_laws(n, straight)
    assert len(laws) == 4 and stack.jackknife_error(n, straight, laws) < 0.01
    bent = straight * np.array([1, 1, 1, 2.0])  # the largest size took twice as long
    bent_laws = stack.jackknife_laws(n, bent)
    assert stack.jackknife_error(n, bent, bent_laws) > 0.1
    cost = scaling.CostModel(stack.fit_cost_law(n, bent), fit_spread=tuple(bent_laws),
                             fit_error=stack.jackknife_error(n, bent, bent_laws))
    low, high = cost.fit_range(320_000)
    assert low < cost.fit_s(320_000) < high and high / low > 1.5
    assert stack.jackknife_laws(n[:3], straight[:3]) == []  # three sizes: nothing to leave out


def test_cost_model_round_trips_through_json():
    m = measurements(lambda n: 0.02 + 3e-6 * n**1.1, per_row=lambda n: 1e-9 * n, noise=0.05)
    cost = stack.fit_curves(m)["f"].costs
    again = scaling.CostModel.from_dict(json.loads(json.dumps(cost.to_dict())))
    assert again == cost
    assert again.fold_range(1e5, 2e4)[0] <= again.fold_s(1e5, 2e4) <= again.fold_range(1e5, 2e4)[1]


def test_sureness_labels_the_spread_of_a_projection():
    assert stack.sureness(1.0, 1.4) == "firm"
    assert stack.sureness(1.0, 2.5) == "rough"
    assert stack.sureness(1.0, 5.0) == "weak"
    assert stack.sureness(1.0, 1.0, checked=False) == "weak"  # too few sizes to leave one out


# --- projections and rules ----------------------------------------------------------------------


def test_projections_scale_time_and_memory_and_give_verdicts():
    study = make_study({"fast": (1e-6, 1.0), "slow": (1e-9, 2.0)}, {"fast": (50.0, 1.0), "slow": (50.0, 1.0)})
    table = stack.projections(study, growth_factor=10.0)
    assert set(table["scale"]) == {"current", "10x", "100x"}  # the plan equals 10x: no extra row
    slow = table[table["family"] == "slow"].set_index("scale")
    assert slow.loc["10x", "fit_s"] == pytest.approx(100 * slow.loc["current", "fit_s"])
    assert slow.loc["current", "memory_bytes"] == pytest.approx(10_000 * 100 + 50 * 10_000)
    assert slow.loc["current", "verdict"] == "this_machine"
    # 1e6 rows: one fit 1000 s, tuning 41 fits / 2 cores > 1 hour -> a bigger machine (64 cores) fits
    assert slow.loc["100x", "verdict"] == "bigger_machine"
    assert stack.projections(study, growth_factor=3.0)["scale"].str.startswith("planned").any()
    assert stack.slowest_family(study) == "slow"


def test_limit_rows_solves_for_memory_and_time():
    study = make_study({"f": (1e-6, 1.0)}, {"f": (900.0, 1.0)}, bytes_per_row=100, memory=10 * stack.GIB)
    lim = study.limit_rows("f")
    assert lim["limited_by"] == "memory"
    assert lim["memory_rows"] == pytest.approx(0.5 * 10 * stack.GIB / 1000, rel=1e-4)
    flat = make_study({"f": (1.0, 0.0)}, {"f": (1.0, 0.0)}, bytes_per_row=0.0)
    assert math.isinf(flat.limit_rows("f")["rows"])


def test_verdict_needs_a_cluster_beyond_one_big_machine():
    machine = stack.Machine(cores=2, memory_bytes=8 * stack.GIB)
    assert stack.choose_tier(machine, 1.0, 1 * stack.GIB).name == "this_machine"
    assert stack.choose_tier(machine, 1.0, 6 * stack.GIB).name == "bigger_machine"
    assert stack.choose_tier(machine, 1.0, 400 * stack.GIB).name == "distributed"
    assert stack.choose_tier(machine, 7200.0, 1 * stack.GIB).name == "distributed"  # one fit alone > 1 hour


def context(**changes) -> stack.StackContext:
    base = dict(problem_type="classification", data_kind="tabular", n_rows=5000, n_numeric=8, n_categorical=5,
                growth_factor=10.0, current_tier="this_machine", planned_tier="this_machine", gpu=False)
    return stack.StackContext(**{**base, **changes})


@pytest.mark.parametrize("case,changes,library,compute,cloud", [
    ("tiny tabular", {"n_rows": 300}, "tiny_tabular", "this_machine", "no_cloud_needed"),
    ("tabular", {}, "tabular", "this_machine", "no_cloud_needed"),
    ("large tabular", {"n_rows": 5_000_000, "planned_tier": "bigger_machine"}, "tabular", "bigger_machine",
     "bigger_machine"),
    ("beyond one machine", {"n_rows": 50_000_000, "planned_tier": "distributed"}, "tabular_beyond_one_machine",
     "distributed", "managed_cluster"),
    ("text", {"data_kind": "text"}, "text", "this_machine", "gpu_training"),
    ("images", {"data_kind": "images"}, "images", "this_machine", "gpu_training"),
    ("images with a GPU", {"data_kind": "images", "gpu": True}, "images", "this_machine", "default"),
])
def test_recommendation_rules(case, changes, library, compute, cloud):
    decisions = stack.decide(context(**changes))
    assert decisions["language_and_libraries"]["rule"] == library, case
    assert decisions["compute"]["rule"] == compute, case
    assert decisions["cloud"]["rule"] == cloud, case
    assert all(d["decision"] and d["reasons"] and d["alternatives"] for d in decisions.values())


def test_image_rule_recommends_deep_learning_and_tabular_rule_does_not():
    assert "PyTorch" in stack.decide(context(data_kind="images"))["language_and_libraries"]["decision"]
    assert "scikit-learn" in stack.decide(context())["language_and_libraries"]["decision"]
    assert "Dask" in stack.decide(context(planned_tier="distributed"))["compute"]["decision"]


def test_detect_data_kind_finds_free_text():
    words = ["late", "delivery", "refund", "broken", "support", "great", "never", "again", "box", "slow"]
    rng = np.random.default_rng(0)
    reviews = [" ".join(rng.choice(words, 12)) for _ in range(50)]
    frame = pd.DataFrame({"review": reviews, "colour": ["red", "blue"] * 25})
    assert stack.detect_data_kind(frame, ["review", "colour"]) == "text"
    assert stack.detect_data_kind(frame, ["colour"]) == "tabular"


# --- cloud map ----------------------------------------------------------------------------------


def test_cloud_map_is_dated_and_complete():
    services = stack.load_cloud_services()
    assert services["reviewed"].year >= 2024
    table = stack.cloud_table(services)
    assert set(stack.CLOUD_NEEDS) <= set(table.index)
    assert list(table.columns) == ["Amazon Web Services", "Microsoft Azure", "Google Cloud"]
    assert table.loc["storage", "Amazon Web Services"] == "Amazon S3"
    text = (stack.data_dir() / "cloud_services.yaml").read_text()
    assert "$" not in text and "price:" not in text.lower()


def test_cloud_map_without_date_or_service_is_a_clear_error(tmp_path):
    bad = tmp_path / "c.yaml"
    bad.write_text("providers: {aws: AWS}\nneeds: {}\n")
    with pytest.raises(PlaybookError, match="reviewed"):
        stack.load_cloud_services(bad)
    bad.write_text("reviewed: 2025-01-01\nproviders: {aws: AWS}\nneeds: {storage: {aws: S3}}\n")
    with pytest.raises(PlaybookError, match="training"):
        stack.load_cloud_services(bad)


# --- end to end on a small Prepared: document, summary, report, explorer, exercises -------------


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    run = artifacts.open_run(str(tmp_path_factory.mktemp("stack") / "run"))
    prepared = make_prepared(800)
    env = stack.environment_report()
    m = stack.measure_scaling(prepared, families.families_for("classification"), budget_s=20, seed=0,
                              sizes=[100, 200, 640])
    study = stack.build_study(prepared, m, env)
    proj = stack.projections(study, 10.0)
    ctx = stack.make_context(prepared, study, env, 10.0)
    decisions = stack.decide(ctx)
    forecast = stack.modeling_forecast(study, prepared, folds=5, iterations=8, strategy="random", tuning_budget_s=120)
    md = stack.render_decision(ctx, env, study, decisions, proj, stack.load_cloud_services(), forecast)
    fig = stack.plot_curves(study)
    written = stack.save(run, stack.StackResult(env, study, m, proj, ctx, decisions, 20.0, decision_md=md,
                                                figures={stack.FIGURE_TIME: fig}, forecast=forecast))
    return run, study, md, written


def test_decision_record_has_context_options_and_cloud_map(finished):
    _, study, md, _ = finished
    for heading in ("## Context", "## Measurements", "### When one machine stops being enough",
                    "### Language and libraries", "### Compute", "### Cloud", "## Equivalent managed services"):
        assert heading in md
    assert "| training rows | 640 |" in md
    assert "Amazon S3" in md and "Vertex AI Experiments" in md
    assert all(f"| {name} |" in md for name in study.curves)
    assert "&#39;" not in md and "&amp;" not in md  # our own texts need no escaping


def test_summary_holds_curves_projections_and_decisions(finished):
    run, study, md, written = finished
    summary = run.read_summary(stack.STEP)
    assert set(summary["curves"]) == set(study.curves)
    for curve in summary["curves"].values():
        assert {"a", "b", "points"} <= set(curve) and curve["points"]
    some = next(iter(summary["projections"].values()))
    assert set(some) == {"current", "10x", "100x"}
    assert set(some["100x"]) >= {"fit_s", "memory_bytes", "verdict"}
    assert set(summary["decisions"]) == {"language_and_libraries", "compute", "cloud"}
    assert written["documents"]["stack_decision"] == "artifacts/03_tools_and_stack/stack_decision.md"
    assert (run.path / written["documents"]["stack_decision"]).read_text() == md
    again = stack.study_from_summary(summary)
    assert again.fit_s(summary["slowest_family"], 1e5) == pytest.approx(study.fit_s(summary["slowest_family"], 1e5))
    assert stack.headline(run) == {"compute": summary["compute"], "slowest_family": summary["slowest_family"]}


def test_report_section_shows_figures_and_links(finished):
    run, *_ = finished
    section = stack.report_section(run)
    html = str(section.render())
    assert "artifacts/03_tools_and_stack/stack_decision.md" in html
    assert section.figures and "data:image/png;base64," in html
    assert section.takeaway.startswith("Compute: ") and [f.label for f in section.facts][:2] == [
        "compute", "slowest family to train"]
    projections = html[html.index("<details"):]
    assert "Projections at 1x, 10x and 100x the data" in projections and ">verdict</th>" in projections


def test_missing_step2_is_a_clear_error(tmp_path):
    from helpers.core.prepared import load_prepared

    run = artifacts.open_run(str(tmp_path / "empty"))
    with pytest.raises(PlaybookError, match="02_data_foundation"):
        load_prepared(run, needed_by=stack.STEP)
    with pytest.raises(PlaybookError, match="03_tools_and_stack"):
        stack.headline(run)


def test_explorer_reads_the_curves_without_refitting(monkeypatch):
    study = make_study({"fast": (1e-6, 1.0), "slow": (1e-9, 2.0)}, {"fast": (50.0, 1.0), "slow": (50.0, 1.0)})
    update = stack.explorer_update(study)

    def no_fit(*args, **kwargs):
        raise AssertionError("the explorer must not fit a model")

    monkeypatch.setattr("sklearn.pipeline.Pipeline.fit", no_fit)
    monkeypatch.setattr("sklearn.base.BaseEstimator.fit", no_fit, raising=False)
    text, fig = update(growth=100, family="slow")
    assert "slow at 100x = 1,000,000 rows" in text and "one bigger machine" in text
    assert fig is not None
    cases = stack.static_cases(study, 10.0)
    assert [c["growth"] for c in cases] == [1.0, 10.0, 1000.0]


def test_explorer_widgets_update_the_readout():
    pytest.importorskip("ipywidgets")
    from helpers.ui import widgets

    study = make_study({"fast": (1e-6, 1.0), "slow": (1e-9, 2.0)}, {"fast": (50.0, 1.0), "slow": (50.0, 1.0)})
    ex = widgets.Explorer("growth", stack.explorer_controls(study)(), stack.explorer_update(study))
    ex.controls["family"].value = "slow"
    ex.controls["growth"].value = 1000
    assert "slow at 1000x = 10,000,000 rows" in ex.readout.value


def test_formatting():
    assert stack.format_seconds(0.0123) == "12.3 ms"
    assert stack.format_seconds(90) == "90 s"
    assert stack.format_seconds(3 * 3600) == "3 h"
    assert stack.format_bytes(3 * stack.GIB) == "3 GiB"
    assert stack.format_rows(2.5e6) == "2.5 million"
    assert stack.format_rows(math.inf) == "beyond 10 trillion"


def test_families_measured_are_the_registry_families():
    """Step 3 measures exactly the families step 4 compares, inside step 2's preprocessing."""
    prepared = make_prepared(300, "regression")
    fams = families.families_for("regression")
    m = stack.measure_scaling(prepared, fams, budget_s=20, sizes=[240])
    assert list(m["family"]) == [f.name for f in fams]
    pipe = features.with_model(prepared.make_preprocessor(), fams[0].build(0, 1))
    assert list(pipe.named_steps) == ["preprocess", "model"]


def test_clustering_families_are_measured_without_a_target():
    prepared = make_prepared(300, "clustering")
    m = stack.measure_scaling(prepared, families.families_for("clustering"), budget_s=20, sizes=[120, 240])
    assert set(m["family"]) == {"k_means", "agglomerative", "dbscan"} and len(m) == 6
    study = stack.build_study(prepared, m, stack.environment_report())
    assert study.n_rows == 240 and set(study.curves) == set(m["family"])


def test_a_family_that_cannot_fit_is_reported_and_the_others_measured():
    prepared = make_prepared(300)
    broken = families.Family("broken", "classification", lambda seed, n_jobs: LogisticRegression(C=-1.0))
    ok = families.get_family("classification", "logistic_regression")
    m = stack.measure_scaling(prepared, [broken, ok], budget_s=20, sizes=[100, 240])
    assert set(m["family"]) == {"logistic_regression"}
    assert m.attrs["failed"]["broken"].startswith("100 rows:") and "'C' parameter" in m.attrs["failed"]["broken"]
    empty = stack.measure_scaling(prepared, [broken], budget_s=20, sizes=[100])
    with pytest.raises(PlaybookError, match="No model family could be measured"):
        stack.build_study(prepared, empty, stack.environment_report())


def test_curve_caveats_flag_shaky_extrapolation():
    assert stack.curve_caveat(stack.PowerLaw(1e-6, 1.2, 0.99, 3)) == ""
    assert "optimistic" in stack.curve_caveat(stack.PowerLaw(1e-3, 0.3, 0.99, 3))  # a pure power law, flat
    assert stack.curve_caveat(stack.PowerLaw(1e-3, 1.0, 0.99, 3, c=0.2)) == ""  # the fixed part is modelled
    assert "weak" in stack.curve_caveat(stack.PowerLaw(1e-3, 1.0, 0.99, 3, c=0.2), "weak")
    assert "assumed" in stack.curve_caveat(stack.PowerLaw(1e-3, 1.0, None, 1, assumed=True))
    study = make_study({"flat": (0.1, 0.2), "steep": (1e-9, 2.0)})
    table = stack.curves_table(study)
    assert table.loc["flat", "caveat"] and "weak" in table.loc["steep", "caveat"]  # one point: unchecked


# --- step 4's duration (core.workload) ------------------------------------------------------------


def flat_costs(names, fit_s=1.0, per_row_s=0.0, fixed_s=0.0) -> dict[str, scaling.CostModel]:
    """Cost models whose fit takes ``fit_s`` whatever the rows: the workload is then a count of fits."""
    law = scaling.PowerLaw(1e-30, 1.0, 1.0, 4, c=fit_s)
    score = scaling.PowerLaw(1e-30, 0.0, 1.0, 4, c=per_row_s) if per_row_s else None
    return {n: scaling.CostModel(law, score, fixed_s) for n in names}


CLASSIFIERS = [f.name for f in families.families_for("classification")]


def predict(costs, **changes):
    kwargs = dict(problem_type="classification", n_train=1000, n_test=250, n_features=6, folds=5, iterations=8,
                  strategy="random", tuning_budget_s=1e9, tuned="logistic_regression",
                  explored=["logistic_regression", "random_forest"], binary=True)
    return workload.predict_modeling(costs, **{**kwargs, **changes})


def test_workload_counts_the_fits_of_step_4():
    p = predict(flat_costs(CLASSIFIERS))
    parts = p["parts"]
    assert parts["leaderboard"] == pytest.approx((4 + 2) * 5)  # four families and two baselines, five folds
    values = {f: len(families.get_family("classification", f).main_values) for f in CLASSIFIERS}
    # learning curves: three folds, two training sizes, one curve per value of the main hyperparameter
    assert parts["explorer"] == pytest.approx(3 * 2 * (values["logistic_regression"] + values["random_forest"]))
    assert parts["tuning"] == pytest.approx(9 * 5)  # the default and eight configurations
    assert parts["threshold"] == pytest.approx(5) and parts["final"] == pytest.approx(2)  # model and heuristic
    assert parts["importance"] == 0.0
    assert p["total_s"] == pytest.approx(sum(parts.values())) and p["low_s"] <= p["total_s"] <= p["high_s"]
    assert predict(flat_costs(CLASSIFIERS), binary=False)["parts"]["threshold"] == 0.0
    assert predict(flat_costs(CLASSIFIERS), folds=3)["parts"]["leaderboard"] == pytest.approx(6 * 3)


def test_workload_races_the_better_half_of_the_families_on_later_rungs():
    costs = {n: scaling.CostModel(scaling.PowerLaw(float(i + 1), 0.0, 1.0, 4)) for i, n in enumerate(CLASSIFIERS)}
    # 1, 2, 3 and 4 s per fit; baselines as the cheapest: rung one fits all four, rung two the costliest two
    board = predict(costs, n_train=8000, rungs=[2000, 8000])["parts"]["leaderboard"]
    assert board == pytest.approx(5 * ((1 + 2 + 3 + 4 + 2 * 1) + (3 + 4 + 2 * 1)))
    assert [workload.surviving(n) for n in (1, 2, 3, 4, 5, 8)] == [1, 2, 2, 2, 3, 4]
    # after the selection ran, the families that raced each rung are counted instead
    raced = [CLASSIFIERS, CLASSIFIERS[:2]]
    board = predict(costs, n_train=8000, rungs=[2000, 8000], racing=raced)["parts"]["leaderboard"]
    assert board == pytest.approx(5 * ((1 + 2 + 3 + 4 + 2 * 1) + (1 + 2 + 2 * 1)))


def test_large_samples_are_cross_validated_on_three_folds():
    assert workload.folds_for(workload.LARGE_SAMPLE_ROWS - 1, 5) == 5
    assert workload.folds_for(workload.LARGE_SAMPLE_ROWS, 5) == 3
    assert workload.folds_for(10**6, 2) == 2
    flat = flat_costs(CLASSIFIERS)
    parts = predict(flat, n_train=workload.LARGE_SAMPLE_ROWS)["parts"]
    assert parts["leaderboard"] == pytest.approx(6 * 3) and parts["tuning"] == pytest.approx(9 * 3)
    assert parts["threshold"] == pytest.approx(3)


def test_workload_counts_scored_rows_training_folds_included():
    p = predict(flat_costs(CLASSIFIERS, fit_s=0.0, per_row_s=1e-3))["parts"]
    # the leaderboard scores each fold's 200 validation and 800 training rows: 1000 rows x 5 folds x 6 candidates
    assert p["leaderboard"] == pytest.approx(6 * 5 * 1000 * 1e-3)
    assert p["tuning"] == pytest.approx(9 * 5 * 200 * 1e-3)  # tuning scores the validation part only
    assert p["importance"] == pytest.approx((6 * workload.IMPORTANCE_REPEATS + 1) * 250 * 1e-3)


def test_workload_stops_tuning_at_its_budget_like_step_4():
    costs = flat_costs(CLASSIFIERS)  # one configuration: 5 folds = 5 s
    assert predict(costs, tuning_budget_s=12.0)["parts"]["tuning"] == pytest.approx(3 * 5)  # at 0, 5, 10 s
    assert predict(costs, tuning_budget_s=0.1)["parts"]["tuning"] == pytest.approx(5)  # the default always runs
    # HalvingGridSearchCV(factor=2) on 1,000 rows and 9 candidates: rounds of 9, 5, 3, 2 on 125 to 1,000 rows
    assert predict(costs, strategy="halving")["parts"]["tuning"] == pytest.approx((9 + 5 + 3 + 2) * 5)
    linear = {n: scaling.CostModel(scaling.PowerLaw(1e-3, 1.0, 1.0, 4)) for n in CLASSIFIERS}  # 1 ms per row
    rows = sum(k * r * 4 / 5 for k, r in zip((9, 5, 3, 2), (125, 250, 500, 1000), strict=True))
    assert predict(linear, strategy="halving")["parts"]["tuning"] == pytest.approx(5 * rows * 1e-3)
    assert predict(costs, problem_type="clustering")["total_s"] is None


def test_workload_mirrors_step_4s_schedule():
    """The constants of core.workload are step 4's defaults: a change there must change them too."""
    from helpers.steps import modeling

    assert workload.EXPLORER_ROWS == modeling.EXPLORER_ROWS
    assert workload.LEARNING_SIZES == inspect.signature(modeling.explorer_grid).parameters["sizes"].default
    assert workload.IMPORTANCE_REPEATS == inspect.signature(modeling.importance_table).parameters["n_repeats"].default
    assert "min(inputs.folds, 3)" in inspect.getsource(modeling.subsample)
    assert "factor=2" in inspect.getsource(modeling._halving)
    assert "return_train_score=train" in inspect.getsource(modeling.evaluate_all)


def test_modeling_forecast_costs_each_family_as_the_tuned_one():
    study = make_study({"logistic_regression": (1e-6, 1.0), "random_forest": (1e-4, 1.2),
                        "hist_gradient_boosting": (5e-5, 1.0), "k_nearest_neighbors": (1e-6, 1.0)}, n_rows=480)
    forecast = stack.modeling_forecast(study, make_prepared(600), folds=5, iterations=8, strategy="random",
                                       tuning_budget_s=120)
    assert set(forecast["family"]) == set(CLASSIFIERS)
    by = forecast.set_index("family")
    assert by["total_s"].idxmax() == "random_forest" and by["total_s"].idxmin() in ("logistic_regression",
                                                                                      "k_nearest_neighbors")
    parts = [c for c in forecast.columns if c.endswith("_s") and c not in ("total_s", "low_s", "high_s")]
    assert by[parts].sum(axis=1).to_numpy() == pytest.approx(by["total_s"].to_numpy())
    assert (by["low_s"] <= by["total_s"]).all() and (by["total_s"] <= by["high_s"]).all()
    assert set(by["sure"]) == {"weak"}  # one measured size each: nothing to check the laws against
    table = stack.forecast_table(forecast)
    assert list(table.columns[:3]) == ["step 4 takes about", "range", "how sure"] and "tuning" in table.columns
    assert stack.forecast_summary(forecast)["high_s"] == pytest.approx(by["total_s"].max())


def test_hist_gradient_boosting_stops_early_never_in_the_registry():
    """early_stopping='auto' would switch on above 10,000 rows: another model, and a cost step 3 cannot project."""
    for problem in ("classification", "regression"):
        assert families.get_family(problem, "hist_gradient_boosting").build(0, 1).early_stopping is False


def test_steps_3_and_4_build_the_same_pipelines():
    prepared = make_prepared(200)
    forest = prepared.pipeline(families.get_family("classification", "random_forest"), 0)
    linear = prepared.pipeline(families.get_family("classification", "logistic_regression"), 0)
    numeric = [{name: t for name, t, _ in p.named_steps["preprocess"].transformers}["numeric"] for p in (forest, linear)]
    assert [len(t.steps) for t in numeric] == [1, 2]  # trees need no scaling, linear models do


def test_step_4_records_step_3s_prediction_next_to_the_time_taken(finished):
    """modeling.duration_record reads step 3's costs from the run and predicts for the families step 4 used."""
    from helpers.core import kpis
    from helpers.steps import modeling

    run, study, _, _ = finished
    prepared = make_prepared(800)
    contract = kpis.KpiContract("classification", {"roc_auc": 0.8}, positive_label="yes", classes=["no", "yes"])
    inputs = modeling.Inputs(prepared, contract, folds=5)
    tuning = modeling.Tuning(pd.DataFrame({"family": ["k_nearest_neighbors"] * 3}), "k_nearest_neighbors", {},
                             "roc_auc")
    grid = pd.DataFrame({"family": ["k_nearest_neighbors", "random_forest"]})
    final = modeling.Final(None, pd.DataFrame(), pd.DataFrame(), None, np.array([]), training_rows=len(prepared.train))
    result = modeling.ModelingResult(inputs, pd.DataFrame(), tuning, None, final, seconds=12.0, cpu_seconds=10.0,
                                     grid=grid)
    params = {"tuning_iterations": 8, "tuning_strategy": "random", "tuning_budget_s": 120.0}
    record = modeling.duration_record(run, result, params)
    expected = workload.predict_modeling(study.costs(), problem_type="classification", n_train=len(prepared.train),
                                         n_test=len(prepared.test), n_features=3, folds=5, iterations=8,
                                         strategy="random", tuning_budget_s=120.0, tuned="k_nearest_neighbors",
                                         explored=["k_nearest_neighbors", "random_forest"], binary=True)
    assert record["total_s"] == pytest.approx(expected["total_s"], rel=1e-6)
    assert record["tuned"] == "k_nearest_neighbors" and record["actual_cpu_s"] == 10.0
    assert record["ratio"] == pytest.approx(10.0 / record["total_s"])
    assert record["wall_ratio"] == pytest.approx(12.0 / record["total_s"])
    text = modeling.duration_text(record)
    assert text.startswith("Step 3 predicted") and "10.0 s of CPU (12.0 s wall)" in text
    empty = artifacts.open_run(str(run.path.parent / "no-step-3"))
    assert modeling.duration_record(empty, result, params) is None
    assert "No prediction" in modeling.duration_text(None)


def test_decision_record_and_summary_carry_step_4s_forecast(finished):
    run, study, md, written = finished
    assert "### Step 4's duration on this data" in md and "| if step 4 tunes |" in md
    assert "| fit + scoring a fold |" in md or "fit + scoring a fold" in md
    forecast = written["modeling_forecast"]
    assert set(forecast["by_family"]) == set(CLASSIFIERS)
    assert forecast["low_s"] <= forecast["high_s"]
    some = next(iter(written["projections"].values()))["100x"]
    assert some["low_s"] <= some["fold_s"] <= some["high_s"] and some["sure"] in ("firm", "rough", "weak")
    assert (run.artifacts / stack.STEP / "modeling_forecast.csv").exists()
