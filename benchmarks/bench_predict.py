"""Benchmark of `playbook predict` and of step 5: prints rows/s, peak memory and wall times.

    python benchmarks/bench_predict.py RUN_DIR [--rows 1000000] [--chunk-size 100000] [--step5]

RUN_DIR is a finished run of the demo (steps 1-5, e.g. `playbook run`). The script writes
``--rows`` generated rows (held-out rows of the run, repeated with fresh ids) to a CSV file,
then times `predict` on it in a child process and reports the child's peak memory (ru_maxrss):
with chunked reading it should not grow with the input size, so the script also predicts a
file a tenth of the size and prints both peaks. ``--step5`` also times the step-5 notebook
under papermill (target: under 15 s on 2 cores). Targets: >= 100,000 rows/s.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = """
import json, resource, sys, time
from helpers.steps.operations import deployment
started = time.perf_counter()
code = deployment.predict_cli(sys.argv[1], sys.argv[2], sys.argv[3], chunk_size=int(sys.argv[4]), overwrite=True)
seconds = time.perf_counter() - started
print(json.dumps({"code": code, "seconds": seconds,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def write_input(run_dir: Path, rows: int, path: Path) -> None:
    """Held-out rows of the run, repeated to ``rows`` rows with unique ids, written in pieces."""
    from helpers.core.artifacts import Run
    from helpers.core.prepared import load_prepared

    prepared = load_prepared(Run(run_dir))
    base = prepared.test.drop(columns=[prepared.target] if prepared.target else [])
    written = 0
    with path.open("w", encoding="utf-8") as fh:
        while written < rows:
            piece = base.head(rows - written).copy()
            if prepared.id_column:
                piece[prepared.id_column] = [f"B{written + i}" for i in range(len(piece))]
            piece.to_csv(fh, header=written == 0, index=False)
            written += len(piece)


def predict_in_child(run_dir: Path, src: Path, dst: Path, chunk_size: int) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, str(run_dir), str(src), str(dst), str(chunk_size)],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def time_step5(run_dir: Path) -> float:
    from helpers.core.paths import notebooks_dir

    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "papermill", str(notebooks_dir() / "05_deployment_and_monitoring.ipynb"),
                        str(Path(tmp) / "out.ipynb"), "-p", "run_dir", str(run_dir), "-p", "interactive", "False",
                        "--no-progress-bar"], check=True, capture_output=True)
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--chunk-size", type=int, default=100_000)
    parser.add_argument("--step5", action="store_true", help="also time the step-5 notebook")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for rows in (args.rows // 10, args.rows):
            src = tmp / f"in_{rows}.csv"
            write_input(args.run_dir, rows, src)
            result = predict_in_child(args.run_dir, src, tmp / "out.csv", args.chunk_size)
            print(f"predict {rows:>9,} rows: {rows / result['seconds']:>10,.0f} rows/s "
                  f"({result['seconds']:.1f} s), peak memory {result['peak_mb']:.0f} MB "
                  f"(input file {src.stat().st_size / 1e6:.0f} MB)")
    if args.step5:
        print(f"step 5 notebook under papermill: {time_step5(args.run_dir):.1f} s")


if __name__ == "__main__":
    main()
