"""The hand-over from step 2 to steps 3-5: cleaned train/test tables and how to preprocess them.

Step 2 writes it with ``save_prepared``; later steps read it with ``load_prepared``
(never by guessing paths). Files, under ``artifacts/02_data_foundation/``:
``train.parquet``, ``test.parquet`` (cleaned rows; the index is the raw row number),
``prepared.json`` (target, problem type, feature lists, preprocessing choices) and
``cleaning.json`` (the data fixes ``playbook predict`` re-applies to new data).

On the DuckDB path (data larger than memory) the two Parquet files are the hand-over itself:
``load_prepared(run, train_rows=n)`` materialises a seeded, stratified sample of at most ``n``
training rows (the rows ``sampling.subsample`` would draw from the whole side, read batch by batch),
and ``Prepared.test_chunks`` scores the whole test side chunk by chunk.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline

from helpers.core.artifacts import Run, read_json
from helpers.core.families import Family
from helpers.core.features import as_model_input, make_preprocessor, with_model
from helpers.core.paths import STEP_NOTEBOOKS
from helpers.core.sampling import subsample

STEP2 = STEP_NOTEBOOKS[1]


@dataclass
class Prepared:
    """Cleaned data and preprocessing choices, as step 2 left them."""

    train: pd.DataFrame
    test: pd.DataFrame
    target: str | None
    problem_type: str
    numeric: list[str]
    categorical: list[str]
    id_column: str | None = None
    sensitive_columns: list[str] = field(default_factory=list)
    impute_strategy: str = "median"
    scaler: str = "standard"
    rare_category_share: float = 0.01
    cleaning: dict[str, Any] = field(default_factory=dict)
    # the Parquet files behind the sides and their whole sizes, when loaded from a run (the train side may be a sample)
    files: dict[str, Any] = field(default_factory=dict)

    @property
    def sampled(self) -> bool:
        """True when ``train`` holds a sample of the training side rather than every row."""
        return bool(self.files) and len(self.train) < self.files["train_rows"]

    def test_chunks(self, chunk_rows: int = 100_000) -> Iterator[tuple[pd.DataFrame, pd.Series | None]]:
        """The whole test side as (model input, target) chunks: read from its Parquet file when there is one."""
        chunks = iter_parquet(self.files["test"], chunk_rows) if self.files else (
            self.test.iloc[i:i + chunk_rows] for i in range(0, len(self.test), chunk_rows))
        for chunk in chunks:
            X = as_model_input(chunk, self.numeric, self.categorical)
            yield X, chunk[self.target] if self.target else None

    @property
    def features(self) -> list[str]:
        return list(self.numeric) + list(self.categorical)

    def X(self, side: str = "train") -> pd.DataFrame:
        """Model input of one side ("train" or "test"): features only, clean dtypes."""
        frame = self.train if side == "train" else self.test
        return as_model_input(frame, self.numeric, self.categorical)  # the conversion serving uses too

    def y(self, side: str = "train") -> pd.Series | None:
        if not self.target:
            return None
        return (self.train if side == "train" else self.test)[self.target]

    def make_preprocessor(self, scaler: str | None = None) -> ColumnTransformer:
        """A fresh, unfitted preprocessor (fit it inside cross-validation)."""
        return make_preprocessor(self.numeric, self.categorical, impute_strategy=self.impute_strategy,
                                 scaler=scaler or self.scaler, rare_category_share=self.rare_category_share)

    def pipeline(self, family: Family, seed: int, n_jobs: int = 1) -> Pipeline:
        """The preprocessor (scaled only when the family needs it) followed by the family's estimator.

        Steps 3 and 4 build every candidate this way, so step 3 times what step 4 fits.
        """
        scaler = None if family.scales_features else "none"
        return with_model(self.make_preprocessor(scaler=scaler), family.build(seed, n_jobs))

    def meta(self) -> dict[str, Any]:
        d = asdict(self)
        for key in ("train", "test", "cleaning", "files"):
            d.pop(key)
        return d


def save_prepared(run: Run, prepared: Prepared) -> None:
    run.write_table(STEP2, "train.parquet", prepared.train)
    run.write_table(STEP2, "test.parquet", prepared.test)
    run.write_artifact_json(STEP2, "prepared.json", prepared.meta())
    run.write_artifact_json(STEP2, "cleaning.json", prepared.cleaning)


def has_prepared(run: Run) -> bool:
    return all((run.artifacts / STEP2 / name).exists()
               for name in ("train.parquet", "test.parquet", "prepared.json"))


def load_prepared(run: Run, *, needed_by: str | None = None, train_rows: int | None = None,
                  seed: int = 0) -> Prepared:
    """Step 2's hand-over; a clear "run step 2 first" error when it is missing.

    ``train_rows``: at most this many training rows, a seeded sample (stratified for classification)
    read without loading the whole side (None: every row).
    """
    if not has_prepared(run):
        run.read_summary(STEP2, needed_by=needed_by)  # raises the clear error naming step 2
    folder = run.artifacts / STEP2
    meta = read_json(folder / "prepared.json")
    cleaning = read_json(folder / "cleaning.json") if (folder / "cleaning.json").exists() else {}
    files = {side: folder / f"{side}.parquet" for side in ("train", "test")}
    sizes = {f"{side}_rows": pq.ParquetFile(path).metadata.num_rows for side, path in files.items()}
    stratify = meta["problem_type"] == "classification"
    train = sample_parquet(files["train"], train_rows, seed, meta.get("target"), stratify=stratify) \
        if train_rows is not None else pd.read_parquet(files["train"])
    return Prepared(train=train, test=pd.read_parquet(files["test"]), cleaning=cleaning,
                    files={**files, **sizes}, **meta)


def iter_parquet(path: str | os.PathLike, chunk_rows: int = 100_000) -> Iterator[pd.DataFrame]:
    """A Parquet table as pandas chunks of at most ``chunk_rows`` rows, index included (the raw row numbers)."""
    handle = pq.ParquetFile(path)
    numbers, start = _range_index(handle), 0
    for batch in handle.iter_batches(batch_size=chunk_rows):
        frame = batch.to_pandas()
        if numbers is not None:
            frame.index = numbers[start:start + len(frame)]
        start += len(frame)
        yield frame


def _range_index(handle: pq.ParquetFile) -> pd.RangeIndex | None:
    """The index pandas stored as a range (metadata, no column): batches read alone would lose it."""
    meta = handle.schema_arrow.pandas_metadata or {}
    ranges = [c for c in meta.get("index_columns", []) if isinstance(c, dict) and c.get("kind") == "range"]
    return pd.RangeIndex(ranges[0]["start"], ranges[0]["stop"], ranges[0]["step"]) if ranges else None


def sample_parquet(path: str | os.PathLike, rows: int, seed: int, target: str | None, *,
                   stratify: bool) -> pd.DataFrame:
    """The rows ``sampling.subsample`` draws from the whole Parquet table (same rows, same order), read in batches.

    Only the target column is read whole (the strata); every other column is read batch by batch
    and only the drawn rows are kept, so memory holds the sample, not the table.
    """
    handle = pq.ParquetFile(path)
    total = handle.metadata.num_rows
    if rows >= total:
        return pd.read_parquet(path)
    y = pq.read_table(path, columns=[target]).column(0).to_pandas() if target else None
    positions = pd.DataFrame(index=pd.RangeIndex(total))
    drawn, _ = subsample(positions, y, rows, seed, stratify=stratify)
    order = drawn.index.to_numpy()
    wanted = np.sort(order)
    parts, start = [], 0
    for batch in handle.iter_batches(batch_size=100_000):
        lo, hi = np.searchsorted(wanted, [start, start + batch.num_rows])
        if hi > lo:
            parts.append(batch.take(pa.array(wanted[lo:hi] - start)))
        start += batch.num_rows
    table = pa.Table.from_batches(parts, schema=handle.schema_arrow).to_pandas()
    numbers = _range_index(handle)
    if numbers is not None:
        table.index = numbers[wanted]
    # back to the order of the draw (subsample's shuffled order), as the in-memory path returns it
    return table.iloc[np.searchsorted(wanted, order)]
