"""The ``playbook`` command: run, params, report, init, check, predict, serve, gate, track, runs, compare.

Exit codes: 0 success, 1 a step crashed, 2 bad input (one clear message, no
traceback), 130 interrupted.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from helpers.core import compute, paths
from helpers.core.errors import PlaybookError

EXAMPLES = """examples:
  playbook run                                   # the demo (builtin:churn), all steps
  playbook run -p dataset builtin:diabetes       # another built-in, its preset does the rest
  playbook run -f project.yaml --steps 1-3       # your data, steps 1 to 3
  playbook params 1                              # parameters of step 1
  playbook init class --student                  # learners' copies (solutions replaced by a scaffold)
  playbook check class                           # grade them: passed / not yet / not run, per exercise
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="playbook", description="ML Project Playbook: run the step notebooks, "
                                     "build reports, predict and gate.", epilog=EXAMPLES,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="execute the step notebooks into a new run folder and build the report")
    run.add_argument("-f", "--file", help="project.yaml with parameter values")
    run.add_argument("-p", "--param", nargs=2, action="append", metavar=("NAME", "VALUE"), default=[],
                     help="set one parameter (converted to its declared type)")
    run.add_argument("-y", "--yaml", help="parameters as a YAML mapping string")
    run.add_argument("--steps", help="steps to run: 1,2 or 1-3 (default: all)")
    run.add_argument("--out", help="run folder (default: runs/<project>-<timestamp>-<suffix>); never overwritten")
    run.add_argument("--no-html", action="store_true", help="skip the HTML export of the report")
    run.add_argument("--timeout", type=float, help="per-cell timeout in seconds")
    run.add_argument("--notebooks", help="folder with (edited) notebooks, e.g. one made by `playbook init`")
    run.add_argument("--resume", metavar="RUN_DIR",
                     help="continue this run folder: reuse the steps whose inputs (parameters, data, notebook, "
                          "helpers source) are unchanged, re-run the others and every step after them")

    params = sub.add_parser("params", help="list the parameters (of one step)")
    params.add_argument("step", nargs="?", help="step number or notebook name")

    report = sub.add_parser("report", help="(re)build report.ipynb and report.html of a run (and report.pdf)")
    report.add_argument("run_dir")
    report.add_argument("--no-html", action="store_true")
    report.add_argument("--pdf", action="store_true", help="also print report.pdf with the system Chromium")

    init = sub.add_parser("init", help="copy the notebooks and a documented project.yaml into DIR")
    init.add_argument("dir")
    copies = init.add_mutually_exclusive_group()
    copies.add_argument("--student", action="store_true",
                        help="learners' copies: each exercise's solution replaced by `# your code here`, no outputs")
    copies.add_argument("--facilitator", action="store_true",
                        help="copies with the solutions, and FACILITATOR_GUIDE.md (session plan, objectives, "
                             "exercises, discussion questions, common mistakes, injected faults)")

    check = sub.add_parser("check", help="grade a learner's notebooks: execute them into a new run folder and print "
                                         "per exercise passed / not yet / not run (exit 0 all passed, 1 not all)")
    check.add_argument("dir", help="folder with the learner's notebooks (made by `playbook init DIR --student`)")
    check.add_argument("--json", action="store_true", help="print one JSON document (for a learning platform)")
    check.add_argument("-p", "--param", nargs=2, action="append", metavar=("NAME", "VALUE"), default=[],
                       help="set one parameter (over DIR/project.yaml when there is one)")
    check.add_argument("--out", help="run folder for the executed notebooks (default: runs/check-<project>-<timestamp>-"
                                     "<suffix>); never overwritten")
    check.add_argument("--timeout", type=float, help="per-cell timeout in seconds")

    predict = sub.add_parser("predict", help="predict new rows with a run's champion model")
    predict.add_argument("--run", required=True, help="run folder with a trained model (step 4)")
    predict.add_argument("--input", required=True, help="CSV or Parquet file of new rows")
    predict.add_argument("--output", required=True, help="CSV file to write the predictions to")
    predict.add_argument("--chunk-size", type=int, default=100_000)
    predict.add_argument("--overwrite", action="store_true", help="replace an existing output file")

    serve = sub.add_parser("serve", help="serve a model package over HTTP (POST /predict, /metadata, /reload, "
                                         "/health)", description="The API token comes from $PLAYBOOK_SERVE_TOKEN, "
                           "$PLAYBOOK_SERVE_TOKEN_FILE or --token-file, never from the command line (ps shows it).")
    what = serve.add_mutually_exclusive_group(required=True)
    what.add_argument("--package", help="model package folder, RUN_DIR/models/vN (step 5 writes it)")
    what.add_argument("--run", help="run folder: serve its champion's package")
    what.add_argument("--model", help="registered model, models:/<project>@champion: the version step 5 promoted "
                                      "(SIGHUP follows the alias)")
    serve.add_argument("--tracking", help="MLflow store of --model (default: runs/mlflow.db)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (beyond loopback only with a token)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--token-file", help="file holding the API token")
    serve.add_argument("--log-dir", help="append each request's inputs and predictions to Parquet files here")
    serve.add_argument("--log-batch-rows", type=int, default=10_000, help="rows per request-log file")
    serve.add_argument("--log-interval", type=float, default=60.0, help="seconds after which buffered rows are written")
    serve.add_argument("--log-max-files", type=int, default=1_000, help="request-log files kept (oldest removed)")
    serve.add_argument("--max-bytes", type=int, default=8 * 1024 * 1024, help="largest request body (413 above)")
    serve.add_argument("--max-rows", type=int, default=100_000, help="most rows per request (413 above)")

    gate = sub.add_parser("gate", help="KPI quality gate: exit 0 none failed (watch warns), 1 one failed, "
                                       "2 none measured")
    gate.add_argument("--run", required=True)
    gate.add_argument("--strict", action="store_true",
                      help="also exit 1 when a KPI is on watch (its point misses, its interval contains the target)")

    track = sub.add_parser("track", help="log a finished run to MLflow (again, e.g. after the server was down)")
    track.add_argument("run_dir")
    track.add_argument("--tracking", help="local (runs folder's mlflow.db), or a tracking server URI "
                                          "(default: the run's own tracking parameter)")

    runs = sub.add_parser("runs", help="list the runs of a folder: name, date, data, champion, KPIs, status")
    runs.add_argument("dir", nargs="?", default="runs")

    compare = sub.add_parser("compare", help="what changed between runs: parameters, data, verdicts, champion, "
                                             "KPIs (paired bootstrap on the same test rows)")
    compare.add_argument("runs", nargs="+", metavar="RUN_DIR", help="two or more run folders (the first is the base)")
    compare.add_argument("--html", help="also write the comparison as an HTML page to this file")
    return parser


