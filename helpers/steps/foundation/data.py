"""Step 2: build a strong data foundation.

Hold out the test side, profile and check the training side, fix the data (the
fixes are recorded in a JSON-able ``cleaning`` dict that ``apply_cleaning`` replays on
new data), hand the cleaned train/test tables to steps 3-5 (``helpers.core.prepared``),
and record the schema, bias and scale findings. Checks live in ``helpers.steps.foundation.quality``.
"""

from __future__ import annotations

import copy
import hashlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from helpers.core import exercises, faults, features, sections, split, tables
from helpers.core.artifacts import Run
from helpers.core.cleaning import (
    apply_cleaning,
    canonical,
    normalise_text,
    to_number,
)
from helpers.core.datasets import load_snapshot, preset_for
from helpers.core.documents import render
from helpers.core.errors import PlaybookError
from helpers.core.features import _SCALERS
from helpers.core.kpis import resolve_positive_label
from helpers.core.leakage import LEAKAGE_COLUMNS, check_keep_columns, leakage_suspects
from helpers.core.paths import STEP_NOTEBOOKS
from helpers.core.prepared import Prepared, save_prepared
from helpers.core.problem import check_target, infer_problem_type
from helpers.core.schema import make_schema
from helpers.core.sections import Fact, Section
from helpers.core.system import available_memory_bytes
from helpers.steps.foundation import quality

STEP = STEP_NOTEBOOKS[1]
STEP1 = STEP_NOTEBOOKS[0]
MIN_ROWS = 10
MIN_GROUP_ROWS = 30  # fewer rows than this: a group's metrics are too noisy to evaluate
DROP_CHECKS = ("constant column", "identifier column", "target leakage")


def decision(action: str, column: str | None, reason: str, rows_affected: int) -> dict[str, Any]:
    """One logged cleaning decision."""
    return {"action": action, "column": column, "reason": reason, "rows_affected": int(rows_affected)}


# --- 2.1 collect --------------------------------------------------------------------------


def provenance_table(provenance: Mapping[str, Any]) -> pd.DataFrame:
    """Where the data came from, as a two-column table."""
    keys = ["source", "query", "rows", "columns", "sha256", "load_seconds", "loaded_at"]
    return pd.DataFrame({"fact": keys, "value": [str(provenance.get(k)) for k in keys]}).set_index("fact")


# --- 2.2 split ----------------------------------------------------------------------------


def resolve_problem_type(raw: pd.DataFrame, params: Mapping[str, Any], run: Run | None = None) -> tuple[str, str]:
    """The problem type and why: explicit, as step 1 framed it, or inferred from the target."""
    requested = params.get("problem_type") or "auto"
    step1 = run.optional_summary(STEP1) if run is not None else None
    if requested == "auto" and step1 and step1.get("problem_type"):
        return step1["problem_type"], "as framed by step 1"
    target = params.get("target")
    if target and target not in raw.columns:
        raise PlaybookError(f"Target column {target!r} is not in the data.",
                            f"set target to one of: {', '.join(map(str, raw.columns[:25]))}.")
    return infer_problem_type(raw[target] if target else None, requested)


def check_table(raw: pd.DataFrame, params: Mapping[str, Any], problem_type: str) -> None:
    """Enough rows and a usable target, or one clear error."""
    if len(raw) < MIN_ROWS:
        raise PlaybookError(f"The data has only {len(raw)} row(s); a train/test split needs at least {MIN_ROWS}.",
                            "point dataset at a table with more rows.")
    check_target(raw, params.get("target"), problem_type)
    for role in ("id_column", "group_column", "time_column"):
        col = params.get(role)
        if col and col not in raw.columns:
            raise PlaybookError(f"{role} {col!r} is not a column of the data.",
                                f"set {role} to one of: {', '.join(map(str, raw.columns[:25]))}, or None.")
    missing = [c for c in params.get("sensitive_columns") or [] if c not in raw.columns]
    if missing:
        raise PlaybookError(f"sensitive_columns {', '.join(map(repr, missing))} are not in the data.",
                            "list existing columns only (or None).")
    check_keep_columns(raw.columns, params.get("keep_columns"))


def hold_out(raw: pd.DataFrame, params: Mapping[str, Any], problem_type: str) -> pd.Series:
    """The test-side mask on the raw snapshot (the foundation's one split)."""
    target = params.get("target") if problem_type != "clustering" else None
    return split.assign_test(raw, target=target, problem_type=problem_type, test_size=params["test_size"],
                             seed=params["seed"], id_column=params.get("id_column"),
                             group_column=params.get("group_column"), time_column=params.get("time_column"))


def split_report(raw: pd.DataFrame, mask: pd.Series, params: Mapping[str, Any], problem_type: str) -> dict[str, Any]:
    """Sizes, class balance, and proof that no group straddles the split and time order holds."""
    target = params.get("target") if problem_type == "classification" else None
    out = split.split_summary(mask, raw[target] if target else None)
    out["test_share"] = round(out["test_rows"] / len(raw), 4)
    group = params.get("group_column")
    if group:
        shared = set(raw.loc[~mask, group].dropna()) & set(raw.loc[mask, group].dropna())
        out["groups_on_both_sides"] = len(shared)
    time_col = params.get("time_column")
    if time_col:
        times = split.time_values(raw[time_col])  # the values the split ordered by
        out["train_latest"] = str(times[~mask].max())
        out["test_earliest"] = str(times[mask].min())
        out["time_order_holds"] = bool(times[~mask].max() <= times[mask].min())
    return out


def split_table(report: Mapping[str, Any]) -> pd.DataFrame:
    """The split report as a table (balance shown per side)."""
    rows = {k: v for k, v in report.items() if not k.endswith("_balance")}
    table = pd.DataFrame({"value": [str(v) for v in rows.values()]}, index=list(rows))
    for side in ("train", "test"):
        for label, share in (report.get(f"{side}_balance") or {}).items():
            table.loc[f"{side} share of {label!r}"] = f"{share:.1%}"
    return table


# --- 2.3 / 2.4 profile and quality issues -------------------------------------------------------


def candidate_features(frame: pd.DataFrame, params: Mapping[str, Any]) -> list[str]:
    """Columns that may become features (everything the parameters do not exclude)."""
    return features.feature_columns(frame, params)


WHOLE_ROW_CHECKS = ("the split", "the profile and missing values", "duplicates", "constant columns",
                    "spellings", "numbers stored as text", "identifiers", "outliers", "conflicting labels",
                    "the cleaning", "the schema", "bias tables")


