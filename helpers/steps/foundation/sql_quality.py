"""Step 2's profile and whole-row checks as DuckDB queries, for a training side larger than memory.

The counts each check needs (missing and blank values, distinct values, top values, duplicates,
ranges, quartiles, values beyond the fences, class balance) are computed by DuckDB on every
training row; the findings are then written by the same issue builders as the in-memory checks
(``quality.missing_issue`` and friends), so both paths report the same issues on the same data.
Semantic types are read from the first ``SAMPLE_ROWS`` rows (``quality.semantic_type`` itself
looks at most at the first 100,000 values for its spelling and date tests).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from helpers.core import features, outofcore
from helpers.core.outofcore import ROW_COLUMN, literal, quote
from helpers.core.problem import looks_like_identifier
from helpers.steps.foundation import quality

SAMPLE_ROWS = 100_000
_WHITESPACE = "chr(32) || chr(9) || chr(10) || chr(13) || chr(11) || chr(12)"  # what Python's str.strip() removes
_NUMERIC = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT",
            "FLOAT", "DOUBLE", "REAL")
_INTEGER = _NUMERIC[:9]


def table_sql(path: str) -> str:
    """The training side's raw columns (the row number left out) as a ``FROM`` expression."""
    return f"(SELECT * EXCLUDE ({ROW_COLUMN}) FROM read_parquet({literal(path)}))"


def column_types(con, table: str) -> dict[str, str]:
    return {name: str(kind) for name, kind in zip(*[con.sql(f"SELECT * FROM {table} LIMIT 0").columns,
                                                   con.sql(f"SELECT * FROM {table} LIMIT 0").types], strict=True)}


def _numbers(col: str, kind: str, commas: bool) -> str:
    """A column's values as numbers: numeric columns cast, text parsed (unparsable: NULL, as ``pd.to_numeric``)."""
    if kind.startswith("DECIMAL") or kind in _NUMERIC:
        return f"CAST({quote(col)} AS DOUBLE)"
    text = f"replace({quote(col)}, ',', '')" if commas else quote(col)
    return f"TRY_CAST({text} AS DOUBLE)"


def value_totals(con, table: str, types: Mapping[str, str]) -> dict[str, tuple[int, int, int]]:
    """Rows, non-missing values and blank text values of every column, in one scan."""
    words = ", ".join(literal(b) for b in sorted(quality.BLANKS))
    parts = []
    for col, kind in types.items():
        blank = (f"count(*) FILTER (WHERE lower(trim({quote(col)}, {_WHITESPACE})) IN ({words}))" if kind == "VARCHAR"
                 else "0")
        parts += [f"count({quote(col)})", blank]
    row = con.execute(f"SELECT count(*), {', '.join(parts)} FROM {table}").fetchall()[0]
    return {col: (int(row[0]), int(row[1 + 2 * i]), int(row[2 + 2 * i])) for i, col in enumerate(types)}


def column_counts(con, table: str, col: str, totals: tuple[int, int, int]) -> dict[str, Any]:
    """Rows, missing (blank text included), distinct values and the three most frequent values of one column.

    ``table`` holds the row number ``_row``: ties of the top values are shown in the order of their first
    row, as ``value_counts`` does. ``totals``: the column's ``value_totals``.
    """
    # one pass: the distinct values grouped once, their number counted over the groups, the top three kept
    top = con.sql(f"SELECT value, n, count(*) OVER () AS distinct_values FROM (SELECT {quote(col)} AS value, "
                  f"count(*) AS n, min({ROW_COLUMN}) AS first FROM {table} WHERE {quote(col)} IS NOT NULL GROUP BY ALL) "
                  "ORDER BY n DESC, first LIMIT 3").to_arrow_table().to_pandas()
    distinct = int(top["distinct_values"].iloc[0]) if len(top) else 0
    return {"rows": int(totals[0]), "values": int(totals[1]), "nulls": int(totals[0] - totals[1]),
            "blanks": int(totals[2]), "distinct": int(distinct),
            "top": list(zip(top["value"], top["n"].astype(int), strict=True))}