def _step_name(value: str) -> str:
    for step in paths.STEP_NOTEBOOKS:
        if value in (step, step[:2], str(int(step[:2]))):
            return step
    raise PlaybookError(f"Unknown step {value!r}.", "use a number from 1 to 5 or a notebook name.")


def cmd_run(args) -> int:
    from helpers.core import config
    from helpers.run import kernels

    layers = []
    saved_steps: list[str] = []
    if args.resume:
        saved, saved_steps = _resumed_run(args)
        layers.append(saved)
    if args.file:
        layers.append(config.load_project_file(args.file))
    if args.yaml:
        layers.append(config.parse_yaml_mapping(args.yaml, where="-y"))
    values = config.merge(*layers, text_layer=_text_layer(args.param))
    command = "playbook " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    compute.check_reachable(values.get("compute"))  # an unreachable scheduler: exit 2 before any kernel starts
    if args.resume:
        from helpers.run import runner

        steps = parse_steps(args.steps, _available(args.notebooks)) if args.steps else saved_steps
        return runner.resume_playbook(args.resume, values, steps=steps, command=command, html=not args.no_html,
                                      timeout=args.timeout, notebooks=args.notebooks)
    steps = parse_steps(args.steps, _available(args.notebooks))
    out = paths.run_folder(args.out, values.get("project_name") or "run")
    # the first step's kernel (3 s of start and imports) starts before this process imports the runner,
    # pandas and papermill (2.5 s), and checks the data: both then run side by side
    with kernels.run_kernels(out) as run_kernels:
        run_kernels[1].prestart(kernels.warm_modules(steps[0]))
        from helpers.run import runner

        return runner.run_playbook(values, steps=steps, out=out, command=command, html=not args.no_html,
                                   timeout=args.timeout, notebooks=args.notebooks, kernels=run_kernels)


