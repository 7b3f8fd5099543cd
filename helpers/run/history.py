"""The history of a runs folder: ``playbook runs`` lists it, ``playbook compare`` says what changed.

Everything is read from the run folders (manifest, step summaries, step 4's per-row test
predictions); nothing is re-run. A KPI difference is judged against chance with a paired bootstrap
when both runs scored the same test rows (``monitoring.compare_models``, the comparison step 5 uses
for champion and challenger); otherwise the comparison says why it is not paired.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from helpers.core import artifacts, documents, kpis, paths
from helpers.core.errors import PlaybookError
from helpers.run.tracking import run_status
from helpers.steps.modeling import PREDICTIONS_FILE
from helpers.steps.operations.monitoring import compare_models

S1, S2, S3, S4, S5 = paths.STEP_NOTEBOOKS
N_BOOT = 1000  # resamples of the paired bootstrap (binary and regression KPIs are vectorised: well under 1 s)
HIDDEN_PARAMETERS = ("run_dir", "interactive")


# --- one run, read ------------------------------------------------------------------------------------


@dataclass
class RunRecord:
    """A finished (or partial) run folder as the history sees it."""

    run: artifacts.Run
    manifest: dict[str, Any]

    @property
    def name(self) -> str:
        return self.run.path.name

    def summary(self, step: str) -> dict[str, Any]:
        return self._summaries.get(step) or {}

    @cached_property
    def _summaries(self) -> dict[str, dict[str, Any]]:
        out = {}
        for step in paths.STEP_NOTEBOOKS:
            try:
                out[step] = self.run.optional_summary(step) or {}
            except PlaybookError:  # a damaged summary: that step's findings are unknown, the rest is not
                out[step] = {}
        return out

    @property
    def created_at(self) -> str:
        return str(self.manifest.get("created_at") or "")

    @property
    def parameters(self) -> dict[str, Any]:
        return {k: v for k, v in (self.manifest.get("parameters") or {}).items() if k not in HIDDEN_PARAMETERS}

    @property
    def project(self) -> str | None:
        return self.manifest.get("project") or self.parameters.get("project_name")

    @property
    def target(self) -> str | None:
        return self.summary(S1).get("target") or self.summary(S2).get("target") or self.parameters.get("target")

    @property
    def problem_type(self) -> str | None:
        return (self.summary(S1).get("problem_type") or self.summary(S2).get("problem_type")
                or self.parameters.get("problem_type"))

    @property
    def dataset(self) -> dict[str, Any]:
        return self.manifest.get("dataset") or {}

    @property
    def champion(self) -> str:
        c = self.manifest.get("champion") or {}
        return f"{c['family']} v{c.get('version', 1)}" if c.get("family") else "-"

    @property
    def kpis(self) -> list[dict[str, Any]]:
        return [k for k in self.manifest.get("kpis") or [] if k.get("metric")]

    @property
    def status(self) -> str:
        return run_status(self.manifest)

    def predictions(self) -> pd.DataFrame | None:
        """Step 4's per-row test predictions, or None when this run has none."""
        path = self.run.artifacts / S4 / PREDICTIONS_FILE
        return pd.read_parquet(path) if path.is_file() else None


def load_run(path: str | os.PathLike) -> RunRecord:
    """A run folder's record; a folder that is not a run or a damaged manifest is one clear error."""
    run = artifacts.Run(path)
    if not run.path.is_dir():
        raise PlaybookError(f"{str(path)!r} is not a folder.", "give a run folder made by `playbook run` (see `playbook runs`).")
    if not run.has_manifest():
        raise PlaybookError(f"{str(path)!r} is not a run folder (no manifest.json).",
                            "give a run folder made by `playbook run` (see `playbook runs`).")
    try:
        manifest = run.read_manifest()
    except PlaybookError:
        manifest = None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("steps"), list) \
            or not isinstance(manifest.get("kpis") or [], list):
        raise PlaybookError(f"The manifest of {str(path)!r} is damaged (not the JSON object `playbook run` writes).",
                            "leave this run out, or re-run it (`playbook run -f <run>/project.yaml`).")
    return RunRecord(run, manifest)


# --- playbook runs ---------------------------------------------------------------------------------------


