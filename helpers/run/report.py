"""The run report: first screen for stakeholders, then one section per step that ran.

``build_report`` executes ``playbook/report.ipynb`` (parameterized by the run folder)
with papermill and exports it with nbconvert to a code-free, offline HTML file.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from IPython.display import HTML, Markdown, display
from markupsafe import Markup

from helpers.core import artifacts, faults, kpis, paths, sections, tables
from helpers.core.errors import PlaybookError
from helpers.core.sections import Section
from helpers.run import history, registry
from helpers.ui import scoreboard

STEP_TITLES = registry.TITLES


def headlines(run: artifacts.Run) -> dict[str, dict[str, Any]]:
    """First-screen facts each step that ran offers (``headline(run)`` of its module)."""
    out: dict[str, dict[str, Any]] = {}
    for step in (s.id for s in registry.STEPS):
        if run.has_summary(step):
            out[step] = registry.load(step).headline(run) or {}
    return out


def kpi_rows(manifest: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The manifest's KPIs, each with its verdict (``kpis.row_verdict``): pass, watch (the point misses, the
    interval contains the target), fail (the interval excludes it) or None (not measured yet)."""
    return [{**k, "verdict": kpis.row_verdict(k)} for k in manifest.get("kpis") or []]


def kpi_scoreboard(manifest: Mapping[str, Any]) -> pd.DataFrame:
    """The KPI scoreboard as rows for ``tables.table``: KPI, target with its direction, achieved, interval, verdict."""
    rows = tables.with_interval(kpi_rows(manifest)) if manifest.get("kpis") else pd.DataFrame(
        columns=["metric", "target", "direction", "achieved", "interval", "verdict"])
    if len(rows):
        rows["target"] = [f"{'≥' if d == 'higher' else '≤'} {tables.format_number(t)}"
                          for d, t in zip(rows["direction"], rows["target"], strict=True)]
        rows["achieved"] = [None if a is None or pd.isna(a) else a for a in rows["achieved"]]
    return rows[["metric", "target", "achieved", "interval", "verdict"]]


def kpi_summary(rows: list[dict[str, Any]]) -> str:
    """One line over the scoreboard: how many KPIs pass, or that none is measured yet."""
    measured = [r for r in rows if r.get("achieved") is not None]
    if not measured:
        return "targets set, not measured yet (step 4 measures them)" if rows else ""
    return f"{sum(r['verdict'] == 'pass' for r in measured)} of {len(rows)} met on the test set"


