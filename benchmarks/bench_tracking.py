"""Tracking benchmark: what logging a run to MLflow costs, each part apart (medians of several runs).

    python benchmarks/bench_tracking.py                 # a synthetic run folder, 5 repeats
    python benchmarks/bench_tracking.py --run runs/<run> --repeat 7

Printed: ``import mlflow`` and its SQL stores in a fresh process; creating a new local store by
MLflow's migrations against copying the migrated empty store (``tracking.seed_local_store``);
logging one run (params, metrics, tags, report, documents, the champion's package, a model
version and the alias) into a store that already holds runs; a tracking server that is down
(refused port, and one that never answers); and ``playbook compare`` of two runs with the paired bootstrap.

Targets: logging itself <= 1 s per run; a server that is down <= ~5 s, as a warning.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.synthetic_runs, from a clone

from helpers.core import artifacts  # noqa: E402
from helpers.run import history, tracking  # noqa: E402

IMPORT_CODE = ("import time; from helpers.run import tracking; t = time.perf_counter(); tracking.import_mlflow(); "
               "print(time.perf_counter() - t)")


def median_text(values: list[float], unit: str = "s") -> str:
    return f"{statistics.median(values):7.3f} {unit}  (min {min(values):.3f}, max {max(values):.3f}, n={len(values)})"


def synthetic_run(folder: Path, name: str, skill: float) -> artifacts.Run:
    from tests.synthetic_runs import labels, make_run, probabilities

    y = labels(1000)
    return make_run(folder / name, y=y, proba=probabilities(y, skill))


def import_seconds(repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        result = subprocess.run([sys.executable, "-c", IMPORT_CODE], capture_output=True, text=True, check=True)
        out.append(float(result.stdout.strip().splitlines()[-1]))
    return out


def store_seconds(root: Path, repeat: int) -> tuple[list[float], list[float]]:
    """(a store made by MLflow's migrations, a store copied from the migrated empty one)."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    migrated, copied = [], []
    for i in range(repeat):
        path = root / f"migrated-{i}.db"
        started = time.perf_counter()
        SqlAlchemyStore(f"sqlite:///{path}", (root / "art").as_uri()).engine.dispose()
        migrated.append(time.perf_counter() - started)
        started = time.perf_counter()
        tracking.seed_local_store(root / f"copied-{i}" / tracking.STORE_FILE)
        copied.append(time.perf_counter() - started)
    return migrated, copied


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", help="a finished run folder to log (default: a synthetic one)")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-tracking-"))
    os.environ.setdefault("PLAYBOOK_CACHE_DIR", str(root / "cache"))
    try:
        print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} (shared machines inflate these)")
        print(f"import mlflow + SQL stores (fresh process)   {median_text(import_seconds(args.repeat))}")
        tracking.import_mlflow()
        migrated, copied = store_seconds(root, max(1, min(args.repeat, 3)))
        print(f"new local store: MLflow's migrations         {median_text(migrated)}")
        print(f"new local store: copy of the migrated one    {median_text(copied)}")

        runs = root / "runs"
        runs.mkdir()
        source = Path(args.run) if args.run else synthetic_run(root / "source", "run", 1.0).path
        logs, connects = [], []
        for i in range(args.repeat + 1):
            run = artifacts.Run(shutil.copytree(source, runs / f"run-{i}", ignore=shutil.ignore_patterns("*.ipynb")))
            record = tracking.track_run(run, "local", echo=lambda _: None)
            if "error" in record:
                raise SystemExit(f"logging failed: {record['error']}")
            if i:  # the first one also creates the store
                logs.append(record["log_s"])
                connects.append(record["connect_s"])
        print(f"open the store + experiment                   {median_text(connects)}")
        print(f"logging one run (target <= 1 s)               {median_text(logs)}")

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        down = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            record = tracking.track_run(artifacts.Run(runs / "run-0"), f"http://127.0.0.1:{port}", echo=lambda _: None)
            down.append(time.perf_counter() - started)
            assert "error" in record
        print(f"server down (refused port, target <= ~5 s)    {median_text(down)}")
        hung = []
        with socket.socket() as silent:  # accepts connections, never answers: the timeout path
            silent.bind(("127.0.0.1", 0))
            silent.listen(64)
            for _ in range(max(1, min(args.repeat, 3))):
                started = time.perf_counter()
                tracking.track_run(artifacts.Run(runs / "run-0"), f"http://127.0.0.1:{silent.getsockname()[1]}",
                                   echo=lambda _: None)
                hung.append(time.perf_counter() - started)
        print(f"server hangs (no answer, target <= ~5 s)      {median_text(hung)}")

        a, b = synthetic_run(root / "cmp", "a", 1.0).path, synthetic_run(root / "cmp", "b", 2.0).path
        compare = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            history.compare_runs([a, b])
            compare.append(time.perf_counter() - started)
        print(f"compare two runs, paired bootstrap ({history.N_BOOT})     {median_text(compare)}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