def sampled_check(check: str, rows: int, params: Mapping[str, Any], stratified: bool = True) -> dict[str, Any]:
    """The statement of a check that runs on at most ``feasibility_rows`` of ``rows`` rows (a seeded sample)."""
    cap = int(params.get("feasibility_rows") or rows)
    used, sampled = min(rows, cap), rows > cap
    kind = "stratified" if stratified else "random"
    text = (f"{check} runs on {used:,} of {rows:,} training rows ({kind} seeded sample, feasibility_rows)" if sampled
            else f"{check} runs on all {rows:,} training rows")
    text = text[0].upper() + text[1:] + "."
    return {"check": check, "rows": used, "of": rows, "sampled": sampled, "cap": cap, "text": text}


def feasibility(checks: Sequence[Mapping[str, Any]], train_rows: int) -> dict[str, Any]:
    """Which checks sampled (``sampled_check``) and which used every training row: summary.json's ``feasibility``."""
    sampled = [c for c in checks if c["sampled"]]
    whole = f"check ({', '.join(WHOLE_ROW_CHECKS)}) uses all {train_rows:,} training rows."
    text = " ".join([c["text"] for c in checks] + [("Every other " if checks else "Every ") + whole])
    first = sampled[0] if sampled else {"rows": train_rows, "of": train_rows}
    return {"rows": first["rows"], "of": first["of"], "sampled": bool(sampled), "text": text, "checks": list(checks),
            "whole_row_checks": list(WHOLE_ROW_CHECKS)}


