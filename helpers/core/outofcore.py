"""Data larger than memory: the data engine (pandas or DuckDB), its connection, the snapshot and the split.

``max_memory`` (bytes, ``0.5GB``; None: half the machine's memory, resolved once) decides
``data_engine``: a CSV or Parquet source (file, glob, folder of Parquet) whose estimated
in-memory size exceeds it is read through DuckDB. Both are resolved once and recorded in the
manifest and ``project.yaml``, so a re-run takes the same path on any machine.

On the DuckDB path nothing loads the whole table into pandas: DuckDB writes the raw snapshot
(``COPY ... TO ... (FORMAT parquet)``); the split streams Arrow batches of the key columns
through ``split.split_hashes`` (the in-memory path's key function) and chooses the test side
with ``split.test_hashes`` on the per-key table (one row per key, three narrow columns); DuckDB
then writes each side as Parquet. DuckDB gets an explicit ``memory_limit``, spills into the run
folder, and never installs or auto-loads an extension (offline).
"""

from __future__ import annotations

import datetime as dt
import glob
import hashlib
import os
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from helpers.core import split
from helpers.core.datasets import check_loaded
from helpers.core.errors import PlaybookError
from helpers.core.system import default_max_memory, format_bytes, parse_bytes

ENGINES = ("pandas", "duckdb")
PARQUET_SUFFIXES = (".parquet", ".pq")
CSV_SUFFIXES = (".csv", ".tsv", ".txt")
# a table in pandas takes a few times its Parquet (uncompressed) or CSV bytes: object strings, copies while reading
PANDAS_OVERHEAD = 3.0
DUCKDB_SHARE = 0.5  # of max_memory for DuckDB's own memory_limit: the rest is Python, Arrow batches and samples
BATCH_ROWS = 200_000
ROW_COLUMN = "_row"  # the raw row number of each row (the in-memory path's index)


# --- max_memory and data_engine --------------------------------------------------------------


def source_files(dataset: str) -> list[Path]:
    """The files of a file, glob or folder source (Parquet files of a folder); empty for built-ins and databases."""
    if dataset.startswith("builtin:") or ("://" in dataset and not dataset.startswith("file://")):
        return []
    text = os.path.expanduser(dataset.removeprefix("file://"))
    path = Path(text)
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.suffix.lower() in PARQUET_SUFFIXES)
    if glob.has_magic(text):
        return sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
    return [path] if path.exists() else []


def source_kind(files: list[Path]) -> str | None:
    """``parquet`` or ``csv`` when every file is one of them, else None (a source DuckDB does not read here)."""
    kinds = {"parquet" if p.suffix.lower() in PARQUET_SUFFIXES else "csv" if p.suffix.lower() in CSV_SUFFIXES else None
             for p in files}
    return kinds.pop() if len(kinds) == 1 else None


def estimated_pandas_bytes(files: list[Path]) -> int:
    """The estimated memory of the source as a pandas table (Parquet: its uncompressed size from the metadata)."""
    total = 0
    for path in files:
        if path.suffix.lower() in PARQUET_SUFFIXES:
            meta = pq.ParquetFile(path).metadata
            total += sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
        else:
            total += path.stat().st_size
    return int(total * PANDAS_OVERHEAD)


def resolve_engine(values: Mapping[str, Any]) -> dict[str, Any]:
    """``max_memory`` and ``data_engine`` as this run uses them: the values set, else resolved (once) for the source.

    A glob or folder source, or one estimated larger than ``max_memory``, is read by DuckDB;
    built-ins and databases by pandas.
    """
    max_memory = values.get("max_memory")
    limit = parse_bytes(max_memory) if max_memory is not None else default_max_memory()
    engine = values.get("data_engine")
    files = source_files(values["dataset"])
    kind = source_kind(files)
    if engine is None:
        many = len(files) > 1 or Path(os.path.expanduser(values["dataset"])).is_dir()
        try:
            engine = "duckdb" if kind and (many or estimated_pandas_bytes(files) > limit) else "pandas"
        except (OSError, pa.ArrowException):  # an unreadable file: the loader names the problem (pre-flight)
            engine = "pandas"
    if engine == "duckdb" and not kind:
        raise PlaybookError(f"data_engine duckdb reads CSV and Parquet sources; {values['dataset']!r} is neither.",
                            "point dataset at CSV or Parquet files (a file, a glob or a folder), or use data_engine pandas.")
    return {"max_memory": format_bytes(limit) if max_memory is None else max_memory, "data_engine": engine}


# --- the DuckDB connection --------------------------------------------------------------------


