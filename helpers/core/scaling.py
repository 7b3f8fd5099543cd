"""Power laws ``y = a * n**b`` fitted in log-log space: step 3's fit-time and memory curves and
step 1's learning curve (gap to the best score against labelled rows) share this one fit."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats

from helpers.core.errors import PlaybookError


@dataclass(frozen=True)
class PowerLaw:
    """``y = a * n**b`` fitted by least squares in log-log space."""

    a: float
    b: float
    r2: float | None = None
    n_points: int = 0
    assumed: bool = False  # True when too few points: the exponent was assumed, not fitted

    def predict(self, n: float | np.ndarray) -> float | np.ndarray:
        return self.a * np.power(n, self.b)

    def solve(self, value: float) -> float:
        """The ``n`` at which the law reaches ``value`` (inf for a flat law, ``b == 0``)."""
        if self.b == 0:
            return math.inf
        return float((value / self.a) ** (1.0 / self.b))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def fit_power_law(n: Sequence[float], y: Sequence[float], *, assumed_exponent: float = 1.0,
                  min_exponent: float = 0.0) -> PowerLaw:
    """Fit ``y = a * n**b`` (scipy.stats.linregress on log n, log y).

    With points at one size only, the exponent cannot be fitted: it is assumed
    (``assumed_exponent``, linear by default) and flagged. A fitted exponent below
    ``min_exponent`` (for costs, more rows costing less is timing noise) is raised to it
    and flagged too; pass ``-math.inf`` for a law that may fall. Non-positive values are
    clipped to a tiny positive number (a timer can report 0 for a very short fit).
    """
    n_arr = np.asarray(n, dtype=float)
    y_arr = np.clip(np.asarray(y, dtype=float), 1e-9, None)
    keep = np.isfinite(n_arr) & np.isfinite(y_arr) & (n_arr > 0)
    n_arr, y_arr = n_arr[keep], y_arr[keep]
    if len(n_arr) == 0:
        raise PlaybookError("No measured points to fit a power law to.",
                            "raise scaling_budget_s so that at least one fit per family completes.")
    if len(np.unique(n_arr)) < 2:
        b = assumed_exponent
        a = float(np.exp(np.mean(np.log(y_arr) - b * np.log(n_arr))))
        return PowerLaw(a, b, None, len(n_arr), assumed=True)
    fit = stats.linregress(np.log(n_arr), np.log(y_arr))
    if fit.slope < min_exponent:
        b = min_exponent
        a = float(np.exp(np.mean(np.log(y_arr) - b * np.log(n_arr))))
        return PowerLaw(a, b, float(fit.rvalue**2), len(n_arr), assumed=True)
    return PowerLaw(float(np.exp(fit.intercept)), float(fit.slope), float(fit.rvalue**2), len(n_arr))
