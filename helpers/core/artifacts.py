"""The run folder: manifest, step summaries and artifacts, all written atomically.

Steps read what earlier steps wrote only through this module (never by guessing
paths). Every write goes to a temporary file in the same folder, then ``os.replace``
renames it, so a crash never leaves a half-written file behind.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import math
import os
import platform
import tempfile
import weakref
from collections.abc import Iterator, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from helpers.core.errors import PlaybookError
from helpers.core.paths import STEP_NOTEBOOKS

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
RAW_SNAPSHOT = "raw.parquet"
PROJECT_FILE = "project.yaml"
STEP_STATUSES = ("running", "succeeded", "failed", "interrupted", "reused", "not_run")


# --- atomic writes ----------------------------------------------------------------


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it over ``path`` on success.

    The temporary name keeps the suffix (``.tmp.parquet``), since some writers go by it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def to_jsonable(obj: Any) -> Any:
    """Make numpy/pandas values JSON-serialisable (NaN and inf become null)."""
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, pd.DataFrame):
        return to_jsonable(obj.to_dict(orient="records"))
    if isinstance(obj, pd.Series):
        return to_jsonable(obj.to_dict())
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, (dt.datetime, dt.date, pd.Timestamp)):
        return obj.isoformat()
    if isinstance(obj, Path):
        return str(obj)
    if obj is pd.NA or obj is pd.NaT:
        return None
    return obj


def write_json(path: str | os.PathLike, data: Any) -> Path:
    return write_text(path, json.dumps(to_jsonable(data), indent=2, ensure_ascii=False) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise PlaybookError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno}).",
                            "the file is damaged: re-run the step that writes it.") from None


def write_parquet(path: str | os.PathLike, frame: pd.DataFrame) -> Path:
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=True)
    return Path(path)


# --- run folders ---------------------------------------------------------------------


def interactive_run_dir() -> Path:
    """The scratch run folder of notebooks opened in JupyterLab (may be overwritten)."""
    env = os.environ.get("PLAYBOOK_RUN_DIR")
    if env:
        return Path(env)
    cwd = Path.cwd()
    base = cwd.parent if (cwd / "01_vision_and_goals.ipynb").exists() else cwd
    return base / "runs" / "interactive"


class Run:
    """One run folder. Opening it never deletes anything."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path).resolve()

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"

    # paths
    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST

    @property
    def artifacts(self) -> Path:
        return self.path / "artifacts"

    @property
    def raw_snapshot_path(self) -> Path:
        return self.artifacts / RAW_SNAPSHOT

    def step_dir(self, step: str) -> Path:
        folder = self.artifacts / step
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def models_dir(self, version: int) -> Path:
        return self.path / "models" / f"v{version}"

    # manifest
    def has_manifest(self) -> bool:
        return self.manifest_path.exists()

    def read_manifest(self) -> dict[str, Any]:
        if not self.has_manifest():
            return empty_manifest()
        return read_json(self.manifest_path)

    def write_manifest(self, manifest: Mapping[str, Any]) -> None:
        write_json(self.manifest_path, manifest)

    def update_manifest(self, **fields: Any) -> dict[str, Any]:
        """Set top-level manifest fields (read, change, atomic write)."""
        manifest = self.read_manifest()
        manifest.update(to_jsonable(fields))
        self.write_manifest(manifest)
        return manifest

    def pin_parameters(self, values: Mapping[str, Any], *, plan: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Record parameters a step resolved (its plan) so a re-run reproduces them without re-planning.

        They go to the manifest (``plan.pinned``; ``plan`` replaces the rest of the plan entry
        when given) and into the run's ``project.yaml``, whose other lines are kept as they are.
        """
        import yaml  # local: only the plan writers need it

        manifest = self.read_manifest()
        entry = dict(to_jsonable(plan)) if plan is not None else dict(manifest.get("plan") or {})
        entry["pinned"] = {**(manifest.get("plan") or {}).get("pinned", {}), **to_jsonable(dict(values))}
        manifest["plan"] = entry
        self.write_manifest(manifest)
        project = self.path / PROJECT_FILE
        if project.exists():
            text = project.read_text(encoding="utf-8")
            current = yaml.safe_load(text) or {}
            header = "".join(line + "\n" for line in text.splitlines() if line.startswith("#"))
            current.update(to_jsonable(dict(values)))
            write_text(project, header + yaml.safe_dump(current, sort_keys=False, allow_unicode=True))
        return entry

    def set_step_status(self, step: str, status: str, **extra: Any) -> dict[str, Any]:
        if status not in STEP_STATUSES:
            raise ValueError(f"unknown step status {status}")
        manifest = self.read_manifest()
        entries = manifest.setdefault("steps", [])
        entry = next((e for e in entries if e["step"] == step), None)
        if entry is None:
            entry = {"step": step, "notebook": f"{step}.ipynb", "status": "not_run",
                     "duration_s": None, "output": None}
            entries.append(entry)
            entries.sort(key=lambda e: STEP_NOTEBOOKS.index(e["step"]) if e["step"] in STEP_NOTEBOOKS else 99)
        entry["status"] = status
        entry.update(to_jsonable(extra))
        self.write_manifest(manifest)
        return manifest

    # summaries
    def summary_path(self, step: str) -> Path:
        return self.artifacts / step / "summary.json"

    def has_summary(self, step: str) -> bool:
        return self.summary_path(step).exists()

    def write_summary(self, step: str, summary: Mapping[str, Any]) -> Path:
        data = {"step": step, "written_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
        data.update(summary)
        return write_json(self.summary_path(step), data)

    def read_summary(self, step: str, *, needed_by: str | None = None) -> dict[str, Any]:
        """A step's summary; a clear error naming the step to run when it is missing."""
        if not self.has_summary(step):
            who = f"{needed_by} needs" if needed_by else "This needs"
            raise PlaybookError(
                f"{who} the results of step {step} but {self.summary_path(step)} does not exist.",
                f"run that step first: `playbook run --steps 1-{int(step[:2])}` or open "
                f"{step}.ipynb and run it with the same run folder ({self.path}).")
        return read_json(self.summary_path(step))

    def optional_summary(self, step: str) -> dict[str, Any] | None:
        return read_json(self.summary_path(step)) if self.has_summary(step) else None

    # artifact files
    def artifact_path(self, step: str, name: str) -> Path:
        return self.step_dir(step) / name

    def write_artifact_json(self, step: str, name: str, data: Any) -> Path:
        return write_json(self.artifact_path(step, name), data)

    def write_artifact_text(self, step: str, name: str, text: str) -> Path:
        return write_text(self.artifact_path(step, name), text)

    def write_table(self, step: str, name: str, frame: pd.DataFrame) -> Path:
        """Write a table as CSV (human-readable) or Parquet (by the name's suffix)."""
        path = self.artifact_path(step, name)
        if path.suffix == ".parquet":
            return write_parquet(path, frame)
        with atomic_path(path) as tmp:
            frame.to_csv(tmp, index=False)
        return path

    def read_table(self, step: str, name: str, *, needed_by: str | None = None) -> pd.DataFrame:
        path = self.artifacts / step / name
        if not path.exists():
            self.read_summary(step, needed_by=needed_by)  # raises the clear "run step N" error
            raise PlaybookError(f"{path} is missing although step {step} ran.",
                                f"re-run step {step}.")
        return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)

    def save_figure(self, step: str, name: str, fig) -> Path:
        """Save a matplotlib figure as PNG (atomically) and return its path."""
        path = self.artifact_path(step, name if name.endswith(".png") else f"{name}.png")
        return write_bytes(path, figure_png(fig))

    def relative(self, path: str | os.PathLike) -> str:
        return os.path.relpath(Path(path).resolve(), self.path)