def next_actions(manifest: Mapping[str, Any], heads: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Recommended next actions, derived from what the run found."""
    actions = []
    statuses = {s["step"]: s["status"] for s in manifest.get("steps", [])}
    failed = [s for s, st in statuses.items() if st in ("failed", "interrupted")]
    if failed:
        actions.append(f"Fix the failure in step {failed[0]} (see its executed notebook) and resume the run.")
    verdict = heads.get("01_vision_and_goals", {}).get("verdict", {})
    if verdict.get("code") == "heuristic_suffices":
        actions.append("The simple rule already meets the KPIs: decide with the stakeholders whether ML is needed.")
    elif verdict.get("code") == "revisit":
        actions.append("Revisit the data or the KPI targets before investing in modelling.")
    leaks = [x["column"] for x in heads.get("01_vision_and_goals", {}).get("leakage") or []]
    if leaks:
        actions.append(f"Ask the data owners when {', '.join(leaks)} {'is' if len(leaks) == 1 else 'are'} recorded: "
                       "set aside as leakage suspects (keep_columns keeps a column known at prediction time).")
    severe = heads.get("02_data_foundation", {}).get("severe_issues") or []
    if severe:
        actions.append(f"Review the {len(severe)} severe data issue(s) with the data owners.")
    verdicts = {k["metric"]: kpis.row_verdict(k) for k in manifest.get("kpis") or [] if k.get("achieved") is not None}
    missed = [m for m, v in verdicts.items() if v == "fail"]
    if missed:
        actions.append(f"KPI(s) missed on the test set: {', '.join(missed)}. Improve data or features, or renegotiate the targets.")
    watched = [m for m, v in verdicts.items() if v == "watch"]
    if watched:
        actions.append(f"KPI(s) on watch: {', '.join(watched)} missed the target on the test set, by less than chance "
                       "can explain. Confirm on more labelled data before deploying.")
    not_run = [s for s in paths.STEP_NOTEBOOKS if s not in statuses or statuses[s] == "not_run"]
    if not_run and not failed:
        actions.append(f"Run the remaining steps ({', '.join(s[:2] for s in not_run)}) to complete the playbook.")
    if not actions:
        actions.append("All steps ran and every KPI passed: review the model card and plan the deployment.")
    return actions


def table_of_contents(parts: Sequence[Section]) -> list[tuple[str, str]]:
    """The report's contents: the summary (the first screen), then every section after it."""
    return [("summary", "Summary"), *((s.anchor, s.title) for s in parts)]


def first_screen_html(run: artifacts.Run, toc: list[tuple[str, str]] | None = None) -> str:
    """The first screen: verdict, KPI scoreboard figure, severe data issues, readiness, next actions.

    ``toc``: the table of contents (``table_of_contents`` of the sections that follow; none without it).
    """
    manifest = run.read_manifest()
    heads = headlines(run)
    step1 = run.optional_summary("01_vision_and_goals") or {}
    vision, data = heads.get("01_vision_and_goals", {}), heads.get("02_data_foundation", {})
    dataset = manifest.get("dataset") or {}
    rows = kpi_rows(manifest)
    board = kpi_scoreboard(manifest)
    context = {
        "project": manifest.get("project"), "problem": step1.get("problem_statement"),
        "data": f"{dataset.get('source')} ({tables.format_count(dataset.get('rows'))} rows, "
                f"{tables.format_count(dataset.get('columns'))} columns)",
        "target": f"{step1['target']} ({step1.get('problem_type')})" if step1.get("target") else None,
        "created": (manifest.get("created_at") or "")[:16].replace("T", " "),
        "teaching": faults.notice(manifest.get("teaching_faults")),
        "toc": toc or [],
        "verdict": vision.get("go_no_go"),
        "kpi_svg": scoreboard.svg(rows), "kpi_summary": kpi_summary(rows),
        "scoreboard_table": tables.table(board) if len(board) else None,
        "actions": next_actions(manifest, heads),
        "readiness": readiness_headline(heads),
        "issues": data.get("top_issues") or data.get("severe_issues") or [], "counts": data.get("issue_counts"),
        "severity": tables.severity_badge,
        "leaks": vision.get("leakage") or [],
        "kept": ", ".join(x["column"] for x in vision.get("leakage_kept") or []),
        "compute": heads.get("03_tools_and_stack"),
    }
    return str(sections.template("report_first_screen.html.j2").render(**context))


def readiness_headline(heads: Mapping[str, Mapping[str, Any]]) -> dict[str, Any] | None:
    """Step 5's readiness as the first screen shows it (the score as people write it: 3, 2.5)."""
    ready = heads.get("05_deployment_and_monitoring", {}).get("readiness")
    return None if not ready else {**ready, "score": tables.format_number(ready.get("score"))}


def steps_table(manifest: Mapping[str, Any]) -> Markup:
    """Every step of the run: title, status, time, a link to its executed notebook."""
    rows = [{"step": STEP_TITLES.get(s["step"], s["step"]), "status": s["status"], "duration_s": s.get("duration_s"),
             "notebook": Markup('<a href="{0}">{0}</a>').format(s["notebook"]) if s.get("output") else s["notebook"]}
            for s in manifest.get("steps", [])]
    return tables.table(rows, ["step", "status", "duration_s", "notebook"], caption="Steps")


def run_section(run: artifacts.Run) -> Section:
    """The last section: what ran, how long it took, where its notebooks are."""
    manifest = run.read_manifest()
    steps = manifest.get("steps", [])
    done = sum(s["status"] in ("succeeded", "reused") for s in steps)
    total = sum(s.get("duration_s") or 0 for s in steps)
    takeaway = f"{done} of {len(steps)} steps finished, in {tables.format_seconds(total)} of step time."
    command = manifest.get("command")
    body = [steps_table(manifest)]
    if command:
        body.append(sections.paragraph(" ".join(command) if isinstance(command, list) else command, lead="Command"))
    return Section("run", "The run", takeaway, body=body, links=[("manifest", "manifest.json"),
                                                                 ("parameters (project.yaml)", "project.yaml")])


# The one place for sections after the steps' (e.g. "since the last run of this project"): each callable
# takes the run and returns a Section (``sections.markdown_section`` wraps Markdown text) or None when it
# has nothing to say. The table of contents lists what they return.
def since_last_run_section(run: artifacts.Run) -> Section | None:
    """What changed since the last run of this project in the same runs folder (``history.last_run_change``)."""
    change = history.last_run_change(run.path)
    if change is None:
        return None
    opening, body = change
    return sections.markdown_section("since-last-run", history.SINCE_LAST_RUN, opening.replace("`", ""), body)


EXTRA_SECTIONS: list[Callable[[artifacts.Run], Section | None]] = [since_last_run_section]


def step_sections(run: artifacts.Run) -> list[Section]:
    """One section per step that produced a summary; a section that fails names its step."""
    out = []
    for step in (s.id for s in registry.STEPS):
        if not run.has_summary(step):
            continue
        module = registry.load(step)
        try:
            out.append(module.report_section(run))
        except Exception as exc:
            raise RuntimeError(f"Step {step}: its report section could not be built "
                               f"({type(exc).__name__}: {exc}).") from exc
    return out


def extra_sections(run: artifacts.Run) -> list[Section]:
    """What ``EXTRA_SECTIONS`` have to say about this run."""
    return [s for build in EXTRA_SECTIONS if (s := build(run)) is not None]


def report_parts(run: artifacts.Run) -> list[Section]:
    """Every section after the first screen, in order: the steps', the extra ones, the run's."""
    return [*step_sections(run), *extra_sections(run), run_section(run)]


def _no_run(run_dir: str) -> bool:
    if not run_dir or not artifacts.Run(run_dir).has_manifest():
        display(Markdown(f"No run folder to report on (run_dir = {run_dir!r}): run `playbook run` first, "
                         "or `playbook report RUN_DIR`."))
        return True
    return False


def show_report(run_dir: str) -> None:
    """The whole report: the first screen, then every step's section, the extra sections and the run."""
    if _no_run(run_dir):
        return
    run = artifacts.Run(run_dir)
    parts = report_parts(run)
    display(HTML(first_screen_html(run, table_of_contents(parts))))
    for section in parts:
        display(HTML(str(section.render())))


def show_first_screen(run_dir: str) -> None:
    if not _no_run(run_dir):
        display(HTML(first_screen_html(artifacts.Run(run_dir))))


def show_sections(run_dir: str) -> None:
    """One section per step that produced a summary; a section that fails names its step."""
    if not run_dir:
        return
    for section in step_sections(artifacts.Run(run_dir)):
        display(HTML(str(section.render())))


# --- building -------------------------------------------------------------------------------

_EXTERNAL = re.compile(r"<script[^>]+src=[\"']https?://[^>]*>\s*</script>|<link[^>]+href=[\"']https?://[^>]*>", re.I)


def offline_html(body: str) -> str:
    """Remove every script or stylesheet nbconvert's template loads from a CDN."""
    return _EXTERNAL.sub("", body)


def export_html(notebook_path: Path) -> str:
    """The executed report notebook as one offline page: nbconvert's output cells in ``templates/report.html.j2``."""
    import nbformat
    from nbconvert import HTMLExporter  # local: about 1 s to import, only HTML export needs it

    # "basic": the cells' outputs without JupyterLab's 300 KB of CSS; the page and its print CSS are ours
    exporter = HTMLExporter(template_name="basic", template_file="report.html.j2",
                            extra_template_paths=[str(paths.templates_dir())],
                            exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)
    nb = nbformat.read(str(notebook_path), as_version=4)
    nb.metadata.pop("widgets", None)  # widget state would pull the widget renderer from a CDN
    project = artifacts.Run(notebook_path.parent).read_manifest().get("project") if (
        notebook_path.parent / "manifest.json").exists() else None
    body, _ = exporter.from_notebook_node(nb, resources={"report_title": f"ML project report: {project or 'run'}"})
    return offline_html(body)


def build_report(run: artifacts.Run, *, html: bool = True, kernel_name: str | None = None,
                 timeout: float | None = None) -> Path:
    """Execute the report notebook into the run folder and export it to HTML."""
    # local: papermill costs ~1.4 s to import, and the report notebook's kernel imports this module
    # for its sections without ever building a report
    from helpers.run import engine

    registry.load_all()  # a broken step module stops here, named, before any kernel starts
    output = run.path / "report.ipynb"
    source = paths.notebooks_dir() / "report.ipynb"
    with artifacts.atomic_path(output) as tmp:
        if kernel_name is None:
            with engine.playbook_kernel() as kernel:
                _execute_report(source, tmp, run, kernel, timeout)
        else:
            _execute_report(source, tmp, run, kernel_name, timeout)
    fields: dict[str, Any] = {"notebook": "report.ipynb", "html": None}
    if html:
        artifacts.write_text(run.path / "report.html", export_html(output))
        fields["html"] = "report.html"
    run.update_manifest(report=fields)
    return output


def _execute_report(source: Path, output: Path, run: artifacts.Run, kernel: str, timeout: float | None) -> None:
    from helpers.run import engine  # local: see build_report
    engine.execute_notebook(source, output, parameters={"run_dir": str(run.path)}, kernel_name=kernel,
                            progress_bar=False, log_output=False, execution_timeout=timeout)


# --- PDF (the system Chromium, never a downloaded browser) ---------------------------------------------

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# headless, and nothing that reaches the network on its own (the report itself loads nothing)
CHROMIUM_PDF_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync",
                      "--disable-background-networking", "--disable-component-update", "--no-pdf-header-footer")
