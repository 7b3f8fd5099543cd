"""Benchmark: `playbook run` on the demo, per step.

Prints each step's wall time (as the runner measured it), the sum of its cells'
execution times (papermill metadata) and their ratio: the orchestration overhead
(kernel start, papermill bookkeeping), and the CPU time of the command and its
kernels. Figures, not assertions: machines here are shared and noisy, so
``--repeat N`` runs the command N times and adds each step's median and range.

    python benchmarks/bench_playbook.py [--steps 1-5] [--repeat N] [-p NAME VALUE ...]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_once(steps: str | None, params: list[list[str]]) -> dict[str, tuple[float, float]]:
    """One `playbook run`: prints its table, returns {step: (wall s, sum of cells s)}."""
    out = Path(tempfile.mkdtemp(prefix="bench-playbook-")) / "run"
    cmd = [sys.executable, "-m", "helpers.run.cli", "run", "--out", str(out), "--no-html"]
    if steps:
        cmd += ["--steps", steps]
    for name, value in params:
        cmd += ["-p", name, value]
    started = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(cmd, check=True, capture_output=True)
    total = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    manifest = json.loads((out / "manifest.json").read_text())
    print(f"{'step':<32}{'wall s':>8}{'cells s':>9}{'ratio':>7}")
    times = {}
    for entry in manifest["steps"]:
        nb = json.loads((out / entry["notebook"]).read_text())
        cells = sum(c["metadata"].get("papermill", {}).get("duration") or 0 for c in nb["cells"])
        wall = entry["duration_s"] or 0
        times[entry["step"]] = (wall, cells)
        print(f"{entry['step']:<32}{wall:>8.1f}{cells:>9.1f}{wall / cells if cells else float('nan'):>7.2f}")
    print(f"{'whole command (incl. report)':<32}{total:>8.1f}")
    # CPU seconds of the command and its kernels: less sensitive than wall time to a busy machine
    print(f"{'CPU time of command + kernels':<32}{cpu:>8.1f}\n")
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", default=None)
    parser.add_argument("--repeat", type=int, default=1, help="run the command this many times")
    parser.add_argument("-p", nargs=2, action="append", default=[])
    args = parser.parse_args()
    runs = [run_once(args.steps, args.p) for _ in range(args.repeat)]
    if args.repeat > 1:
        print(f"{'step, over ' + str(args.repeat) + ' runs':<32}{'median':>8}{'min':>7}{'max':>7}  (wall s)")
        for step in runs[0]:
            walls = [r[step][0] for r in runs]
            print(f"{step:<32}{statistics.median(walls):>8.1f}{min(walls):>7.1f}{max(walls):>7.1f}")


if __name__ == "__main__":
    main()
