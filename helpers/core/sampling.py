"""Seeded row sampling shared by steps 3 and 4 (scaling measurements, explorer grid, cluster sweep)."""

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
    rows, _ = train_test_split(np.arange(len(X)), train_size=n, stratify=labels, random_state=seed)
    return X.iloc[rows], None if y is None else y.iloc[rows]