def kpi_outcome(kpi_rows: Sequence[Mapping[str, Any]]) -> str:
    """``3/3 pass`` or ``2/3 pass, 1 fail``: each KPI's verdict (``kpis.row_verdict``)."""
    verdicts = [kpis.row_verdict(k) for k in kpi_rows if k.get("achieved") is not None]
    if not verdicts:
        return "not measured"
    counts = pd.Series(verdicts).value_counts()
    text = f"{counts.get('pass', 0)}/{len(verdicts)} pass"
    others = [f"{n} {v}" for v, n in counts.items() if v != "pass"]
    return ", ".join([text, *others])


def list_runs(folder: str | os.PathLike = "runs") -> pd.DataFrame:
    """One row per run folder inside ``folder``, oldest first; a damaged manifest is listed as such."""
    root = Path(folder)
    if not root.is_dir():
        raise PlaybookError(f"{str(folder)!r} is not a folder.", "give the folder that holds the run folders (default: runs).")
    rows = []
    for path in sorted(p for p in root.iterdir() if (p / artifacts.MANIFEST).is_file()):
        try:
            r = load_run(path)
        except PlaybookError:
            rows.append({"run": path.name, "date": "", "data": "", "champion": "", "KPIs": "",
                         "status": "damaged manifest"})
            continue
        sha, rows_n = r.dataset.get("sha256"), r.dataset.get("rows")
        rows.append({"run": r.name, "date": r.created_at.replace("T", " ").replace("+00:00", " UTC"),
                     "data": f"{sha[:12]} ({rows_n:,} rows)" if sha and rows_n is not None else "-",
                     "champion": r.champion, "KPIs": kpi_outcome(r.kpis), "status": r.status})
    table = pd.DataFrame(rows, columns=["run", "date", "data", "champion", "KPIs", "status"])
    return table.sort_values(["date", "run"], kind="stable", ignore_index=True)


def text_table(table: pd.DataFrame) -> str:
    """A table as left-aligned plain text (pandas right-aligns text, which reads badly for names)."""
    cells = table.astype(str)
    widths = {c: max([len(str(c)), *cells[c].str.len()]) for c in cells.columns}
    lines = ["  ".join(str(c).ljust(widths[c]) for c in cells.columns)]
    lines += ["  ".join(v.ljust(widths[c]) for c, v in zip(cells.columns, row, strict=True)).rstrip()
              for row in cells.itertuples(index=False)]
    return "\n".join(lines)


def runs_table_text(table: pd.DataFrame) -> str:
    if table.empty:
        return "No runs in this folder."
    return text_table(table)


# --- playbook compare ---------------------------------------------------------------------------------------


@dataclass
class Comparison:
    """What changed between runs (the first is the base), section by section."""

    runs: list[RunRecord]
    parameters: pd.DataFrame
    data: pd.DataFrame
    issues: pd.DataFrame
    verdicts: pd.DataFrame
    champion: pd.DataFrame
    kpis: pd.DataFrame
    notes: list[str] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [r.name for r in self.runs]


def compare_runs(paths_: Sequence[str | os.PathLike], *, n_boot: int = N_BOOT, seed: int = 0) -> Comparison:
    """Compare runs of one problem (same problem type and target); the first is the base."""
    if len(paths_) < 2:
        raise PlaybookError("compare needs at least two run folders.", "give two or more: playbook compare RUN_A RUN_B.")
    runs = [load_run(p) for p in paths_]
    names = [r.name for r in runs]
    if len(set(names)) < len(names):
        raise PlaybookError(f"The same run is given twice ({', '.join(n for n in names if names.count(n) > 1)}).",
                            "give each run folder once.")
    check_comparable(runs)
    kpi_table, notes = kpi_comparison(runs, n_boot=n_boot, seed=seed)
    return Comparison(runs, parameter_changes(runs), data_table(runs), issue_table(runs), verdict_table(runs),
                      _wide("", {"champion": [r.champion for r in runs],
                                 "parameters": [_text((r.summary(S4).get("champion") or {}).get("params")) for r in runs]},
                            names),
                      kpi_table, notes)