def _text_layer(params: Sequence[Sequence[str]]) -> dict[str, str]:
    """``-p NAME VALUE`` pairs, each name checked (papermill writes names into code verbatim)."""
    from helpers.core import config

    for name, _ in params:
        config.check_name(name)
    return {name: value for name, value in params}


def parse_steps(spec: str | None, available: Sequence[str] | None = None) -> list[str]:
    """``"1,2"`` or ``"1-3"`` (or None for all) -> step names, checked against what exists."""
    available = list(available if available is not None else paths.available_steps())
    numbers = {paths.step_number(s): s for s in available}
    if not spec:
        return available
    chosen: set[int] = set()
    try:
        for part in spec.split(","):
            part = part.strip()
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-", 1))
                if lo > hi:
                    raise ValueError
                chosen.update(range(lo, hi + 1))
            else:
                chosen.add(int(part))
    except ValueError:
        raise PlaybookError(f"--steps {spec!r} is not a list or range of step numbers.",
                            "write e.g. --steps 1,2 or --steps 1-3.") from None
    missing = sorted(n for n in chosen if n not in numbers)
    if missing:
        raise PlaybookError(f"--steps {spec!r} names step(s) {', '.join(map(str, missing))}, which do not exist.",
                            f"choose among steps {', '.join(map(str, sorted(numbers)))}.")
    return [numbers[n] for n in sorted(chosen)]


def _resumed_run(args) -> tuple[dict, list[str]]:
    """The parameters a run was started with (the base layer of ``--resume``)."""
    from helpers.core import artifacts

    if args.out:
        raise PlaybookError("--resume continues an existing run folder; --out names a new one.", "use only one of them.")
    run = artifacts.Run(args.resume)
    if not run.has_manifest():
        raise PlaybookError(f"--resume {args.resume!r} is not a run folder (no manifest.json).",
                            "give the folder made by `playbook run`.")
    manifest = run.read_manifest()
    if not manifest.get("steps"):
        raise PlaybookError(f"The manifest of {args.resume!r} lists no steps.", "start a new run instead.")
    saved = {k: v for k, v in (manifest.get("parameters") or {}).items() if k not in ("run_dir", "interactive")}
    return saved, [e["step"] for e in manifest["steps"]]


def _available(notebooks: str | None) -> list[str]:
    if not notebooks:
        return paths.available_steps()
    folder = Path(notebooks)
    if not folder.is_dir():
        raise PlaybookError(f"--notebooks {notebooks!r} is not a folder.", "point it at a folder made by `playbook init`.")
    return [s for s in paths.STEP_NOTEBOOKS if (folder / f"{s}.ipynb").exists()]


def cmd_params(args) -> int:
    from helpers.core import config

    step = _step_name(args.step) if args.step else None
    rows = config.describe(step)
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        print(f"{r['name']:<{width}}  {r['type']:<15} default {r['default']!r:<18} steps {r['steps']:<14} {r['help']}")
    return 0