def numeric_summary(con, table: str, col: str, kind: str, commas: bool = True) -> dict[str, Any] | None:
    """Count, range, mean, sd, quartiles and the share beyond Tukey's far-out fences of a column's numbers."""
    x = _numbers(col, kind, commas)
    row = con.execute(f"SELECT count(x), count(DISTINCT x), min(x), max(x), avg(x), stddev_samp(x), "
                  f"quantile_cont(x, [0.25, 0.5, 0.75]) FROM (SELECT {x} AS x FROM {table}) WHERE x IS NOT NULL"
                  ).fetchall()[0]
    if not row[0]:
        return None
    q1, median, q3 = row[6]
    out = {"count": int(row[0]), "distinct": int(row[1]), "min": float(row[2]), "max": float(row[3]),
           "mean": float(row[4]), "std": float(row[5]) if row[0] > 1 else 0.0, "q1": q1, "median": median, "q3": q3,
           "outlier_share": 0.0}
    iqr = q3 - q1
    if out["distinct"] >= 10 and iqr > 0:  # quality.outlier_share's rule
        low, high = q1 - quality.OUTLIER_FENCE * iqr, q3 + quality.OUTLIER_FENCE * iqr
        beyond = con.execute(f"SELECT count(*) FROM (SELECT {x} AS x FROM {table}) WHERE x < {low!r} OR x > {high!r}"
                         ).fetchall()[0][0]
        out["outlier_share"] = float(beyond / row[0])
    return out


def first_rows(con, table: str, rows: int = SAMPLE_ROWS) -> pd.DataFrame:
    """The first ``rows`` rows of the table, as pandas reads them (types and spellings are judged on them)."""
    return con.sql(f"SELECT * FROM {table} LIMIT {int(rows)}").to_arrow_table().to_pandas()


def _is_counter(con, table: str, col: str, counts: Mapping[str, Any]) -> bool:
    low, high = con.execute(f"SELECT min({quote(col)}), max({quote(col)}) FROM {table}").fetchall()[0]
    return counts["distinct"] == counts["values"] and counts["values"] > 1 and high - low == counts["values"] - 1


def identifiers(con, table: str, types: Mapping[str, str], counts: Mapping[str, Mapping[str, Any]],
                head: pd.DataFrame) -> list[str]:
    """``quality.identifiers`` on the whole table: ``problem.identifier_columns``' rule on DuckDB's counts."""
    found = []
    for col, kind in types.items():
        c = counts[col]
        if c["rows"] < 20 or kind in ("FLOAT", "DOUBLE", "REAL", "BOOLEAN") or kind.startswith("DECIMAL"):
            continue
        if not looks_like_identifier(col, c["distinct"], c["values"], kind in _INTEGER,
                                     lambda col=col, c=c: _is_counter(con, table, col, c)):
            continue
        series = head[col]
        # the date and free-text tests of quality.identifiers read the first values (free text: mostly distinct)
        if quality.is_text(series) and (quality._looks_like_dates(series) or (
                c["distinct"] > 0.5 * c["values"] and series.dropna().head(2000).astype(str).str.split().str.len().mean() >= 4)):
            continue
        found.append(col)
    return found


def profile(con, path: str) -> tuple[pd.DataFrame, dict[str, Any]]:
    """``quality.profile`` of a whole side (a Parquet file of ``split_snapshot``) by DuckDB, and the counts the checks reuse."""
    table = table_sql(path)
    types = column_types(con, table)
    head = first_rows(con, table)
    ordered = f"read_parquet({literal(path)})"
    totals = value_totals(con, ordered, types)
    counts = {col: column_counts(con, ordered, col, totals[col]) for col in types}
    numbers = {}
    ids = set(identifiers(con, table, types, counts, head))
    rows = []
    for col, kind in types.items():
        c = counts[col]
        semantic = quality.semantic_type(head[col], col in ids)
        shares = [(v, n / c["values"]) for v, n in c["top"]] if c["values"] else []
        top_share = float(shares[0][1]) if shares else 1.0
        row = {"column": col, "dtype": str(head[col].dtype), "semantic_type": semantic,
               "missing_share": c["nulls"] / c["rows"] if c["rows"] else 0.0, "distinct": c["distinct"],
               "top_values": ", ".join(f"{v} ({s:.0%})" for v, s in shares), "top_share": top_share,
               "min": None, "max": None, "mean": None, "std": None, "median": None, "outlier_share": 0.0,
               "constant": c["distinct"] <= 1, "near_constant": c["distinct"] > 1 and top_share >= quality.NEAR_CONSTANT_SHARE}
        if semantic == "numeric":
            summary = numbers[col] = numeric_summary(con, table, col, kind)
            if summary:
                row.update({k: summary[k] for k in ("min", "max", "mean", "std", "median", "outlier_share")})
        rows.append(row)
    return pd.DataFrame(rows), {"table": table, "types": types, "counts": counts, "ids": sorted(ids), "head": head,
                                 "numbers": numbers}