def check_comparable(runs: Sequence[RunRecord]) -> None:
    base = runs[0]
    for other in runs[1:]:
        for what in ("problem_type", "target"):
            a, b = getattr(base, what), getattr(other, what)
            if a != b:
                raise PlaybookError(f"The runs answer different questions: {base.name} has {what} {a!r}, "
                                    f"{other.name} has {b!r}.",
                                    "compare runs of the same problem (same problem type and target).")


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={_text(v)}" for k, v in value.items()) or "-"
    if isinstance(value, (list, tuple)):
        return ", ".join(map(_text, value)) or "[]"
    return str(value)


def _wide(label: str, rows: Mapping[str, Sequence[Any]], names: Sequence[str]) -> pd.DataFrame:
    """A table with one row per entry of ``rows`` and one column per run."""
    frame = pd.DataFrame([[key, *values] for key, values in rows.items()], columns=[label or "what", *names])
    return frame


def parameter_changes(runs: Sequence[RunRecord]) -> pd.DataFrame:
    """The parameters whose values differ between the runs."""
    keys = list(dict.fromkeys(k for r in runs for k in r.parameters))
    changed = {k: [_text(r.parameters.get(k)) for r in runs] for k in keys
               if len({_text(r.parameters.get(k)) for r in runs}) > 1}
    return _wide("parameter", changed, [r.name for r in runs])


def data_table(runs: Sequence[RunRecord]) -> pd.DataFrame:
    split = [r.summary(S2).get("split") or {} for r in runs]
    return _wide("data", {
        "source": [_text(r.dataset.get("source")) for r in runs],
        "sha256": [(r.dataset.get("sha256") or "-")[:16] for r in runs],
        "rows": [_text(r.dataset.get("rows")) for r in runs],
        "columns": [_text(r.dataset.get("columns")) for r in runs],
        "test rows": [_text(s.get("test_rows_cleaned", s.get("test_rows"))) for s in split],
    }, [r.name for r in runs])


def _issues(run: RunRecord) -> set[tuple[str, str, str]]:
    return {(str(i.get("severity")), str(i.get("check")), str(i.get("column")))
            for i in run.summary(S2).get("issues") or []}


def issue_table(runs: Sequence[RunRecord]) -> pd.DataFrame:
    """Data issues per severity, and those that appeared or went away since the base."""
    rows: dict[str, list[Any]] = {}
    for severity in ("high", "medium", "low"):
        rows[f"{severity} issues"] = [_text((r.summary(S2).get("issue_counts") or {}).get(severity)) for r in runs]
    base = _issues(runs[0])
    rows["new since base"] = ["-"] + ["; ".join(f"{c} ({col}, {s})" for s, c, col in sorted(_issues(r) - base)) or "none"
                                      for r in runs[1:]]
    rows["gone since base"] = ["-"] + ["; ".join(f"{c} ({col}, {s})" for s, c, col in sorted(base - _issues(r))) or "none"
                                       for r in runs[1:]]
    return _wide("data issues", rows, [r.name for r in runs])


def verdict_table(runs: Sequence[RunRecord]) -> pd.DataFrame:
    """Step 1's go/no-go, each KPI's verdict, step 5's gate and readiness, and the run's status."""
    metrics = list(dict.fromkeys(k["metric"] for r in runs for k in r.kpis))
    by_run = [{k["metric"]: kpis.row_verdict(k) for k in r.kpis if k.get("achieved") is not None} for r in runs]
    rows = {"go/no-go (step 1)": [(r.summary(S1).get("verdict") or {}).get("code", "-") for r in runs]}
    rows.update({f"KPI {m}": [(v.get(m) or "-").upper() for v in by_run] for m in metrics})
    rows["quality gate (step 5)"] = [(r.summary(S5).get("gate") or {}).get("result", "-") for r in runs]
    rows["readiness (step 5)"] = [_text((r.summary(S5).get("readiness") or {}).get("final")) for r in runs]
    rows["status"] = [r.status for r in runs]
    return _wide("verdict", rows, [r.name for r in runs])


# --- KPIs, paired on the same test rows -----------------------------------------------------------------------


