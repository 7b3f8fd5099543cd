"""Execute the step notebooks with papermill into a run folder, then build the report.

Exit codes (README, "Command-line reference"): 0 every selected step ran, 1 a step crashed (error, cell
timeout, dead kernel), 2 bad input (a ``PlaybookError``, before or inside a kernel),
130 interrupted. A failed run keeps its partial notebook, marks the step in the
manifest and still gets a (partial) report.

Each notebook runs in a kernel started (with its imports) while the notebook before it ran
(``KernelPool``): the 2-3 s kernel start is off the critical path. Progress (step,
stage, elapsed, remaining from the plan) is shown by ``progress.RunProgress``.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import importlib.util
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import papermill as pm
import yaml
from nbclient.exceptions import CellTimeoutError, DeadKernelError

from helpers.core import (
    artifacts,
    compute,
    config,
    datasets,
    faults,
    kpis,
    outofcore,
    paths,
    problem,
)
from helpers.core.datasets import BUILTIN_PREFIX, is_database_url, preset_for, write_snapshot
from helpers.core.errors import PlaybookError
from helpers.run import engine, progress, report, resume, tracking
from helpers.run.kernels import KernelPool, run_kernels, warm_modules
from helpers.steps.foundation import data

EXIT_OK, EXIT_CRASH, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130
REPORT_MIN_TIMEOUT_S = 120.0


def step_parameters(step: str, values: Mapping[str, Any], run_dir: Path) -> dict[str, Any]:
    """Exactly the parameters one notebook declares, for a batch run in ``run_dir``."""
    out = {p.name: values[p.name] for p in config.params_for_step(step)}
    out.update(run_dir=str(run_dir), interactive=False)
    return out


def preflight(values: Mapping[str, Any], steps: Sequence[str] = ()) -> tuple[Any, float] | None:
    """Checks of the data source before any kernel starts.

    When a step that loads the data is selected, the source is loaded and checked here
    (readable, has rows, a usable target): bad data is rejected in a second instead of
    after a kernel start, and the notebooks then read the snapshot the runner writes.
    Returns the loaded frame and its load time, or None.
    """
    compute.check_reachable(values.get("compute"))
    dataset = values["dataset"]
    if dataset.startswith(BUILTIN_PREFIX):
        preset_for(dataset)
    elif not is_database_url(dataset):
        path = Path(os.path.expanduser(dataset))
        if not path.exists() and not outofcore.source_files(dataset):  # a glob names no one file
            raise PlaybookError(f"The data file {dataset!r} does not exist.",
                                "check the dataset path (relative paths are relative to where you run playbook).")
    if not any(s in config.DATA_STEPS for s in steps):
        return None
    if values.get("data_engine") == "duckdb":  # larger than memory: the schema and a sample only
        faults.check_engine(values.get("teaching_faults"), "duckdb")  # resolved from max_memory after the merge
        frame, seconds = outofcore.checked_sample(values), None
    else:
        frame, seconds = datasets.load_checked(values)
    if len(frame) < data.MIN_ROWS:  # before the target checks: too few rows explains everything else
        raise PlaybookError(f"The data has only {len(frame)} row(s); a train/test split needs at least {data.MIN_ROWS}.",
                            "point dataset at a table with more rows.")
    problem_type, _ = problem.frame_problem(frame, values.get("target"), values.get("problem_type") or "auto")
    data.check_table(frame, values, problem_type)
    return (frame, seconds) if seconds is not None else None


def prepare_out_dir(out: str | os.PathLike | None, project: str) -> Path:
    """The run folder: new and unique; an existing non-empty folder is never overwritten."""
    path = paths.run_folder(out, project)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise PlaybookError(f"The output folder {str(path)!r} already exists and is not empty; a run is never overwritten.",
                            "choose a new --out folder, or leave --out out for a unique name.")
    path.mkdir(parents=True, exist_ok=True)
    return path.resolve()




def check_helpers_importable() -> None:
    if importlib.util.find_spec("helpers.core.config") is None:
        raise PlaybookError("The helpers package cannot be imported by this Python.",
                            "install the playbook: pip install -e . (from the clone).")


@dataclass
class StepOutcome:
    step: str
    status: str
    duration_s: float
    exit_code: int
    message: str = ""


def execute_step(step: str, notebook: Path, output: Path, parameters: Mapping[str, Any], kernel: str,
                 timeout: float | None, listener=None) -> StepOutcome:
    """Run one notebook; translate papermill's and nbclient's failures into an outcome.

    ``listener`` gets the engine's cell events (a ``progress.RunProgress``); papermill's own
    per-cell bar is never shown.
    """
    started = time.perf_counter()

    def outcome(status, code, message=""):
        return StepOutcome(step, status, round(time.perf_counter() - started, 2), code, message)

    try:
        engine.execute_notebook(notebook, output, parameters=dict(parameters), kernel_name=kernel,
                                progress_bar=False, log_output=False, execution_timeout=timeout,
                                cell_listener=listener)
    except pm.PapermillExecutionError as exc:
        where = f"cell {exc.exec_count}" if exc.exec_count else f"cell index {exc.cell_index}"
        if exc.ename == "PlaybookError":
            return outcome("failed", EXIT_BAD_INPUT, f"{exc.evalue}")
        return outcome("failed", EXIT_CRASH, f"{exc.ename} in {where}: {exc.evalue}")
    except CellTimeoutError:
        return outcome("failed", EXIT_CRASH, f"a cell exceeded the --timeout of {timeout} s")
    except DeadKernelError as exc:
        return outcome("failed", EXIT_CRASH, f"the kernel died ({str(exc).strip() or 'no detail'})")
    except KeyboardInterrupt:
        # nbclient's abandoned tasks would print "Task exception was never retrieved" tracebacks
        logging.getLogger("asyncio").setLevel(logging.CRITICAL)
        return outcome("interrupted", EXIT_INTERRUPTED, "interrupted")
    return outcome("succeeded", EXIT_OK)


def write_project_file(run: artifacts.Run, values: Mapping[str, Any]) -> Path:
    """``project.yaml`` of the run: the merged parameters (``playbook run -f`` reproduces it)."""
    keep = {k: v for k, v in values.items() if k not in ("run_dir", "interactive")}
    text = "# Merged parameters of this run: `playbook run -f project.yaml` reproduces it.\n"
    return artifacts.write_text(run.path / "project.yaml", text + yaml.safe_dump(keep, sort_keys=False, allow_unicode=True))


def start_manifest(run: artifacts.Run, values: Mapping[str, Any], steps: Sequence[str], command: str,
                   notebooks: Path) -> None:
    manifest = artifacts.empty_manifest()
    manifest.update(project=values.get("project_name"), parameters=dict(values), command=command,
                    environment=artifacts.environment_info(), notebooks=str(notebooks.resolve()),
                    runner=resume.runner_info())
    manifest["steps"] = [{"step": s, "notebook": f"{s}.ipynb", "status": "not_run", "duration_s": None, "output": None}
                         for s in steps]
    run.write_manifest(manifest)


def notebooks_folder(notebooks: str | os.PathLike | None, steps: Sequence[str]) -> Path:
    folder = Path(notebooks) if notebooks else paths.notebooks_dir()
    for step in steps:
        if not (folder / f"{step}.ipynb").exists():
            raise PlaybookError(f"Notebook {step}.ipynb is not in {folder}.", "check --notebooks, or run `playbook init` again.")
    return folder


def run_playbook(values: Mapping[str, Any], *, steps: Sequence[str], out: str | os.PathLike | None = None,
                 command: str = "", html: bool = True, timeout: float | None = None,
                 notebooks: str | os.PathLike | None = None, echo=print,
                 kernels: tuple[str, KernelPool] | None = None) -> int:
    """Execute the selected steps into a new run folder and build the report; return the exit code.

    ``kernels``: the kernelspec and pool of a caller that started the first step's kernel already
    (the CLI does, before importing this module; its spec must carry ``out`` as the run folder).
    """
    project = values.get("project_name") or "run"
    with contextlib.ExitStack() as stack:
        if kernels is None:
            out = paths.run_folder(out, project)
            kernels = stack.enter_context(run_kernels(out))
        pool = kernels[1]
        if not pool.waiting:
            pool.prestart(warm_modules(steps[0]))  # the first step's kernel starts while the data is checked
        # max_memory and data_engine resolved once, here: the manifest and project.yaml record them
        values = {**values, **outofcore.resolve_engine(values)}
        loaded = preflight(values, steps)
        check_helpers_importable()
        folder = notebooks_folder(notebooks, steps)
        run = artifacts.Run(prepare_out_dir(out, project))
        start_manifest(run, values, steps, command, folder)
        write_project_file(run, values)
        if loaded is not None:
            write_snapshot(run, values, *loaded)
            # the kernels read the snapshot: this process must not keep a (possibly gigabyte) table alive
            # while the steps run
            del loaded
            gc.collect()
            release_free_memory()
        elif values["data_engine"] == "duckdb" and any(s in config.DATA_STEPS for s in steps):
            outofcore.write_run_snapshot(run, values)  # DuckDB copies the source: nothing loads it into pandas
        echo(f"Run folder: {run.path}")
        return execute_steps(run, values, steps, folder, html=html, timeout=timeout, echo=echo, kernels=kernels)


def resume_playbook(run_dir: str | os.PathLike, values: Mapping[str, Any], *, steps: Sequence[str],
                    command: str = "", html: bool = True, timeout: float | None = None,
                    notebooks: str | os.PathLike | None = None, echo=print) -> int:
    """Continue a run: reuse each step whose inputs are unchanged, re-run the rest (and every later step)."""
    run = artifacts.Run(run_dir)
    manifest = run.read_manifest()
    if resume.runner_alive(manifest.get("runner")) and any(e.get("status") == "running" for e in manifest["steps"]):
        raise PlaybookError(f"Run {run.path} is still running (process {manifest['runner']['pid']}).",
                            "wait for it to finish, or stop it first.")
    resume.check_same_data(manifest.get("parameters") or {}, values)
    check_helpers_importable()
    folder = notebooks_folder(notebooks or manifest.get("notebooks"), steps)
    stopped = resume.stop_kernels(run.path)  # orphans of a killed runner must not write any more
    leftovers = resume.remove_temp_files(run)
    for entry in manifest["steps"]:
        if entry.get("status") == "running":  # its runner was killed: treat it as interrupted
            entry["status"] = "interrupted"
    manifest.setdefault("resumes", []).append({
        "command": command, "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "stopped_kernels": stopped, "removed_temp_files": [run.relative(p) for p in leftovers]})
    manifest.update(parameters=dict(values), notebooks=str(folder.resolve()), runner=resume.runner_info())
    run.write_manifest(manifest)
    write_project_file(run, values)
    echo(f"Resuming run folder: {run.path}")
    if stopped:
        echo(f"      stopped {len(stopped)} kernel process(es) left over from the killed run")
    if leftovers:
        echo(f"      removed {len(leftovers)} half-written temporary file(s)")
    return execute_steps(run, values, steps, folder, html=html, timeout=timeout, echo=echo, resuming=True)


def execute_steps(run: artifacts.Run, values: Mapping[str, Any], steps: Sequence[str], folder: Path, *,
                  html: bool, timeout: float | None, echo, resuming: bool = False,
                  kernels: tuple[str, KernelPool] | None = None) -> int:
    """Run (or, when resuming, reuse) each step in order, then build the (partial) report.

    ``kernels``: the run's kernelspec and kernel pool when the caller opened them (else opened here).
    """
    display = progress.RunProgress(len(steps), echo=echo, tty=sys.stderr.isatty())
    code = EXIT_OK
    outcomes: list[StepOutcome] = []
    rerun_from: str | None = None
    current: str | None = None
    previous_sigterm = _sigterm_as_interrupt()
    # nbconvert (~1 s) and mlflow (2-4 s) are imported while the steps run: the report's export and the
    # tracking do not wait (one thread: two importing side by side could deadlock on shared modules)
    import_nbconvert = (lambda: importlib.import_module("nbconvert")) if html else None
    if tracking.store_uri(values.get("tracking"), run.path.parent) is not None:
        tracking.prefetch(import_nbconvert)
    elif html:
        threading.Thread(target=import_nbconvert, daemon=True).start()
    try:
        with contextlib.ExitStack() as stack:
            kernel, pool = kernels or stack.enter_context(run_kernels(run.path))
            try:
                for i, step in enumerate(steps, 1):
                    current = step
                    inputs = resume.step_inputs(run, step, values, folder / f"{step}.ipynb")
                    if resuming:
                        entry = next((e for e in run.read_manifest()["steps"] if e["step"] == step), None)
                        reuse, why = (False, f"an earlier step ({rerun_from}) re-ran") if rerun_from else \
                            resume.reuse_decision(run, entry, inputs)
                        if reuse:
                            run.set_step_status(step, "reused", reason=why)
                            echo(f"[{i}/{len(steps)}] {step}: reused ({why})")
                            continue
                        rerun_from = rerun_from or step
                        echo(f"[{i}/{len(steps)}] {step}: re-run ({why}) ...")
                        kept = resume.keep_previous_attempt(run, step)
                        if kept is not None:
                            echo(f"      previous notebook kept as {kept.name}")
                        run.set_step_status(step, "running", output=f"{step}.ipynb", inputs=inputs, reason=why)
                    else:
                        echo(f"[{i}/{len(steps)}] {step} ...")
                        run.set_step_status(step, "running", output=f"{step}.ipynb", inputs=inputs)
                    # this step's kernel was started while the step before ran (the first one's while the
                    # runner was imported and the data checked; when resuming, now);
                    # the next one's (the next step's or the report's) starts at this step's first cell, or at its
                    # cell tagged engine.NEXT_KERNEL_TAG (after the fits that take every core)
                    if not pool.waiting:
                        pool.prestart(warm_modules(step))
                    nxt = steps[i] if i < len(steps) else None
                    display.step_started(i, step, progress.planned_seconds(run.read_manifest(), step))
                    hooks = StepHooks(display, lambda nxt=nxt: pool.prestart(warm_modules(nxt)))
                    try:
                        result = execute_step(step, folder / f"{step}.ipynb", run.path / f"{step}.ipynb",
                                              step_parameters(step, values, run.path), kernel, timeout, hooks)
                    finally:
                        display.step_finished()
                    planned = progress.planned_seconds(run.read_manifest(), step)  # step 3 writes the plan
                    run.set_step_status(step, result.status, duration_s=result.duration_s, ran_on=ran_on(run, step),
                                        **({"message": result.message} if result.message else {}),
                                        **({"planned_s": planned} if planned is not None else {}))
                    outcomes.append(result)
                    current = None
                    echo(f"      {result.status} in {result.duration_s:.1f} s")
                    if result.exit_code != EXIT_OK:
                        code = result.exit_code
                        pool.close()
                        resume.stop_kernels(run.path)  # a timed-out or interrupted kernel must not go on writing
                        report_failure(result, run, echo)
                        break
            except KeyboardInterrupt:
                code = EXIT_INTERRUPTED
                pool.close()
                resume.stop_kernels(run.path)
                if current is not None:
                    run.set_step_status(current, "interrupted")
                    echo(f"Interrupted during step {current}.")
            try:
                build_report_safely(run, html, kernel, echo, timeout)
                if code != EXIT_INTERRUPTED:  # the finished (or failed) run, with its report, into MLflow
                    tracking.track_run(run, values.get("tracking"), echo=echo)
            except KeyboardInterrupt:
                code = EXIT_INTERRUPTED
            finally:
                resume.stop_kernels(run.path)
    finally:
        _restore_sigterm(previous_sigterm)
    print_summary(run, outcomes, echo)
    return code


def ran_on(run: artifacts.Run, step: str) -> dict[str, Any]:
    """Where a step's fits ran (its summary's ``engine``): its own kernel, on one core, unless it says otherwise."""
    engine = run.read_summary(step).get("engine") if run.has_summary(step) else None
    return engine or compute.Engine(compute.LOCAL, None, 1, 1).record()


class StepHooks:
    """The engine's cell events of one step: to the progress display; ``next_kernel_due`` runs ``start_next``."""

    def __init__(self, display: progress.RunProgress, start_next):
        self.display = display
        self.start_next = start_next

    def notebook_started(self, code_cells: int) -> None:
        self.display.notebook_started(code_cells)

    def next_kernel_due(self) -> None:
        try:
            self.start_next()
        except Exception as exc:  # the next notebook then starts its own kernel, as without a pool
            logging.getLogger(__name__).warning("could not start the next kernel ahead: %s", exc)

    def cell_started(self, stage: str) -> None:
        self.display.cell_started(stage)

    def cell_completed(self) -> None:
        self.display.cell_completed()