_RENDERED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # figure -> its PNG bytes


def figure_png(fig) -> bytes:
    """A finished figure as PNG bytes, rendered once: showing it in the notebook and saving it
    as an artifact reuse the same bytes (a render costs 0.1-0.4 s). Do not change a figure
    after it was shown or saved."""
    png = _RENDERED.get(fig)
    if png is None:
        buffer = io.BytesIO()
        # no bbox_inches="tight": every figure of the playbook is laid out (tight_layout) already,
        # and the tight box costs one more full draw (30-40% of a render, measured)
        fig.savefig(buffer, format="png", dpi=100)
        png = _RENDERED[fig] = buffer.getvalue()
    return png


def empty_manifest() -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "project": None,
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "parameters": {},
        "command": None,
        "dataset": None,
        "environment": None,
        "steps": [],
        "kpis": [],
        "champion": None,
        "report": None,
    }


def environment_info() -> dict[str, Any]:
    """Python and key package versions (for the manifest)."""
    names = ["pandas", "numpy", "scikit-learn", "scipy", "matplotlib", "papermill", "nbconvert",
             "ipywidgets", "jupyterlab", "skops", "pyarrow", "jinja2", "ml-project-playbook"]
    packages = {}
    for name in names:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    return {"python": platform.python_version(), "platform": platform.platform(), "packages": packages}


def open_run(run_dir: str | None, *, create: bool = True) -> Run:
    """The run a notebook writes to: ``run_dir`` or the interactive scratch folder."""
    run = Run(run_dir) if run_dir else Run(interactive_run_dir())
    if create:
        run.path.mkdir(parents=True, exist_ok=True)
        if not run.has_manifest():
            run.write_manifest(empty_manifest())
    return run


def record_kpis(run: Run, table: pd.DataFrame) -> None:
    """Write achieved KPI values (columns metric, target, direction, achieved, ci_low, ci_high, passed)."""
    run.update_manifest(kpis=table.to_dict(orient="records"))
