"""Benchmark: `playbook run` end to end on the demo and on generated 100,000- and 1,000,000-row tables.

Prints, per table: wall time of each step (the runner's figures), end to end, the peak resident
memory of the whole process tree (the command, its kernels and their workers; sampled every
0.2 s), the test KPIs, the plan step 3 made, and the growth ratio of the end-to-end time from
100,000 to 1,000,000 rows (target: <= 10 for 10x rows). Then two checks of quality:

- the champion's test ROC AUC against the same family fitted on ALL training rows with its
  default settings (target: within 0.005);
- with ``--flaml-python PATH`` (a Python with FLAML installed, e.g. a separate venv: FLAML is
  not a dependency of the project), FLAML's AutoML given the run's wall time on the same
  training and test rows (target: the playbook >= FLAML - 0.005);

and, on a generated 200,000-row table, that the sampled leaderboard (step 4's rungs) picks the
same champion as the leaderboard on every training row.

Tables come from ``helpers.core.datasets.make_churn`` (target ``churn``), written as CSV. Figures,
not assertions: quote medians of ``--repeat`` runs.

    python benchmarks/bench_scale.py [--rows 5000,100000,1000000] [--repeat 3] [--flaml-python /tmp/flamlenv/bin/python]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from helpers.core import artifacts, datasets, kpis, modelio  # noqa: E402

STEPS = ("01_vision_and_goals", "02_data_foundation", "03_tools_and_stack", "04_model_development",
         "05_deployment_and_monitoring")


def tree_rss(process: psutil.Process) -> int:
    """Resident bytes of a process and all its descendants."""
    total = 0
    for p in [process, *process.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def timed_run(cmd: list[str]) -> tuple[float, int, int]:
    """Run ``cmd``; return (wall seconds, peak RSS of its process tree, exit code)."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = 0
    watched = psutil.Process(proc.pid)
    stop = threading.Event()

    def watch() -> None:
        nonlocal peak
        while not stop.is_set():
            try:
                peak = max(peak, tree_rss(watched))
            except psutil.Error:
                return
            stop.wait(0.2)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    _, err = proc.communicate()
    stop.set()
    thread.join()
    if proc.returncode != 0:
        print(err[-2000:], file=sys.stderr)
    return time.perf_counter() - started, peak, proc.returncode


def table_for(rows: int, folder: Path) -> tuple[str, list[str]]:
    """The dataset argument (and target) for ``rows``: the built-in demo at 5,000, else a generated CSV."""
    if rows == 5000:
        return "builtin:churn", []
    path = folder / f"churn_{rows}.csv"
    if not path.exists():
        datasets.make_churn(rows).to_csv(path, index=False)
    return str(path), ["-p", "target", "churn"]


def run_table(rows: int, folder: Path, extra: list[str]) -> dict:
    dataset, more = table_for(rows, folder)
    out = Path(tempfile.mkdtemp(prefix=f"bench-scale-{rows}-", dir=folder)) / "run"
    cmd = [sys.executable, "-m", "helpers.run.cli", "run", "--out", str(out), "--no-html", "-p", "dataset", dataset,
           *more, *extra]
    wall, peak, code = timed_run(cmd)
    manifest = json.loads((out / "manifest.json").read_text())
    steps = {e["step"]: e.get("duration_s") for e in manifest["steps"]}
    achieved = {k["metric"]: k.get("achieved") for k in manifest.get("kpis", [])}
    plan = (manifest.get("plan") or {}).get("pinned", {})
    return {"rows": rows, "wall": wall, "peak": peak, "code": code, "steps": steps, "kpis": achieved, "plan": plan,
            "run": out}