def connect(spill_dir: str | os.PathLike, max_memory: str | int, threads: int | None = None):
    """A DuckDB connection with an explicit memory limit and spill folder, that never installs extensions."""
    import duckdb  # local: only the out-of-core path needs it, and it is a large library

    spill = Path(spill_dir)
    spill.mkdir(parents=True, exist_ok=True)
    config = {"memory_limit": f"{max(int(parse_bytes(max_memory) * DUCKDB_SHARE) // 2**20, 64)}MiB",
              "temp_directory": str(spill), "autoinstall_known_extensions": "false",
              "autoload_known_extensions": "false", "preserve_insertion_order": "true"}
    if threads:
        config["threads"] = str(threads)
    return duckdb.connect(":memory:", config=config)


def quote(name: str) -> str:
    """A column name as a SQL identifier."""
    return '"' + str(name).replace('"', '""') + '"'


def literal(text: str) -> str:
    return "'" + str(text).replace("'", "''") + "'"


def source_sql(values: Mapping[str, Any]) -> str:
    """The ``FROM`` expression that reads the source (every file of a glob or folder as one table)."""
    files = source_files(values["dataset"])
    if not files:
        raise PlaybookError(f"The data source {values['dataset']!r} matches no file.",
                            "check the dataset path, glob or folder (relative paths are relative to where you run playbook).")
    listed = "[" + ", ".join(literal(p) for p in files) + "]"
    if source_kind(files) == "parquet":
        return f"read_parquet({listed}, union_by_name=true)"
    options = [f"encoding={literal(values.get('encoding') or 'utf-8')}"]
    if values.get("sep"):
        options.append(f"delim={literal(values['sep'])}")
    return f"read_csv({listed}, header=true, {', '.join(options)})"


def sample(con, values: Mapping[str, Any], rows: int = 10_000) -> pd.DataFrame:
    """The first ``rows`` rows of the source with its schema (what the pre-flight checks read)."""
    try:
        return con.sql(f"SELECT * FROM {source_sql(values)} LIMIT {int(rows)}").to_arrow_table().to_pandas()
    except PlaybookError:
        raise
    except Exception as exc:  # DuckDB raises several types for unreadable files
        raise PlaybookError(f"Cannot read {values['dataset']!r}: {exc}.", "check the files (CSV or Parquet) and sep.") from None


def count_rows(con, table_sql: str) -> int:
    return int(con.execute(f"SELECT count(*) FROM {table_sql}").fetchall()[0][0])


def file_sha256(path: str | os.PathLike) -> str:
    """The sha256 of a file's bytes, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_snapshot(con, values: Mapping[str, Any], path: str | os.PathLike) -> dict[str, Any]:
    """DuckDB copies the source to the raw Parquet snapshot (never through pandas); its rows, columns and sha256."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    con.sql(f"COPY (SELECT * FROM {source_sql(values)}) TO {literal(partial)} (FORMAT parquet)")
    os.replace(partial, path)  # atomic: a half-written snapshot never looks finished
    meta = pq.ParquetFile(path).metadata
    return {"rows": int(meta.num_rows), "columns": int(meta.num_columns), "sha256": file_sha256(path),
            "sha256_of": "the Parquet snapshot file"}


# --- the split on the DuckDB path -----------------------------------------------------------------


def parquet_sql(path: str | os.PathLike) -> str:
    return f"read_parquet({literal(path)})"


def _batch_keys(batch: pd.DataFrame, params: Mapping[str, Any], target: str | None, problem_type: str,
                labels: pd.Series | None) -> tuple[np.ndarray, pa.Array]:
    hashes = split.split_hashes(batch, seed=params["seed"], id_column=params.get("id_column"),
                                group_column=params.get("group_column"), exclude=(target,) if target else ())
    if labels is None:
        y = batch[target] if target else None
        labels = split.strata(y, problem_type) if y is not None else pd.Series("all", index=batch.index)
    # a missing target is a missing stratum (null), as in pandas: such rows join no stratum's test share
    return hashes, pa.array(labels.to_numpy(dtype=object), type=pa.string(), from_pandas=True)


