"""Step 5a: the model package, schema validation, chunked prediction, the KPI gate, CI and model card.

The package is the champion's folder ``models/vN/``: step 4's ``model.skops`` and
``model_meta.json``, plus what serving needs and step 5 adds: ``schema.json`` (step 2's
input schema), ``cleaning.json`` (step 2's data fixes), ``requirements.lock.txt`` (step
3's lock, else captured here) and ``package.json`` (file list with SHA-256). Models are
loaded only through ``helpers.core.modelio.load_model`` (trusted types kept in code).
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from helpers.core import artifacts, exercises, modelio
from helpers.core.artifacts import Run
from helpers.core.cleaning import apply_cleaning
from helpers.core.documents import render
from helpers.core.errors import PlaybookError
from helpers.core.exercises import Feedback
from helpers.core.features import as_model_input, decision_threshold
from helpers.core.hashing import file_sha256
from helpers.core.kpis import GROUP_COLUMNS, class_index, group_kpis, row_verdict
from helpers.core.paths import STEP_NOTEBOOKS
from helpers.core.prepared import load_prepared
from helpers.core.sampling import subsample
from helpers.core.schema import load_schema
from helpers.core.system import LOCK_FILE, SERVE_LOCK_FILE, lock_text, serve_lock_text

STEP = STEP_NOTEBOOKS[4]
PACKAGE_FILES = ("model.skops", "model_meta.json", "schema.json", "cleaning.json", LOCK_FILE, SERVE_LOCK_FILE,
                 "Dockerfile")
CONTAINER_MODEL_DIR, CONTAINER_PORT = "/srv/model", 8000
SKEW_CHECK_ROWS = 20_000  # held-out rows the training/serving comparison replays from the raw snapshot


# --- sampled decisions ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Sampled:
    """One sampled decision of step 5: ``what`` used ``rows`` of the ``of`` available ``unit``, at most ``cap``
    (the constant ``cap_name``); ``note`` ends the sentence. ``text`` is the sentence the notebook shows and
    ``summary.json`` keeps."""

    what: str
    rows: int
    of: int
    unit: str
    cap: int | None = None
    cap_name: str = ""
    how: str = "a seeded sample"
    note: str = ""

    @property
    def sampled(self) -> bool:
        return self.rows < self.of

    @property
    def text(self) -> str:
        note = f", {self.note}" if self.note else ""
        if not self.sampled:
            return f"{self.what} on all {self.of:,} {self.unit}{note}."
        cap = f"; at most {self.cap:,}: {self.cap_name}" if self.cap is not None and self.cap_name else ""
        return f"{self.what} on {self.rows:,} of {self.of:,} {self.unit} ({self.how}{cap}){note}."

    def to_dict(self) -> dict[str, Any]:
        return {"what": self.what, "rows": self.rows, "of": self.of, "unit": self.unit, "cap": self.cap,
                "cap_name": self.cap_name, "sampled": self.sampled, "text": self.text}


def capped(X: pd.DataFrame, y: pd.Series | None, cap: int, seed: int, *, what: str, unit: str, cap_name: str,
           stratify: bool = False) -> tuple[pd.DataFrame, pd.Series | None, Sampled]:
    """At most ``cap`` rows of ``X`` (and ``y``): ``sampling.subsample``, seeded (all rows, unchanged, when
    they fit), with the ``Sampled`` record that states it."""
    small, labels = subsample(X, y, cap, seed, stratify=stratify and y is not None)
    return small, labels, Sampled(what, len(small), len(X), unit, cap, cap_name)


# --- the package ------------------------------------------------------------------------------


def champion_dir(run: Run) -> Path:
    """The champion's model folder, from the manifest (a clear error if step 4 has not run)."""
    champion = run.read_manifest().get("champion")
    if not champion:
        run.read_summary(STEP_NOTEBOOKS[3], needed_by=STEP)  # raises "run step 4 first"
        raise PlaybookError(f"The run {run.path} has no champion model in its manifest.",
                            "re-run step 4 (model development): it saves the model and names the champion.")
    path = run.path / champion["path"]
    return path if path.is_dir() else path.parent


def write_package(run: Run, *, schema: Mapping[str, Any] | None = None,
                  cleaning: Mapping[str, Any] | None = None) -> Path:
    """Complete the champion's folder into a servable package; return its path.

    ``schema``/``cleaning`` default to what step 2 recorded in the run.
    """
    folder = champion_dir(run)
    if schema is None:
        schema = load_schema(run)
    if cleaning is None:
        cleaning = load_prepared(run, needed_by=STEP).cleaning
    artifacts.write_json(folder / "schema.json", schema)
    artifacts.write_json(folder / "cleaning.json", cleaning)
    lock = run.artifacts / STEP_NOTEBOOKS[2] / LOCK_FILE  # step 3's lock, when step 3 ran
    if lock.exists():
        with artifacts.atomic_path(folder / LOCK_FILE) as tmp:
            shutil.copyfile(lock, tmp)
    else:
        artifacts.write_text(folder / LOCK_FILE, lock_text(captured_by="step 5"))
    artifacts.write_text(folder / SERVE_LOCK_FILE, serve_lock_text())
    artifacts.write_text(folder / "Dockerfile", dockerfile_text(folder))
    files = [{"file": name, "bytes": (folder / name).stat().st_size, "sha256": file_sha256(folder / name),
              "source": _source(name, lock.exists())} for name in PACKAGE_FILES if (folder / name).exists()]
    artifacts.write_json(folder / "package.json", {"files": files})
    return folder


def serve_command(package: str, *, host: str = "127.0.0.1", port: int = CONTAINER_PORT) -> list[str]:
    """The command that serves a package folder: the container recipe's start command."""
    return ["playbook", "serve", "--package", package, "--host", host, "--port", str(port)]