def release_free_memory() -> None:
    """Hand freed heap memory back to the system (glibc keeps it, and the process's RSS still counts it)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _sigterm_as_interrupt():
    """Treat SIGTERM (a cancelled CI job) like Ctrl-C: mark the step interrupted, write the report."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _raise_interrupt)


def _restore_sigterm(previous) -> None:
    if previous is not None:
        signal.signal(signal.SIGTERM, previous)


def report_failure(result: StepOutcome, run: artifacts.Run, echo) -> None:
    saved = run.path / f"{result.step}.ipynb"
    if result.exit_code == EXIT_BAD_INPUT:
        echo(f"error: step {result.step} stopped on bad input: {result.message}")
    elif result.exit_code == EXIT_INTERRUPTED:
        echo(f"Interrupted during step {result.step}; the partial notebook is {saved}.")
        return
    else:
        echo(f"error: step {result.step} failed: {result.message}")
    echo(f"       the executed notebook (with the full traceback) is {saved}")


def build_report_safely(run: artifacts.Run, html: bool, kernel: str, echo, timeout: float | None = None) -> None:
    # the report's cells import every step module: a --timeout sized for a tiny step must not cost
    # the user the (partial) report
    timeout = None if timeout is None else max(timeout, REPORT_MIN_TIMEOUT_S)
    try:
        report.build_report(run, html=html, kernel_name=kernel, timeout=timeout)
        echo(f"Report: {run.path / ('report.html' if html else 'report.ipynb')}")
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # the report must never hide the run's own outcome
        echo(f"warning: the report could not be built ({type(exc).__name__}: {exc}); "
             f"rebuild it with `playbook report {run.path}`")


