"""The one train/test split every step uses.

Each row gets a key at load: the id or group column when given, else a hash of the
normalised row (case and whitespace folded), so cleaning never moves a row and
duplicates stay on one side. Keys are ranked by a seeded hash within each class
(exact stratification, deterministic); a time column gives a time-ordered split.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from helpers.core.errors import PlaybookError

_NUMBER_START = frozenset("+-.in")  # what float() can start with once text is stripped and lowercased (or a digit)


def _normalise(value) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return ""
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return repr(float(value))
    text = " ".join(str(value).split()).lower()
    first = text[:1]
    if first and (first in _NUMBER_START or first.isdigit()):  # plain words skip float()'s exception (1M ids: 3 s)
        try:  # numbers stored as text key like numbers, so coercing them moves nothing
            return repr(float(text.replace(",", "")))
        except ValueError:
            pass
    return text


def _normalised_column(values: pd.Series) -> np.ndarray:
    """``_normalise`` of every value of one column (an object array), computed once per distinct value.

    Exactly the per-value result: text (and booleans) by distinct value, numbers by distinct bit
    pattern (so -0.0 and 0.0 stay apart), mixed object columns value by value. Per cell, the
    normalisation and ``DataFrame.apply(axis=1)`` took 330 s of the split on 1,000,000 rows.
    """
    dtype = values.dtype
    if pd.api.types.is_bool_dtype(dtype) or (pd.api.types.is_string_dtype(dtype) and (
            not pd.api.types.is_object_dtype(dtype) or pd.api.types.infer_dtype(values, skipna=True) == "string")):
        codes, uniques = pd.factorize(values, use_na_sentinel=True)
        table = np.array([_normalise(v) for v in uniques.tolist()] + [""], dtype=object)  # code -1 (missing) -> ""
        return table[codes]
    if pd.api.types.is_numeric_dtype(dtype):
        numbers = values.to_numpy(dtype=float, na_value=np.nan)  # what float(value) gives
        codes, uniques = pd.factorize(numbers.view(np.int64))
        table = np.array([repr(float(v)) for v in uniques.view(np.float64)], dtype=object)
        out = table[codes]
        out[np.isnan(numbers)] = ""
        return out
    return np.array([_normalise(v) for v in values.tolist()], dtype=object)


def row_keys(frame: pd.DataFrame, *, id_column: str | None = None, group_column: str | None = None,
             exclude: tuple[str, ...] = ()) -> pd.Series:
    """One key per row: the group, else the id, else a hash of the normalised row."""
    for col in (group_column, id_column):
        if col:
            if col not in frame.columns:
                raise PlaybookError(f"Column {col!r} (id/group column) is not in the data.",
                                    f"use one of: {', '.join(map(str, frame.columns[:20]))}.")
            return pd.Series(_normalised_column(frame[col]), index=frame.index, name="row_key")
    cols = [c for c in frame.columns if c not in exclude]
    if not len(frame):
        return pd.Series([], dtype=str, name="row_key")
    columns = [_normalised_column(frame[c]).tolist() for c in cols]
    rows = zip(*columns, strict=True) if columns else [()] * len(frame)
    keys = [hashlib.sha1("\x1f".join(parts).encode()).hexdigest() for parts in rows]
    return pd.Series(keys, index=frame.index, name="row_key")


def keyed_hash(keys: pd.Series, seed: int) -> np.ndarray:
    """The seeded 64-bit hash (uint64) of each key, hashed once per distinct key."""
    codes, uniques = pd.factorize(keys, use_na_sentinel=False)
    salt = f"{seed}:".encode()
    table = np.fromiter((int.from_bytes(hashlib.sha256(salt + str(k).encode()).digest()[:8], "big") for k in uniques.tolist()),
                        dtype=np.uint64, count=len(uniques))
    return table[codes]


def split_hashes(frame: pd.DataFrame, *, seed: int, id_column: str | None = None, group_column: str | None = None,
                 exclude: tuple[str, ...] = ()) -> np.ndarray:
    """The split's hash of every row's key: the one key function of the in-memory and the DuckDB path.

    Vectorised per column (``row_keys``), so the DuckDB path applies it to each Arrow batch it
    streams; it is not SQL because the key normalises values the way Python prints them
    (``repr(float)``), which DuckDB's casts do not reproduce exactly.
    """
    keys = row_keys(frame, id_column=id_column, group_column=group_column, exclude=exclude)
    return keyed_hash(keys, seed)


def strata(y: pd.Series | None, problem_type: str, n_bins: int = 5) -> pd.Series:
    """Strata for the split: the class, quantile bins of a numeric target, or one stratum."""
    if y is None or problem_type == "clustering":
        return pd.Series("all", index=y.index if y is not None else None)
    if problem_type == "regression":
        values = pd.to_numeric(y, errors="coerce")
        ranks = values.rank(method="first")
        return pd.qcut(ranks, q=min(n_bins, max(1, values.notna().sum())), labels=False, duplicates="drop").astype(str)
    return y.astype(str)


def assign_test(frame: pd.DataFrame, *, target: str | None, problem_type: str, test_size: float, seed: int,
                id_column: str | None = None, group_column: str | None = None,
                time_column: str | None = None) -> pd.Series:
    """Boolean mask (indexed like ``frame``): True for rows on the held-out test side."""
    if not 0 < test_size < 1:
        raise PlaybookError(f"test_size is {test_size}; it must be between 0 and 1 (exclusive).", "use e.g. 0.2.")
    exclude = tuple(c for c in (target,) if c)
    keys = row_keys(frame, id_column=id_column, group_column=group_column, exclude=exclude)
    if time_column:
        return _time_split(frame, keys, time_column, test_size)
    y = frame[target] if target else None
    labels = strata(y, problem_type) if y is not None else pd.Series("all", index=frame.index)
    hashes = pd.Series(keyed_hash(keys, seed), index=frame.index)
    test = test_hashes(per_key_table(hashes, labels), test_size)
    mask = hashes.isin(test).rename("is_test")
    _check_sides(mask, len(frame), keys.nunique())
    return mask


def per_key_table(hashes: pd.Series, labels: pd.Series) -> pd.DataFrame:
    """One row per key hash: its stratum (the first one seen, so a key never straddles the split) and rows."""
    key_table = pd.DataFrame({"hash": hashes.to_numpy(), "stratum": labels.to_numpy(), "n": 1})
    return key_table.groupby("hash", sort=False).agg(stratum=("stratum", "first"), n=("n", "size")).reset_index()


def test_hashes(per_key: pd.DataFrame, test_size: float) -> np.ndarray:
    """The key hashes of the test side: within each stratum, the lowest hashes until ``test_size`` of its rows.

    Keys without a stratum (a missing target) stay on the training side.
    """
    known = per_key["stratum"].notna().to_numpy()
    codes = pd.factorize(per_key["stratum"].to_numpy()[known])[0]
    return chosen_hashes(per_key["hash"].to_numpy(dtype=np.uint64)[known], codes,
                         per_key["n"].to_numpy(dtype=np.int64)[known], test_size)


def chosen_hashes(hashes: np.ndarray, codes: np.ndarray, sizes: np.ndarray, test_size: float, *,
                  presorted: bool = False) -> np.ndarray:
    """``test_hashes`` on arrays (one entry per key: hash, stratum code, rows), by sorted arrays, not a group-by.

    ``presorted``: the keys already come grouped by stratum and by hash within it (the DuckDB path
    sorts its per-key table in SQL, so nothing of the size of the table is sorted in memory).
    """
    if not presorted:
        order = np.lexsort((hashes, codes))  # by stratum, then by hash within it
        codes, hashes, sizes = codes[order], hashes[order], sizes[order]
    if not len(codes):
        return hashes[:0]
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    totals = np.add.reduceat(sizes, starts)
    wanted = np.array([round(test_size * int(t)) for t in totals], dtype=np.int64)  # Python's round, as before
    running = np.cumsum(sizes)
    before = np.r_[0, running[:-1]][starts]
    lengths = np.diff(np.r_[starts, len(codes)])
    return hashes[(running - np.repeat(before, lengths)) <= np.repeat(wanted, lengths)]


def _check_sides(mask: pd.Series, rows: int, keys: int) -> None:
    if mask.all() or not mask.any():
        raise PlaybookError(f"The split put {'every' if mask.all() else 'no'} row on the test side ({rows} rows, {keys} keys).",
                            "use more rows, more groups, or a different test_size.")


def parse_times(series: pd.Series) -> pd.Series:
    """Timestamps of a column's values, each value parsed on its own (NaT where a value is no date)."""
    # format="mixed": without it pandas infers one format from the first value and turns every other format into NaT
    try:
        return pd.to_datetime(series, errors="coerce", format="mixed")
    except ValueError:  # different UTC offsets cannot share one dtype: compare them in UTC
        return pd.to_datetime(series, errors="coerce", format="mixed", utc=True)


