"""The hand-over from step 2 to steps 3-5: cleaned train/test tables and how to preprocess them.

Step 2 writes it with ``save_prepared``; later steps read it with ``load_prepared``
(never by guessing paths). Files, under ``artifacts/02_data_foundation/``:
``train.parquet``, ``test.parquet`` (cleaned rows; the index is the raw row number),
``prepared.json`` (target, problem type, feature lists, preprocessing choices) and
``cleaning.json`` (the data fixes ``playbook predict`` re-applies to new data).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline

from helpers.core.artifacts import Run, read_json
from helpers.core.families import Family
from helpers.core.features import as_model_input, make_preprocessor, with_model
from helpers.core.paths import STEP_NOTEBOOKS

STEP2 = STEP_NOTEBOOKS[1]


@dataclass
class Prepared:
    """Cleaned data and preprocessing choices, as step 2 left them."""

    train: pd.DataFrame
    test: pd.DataFrame
    target: str | None
    problem_type: str
    numeric: list[str]
    categorical: list[str]
    id_column: str | None = None
    sensitive_columns: list[str] = field(default_factory=list)
    impute_strategy: str = "median"
    scaler: str = "standard"
    rare_category_share: float = 0.01
    cleaning: dict[str, Any] = field(default_factory=dict)

    @property
    def features(self) -> list[str]:
        return list(self.numeric) + list(self.categorical)

    def X(self, side: str = "train") -> pd.DataFrame:
        """Model input of one side ("train" or "test"): features only, clean dtypes."""
        frame = self.train if side == "train" else self.test
        return as_model_input(frame, self.numeric, self.categorical)  # the conversion serving uses too

    def y(self, side: str = "train") -> pd.Series | None:
        if not self.target:
            return None
        return (self.train if side == "train" else self.test)[self.target]

    def make_preprocessor(self, scaler: str | None = None) -> ColumnTransformer:
        """A fresh, unfitted preprocessor (fit it inside cross-validation)."""
        return make_preprocessor(self.numeric, self.categorical, impute_strategy=self.impute_strategy,
                                 scaler=scaler or self.scaler, rare_category_share=self.rare_category_share)

    def pipeline(self, family: Family, seed: int, n_jobs: int = 1) -> Pipeline:
        """The preprocessor (scaled only when the family needs it) followed by the family's estimator.

        Steps 3 and 4 build every candidate this way, so step 3 times what step 4 fits.
        """
        scaler = None if family.scales_features else "none"
        return with_model(self.make_preprocessor(scaler=scaler), family.build(seed, n_jobs))

    def meta(self) -> dict[str, Any]:
        d = asdict(self)
        for key in ("train", "test", "cleaning"):
            d.pop(key)
        return d


def save_prepared(run: Run, prepared: Prepared) -> None:
    run.write_table(STEP2, "train.parquet", prepared.train)
    run.write_table(STEP2, "test.parquet", prepared.test)
    run.write_artifact_json(STEP2, "prepared.json", prepared.meta())
    run.write_artifact_json(STEP2, "cleaning.json", prepared.cleaning)


def has_prepared(run: Run) -> bool:
    return all((run.artifacts / STEP2 / name).exists()
               for name in ("train.parquet", "test.parquet", "prepared.json"))


def load_prepared(run: Run, *, needed_by: str | None = None) -> Prepared:
    """Step 2's hand-over; a clear "run step 2 first" error when it is missing."""
    if not has_prepared(run):
        run.read_summary(STEP2, needed_by=needed_by)  # raises the clear error naming step 2
    folder = run.artifacts / STEP2
    meta = read_json(folder / "prepared.json")
    cleaning = read_json(folder / "cleaning.json") if (folder / "cleaning.json").exists() else {}
    return Prepared(train=pd.read_parquet(folder / "train.parquet"), test=pd.read_parquet(folder / "test.parquet"),
                    cleaning=cleaning, **meta)