def dockerfile_text(folder: Path) -> str:
    """The package's container recipe: the serving lock, the playbook's wheel, the package, ``serve_command``."""
    meta = artifacts.read_json(folder / "model_meta.json")
    files = [n for n in ("model.skops", "model_meta.json", "schema.json", "cleaning.json") if (folder / n).exists()]
    command = json.dumps(serve_command(CONTAINER_MODEL_DIR, host="0.0.0.0", port=CONTAINER_PORT))
    return render("Dockerfile.j2", version=meta.get("version", 1), image=f"playbook-model:v{meta.get('version', 1)}",
                  python_version=f"{sys.version_info.major}.{sys.version_info.minor}", lock_file=SERVE_LOCK_FILE,
                  files=files, model_dir=CONTAINER_MODEL_DIR, port=CONTAINER_PORT, command=command)


def _source(name: str, step3_lock: bool) -> str:
    return {"model.skops": "step 4 (skops model file)", "model_meta.json": "step 4 (features, classes, threshold, KPIs)",
            "schema.json": "step 2 (input schema)", "cleaning.json": "step 2 (data fixes)",
            LOCK_FILE: "step 3 (environment lock)" if step3_lock else "step 5 (captured environment)",
            SERVE_LOCK_FILE: "step 5 (what `playbook serve` needs, pinned)",
            "Dockerfile": "step 5 (container recipe: `playbook serve`)"}[name]


def package_contents(folder: Path) -> pd.DataFrame:
    """The package's files with size, SHA-256 prefix and where each comes from."""
    index = artifacts.read_json(folder / "package.json")
    table = pd.DataFrame(index["files"])
    table["sha256"] = table["sha256"].str[:12]
    return table


@dataclass
class Package:
    """A loaded model package: the fitted pipeline and everything serving needs."""

    model: Any
    meta: dict[str, Any]
    schema: dict[str, Any]
    cleaning: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def features(self) -> list[str]:
        return list(self.meta["features"])

    # Built once per loaded package, not on each validated request (a package is not changed once loaded)
    @functools.cached_property
    def columns(self) -> dict[str, dict[str, Any]]:
        return {c["name"]: c for c in self.schema.get("columns", [])}

    @functools.cached_property
    def known_categories(self) -> dict[str, list[str]]:
        """Per categorical column of the schema, the training categories as text (what ``check_values`` compares)."""
        return {name: [str(k) for k in spec["categories"]] for name, spec in self.columns.items()
                if spec.get("categories")}


def load_package(folder: str | os.PathLike) -> Package:
    """Load a package folder (model through ``modelio.load_model`` only)."""
    folder = Path(folder)
    if not (folder / "model_meta.json").exists() or not (folder / "schema.json").exists():
        raise PlaybookError(f"{folder} is not a complete model package (model_meta.json or schema.json missing).",
                            "run step 5 (deployment) on this run: it writes the package.")
    model = modelio.load_model(folder / "model.skops")
    cleaning = artifacts.read_json(folder / "cleaning.json") if (folder / "cleaning.json").exists() else {}
    return Package(model, artifacts.read_json(folder / "model_meta.json"), artifacts.read_json(folder / "schema.json"),
                   cleaning, folder)


def package_for_run(run: Run) -> Package:
    folder = champion_dir(run)
    if not (folder / "schema.json").exists():
        raise PlaybookError(f"The champion folder {folder} has no schema.json: the model package was not written.",
                            "run step 5 (05_deployment_and_monitoring) on this run first.")
    return load_package(folder)


# --- validation ------------------------------------------------------------------------------------


@dataclass
class Validation:
    """What schema validation found in a batch: errors stop prediction, warnings are counted."""

    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def add_count(self, key: str, n: int) -> None:
        if n:
            self.counts[key] = self.counts.get(key, 0) + int(n)

    def table(self) -> pd.DataFrame:
        rows = [{"severity": "error", "finding": e} for e in self.errors]
        rows += [{"severity": "warning", "finding": w} for w in self.warning_lines()]
        return pd.DataFrame(rows, columns=["severity", "finding"])

    def warning_lines(self) -> list[str]:
        """The warnings as ``playbook predict`` prints them (counted findings as "N value(s): ...")."""
        return self.warnings + [f"{n} value(s): {k}" for k, n in self.counts.items()]

    def raise_errors(self) -> None:
        if self.errors:
            raise PlaybookError("The input does not match the model's schema: " + "; ".join(self.errors) + ".",
                                "fix these columns in the input file (the schema is in the model package's schema.json).")


def check_columns(columns: Sequence[str], package: Package) -> Validation:
    """Missing feature columns are errors; columns the schema does not know are ignored (warning)."""
    v = Validation()
    missing = [c for c in package.features if c not in columns]
    if missing:
        v.errors.append(f"missing column(s) {', '.join(missing)}")
    known = set(package.columns) | set(package.features) | set(package.meta.get("sensitive_columns") or []) | {
        package.meta.get("target"), package.meta.get("id_column")}
    extra = [c for c in columns if c not in known]
    if extra:
        v.warnings.append(f"extra column(s) ignored: {', '.join(map(str, extra))}")
    id_col = package.meta.get("id_column")
    if id_col and id_col not in columns:
        v.warnings.append(f"no identifier column {id_col!r}: predictions are keyed by row number")
    return v


def check_values(frame: pd.DataFrame, package: Package, v: Validation) -> pd.DataFrame:
    """Type errors; out-of-range values and unseen categories (counted). Returns numeric-coerced features.

    Counted on numpy arrays, not pandas Series: the per-call cost of pandas, not the rows, is what a
    single-row request of ``playbook serve`` pays (~3 ms less per request than Series comparisons).
    """
    out, columns = frame, package.columns
    for name in [c for c in package.meta.get("numeric", []) if c in frame.columns]:
        raw = frame[name]
        is_number = pd.api.types.is_numeric_dtype(raw)
        values = raw if is_number else pd.to_numeric(raw, errors="coerce")
        if not is_number:  # a numeric dtype has no value that failed to parse
            bad = values.isna().to_numpy() & raw.notna().to_numpy()
            if bad.any():
                bad &= raw.astype(object).map(lambda t: str(t).strip() != "").to_numpy(dtype=bool)  # blanks are missing
            if bad.any():
                example = raw[bad].iloc[0]
                v.errors.append(f"column {name} expects numbers but has {int(bad.sum())} non-numeric value(s), e.g. {example!r}")
        floats = values.astype(float)
        spec = columns.get(name, {})
        lo, hi = spec.get("min"), spec.get("max")
        if lo is not None or hi is not None:
            array = floats.to_numpy()  # NaN compares False, as a missing value does in pandas
            if lo is not None:
                v.add_count(f"{name} below the training range (< {lo:g})", int((array < lo).sum()))
            if hi is not None:
                v.add_count(f"{name} above the training range (> {hi:g})", int((array > hi).sum()))
        if out is frame:
            out = frame.copy()
        out[name] = floats
    for name in [c for c in package.meta.get("categorical", []) if c in frame.columns]:
        known = package.known_categories.get(name)
        if known:
            s = frame[name]
            text = s if pd.api.types.infer_dtype(s, skipna=True) == "string" else s.astype(str)
            unseen = s.notna().to_numpy() & ~text.isin(known).to_numpy()
            v.add_count(f"{name} has categories unseen in training", int(unseen.sum()))
    return out


