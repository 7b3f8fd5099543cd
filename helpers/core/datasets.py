"""Data loading (CSV, Parquet, SQL, built-ins), presets and the raw snapshot.

Built-in data sets work offline: scikit-learn's bundled tables, and ``churn``, a
documented, seeded generator of a realistic customer-churn table with the faults a
real extract has (see ``make_churn``).
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import io
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from helpers.core import faults
from helpers.core.artifacts import interactive_run_dir, write_parquet
from helpers.core.errors import PlaybookError
from helpers.core.hashing import frame_sha256
from helpers.core.messages import say

BUILTIN_PREFIX = "builtin:"

# Every built-in ships a preset: target, problem type, positive label, KPIs.
PRESETS: dict[str, dict[str, Any]] = {
    "churn": {
        "target": "churn", "problem_type": "classification", "positive_label": "yes",
        "id_column": "customer_id", "sensitive_columns": ["gender", "senior_citizen"],
        "kpis": {"recall": 0.70, "precision": 0.50, "roc_auc": 0.80},
        "problem_statement": "Flag customers likely to cancel next month so the retention team can call them first.",
        "description": "Generated telecom customer table (seeded), with the faults of a real extract.",
    },
    "breast_cancer": {
        "target": "diagnosis", "problem_type": "classification", "positive_label": "malignant",
        "kpis": {"recall": 0.95, "precision": 0.90, "roc_auc": 0.97},
        "problem_statement": "Flag malignant tumours from digitised cell-nucleus measurements for review.",
        "description": "Wisconsin diagnostic breast cancer data (scikit-learn bundled copy).",
    },
    "wine": {
        "target": "cultivar", "problem_type": "classification",
        "kpis": {"accuracy": 0.90, "f1": 0.88},
        "problem_statement": "Identify the cultivar of a wine from its chemical analysis.",
        "description": "UCI wine recognition data (scikit-learn bundled copy), three classes.",
    },
    "diabetes": {
        "target": "progression", "problem_type": "regression",
        "kpis": {"r2": 0.40, "mae": 48.0},
        "problem_statement": "Estimate disease progression one year after baseline to prioritise follow-up.",
        "description": "Diabetes progression data (scikit-learn bundled copy), 442 patients.",
    },
    "wine_segments": {
        "target": None, "problem_type": "clustering",
        "kpis": {"silhouette": 0.20},
        "problem_statement": "Find natural segments of wines from their chemistry, without labels.",
        "description": "The wine data with its cultivar label column dropped (clustering demo).",
    },
}


def builtin_names() -> list[str]:
    return list(PRESETS)


def preset_for(dataset: str) -> dict[str, Any]:
    """The preset of a built-in (``builtin:<name>``); an empty dict for user data."""
    if not dataset.startswith(BUILTIN_PREFIX):
        return {}
    name = dataset[len(BUILTIN_PREFIX):]
    if name not in PRESETS:
        raise PlaybookError(f"Unknown built-in data set {name!r}.",
                            f"use one of {', '.join(BUILTIN_PREFIX + n for n in PRESETS)}, or a file path.")
    return dict(PRESETS[name])


# --- the churn generator ---------------------------------------------------------------


def make_churn(n_rows: int = 5000, seed: int = 7, first_id: int = 0) -> pd.DataFrame:
    """A realistic customer-churn table, deterministic for a given seed (ids from ``C{100000 + first_id}``).

    Signal: churn is likelier for short tenure, month-to-month contracts, fibre
    internet, high charges and many support calls, and less likely with automatic
    payment. A one-rule heuristic (month-to-month contract) is useful, a model that
    combines the features is clearly better.

    Injected faults, all found by step 2 (the target ``churn`` itself is clean):
    - missing values in ``monthly_charges`` (3%), ``tenure_months`` (2%), ``payment_method`` (4%);
    - inconsistent spellings in ``contract`` and ``has_partner`` (case, whitespace, "Y"/"N");
    - ``total_charges`` stored as text, with blanks for new customers;
    - about 1.5% exact duplicate rows (same ``customer_id``);
    - outliers: 0.5% of ``monthly_charges`` multiplied by 10 (a units error);
    - ``country``: a constant column;
    - ``retention_call_minutes``: a leaky column recorded after the customer asked to
      leave (single-feature ROC AUC >= 0.995).
    ``customer_id`` is an identifier; ``gender`` and ``senior_citizen`` are sensitive.
    """
    rng = np.random.default_rng(seed)
    n = n_rows
    tenure = rng.gamma(shape=1.6, scale=18, size=n).clip(1, 72).round()
    contract = rng.choice(["Month-to-month", "One year", "Two year"], size=n, p=[0.52, 0.25, 0.23])
    internet = rng.choice(["Fiber optic", "DSL", "None"], size=n, p=[0.44, 0.34, 0.22])
    payment = rng.choice(["Electronic check", "Mailed check", "Bank transfer (automatic)", "Credit card (automatic)"],
                         size=n, p=[0.34, 0.22, 0.22, 0.22])
    base = np.select([internet == "Fiber optic", internet == "DSL"], [80.0, 55.0], 25.0)
    monthly = (base + rng.normal(0, 12, n)).clip(18, 120).round(2)
    support_calls = rng.poisson(1.2, n)
    gender = rng.choice(["female", "male"], size=n)
    senior = rng.choice(["no", "yes"], size=n, p=[0.84, 0.16])
    partner = rng.choice(["Yes", "No"], size=n, p=[0.48, 0.52])
    region = rng.choice(["north", "south", "east", "west"], size=n)

    logit = (-1.3 - 0.045 * (tenure - 20) + 1.3 * (contract == "Month-to-month") - 0.9 * (contract == "Two year")
             + 0.6 * (internet == "Fiber optic") + 0.025 * (monthly - 65) + 0.35 * (support_calls - 1.2)
             - 0.5 * np.isin(payment, ["Bank transfer (automatic)", "Credit card (automatic)"])
             + 0.3 * (senior == "yes") - 0.25 * (partner == "Yes")
             + 0.4 * (contract == "Month-to-month") * (support_calls >= 3))
    churned = rng.random(n) < 1 / (1 + np.exp(-logit))

    retention = np.where(churned, rng.gamma(3.0, 6.0, n) + 4.0, 0.0)
    noise = rng.random(n) < 0.003  # a few non-churners got a retention call too
    retention = np.where(~churned & noise, rng.gamma(2.0, 3.0, n), retention).round(1)

    total = (monthly * tenure).round(2)
    frame = pd.DataFrame({
        "customer_id": [f"C{100000 + first_id + i}" for i in range(n)],
        "gender": gender,
        "senior_citizen": senior,
        "has_partner": partner.astype(object),
        "tenure_months": tenure,
        "contract": contract.astype(object),
        "internet_service": internet,
        "payment_method": payment.astype(object),
        "monthly_charges": monthly,
        "total_charges": [f"{t:.2f}" for t in total],
        "support_calls": support_calls,
        "region": region,
        "country": "NL",
        "retention_call_minutes": retention,
        "churn": np.where(churned, "yes", "no"),
    })
    return _inject_churn_faults(frame, rng)


def churn_chunks(n_rows: int, chunk_rows: int = 500_000, seed: int = 7) -> Iterator[pd.DataFrame]:
    """``make_churn`` in chunks of at most ``chunk_rows`` rows, for tables larger than memory.

    Each chunk has its own seed and continues the ids of the previous one, so ids are unique
    across chunks (the injected duplicates repeat an id of their own chunk only).
    """
    for start in range(0, n_rows, chunk_rows):
        yield make_churn(min(chunk_rows, n_rows - start), seed=seed + start // chunk_rows, first_id=start)


def write_churn_parquet(path: str | os.PathLike, n_rows: int, chunk_rows: int = 500_000, seed: int = 7) -> Path:
    """A generated churn table of about ``n_rows`` rows (plus its duplicates) as one Parquet file, chunk by chunk."""
    path = Path(path)
    writer = None
    try:
        for chunk in churn_chunks(n_rows, chunk_rows, seed):
            table = pa.Table.from_pandas(chunk, preserve_index=False)
            writer = writer or pq.ParquetWriter(path, table.schema)
            writer.write_table(table.cast(writer.schema))
    finally:
        if writer is not None:
            writer.close()
    return path


def _inject_churn_faults(frame: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """The demo's own faults (``make_churn``); rows, spellings and duplicates are picked as the teaching faults pick them."""
    n = len(frame)

    def pick(share: float) -> np.ndarray:
        return faults.pick_rows(n, share, rng)

    frame.loc[pick(0.03), "monthly_charges"] = np.nan
    frame.loc[pick(0.02), "tenure_months"] = np.nan
    frame.loc[pick(0.04), "payment_method"] = np.nan
    outliers = pick(0.005)
    frame.loc[outliers, "monthly_charges"] = frame.loc[outliers, "monthly_charges"] * 10
    new_customers = pick(0.01)
    frame.loc[new_customers, "total_charges"] = " "
    faults.vary_spellings(frame, "contract", {"Month-to-month": ["month-to-month", "Month-to-month ", "Month to month"],
                                              "One year": ["one year", "One Year "],
                                              "Two year": ["two year", " Two year"]}, 0.06, rng)
    faults.vary_spellings(frame, "has_partner", {"Yes": ["yes", "Y", "yes "], "No": ["no", "N", " No"]}, 0.08, rng)
    return faults.append_duplicates(frame, pick(0.015), rng)


