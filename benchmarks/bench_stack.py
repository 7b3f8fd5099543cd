"""Benchmark of step 3 (helpers.steps.stack): do its projections match what happens? Prints figures, asserts nothing.

    python benchmarks/bench_stack.py [--part all|projections|parallel|step4|latency] [--runs N] [--budget S]
                                     [--workers W] [--cap S] [--tables A,B] [--growths 10,100] [--actuals FILE]

1. Projections (``--part projections``). Two tables with known answers, measured the way
   step 3 does (``measure_scaling`` with the default budget, ``--runs`` times with different
   seeds), then projected to 10x and 100x the training rows. The answer is what one
   cross-validation fold of step 4 actually takes at that size (a fit on 4/5 of the rows,
   scoring the other 1/5; CPU seconds of one core, single-threaded), timed here:
   A. the demo's training side (4,000 churn rows), grown by resampling with 1% jitter;
   B. a generated sensor table (14 numeric columns, one categorical, binary target), measured
      on 1,500 rows (step 3 grows it itself) and answered on real rows of the same generator.
   Targets: projection within 2x of the actual at 10x, within 3x at 100x. Also printed: how
   often the actual falls inside the projection's range, and the accuracy per "how sure" label.
   Actuals whose projection exceeds ``--cap`` seconds are skipped (and said so). ``--actuals
   FILE`` keeps the actuals in a JSON file and reuses them (they do not depend on the
   measurement), so budgets and worker counts can be compared on the same answers.
   ``--workers`` is ``measure_scaling``'s (default: one process per core, up to one per family).
2. Parallel agreement (``--part parallel``): the same sizes of table A measured by one
   process and by ``--workers`` processes at once (no budget cut), ``--runs`` times
   alternating: per family, the ratio of the times measured side by side to the times
   measured alone (fit and scoring; median over the points from 2,000 rows), and the ratio
   of the 10x and 100x projections their laws make. The risk: cores sharing memory
   bandwidth and caches. The workers are started before (``measure_scaling`` starts them
   only on idle cores). Also printed: the wall time of each way and the noise (the same
   ratio between two measurements alone).
3. Step 4's duration (``--part step4``): ``playbook run --steps 1-4`` on the demo and on a
   100,000-row churn table (``datasets.make_churn``); step 4 records step 3's prediction for the
   family it tuned next to the CPU and wall time it took. Target: within 2x.
4. Latency (``--part latency``): environment report, lock file, explorer update, decision record.

Timings on a shared machine are noisy: projections are medians over ``--runs`` measurements,
10x actuals medians of three folds; the load average is printed with the results.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.datasets import make_classification
from threadpoolctl import threadpool_limits

from helpers.core import config, datasets, families, features, sampling
from helpers.core.prepared import Prepared
from helpers.steps import stack

TARGETS = {10: 2.0, 100: 3.0}
FOLDS = 5


def demo_prepared() -> Prepared:
    """The churn demo's training side as step 2 hands it over (simplified: no cleaning)."""
    frame = datasets.load_builtin("churn").drop_duplicates("customer_id")
    frame = frame.drop(columns=["customer_id", "total_charges", "country", "retention_call_minutes"])
    columns = [c for c in frame.columns if c != "churn"]
    numeric, categorical = features.split_kinds(frame, columns)
    cut = int(len(frame) * 0.8)
    return Prepared(frame.iloc[:cut], frame.iloc[cut:], "churn", "classification", numeric, categorical)


def sensor_table(n_rows: int, seed: int = 11) -> pd.DataFrame:
    """A generated table of another shape: 14 numeric sensor readings, a site code, a binary fault label."""
    X, y = make_classification(n_samples=n_rows, n_features=14, n_informative=6, n_redundant=3, flip_y=0.05,
                               weights=[0.8], random_state=seed)
    frame = pd.DataFrame(X, columns=[f"sensor_{i:02d}" for i in range(14)])
    rng = np.random.default_rng(seed)
    frame["site"] = rng.choice([f"site_{i}" for i in range(8)], size=n_rows)
    frame["fault"] = np.where(y == 1, "yes", "no")
    return frame