def cmd_report(args) -> int:
    from helpers.core import artifacts
    from helpers.run import report

    run = artifacts.Run(args.run_dir)
    if not run.has_manifest():
        raise PlaybookError(f"{args.run_dir!r} is not a run folder (no manifest.json).", "give the folder made by `playbook run`.")
    if args.pdf and args.no_html:
        raise PlaybookError("--pdf prints report.html, which --no-html skips.", "drop one of the two options.")
    browser = report.chromium() if args.pdf else None  # before building: no Chromium is one clear message, at once
    from papermill.exceptions import PapermillExecutionError  # local: papermill is slow to import

    try:
        out = report.build_report(run, html=not args.no_html)
    except PapermillExecutionError as exc:  # a section failed: its message names the step
        print(f"error: the report could not be built: {exc.evalue}", file=sys.stderr)
        return 1
    print(f"Report: {out.with_suffix('.html') if not args.no_html else out}")
    if browser:
        print(f"PDF: {report.write_pdf(run, browser)}")
    return 0


def cmd_init(args) -> int:
    from helpers.core import config

    target = Path(args.dir)
    if target.exists() and any(target.iterdir()):
        raise PlaybookError(f"{args.dir!r} exists and is not empty.", "choose a new folder for `playbook init`.")
    sources = sorted(paths.notebooks_dir().glob("*.ipynb"))
    copies, guide = None, None
    if args.student or args.facilitator:  # every copy made before anything is written: a bad marker leaves no folder
        from helpers.run import teaching

        make = teaching.student_copy if args.student else teaching.facilitator_copy
        copies = {nb.stem: make(teaching.read_notebook(nb), nb.stem) for nb in sources}
        if args.facilitator:
            from helpers.core.faults import FAULTS

            faults = [{"name": f.name, "what": f.what, "finds": f.finds, "teaches": f.teaches} for f in FAULTS.values()]
            guide = teaching.facilitator_guide({s: copies[s] for s in paths.STEP_NOTEBOOKS if s in copies}, faults)
    target.mkdir(parents=True, exist_ok=True)
    for nb in sources:
        if copies is None:
            shutil.copyfile(nb, target / nb.name)
        else:
            teaching.write_notebook(copies[nb.stem], target / nb.name)
    (target / "project.yaml").write_text(config.project_yaml_text(), encoding="utf-8")
    kind = "the learners' copies of the notebooks" if args.student else \
        "the notebooks with their solutions, FACILITATOR_GUIDE.md" if args.facilitator else "the notebooks"
    if guide is not None:
        (target / "FACILITATOR_GUIDE.md").write_text(guide, encoding="utf-8")
    print(f"Copied {kind} and project.yaml into {target}.\n"
          f"Edit project.yaml, then: playbook run -f {target / 'project.yaml'} --notebooks {target}")
    if args.student:
        print(f"Grade the learners' work with: playbook check {target}")
    return 0


def cmd_check(args) -> int:
    import json

    from helpers.core import config
    from helpers.run import teaching

    folder = Path(args.dir)
    if not folder.is_dir():
        raise PlaybookError(f"{args.dir!r} is not a folder.", "give the folder made by `playbook init DIR --student`.")
    found = teaching.step_notebooks(folder)
    if not found:
        raise PlaybookError(f"{args.dir!r} holds no step notebook ({paths.STEP_NOTEBOOKS[0]}.ipynb, ...).",
                            "give the folder made by `playbook init DIR --student`.")
    learner = {step: teaching.read_notebook(path) for step, path in found.items()}
    expected = {step: teaching.exercises_of(nb, step) for step, nb in learner.items()}
    if not any(expected.values()):
        raise PlaybookError(f"The notebooks in {args.dir!r} have no exercises (no cell tagged 'check').",
                            "give a folder made by `playbook init DIR --student`.")
    layers: list[dict] = []
    if (folder / "project.yaml").is_file():
        layers.append(config.load_project_file(folder / "project.yaml"))
    layers.append({"tracking": config.TRACKING_OFF})  # a grading run is not an experiment (-p tracking local logs it)
    values = config.merge(*layers, text_layer=_text_layer(args.param))
    out = paths.run_folder(args.out, f"check-{values.get('project_name') or 'run'}")
    command = "playbook " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    from helpers.run import runner

    with tempfile.TemporaryDirectory(prefix="playbook-check-") as graded:
        for step, nb in learner.items():  # a learner's exception is shown in its cell; the run goes on
            teaching.write_notebook(teaching.for_grading(nb), Path(graded) / f"{step}.ipynb")
        code = runner.run_playbook(values, steps=list(found), out=out, command=command, html=False,
                                   timeout=args.timeout, notebooks=graded,
                                   echo=lambda line: print(line, file=sys.stderr))  # stdout: the grades only
    from helpers.core.artifacts import Run

    if (run := Run(out)).has_manifest():  # it names the graded copies' temporary folder: name the learner's
        run.update_manifest(notebooks=str(folder.resolve()), graded=True)
    if code == runner.EXIT_INTERRUPTED:
        return code
    results = teaching.grade_folder(out, expected)
    if args.json:
        print(json.dumps({"run": str(Path(out).resolve()), "passed": all(r.passed for r in results),
                          "exercises": [r.as_dict() for r in results]}, indent=2))
    else:
        print(teaching.results_text(results))
    return 0 if all(r.passed for r in results) else 1