def pairing(base: RunRecord, other: RunRecord) -> tuple[pd.DataFrame | None, pd.DataFrame | None, str]:
    """Both runs' per-row predictions aligned on the same test rows, or (None, None, why not paired)."""
    if base.problem_type == "clustering":
        return None, None, "clustering KPIs are scores of the whole clustering, not of rows"
    a, b = base.predictions(), other.predictions()
    missing = [r.name for r, p in ((base, a), (other, b)) if p is None]
    if missing:
        return None, None, f"{' and '.join(missing)} saved no per-row test predictions (step 4 did not run, or an older run)"
    if base.dataset.get("sha256") != other.dataset.get("sha256"):
        return None, None, "the runs read different data (another SHA-256): their test rows are not the same rows"
    if len(a) != len(b) or not a.index.sort_values().equals(b.index.sort_values()):
        return None, None, "the runs held out different test rows (another split: seed, test_size or cleaning)"
    b = b.loc[a.index]
    if not (a["actual"].astype(str).to_numpy() == b["actual"].astype(str).to_numpy()).all():
        return None, None, "the same test rows carry different labels (another cleaning of the target)"
    return a, b, ""


def _predicted(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray | None]:
    """(labels, proba) as ``kpis.score`` takes them: the positive column (binary) or the class columns."""
    columns = [c for c in frame.columns if c == "proba" or c.startswith("proba:")]
    proba = None if not columns else frame[columns[0]].to_numpy(float) if columns == ["proba"] \
        else frame[columns].to_numpy(float)
    return frame["predicted"].to_numpy(), proba


def kpi_comparison(runs: Sequence[RunRecord], *, n_boot: int = N_BOOT, seed: int = 0) -> tuple[pd.DataFrame, list[str]]:
    """Each KPI of each run with its interval, and each later run's difference from the base: the paired
    bootstrap interval of the difference on the same test rows, and whether it is larger than chance."""
    base = runs[0]
    contract = kpis.KpiContract.from_dict(base.summary(S1)["contract"]) if base.summary(S1).get("contract") else None
    rows, notes = [], []
    for other in runs[1:]:
        a, b, why = pairing(base, other)
        if why:
            notes.append(f"{other.name} vs {base.name}: not paired: {why}; only the intervals can be compared.")
        for k in base.kpis:
            metric = k["metric"]
            theirs = next((x for x in other.kpis if x["metric"] == metric), {})
            row = {"KPI": metric, "run": other.name, "target": k.get("target"),
                   "base": k.get("achieved"), "base interval": _interval(k),
                   "this run": theirs.get("achieved"), "interval": _interval(theirs),
                   "difference": None if theirs.get("achieved") is None or k.get("achieved") is None
                   else theirs["achieved"] - k["achieved"]}
            if a is not None and contract is not None and metric in contract.kpis:
                result = compare_models(contract, metric, a["actual"].to_numpy(), _predicted(a), _predicted(b),
                                        margin=0.0, n_boot=n_boot, seed=seed)
                sign = 1.0 if contract.direction(metric) == "higher" else -1.0
                lo, hi = sorted((sign * result["gain_ci_low"], sign * result["gain_ci_high"]))
                row.update({"paired interval": f"{lo:+.3f} to {hi:+.3f}", "larger than chance": _chance(result)})
            else:
                row.update({"paired interval": "-", "larger than chance": "not paired"})
            rows.append(row)
    return pd.DataFrame(rows), notes


def _interval(k: Mapping[str, Any]) -> str:
    if k.get("ci_low") is None or k.get("ci_high") is None:
        return "-"
    return f"{k['ci_low']:.3f} to {k['ci_high']:.3f}"


def _chance(result: Mapping[str, Any]) -> str:
    """``yes: better``/``yes: worse`` when the paired interval of the gain excludes 0, else ``no``."""
    lo, hi = result["gain_ci_low"], result["gain_ci_high"]
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "undefined"
    if lo > 0:
        return "yes: better"
    if hi < 0:
        return "yes: worse"
    return "no"


# --- rendering --------------------------------------------------------------------------------------------------------


def sections(comparison: Comparison) -> list[tuple[str, pd.DataFrame]]:
    return [("Parameters that changed", comparison.parameters), ("Data", comparison.data),
            ("Data issues", comparison.issues), ("Verdicts", comparison.verdicts),
            ("Champion", comparison.champion), ("KPIs (difference from the base run)", _shown_kpis(comparison.kpis))]