def print_runs(rows: int, runs: list[dict]) -> None:
    print(f"\n## {rows:,} rows ({len(runs)} run(s); exit codes {[r['code'] for r in runs]})")
    print(f"{'':<30}{'median':>9}{'min':>9}{'max':>9}")
    for step in STEPS:
        values = [r["steps"].get(step) for r in runs if r["steps"].get(step) is not None]
        if values:
            print(f"{step:<30}{statistics.median(values):>9.1f}{min(values):>9.1f}{max(values):>9.1f}")
    walls = [r["wall"] for r in runs]
    print(f"{'end to end (s)':<30}{statistics.median(walls):>9.1f}{min(walls):>9.1f}{max(walls):>9.1f}")
    peaks = [r["peak"] / 2**30 for r in runs]
    print(f"{'peak RSS, process tree (GB)':<30}{statistics.median(peaks):>9.2f}{min(peaks):>9.2f}{max(peaks):>9.2f}")
    print("test KPIs (first run):", {k: None if v is None else round(v, 4) for k, v in runs[0]["kpis"].items()})
    print("plan (first run):", runs[0]["plan"])


def reference_auc(run_dir: Path) -> tuple[str, float, float]:
    """The champion's test ROC AUC, and the same family fitted on every training row with its defaults."""
    from sklearn.base import clone
    from sklearn.metrics import roc_auc_score

    from helpers.core import families
    from helpers.core.prepared import load_prepared

    run = artifacts.Run(run_dir)
    prepared = load_prepared(run)
    champion = run.read_summary("04_model_development")["champion"]["family"]
    contract = kpis.load_contract(run)
    positive = prepared.y("test").astype(str) == str(contract.positive_label)
    X_test = prepared.X("test")

    def auc(model) -> float:  # ROC AUC whatever the KPIs: the figure the quality target names
        return float(roc_auc_score(positive, kpis.contract_proba(model.predict_proba(X_test), model.classes_, contract)))

    saved = modelio.load_model(run.path / "models" / "v1" / "model.skops")
    family = families.get_family("classification", champion)
    reference = clone(prepared.pipeline(family, 42, 2)).fit(prepared.X("train"), prepared.y("train"))
    return champion, auc(saved), auc(reference)


FLAML_SCRIPT = """
import sys, pandas as pd
from flaml import AutoML
from sklearn.metrics import roc_auc_score
train, test, target, positive, budget = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5])
tr, te = pd.read_parquet(train), pd.read_parquet(test)
for frame in (tr, te):
    for c in frame.columns:
        if frame[c].dtype == object or str(frame[c].dtype).startswith("string"):
            frame[c] = frame[c].astype("category")
y = (tr.pop(target).astype(str) == positive).astype(int)
y_te = (te.pop(target).astype(str) == positive).astype(int)
automl = AutoML()
automl.fit(tr, y, task="classification", metric="roc_auc", time_budget=budget, n_jobs=2, verbose=0, seed=0)
print(roc_auc_score(y_te, automl.predict_proba(te)[:, 1]), automl.best_estimator)
"""


def flaml_auc(python: str, run_dir: Path, seconds: float, folder: Path) -> tuple[float, str]:
    """FLAML's test ROC AUC on the run's own cleaned training and test rows, given ``seconds`` of wall time."""
    from helpers.core.prepared import load_prepared

    run = artifacts.Run(run_dir)
    prepared = load_prepared(run)
    contract = kpis.load_contract(run)
    columns = [*prepared.features, prepared.target]
    train, test = folder / "flaml_train.parquet", folder / "flaml_test.parquet"
    prepared.train[columns].to_parquet(train)
    prepared.test[columns].to_parquet(test)
    script = folder / "flaml_run.py"
    script.write_text(FLAML_SCRIPT)
    out = subprocess.run([python, str(script), str(train), str(test), prepared.target, str(contract.positive_label),
                          str(seconds)], check=True, capture_output=True, text=True).stdout.split()
    return float(out[0]), out[1]