def cmd_predict(args) -> int:
    from helpers.steps.operations import deployment

    return deployment.predict_cli(args.run, args.input, args.output, args.chunk_size, overwrite=args.overwrite)


def cmd_serve(args) -> int:
    for name in ("port", "log_batch_rows", "log_max_files", "max_bytes", "max_rows"):
        if getattr(args, name) < 1:
            raise PlaybookError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}.",
                                "give a positive number.")
    try:  # local: FastAPI and uvicorn (the [serve] extra): only this command needs them
        from helpers.run import serve
    except ModuleNotFoundError as exc:
        raise PlaybookError(f"`playbook serve` needs {exc.name}, which is not installed.",
                            "pip install 'ml-project-playbook[serve]'.") from None
    if args.tracking is not None and args.model is None:
        raise PlaybookError("--tracking names the store of a registered model.", "use it with --model models:/<name>@champion.")
    return serve.serve(args.package or args.run or args.model, tracking_uri=args.tracking, host=args.host, port=args.port, token_file=args.token_file,
                       log_dir=args.log_dir, log_batch_rows=args.log_batch_rows, log_interval_s=args.log_interval,
                       log_max_files=args.log_max_files, max_bytes=args.max_bytes, max_rows=args.max_rows)


def cmd_gate(args) -> int:
    from helpers.steps.operations import deployment

    return deployment.gate_cli(args.run, strict=args.strict)


def cmd_track(args) -> int:
    from helpers.core import artifacts, config
    from helpers.run import tracking

    run = artifacts.Run(args.run_dir)
    if not run.has_manifest():
        raise PlaybookError(f"{args.run_dir!r} is not a run folder (no manifest.json).", "give the folder made by `playbook run`.")
    if args.tracking is not None:
        config.tracking_setting(args.tracking)
        if args.tracking == config.TRACKING_OFF:
            raise PlaybookError("--tracking off logs nothing.", "give local or a tracking server URI.")
    record = tracking.track_run(run, args.tracking)
    if record is None:
        raise PlaybookError(f"The run {run.path.name} was made with tracking off.",
                            "name a store: playbook track RUN_DIR --tracking local (or a server URI).")
    return 1 if "error" in record else 0


def cmd_runs(args) -> int:
    from helpers.run import history

    print(history.runs_table_text(history.list_runs(args.dir)))
    return 0


def cmd_compare(args) -> int:
    from helpers.run import history

    comparison = history.compare_runs(args.runs)
    print(history.comparison_text(comparison))
    if args.html:
        print(f"HTML: {history.write_comparison_html(comparison, args.html)}")
    return 0


COMMANDS = {"run": cmd_run, "params": cmd_params, "report": cmd_report, "init": cmd_init, "check": cmd_check,
            "predict": cmd_predict, "serve": cmd_serve, "gate": cmd_gate, "track": cmd_track, "runs": cmd_runs,
            "compare": cmd_compare}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except PlaybookError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
