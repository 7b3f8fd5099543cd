"""Benchmark: step 4 on a Dask cluster against this machine's own cores.

For the demo and a generated 100,000-row churn table (``datasets.make_churn``), steps 1-3 run
once; then step 4 runs again and again from that state with ``compute local`` (every core, the
plan's ``n_jobs``) and on clusters of 1 and 2 single-threaded ``dask worker`` processes started
on 127.0.0.1. Prints step 4's own duration (its summary's ``seconds``: kernel start excluded)
as medians of ``--repeat`` runs, the 2-worker speed-up over 1 worker (target >= 1.5x on 2 cores)
and the 2-worker overhead against ``compute local`` on the same cores (target <= 15%), and checks
that every configuration gives the same champion and test KPIs.

    python benchmarks/bench_distributed.py [--rows 5000,100000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from helpers.core import datasets  # noqa: E402
from tests.test_compute import local_dask_cluster  # noqa: E402 - the loopback cluster the tests start

STEP4 = "04_model_development"


def prepare(rows: int, folder: Path) -> Path:
    """A run folder with steps 1-3 done on the demo (5,000 rows) or a generated table of ``rows`` rows."""
    out = folder / f"steps-1-3-{rows}"
    args = []
    if rows != 5000:
        csv = folder / f"churn_{rows}.csv"
        datasets.make_churn(rows).to_csv(csv, index=False)
        args = ["-p", "dataset", str(csv), "-p", "target", "churn"]
    subprocess.run([sys.executable, "-m", "helpers.run.cli", "run", "--out", str(out), "--no-html", "--steps", "1-3",
                    *args], check=True, stdout=subprocess.DEVNULL)
    return out


def step4(base: Path, folder: Path, compute: str) -> tuple[float, float, dict]:
    """Step 4 on a copy of ``base`` with ``compute``: (its own seconds, wall seconds, champion and KPIs)."""
    run_dir = Path(tempfile.mkdtemp(dir=folder))
    shutil.rmtree(run_dir)
    shutil.copytree(base, run_dir)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "papermill", str(ROOT / "playbook" / f"{STEP4}.ipynb"),
                    str(run_dir / f"{STEP4}.ipynb"), "-p", "run_dir", str(run_dir), "-p", "interactive", "False",
                    "-p", "compute", compute, "--no-progress-bar"], check=True, capture_output=True)
    wall = time.perf_counter() - started
    summary = json.loads((run_dir / "artifacts" / STEP4 / "summary.json").read_text())
    shutil.rmtree(run_dir)
    return summary["seconds"], wall, {"champion": summary["champion"]["family"], "params": summary["champion"]["params"],
                                      "kpis": summary["kpis"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="5000,100000")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-distributed-"))
    for rows in [int(r) for r in args.rows.split(",")]:
        base = prepare(rows, folder)
        times: dict[str, list[float]] = {}
        results: dict[str, dict] = {}
        configs = [("local (all cores)", None), ("Dask, 1 worker", 1), ("Dask, 2 workers", 2)]
        for label, workers in configs:
            with local_dask_cluster(workers) if workers else contextlib.nullcontext(("local", [])) as (compute, _):
                for _ in range(args.repeat):
                    own, wall, result = step4(base, folder, compute)
                    times.setdefault(label, []).append(own)
                    times.setdefault(f"{label} wall", []).append(wall)
                    results[label] = result
        print(f"\n## step 4 on {rows:,} rows ({args.repeat} runs each; seconds: median, min, max)")
        for label, _ in configs:
            own, wall = times[label], times[f"{label} wall"]
            print(f"{label:22} {statistics.median(own):7.1f} {min(own):7.1f} {max(own):7.1f}   "
                  f"(with kernel start: {statistics.median(wall):.1f})")
        one, two, local = (statistics.median(times[k]) for k in ("Dask, 1 worker", "Dask, 2 workers", "local (all cores)"))
        print(f"2 workers vs 1: {one / two:.2f}x faster (target >= 1.5x)")
        print(f"2 workers vs compute local: {two / local - 1:+.0%} (target <= +15%)")
        same = all(r == results["local (all cores)"] for r in results.values())
        print(f"same champion and test KPIs everywhere: {same}")
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
