"""Which columns are features, and the scikit-learn preprocessing built from them.

Identifier, group, time and sensitive columns are never model features (sensitive
columns are kept for per-group evaluation only).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import MinMaxScaler, OneHotEncoder, RobustScaler, StandardScaler


def excluded_columns(params: Mapping[str, Any]) -> list[str]:
    """Columns that must never be model features, from the parameters."""
    cols = [params.get("target"), params.get("id_column"), params.get("group_column"), params.get("time_column")]
    cols += list(params.get("sensitive_columns") or [])
    return [c for c in cols if c]


def feature_columns(frame: pd.DataFrame, params: Mapping[str, Any], drop: Sequence[str] = ()) -> list[str]:
    excluded = set(excluded_columns(params)) | set(drop)
    return [c for c in frame.columns if c not in excluded]


def split_kinds(frame: pd.DataFrame, columns: Sequence[str]) -> tuple[list[str], list[str]]:
    """Numeric and categorical columns (booleans and text count as categorical)."""
    numeric = [c for c in columns if pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c])]
    categorical = [c for c in columns if c not in numeric]
    return numeric, categorical


_SCALERS = {"standard": StandardScaler, "robust": RobustScaler, "minmax": MinMaxScaler}


def make_preprocessor(numeric: Sequence[str], categorical: Sequence[str], *, impute_strategy: str = "median",
                      scaler: str = "standard", rare_category_share: float = 0.01) -> ColumnTransformer:
    """Imputation, optional scaling and one-hot encoding (rare categories grouped).

    Fit it inside cross-validation (as the first step of a Pipeline), never on all data.
    """
    num_steps = [SimpleImputer(strategy=impute_strategy)]
    if scaler != "none":
        num_steps.append(_SCALERS[scaler]())
    cat = make_pipeline(
        SimpleImputer(strategy="constant", fill_value="missing"),
        OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=rare_category_share or None,
                      sparse_output=False),
    )
    return ColumnTransformer(
        [("numeric", make_pipeline(*num_steps), list(numeric)), ("categorical", cat, list(categorical))],
        remainder="drop", verbose_feature_names_out=False,
    )


def as_model_input(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """The feature table with categorical values as plain strings (missing stays missing)."""
    X = frame[list(columns)].copy()
    numeric, categorical = split_kinds(X, columns)
    for c in categorical:
        X[c] = X[c].map(lambda v: v if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)).astype(object)
    for c in numeric:
        X[c] = X[c].astype(float).replace([np.inf, -np.inf], np.nan)
    return X


def with_model(preprocessor: ColumnTransformer, estimator) -> Pipeline:
    return Pipeline([("preprocess", preprocessor), ("model", estimator)])