def quality(run_dir: Path, seconds: float | None, flaml_python: str | None, folder: Path) -> None:
    champion, achieved, reference = reference_auc(run_dir)
    print(f"quality: {champion} test ROC AUC {achieved:.4f}; same family, every training row, defaults: "
          f"{reference:.4f} (difference {achieved - reference:+.4f}; target >= -0.005)")
    if flaml_python and seconds:
        auc, best = flaml_auc(flaml_python, run_dir, seconds, folder)
        print(f"FLAML ({seconds:.0f} s, the run's wall time, 2 jobs): test ROC AUC {auc:.4f} ({best}); "
              f"playbook {achieved:.4f} (difference {achieved - auc:+.4f}; target >= -0.005)")


def same_champion(rows: int, folder: Path) -> None:
    """Step 4's sampled selection against the leaderboard on every training row of a generated table."""
    from helpers.core.prepared import load_prepared
    from helpers.steps import modeling

    dataset, more = table_for(rows, folder)
    out = Path(tempfile.mkdtemp(prefix=f"bench-scale-champion-{rows}-", dir=folder)) / "run"
    subprocess.run([sys.executable, "-m", "helpers.run.cli", "run", "--out", str(out), "--no-html", "--steps", "1-2",
                    "-p", "dataset", dataset, *more], check=True, capture_output=True)
    run = artifacts.Run(out)
    base = modeling.Inputs(load_prepared(run), kpis.load_contract(run),
                           run.read_summary("01_vision_and_goals").get("heuristic"), 42, 5, 2,
                           selection_rows=modeling.DEFAULT_SELECTION_ROWS)
    started = time.perf_counter()
    sampled = modeling.select(base)
    sampled_s = time.perf_counter() - started
    started = time.perf_counter()
    full = modeling.leaderboard(base)
    full_s = time.perf_counter() - started
    a, b = modeling.leaders(sampled.board, 1)[0], modeling.leaders(full, 1)[0]
    print(f"\n## Sampled vs full leaderboard on {rows:,} rows ({len(base.prepared.train):,} training rows)")
    print(f"sampled: {a} ({sampled_s:.0f} s) — {sampled.text}")
    print(f"full:    {b} ({full_s:.0f} s)")
    print(f"same champion: {a == b}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", default="5000,100000,1000000", help="table sizes (5000 = the built-in demo)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--flaml-python", default=None, help="a Python with flaml installed (optional)")
    parser.add_argument("--champion-rows", type=int, default=200_000, help="0 skips the sampled-vs-full check")
    parser.add_argument("--folder", default=None, help="where tables and runs go (default: a temporary folder)")
    parser.add_argument("-p", nargs=2, action="append", default=[], help="extra parameters for every run")
    parser.add_argument("--quality-of", default=None, help="only the quality checks, on this finished run folder")
    parser.add_argument("--seconds", type=float, default=None, help="with --quality-of: FLAML's time budget")
    args = parser.parse_args()
    folder = Path(args.folder or tempfile.mkdtemp(prefix="bench-scale-"))
    folder.mkdir(parents=True, exist_ok=True)
    extra = [x for pair in args.p for x in ("-p", *pair)]
    if args.quality_of:
        quality(Path(args.quality_of), args.seconds, args.flaml_python, folder)
        return
    medians = {}
    for rows in (int(r) for r in args.rows.split(",")):
        runs = [run_table(rows, folder, extra) for _ in range(args.repeat)]
        print_runs(rows, runs)
        medians[rows] = statistics.median(r["wall"] for r in runs)
        if rows > 5000 and runs[0]["code"] == 0:
            quality(runs[0]["run"], medians[rows], args.flaml_python, folder)
    if 100_000 in medians and 1_000_000 in medians:
        print(f"\ngrowth 100,000 -> 1,000,000 rows: {medians[1_000_000] / medians[100_000]:.1f}x the time "
              "(target <= 10)")
    if args.champion_rows:
        same_champion(args.champion_rows, folder)


if __name__ == "__main__":
    main()
