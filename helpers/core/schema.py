"""The data contract written by step 2 (``schema.json``): what new data is validated against."""

from __future__ import annotations

from typing import Any

import pandas as pd

from helpers.core.artifacts import Run, read_json
from helpers.core.errors import PlaybookError
from helpers.core.paths import STEP_NOTEBOOKS
from helpers.core.prepared import Prepared

MAX_SCHEMA_CATEGORIES = 200


def _schema_column(series: pd.Series, kind: str) -> dict[str, Any]:
    col = {"name": series.name, "kind": kind, "dtype": str(series.dtype), "nullable": bool(series.isna().any()),
           "min": None, "max": None, "categories": None}
    values = series.dropna()
    if kind == "numeric" and len(values):
        col.update(min=float(values.min()), max=float(values.max()))
    if kind == "categorical" and values.nunique() <= MAX_SCHEMA_CATEGORIES:
        col["categories"] = sorted(map(str, values.unique()))
    return col


def make_schema(prepared: Prepared) -> dict[str, Any]:
    """The data contract new data is validated against (from the training side)."""
    train = prepared.train
    cols = [_schema_column(train[c], "numeric") for c in prepared.numeric]
    cols += [_schema_column(train[c], "categorical") for c in prepared.categorical]
    if prepared.id_column and prepared.id_column in train.columns:
        cols.append(_schema_column(train[prepared.id_column], "identifier"))
    return {"schema_version": 1, "target": prepared.target, "id_column": prepared.id_column, "columns": cols}


def load_schema(run: Run, *, needed_by: str | None = None) -> dict[str, Any]:
    """Step 2's ``schema.json`` (a clear "run step 2 first" error when missing)."""
    path = run.artifacts / STEP_NOTEBOOKS[1] / "schema.json"
    if not path.exists():
        run.read_summary(STEP_NOTEBOOKS[1], needed_by=needed_by)
        raise PlaybookError(f"{path} is missing although step 2 ran.", "re-run step 2.")
    return read_json(path)
