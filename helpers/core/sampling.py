"""Seeded row sampling shared by steps 3 and 4 (scaling measurements, explorer grid, cluster sweep),
and the growth of a small table beyond its rows for step 3's measurements (``grow``)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split


def subsample(X: pd.DataFrame, y: pd.Series | None, n: int, seed: int, *,
              stratify: bool) -> tuple[pd.DataFrame, pd.Series | None]:
    """At most ``n`` rows of ``X`` (and the same rows of ``y``), drawn without replacement and seeded.

    With ``stratify`` (classification), class shares are kept. ``n >= len(X)`` returns
    ``X`` and ``y`` unchanged (same rows, same order).
    """
    if n >= len(X):
        return X, y
    labels = y.astype(str) if stratify and y is not None else None
    if labels is not None:
        counts = labels.value_counts()
        # a stratified draw needs two rows per class and room for every class on both sides;
        # without it, draw plainly rather than fail
        if counts.min() < 2 or min(n, len(X) - n) < len(counts):
            labels = None
    # the classes' sorted codes, not their text: the same classes in the same order, so the same sample, without
    # the string sort train_test_split's np.unique does on every row (~1 s on 800,000 rows; codes: ~0.3 s)
    strata = None if labels is None else pd.factorize(labels, sort=True)[0]
    rows, _ = train_test_split(np.arange(len(X)), train_size=n, stratify=strata, random_state=seed)
    return X.iloc[rows], None if y is None else y.iloc[rows]


def grow(X: pd.DataFrame, y: pd.Series | None, n: int, seed: int, *, jitter: float = 0.01,
         stratify: bool = False) -> tuple[pd.DataFrame, pd.Series | None]:
    """``n`` rows like ``X``: a subsample when ``n <= len(X)``, else every row plus resampled copies.

    The copies (drawn with replacement, seeded) have each number multiplied by
    ``1 + jitter * N(0, 1)``, so they are not exact duplicates: a tree would find no new
    split in a duplicate and a neighbour search would tie, which a real, larger table does
    not do. Categories and the target are copied as they are; missing values stay missing.
    Step 3 (and its benchmark) use it to time fits beyond the rows a table has.
    """
    if n <= len(X):
        return subsample(X, y, n, seed, stratify=stratify)
    rng = np.random.default_rng(seed)
    extra = rng.integers(0, len(X), n - len(X))
    copies = X.iloc[extra].reset_index(drop=True)
    for column in copies.columns:
        values = copies[column]
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            copies[column] = values.astype(float) * (1.0 + jitter * rng.standard_normal(len(copies)))
    grown = pd.concat([X.reset_index(drop=True), copies], ignore_index=True)
    if y is None:
        return grown, None
    return grown, pd.concat([y.reset_index(drop=True), y.iloc[extra].reset_index(drop=True)], ignore_index=True)
