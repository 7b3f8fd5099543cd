"""Step 2's profile and quality checks: what is in each column and what is wrong with it.

Every check takes a table (and the column roles it needs) and returns a list of
issues ``{check, column, severity, evidence, fix}``; severity is "high" (would make a
model wrong or meaningless), "medium" (must be fixed, is fixed by step 2) or "low"
(worth knowing). Checks look at distinct values where they can, so they stay fast
on large tables.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from helpers.core import features, leakage
from helpers.core.cleaning import is_number, normalise_text
from helpers.core.problem import identifier_columns
from helpers.core.split import parse_times

SEVERITIES = ("high", "medium", "low")
ISSUE_COLUMNS = ["check", "column", "severity", "evidence", "fix"]

BOOLEAN_WORDS = {"yes", "no", "y", "n", "true", "false", "t", "f", "0", "1"}
BLANKS = {"", "na", "n/a", "nan", "null", "?"}  # "None" and "-" can be real categories

NEAR_CONSTANT_SHARE = 0.99
OUTLIER_FENCE = 3.0  # Tukey's "far out" fence: beyond Q1 - 3 IQR or Q3 + 3 IQR
HIGH_CARDINALITY = 50


def issue(check: str, column: str | None, severity: str, evidence: str, fix: str) -> dict[str, Any]:
    """One quality issue (the common record of every check)."""
    assert severity in SEVERITIES, severity
    return {"check": check, "column": column, "severity": severity, "evidence": evidence, "fix": fix}


def issues_table(issues: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """Issues as a table, most severe first (with ``injected`` and ``fault`` columns in a teaching run)."""
    marked = any(i.get("injected") for i in issues)
    table = pd.DataFrame(list(issues), columns=ISSUE_COLUMNS + (["injected", "fault"] if marked else []))
    if marked:
        table["injected"] = table["injected"].eq(True)
    order = table["severity"].map({s: i for i, s in enumerate(SEVERITIES)})
    table = table.assign(_o=order).sort_values(["_o", "check"], kind="stable").drop(columns="_o").reset_index(drop=True)
    return table.astype(object).where(table.notna(), None)  # a table-wide issue has column None, not NaN


# --- column types ------------------------------------------------------------------------


def is_text(series: pd.Series) -> bool:
    """Text-like columns (object or pandas string dtype)."""
    return pd.api.types.is_object_dtype(series) or pd.api.types.is_string_dtype(series)






def _non_blank_text(series: pd.Series) -> pd.Series:
    """Distinct stripped non-blank values of a text column, with their counts.

    A column of strings is counted first and each distinct value stripped once (the same counts:
    stripping every cell of a million-row column took most of the text checks' time).
    """
    if is_text(series) and pd.api.types.infer_dtype(series, skipna=True) == "string":
        raw = series.value_counts(dropna=True)
        counts = raw.groupby(raw.index.astype(str).str.strip()).sum().sort_values(ascending=False, kind="stable")
    else:
        counts = series.dropna().astype(str).str.strip().value_counts()
    return counts[~counts.index.str.lower().isin(BLANKS)]


def numeric_text_share(series: pd.Series) -> float:
    """Share of a text column's non-blank values that parse as numbers (0 for non-text)."""
    if not is_text(series):
        return 0.0
    counts = _non_blank_text(series)
    if counts.empty:
        return 0.0
    parsed = pd.to_numeric(counts.index.str.replace(",", "", regex=False), errors="coerce")
    return float(counts[~np.isnan(parsed)].sum() / counts.sum())


def _looks_like_dates(series: pd.Series) -> bool:
    sample = series.dropna().astype(str).head(200)
    if sample.empty or not sample.str.contains(r"\d").all() or not sample.str.contains(r"[-/:]").all():
        return False
    parsed = parse_times(sample)
    return bool(parsed.notna().mean() >= 0.9)


def identifiers(frame: pd.DataFrame, exclude: Sequence[str] = ()) -> list[str]:
    """Identifier-like columns (step 1's rule, so both steps agree)."""
    return [c for c in identifier_columns(frame, exclude) if not (is_text(frame[c]) and (
        _looks_like_dates(frame[c]) or _is_free_text(frame[c])))]


def _is_free_text(series: pd.Series) -> bool:
    """Mostly distinct values of several words (word counts measured on a sample: fast on big tables)."""
    values = series.dropna()
    if not len(values) or values.nunique() <= 0.5 * len(values):
        return False
    return bool(values.head(2000).astype(str).str.split().str.len().mean() >= 4)


def semantic_type(series: pd.Series, identifier: bool = False) -> str:
    """numeric, categorical, boolean, datetime, free text or identifier."""
    values = series.dropna()
    raw_values = pd.unique(values.head(100_000).astype(str))[:20]  # a boolean has a handful of spellings at most
    distinct = {normalise_text(v) for v in raw_values}
    if pd.api.types.is_bool_dtype(series) or (0 < len(distinct) <= 2 and distinct <= BOOLEAN_WORDS):
        return "boolean"
    if pd.api.types.is_datetime64_any_dtype(series):
        return "datetime"
    if is_text(series) and _looks_like_dates(series):
        return "datetime"
    if is_text(series) and _is_free_text(series):
        return "free text"
    if identifier:
        return "identifier"
    if is_number(series) or numeric_text_share(series) >= 0.95:
        return "numeric"
    return "categorical"


# --- the profile --------------------------------------------------------------------------


def outlier_share(series: pd.Series) -> float:
    """Share of values beyond Tukey's far-out fences (robust: quartiles, not mean and sd)."""
    values = pd.to_numeric(series, errors="coerce").dropna()
    if values.nunique() < 10:
        return 0.0
    q1, q3 = values.quantile([0.25, 0.75])
    iqr = q3 - q1
    if iqr <= 0:
        return 0.0
    out = (values < q1 - OUTLIER_FENCE * iqr) | (values > q3 + OUTLIER_FENCE * iqr)
    return float(out.mean())


def _top_values(series: pd.Series, n: int = 3, shares: pd.Series | None = None) -> str:
    """The ``n`` most frequent values with their shares (``shares``: the column's value shares, when known)."""
    shares = (series.value_counts(normalize=True, dropna=True) if shares is None else shares).head(n)
    return ", ".join(f"{v} ({s:.0%})" for v, s in shares.items())


def profile_column(series: pd.Series, identifier: bool = False) -> dict[str, Any]:
    """One profile row: types, missingness, distinct values, range, spread, outliers."""
    kind = semantic_type(series, identifier)
    n = len(series)
    values = series.dropna()
    counts = values.value_counts()  # once: distinct values, top share and top values all come from it
    shares = counts / counts.sum() if len(counts) else counts
    top_share = float(shares.iloc[0]) if len(values) else 1.0
    distinct = len(counts)
    row = {"column": series.name, "dtype": str(series.dtype), "semantic_type": kind,
           "missing_share": float(series.isna().mean()) if n else 0.0, "distinct": int(distinct),
           "top_values": _top_values(series, shares=shares), "top_share": top_share,
           "min": None, "max": None, "mean": None, "std": None, "median": None, "outlier_share": 0.0,
           "constant": distinct <= 1, "near_constant": distinct > 1 and top_share >= NEAR_CONSTANT_SHARE}
    if kind == "numeric":
        numbers = pd.to_numeric(values.astype(str).str.replace(",", "", regex=False), errors="coerce") \
            if is_text(series) else values.astype(float)
        numbers = numbers.dropna()
        if len(numbers):
            row.update(min=float(numbers.min()), max=float(numbers.max()), mean=float(numbers.mean()),
                       std=float(numbers.std()) if len(numbers) > 1 else 0.0, median=float(numbers.median()),
                       outlier_share=outlier_share(numbers))
    return row


def profile(frame: pd.DataFrame) -> pd.DataFrame:
    """The per-column profile of a table (one row per column)."""
    ids = set(identifiers(frame))
    return pd.DataFrame([profile_column(frame[c], c in ids) for c in frame.columns])


def memory_bytes(frame: pd.DataFrame) -> int:
    """In-memory size of a table, strings included."""
    return int(frame.memory_usage(deep=True).sum())


def dataset_facts(frame: pd.DataFrame, target: str | None) -> dict[str, Any]:
    """Table-level facts: size, duplicates, memory, class balance of the target."""
    facts = {"rows": int(len(frame)), "columns": int(frame.shape[1]),
             "duplicate_rows": int(frame.duplicated().sum()), "memory_bytes": memory_bytes(frame)}
    if target and target in frame.columns and frame[target].nunique() <= 50:
        facts["class_balance"] = frame[target].value_counts(normalize=True).round(4).to_dict()
    return facts


# --- the checks ---------------------------------------------------------------------------


def check_missing(frame: pd.DataFrame, target: str | None = None) -> list[dict]:
    """Missing values per column (blank strings count as missing)."""
    out = []
    for col in frame.columns:
        series = frame[col]
        missing = series.isna()
        if is_text(series):
            uniques = pd.Series(series.dropna().unique())
            blanks = uniques[uniques.astype(str).str.strip().str.lower().isin(BLANKS)]
            if len(blanks):
                missing |= series.isin(blanks)
        out += missing_issue(col, int(missing.sum()), len(series), target)
    return out


def missing_issue(col: str, missing: int, rows: int, target: str | None = None) -> list[dict]:
    """The missing-values finding of one column with ``missing`` of ``rows`` values missing (none when 0)."""
    share = missing / rows if rows else 0.0
    if share == 0:
        return []
    evidence = f"{missing} of {rows} values missing ({share:.1%})"
    if col == target:
        return [issue("missing values", col, "high", evidence + " in the target",
                      "rows without a target cannot train or evaluate: they are dropped")]
    severity = "high" if share >= 0.5 else "medium" if share >= 0.05 else "low"
    fix = ("mostly empty: drop the column or find the data" if share >= 0.5 else
           "imputed inside the model pipeline (fitted on training folds only)")
    return [issue("missing values", col, severity, evidence, fix)]


def check_numeric_text(frame: pd.DataFrame, ids: Sequence[str] | None = None) -> list[dict]:
    """Numbers stored as text (e.g. "12.50" and " " in one column); ``ids``: ``identifiers(frame)`` when known."""
    out = []
    ids = set(identifiers(frame) if ids is None else ids)
    for col in frame.columns:
        series = frame[col]
        if not is_text(series) or col in ids:
            continue
        share = numeric_text_share(series)
        if share < 0.95:
            continue
        text = series.dropna().astype(str).str.strip()
        blanks = int(text.str.lower().isin(BLANKS).sum())
        out.append(issue("numbers stored as text", col, "medium",
                         f"{share:.1%} of non-blank values parse as numbers; {blanks} blank entries",
                         "converted to numbers; blanks and unparsable entries become missing"))
    return out


def spelling_groups(series: pd.Series) -> dict[str, dict[str, int]]:
    """Groups of raw spellings that mean the same value: {canonical: {spelling: count}}."""
    counts = series.dropna().astype(str).value_counts()
    if counts.empty:
        return {}
    keys = counts.index.map(normalise_text)
    groups: dict[str, dict[str, int]] = {}
    for key in pd.unique(keys):
        members = counts[keys == key]
        if len(members) > 1:
            canonical = str(members.index[0])  # the most frequent spelling wins
            groups[canonical.strip()] = {str(k): int(v) for k, v in members.items()}
    return groups


def check_spellings(frame: pd.DataFrame, skip: Sequence[str] = ()) -> list[dict]:
    """Inconsistent spellings of one category (case, whitespace, hyphens, Y/N)."""
    out = []
    for col in frame.columns:
        series = frame[col]
        if col in skip or not is_text(series) or series.nunique() > 1000 or numeric_text_share(series) >= 0.95:
            continue
        groups = spelling_groups(series)
        if not groups:
            continue
        variants = sum(len(g) - 1 for g in groups.values())
        rows = sum(sum(list(g.values())[1:]) for g in groups.values())
        example = "; ".join(" / ".join(repr(s) for s in g) for g in list(groups.values())[:2])
        out.append(issue("inconsistent spellings", col, "medium",
                         f"{variants} variant spellings on {rows} rows, e.g. {example}",
                         "mapped to one canonical spelling per value"))
    return out


def check_duplicates(frame: pd.DataFrame, id_column: str | None = None) -> list[dict]:
    """Exact duplicate rows; rows sharing an id but differing elsewhere."""
    clashes = 0
    if id_column and id_column in frame.columns:
        clashes = int(frame.drop_duplicates()[id_column].duplicated().sum())
    return duplicate_issues(int(frame.duplicated().sum()), len(frame), id_column, clashes)


def duplicate_issues(dupes: int, rows: int, id_column: str | None = None, clashes: int = 0) -> list[dict]:
    """The findings of ``dupes`` exact duplicate rows of ``rows`` and ``clashes`` ids on differing rows."""
    out = []
    if dupes:
        share = dupes / rows
        out.append(issue("duplicate rows", None, "high" if share >= 0.2 else "medium",
                         f"{dupes} rows ({share:.1%}) are exact copies of an earlier row",
                         "duplicates removed (they would over-weight rows and leak across CV folds)"))
    if clashes:
        out.append(issue("conflicting ids", id_column, "medium",
                         f"{clashes} ids appear on rows that differ in other columns",
                         "check the extract: one id should describe one entity"))
    return out


def check_constant(frame: pd.DataFrame) -> list[dict]:
    """Constant columns (one value) and near-constant ones (one value on >= 99% of rows)."""
    out = []
    for col in frame.columns:
        values = frame[col].dropna()
        counts = values.value_counts()
        top = float((counts / counts.sum()).iloc[0]) if len(counts) else 1.0
        out += constant_issue(col, len(counts), top, repr(values.iloc[0]) if len(values) else "missing")
    return out


def constant_issue(col: str, distinct: int, top_share: float, shown: str) -> list[dict]:
    """The constant (one value, ``shown``) or near-constant (top value's share) finding of one column."""
    if distinct <= 1:
        return [issue("constant column", col, "medium", f"every row holds {shown}",
                      "dropped: a column that never changes cannot inform a model")]
    if top_share >= NEAR_CONSTANT_SHARE:
        return [issue("near-constant column", col, "low", f"one value on {top_share:.1%} of rows",
                      "kept; consider dropping it or checking that the rare values are right")]
    return []


def check_identifiers(frame: pd.DataFrame, id_column: str | None = None,
                      ids: Sequence[str] | None = None) -> list[dict]:
    """Identifier-like columns: unique codes or counters that a model would memorise (``ids``: ``identifiers(frame)``)."""
    return [identifier_issue(col, frame[col].nunique(), len(frame), id_column)
            for col in (identifiers(frame) if ids is None else ids)]


def identifier_issue(col: str, distinct: int, rows: int, id_column: str | None = None) -> dict:
    """The finding of an identifier-like column with ``distinct`` values on ``rows`` rows."""
    evidence = f"{distinct} distinct values on {rows} rows"
    if col == id_column:
        return issue("identifier column", col, "low", evidence + " (the declared id_column)",
                     "kept as the row key, never a feature")
    return issue("identifier column", col, "medium", evidence,
                 "dropped from the features (set id_column to keep it as the row key)")


def check_high_cardinality(frame: pd.DataFrame, kinds: dict[str, str], rare_share: float = 0.01) -> list[dict]:
    """Categorical columns with many distinct values (sparse one-hot, rare levels)."""
    out = []
    for col, kind in kinds.items():
        if kind != "categorical" or col not in frame.columns:
            continue
        out += cardinality_issue(col, frame[col].nunique(), rare_share)
    return out


def cardinality_issue(col: str, distinct: int, rare_share: float = 0.01) -> list[dict]:
    """The high-cardinality finding of a categorical column with ``distinct`` values (none when few)."""
    if distinct <= HIGH_CARDINALITY:
        return []
    return [issue("high-cardinality category", col, "low", f"{distinct} distinct values",
                  f"categories rarer than {rare_share:.0%} of rows are grouped as 'infrequent' by the encoder")]


def check_outliers(frame: pd.DataFrame, kinds: dict[str, str]) -> list[dict]:
    """Values beyond Tukey's far-out fences (a robust rule), e.g. unit errors."""
    out = []
    for col, kind in kinds.items():
        if kind != "numeric" or col not in frame.columns:
            continue
        values = pd.to_numeric(frame[col], errors="coerce").dropna()
        share = outlier_share(values)
        if share:
            q1, q3 = values.quantile([0.25, 0.75])
            out += outlier_issue(col, share, len(values), q1, q3, values.max(), values.median())
    return out


def outlier_issue(col: str, share: float, values: int, q1: float, q3: float, maximum: float,
                  median: float) -> list[dict]:
    """The outlier finding of a numeric column: ``share`` of its ``values`` beyond the fences of ``q1``/``q3``."""
    if share == 0:
        return []
    ratio = maximum / median if median > 0 else float("nan")
    # a few values about 10x the rest is the signature of a units error, not of a skewed column
    hint = f"; the maximum is {ratio:.0f}x the median (a units error?)" if ratio >= 10 and share < 0.01 else ""
    return [issue("outliers", col, "medium" if share >= 0.05 else "low",
                  f"{int(round(share * values))} values ({share:.1%}) outside [{q1 - OUTLIER_FENCE * (q3 - q1):.4g}, "
                  f"{q3 + OUTLIER_FENCE * (q3 - q1):.4g}]{hint}",
                  "kept (they may be real); check the source, or use scaler=robust")]


def check_conflicting_labels(frame: pd.DataFrame, target: str | None, features: Sequence[str]) -> list[dict]:
    """Rows with identical features but different targets (label noise or missing features)."""
    if not target or target not in frame.columns or not features:
        return []
    # one hash per row of the feature values (pandas hashes object columns as their text): converting
    # every cell to a string first cost five times as long on large tables, for the same groups
    hashes = pd.util.hash_pandas_object(frame[list(features)], index=False)
    labels = frame[target].astype(str)
    per_group = labels.groupby(hashes.to_numpy()).nunique()
    conflicted = per_group.index[per_group > 1]
    rows = int(np.isin(hashes.to_numpy(), conflicted).sum())
    if not rows:
        return []
    share = rows / len(frame)
    return [issue("conflicting labels", target, "high" if share >= 0.05 else "medium",
                  f"{rows} rows ({share:.1%}) in {len(conflicted)} groups have identical features but different targets",
                  "check the labels; a model cannot beat this noise (features may be missing)")]


def check_leakage(suspects: pd.DataFrame) -> list[dict]:
    """Target leakage (``core.leakage``'s rule): suspects are high (dropped), suspects kept by ``keep_columns`` low."""
    out = [issue("target leakage", f["column"], "high", f["evidence"],
                 f"set aside (dropped): it is most likely recorded after the outcome; {f['fix']}")
           for f in leakage.findings(suspects)]
    out += [issue("target leakage", f["column"], "low", f["evidence"],
                  "kept by keep_columns (known at prediction time, you said): check when it is recorded")
            for f in leakage.findings(suspects, "kept")]
    return out


def whole_row_issues(frame: pd.DataFrame, params: Mapping[str, Any], kinds: Mapping[str, str],
                     ids: Sequence[str]) -> list[dict]:
    """The checks that need every row and no model: missing values, duplicates and conflicting ids, constant
    columns, identifiers, high-cardinality categories, outliers (``sql_quality.whole_row_issues`` is their DuckDB twin)."""
    target, id_column = params.get("target"), params.get("id_column")
    candidates = features.feature_columns(frame, params)
    issues = check_missing(frame, target) + check_duplicates(frame, id_column) + check_constant(frame[candidates])
    issues += [i for i in check_identifiers(frame, id_column, ids) if i["column"] == id_column or i["column"] in candidates]
    issues += check_high_cardinality(frame, {c: kinds[c] for c in candidates}, params["rare_category_share"])
    return issues + check_outliers(frame, {c: kinds[c] for c in candidates})
