"""The one split: deterministic, exactly stratified, stable, duplicates and groups on one side."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from helpers.core import split
from helpers.core.errors import PlaybookError


def frame(n=400, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"x": rng.normal(size=n), "c": rng.choice(["Red", "blue"], n),
                         "y": np.where(rng.random(n) < 0.25, "pos", "neg")})


def test_deterministic_and_seed_dependent():
    df = frame()
    a = split.assign_test(df, target="y", problem_type="classification", test_size=0.2, seed=1)
    b = split.assign_test(df, target="y", problem_type="classification", test_size=0.2, seed=1)
    c = split.assign_test(df, target="y", problem_type="classification", test_size=0.2, seed=2)
    pd.testing.assert_series_equal(a, b)
    assert not a.equals(c)


def test_exact_stratification():
    df = frame(1000)
    mask = split.assign_test(df, target="y", problem_type="classification", test_size=0.2, seed=3)
    for _, part in df.groupby("y"):
        assert abs(mask[part.index].sum() - round(0.2 * len(part))) <= 1


def test_stable_under_case_and_whitespace_changes():
    df = frame()
    mask = split.assign_test(df, target="y", problem_type="classification", test_size=0.25, seed=0)
    messy = df.copy()
    messy["c"] = messy["c"].str.upper().map(lambda s: f"  {s} ")
    assert split.assign_test(messy, target="y", problem_type="classification", test_size=0.25, seed=0).equals(mask)


def test_numbers_stored_as_text_key_like_numbers():
    df = frame()
    text = df.assign(x=df["x"].map(lambda v: f"{v}"))
    assert split.row_keys(df, exclude=("y",)).equals(split.row_keys(text, exclude=("y",)))


def test_duplicates_stay_on_one_side():
    df = frame(300)
    doubled = pd.concat([df, df.iloc[:100]], ignore_index=True)
    mask = split.assign_test(doubled, target="y", problem_type="classification", test_size=0.3, seed=0)
    assert (mask.iloc[:100].to_numpy() == mask.iloc[300:].to_numpy()).all()


def test_no_group_on_both_sides():
    df = frame(600)
    df["patient"] = np.repeat(np.arange(100), 6)
    mask = split.assign_test(df, target="y", problem_type="classification", test_size=0.2, seed=0,
                             group_column="patient")
    sides = df.assign(test=mask).groupby("patient")["test"].nunique()
    assert (sides == 1).all()
    assert 0.1 < mask.mean() < 0.3


def test_time_ordered_split():
    df = frame(200)
    df["when"] = pd.date_range("2024-01-01", periods=200, freq="D").astype(str)
    mask = split.assign_test(df, target="y", problem_type="classification", test_size=0.2, seed=0,
                             time_column="when")
    assert pd.to_datetime(df.loc[mask, "when"]).min() > pd.to_datetime(df.loc[~mask, "when"]).max()
    assert mask.sum() == 40


def test_regression_and_clustering_strata():
    df = frame(500).assign(t=np.arange(500.0))
    mask = split.assign_test(df, target="t", problem_type="regression", test_size=0.2, seed=0)
    assert mask.sum() == 100
    bins = pd.qcut(df["t"], 5, labels=False)
    assert (df.assign(m=mask).groupby(bins)["m"].sum() == 20).all()
    mask = split.assign_test(df.drop(columns="y"), target=None, problem_type="clustering", test_size=0.2, seed=0)
    assert mask.sum() == 100


def test_bad_test_size_and_missing_column():
    with pytest.raises(PlaybookError, match="between 0 and 1"):
        split.assign_test(frame(), target="y", problem_type="classification", test_size=1.0, seed=0)
    with pytest.raises(PlaybookError, match="not in the data"):
        split.assign_test(frame(), target="y", problem_type="classification", test_size=0.2, seed=0, id_column="nope")
