"""Benchmark: step 2's out-of-core profile (DuckDB) of a large generated Parquet file.

A churn table of ``--rows`` rows (``datasets.write_churn_parquet``: generated in chunks, ids unique
across chunks) is snapshotted, split, profiled and checked by ``sql_quality.foundation`` with
``max_memory`` in a child process, ``--repeat`` times. Prints the median wall time, the peak RSS of
the child and rows per second. Targets on 2 cores, 10,000,000 rows: within 3 minutes, peak RSS
under 1.5 GB.

    python benchmarks/bench_duckdb.py [--rows 10000000] [--max-memory 1GB] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
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

CHILD = """
import json, resource, sys, time
from helpers.steps.foundation import sql_quality
values = json.loads(sys.argv[1])
started = time.perf_counter()
result = sql_quality.foundation(values, sys.argv[2], "classification")
print(json.dumps({"seconds": time.perf_counter() - started, "rows": result["snapshot"]["rows"],
                  "phases": result["seconds"],
                  "issues": len(result["issues"]),
                  "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""


def profile_once(source: Path, folder: Path, max_memory: str) -> dict:
    """One out-of-core foundation of ``source`` in a fresh child process: its seconds, rows and peak RSS."""
    run = folder / "run"
    values = {"dataset": str(source), "seed": 42, "test_size": 0.2, "target": "churn", "id_column": "customer_id",
              "sensitive_columns": ["gender", "senior_citizen"], "keep_columns": [], "rare_category_share": 0.01,
              "max_memory": max_memory}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(values), str(run)], check=True, capture_output=True,
                          text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    wall = time.perf_counter() - started
    shutil.rmtree(run)
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "wall": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--max-memory", default="1GB")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--source", help="an existing churn Parquet file (else one is generated)")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-duckdb-"))
    try:
        started = time.perf_counter()
        source = Path(args.source) if args.source else datasets.write_churn_parquet(folder / "churn.parquet", args.rows)
        print(f"{'read' if args.source else 'generated'} {args.rows:,} rows (+ duplicates) in "
              f"{time.perf_counter() - started:.0f} s ({source.stat().st_size / 1e6:.0f} MB Parquet)")
        runs = [profile_once(source, folder, args.max_memory) for _ in range(args.repeat)]
        wall = statistics.median(r["wall"] for r in runs)
        rss = max(r["peak_rss"] for r in runs)
        rows = runs[0]["rows"]
        print(f"\nOut-of-core profile (snapshot, split, profile, whole-row checks), max_memory {args.max_memory}, "
              f"{os.cpu_count()} cores (machine shared with other jobs)")
        print("rows          wall (median)   peak RSS    rows/s      issues   target")
        print(f"{rows:<13,} {wall:>9.1f} s     {rss / 2**30:>6.2f} GiB  {rows / wall:>10,.0f}  {runs[0]['issues']:>6}   "
              f"<= 180 s, < 1.5 GB: {'met' if wall <= 180 and rss < 1.5e9 else 'MISSED'}")
        print("each run: " + ", ".join(f"{r['wall']:.1f} s / {r['peak_rss'] / 2**30:.2f} GiB" for r in runs))
        print("phases of the first run (s): " + ", ".join(f"{k} {v}" for k, v in runs[0]["phases"].items()))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