def leakage_check(train_raw: pd.DataFrame, params: Mapping[str, Any], problem_type: str,
                  fixes: Mapping[str, Any] | None = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Step 1's leakage check on the training side after the data fixes (``keep_columns`` kept), and its statement.

    A model-based check: it runs on at most ``feasibility_rows`` labelled rows (the seeded
    stratified sample ``sampling.subsample`` draws, as step 1's), stated by ``sampled_check``
    (for clustering: a statement that nothing was checked). ``fixes``: ``provisional_cleaning(train_raw,
    params)`` when already found.
    """
    target = params.get("target")
    if problem_type == "clustering" or not target:
        return pd.DataFrame(columns=LEAKAGE_COLUMNS), {
            "check": "the target-leakage check", "rows": 0, "of": 0, "sampled": False,
            "cap": int(params.get("feasibility_rows") or 0), "text": "No target-leakage check (no target: clustering)."}
    fixed = apply_cleaning(train_raw, provisional_cleaning(train_raw, params) if fixes is None else fixes)
    ids = quality.identifiers(fixed, exclude=features.excluded_columns(params))
    cols = [c for c in candidate_features(fixed, params) if c not in ids and fixed[c].nunique() > 1]
    labelled = fixed[fixed[target].notna()]
    statement = sampled_check("the target-leakage check", len(labelled), params,
                              stratified=problem_type == "classification")
    table = leakage_suspects(labelled[cols], labelled[target], problem_type, seed=params["seed"],
                             keep=params.get("keep_columns") or (), max_rows=statement["cap"])
    return table, statement


def leakage_table(train_raw: pd.DataFrame, params: Mapping[str, Any], problem_type: str) -> pd.DataFrame:
    """The table of ``leakage_check`` alone."""
    return leakage_check(train_raw, params, problem_type)[0]


def find_issues(train_raw: pd.DataFrame, params: Mapping[str, Any], profile: pd.DataFrame,
                leaks: pd.DataFrame) -> list[dict[str, Any]]:
    """Every quality check on the training side, in one list (those a teaching fault caused marked ``injected``)."""
    target = params.get("target")
    kinds = dict(zip(profile["column"], profile["semantic_type"], strict=True))
    candidates = candidate_features(train_raw, params)
    ids = quality.identifiers(train_raw)  # once: two checks need them
    numeric_text, spellings = quality.check_numeric_text(train_raw, ids), quality.check_spellings(train_raw)
    issues = quality.whole_row_issues(train_raw, params, kinds, ids) + numeric_text + spellings
    fixed = apply_cleaning(train_raw, provisional_cleaning(train_raw, params, numeric_text, spellings))
    issues += quality.check_conflicting_labels(fixed, target, [c for c in candidates if kinds[c] != "identifier"])
    issues += quality.check_leakage(leaks)
    return faults.mark_issues(issues, faults.record_of(train_raw))  # a teaching run's injected faults say so


DECISION_COLUMNS = ["action", "column", "reason", "rows_affected"]


def decisions_table(decisions: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The decision log as a table (empty with its columns when nothing was fixed)."""
    return pd.DataFrame(list(decisions), columns=DECISION_COLUMNS)


def issue_counts(issues: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    return {s: sum(1 for i in issues if i["severity"] == s) for s in quality.SEVERITIES}


# --- 2.5 cleaning ------------------------------------------------------------------------------------


def provisional_cleaning(train_raw: pd.DataFrame, params: Mapping[str, Any],
                         numeric_text: Sequence[Mapping[str, Any]] | None = None,
                         spellings: Sequence[Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """The value fixes alone (spellings, numeric text), used before the drop decisions exist.

    ``numeric_text`` / ``spellings``: the issues of ``quality.check_numeric_text`` and
    ``quality.check_spellings`` on ``train_raw`` when already found (each is a pass over every row).
    """
    numeric_text = quality.check_numeric_text(train_raw) if numeric_text is None else numeric_text
    return {"version": 1, "numeric_text": [i["column"] for i in numeric_text],
            "spellings": spelling_maps(train_raw, spellings), "drop_columns": []}


def spelling_maps(frame: pd.DataFrame,
                  spellings: Sequence[Mapping[str, Any]] | None = None) -> dict[str, dict[str, str]]:
    """{column: {normalised spelling: canonical spelling}} for columns with variant spellings
    (``spellings``: ``quality.check_spellings(frame)`` when already found)."""
    maps = {}
    for found in quality.check_spellings(frame) if spellings is None else spellings:
        col = found["column"]
        groups = quality.spelling_groups(frame[col])
        maps[col] = {normalise_text(v): canonical for canonical, g in groups.items() for v in g}
    return maps


def plan_cleaning(train_raw: pd.DataFrame, params: Mapping[str, Any], issues: Sequence[Mapping[str, Any]],
                  fixes: Mapping[str, Any] | None = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The data fixes (JSON-able, replayable on new data) and their decision log.

    ``fixes``: ``provisional_cleaning(train_raw, params)`` when already found (copied, never changed).
    """
    cleaning = provisional_cleaning(train_raw, params) if fixes is None else copy.deepcopy(dict(fixes))
    protected = set(features.excluded_columns(params))
    decisions = []
    for col in cleaning["numeric_text"]:
        n = int(train_raw[col].notna().sum())
        decisions.append(decision("coerce to numbers", col, "numbers stored as text; blanks become missing", n))
    for col in list(train_raw.select_dtypes("number").columns) + cleaning["numeric_text"]:
        n = int(np.isinf(to_number(train_raw[col]).to_numpy(dtype=float, na_value=np.nan)).sum())
        if n:
            decisions.append(decision("replace infinities with missing", col,
                                      "inf/-inf is no measurement (models and plots reject it); imputed like a gap", n))
    for col, mapping in cleaning["spellings"].items():
        values = train_raw[col].dropna()
        changed = int((values != canonical(values, mapping)).sum())
        decisions.append(decision("canonicalise spellings", col,
                                  f"{len(set(mapping.values()))} values written in {len(mapping)} spellings", changed))
    for found in issues:
        col = found["column"]
        if found["check"] in DROP_CHECKS and found["severity"] != "low" and col not in protected \
                and col not in cleaning["drop_columns"]:
            cleaning["drop_columns"].append(col)
            decisions.append(decision("drop column", col, f"{found['check']}: {found['evidence']}", len(train_raw)))
    return cleaning, decisions










def clean_table(raw: pd.DataFrame, cleaning: Mapping[str, Any],
                params: Mapping[str, Any]) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """The whole table with the fixes applied, duplicates and unlabelled rows removed."""
    cleaned = apply_cleaning(raw, cleaning)
    decisions = []
    dupes = cleaned.duplicated()
    if dupes.any():
        decisions.append(decision("remove duplicate rows", None,
                                  "exact copies (after the fixes) over-weight rows and leak across folds", dupes.sum()))
        cleaned = cleaned[~dupes]
    target = params.get("target")
    if target and target in cleaned.columns and cleaned[target].isna().any():
        unlabelled = cleaned[target].isna()
        decisions.append(decision("drop unlabelled rows", target, "rows without a target cannot train or be scored",
                                  unlabelled.sum()))
        cleaned = cleaned[~unlabelled]
    return cleaned, decisions


def make_prepared(cleaned: pd.DataFrame, mask: pd.Series, params: Mapping[str, Any], problem_type: str,
                  cleaning: Mapping[str, Any]) -> Prepared:
    """The hand-over to steps 3-5: the cleaned table cut by the raw split mask (by raw row number)."""
    is_test = mask.reindex(cleaned.index).to_numpy(dtype=bool)
    feats = features.feature_columns(cleaned, params)
    if not feats:
        raise PlaybookError("No feature column is left after cleaning.",
                            "check the dropped columns, id_column and sensitive_columns.")
    numeric, categorical = features.split_kinds(cleaned, feats)
    return Prepared(train=cleaned[~is_test], test=cleaned[is_test],
                    target=params.get("target") if problem_type != "clustering" else None,
                    problem_type=problem_type, numeric=numeric, categorical=categorical,
                    id_column=params.get("id_column"),
                    sensitive_columns=list(params.get("sensitive_columns") or []),
                    impute_strategy=params["impute_strategy"], scaler=params["scaler"],
                    rare_category_share=params["rare_category_share"], cleaning=dict(cleaning))


# --- schema ---------------------------------------------------------------------------------------------









# --- 2.6 bias and representativeness ----------------------------------------------------------------------


def positive_label(run: Run | None, params: Mapping[str, Any], y: pd.Series | None) -> Any:
    """The positive class: step 1's contract, else the dataset preset, else the minority class."""
    if y is None or y.nunique() != 2:
        return None
    step1 = run.optional_summary(STEP1) if run is not None else None
    if step1 and step1.get("contract", {}).get("positive_label") is not None:
        return step1["contract"]["positive_label"]
    preset = preset_for(params.get("dataset") or "")
    requested = preset.get("positive_label")
    if requested is not None and str(requested) not in set(map(str, y.dropna().unique())):
        requested = None
    return resolve_positive_label(y, requested)


def class_balance(y: pd.Series) -> dict[str, Any]:
    """Class shares, imbalance ratio and what it means for the choice of metric."""
    shares = y.value_counts(normalize=True)
    ratio = float(shares.iloc[0] / shares.iloc[-1])
    if ratio >= 3:
        advice = (f"imbalanced ({ratio:.1f}:1): accuracy is misleading (always predicting "
                  f"{shares.index[0]!r} scores {shares.iloc[0]:.0%}); use recall, precision, F1, "
                  "balanced accuracy or average precision, and stratified folds")
    else:
        advice = f"reasonably balanced ({ratio:.1f}:1): accuracy is meaningful, but still report per-class recall"
    return {"shares": shares.round(4).to_dict(), "minority": shares.index[-1], "minority_share": float(shares.iloc[-1]),
            "imbalance_ratio": round(ratio, 2), "advice": advice}


def group_table(frame: pd.DataFrame, column: str, target: str | None, problem_type: str, positive: Any) -> pd.DataFrame:
    """Per group of a sensitive column: rows, share, target rate (or mean), too small to evaluate."""
    groups = frame[column].astype("string").fillna("(missing)")
    table = groups.value_counts().rename("rows").to_frame()
    table["share"] = (table["rows"] / len(frame)).round(4)
    if target and problem_type == "classification" and positive is not None:
        rate = frame[target].astype(str).eq(str(positive)).groupby(groups).mean()
        table[f"rate of {positive}"] = rate.round(4)
    elif target and problem_type == "regression":
        table[f"mean {target}"] = pd.to_numeric(frame[target], errors="coerce").groupby(groups).mean().round(4)
    table["too_small"] = table["rows"] < MIN_GROUP_ROWS
    table.index.name = column
    return table


def bias_report(prepared: Prepared, positive: Any) -> dict[str, Any]:
    """Class imbalance and, per sensitive column, group sizes, rates, largest gap, warnings."""
    train, target, ptype = prepared.train, prepared.target, prepared.problem_type
    out: dict[str, Any] = {"positive_label": positive, "groups": {}, "warnings": [], "class_balance": None}
    if target and ptype == "classification":
        out["class_balance"] = class_balance(train[target])
    for col in prepared.sensitive_columns:
        table = group_table(train, col, target, ptype, positive)
        rate_cols = [c for c in table.columns if c.startswith(("rate of", "mean "))]
        gap = float(table[rate_cols[0]].max() - table[rate_cols[0]].min()) if rate_cols and len(table) > 1 else None
        out["groups"][col] = {"table": table.reset_index().to_dict(orient="records"), "largest_gap": gap}
        for group, row in table[table["too_small"]].iterrows():
            out["warnings"].append(f"{col} = {group!r} has only {int(row['rows'])} training rows (< {MIN_GROUP_ROWS}): "
                                   "too few to evaluate this group reliably; collect more or merge groups")
        if gap is not None and gap >= 0.1:
            out["warnings"].append(f"{col}: the {rate_cols[0]} differs by {gap:.2f} between groups; check per-group "
                                   "errors in step 4 before deploying")
    return out


def bias_tables(report: Mapping[str, Any]) -> dict[str, pd.DataFrame]:
    return {col: pd.DataFrame(g["table"]).set_index(col) for col, g in report["groups"].items()}


# --- 2.7 scale -------------------------------------------------------------------------------------------------


def compact_bytes(frame: pd.DataFrame) -> int:
    """Memory of the table with low-cardinality text as ``category`` and floats as float32."""
    total = 0
    for col in frame.columns:
        s = frame[col]
        if quality.is_text(s) and s.nunique() < 0.5 * max(len(s), 1):
            s = s.astype("category")
        elif pd.api.types.is_float_dtype(s):
            s = s.astype("float32")
        total += int(s.memory_usage(deep=True, index=False))
    return total


def scale_report(raw: pd.DataFrame, provenance: Mapping[str, Any], working_factor: float = 3.0) -> dict[str, Any]:
    """Memory now and at 10x/100x rows, load time, whether it fits, and what to do about it."""
    now = quality.memory_bytes(raw)
    available = available_memory_bytes()  # container (cgroup) limit respected
    compact = compact_bytes(raw)
    load_s = provenance.get("load_seconds")
    rows = []
    for factor in (1, 10, 100):
        need = now * factor * working_factor
        rows.append({"rows": len(raw) * factor, "table_mb": round(now * factor / 2**20, 2),
                     "working_mb": round(need / 2**20, 2),
                     "load_s": None if load_s is None else round(load_s * factor, 2),
                     "fits_in_memory": None if available is None else bool(need < available)})
    advice = [f"store low-cardinality text as category and floats as float32: {now / 2**20:.1f} MB -> "
              f"{compact / 2**20:.1f} MB in memory",
              "keep the data as Parquet (columnar, typed, compressed): later steps already read the Parquet snapshot"]
    if rows[-1]["fits_in_memory"] is False:
        advice.append("at 100x rows the table no longer fits with room to work: read only the needed columns, "
                      "in chunks (pandas chunksize, pyarrow.dataset) or out of core (DuckDB, Polars lazy)")
    else:
        advice.append("even at 100x rows it fits in memory here; no out-of-core tooling is needed yet")
    return {"memory_bytes": now, "compact_bytes": compact, "available_bytes": available,
            "working_factor": working_factor, "projection": rows, "advice": advice}


# --- figures -------------------------------------------------------------------------------------------------------


def missingness_figure(profile: pd.DataFrame):
    """Share of missing values per column (training side)."""
    data = profile.set_index("column")["missing_share"].sort_values()
    fig, ax = plt.subplots(figsize=(6, max(2.5, 0.25 * len(data))))
    colors = ["#c44e52" if v >= 0.05 else "#dd8452" if v > 0 else "#55a868" for v in data]
    ax.barh(data.index.astype(str), data.to_numpy(), color=colors)
    ax.set_xlabel("share of rows missing")
    ax.set_xlim(0, max(0.05, float(data.max()) * 1.15))
    ax.set_title("Missing values per column")
    fig.tight_layout()
    return fig


def key_numeric_columns(prepared: Prepared, n: int = 6) -> list[str]:
    """The numeric features with the most spread relative to their median (a stable pick)."""
    return list(prepared.numeric[:n])


def distributions_figure(frame: pd.DataFrame, columns: Sequence[str]):
    """Histograms of a few key numeric columns."""
    columns = list(columns) or []
    ncols = 3
    nrows = max(1, int(np.ceil(len(columns) / ncols)))
    fig, axes = plt.subplots(nrows, ncols, figsize=(9, 2.6 * nrows), squeeze=False)
    for ax, col in zip(axes.ravel(), columns, strict=False):
        ax.hist(pd.to_numeric(frame[col], errors="coerce").dropna(), bins=30, color="#4c72b0")
        ax.set_title(str(col), fontsize=9)
    for ax in axes.ravel()[len(columns):]:
        ax.axis("off")
    fig.suptitle("Distributions of key numeric columns (training side, cleaned)")
    fig.tight_layout()
    return fig


def balance_figure(prepared: Prepared):
    """Target balance on each side of the split (sizes and shares only: the test side stays unseen)."""
    fig, ax = plt.subplots(figsize=(5.5, 3))
    if prepared.target and prepared.problem_type == "classification":
        shares = pd.DataFrame({side: prepared.y(side).value_counts(normalize=True) for side in ("train", "test")})
        shares.plot.bar(ax=ax, color=["#4c72b0", "#dd8452"], rot=0)
        ax.set_ylabel("share of rows")
        ax.set_title(f"Target balance: {prepared.target}")
    elif prepared.target:
        ax.hist(pd.to_numeric(prepared.y("train"), errors="coerce").dropna(), bins=30, color="#4c72b0")
        ax.set_title(f"Target distribution (training side): {prepared.target}")
    else:
        ax.bar(["train", "test"], [len(prepared.train), len(prepared.test)], color=["#4c72b0", "#dd8452"])
        ax.set_title("Rows per side (no target: clustering)")
    fig.tight_layout()
    return fig


# --- explorers ---------------------------------------------------------------------------------------------------------


def column_explorer_update(frame: pd.DataFrame, profile: pd.DataFrame, issues: Sequence[Mapping[str, Any]]):
    """Update function of the column explorer: distribution, stats and issues of one column."""
    rows = profile.set_index("column")

    def update(column: str):
        p = rows.loc[column]
        found = [f"{i['severity']}: {i['check']}" for i in issues if i["column"] == column]
        text = (f"{column}: {p['semantic_type']} ({p['dtype']}), {p['missing_share']:.1%} missing, "
                f"{p['distinct']} distinct")
        if p["min"] is not None and pd.notna(p["min"]):
            text += f", range {p['min']:.4g} to {p['max']:.4g}, median {p['median']:.4g}"
        text += ". Issues: " + ("; ".join(found) if found else "none")
        fig, ax = plt.subplots(figsize=(5, 2.6))
        values = frame[column]
        if p["semantic_type"] == "numeric":
            ax.hist(to_number(values).dropna(), bins=30, color="#4c72b0")
        else:
            values.astype("string").fillna("(missing)").value_counts().head(12)[::-1].plot.barh(ax=ax, color="#4c72b0")
        ax.set_title(str(column))
        fig.tight_layout()
        return text, fig

    return update


def column_explorer_controls(profile: pd.DataFrame) -> dict[str, Any]:
    import ipywidgets as w

    return {"column": w.Dropdown(options=list(profile["column"]), description="column")}


def imputation_explorer_update(prepared: Prepared):
    """Update function of the imputation/scaling picker: before/after distribution of one column."""
    from sklearn.impute import SimpleImputer

    def update(column: str, impute_strategy: str, scaler: str):
        # the one column shown, converted as ``prepared.X`` converts it (not the whole table: a million rows)
        before = features.as_model_input(prepared.train, [column], [])
        steps = [SimpleImputer(strategy=impute_strategy)] + ([_SCALERS[scaler]()] if scaler != "none" else [])
        after = before.to_numpy()
        for step in steps:  # one column: transforming it costs milliseconds
            after = step.fit_transform(after)
        after = after.ravel()
        missing = int(before[column].isna().sum())
        text = (f"{column}: {missing} missing values filled by the {impute_strategy}; after {scaler} scaling "
                f"the values span {after.min():.3g} to {after.max():.3g} (median {np.median(after):.3g})")
        fig, axes = plt.subplots(1, 2, figsize=(8, 2.6))
        axes[0].hist(before[column].dropna(), bins=30, color="#4c72b0")
        axes[0].set_title("before")
        axes[1].hist(after, bins=30, color="#55a868")
        axes[1].set_title(f"after ({impute_strategy}, {scaler})")
        fig.tight_layout()
        return text, fig

    return update


def imputation_explorer_controls(prepared: Prepared) -> dict[str, Any]:
    import ipywidgets as w

    return {"column": w.Dropdown(options=list(prepared.numeric), description="column"),
            "impute_strategy": w.Dropdown(options=["mean", "median", "most_frequent"], value=prepared.impute_strategy,
                                          description="impute"),
            "scaler": w.Dropdown(options=["standard", "robust", "minmax", "none"], value=prepared.scaler,
                                 description="scaler")}


def explorer_columns(issues: Sequence[Mapping[str, Any]], profile: pd.DataFrame, n: int = 3) -> list[str]:
    """Columns worth a static view: those with the most severe issues, else the first columns."""
    ranked = [i["column"] for i in quality.issues_table(issues).to_dict(orient="records")
              if i["column"] in set(profile["column"])]
    picked = list(dict.fromkeys(ranked + list(profile["column"])))
    return picked[:n]


def most_outlying_column(issues: Sequence[Mapping[str, Any]], prepared: Prepared) -> str | None:
    """A numeric feature with outliers (the most instructive default for the picker)."""
    cols = [i["column"] for i in issues if i["check"] in ("outliers", "missing values") and i["column"] in prepared.numeric]
    return cols[0] if cols else (prepared.numeric[0] if prepared.numeric else None)


# --- documents, summary and report ------------------------------------------------------------------------------------


def datasheet(params: Mapping[str, Any], provenance: Mapping[str, Any], prepared: Prepared, facts: Mapping[str, Any],
              issues: Sequence[Mapping[str, Any]], decisions: Sequence[Mapping[str, Any]], bias: Mapping[str, Any],
              split_info: Mapping[str, Any]) -> str:
    """The datasheet (Datasheets for Datasets sections), filled from what the data shows."""
    preset = preset_for(params.get("dataset") or "")
    return render("datasheet.md.j2", dataset=params.get("dataset"), description=preset.get("description"),
                  provenance=provenance, prepared=prepared, facts=facts, issues=quality.issues_table(issues).to_dict(orient="records"),
                  decisions=list(decisions), bias=bias, split=split_info,
                  problem_statement=params.get("problem_statement") or preset.get("problem_statement"))


@dataclass
class FoundationResult:
    """What step 2 computed: the profile, issues, cleaning decisions, split, bias and scale."""

    prepared: Prepared
    profile: pd.DataFrame
    issues: Sequence[Mapping[str, Any]]
    decisions: Sequence[Mapping[str, Any]]
    split_info: Mapping[str, Any]
    bias: Mapping[str, Any]
    scale: Mapping[str, Any]
    provenance: Mapping[str, Any]
    facts: Mapping[str, Any]
    problem_type_reason: str
    datasheet: str = ""
    figures: Mapping[str, Any] = field(default_factory=dict)
    sampled_checks: Sequence[Mapping[str, Any]] = ()  # ``sampled_check`` statements (the leakage check's)


def summary(result: FoundationResult) -> dict[str, Any]:
    """Step 2's machine-readable findings (``summary.json``)."""
    prepared, issues = result.prepared, result.issues
    return {"issues": quality.issues_table(issues).to_dict(orient="records"), "issue_counts": issue_counts(issues),
            "decisions": list(result.decisions),
            "split": dict(result.split_info, train_rows_cleaned=len(prepared.train),
                          test_rows_cleaned=len(prepared.test)),
            "bias": dict(result.bias), "scale": dict(result.scale),
            "profile_columns": result.profile.to_dict(orient="records"), "provenance": dict(result.provenance),
            "facts": dict(result.facts),
            "problem_type": prepared.problem_type, "problem_type_reason": result.problem_type_reason,
            "target": prepared.target, "features": {"numeric": prepared.numeric, "categorical": prepared.categorical},
            "dropped_columns": list(prepared.cleaning.get("drop_columns", [])),
            "preprocessing": {"impute_strategy": prepared.impute_strategy, "scaler": prepared.scaler,
                              "rare_category_share": prepared.rare_category_share},
            "feasibility": feasibility([c for c in result.sampled_checks if c.get("of")],
                                       int(result.split_info.get("train_rows", len(prepared.train))))}


def save(run: Run, result: FoundationResult) -> dict[str, Any]:
    """Write every step-2 artifact, then the summary (last: its presence means the step finished)."""
    save_prepared(run, result.prepared)
    run.write_artifact_json(STEP, "schema.json", make_schema(result.prepared))
    run.write_table(STEP, "profile.csv", result.profile)
    run.write_table(STEP, "issues.csv", quality.issues_table(result.issues))
    run.write_table(STEP, "decisions.csv", decisions_table(result.decisions))
    run.write_artifact_text(STEP, "datasheet.md", result.datasheet)
    for name, fig in result.figures.items():
        run.save_figure(STEP, name, fig)
    run.write_summary(STEP, summary(result))
    return run.read_summary(STEP)


def summary_overview(summary: Mapping[str, Any]) -> pd.DataFrame:
    """The headline numbers of the summary as a small table."""
    split_info = summary["split"]
    facts = {"issues (high / medium / low)": "{high} / {medium} / {low}".format(**summary["issue_counts"]),
             "decisions": len(summary["decisions"]), "train rows": split_info["train_rows"],
             "test rows": split_info["test_rows"], "dropped columns": ", ".join(summary["dropped_columns"]) or "none",
             "features": len(summary["features"]["numeric"]) + len(summary["features"]["categorical"])}
    return pd.DataFrame({"value": [str(v) for v in facts.values()]}, index=list(facts))


def top_issues(issues: Sequence[Mapping[str, Any]], n: int = 3) -> list[dict[str, Any]]:
    """The ``n`` most severe issues (high first, then medium, then low; in the order the checks found them)."""
    rank = {sev: i for i, sev in enumerate(quality.SEVERITIES)}
    ordered = sorted(issues, key=lambda i: rank.get(i["severity"], len(rank)))
    return [{k: i.get(k) for k in ("check", "column", "severity", "evidence", "fix")} for i in ordered[:n]]


def headline(run: Run) -> dict[str, Any]:
    """First-screen facts for the report: the severe issues, the most severe ones and how many issues of each severity."""
    s = run.read_summary(STEP)
    severe = [{k: i[k] for k in ("check", "column", "evidence", "fix")} for i in s["issues"] if i["severity"] == "high"]
    return {"severe_issues": severe[:5], "top_issues": top_issues(s["issues"]), "n_issues": len(s["issues"]),
            "issue_counts": s.get("issue_counts") or issue_counts(s["issues"])}


def report_section(run: Run) -> Section:
    """Step 2's section of the report: the issues found and fixed, the split, bias warnings, figures, documents."""
    s = run.read_summary(STEP)
    prov, counts, split_info = s["provenance"], s["issue_counts"], s["split"]
    n_features = len(s["features"]["numeric"]) + len(s["features"]["categorical"])
    takeaway = (f"{sum(counts.values())} data issues found ({counts['high']} high, {counts['medium']} medium, "
                f"{counts['low']} low severity) and handled by {len(s['decisions'])} cleaning decisions; "
                f"{split_info['train_rows']:,} training and {split_info['test_rows']:,} test rows, "
                f"{n_features} features.")
    facts = [Fact("high-severity issues", str(counts["high"]), "fail" if counts["high"] else "pass"),
             Fact("training / test rows", f"{split_info['train_rows']:,} / {split_info['test_rows']:,}"),
             Fact("features kept", str(n_features), note=f"dropped: {', '.join(s['dropped_columns']) or 'none'}")]
    issues = pd.DataFrame(s["issues"], columns=quality.ISSUE_COLUMNS)
    shown = issues[issues["severity"] != "low"]
    body = [tables.table(shown, caption=f"Issues of high and medium severity ({len(shown)} of {len(issues)})"),
            *[sections.paragraph(w, lead="Bias warning") for w in s["bias"].get("warnings", [])]]
    details = [sections.Details("Every issue, the cleaning decisions and the data's provenance", [
        tables.table(issues[issues["severity"] == "low"], caption="Issues of low severity"),
        tables.table(decisions_table(s["decisions"]), caption="Cleaning decisions"),
        tables.key_values({"source": prov.get("source"), "rows": f"{prov.get('rows'):,}" if prov.get("rows") else "–",
                           "columns": prov.get("columns"), "sha256": prov.get("sha256")}),
        sections.paragraph((s.get("feasibility") or {}).get("text", ""), lead="Rows checked"),
        *sections.images(run.artifacts / STEP, [("target_balance.png", "target balance"),
                                                ("distributions.png", "distributions of the numeric columns")])])]
    return Section("step-2", "2. Data foundation", takeaway, facts,
                   sections.images(run.artifacts / STEP, [("missingness.png", "missing values per column")]),
                   body, details, [("datasheet", f"artifacts/{STEP}/datasheet.md"), ("schema", f"artifacts/{STEP}/schema.json"),
                                   ("executed notebook", f"{STEP}.ipynb")])


# --- exercises -------------------------------------------------------------------------------------------------------------
# Three exercises (notebook section "Exercises"): count a data fault with pandas, see what a plain
# random split does to duplicates, and see the optimistic score of preprocessing fitted on every row.
# Each checker returns an ``exercises.Feedback``; the expected answer leaves it only as ``giveaways``.

BLANK = r"^\s*$"  # text that is empty or only spaces: missing, though pandas does not see it so


def _count(answer: Any) -> int | None:
    """The answer as a whole number, or None (a string, a float with decimals, a table)."""
    if isinstance(answer, (bool, str, bytes)) or not np.isscalar(answer):
        return None
    try:
        value = float(answer)
    except (TypeError, ValueError):
        return None
    return int(value) if np.isfinite(value) and value.is_integer() else None


def _count_giveaways(n: int, *words: str) -> tuple[str, ...]:
    """How a count would be printed if a cell above gave it away: "389 rows", "389 of", ..."""
    return tuple(dict.fromkeys(f"{form} {word}" for form in (f"{n}", f"{n:,}") for word in words))


def rows_with_missing(frame: pd.DataFrame) -> pd.Series:
    """Per row: does it hold a missing value (NaN, None) or blank text (exercise 2.1)?"""
    return frame.replace(BLANK, np.nan, regex=True).isna().any(axis=1)


def check_exercise_1(answer: Any, train_raw: pd.DataFrame, raw: pd.DataFrame) -> exercises.Feedback:
    """Exercise 2.1: how many training rows hold at least one missing value, blank text included?"""
    ex = "2.1"
    missing = rows_with_missing(train_raw)
    expected = int(missing.sum())
    giveaways = _count_giveaways(expected, "rows", "of")
    if exercises.is_unanswered(answer):
        return exercises.unanswered(ex, "Set `answer` to a number of rows.",
                                    "`train_raw.replace(...)`, `.isna()` and `.any(axis=1)` go a long way.",
                                    giveaways=giveaways)
    given = _count(answer)
    if given is None:
        if isinstance(answer, pd.Series | pd.DataFrame):
            return exercises.wrong(ex, "`answer` is a table (a count per column?); the question asks for one number.",
                                   "rows with a missing value in any column: `.any(axis=1)`, then `.sum()`.",
                                   giveaways=giveaways)
        share = float(answer) if isinstance(answer, float) and 0 < answer < 1 else None
        if share is not None:
            return exercises.wrong(ex, f"{share:.4g} looks like a share of rows, not a count.",
                                   "`.sum()` counts the rows where the condition holds; `.mean()` gives their share.",
                                   giveaways=giveaways)
        return exercises.wrong(ex, f"`answer` should be a whole number, not {answer!r}.", "count rows: `.sum()`.",
                               giveaways=giveaways)
    if given == expected:
        blanks = expected - int(train_raw.isna().any(axis=1).sum())
        return exercises.correct(ex, f"{expected:,} of {len(train_raw):,} training rows hold a gap, {blanks:,} of them "
                                     "only as blank text: a model sees a row, not a column, so a few percent missing "
                                     "per column can touch many rows (imputation keeps them).", giveaways=giveaways)
    cells = train_raw.replace(BLANK, np.nan, regex=True).isna()
    mistakes = {
        int(train_raw.isna().any(axis=1).sum()): ("You counted NaN and None only: blank text is not missing to pandas.",
                                                  f"turn blank text into NaN first: `train_raw.replace(r\"{BLANK}\", "
                                                  "np.nan, regex=True)`."),
        int(cells.to_numpy().sum()): ("That counts missing cells, not rows: a row with two gaps counts twice.",
                                      "`.any(axis=1)` marks each row once."),
        int(train_raw.isna().to_numpy().sum()): ("That counts missing cells (NaN only), not rows.",
                                                 "blank text counts too, and `.any(axis=1)` marks each row once."),
        int(rows_with_missing(raw).sum()): ("That counts the whole table, test side included.",
                                            "look at the training side only: `train_raw`."),
    }
    if given in mistakes:
        return exercises.wrong(ex, *mistakes[given], giveaways=giveaways)
    return exercises.wrong(ex, f"{given:,} is not the number of training rows with a gap.",
                           "mark each cell that is NaN or blank text, then each row that has one, then count the rows.",
                           giveaways=giveaways)


def plain_split_copies(raw: pd.DataFrame, test_size: float, seed: int) -> dict[str, int]:
    """Exercise 2.2: exact copies across a plain random split, and in the other counts a learner might give.

    ``straddling``: rows of ``train_test_split``'s test side that are exact copies of a row on its
    training side. The playbook's keyed split keeps every copy on one side (``split.row_keys``).
    """
    from sklearn.model_selection import train_test_split  # only the exercise uses it

    hashes = pd.util.hash_pandas_object(raw, index=False)
    train, test = train_test_split(raw, test_size=test_size, random_state=seed)
    return {"straddling": int(hashes[test.index].isin(hashes[train.index]).sum()),
            "test_side_copies": int(test.duplicated().sum()), "all_copies": int(raw.duplicated().sum()),
            "test_rows": len(test)}


def check_exercise_2(answer: Any, raw: pd.DataFrame, mask: pd.Series, params: Mapping[str, Any]) -> exercises.Feedback:
    """Exercise 2.2: with a plain random split, how many test rows are exact copies of a training row?"""
    ex = "2.2"
    counts = plain_split_copies(raw, params["test_size"], params["seed"])
    expected = counts["straddling"]
    giveaways = _count_giveaways(expected, "rows", "copies", "test rows")
    if exercises.is_unanswered(answer):
        return exercises.unanswered(ex, "Set `answer` to a number of test rows.",
                                    "split with `train_test_split(raw, test_size=params.test_size, "
                                    "random_state=params.seed)`, then look for each test row among the training rows.",
                                    giveaways=giveaways)
    given = _count(answer)
    if given is None:
        if isinstance(answer, float) and 0 < answer < 1:
            return exercises.wrong(ex, f"{answer:.4g} looks like a share, not a count of rows.", "count with `.sum()`.",
                                   giveaways=giveaways)
        return exercises.wrong(ex, f"`answer` should be a whole number, not {answer!r}.", "count rows with `.sum()`.",
                               giveaways=giveaways)
    hashes = pd.util.hash_pandas_object(raw, index=False)
    keyed = int(hashes[mask].isin(hashes[~mask]).sum())  # the playbook's split: 0 unless spelling hides a copy
    if given == expected == 0:
        return exercises.correct(ex, "No row of this table has an exact copy, so no split can test on a copy here; "
                                     "with copies, a plain random split puts some on each side, the playbook's key "
                                     "keeps them together.", giveaways=giveaways)
    if given == expected:
        return exercises.correct(ex, f"{expected} test rows of a plain random split are copies of training rows: the "
                                     f"model would be tested on rows it learned from. The playbook's split has {keyed}: "
                                     "each row's key (the id, else a hash of the normalised row) puts copies on one "
                                     "side.", giveaways=giveaways)
    if given == keyed and keyed != expected:
        return exercises.wrong(ex, "That is the count for the playbook's split (`mask`), which keeps copies together.",
                               "the question is about a plain `train_test_split` of `raw`.", giveaways=giveaways)
    if given == counts["test_side_copies"]:
        return exercises.wrong(ex, "That counts copies within the test side, not test rows copied from training rows.",
                               "look for each test row's hash among the training side's hashes (`.isin`).",
                               giveaways=giveaways)
    if given == counts["all_copies"]:
        return exercises.wrong(ex, "That counts every copy in the table, whichever side it falls on.",
                               "only a copy with its original on the other side leaks: split first, then compare.",
                               giveaways=giveaways)
    return exercises.wrong(ex, f"{given:,} is not the count for that split.",
                           "use `random_state=params.seed` and `test_size=params.test_size`, and compare whole rows "
                           "(`pd.util.hash_pandas_object(raw, index=False)`).", giveaways=giveaways)


def noise_table(prepared: Prepared, seed: int, rows: int = 300, columns: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """Exercise 2.3's table: ``columns`` columns of pure noise beside the labels of ``rows`` training rows.

    The labels: the target's classes (classification), above or below the median (regression),
    coin flips (clustering: no target). No column can predict them, so any score above chance
    is optimism.
    """
    rng = np.random.default_rng(seed)
    n = min(rows, len(prepared.train))
    picked = np.sort(rng.choice(len(prepared.train), size=n, replace=False))
    y = prepared.y("train")
    if y is None:
        labels = rng.choice(np.array(["heads", "tails"], dtype=object), size=n)
    elif prepared.problem_type == "regression":
        values = pd.to_numeric(y.iloc[picked], errors="coerce")
        labels = np.where(values > values.median(), "high", "low").astype(object)
    else:
        labels = y.iloc[picked].astype(str).to_numpy(dtype=object)
    return rng.normal(size=(n, columns)), labels


def selection_scores(X: np.ndarray, y: np.ndarray, k: int = 20) -> tuple[float, float]:
    """Exercise 2.3's recipe: balanced accuracy (5-fold) with the k best columns chosen on every row, and in a Pipeline."""
    from sklearn.feature_selection import SelectKBest, f_classif  # only the exercise uses them
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline

    model = LogisticRegression(class_weight="balanced")
    chosen = SelectKBest(f_classif, k=k).fit_transform(X, y)
    whole = cross_val_score(model, chosen, y, cv=5, scoring="balanced_accuracy").mean()
    inside = cross_val_score(make_pipeline(SelectKBest(f_classif, k=k), model), X, y, cv=5,
                             scoring="balanced_accuracy").mean()
    return float(whole), float(inside)


_SELECTION_SCORES: dict[str, tuple[float, float]] = {}  # per table: a re-run check cell does not refit


def check_exercise_3(answer: Any, X: np.ndarray, y: np.ndarray) -> exercises.Feedback:
    """Exercise 2.3: (score with the selection fitted on every row, score with it inside a Pipeline)."""
    ex = "2.3"
    key = hashlib.sha1(np.ascontiguousarray(X).tobytes() + "\x1f".join(map(str, y)).encode()).hexdigest()
    reference = _SELECTION_SCORES.get(key) or _SELECTION_SCORES.setdefault(key, selection_scores(X, y))
    giveaways = tuple(f for value in reference for f in exercises.number_forms(value))
    chance = 1 / len(pd.unique(y))
    if exercises.is_unanswered(answer):
        return exercises.unanswered(ex, "Set `answer` to two scores: (selection fitted on every row, selection "
                                        "inside a Pipeline).",
                                    "`cross_val_score` on the selected columns, then on `make_pipeline(SelectKBest(...), "
                                    "LogisticRegression(...))` with the whole noise table.", giveaways=giveaways)
    pair = list(answer) if isinstance(answer, (tuple, list)) else None
    values = [v if isinstance(v, (int, float, np.number)) and not isinstance(v, bool) else None for v in pair or []]
    if len(values) != 2 or None in values:
        return exercises.wrong(ex, "`answer` should be a pair of numbers: (whole table, pipeline).",
                               "e.g. answer = (whole_table_score, pipeline_score).", giveaways=giveaways)
    whole, inside = (float(v) for v in values)
    if not (0 <= whole <= 1 and 0 <= inside <= 1):
        return exercises.wrong(ex, "Balanced accuracy lies between 0 and 1; these look like percentages or errors.",
                               "give `cross_val_score(...).mean()` as it is.", giveaways=giveaways)
    if inside - whole > 0.05:
        return exercises.wrong(ex, "Your pipeline score is the higher one: the two scores look swapped.",
                               "answer = (selection fitted on every row, selection inside the Pipeline).",
                               giveaways=giveaways)
    if inside > chance + 0.12:
        return exercises.wrong(ex, f"Your pipeline scores {inside:.3f} on pure noise, well above chance ({chance:.2f}): "
                                   "the selection still saw the validation rows.",
                               "put SelectKBest inside `make_pipeline` and give `cross_val_score` the whole noise table.",
                               giveaways=giveaways)
    if whole - inside < 0.08:
        return exercises.wrong(ex, "The two scores are about the same: both look honest.",
                               "for the first, fit SelectKBest on every row (`fit_transform(X_noise, y_noise)`), then "
                               "cross-validate the model alone on the chosen columns.", giveaways=giveaways)
    return exercises.correct(ex, f"On columns of pure noise, choosing them on every row scores {whole:.3f}, inside the "
                                 f"Pipeline {inside:.3f} (chance: {chance:.2f}). The selection saw the validation "
                                 "folds' labels: that is why step 2 only defines the preprocessing and step 4 fits it "
                                 "inside cross-validation.", giveaways=giveaways)


# --- the whole step without display (benchmarks, tests) --------------------------------------------------------------------


def run_core(run: Run, params: Mapping[str, Any]) -> dict[str, Any]:
    """Every computation of step 2 in order, with per-stage seconds (no figures, nothing written but the snapshot)."""
    timings = {}
    started = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal started
        timings[name] = round(time.perf_counter() - started, 3)
        started = time.perf_counter()

    raw, provenance = load_snapshot(run, params)
    lap("load")
    ptype, reason = resolve_problem_type(raw, params, run)
    check_table(raw, params, ptype)
    mask = hold_out(raw, params, ptype)
    split_info = split_report(raw, mask, params, ptype)
    lap("split")
    train_raw = raw[~mask]
    prof = quality.profile(train_raw)
    lap("profile")
    fixes = provisional_cleaning(train_raw, params)
    leaks, leak_rows = leakage_check(train_raw, params, ptype, fixes)
    lap("leakage")
    issues = find_issues(train_raw, params, prof, leaks)
    lap("checks")
    cleaning, decisions = plan_cleaning(train_raw, params, issues, fixes)
    cleaned, more = clean_table(raw, cleaning, params)
    prepared = make_prepared(cleaned, mask, params, ptype, cleaning)
    lap("clean")
    positive = positive_label(run, params, prepared.y("train"))
    bias = bias_report(prepared, positive)
    scale = scale_report(raw, provenance)
    lap("bias_scale")
    return {"raw": raw, "provenance": provenance, "problem_type": ptype, "reason": reason, "mask": mask,
            "split": split_info, "profile": prof, "leaks": leaks, "issues": issues, "cleaning": cleaning,
            "decisions": decisions + more, "prepared": prepared, "bias": bias, "scale": scale, "timings": timings,
            "sampled_checks": [leak_rows]}
