"""Benchmark: building the report of a finished run (what `playbook run` adds at its end).

Copies RUN_DIR to a temporary folder, then times, median of ``--repeat`` runs:
``build_report`` as `playbook report` runs it (a fresh kernel executes report.ipynb, then the
HTML export), the report cells' own time in the kernel (papermill's cell durations: what the
sections and the first screen cost), the HTML export alone (nbconvert), and the size of report.html. Inside
`playbook run` the report's kernel is started while step 5 runs, so the run itself pays about
the build minus the kernel start. Figures, not assertions: the machine is shared.

    python benchmarks/bench_report.py RUN_DIR [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    import nbconvert  # noqa: F401  (imported while the steps run in `playbook run`: not part of the report's time)

    from helpers.core import artifacts
    from helpers.run import report

    work = Path(tempfile.mkdtemp(prefix="bench-report-")) / "run"
    shutil.copytree(args.run_dir, work, ignore=shutil.ignore_patterns("*.parquet"))
    run = artifacts.Run(work)
    builds, exports, cells = [], [], []
    for _ in range(args.repeat):
        started = time.perf_counter()
        report.build_report(run)
        builds.append(time.perf_counter() - started)
        executed = json.loads((work / "report.ipynb").read_text())
        cells.append(sum(c["metadata"].get("papermill", {}).get("duration") or 0 for c in executed["cells"]))
        started = time.perf_counter()
        report.export_html(work / "report.ipynb")
        exports.append(time.perf_counter() - started)
    size = (work / "report.html").stat().st_size
    print(f"{'report of ' + Path(args.run_dir).name:<44}{'median':>8}{'min':>8}{'max':>8}")
    for name, values in (("build_report (kernel + execute + export), s", builds), ("its cells in the kernel, s", cells),
                         ("HTML export alone, s", exports)):
        print(f"{name:<44}{statistics.median(values):>8.2f}{min(values):>8.2f}{max(values):>8.2f}")
    print(f"{'report.html, MB':<44}{size / 1e6:>8.2f}")
    shutil.rmtree(work.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
