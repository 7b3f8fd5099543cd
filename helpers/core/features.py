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
from sklearn.model_selection import FixedThresholdClassifier
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


def as_model_input(frame: pd.DataFrame, numeric: Sequence[str], categorical: Sequence[str],
                   columns: Sequence[str] | None = None) -> pd.DataFrame:
    """The model's input table: the one conversion of training (steps 1-4) and serving (step 5).

    Per column, from the kinds recorded at training (``Prepared.numeric``/``categorical``,
    the package's ``model_meta.json``; ``split_kinds`` where nothing is recorded yet):

    - numeric: float64; numbers stored as text are parsed, unparseable text and +/-inf
      become NaN (nullable Int64/Float64 missing values too);
    - categorical: object dtype holding real ``str`` values (numbers and booleans as their
      text), every missing value (None, NaN, pd.NA, NaT) as ``np.nan``, never the text
      "<NA>" or "nan": the pipelines' constant imputer turns it into "missing" alike in
      training and serving, and unseen categories go to the encoder's ``handle_unknown``.

    Columns come in ``columns`` order (default: numeric, then categorical); every row is
    kept with its index; ``frame`` is not changed. Vectorised: serving converts millions of rows.
    """
    numeric, categorical = list(numeric), list(categorical)
    columns = numeric + categorical if columns is None else list(columns)
    kinds = {**{c: "categorical" for c in categorical}, **{c: "numeric" for c in numeric}}
    unknown = [c for c in columns if c not in kinds]
    if unknown:
        raise ValueError(f"as_model_input: column(s) {unknown} are neither numeric nor categorical")
    # numeric columns as arrays, not Series the frame would align again (text: a Series keeps dtype object,
    # which the frame would otherwise infer as str): less per served request
    converted = {c: (_as_float if kinds[c] == "numeric" else _as_text)(frame[c]) for c in columns}
    return pd.DataFrame(converted, index=frame.index, columns=columns)


def _as_float(s: pd.Series) -> np.ndarray:
    if not (pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s)):
        s = pd.to_numeric(s, errors="coerce")  # numbers stored as text; anything else is missing
    values = s.to_numpy(dtype=float, na_value=np.nan)
    return np.where(np.isinf(values), np.nan, values)


def _as_text(s: pd.Series) -> pd.Series:
    missing = s.isna().to_numpy()
    if isinstance(s.dtype, pd.StringDtype):
        pass  # real str values already (astype(str) would copy them to the same): missing ones replaced below
    elif s.dtype != object or pd.api.types.infer_dtype(s, skipna=True) not in ("string", "empty"):
        s = s.astype(str)  # numbers, booleans, mixed values, extension dtypes: their text
    values = s.to_numpy(dtype=object, copy=True)
    values[missing] = np.nan  # after astype(str): whatever text it gave a missing value is replaced
    return pd.Series(values, index=s.index, name=s.name, dtype=object)


def with_model(preprocessor: ColumnTransformer, estimator) -> Pipeline:
    return Pipeline([("preprocess", preprocessor), ("model", estimator)])


def with_threshold(estimator, threshold: float, positive_label: Any) -> FixedThresholdClassifier:
    """A binary classifier deciding "positive" when P(``positive_label``) >= ``threshold`` (unfitted: fit it).

    The threshold is a parameter of the model, so it is saved in the model file: ``model.predict()``
    on the loaded file decides like ``playbook predict``. ``positive_label`` as the target holds it.
    """
    return FixedThresholdClassifier(estimator, threshold=float(threshold), pos_label=positive_label,
                                    response_method="predict_proba")


def decision_threshold(model) -> float | None:
    """The threshold a model built by ``with_threshold`` applies itself; None for any other model
    (models saved before the threshold moved into the file: it is in ``model_meta.json``)."""
    if not isinstance(model, FixedThresholdClassifier):
        return None
    return 0.5 if model.threshold == "auto" else float(model.threshold)  # "auto" on probabilities is 0.5