def _sklearn_builtin(name: str) -> pd.DataFrame:
    from sklearn import datasets as skd  # local: only the built-in datasets need it (0.3 s import)

    if name == "breast_cancer":
        bunch = skd.load_breast_cancer(as_frame=True)
        frame = bunch.frame.rename(columns={"target": "diagnosis"})
        frame["diagnosis"] = np.where(bunch.target == 0, "malignant", "benign")
        return frame
    if name in ("wine", "wine_segments"):
        bunch = skd.load_wine(as_frame=True)
        frame = bunch.frame.rename(columns={"target": "cultivar"})
        frame["cultivar"] = frame["cultivar"].map({0: "class_0", 1: "class_1", 2: "class_2"})
        # label columns of built-in data sets are dropped for clustering
        return frame.drop(columns="cultivar") if name == "wine_segments" else frame
    if name == "diabetes":
        bunch = skd.load_diabetes(as_frame=True, scaled=False)
        return bunch.frame.rename(columns={"target": "progression"})
    raise AssertionError(name)


def load_builtin(name: str) -> pd.DataFrame:
    preset_for(BUILTIN_PREFIX + name)  # raises the clear error for unknown names
    return make_churn() if name == "churn" else _sklearn_builtin(name)


# --- files and databases ------------------------------------------------------------------


