"""Benchmark of step 4 on the demo: prints figures, asserts nothing.

    python benchmarks/bench_modeling.py [RUN_DIR]

Without RUN_DIR it runs steps 1 and 2 on the demo into a temporary run (not timed).
Then it times step 4's notebook under papermill with default parameters (target: under
30 s on 2 cores), and compares the champion's test scores with the default
HistGradientBoosting configuration on the same split (threshold chosen by the same
rule), with a paired bootstrap 95% interval of the difference.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from helpers.core import artifacts, config, families, kpis, modelio
from helpers.steps import modeling

ROOT = Path(__file__).resolve().parent.parent


def papermill(step: str, run_dir: Path, out: Path) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "papermill", str(ROOT / "playbook" / f"{step}.ipynb"), str(out / f"{step}.ipynb"),
                    "-p", "run_dir", str(run_dir), "-p", "interactive", "False", "--no-progress-bar",
                    "--log-level", "WARNING"], check=True)
    return time.perf_counter() - started


def predictions(inputs: modeling.Inputs, model, threshold: float | None):
    X_test = inputs.prepared.X("test")
    if inputs.contract.is_binary:
        proba = modeling.positive_proba(model, X_test, inputs.contract)
        return modeling.labels_at(proba, threshold if threshold is not None else 0.5, inputs.contract), proba
    proba = modeling.positive_proba(model, X_test, inputs.contract) if inputs.problem_type == "classification" else None
    return model.predict(X_test), proba


def main() -> None:
    out = Path(tempfile.mkdtemp(prefix="bench04-"))
    run_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else out / "run"
    if len(sys.argv) <= 1:
        for step in ("01_vision_and_goals", "02_data_foundation"):
            papermill(step, run_dir, out)
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = papermill("04_model_development", run_dir, out)
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu_after.ru_utime + cpu_after.ru_stime) - (cpu_before.ru_utime + cpu_before.ru_stime)
    run = artifacts.Run(run_dir)
    summary = run.read_summary(modeling.STEP)
    print(f"step 4 notebook wall time (papermill, defaults, incl. kernel start): {wall:.1f} s (target < 30 s)")
    print(f"  CPU time of papermill + kernel: {cpu:.1f} s; load average during the run: {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} cores (wall time is inflated when other jobs share the cores)")
    print(f"step 4 in-kernel time from the first to the save cell: {summary['seconds']:.1f} s")

    params = {**config.defaults(), "run_dir": str(run_dir)}
    inputs = modeling.load_inputs(run, params)
    meta = json.loads((run.models_dir(1) / "model_meta.json").read_text())
    champion = modelio.load_model(run.models_dir(1) / "model.skops")
    hgb = modeling.family_pipeline(inputs, families.get_family(inputs.problem_type, "hist_gradient_boosting"))
    started = time.perf_counter()
    choice = modeling.choose_threshold(inputs, hgb)
    hgb.fit(inputs.X, inputs.y)
    print(f"default HistGradientBoosting threshold + refit: {time.perf_counter() - started:.1f} s")
    y = inputs.prepared.y("test").to_numpy()
    a_pred, a_proba = predictions(inputs, champion, meta["threshold"])
    b_pred, b_proba = predictions(inputs, hgb, choice.threshold if choice else None)
    print(f"\nchampion: {meta['family']} {meta['params']} (threshold {meta['threshold']})")
    print(f"{'metric':<20}{'champion':>10}{'HGB default':>13}{'difference':>12}  95% CI of difference")
    for metric in inputs.contract.kpis:
        def diff(idx, metric=metric):
            a = kpis.score(metric, inputs.contract, y[idx], a_pred[idx], None if a_proba is None else a_proba[idx])
            b = kpis.score(metric, inputs.contract, y[idx], b_pred[idx], None if b_proba is None else b_proba[idx])
            return a - b
        full = np.arange(len(y))
        a = kpis.score(metric, inputs.contract, y, a_pred, a_proba)
        lo, hi = kpis.bootstrap_interval(diff, len(y), n_boot=200, seed=0)
        print(f"{metric:<20}{a:>10.4f}{a - diff(full):>13.4f}{diff(full):>+12.4f}  [{lo:+.4f}, {hi:+.4f}]")


if __name__ == "__main__":
    main()
