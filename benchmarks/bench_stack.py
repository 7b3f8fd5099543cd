"""Benchmark of step 3 (helpers.steps.stack): prints figures, asserts nothing.

    python benchmarks/bench_stack.py [RUN_DIR] [BUDGET_S]

With RUN_DIR (a run where step 2 ran) it measures step 2's real hand-over; without,
a Prepared built from the churn demo table with a simple numeric/categorical split.
Figures: measurement wall time vs budget (overshoot), fits done, fitted exponents,
and the latency of the explorer update, the decision record and the lock file.
"""

from __future__ import annotations

import statistics
import sys
import time

from helpers.core import artifacts, datasets, families, features
from helpers.core.prepared import Prepared, load_prepared
from helpers.steps import stack


def demo_prepared() -> Prepared:
    frame = datasets.load_builtin("churn").drop_duplicates("customer_id")
    frame = frame.drop(columns=["customer_id", "total_charges", "country", "retention_call_minutes"])
    columns = [c for c in frame.columns if c != "churn"]
    numeric, categorical = features.split_kinds(frame, columns)
    cut = int(len(frame) * 0.8)
    return Prepared(frame.iloc[:cut], frame.iloc[cut:], "churn", "classification", numeric, categorical)


def timed(fn, repeat: int = 1) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    run_dir = sys.argv[1] if len(sys.argv) > 1 else None
    budget = float(sys.argv[2]) if len(sys.argv) > 2 else 10.0
    prepared = load_prepared(artifacts.Run(run_dir)) if run_dir else demo_prepared()
    print(f"data: {len(prepared.train)} training rows, {len(prepared.features)} features ({prepared.problem_type})")
    env_s, env = timed(stack.environment_report, 5)
    print(f"environment report: {env_s * 1000:.1f} ms; {env['cpu']['usable_cores']} cores, "
          f"{stack.format_bytes(env['memory']['available_bytes'])} available")
    lock_s, lock = timed(stack.lock_text, 3)
    print(f"lock text: {lock_s * 1000:.1f} ms, {len(lock.splitlines())} lines")

    fams = families.families_for(prepared.problem_type)
    wall, m = timed(lambda: stack.measure_scaling(prepared, fams, budget_s=budget, seed=0))
    longest = m["fit_s"].max()
    print(f"measurement: budget {budget:.1f} s, wall {wall:.2f} s (overshoot {wall - budget:+.2f} s; "
          f"longest single fit {longest:.2f} s), {len(m)} points, memory by {m.attrs['memory_method']}")
    study = stack.build_study(prepared, m, env)
    for name, c in study.curves.items():
        sizes = sorted({p["n_rows"] for p in c.points})
        print(f"  {name:24s} b = {c.time.b:5.2f} (R² {c.time.r2 if c.time.r2 is not None else float('nan'):.2f}) "
              f"memory b = {c.memory.b if c.memory else float('nan'):5.2f}  sizes {sizes[0]}..{sizes[-1]}")

    update = stack.explorer_update(study)
    family = stack.slowest_family(study)
    import matplotlib.pyplot as plt

    def one_update():
        _, fig = update(growth=100, family=family)
        plt.close(fig)

    upd_s, _ = timed(one_update, 10)
    text_s, _ = timed(lambda: stack.explorer_readout(study, 100, family), 50)
    print(f"explorer update (readout + figure): {upd_s * 1000:.0f} ms median; readout alone {text_s * 1000:.2f} ms")
    proj = stack.projections(study, 10.0)
    ctx = stack.make_context(prepared, study, env, 10.0)
    decisions = stack.decide(ctx)
    doc_s, md = timed(lambda: stack.render_decision(ctx, env, study, decisions, proj, stack.load_cloud_services()), 5)
    print(f"decision record: {doc_s * 1000:.0f} ms, {len(md.splitlines())} lines; compute: "
          f"{decisions['compute']['decision']}")


if __name__ == "__main__":
    main()