def detect_separator(sample: str) -> str:
    """Guess a CSV delimiter from a text sample (``csv.Sniffer``, comma when unsure)."""
    if not sample.endswith("\n") and "\n" in sample:
        sample = sample[:sample.rfind("\n")]  # whole lines only: a cut-off last line misleads the sniffer
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    except csv.Error:
        return ","


def read_csv(path: Path, encoding: str = "utf-8", sep: str | None = None) -> pd.DataFrame:
    raw = path.read_bytes()
    if not raw.strip():
        raise PlaybookError(f"The data file {path} is empty.", "point dataset at a file with a header and rows.")
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as exc:
        raise PlaybookError(f"Cannot decode {path} as {encoding} (byte {exc.start}: {raw[exc.start:exc.start + 1]!r}).",
                            "set the encoding parameter to the file's encoding, e.g. -p encoding latin-1.") from None
    except LookupError:
        raise PlaybookError(f"Unknown encoding {encoding!r}.", "use a Python codec name such as utf-8 or latin-1.") from None
    text = text.lstrip("\ufeff")
    delimiter = sep or detect_separator(text[:20000])
    try:
        frame = pd.read_csv(io.StringIO(text), sep=delimiter, engine="python" if len(delimiter) > 1 else "c")
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise PlaybookError(f"Cannot parse {path} as CSV with delimiter {delimiter!r}: {str(exc).strip()}.",
                            "check the file, or set the sep parameter to its delimiter.") from None
    return frame