def print_summary(run: artifacts.Run, outcomes: Sequence[StepOutcome], echo) -> None:
    manifest = run.read_manifest()
    entries = manifest.get("steps", [])
    # planned next to actual once the run has a plan (step 3 writes it); the plan of a step that
    # did not finish is read from the manifest's plan
    planned = {e["step"]: e.get("planned_s") if e.get("planned_s") is not None
               else progress.planned_seconds(manifest, e["step"]) for e in entries}
    with_plan = any(v is not None for v in planned.values())
    echo("")
    echo("Step                            status        time" + ("      planned" if with_plan else ""))
    for entry in entries:
        duration = "" if entry.get("duration_s") is None else f"{entry['duration_s']:.1f} s"
        if with_plan:
            plan = "-" if planned[entry["step"]] is None else f"{planned[entry['step']]:.1f} s"
            echo(f"{entry['step']:<31} {entry['status']:<13} {duration:<9} {plan}")
        else:
            echo(f"{entry['step']:<31} {entry['status']:<13} {duration}")
    if manifest.get("kpis"):
        echo("")
        echo("KPI             target   achieved  verdict")
        for k in manifest["kpis"]:
            achieved = "-" if k.get("achieved") is None else f"{k['achieved']:.3f}"
            verdict = kpis.row_verdict(k)
            echo(f"{k['metric']:<15} {k['target']:<8g} {achieved:<9} {'-' if verdict is None else verdict.upper()}")
