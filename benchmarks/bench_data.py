"""Step 2 benchmark: the core of step 2 on the demo, and profiling a large generated table.

    python benchmarks/bench_data.py                 # demo + 250k and 1,000,000 rows
    python benchmarks/bench_data.py --rows 100000   # other sizes

Prints wall times per stage and, for the large tables, peak memory of profiling and
checking (tracemalloc) relative to the in-memory table: the goal is linear growth in
time and a peak under 3x the table.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import tracemalloc

from helpers.core import artifacts, config, datasets
from helpers.steps.foundation import data, quality


def demo_core() -> None:
    """Step 2's computations on the demo (no figures, no notebook overhead)."""
    with tempfile.TemporaryDirectory() as folder:
        namespace = dict(config.defaults(), run_dir=folder, interactive=False)
        params = config.validate_step(data.STEP, namespace)
        started = time.perf_counter()
        result = data.run_core(artifacts.open_run(folder), params)
        total = time.perf_counter() - started
    stages = ", ".join(f"{k} {v:.2f}s" for k, v in result["timings"].items())
    print(f"step 2 core on builtin:churn ({len(result['raw'])} rows): {total:.2f} s  [{stages}]")


def profile_large(rows: int) -> None:
    """Profile and check a generated churn-like table of ``rows`` rows."""
    import helpers.steps.vision  # noqa: F401  (imported before timing: import cost is not profiling cost)

    started = time.perf_counter()
    frame = datasets.make_churn(n_rows=rows, seed=1)
    generated = time.perf_counter() - started
    table_mb = quality.memory_bytes(frame) / 2**20
    params = dict(config.defaults(), target="churn", id_column="customer_id",
                  sensitive_columns=["gender", "senior_citizen"])
    tracemalloc.start()
    started = time.perf_counter()
    prof = quality.profile(frame)
    profiled = time.perf_counter() - started
    started = time.perf_counter()
    kinds = dict(zip(prof["column"], prof["semantic_type"], strict=True))
    found = (quality.check_missing(frame, "churn") + quality.check_numeric_text(frame) + quality.check_spellings(frame)
             + quality.check_duplicates(frame, "customer_id") + quality.check_constant(frame)
             + quality.check_outliers(frame, kinds))
    cleaning = data.provisional_cleaning(frame, params)
    cleaned = cleaning.apply_cleaning(frame, cleaning)
    checked = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    peak_mb = peak / 2**20
    print(f"{rows:>9,} rows: table {table_mb:7.1f} MB | generate {generated:6.2f} s | profile {profiled:6.2f} s "
          f"| checks+cleaning {checked:6.2f} s ({len(found)} issues, {cleaned.shape[1]} columns) "
          f"| peak traced {peak_mb:7.1f} MB = {peak_mb / table_mb:.2f}x the table")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="*", default=[250_000, 1_000_000])
    parser.add_argument("--skip-demo", action="store_true")
    args = parser.parse_args()
    if not args.skip_demo:
        demo_core()
    for rows in args.rows:
        profile_large(rows)


if __name__ == "__main__":
    main()