def read_sql(url: str, query: str | None) -> pd.DataFrame:
    """Run ``query`` against a database: SQLite via the standard library, others via SQLAlchemy."""
    if not query:
        raise PlaybookError(f"dataset {url!r} is a database URL but no query is set.",
                            "set the query parameter, e.g. -p query 'SELECT * FROM customers'.")
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///"):]
        if not Path(path).exists():
            raise PlaybookError(f"SQLite database {path!r} does not exist.", "check the path in the dataset URL.")
        try:
            with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
                return pd.read_sql_query(query, conn)
        except (sqlite3.Error, pd.errors.DatabaseError) as exc:
            raise PlaybookError(f"The SQL query failed: {exc}.", "check the query and table names.") from None
    try:
        import sqlalchemy  # local: optional, the [sql] extra
    except ImportError:
        raise PlaybookError(f"Reading {url.split(':')[0]} databases needs SQLAlchemy.",
                            "install the sql extra: pip install 'ml-project-playbook[sql]' plus the database driver.") from None
    try:
        engine = sqlalchemy.create_engine(url)
        with engine.connect() as conn:
            return pd.read_sql_query(sqlalchemy.text(query), conn)
    except Exception as exc:  # drivers raise many types; one clear message for all
        raise PlaybookError(f"The SQL query failed: {exc}.", "check the URL, credentials and query.") from None


def is_database_url(dataset: str) -> bool:
    return "://" in dataset and not dataset.startswith("file://")


def load_source(dataset: str, *, encoding: str = "utf-8", sep: str | None = None,
                query: str | None = None) -> pd.DataFrame:
    """Load the data set named by the ``dataset`` parameter (no snapshot, no checks)."""
    if dataset.startswith(BUILTIN_PREFIX):
        return load_builtin(dataset[len(BUILTIN_PREFIX):])
    if is_database_url(dataset):
        return read_sql(dataset, query)
    path = Path(os.path.expanduser(dataset))
    if not path.exists():
        raise PlaybookError(f"The data file {str(path)!r} does not exist.",
                            "check the dataset path (relative paths are relative to where you run playbook).")
    if path.is_dir():
        raise PlaybookError(f"dataset {str(path)!r} is a folder, not a file.", "point dataset at a CSV or Parquet file.")
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        if path.stat().st_size == 0:
            raise PlaybookError(f"The Parquet file {path} is empty (0 bytes).", "re-export the data.")
        try:
            return pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises several types for damaged files
            raise PlaybookError(f"Cannot read {path} as Parquet: {exc}.", "re-export the file as Parquet or CSV.") from None
    if suffix in (".db", ".sqlite", ".sqlite3"):
        return read_sql(f"sqlite:///{path}", query)
    return read_csv(path, encoding=encoding, sep=sep)