def time_values(series: pd.Series) -> pd.Series:
    """What a time column is ordered by: its timestamps, or its numbers when it holds numbers (or mostly non-dates)."""
    # numbers as numbers: pandas would read them as nanoseconds since 1970, so 0.1 and 0.9 would tie
    if pd.api.types.is_numeric_dtype(series):
        return series
    times = parse_times(series)
    return pd.to_numeric(series, errors="coerce") if times.isna().mean() > 0.5 else times


def _time_split(frame: pd.DataFrame, keys: pd.Series, time_column: str, test_size: float) -> pd.Series:
    if time_column not in frame.columns:
        raise PlaybookError(f"time_column {time_column!r} is not in the data.", "set it to an existing column or None.")
    times = time_values(frame[time_column])
    if times.isna().all():
        raise PlaybookError(f"time_column {time_column!r} holds no dates or numbers.", "point it at a date or time column.")
    # a key's time is its latest row; the latest keys (by time) form the test side
    key_time = pd.Series(times.to_numpy(), index=keys.to_numpy()).groupby(level=0).max().sort_values(kind="stable")
    cutoff_index = int(round(len(key_time) * (1 - test_size)))
    cutoff_index = min(max(cutoff_index, 1), len(key_time) - 1)
    cutoff = key_time.iloc[cutoff_index]
    test_keys = set(key_time.index[key_time >= cutoff])
    return keys.isin(test_keys).rename("is_test")


def split_summary(mask: pd.Series, y: pd.Series | None) -> dict:
    """Sizes and per-class shares on each side, for summaries and the report."""
    out = {"train_rows": int((~mask).sum()), "test_rows": int(mask.sum())}
    if y is not None and y.nunique() <= 50:
        out["train_balance"] = y[~mask].value_counts(normalize=True).round(4).to_dict()
        out["test_balance"] = y[mask].value_counts(normalize=True).round(4).to_dict()
    return out