def sensor_prepared(frame: pd.DataFrame, n_train: int) -> Prepared:
    numeric = [c for c in frame.columns if c.startswith("sensor_")]
    return Prepared(frame.iloc[:n_train], frame.iloc[n_train:n_train + n_train // 4], "fault", "classification",
                    numeric, ["site"])


def fold_seconds(prepared: Prepared, family, X: pd.DataFrame, y: pd.Series, seed: int) -> tuple[float, float]:
    """CPU and wall seconds of one fold: fit on 4/5 of the rows, score the other 1/5 (single-threaded)."""
    order = np.random.default_rng(seed).permutation(len(X))
    cut = len(X) * (FOLDS - 1) // FOLDS
    fit_rows, score_rows = order[:cut], order[cut:]
    model = prepared.pipeline(family, seed, 1)
    score = stack.scoring_method  # the same call step 3 times
    with threadpool_limits(1):
        cpu, wall = time.process_time(), time.perf_counter()
        model.fit(X.iloc[fit_rows], y.iloc[fit_rows])
        score(model, prepared.problem_type)(X.iloc[score_rows])
        return time.process_time() - cpu, time.perf_counter() - wall


def load_actuals(path: str | None) -> dict:
    return json.loads(Path(path).read_text()) if path and Path(path).exists() else {}


def save_actuals(path: str | None, actuals: dict) -> None:
    if path:
        Path(path).write_text(json.dumps(actuals, indent=1, sort_keys=True))


def projections_part(args) -> None:
    budget = args.budget or config.REGISTRY["scaling_budget_s"].default
    actuals = load_actuals(args.actuals)
    growths = [int(g) for g in args.growths.split(",")]
    demo = demo_prepared()
    base_b = 1500
    sensors = sensor_table(base_b * max(growths) + base_b)
    tables = {"A": ("churn demo, grown by resampling", demo),
              "B": ("generated sensors, real rows", sensor_prepared(sensors, base_b))}
    rows = []
    for key in args.tables.split(","):
        label, prepared = tables[key]
        fams = families.families_for(prepared.problem_type)
        studies, walls = [], []
        for run in range(args.runs):
            started = time.perf_counter()
            m = stack.measure_scaling(prepared, fams, budget_s=budget, seed=run, workers=args.workers)
            walls.append(time.perf_counter() - started)
            studies.append(stack.build_study(prepared, m, stack.environment_report(), folds=FOLDS))
        reached = {f.name: statistics.median(s.curves[f.name].costs.measured_rows if f.name in s.curves else 0
                                             for s in studies) for f in fams}
        print(f"\n{key}. {label}: {studies[0].n_rows:,} training rows; {args.runs} measurements with budget "
              f"{budget:g} s in {m.attrs['workers']} process(es) took {statistics.median(walls):.1f} s (median wall; "
              f"load average {os.getloadavg()[0]:.1f}); largest size measured "
              f"(median): " + ", ".join(f"{k} {v:,.0f}" for k, v in reached.items()))
        X, y = prepared.X("train"), prepared.y("train")
        for g in growths:
            n = studies[0].n_rows * g
            for family in fams:
                if any(family.name not in s.curves for s in studies):
                    print(f"  {family.name:24s} {g:>4d}x not measured in every run: no projection")
                    continue
                projected = [s.project(family.name, g) for s in studies]
                fold = statistics.median(p["fold_s"] for p in projected)
                middle = sorted(projected, key=lambda p: p["fold_s"])[len(projected) // 2]
                row = {"table": key, "family": family.name, "growth": g, "rows": n, "projected_s": fold,
                       "low_s": middle["low_s"], "high_s": middle["high_s"], "sure": middle["sure"],
                       "runs": [p["fold_s"] for p in projected]}
                if middle["high_s"] > args.cap:
                    rows.append({**row, "actual_s": float("nan"), "wall_s": float("nan")})
                    print(f"  {family.name:24s} {g:>4d}x skipped: projected up to {middle['high_s']:.0f} s > cap "
                          f"{args.cap:g} s", flush=True)
                    continue
                if key == "A":
                    Xg, yg = sampling.grow(X, y, n, seed=1000 + g)
                else:  # real rows of the generator, not the ones measured
                    part = sensors.iloc[base_b:base_b + n]
                    Xg, yg = part[prepared.features].reset_index(drop=True), part["fault"].reset_index(drop=True)
                cached = f"{key}/{family.name}/{g}"
                if cached not in actuals:
                    repeats = 3 if g <= 10 else 1
                    times = [fold_seconds(prepared, family, Xg, yg, seed=r) for r in range(repeats)]
                    actuals[cached] = [statistics.median(t[0] for t in times), statistics.median(t[1] for t in times)]
                    save_actuals(args.actuals, actuals)
                actual, wall = actuals[cached]
                rows.append({**row, "actual_s": actual, "wall_s": wall})
                print(f"  {family.name:24s} {g:>4d}x {n:>8,} rows: projected {fold:8.2f} s "
                      f"({middle['low_s']:.2f} to {middle['high_s']:.2f}, {middle['sure']}), actual {actual:8.2f} s "
                      f"CPU ({wall:.2f} wall), ratio {fold / actual:5.2f}", flush=True)
    report(pd.DataFrame(rows))


def report(frame: pd.DataFrame) -> None:
    done = frame.dropna(subset=["actual_s"]).copy()
    done["ratio"] = done["projected_s"] / done["actual_s"]
    done["factor"] = np.maximum(done["ratio"], 1 / done["ratio"])
    done["target"] = done["growth"].map(TARGETS)
    done["ok"] = done["factor"] <= done["target"]
    done["inside"] = (done["actual_s"] >= done["low_s"]) & (done["actual_s"] <= done["high_s"])
    done["worst run"] = [max(max(r / a, a / r) for r in runs) for runs, a in zip(done["runs"], done["actual_s"],
                                                                                    strict=True)]
    print(f"\nProjection vs actual (CPU s of one fold; load average {os.getloadavg()[0]:.1f}):")
    cols = ["table", "family", "growth", "rows", "projected_s", "low_s", "high_s", "sure", "actual_s", "wall_s",
            "ratio", "worst run", "ok", "inside"]
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.float_format", "{:.3g}".format):
        print(done[cols].to_string(index=False))
    for g, target in TARGETS.items():
        part = done[done["growth"] == g]
        if len(part):
            print(f"at {g}x: {part['ok'].sum()}/{len(part)} within {target:g}x (target: all); median factor "
                  f"{part['factor'].median():.2f}, worst {part['factor'].max():.2f} ({part.loc[part['factor'].idxmax(), 'family']}, "
                  f"table {part.loc[part['factor'].idxmax(), 'table']}); worst single measurement "
                  f"{part['worst run'].max():.2f}")
    print(f"actual inside the projection's range: {done['inside'].sum()}/{len(done)}")
    for label, part in done.groupby("sure"):
        print(f"  '{label}': {len(part)} projections, median factor {part['factor'].median():.2f}, "
              f"worst {part['factor'].max():.2f}, inside range {part['inside'].sum()}/{len(part)}")
    skipped = frame[frame["actual_s"].isna()]
    if len(skipped):
        print("skipped (projection above --cap): " + ", ".join(f"{r.table}/{r.family} {r.growth}x"
                                                              for r in skipped.itertuples()))


# --- parallel agreement --------------------------------------------------------------------------


def per_point(m: pd.DataFrame) -> pd.Series:
    """Fit plus scoring seconds of each (family, rows) point."""
    return (m["fit_s"] + m["score_s"].fillna(0.0)).set_axis(pd.MultiIndex.from_frame(m[["family", "n_rows"]]))


def parallel_part(args) -> None:
    prepared = demo_prepared()
    fams = families.families_for(prepared.problem_type)
    n = len(prepared.train)
    sizes = [s for s in stack.measurement_sizes(n) if s <= args.parallel_max_rows]
    ways = {"alone": 1, "side by side": args.workers or stack.measurement_workers(1, len(fams))}
    if ways["side by side"] < 2:
        print("\nparallel agreement: one usable core, nothing to compare")
        return
    points: dict[str, list[pd.Series]] = {w: [] for w in ways}
    frames: dict[str, list[pd.DataFrame]] = {w: [] for w in ways}
    walls: dict[str, list[float]] = {w: [] for w in ways}
    for run in range(args.runs):
        for way, workers in (ways.items() if run % 2 == 0 else reversed(ways.items())):
            if workers > 1:  # up before the clock starts, so that they measure whatever the machine's load
                stack.start_measurement_workers(workers - 1, wait=True)
            started = time.perf_counter()
            m = stack.measure_scaling(prepared, fams, budget_s=1e9, seed=run, sizes=sizes, workers=workers)
            walls[way].append(time.perf_counter() - started)
            points[way].append(per_point(m))
            frames[way].append(m)
    alone = pd.concat(points["alone"], axis=1).median(axis=1)
    side = pd.concat(points["side by side"], axis=1).median(axis=1)
    ratio = (side / alone).rename("ratio")
    print(f"\nParallel agreement on table A ({n:,} rows, sizes {sizes}): {args.runs} runs each way; wall "
          f"{statistics.median(walls['alone']):.1f} s alone, {statistics.median(walls['side by side']):.1f} s in "
          f"{ways['side by side']} processes (median; load average {os.getloadavg()[0]:.1f})")
    table = pd.DataFrame({"alone_s": alone, "side_by_side_s": side, "ratio": ratio})
    with pd.option_context("display.float_format", "{:.3g}".format):
        print(table.to_string())
    big = ratio[ratio.index.get_level_values("n_rows") >= 2000]
    env = stack.environment_report()
    for family in fams:
        r = big.xs(family.name, level="family")
        proj = {}
        for way in ways:
            studies = [stack.build_study(prepared, m, env, folds=FOLDS) for m in frames[way]]
            proj[way] = {g: statistics.median(s.project(family.name, g)["fold_s"] for s in studies) for g in (10, 100)}
        print(f"  {family.name:24s} side by side / alone: median {r.median():.2f} (range {r.min():.2f} to "
              f"{r.max():.2f}); projections 10x {proj['side by side'][10] / proj['alone'][10]:.2f}, "
              f"100x {proj['side by side'][100] / proj['alone'][100]:.2f}")
    worst = big.groupby(level="family").median()
    print(f"worst family median {max(worst.max(), 1 / worst.min()):.2f} (stack.PARALLEL_AGREEMENT "
          f"{stack.PARALLEL_AGREEMENT})")
    if args.runs >= 2:  # the same statistic between two measurements alone: the noise to compare with
        noise = (points["alone"][1] / points["alone"][0])
        noise = noise[noise.index.get_level_values("n_rows") >= 2000].groupby(level="family").median()
        print("noise, alone run 2 / alone run 1, per family: "
              + ", ".join(f"{k} {v:.2f}" for k, v in noise.items()))


# --- step 4's duration -------------------------------------------------------------------------------

CHURN_PRESET = {k: v for k, v in datasets.PRESETS["churn"].items() if k not in ("description",)}


def run_steps(out: Path, params: dict | None = None) -> tuple[dict, dict, float]:
    cmd = [sys.executable, "-m", "helpers.run.cli", "run", "--steps", "1-4", "--out", str(out), "--no-html"]
    if params:
        cmd += ["-y", json.dumps(params)]
    started = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - started
    s3 = json.loads((out / "artifacts" / stack.STEP / "summary.json").read_text())
    s4 = json.loads((out / "artifacts" / "04_model_development" / "summary.json").read_text())
    return s3, s4, wall


def step4_part(args) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-stack-"))
    big = tmp / "churn_100k.parquet"
    datasets.make_churn(100_000).to_parquet(big)
    cases = [("demo (builtin:churn, 5,000 rows)", None),
             ("churn 100,000 rows", {**CHURN_PRESET, "dataset": str(big), "project_name": "churn-100k"})]
    print(f"\nStep 4's duration: predicted by step 3's costs vs taken (load average {os.getloadavg()[0]:.1f})")
    for label, params in cases:
        for r in range(args.step4_runs):
            s3, s4, wall = run_steps(tmp / f"run-{len(label)}-{r}", params)
            d = s4.get("duration") or {}
            span = s3.get("modeling_forecast", {})
            if not d:
                print(f"  {label}: no prediction recorded")
                continue
            factor = max(d["ratio"], 1 / d["ratio"])
            print(f"  {label}: {s3['n_rows']:,} training rows; step 3 span over families "
                  f"{span.get('low_s', float('nan')):.1f} to {span.get('high_s', float('nan')):.1f} s; tuned "
                  f"{d['tuned']}: predicted {d['total_s']:.1f} s ({d['low_s']:.1f} to {d['high_s']:.1f}); took "
                  f"{d['actual_cpu_s']:.1f} s CPU, {d['actual_s']:.1f} s wall: ratio actual/predicted "
                  f"{d['ratio']:.2f} (wall {d['wall_ratio']:.2f}); within 2x: {'yes' if factor <= 2 else 'NO'}; "
                  f"steps 1-4 took {wall:.0f} s", flush=True)
            print("     parts predicted: " + ", ".join(f"{k} {v:.1f} s" for k, v in d["parts"].items())
                  + f"; tuning took {s4['tuning']['elapsed_s']:.1f} s")


# --- latency -------------------------------------------------------------------------------------------


def timed(fn, repeat: int = 1) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def latency_part(args) -> None:
    import matplotlib.pyplot as plt

    prepared = demo_prepared()
    env_s, env = timed(stack.environment_report, 5)
    print(f"\nenvironment report: {env_s * 1000:.1f} ms; lock text: {timed(stack.lock_text, 3)[0] * 1000:.1f} ms")
    budget = args.budget or config.REGISTRY["scaling_budget_s"].default
    wall, m = timed(lambda: stack.measure_scaling(prepared, families.families_for("classification"), budget_s=budget,
                                                  workers=args.workers))
    print(f"measurement: budget {budget:g} s, wall {wall:.2f} s (overshoot {wall - budget:+.2f} s), {len(m)} points "
          f"in {m.attrs['workers']} process(es) {m.attrs['points_by_process']} (idle cores seen: "
          f"{m.attrs['idle_cores']}; load average {os.getloadavg()[0]:.1f}); largest size: "
          + ", ".join(f"{k} {v:,}" for k, v in m.groupby("family")["n_rows"].max().items()))
    study = stack.build_study(prepared, m, env)
    update, family = stack.explorer_update(study), stack.slowest_family(study)

    def one_update():
        plt.close(update(growth=100, family=family)[1])

    print(f"explorer update (readout + figure): {timed(one_update, 10)[0] * 1000:.0f} ms median; readout alone "
          f"{timed(lambda: stack.explorer_readout(study, 100, family), 50)[0] * 1000:.2f} ms")
    proj = stack.projections(study, 10.0)
    ctx = stack.make_context(prepared, study, env, 10.0)
    forecast = stack.modeling_forecast(study, prepared, folds=5, iterations=8, strategy="random", tuning_budget_s=120)
    doc_s, md = timed(lambda: stack.render_decision(ctx, env, study, stack.decide(ctx), proj,
                                                    stack.load_cloud_services(), forecast), 5)
    print(f"decision record: {doc_s * 1000:.0f} ms, {len(md.splitlines())} lines")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", default="all", choices=["all", "projections", "parallel", "step4", "latency"])
    parser.add_argument("--runs", type=int, default=3, help="step 3 measurements per table")
    parser.add_argument("--budget", type=float, default=None, help="scaling_budget_s (default: the registry's)")
    parser.add_argument("--workers", type=int, default=None, help="measuring processes (default: measure_scaling's)")
    parser.add_argument("--actuals", default=None, help="JSON file keeping the projections' actuals (reused)")
    parser.add_argument("--parallel-max-rows", type=int, default=64_000, help="largest size of --part parallel")
    parser.add_argument("--cap", type=float, default=400.0, help="skip actuals projected above this many seconds")
    parser.add_argument("--tables", default="A,B")
    parser.add_argument("--growths", default="10,100")
    parser.add_argument("--step4-runs", type=int, default=1)
    args = parser.parse_args()
    started = time.perf_counter()
    if args.part in ("all", "projections"):
        projections_part(args)
    if args.part in ("all", "parallel"):
        parallel_part(args)
    if args.part in ("all", "step4"):
        step4_part(args)
    if args.part in ("all", "latency"):
        latency_part(args)
    print(f"\nbenchmark took {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