def check_loaded(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """Structural checks every loaded table must pass, with one clear message each."""
    cols = [str(c) for c in frame.columns]
    dupes = sorted({c for c in cols if cols.count(c) > 1 or c.rsplit(".", 1)[0] in cols and c.rsplit(".", 1)[-1].isdigit()})
    if frame.shape[1] == 0:
        raise PlaybookError(f"{source} has no columns.", "check the file and the sep parameter.")
    if len(frame) == 0:
        raise PlaybookError(f"{source} has a header but no rows.", "point dataset at a file with data rows.")
    if dupes:
        raise PlaybookError(f"{source} has duplicated column names: {', '.join(dupes)}.",
                            "rename the columns so each name is unique.")
    frame.columns = cols
    return frame


def _is_scratch(run) -> bool:
    return run.path == interactive_run_dir().resolve()


def load_snapshot(run, params) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The raw table of this run: read the snapshot, or load the source once and write it.

    Returns the frame and its provenance (source, sha256, rows, columns, load time). A teaching
    run's table carries its fault record (``faults.record_of``) and the notice is printed.
    """
    if run.raw_snapshot_path.exists():
        frame = pd.read_parquet(run.raw_snapshot_path)
        manifest = run.read_manifest()
        provenance = manifest.get("dataset") or {}
        record = manifest.get(faults.RECORD_ATTR)
        changed = _snapshot_differs(provenance, record, params)
        if changed and _is_scratch(run):
            run.raw_snapshot_path.unlink()  # the interactive scratch folder may be overwritten
            return load_snapshot(run, params)
        if changed:
            raise PlaybookError(f"Run folder {run.path} holds a snapshot of {changed}, not the one these parameters ask for.",
                                "use a new run folder (run_dir) for a different data set or teaching_faults.")
        if record:
            frame.attrs[faults.RECORD_ATTR] = record
    else:
        frame, seconds = load_checked(params)
        provenance = write_snapshot(run, params, frame, seconds)
    if faults.record_of(frame):
        say(faults.notice(faults.record_of(frame)))
    return frame, provenance


def _snapshot_differs(provenance: dict[str, Any], record: dict[str, Any] | None, params) -> str | None:
    """What the run's snapshot holds when it is not what ``params`` ask for (None: the same)."""
    if provenance.get("source") not in (None, params["dataset"]):
        return repr(provenance.get("source"))
    requested = sorted(faults.check_names(params.get("teaching_faults")))
    recorded = sorted((record or {}).get("faults") or [])
    if requested != recorded or (requested and record.get("seed") != params.get("seed")):
        return f"{params['dataset']!r} with teaching_faults {recorded} (seed {(record or {}).get('seed')})"
    return None


def load_checked(params) -> tuple[pd.DataFrame, float]:
    """Load the source named by ``params``, run the structural checks and inject the ``teaching_faults``;
    also the load time (the faults' time not counted)."""
    started = time.perf_counter()
    frame = load_source(params["dataset"], encoding=params.get("encoding", "utf-8"),
                        sep=params.get("sep"), query=params.get("query"))
    frame = check_loaded(frame, params["dataset"])
    seconds = time.perf_counter() - started
    return with_teaching_faults(frame, params), seconds


def with_teaching_faults(frame: pd.DataFrame, params) -> pd.DataFrame:
    """The loaded table with ``params``' teaching faults (``faults.inject``; its record in ``frame.attrs``)."""
    names = params.get("teaching_faults") or []
    if not names:
        return frame
    exclude = [params.get(k) for k in ("id_column", "group_column", "time_column")]
    exclude += list(params.get("sensitive_columns") or []) + list(params.get("keep_columns") or [])
    faulted, _ = faults.inject(frame, names, target=params.get("target"), problem_type=params.get("problem_type"),
                               seed=params["seed"], exclude=[c for c in exclude if c])
    return faulted


def write_snapshot(run, params, frame: pd.DataFrame, seconds: float) -> dict[str, Any]:
    """Write the raw snapshot of a loaded table and its provenance (manifest ``dataset``)."""
    # object columns with mixed types cannot be written to Parquet: keep them as text
    for col in frame.columns:
        if frame[col].dtype == object:
            kinds = {type(v) for v in frame[col].dropna().head(10000)}
            if len(kinds) > 1:
                frame[col] = frame[col].map(lambda v: v if v is None or (isinstance(v, float) and np.isnan(v)) else str(v))

    write_parquet(run.raw_snapshot_path, frame)
    provenance = {"source": params["dataset"], "sha256": frame_sha256(frame), "rows": int(frame.shape[0]),
                  "columns": int(frame.shape[1]), "load_seconds": round(seconds, 3),
                  "loaded_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                  "query": params.get("query")}
    run.update_manifest(dataset=provenance, teaching_faults=faults.record_of(frame))
    return provenance