def split_snapshot(con, raw_path: str | os.PathLike, folder: str | os.PathLike, params: Mapping[str, Any],
                   problem_type: str) -> dict[str, Any]:
    """Write ``train.parquet`` and ``test.parquet`` (raw rows, with their raw row number ``_row``) into ``folder``.

    The same rows on each side as ``split.assign_test`` on the whole table in pandas.
    """
    if params.get("time_column"):
        raise PlaybookError("A time-ordered split (time_column) is not available on the DuckDB path yet.",
                            "use data_engine pandas (a larger max_memory), or leave time_column unset.")
    if not 0 < params["test_size"] < 1:
        raise PlaybookError(f"test_size is {params['test_size']}; it must be between 0 and 1 (exclusive).", "use e.g. 0.2.")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    raw = parquet_sql(raw_path)
    target = params.get("target") if problem_type != "clustering" else None
    columns = [c for c in con.sql(f"SELECT * FROM {raw} LIMIT 0").columns]
    key_cols = [c for c in (params.get("group_column"), params.get("id_column")) if c][:1] or \
        [c for c in columns if c != target]
    # regression strata are quantile bins of the whole target: one column, computed once
    labels = None
    if target and problem_type == "regression":
        y = con.sql(f"SELECT {quote(target)} FROM {raw}").to_arrow_table().to_pandas().iloc[:, 0]
        labels = split.strata(y, problem_type)
    wanted = key_cols + ([target] if target and target not in key_cols else [])
    keys_path = folder / "split_keys.parquet"
    # the snapshot's key columns batch by batch, in file order (its row numbers): pyarrow streams them
    reader = pq.ParquetFile(raw_path).iter_batches(batch_size=BATCH_ROWS, columns=wanted)
    writer, start = None, 0
    try:
        for batch in reader:
            frame = batch.to_pandas()
            part = labels.iloc[start:start + len(frame)] if labels is not None else None
            hashes, strata = _batch_keys(frame, params, target, problem_type, part)
            table = pa.table({"row": np.arange(start, start + len(frame), dtype=np.int64), "hash": hashes,
                              "stratum": strata})
            writer = writer or pq.ParquetWriter(keys_path, table.schema)
            writer.write_table(table)
            start += len(frame)
    finally:
        if writer is not None:
            writer.close()
    # one row per key, grouped by stratum and sorted by hash in SQL; keys without a stratum stay in training
    per_key = con.sql(f"SELECT hash, stratum, n FROM (SELECT hash, arg_min(stratum, row) FILTER "
                      f"(WHERE stratum IS NOT NULL) AS stratum, count(*) AS n FROM {parquet_sql(keys_path)} "
                      "GROUP BY hash) WHERE stratum IS NOT NULL ORDER BY stratum, hash").to_arrow_table()
    codes = pc.dictionary_encode(per_key.column("stratum").combine_chunks()).indices.to_numpy()
    hashes = per_key.column("hash").combine_chunks().to_numpy()
    sizes = per_key.column("n").combine_chunks().to_numpy()
    del per_key
    test = pa.table({"hash": split.chosen_hashes(hashes, codes, sizes, params["test_size"], presorted=True)})
    del hashes, codes, sizes
    con.register("split_test_hashes", test)
    sides = {}
    for side, condition in (("test", "IN"), ("train", "NOT IN")):
        out = folder / f"{side}.parquet"
        con.sql(f"COPY (SELECT r.* EXCLUDE (file_row_number), r.file_row_number AS {ROW_COLUMN} "
                f"FROM read_parquet({literal(raw_path)}, file_row_number=true) r "
                f"JOIN {parquet_sql(keys_path)} k ON r.file_row_number = k.row "
                f"WHERE k.hash {condition} (SELECT hash FROM split_test_hashes) ORDER BY {ROW_COLUMN}) "
                f"TO {literal(out)} (FORMAT parquet)")
        sides[side] = out
    con.unregister("split_test_hashes")
    train_rows, test_rows = (pq.ParquetFile(sides[s]).metadata.num_rows for s in ("train", "test"))
    keys_total = con.execute(f"SELECT count(DISTINCT hash) FROM {parquet_sql(keys_path)}").fetchall()[0][0] \
        if not train_rows or not test_rows else None
    keys_path.unlink()
    if not train_rows or not test_rows:
        raise PlaybookError(f"The split put {'every' if not train_rows else 'no'} row on the test side "
                            f"({train_rows + test_rows} rows, {keys_total} keys).",
                            "use more rows, more groups, or a different test_size.")
    return {"train": str(sides["train"]), "test": str(sides["test"]), "train_rows": int(train_rows),
            "test_rows": int(test_rows)}


def checked_sample(values: Mapping[str, Any], rows: int = 10_000) -> pd.DataFrame:
    """The pre-flight read of the DuckDB path: the schema and the first ``rows`` rows, structurally checked."""
    with tempfile.TemporaryDirectory(prefix="playbook-preflight-") as spill:
        con = connect(spill, values.get("max_memory") or default_max_memory())
        try:
            return check_loaded(sample(con, values, rows), values["dataset"])
        finally:
            con.close()


def write_run_snapshot(run, values: Mapping[str, Any]) -> dict[str, Any]:
    """The run's raw snapshot written by DuckDB (spilling into the run folder), and its provenance in the manifest."""
    started = time.perf_counter()
    con = connect(run.artifacts / "duckdb-spill", values.get("max_memory") or default_max_memory())
    try:
        facts = write_snapshot(con, values, run.raw_snapshot_path)
    finally:
        con.close()
    provenance = {"source": values["dataset"], **facts, "load_seconds": round(time.perf_counter() - started, 3),
                  "loaded_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "query": values.get("query"),
                  "engine": "duckdb"}
    run.update_manifest(dataset=provenance)
    return provenance