def duplicate_counts(con, table: str, id_column: str | None) -> tuple[int, int]:
    """Exact duplicate rows, and ids on distinct rows that differ elsewhere (``quality.check_duplicates``' counts)."""
    rows = con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]
    if id_column:
        distinct, ids, has_null = con.execute(
            f"SELECT count(*), count(DISTINCT {quote(id_column)}), bool_or({quote(id_column)} IS NULL) "
            f"FROM (SELECT DISTINCT * FROM {table})").fetchall()[0]
        return int(rows - distinct), int(distinct - ids - (1 if has_null else 0))
    distinct = con.execute(f"SELECT count(*) FROM (SELECT DISTINCT * FROM {table})").fetchall()[0][0]
    return int(rows - distinct), 0


def whole_row_issues(con, params: Mapping[str, Any], table_profile: pd.DataFrame,
                     facts: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The checks of ``data.find_issues`` that need every row, on the whole table, as the same issues.

    Missing values, duplicate rows and conflicting ids, constant and near-constant columns,
    identifiers, high-cardinality categories and outliers.
    """
    target, id_column = params.get("target"), params.get("id_column")
    table, types, counts, head = facts["table"], facts["types"], facts["counts"], facts["head"]
    kinds = dict(zip(table_profile["column"], table_profile["semantic_type"], strict=True))
    candidates = features.feature_columns(head, params)
    issues = []
    for col in types:
        issues += quality.missing_issue(col, counts[col]["nulls"] + counts[col]["blanks"], counts[col]["rows"], target)
    dupes, clashes = duplicate_counts(con, table, id_column if id_column in types else None)
    issues += quality.duplicate_issues(dupes, counts[next(iter(types))]["rows"], id_column, clashes)
    for col in candidates:
        c = counts[col]
        shown = "missing"
        if c["values"]:
            shown = repr(con.sql(f"SELECT {quote(col)} FROM {table} WHERE {quote(col)} IS NOT NULL LIMIT 1"
                                 ).to_arrow_table().to_pandas().iloc[0, 0])
        share = c["top"][0][1] / c["values"] if c["values"] else 1.0
        issues += quality.constant_issue(col, c["distinct"], share, shown)
    issues += [quality.identifier_issue(col, counts[col]["distinct"], counts[col]["rows"], id_column)
               for col in facts["ids"] if col == id_column or col in candidates]
    for col in candidates:
        if kinds[col] == "categorical":
            issues += quality.cardinality_issue(col, counts[col]["distinct"], params["rare_category_share"])
    for col in candidates:
        if kinds[col] != "numeric":
            continue
        # check_outliers parses text without removing commas; a numeric column's summary is the profile's
        summary = facts["numbers"][col] if types[col] in _NUMERIC and col in facts["numbers"] else \
            numeric_summary(con, table, col, types[col], commas=False)
        if summary and summary["outlier_share"]:
            issues += quality.outlier_issue(col, summary["outlier_share"], summary["count"], summary["q1"],
                                            summary["q3"], summary["max"], summary["median"])
    return issues


def class_balance(con, table: str, target: str | None) -> dict[str, float] | None:
    """The target's class shares (``quality.dataset_facts``' ``class_balance``), at most 50 classes."""
    if not target:
        return None
    shares = con.execute(f"SELECT {quote(target)} AS label, count(*) / sum(count(*)) OVER () AS share FROM {table} "
                     f"WHERE {quote(target)} IS NOT NULL GROUP BY ALL ORDER BY share DESC").fetchall()
    return {label: round(float(share), 4) for label, share in shares} if len(shares) <= 50 else None


def foundation(values: Mapping[str, Any], folder: str | os.PathLike, problem_type: str) -> dict[str, Any]:
    """Step 2's whole-row work on the DuckDB path, from the source: snapshot, split, profile, issues, balance.

    Writes ``raw.parquet`` and the two sides into ``folder`` (DuckDB spills into ``folder/duckdb-spill``);
    steps 1-3 see only the training side, so the profile and the checks read ``train.parquet``.
    """
    folder = Path(folder)
    con = outofcore.connect(folder / "duckdb-spill", values.get("max_memory") or outofcore.default_max_memory())
    seconds, started = {}, time.perf_counter()

    def lap(name: str) -> None:
        nonlocal started
        seconds[name] = round(time.perf_counter() - started, 2)
        started = time.perf_counter()

    try:
        snapshot = outofcore.write_snapshot(con, values, folder / "raw.parquet")
        lap("snapshot")
        sides = outofcore.split_snapshot(con, folder / "raw.parquet", folder, values, problem_type)
        lap("split")
        table_profile, facts = profile(con, sides["train"])
        lap("profile")
        issues = whole_row_issues(con, values, table_profile, facts)
        balance = class_balance(con, facts["table"], values.get("target") if problem_type == "classification" else None)
        lap("checks")
    finally:
        con.close()
    return {"snapshot": snapshot, "split": sides, "profile": table_profile, "issues": issues, "class_balance": balance,
            "seconds": seconds}