def _shown_kpis(table: pd.DataFrame) -> pd.DataFrame:
    shown = table.copy()
    for column in ("target", "base", "this run"):
        if column in shown:
            shown[column] = [_number(v, ".3f" if column != "target" else "g") for v in shown[column]]
    if "difference" in shown:
        shown["difference"] = [_number(v, "+.3f") for v in shown["difference"]]
    return shown


def _number(value: Any, spec: str) -> str:
    return "-" if value is None or (isinstance(value, float) and not np.isfinite(value)) else format(value, spec)


def comparison_text(comparison: Comparison) -> str:
    """The comparison as plain-text tables (the command line)."""
    out = [f"Base run: {comparison.names[0]}; compared: {', '.join(comparison.names[1:])}", ""]
    for title, table in sections(comparison):
        out.append(title)
        out.append(text_table(table) if len(table) else "  (no differences)")
        out.append("")
    out += comparison.notes
    return "\n".join(out).rstrip() + "\n"


def comparison_html(comparison: Comparison) -> str:
    """The comparison as one offline HTML page (``templates/compare.html.j2``; every value escaped)."""
    template = documents.environment(markup=True).get_template("compare.html.j2")
    return template.render(names=comparison.names, notes=comparison.notes,
                           sections=[(title, list(t.columns), t.astype(str).to_numpy().tolist())
                                     for title, t in sections(comparison)])


def write_comparison_html(comparison: Comparison, path: str | os.PathLike) -> Path:
    return artifacts.write_text(path, comparison_html(comparison))


# --- since the last run (for the report) ---------------------------------------------------------------------------


def previous_run(run_dir: str | os.PathLike) -> RunRecord | None:
    """The latest earlier run of the same project and target in the same runs folder (None: the first)."""
    this = load_run(run_dir)
    earlier = []
    for path in this.run.path.parent.iterdir():
        if path == this.run.path or not (path / artifacts.MANIFEST).is_file():
            continue
        try:
            other = load_run(path)
        except PlaybookError:  # a damaged neighbour is not this run's history
            continue
        if (other.project, other.target) == (this.project, this.target) and other.created_at < this.created_at:
            earlier.append(other)
    return max(earlier, key=lambda r: (r.created_at, r.name)) if earlier else None


SINCE_LAST_RUN = "Since the last run of this project"


def since_last_run(run_dir: str | os.PathLike, *, n_boot: int = N_BOOT) -> str | None:
    """A short Markdown section: what changed since the last run of this project (None: no earlier run)."""
    change = last_run_change(run_dir, n_boot=n_boot)
    if change is None:
        return None
    opening, body = change
    return f"### {SINCE_LAST_RUN}\n\n{opening}\n" + (f"\n{body}\n" if body else "")


def last_run_change(run_dir: str | os.PathLike, *, n_boot: int = N_BOOT) -> tuple[str, str] | None:
    """What changed since the last run of this project: its opening sentence and the Markdown lines after it."""
    before = previous_run(run_dir)
    if before is None:
        return None
    try:
        c = compare_runs([before.run.path, run_dir], n_boot=n_boot)
    except PlaybookError as exc:  # e.g. the problem type changed: say so instead of comparing
        return f"The last run, `{before.name}`, is not comparable: {exc}", ""
    lines = []
    changed = c.parameters["parameter"].tolist()
    lines.append(f"- **Parameters:** {', '.join(f'`{p}`' for p in changed) if changed else 'unchanged'}.")
    data = c.data.set_index("data")
    same = data.loc["sha256"].iloc[0] == data.loc["sha256"].iloc[1]
    lines.append(f"- **Data:** {'the same' if same else 'changed'} ({data.loc['rows'].iloc[0]} -> "
                 f"{data.loc['rows'].iloc[1]} rows).")
    champions = c.champion.set_index("what").loc["champion"]
    lines.append(f"- **Champion:** {champions.iloc[1]}" + (" (unchanged)." if champions.iloc[0] == champions.iloc[1]
                                                             else f" (was {champions.iloc[0]})."))
    for row in _shown_kpis(c.kpis).to_dict(orient="records"):
        lines.append(f"- **{row['KPI']}:** {row['base']} -> {row['this run']} ({row['difference']}); "
                     f"larger than chance: {row['larger than chance']}.")
    lines += ["", *c.notes] if c.notes else []
    return f"Compared with `{before.name}` ({before.created_at.replace('T', ' ')}):", "\n".join(lines)