PDF_TIMEOUT_S = 120


def chromium() -> str:
    """The system Chromium (``PLAYBOOK_CHROMIUM``, else the first of ``CHROMIUM_NAMES`` on PATH)."""
    given = os.environ.get("PLAYBOOK_CHROMIUM")
    found = given if given and os.access(given, os.X_OK) and Path(given).is_file() else None
    found = found or (None if given else next((p for n in CHROMIUM_NAMES if (p := shutil.which(n))), None))
    if not found:
        where = f"PLAYBOOK_CHROMIUM={given!r} is not an executable file" if given else \
            f"none of {', '.join(CHROMIUM_NAMES)} is on PATH"
        raise PlaybookError(f"--pdf needs the system Chromium, and {where}.",
                            "install it (`apt-get install chromium`) or set PLAYBOOK_CHROMIUM to its path; "
                            "report.html prints to PDF from any browser too.")
    return found


def write_pdf(run: artifacts.Run, browser: str | None = None) -> Path:
    """Print ``report.html`` to ``report.pdf`` with headless Chromium (its print CSS; details opened for print)."""
    source = run.path / "report.html"
    if not source.exists():
        raise PlaybookError(f"{source} does not exist.", f"build it first: `playbook report {run.path}`.")
    target = run.path / "report.pdf"
    with artifacts.atomic_path(target) as tmp:
        cmd = [browser or chromium(), *CHROMIUM_PDF_FLAGS, f"--print-to-pdf={tmp}", source.resolve().as_uri()]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=PDF_TIMEOUT_S, stdin=subprocess.DEVNULL)
        if done.returncode != 0 or not Path(tmp).exists() or Path(tmp).read_bytes()[:4] != b"%PDF":
            raise RuntimeError(f"Chromium could not print the report (exit {done.returncode}): {done.stderr[-800:]}")
    run.update_manifest(report={**(run.read_manifest().get("report") or {}), "pdf": "report.pdf"})
    return target
