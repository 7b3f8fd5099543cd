"""Step 2's data fixes, replayed on any table: the training side, new data in ``playbook predict``
and anything that serves the model. One implementation, so that training and serving clean alike."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

SYNONYMS = {"y": "yes", "n": "no", "t": "true", "f": "false"}
_SEPARATORS = re.compile(r"[\s_\-]+")


def is_number(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def normalise_text(value: Any) -> str:
    """Case, whitespace and hyphen/underscore folded; common boolean abbreviations expanded."""
    key = _SEPARATORS.sub(" ", str(value)).strip().lower()
    return SYNONYMS.get(key, key)


def canonical(series: pd.Series, mapping: Mapping[str, str]) -> pd.Series:
    """``series`` with each value replaced by its canonical spelling (``series`` itself when none changes)."""
    uniques = series.dropna().unique()
    lookup = {v: mapping.get(normalise_text(v), v) for v in uniques}  # per distinct value: fast
    if lookup and all(new is old or new == old for old, new in lookup.items()):
        # already canonical (a served row usually is): map and where would rebuild the same column, three
        # pandas calls that cost a single-row request of the service ~0.5 ms (a column without values
        # goes through them: map changes its dtype, and callers see that dtype)
        return series
    return series.map(lookup).where(series.notna(), series)


def to_number(series: pd.Series) -> pd.Series:
    """Numbers from text (thousands commas removed); anything else becomes missing."""
    if is_number(series):
        return series.astype(float)
    text = series.astype("string").str.strip().str.replace(",", "", regex=False)
    return pd.to_numeric(text, errors="coerce").astype(float)


def apply_cleaning(frame: pd.DataFrame, cleaning: Mapping[str, Any]) -> pd.DataFrame:
    """Replay step 2's data fixes on any table (new data too): never drops a row.

    Columns the fixes name but the table lacks (e.g. the target of new data) are skipped.
    """
    out = frame.copy()
    for col, mapping in (cleaning.get("spellings") or {}).items():
        if col in out.columns:
            fixed = canonical(out[col], mapping)
            if fixed is not out[col]:
                out[col] = fixed
    for col in cleaning.get("numeric_text") or []:
        if col in out.columns:
            out[col] = to_number(out[col])
    for col in infinite_columns(out):  # on every table: new data may bring infinities elsewhere
        out[col] = out[col].replace([np.inf, -np.inf], np.nan)
    drop = [c for c in cleaning.get("drop_columns") or [] if c in out.columns]
    return out.drop(columns=drop) if drop else out  # (served rows seldom carry them: no call, no copy)


def infinite_columns(frame: pd.DataFrame) -> list[str]:
    """Numeric columns holding inf or -inf.

    The columns ``select_dtypes("number")`` gives (timedelta counts; booleans do not), read from the dtypes
    directly: ``select_dtypes`` costs a single-row request of the service ~0.4 ms. Integers cannot hold inf.
    """
    types = pd.api.types
    numeric = [i for i, d in enumerate(frame.dtypes) if types.is_timedelta64_dtype(d) or (
        types.is_numeric_dtype(d) and not types.is_bool_dtype(d) and not types.is_integer_dtype(d))]
    return [frame.columns[i] for i in numeric
            if np.isinf(frame.iloc[:, i].to_numpy(dtype=float, na_value=np.nan)).any()]