def validate(frame: pd.DataFrame, package: Package) -> tuple[pd.DataFrame, Validation]:
    """Apply step 2's data fixes, then check the batch against the schema (errors are not raised)."""
    v = check_columns(list(frame.columns), package)
    cleaned = apply_fixes(frame, package.cleaning)
    return check_values(cleaned, package, v), v


def apply_fixes(frame: pd.DataFrame, cleaning: Mapping[str, Any]) -> pd.DataFrame:
    """Step 2's data fixes (spellings, numeric text) on new data; rows are never dropped here."""
    if not cleaning:
        return frame
    fixed = apply_cleaning(frame, dict(cleaning))
    if len(fixed) != len(frame):
        raise PlaybookError(f"Step 2's data fixes changed the number of rows ({len(frame)} -> {len(fixed)}).",
                            "cleaning.apply_cleaning must keep every row of new data (report this as a bug).")
    return fixed


# --- prediction -------------------------------------------------------------------------------------


def model_input(frame: pd.DataFrame, package: Package) -> pd.DataFrame:
    """The package's feature table, converted exactly as in training (``features.as_model_input``
    with the numeric/categorical kinds recorded in ``model_meta.json``)."""
    meta = package.meta
    return as_model_input(frame, meta.get("numeric", []), meta.get("categorical", []), columns=package.features)


