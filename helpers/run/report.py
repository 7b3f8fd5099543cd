"""The run report: first screen for stakeholders, then one section per step that ran.

``build_report`` executes ``playbook/report.ipynb`` (parameterized by the run folder)
with papermill and exports it with nbconvert to a code-free, offline HTML file.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
from IPython.display import HTML, Markdown, display

from helpers.core import artifacts, kpis, paths
from helpers.run import registry

STEP_TITLES = registry.TITLES


def _esc(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def headlines(run: artifacts.Run) -> dict[str, dict[str, Any]]:
    """First-screen facts each step that ran offers (``headline(run)`` of its module)."""
    out: dict[str, dict[str, Any]] = {}
    for step in (s.id for s in registry.STEPS):
        if run.has_summary(step):
            out[step] = registry.load(step).headline(run) or {}
    return out


def kpi_scoreboard(manifest: Mapping[str, Any]) -> pd.DataFrame:
    """The manifest's KPIs with their verdict (``kpis.row_verdict``): PASS, WATCH (the point misses, the
    interval contains the target) or FAIL (the interval excludes it)."""
    rows = []
    for k in manifest.get("kpis") or []:
        interval = ""
        if k.get("ci_low") is not None and k.get("ci_high") is not None:
            interval = f"{k['ci_low']:.3f} to {k['ci_high']:.3f}"
        verdict = kpis.row_verdict(k)
        rows.append({"KPI": k["metric"], "target": f"{'>=' if k.get('direction') == 'higher' else '<='} {k['target']:g}",
                     "achieved": "not measured yet" if k.get("achieved") is None else f"{k['achieved']:.3f}",
                     "95% interval": interval, "result": "-" if verdict is None else verdict.upper()})
    return pd.DataFrame(rows)


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


def first_screen_html(run: artifacts.Run) -> str:
    """The first screen: project, verdict, leakage suspects, KPI scoreboard, severe issues, readiness, next actions."""
    manifest = run.read_manifest()
    heads = headlines(run)
    step1 = run.optional_summary("01_vision_and_goals") or {}
    parts = [f"<h1>ML project report: {_esc(manifest.get('project'))}</h1>"]
    if step1.get("problem_statement"):
        parts.append(f"<p><b>Problem:</b> {_esc(step1['problem_statement'])}</p>")
    dataset = manifest.get("dataset") or {}
    parts.append(f"<p><b>Data:</b> {_esc(dataset.get('source'))} ({_esc(dataset.get('rows'))} rows, "
                 f"{_esc(dataset.get('columns'))} columns); <b>target:</b> {_esc(step1.get('target'))} "
                 f"({_esc(step1.get('problem_type'))})</p>")
    verdict = heads.get("01_vision_and_goals", {}).get("verdict")
    if verdict:
        parts.append(f"<p><b>Go / no-go (step 1):</b> {_esc(verdict['code'])}: {_esc(verdict['text'])}</p>")
    leaks = heads.get("01_vision_and_goals", {}).get("leakage")
    if leaks:
        items = "".join(f"<li><b>{_esc(x['column'])}</b>: {_esc(x['evidence'])}. <i>Fix:</i> {_esc(x['fix'])}.</li>"
                        for x in leaks)
        parts.append(f"<h3>Leakage suspects set aside (step 1)</h3><ul>{items}</ul>")
    kept = heads.get("01_vision_and_goals", {}).get("leakage_kept")
    if kept:
        parts.append("<p><b>Kept by keep_columns although they score like leaks:</b> "
                     f"{_esc(', '.join(x['column'] for x in kept))} (check when they are recorded)</p>")
    board = kpi_scoreboard(manifest)
    if len(board):
        parts.append("<h3>KPI scoreboard</h3>" + board.to_html(index=False, escape=True))
    severe = heads.get("02_data_foundation", {}).get("severe_issues")
    if severe:
        items = "".join(f"<li>{_esc(i.get('check'))} — {_esc(i.get('column'))}: {_esc(i.get('evidence'))}</li>" for i in severe[:5])
        parts.append(f"<h3>Most severe data issues</h3><ul>{items}</ul>")
    stack = heads.get("03_tools_and_stack", {})
    if stack.get("compute"):
        parts.append(f"<p><b>Compute (step 3):</b> {_esc(stack['compute'])} "
                     f"(slowest family to train: {_esc(stack.get('slowest_family'))})</p>")
    readiness = heads.get("05_deployment_and_monitoring", {}).get("readiness")
    if readiness:
        parts.append(f"<p><b>Production readiness (ML Test Score):</b> {_esc(readiness.get('score'))} — "
                     f"{_esc(readiness.get('band'))}</p>")
    actions = "".join(f"<li>{_esc(a)}</li>" for a in next_actions(manifest, heads))
    parts.append(f"<h3>Recommended next actions</h3><ol>{actions}</ol>")
    parts.append("<h3>Steps</h3>" + steps_table(manifest).to_html(index=False, escape=False))
    return "\n".join(parts)


def steps_table(manifest: Mapping[str, Any]) -> pd.DataFrame:
    rows = []
    for s in manifest.get("steps", []):
        link = f"<a href='{_esc(s['notebook'])}'>{_esc(s['notebook'])}</a>" if s.get("output") else _esc(s["notebook"])
        rows.append({"step": _esc(STEP_TITLES.get(s["step"], s["step"])), "status": _esc(s["status"]),
                     "time (s)": "" if s.get("duration_s") is None else f"{s['duration_s']:.1f}", "notebook": link})
    return pd.DataFrame(rows)


def show_first_screen(run_dir: str) -> None:
    if not run_dir or not artifacts.Run(run_dir).has_manifest():
        display(Markdown(f"No run folder to report on (run_dir = {run_dir!r}): run `playbook run` first, "
                         "or `playbook report RUN_DIR`."))
        return
    display(HTML(first_screen_html(artifacts.Run(run_dir))))


def show_sections(run_dir: str) -> None:
    """One section per step that produced a summary; a section that fails names its step."""
    if not run_dir:
        return
    run = artifacts.Run(run_dir)
    for step in (s.id for s in registry.STEPS):
        if not run.has_summary(step):
            continue
        module = registry.load(step)
        try:
            module.report_section(run)
        except Exception as exc:
            raise RuntimeError(f"Step {step}: its report section could not be built "
                               f"({type(exc).__name__}: {exc}).") from exc


# --- building -------------------------------------------------------------------------------

_EXTERNAL = re.compile(r"<script[^>]+src=[\"']https?://[^>]*>\s*</script>|<link[^>]+href=[\"']https?://[^>]*>", re.I)


def offline_html(body: str) -> str:
    """Remove every script or stylesheet nbconvert's template loads from a CDN."""
    return _EXTERNAL.sub("", body)


def export_html(notebook_path: Path) -> str:
    import nbformat
    from nbconvert import HTMLExporter  # local: about 1 s to import, only HTML export needs it

    exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)
    nb = nbformat.read(str(notebook_path), as_version=4)
    nb.metadata.pop("widgets", None)  # widget state would pull the widget renderer from a CDN
    body, _ = exporter.from_notebook_node(nb)
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
