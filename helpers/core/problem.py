"""Problem framing shared by every step: the problem type, the checked target, identifier columns."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from helpers.core.errors import PlaybookError


def infer_problem_type(y: pd.Series | None, requested: str = "auto") -> tuple[str, str]:
    """The problem type and the reason for it (explicit, or inferred from the target)."""
    if requested and requested != "auto":
        return requested, "given by the problem_type parameter or the dataset preset"
    if y is None:
        return "clustering", "no target column: the task is to find structure (clustering)"
    values = y.dropna()
    n_unique = values.nunique()
    if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        return "classification", f"the target is not numeric ({n_unique} distinct labels)"
    integral = np.allclose(values, np.round(values))
    if integral and n_unique <= max(2, min(20, int(0.05 * len(values)))):
        return "classification", f"the target is numeric but takes only {n_unique} whole-number values"
    return "regression", f"the target is numeric with {n_unique} distinct values"


def frame_problem(frame: pd.DataFrame, target: str | None, requested: str = "auto") -> tuple[str, str]:
    """Check the target column and settle the problem type (with the reason)."""
    if target and target not in frame.columns:
        raise PlaybookError(f"Target column {target!r} is not in the data.",
                            f"set target to one of: {', '.join(map(str, frame.columns[:25]))}.")
    problem_type, reason = infer_problem_type(frame[target] if target else None, requested)
    check_target(frame, target, problem_type)
    return problem_type, reason


def check_target(frame: pd.DataFrame, target: str | None, problem_type: str) -> pd.Series | None:
    """The target column, checked: present, not all missing, enough classes or spread."""
    if problem_type == "clustering" or not target:
        return None
    if target not in frame.columns:
        raise PlaybookError(f"Target column {target!r} is not in the data.",
                            f"set target to one of: {', '.join(map(str, frame.columns[:25]))}.")
    y = frame[target]
    if y.isna().all():
        raise PlaybookError(f"Target column {target!r} is entirely missing.", "choose a column with labels.")
    if problem_type == "classification":
        counts = y.value_counts()
        if len(counts) < 2:
            raise PlaybookError(f"Target {target!r} has a single class ({counts.index[0]!r}): there is nothing to predict.",
                                "use data with at least two classes, or a different target.")
        if counts.min() < 2:
            raise PlaybookError(f"Class {counts.index[-1]!r} of target {target!r} has only {counts.min()} row(s).",
                                "collect more rows of that class or merge it with another class.")
    if problem_type == "regression":
        numeric = pd.to_numeric(y, errors="coerce")
        if numeric[y.notna()].isna().any():
            bad = y[y.notna() & numeric.isna()].iloc[0]
            raise PlaybookError(f"Target {target!r} has non-numeric values (e.g. {bad!r}) but problem_type is regression.",
                                "clean the target column, or use problem_type classification.")
        if numeric.nunique() < 2:
            raise PlaybookError(f"Target {target!r} is constant.", "choose a target that varies.")
        steps = numeric.diff().dropna()
        if len(steps) >= 5 and (steps == 1).all():
            raise PlaybookError(f"Target {target!r} is the row number (it counts up by 1 in file order): "
                                "there is nothing to learn.", "set target to the column to predict.")
    return y


def identifier_columns(frame: pd.DataFrame, exclude: Sequence[str] = ()) -> list[str]:
    """Columns that look like row identifiers: (nearly) one distinct value per row, not float."""
    found = []
    n = len(frame)
    for col in frame.columns:
        if col in exclude or n < 20:
            continue
        s = frame[col].dropna()
        if pd.api.types.is_float_dtype(s) or pd.api.types.is_bool_dtype(s):
            continue
        if looks_like_identifier(col, s.nunique(), len(s), pd.api.types.is_integer_dtype(s), lambda s=s: _is_row_counter(s)):
            found.append(col)
    return found


def looks_like_identifier(col: str, distinct: int, values: int, integer: bool, is_counter) -> bool:
    """The identifier rule on a (non-float, non-boolean) column's counts; ``is_counter()``: its values count 1, 2, 3..."""
    share = distinct / max(values, 1)
    named = any(tok in str(col).lower() for tok in ("id", "uuid", "key", "number", "code"))
    if share >= 0.999 or (named and share >= 0.9):
        return not integer or named or bool(is_counter())
    return False


def _is_row_counter(s: pd.Series) -> bool:
    values = np.sort(s.to_numpy())
    return bool(len(values) > 1 and np.all(np.diff(values) == 1))