def predict_arrays(package: Package, frame: pd.DataFrame,
                   X: pd.DataFrame | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Labels (thresholded when binary) and probabilities: positive class (binary), all classes, or None.

    ``X``: ``model_input(frame, package)`` when the caller has already converted the rows (the service
    times conversion and prediction apart).

    A model holding its decision threshold (step 4 saves binary models so) decides itself: the labels are
    ``model.predict()``'s, as for anyone who loads the file. Packages of earlier runs hold the threshold
    in ``model_meta.json`` only: it is applied to the probabilities here.
    """
    meta, model = package.meta, package.model
    X = model_input(frame, package) if X is None else X
    if meta.get("problem_type") == "classification" and hasattr(model, "predict_proba"):
        proba = model.predict_proba(X)
        classes = list(model.classes_)
        if decision_threshold(model) is None:
            labels = _labels(proba, classes, meta)
        else:
            labels = _model_decisions(model, proba) if _decides_on_proba(model) else model.predict(X)
        if len(classes) == 2 and meta.get("positive_label") is not None:
            return labels, proba[:, class_index(classes, meta["positive_label"])]
        return labels, proba
    return model.predict(X), None


def predict_frame(package: Package, frame: pd.DataFrame, X: pd.DataFrame | None = None) -> pd.DataFrame:
    """Predictions for validated, fixed rows: key column, label (thresholded), probabilities (``X``: as in
    ``predict_arrays``)."""
    meta = package.meta
    id_col = meta.get("id_column")
    out = pd.DataFrame(index=frame.index)
    if id_col and id_col in frame.columns:
        out[id_col] = frame[id_col].to_numpy()
    else:
        out["row"] = np.arange(len(frame))
    labels, proba = predict_arrays(package, frame, X)
    out["cluster" if meta.get("problem_type") == "clustering" else "prediction"] = labels
    if proba is not None and proba.ndim == 1:
        out[f"proba_{meta['positive_label']}"] = proba
    elif proba is not None:
        for i, c in enumerate(package.model.classes_):
            out[f"proba_{c}"] = proba[:, i]
    return out


def _decides_on_proba(model) -> bool:
    """A ``FixedThresholdClassifier`` (``features.with_threshold``) thresholding the positive class's probability."""
    return getattr(model, "response_method", None) == "predict_proba" and getattr(model, "pos_label", None) is not None


def _model_decisions(model, proba: np.ndarray) -> np.ndarray:
    """``model.predict()`` of a thresholded model, from the ``predict_proba`` output already computed: its own rule
    (scikit-learn's ``FixedThresholdClassifier.predict``: positive when P(pos_label) >= threshold), without a
    second pass of the rows through the pipeline. ``test_deployment`` checks it against ``model.predict``."""
    classes = np.asarray(model.classes_)
    pos, neg = np.flatnonzero(classes == model.pos_label)[0], np.flatnonzero(classes != model.pos_label)[0]
    return classes[np.array([neg, pos])[(proba[:, pos] >= decision_threshold(model)).astype(int)]]


def _labels(proba: np.ndarray, classes: list, meta: Mapping[str, Any]) -> np.ndarray:
    """Labels from probabilities: the decision threshold on the positive class when binary."""
    threshold = meta.get("threshold")
    if len(classes) == 2 and threshold is not None and meta.get("positive_label") is not None:
        pos = class_index(classes, meta["positive_label"])
        return np.where(proba[:, pos] >= threshold, classes[pos], classes[1 - pos])
    return np.asarray(classes, dtype=object)[proba.argmax(axis=1)]


def predict_batch(package: Package, frame: pd.DataFrame) -> tuple[pd.DataFrame, Validation]:
    """Validate then predict one in-memory batch: the code path of ``playbook predict``."""
    fixed, v = validate(frame, package)
    v.raise_errors()
    return predict_frame(package, fixed), v


def csv_dtypes(package: Package) -> dict[str, type]:
    """How CSV input is read (``playbook predict`` and ``playbook serve``): categorical and identifier columns
    as text; object, not str: pandas' arrow-backed strings cost a conversion per value here."""
    return {c: object for c in [*package.meta.get("categorical", []), package.meta.get("id_column")] if c}


def read_chunks(path: Path, package: Package, chunk_size: int) -> Iterator[pd.DataFrame]:
    """The input in chunks of at most ``chunk_size`` rows (CSV or Parquet), bounded memory."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches(batch_size=chunk_size):
            yield batch.to_pandas()
        return
    if suffix not in (".csv", ".txt", ".tsv"):
        raise PlaybookError(f"Cannot read {path.name}: the input must be .csv or .parquet.",
                            "convert the file to CSV or Parquet.")
    try:
        yield from pd.read_csv(path, chunksize=chunk_size, dtype=csv_dtypes(package),
                               sep="\t" if suffix == ".tsv" else ",", low_memory=False)
    except pd.errors.EmptyDataError:
        raise PlaybookError(f"{path} is empty.", "give a file with a header row and data rows.") from None


def predict_file(package: Package, input_path: str | os.PathLike, output_path: str | os.PathLike, *,
                 chunk_size: int = 100_000, overwrite: bool = False) -> dict[str, Any]:
    """Predict a CSV/Parquet file chunk by chunk into a CSV file (written atomically)."""
    src, dst = Path(input_path), Path(output_path)
    if not src.is_file():
        raise PlaybookError(f"Input file {src} does not exist.", "check the path given to --input.")
    if dst.exists() and not overwrite:
        raise PlaybookError(f"Output file {dst} already exists and was not overwritten.",
                            "choose another --output path, or pass --overwrite to replace it.")
    if chunk_size < 1:
        raise PlaybookError(f"chunk_size must be at least 1, got {chunk_size}.", "use e.g. 100000.")
    started, rows, total = time.perf_counter(), 0, Validation()
    with artifacts.atomic_path(dst) as tmp:
        for i, chunk in enumerate(read_chunks(src, package, chunk_size)):
            if i == 0:
                head = check_columns(list(chunk.columns), package)
                head.raise_errors()
                total.warnings += head.warnings
            if chunk.empty:  # a header-only file: no rows to validate or predict
                continue
            fixed, v = validate(chunk, package)
            if v.errors:
                v.errors = [f"{e} (rows {rows + 1}-{rows + len(chunk)})" for e in v.errors]
                v.raise_errors()
            for k, n in v.counts.items():
                total.add_count(k, n)
            out = predict_frame(package, fixed)
            floats = out.select_dtypes("float").columns
            out[floats] = out[floats].round(6)  # vectorised; to_csv's float_format formats value by value
            out.to_csv(tmp, mode="a", header=i == 0, index=False)
            rows += len(chunk)
        if rows == 0:
            raise PlaybookError(f"{src} has no data rows.", "give a file with at least one row.")
    seconds = time.perf_counter() - started
    return {"rows": rows, "seconds": seconds, "rows_per_s": rows / seconds if seconds else float("inf"),
            "output": str(dst), "warnings": total.warning_lines()}


def predict_cli(run_dir: str, input_path: str, output_path: str, chunk_size: int = 100_000,
                overwrite: bool = False) -> int:
    """``playbook predict``: validate, predict in chunks, print warnings; 0 on success.

    Bad input raises ``PlaybookError`` (the CLI prints it and exits 2).
    """
    run = _existing_run(run_dir)
    result = predict_file(package_for_run(run), input_path, output_path, chunk_size=chunk_size, overwrite=overwrite)
    for w in result["warnings"]:
        print(f"warning: {w}")
    print(f"Wrote {result['rows']} predictions to {result['output']} "
          f"({result['rows_per_s']:,.0f} rows/s).")
    return 0


def _existing_run(run_dir: str) -> Run:
    path = Path(run_dir)
    if not (path / artifacts.MANIFEST).exists():
        raise PlaybookError(f"{run_dir} is not a run folder (no {artifacts.MANIFEST}).",
                            "give the folder of a finished `playbook run` with --run.")
    return Run(path)


# --- the KPI gate -----------------------------------------------------------------------------------


def gate(run: Run, *, strict: bool = False) -> tuple[int, pd.DataFrame]:
    """Exit code and scoreboard, each KPI with its verdict (``kpis.row_verdict``, the core's one rule).

    0: no KPI failed (a KPI on watch passes, with a warning); 1: a KPI failed (its interval
    excludes the target) or is not measured while others are, or, with ``strict``, is on
    watch; 2: no measured KPIs.
    """
    records = run.read_manifest().get("kpis") or []
    table = pd.DataFrame(records)
    if table.empty or "achieved" not in table or table["achieved"].isna().all():
        return 2, table
    table["verdict"] = [row_verdict(r) for r in records]
    failed = table["verdict"].map(lambda v: v in (None, "fail"))
    watched = table["verdict"].isin(["watch", "too few rows"])
    return (1 if failed.any() or (strict and watched.any()) else 0), table


def gate_message(code: int, table: pd.DataFrame) -> str:
    if code == 2:
        return "Gate: no measured KPIs in this run (run step 4 first)."
    lines = ["metric             target    achieved  95% interval        result"]
    for r in table.itertuples():
        ci = f"[{r.ci_low:.3f}, {r.ci_high:.3f}]" if _finite(getattr(r, "ci_low", None)) else "n/a"
        verdict = (r.verdict or "fail").upper()
        achieved = f"{r.achieved:.3f}" if _finite(r.achieved) else "n/a"
        lines.append(f"{r.metric:<18} {r.direction[:1]}{r.target:<8g} {achieved:<9} {ci:<19} {verdict}")
    watched = table.loc[table["verdict"].isin(["watch", "too few rows"]), "metric"].tolist()
    if code == 1:
        failed = table["verdict"].map(lambda v: v in (None, "fail")).any()
        lines.append("Gate: FAILED (at least one KPI missed: its interval excludes the target)." if failed else
                     f"Gate: FAILED (--strict: {', '.join(watched)} on watch).")
    elif watched:
        lines.append(f"Gate: PASSED with a warning: {', '.join(watched)} on watch (the point misses the target but "
                     "the interval contains it, so chance could explain the miss). `playbook gate --strict` fails here.")
    else:
        lines.append("Gate: PASSED (every KPI met).")
    return "\n".join(lines)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and np.isfinite(value)


def gate_cli(run_dir: str, strict: bool = False) -> int:
    """``playbook gate [--strict]``: print the KPI scoreboard and return the gate's exit code."""
    code, table = gate(_existing_run(run_dir), strict=strict)
    print(gate_message(code, table))
    return code


# --- CI workflow and model card -------------------------------------------------------------------


def render_workflow(*, project_name: str, python_version: str | None = None) -> str:
    """The GitHub Actions workflow of this project (rendered from ``ci_workflow.yml.j2``)."""
    version = python_version or f"{sys.version_info.major}.{sys.version_info.minor}"
    return render("ci_workflow.yml.j2", project_name=project_name, python_version=version)


def workflow_stages(text: str) -> pd.DataFrame:
    """Jobs and steps of a rendered workflow (parsed back with YAML: proves it is valid)."""
    import yaml

    doc = yaml.safe_load(text)
    rows = [{"job": job, "step": step.get("name", step.get("uses", "")),
             "runs": step.get("run", step.get("uses", "")).strip().splitlines()[0]}
            for job, spec in doc["jobs"].items() for step in spec["steps"]]
    return pd.DataFrame(rows)


def render_model_card(context: Mapping[str, Any]) -> str:
    return render("model_card.md.j2", **context)


# --- the notebook's deployment half -------------------------------------------------------------------


def sample_rows(prepared, n: int = 5) -> pd.DataFrame:
    """A few held-out rows as new data looks: no target column."""
    rows = prepared.test.head(n)
    return rows.drop(columns=[prepared.target]) if prepared.target in rows.columns else rows


def broken_batch(sample: pd.DataFrame, package: Package) -> pd.DataFrame:
    """A deliberately broken copy of ``sample``: each kind of schema violation once."""
    broken = sample.copy().reset_index(drop=True)
    numeric, categorical = package.meta.get("numeric", []), package.meta.get("categorical", [])
    if numeric:
        broken = broken.drop(columns=numeric[0])  # a missing column
    if len(numeric) > 1:
        col = numeric[1]
        broken[col] = broken[col].astype(object)
        broken.loc[0, col] = "n/a (typed by hand)"  # text in a numeric column
        hi = package.columns.get(col, {}).get("max")
        if hi is not None and len(broken) > 1:
            broken.loc[1, col] = hi * 10 + 1  # outside the training range
    if categorical:
        broken[categorical[0]] = broken[categorical[0]].astype(object)
        broken.loc[len(broken) - 1, categorical[0]] = "brand-new category"
    broken["free_text_note"] = "extra column"  # a column the model does not know
    return broken


def validation_table(frame: pd.DataFrame, package: Package) -> pd.DataFrame:
    """Everything validation finds in a batch (errors and warnings), without raising."""
    _, v = validate(frame, package)
    return v.table()


def measure_throughput(package: Package, frame: pd.DataFrame, n_rows: int = 20_000) -> dict[str, float]:
    """Rows per second of validate + predict on ``n_rows`` rows (held-out rows repeated)."""
    reps = int(np.ceil(n_rows / max(len(frame), 1)))
    big = pd.concat([frame] * reps, ignore_index=True).head(n_rows)
    started = time.perf_counter()
    predict_batch(package, big)
    seconds = time.perf_counter() - started
    return {"rows": n_rows, "seconds": round(seconds, 3), "rows_per_s": round(n_rows / seconds)}


# --- the package checked, not assumed: the evidence of three readiness facts ---------------------------------

CHECK_ATOL = 1e-9  # far above the floating-point noise between batch sizes, far below any real difference
# the folder holding ``helpers``: the fresh process imports this very code (a clone or an installed package)
_CODE_ROOT = Path(__file__).resolve().parents[3]
_FRESH_ENTRY = ("import sys; from helpers.steps.operations.deployment import fresh_process_main; "
                "sys.exit(fresh_process_main(sys.argv[1:]))")


def check_rows(prepared, n: int = 20) -> pd.DataFrame:
    """``n`` held-out rows as new data looks (no target), rows with a missing feature value first: the
    rows a single-row call or a new process is likeliest to get wrong."""
    test = prepared.test
    gaps = test[prepared.features].isna().any(axis=1)
    rows = test.loc[[*test.index[gaps][: n // 2], *test.index[~gaps]][:n]]
    return rows.drop(columns=[prepared.target]) if prepared.target in rows.columns else rows


def check_rows_sampled(prepared, n: int = 20) -> Sampled:
    """The rows of the single-row and fresh-process checks (``check_rows``), stated."""
    return Sampled("Single-row and fresh-process checks", min(n, len(prepared.test)), len(prepared.test),
                   "held-out rows", n, "serving_checks(n_rows)", how="rows with a missing value first, in file order")


def compare_predictions(expected: pd.DataFrame, actual: pd.DataFrame, atol: float = CHECK_ATOL) -> dict[str, Any]:
    """Rows whose predictions differ between two ``predict_frame`` tables of the same rows (labels exactly,
    numbers within ``atol``; the ``row`` numbers are ignored: they restart with every batch)."""
    columns = [c for c in expected.columns if c != "row"]
    if len(actual) != len(expected) or any(c not in actual.columns for c in columns):
        return {"rows": len(expected), "differing_rows": len(expected), "max_abs_diff": None,
                "columns": [c for c in columns if c not in actual.columns] or columns}
    differs, worst, bad = np.zeros(len(expected), dtype=bool), 0.0, []
    for c in columns:
        a, b = expected[c].reset_index(drop=True), actual[c].reset_index(drop=True)
        if pd.api.types.is_numeric_dtype(a) and pd.api.types.is_numeric_dtype(b):
            x, y = a.to_numpy(dtype=float, na_value=np.nan), b.to_numpy(dtype=float, na_value=np.nan)
            gap = np.abs(x - y)
            column = ~((gap <= atol) | (np.isnan(x) & np.isnan(y)))
            worst = max(worst, float(np.nanmax(gap, initial=0.0)))
        else:
            column = a.astype(str).to_numpy() != b.astype(str).to_numpy()
        if column.any():
            bad.append(c)
        differs |= column
    return {"rows": len(expected), "differing_rows": int(differs.sum()), "max_abs_diff": worst, "columns": bad}


def _agreement(diff: Mapping[str, Any]) -> str:
    if diff["differing_rows"] == 0:
        return f"predictions identical for all {diff['rows']} rows (max |difference| {diff['max_abs_diff']:.1g})"
    return f"predictions differ for {diff['differing_rows']} of {diff['rows']} rows ({', '.join(diff['columns'])})"


def _check(holds: bool, evidence: str, **measured: Any) -> dict[str, Any]:
    return {"holds": bool(holds), "evidence": evidence, **measured}


def fresh_process_main(argv: Sequence[str]) -> int:
    """The fresh process of ``fresh_process_check``: load the package folder ``argv[0]`` from disk, predict
    the Parquet rows ``argv[1]`` with ``predict_batch`` and print the predictions as one JSON line
    (a ``PlaybookError`` as ``{"error": problem}``, exit code 1). ``finished_at``: the wall clock at the end,
    so the caller knows how long the process took even when it collects the answer later."""
    folder, rows = argv
    started = time.perf_counter()
    try:
        predictions, _ = predict_batch(load_package(folder), pd.read_parquet(rows))
    except PlaybookError as exc:
        print(json.dumps({"error": exc.problem, "finished_at": time.time()}))
        return 1
    print(json.dumps(artifacts.to_jsonable({"seconds": time.perf_counter() - started, "finished_at": time.time(),
                                            "predictions": predictions.to_dict(orient="list")})))
    return 0


class FreshProcessCheck:
    """``fresh_process_check`` started now and collected later (``result``): the new Python process starts,
    imports the libraries and loads the package (~3-4 s) on another core while this one works on.

    ``rows``: Parquet-safe held-out rows (``check_rows``). The answers this process gives are computed
    here at the start, from the same package in memory.
    """

    def __init__(self, package: Package, rows: pd.DataFrame, *, timeout: float = 120):
        self.package, self.rows, self.timeout = package, rows, timeout
        self._answer: dict[str, Any] | None = None
        if package.path is None:
            self._answer = _check(False, "the package was never written to disk: nothing to load in a fresh process")
            return
        self.expected, _ = predict_batch(package, rows)
        self._tmp = tempfile.TemporaryDirectory(prefix="playbook-fresh-")
        src = Path(self._tmp.name) / "rows.parquet"
        rows.to_parquet(src)
        self._started, self._started_at = time.perf_counter(), time.time()
        self._process = subprocess.Popen([sys.executable, "-c", _FRESH_ENTRY, str(package.path), str(src)],
                                         cwd=_CODE_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                         stdin=subprocess.DEVNULL, text=True)

    def result(self) -> dict[str, Any]:
        """Wait for the process (at most ``timeout`` from its start) and compare its answers with this process's."""
        if self._answer is None:
            try:
                self._answer = self._collect()
            finally:
                self._tmp.cleanup()
        return self._answer

    def _collect(self) -> dict[str, Any]:
        where = "/".join(Path(self.package.path).parts[-2:])
        try:
            out, err = self._process.communicate(timeout=max(self.timeout - (time.perf_counter() - self._started), 0.1))
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.communicate()
            return _check(False, f"{where} in a fresh process: no answer within {self.timeout:g} s",
                          seconds=self.timeout)
        lines = out.strip().splitlines()
        try:
            answer = json.loads(lines[-1]) if lines else {}
        except ValueError:
            answer = {}
        finished = answer.get("finished_at") if isinstance(answer, dict) else None
        seconds = finished - self._started_at if finished else time.perf_counter() - self._started
        if self._process.returncode != 0 or "predictions" not in answer:
            reason = answer.get("error") or (err.strip().splitlines() or [f"exit code {self._process.returncode}"])[-1]
            return _check(False, f"{where} failed to load and predict in a fresh process: {reason}", seconds=seconds)
        diff = compare_predictions(self.expected, pd.DataFrame(answer["predictions"]))
        inside = answer.get("seconds") or 0.0  # the rest is starting Python and importing the libraries
        return _check(diff["differing_rows"] == 0, f"{where} loaded from disk in a fresh process ({seconds:.1f} s, "
                      f"load + predict {inside:.2f} s): " + _agreement(diff), seconds=seconds, load_predict_s=inside,
                      **diff)


def fresh_process_check(package: Package, rows: pd.DataFrame, *, timeout: float = 120) -> dict[str, Any]:
    """Load the package from its folder in a new Python process and predict ``rows`` there: the answers must
    be this process's. The files on disk serve, not the model in memory: a damaged or incomplete package,
    a type off the trusted list or an import that only works here fails. ``rows``: Parquet-safe (held-out rows).
    ``FreshProcessCheck`` starts the same check early and collects it later."""
    return FreshProcessCheck(package, rows, timeout=timeout).result()


def single_row_check(package: Package, rows: pd.DataFrame) -> dict[str, Any]:
    """Predict ``rows`` one at a time and as one batch: the answers must agree. A model whose answer for a
    row depends on the other rows of its batch (statistics of the batch, a dtype guessed from it) cannot
    be debugged on a single example."""
    started = time.perf_counter()
    batch, _ = predict_batch(package, rows)
    single = pd.concat([predict_batch(package, rows.iloc[[i]])[0] for i in range(len(rows))])
    seconds = time.perf_counter() - started
    diff = compare_predictions(batch, single)
    return _check(diff["differing_rows"] == 0, "one row at a time vs one batch: " + _agreement(diff),
                  seconds=seconds, **diff)


def compare_inputs(training: pd.DataFrame, serving: pd.DataFrame) -> dict[str, Any]:
    """Cells (same rows, same column) where two model-input tables differ in value or dtype (NaN equals NaN)."""
    columns = [c for c in training.columns if c in serving.columns]
    missing = [c for c in training.columns if c not in serving.columns]
    missing += [c for c in serving.columns if c not in training.columns]
    differing, examples = {}, []
    for c in columns:
        a, b = training[c].reset_index(drop=True), serving[c].reset_index(drop=True)
        same = ((a == b) | (a.isna() & b.isna())).to_numpy(dtype=bool) if a.dtype == b.dtype else np.zeros(len(a), bool)
        if not same.all():
            differing[c] = int((~same).sum())
            shown = np.flatnonzero(~same & a.notna().to_numpy())  # a value, not a gap, makes the clearer example
            i = int(shown[0] if len(shown) else np.flatnonzero(~same)[0])
            examples.append(f"{c} {_shown(a.iloc[i])} ({a.dtype}) in training vs {_shown(b.iloc[i])} ({b.dtype}) "
                            "in serving")
    return {"rows": len(training), "features": len(columns), "missing_columns": missing,
            "differing_values": differing, "examples": examples}


def _shown(value: Any) -> str:
    return "missing" if pd.isna(value) else repr(value) if isinstance(value, str) else str(value)


def skew_check_rows(prepared, *, max_rows: int = SKEW_CHECK_ROWS, seed: int = 0) -> tuple[pd.DataFrame, Sampled]:
    """The held-out rows ``training_serving_check`` replays: at most ``max_rows``, a seeded sample."""
    test, _, sampled = capped(prepared.test, None, max_rows, seed, what="Training/serving comparison",
                              unit="held-out rows", cap_name="deployment.SKEW_CHECK_ROWS")
    return test, sampled


def training_serving_check(package: Package, prepared, raw: pd.DataFrame, *, max_rows: int = SKEW_CHECK_ROWS,
                           seed: int = 0) -> dict[str, Any]:
    """The model inputs training computed for the held-out rows (step 2's fixes, then ``Prepared.X``) against
    those serving computes from the same rows as they came in (the raw snapshot through ``validate``: the
    package's fixes and schema conversion, then ``model_input``). One differing value is training/serving skew.

    At most ``max_rows`` held-out rows (a seeded sample, ``sampled`` in the result says so).
    """
    test, sampled = skew_check_rows(prepared, max_rows=max_rows, seed=seed)
    index = test.index
    absent = int((~index.isin(raw.index)).sum())
    if absent:
        return _check(False, f"the raw snapshot lacks {absent} of the {len(index)} held-out rows: nothing to compare",
                      sampled=sampled)
    started = time.perf_counter()
    fixed, _ = validate(raw.loc[index].drop(columns=[prepared.target], errors="ignore"), package)
    diff = compare_inputs(replace(prepared, test=test).X("test"), model_input(fixed, package))
    seconds = time.perf_counter() - started
    cells = diff["rows"] * diff["features"]
    if not diff["missing_columns"] and not diff["differing_values"]:
        rows = f"{diff['rows']}" if not sampled.sampled else \
            f"{diff['rows']:,} of {sampled.of:,} (a seeded sample: deployment.SKEW_CHECK_ROWS)"
        text = (f"{rows} held-out rows x {diff['features']} features, raw rows through the package: "
                "training and serving inputs identical")
        return _check(True, text, seconds=seconds, sampled=sampled, **diff)
    parts = [f"column(s) {', '.join(diff['missing_columns'])} in one side only"] if diff["missing_columns"] else []
    if diff["differing_values"]:
        counts = ", ".join(f"{c} {n}" for c, n in diff["differing_values"].items())
        parts.append(f"{sum(diff['differing_values'].values())} of {cells} values differ ({counts}), "
                     f"e.g. {diff['examples'][0]}")
    return _check(False, "training and serving inputs differ: " + "; ".join(parts), seconds=seconds, sampled=sampled,
                  **diff)


def serving_checks(run: Run, package: Package, prepared, n_rows: int = 20, *, fresh: FreshProcessCheck | None = None,
                   seed: int = 0) -> dict[str, dict[str, Any]]:
    """The three facts the readiness score measures instead of assuming, keyed by their rubric names.

    ``fresh``: the fresh-process check started earlier (``FreshProcessCheck``; its rows are the single-row
    check's too); else it starts and is waited for here.
    """
    rows = fresh.rows if fresh is not None else check_rows(prepared, n_rows)
    fresh = fresh if fresh is not None else FreshProcessCheck(package, rows)
    single = single_row_check(package, rows)
    compared, _ = skew_check_rows(prepared, seed=seed)  # the rows it will draw: only they are read from the snapshot
    same = training_serving_check(package, prepared, raw_rows(run, compared.index), seed=seed)
    return {"package_loads": fresh.result(), "single_rows": single, "same_code_path": same}


def raw_rows(run: Run, index: pd.Index) -> pd.DataFrame:
    """The rows ``index`` of the raw snapshot (empty when the run has none): picked in Arrow by its stored index
    column before the conversion to pandas, so a snapshot of a million rows is never converted whole for a
    sample of them (a Parquet ``filters=`` list of 20,000 values costs more than reading everything)."""
    path = run.raw_snapshot_path
    if not path.exists():
        return pd.DataFrame()
    import pyarrow as pa  # local: pandas' Parquet engine, whose compute module (~50 ms to import) only this needs
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    stored = (table.schema.pandas_metadata or {}).get("index_columns") or []
    if len(stored) == 1 and isinstance(stored[0], str) and stored[0] in table.column_names:
        try:
            return table.filter(pc.is_in(table[stored[0]], value_set=pa.array(index.to_numpy()))).to_pandas()
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):  # labels of another type
            pass
    return table.to_pandas()  # a RangeIndex is metadata, not a column: every row


def checks_table(checks: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """One row per measured fact: whether it holds, and its evidence."""
    return pd.DataFrame([{"fact": name, "holds": c["holds"], "evidence": c["evidence"]} for name, c in checks.items()])


def primary_metric(contract) -> str | None:
    """The contract's first KPI: what champion/challenger and group comparisons use."""
    return next(iter(contract.kpis), None)


def group_metrics(package: Package, prepared, contract, *, n_boot: int = 100, seed: int = 0) -> pd.DataFrame:
    """The primary KPI per group of every sensitive column on the test side (every group), with intervals."""
    metric = primary_metric(contract)
    if not prepared.target or not metric or contract.problem_type == "clustering":
        return pd.DataFrame(columns=GROUP_COLUMNS)
    test = prepared.test
    labels, proba = predict_arrays(package, test)  # the package's predictions: thresholded as served
    columns = [c for c in prepared.sensitive_columns if c in test.columns]
    return group_kpis(contract, test[columns], test[prepared.target].to_numpy(), labels, proba, metrics=[metric],
                      n_boot=n_boot, seed=seed)


def model_card_context(run: Run, package: Package, prepared, groups: pd.DataFrame,
                       params: Mapping[str, Any]) -> dict[str, Any]:
    """Everything the model card template needs, from steps 1-4 and this step."""
    s1 = run.optional_summary(STEP_NOTEBOOKS[0]) or {}
    meta, manifest = package.meta, run.read_manifest()
    kpis = list(meta.get("kpis") or manifest.get("kpis") or [])
    caveats = [f"KPI {k['metric']} missed its target ({k.get('achieved')} vs {k['target']})." for k in kpis
               if k.get("passed") is False]
    caveats += [f"KPI {k['metric']} is on watch: {k.get('achieved')} misses {k['target']}, within its 95% interval."
                for k in kpis if k.get("verdict") == "watch"]
    caveats.append("Test-side results come from one split; intervals show how much they could move.")
    caveats.append("Drift and retraining were exercised on simulated batches unless monitor_data was given.")
    cleaning = prepared.cleaning or {}
    fixes = [f"numbers stored as text in {c}" for c in cleaning.get("numeric_text", [])]
    fixes += [f"spellings unified in {c}" for c in cleaning.get("spellings", {})]
    fixes += [f"column {c} dropped" for c in cleaning.get("drop_columns", [])]
    return {"project": manifest.get("project") or s1.get("project") or "project", "version": f"v{meta.get('version', 1)}",
            "family": meta.get("family"), "created_at": meta.get("created_at"), "params": meta.get("params") or {},
            "problem_type": meta.get("problem_type"), "target": meta.get("target"),
            "positive_label": meta.get("positive_label"), "threshold": meta.get("threshold"),
            "features": package.features, "model_path": run.relative(package.path / "model.skops"),
            "problem_statement": s1.get("problem_statement") or "**[to be completed by the team]**",
            "sensitive_columns": prepared.sensitive_columns, "kpis": kpis, "test_rows": len(prepared.test),
            "dataset": (manifest.get("dataset") or {}).get("source"), "train_rows": len(prepared.train),
            "training_sha": meta.get("training_data_sha256"), "cleaning": fixes,
            "group_metric": groups["metric"].iloc[0] if len(groups) else None,
            "groups": groups.to_dict(orient="records"), "caveats": caveats}


# --- exercises ------------------------------------------------------------------------------------------------------
# Each checker returns a ``Feedback`` (helpers.core.exercises); the notebook's check cell displays it.

# exercise 5.1's scoreboard: recall misses its target inside its interval (watch), the others pass
GATE_EXERCISE = (
    {"metric": "recall", "direction": "higher", "target": 0.70, "achieved": 0.66, "ci_low": 0.58, "ci_high": 0.74},
    {"metric": "precision", "direction": "higher", "target": 0.50, "achieved": 0.55, "ci_low": 0.49, "ci_high": 0.61},
    {"metric": "roc_auc", "direction": "higher", "target": 0.80, "achieved": 0.83, "ci_low": 0.80, "ci_high": 0.86},
)


GATE_EXERCISE_CODES = (0, 1)  # what `gate` and `gate(strict=True)` return on that scoreboard (a test checks it)


def check_exercise_1(answer: Any) -> Feedback:
    """Exercise 5.1: (exit code of `playbook gate`, of `playbook gate --strict`) on the scoreboard ``GATE_EXERCISE``."""
    expected = GATE_EXERCISE_CODES
    giveaways = (f"({expected[0]}, {expected[1]})",)
    hint = ("a KPI fails when its whole interval is on the wrong side of the target, is on watch when only the point "
            "misses; the gate exits 1 on a fail, --strict also on a watch.")
    if exercises.is_unanswered(answer):
        return exercises.unanswered("5.1", "Set `answer` to a pair of exit codes: (gate, gate --strict).", hint,
                                    giveaways=giveaways)
    pair = list(answer) if isinstance(answer, (tuple, list)) else []
    if len(pair) != 2 or any(isinstance(c, bool) or not isinstance(c, (int, np.integer)) for c in pair):
        return exercises.wrong("5.1", f"{answer!r} is not a pair of exit codes.", "e.g. answer = (1, 1).",
                               giveaways=giveaways)
    codes = (int(pair[0]), int(pair[1]))
    if codes == expected:
        return exercises.correct("5.1", f"{codes}: recall's interval [0.58, 0.74] contains the target 0.7, so the miss "
                                 "could be chance: a watch, which passes the gate with a warning and fails it only "
                                 "with --strict.", giveaways=giveaways)
    if 2 in codes:
        return exercises.wrong("5.1", "2 means the run has no measured KPIs at all; this one has three.", hint,
                               giveaways=giveaways)
    if codes[0] == 1:
        return exercises.wrong("5.1", "recall's point misses 0.7, but its interval [0.58, 0.74] contains it: not a "
                               "fail.", hint, giveaways=giveaways)
    if codes[1] == 0:
        return exercises.wrong("5.1", "--strict treats a KPI on watch as a failure.", hint, giveaways=giveaways)
    return exercises.wrong("5.1", f"{codes} is not it.", hint, giveaways=giveaways)
