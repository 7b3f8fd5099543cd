"""Power laws ``y = a * n**b`` fitted in log-log space: step 3's fit-time and memory curves and
step 1's learning curve (gap to the best score against labelled rows) share this one fit.

Costs get ``y = c + a * n**b`` (``fit_cost_law``): a fixed part (building the pipeline,
starting threads) that dominates small samples, plus the part that grows with the rows.
``CostModel`` holds one family's measured fit and scoring costs; step 3 writes it and
step 4 reads it back to predict its own duration (``helpers.core.workload``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import optimize, stats

from helpers.core.errors import PlaybookError


@dataclass(frozen=True)
class PowerLaw:
    """``y = c + a * n**b`` fitted by least squares in log space (``c = 0``: a pure power law)."""

    a: float
    b: float
    r2: float | None = None
    n_points: int = 0
    assumed: bool = False  # True when too few points: the exponent was assumed, not fitted
    c: float = 0.0  # fixed part, paid whatever the rows (``fit_cost_law``)

    def predict(self, n: float | np.ndarray) -> float | np.ndarray:
        return self.c + self.a * np.power(n, self.b)

    def solve(self, value: float) -> float:
        """The ``n`` at which the law reaches ``value`` (inf for a flat law, ``b == 0``; 0 below the fixed part)."""
        if value <= self.c:
            return 0.0
        if self.b == 0:
            return math.inf
        return float(((value - self.c) / self.a) ** (1.0 / self.b))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _clean(n: Sequence[float], y: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Finite points with ``n > 0``; values clipped to a tiny positive number (a timer can report 0)."""
    n_arr = np.asarray(n, dtype=float)
    y_arr = np.clip(np.asarray(y, dtype=float), 1e-9, None)
    keep = np.isfinite(n_arr) & np.isfinite(y_arr) & (n_arr > 0)
    return n_arr[keep], y_arr[keep]


def fit_power_law(n: Sequence[float], y: Sequence[float], *, assumed_exponent: float = 1.0,
                  min_exponent: float = 0.0) -> PowerLaw:
    """Fit ``y = a * n**b`` (scipy.stats.linregress on log n, log y).

    With points at one size only, the exponent cannot be fitted: it is assumed
    (``assumed_exponent``, linear by default) and flagged. A fitted exponent below
    ``min_exponent`` (for costs, more rows costing less is timing noise) is raised to it
    and flagged too; pass ``-math.inf`` for a law that may fall. Non-positive values are
    clipped to a tiny positive number (a timer can report 0 for a very short fit).
    """
    n_arr, y_arr = _clean(n, y)
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


def fit_cost_law(n: Sequence[float], y: Sequence[float], *, min_exponent: float = 1.0,
                 max_exponent: float = 3.0) -> PowerLaw:
    """Fit ``y = c + a * n**b`` (fixed part ``c >= 0``) by least squares on log y (scipy.optimize).

    Small samples measure mostly the fixed part; a pure power law fitted to them has a
    too-small exponent and projects too little. The exponent is kept within
    ``[min_exponent, max_exponent]``: a fit reads every row at least once, so its growing
    part is at least linear (``min_exponent=1``; pass 0 for a per-row cost that may stay
    flat). With fewer than three sizes the fixed part cannot be told apart: a pure power law
    (``fit_power_law``) is fitted instead, and flagged ``assumed`` when only one size was measured.
    """
    n_arr, y_arr = _clean(n, y)
    if len(np.unique(n_arr)) < 3:
        law = fit_power_law(n_arr, y_arr, min_exponent=min_exponent)
        if law.b > max_exponent:
            a = float(np.exp(np.mean(np.log(y_arr) - max_exponent * np.log(n_arr))))
            law = PowerLaw(a, max_exponent, law.r2, law.n_points, law.assumed)
        return law
    log_n, log_y = np.log(n_arr), np.log(y_arr)
    top = float(np.max(n_arr))

    def residuals(p: np.ndarray) -> np.ndarray:
        log_c, log_a, b = p
        return np.logaddexp(log_c, log_a + b * log_n) - log_y

    def jacobian(p: np.ndarray) -> np.ndarray:
        # exact derivatives: the default finite differences cost 4 residual calls per step and
        # made these fits a third of step 3's analysis time (46 fits with their jackknife)
        log_c, log_a, b = p
        growing = log_a + b * log_n
        total = np.logaddexp(log_c, growing)
        share = np.exp(growing - total)  # the growing part's share of the cost at each size
        return np.column_stack([1.0 - share, share, share * log_n])

    floor = math.log(1e-12)
    best = None
    for b0 in np.linspace(min_exponent, max_exponent, 5):
        # start: the growing part is half of the largest measured value, the fixed part half the smallest
        start = np.array([max(math.log(float(np.min(y_arr)) / 2), floor + 1),
                          math.log(float(np.max(y_arr)) / 2) - b0 * math.log(top), b0])
        fit = optimize.least_squares(residuals, start, jac=jacobian, bounds=([floor, -np.inf, min_exponent],
                                                               [math.log(float(np.max(y_arr))), np.inf, max_exponent]))
        if best is None or fit.cost < best.cost:
            best = fit
    log_c, log_a, b = best.x
    total = float(np.sum((log_y - log_y.mean()) ** 2))
    r2 = 1.0 - 2 * float(best.cost) / total if total > 0 else None
    return PowerLaw(float(math.exp(log_a)), float(b), r2, len(n_arr), c=float(math.exp(log_c)))


def jackknife_laws(n: Sequence[float], y: Sequence[float], fit=fit_cost_law, **kwargs: Any) -> list[PowerLaw]:
    """The law refitted with each measured size left out (at least three sizes must remain).

    How far these laws spread at a row count is how sure a projection there is: a law that
    one point bends a lot (typically the largest) extrapolates poorly.
    """
    n_arr, y_arr = _clean(n, y)
    sizes = np.unique(n_arr)
    if len(sizes) < 4:
        return []
    return [fit(n_arr[n_arr != s], y_arr[n_arr != s], **kwargs) for s in sizes]


def jackknife_error(n: Sequence[float], y: Sequence[float], laws: Sequence[PowerLaw]) -> float:
    """How well the law predicts a size it did not see: the RMS log error of each jackknife law
    (``jackknife_laws``, one per size in increasing order) at the size it left out (0 without laws).

    Timing noise and bends of the curve both show in it; it widens a projection's range.
    """
    n_arr, y_arr = _clean(n, y)
    sizes = np.unique(n_arr)
    if not laws or len(laws) != len(sizes):
        return 0.0
    errors = [math.log(float(law.predict(s))) - float(np.mean(np.log(y_arr[n_arr == s])))
              for law, s in zip(laws, sizes, strict=True)]
    return float(np.sqrt(np.mean(np.square(errors))))


def _law(d: Mapping[str, Any] | None) -> PowerLaw | None:
    return PowerLaw(**d) if d else None


@dataclass(frozen=True)
class CostModel:
    """One model family's measured costs on this machine, as functions of the training rows ``n``.

    ``fit`` is the seconds to fit on ``n`` rows; scoring ``m`` rows with a model fitted on ``n``
    takes ``score_fixed_s + m * score_row(n)`` (k-nearest neighbours compare every scored
    row with the training rows, so their per-row cost grows with ``n``). The spreads are the
    jackknife laws (``jackknife_laws``) that bound a projection.
    """

    fit: PowerLaw
    score_row: PowerLaw | None = None
    score_fixed_s: float = 0.0
    fit_spread: tuple[PowerLaw, ...] = ()
    score_spread: tuple[PowerLaw, ...] = ()
    measured_rows: int = 0  # the largest training size measured
    fit_error: float = 0.0  # jackknife_error of the fit law (log scale)
    score_error: float = 0.0

    def fit_s(self, n: float) -> float:
        return float(self.fit.predict(n))

    def score_s(self, n: float, m: float) -> float:
        """Seconds to score ``m`` rows with a model fitted on ``n`` rows (0 when scoring was not measured)."""
        if self.score_row is None or m <= 0:
            return 0.0
        return self.score_fixed_s + m * float(self.score_row.predict(n))

    def fold_s(self, n: float, m: float) -> float:
        """One fit on ``n`` rows plus scoring ``m`` rows: a cross-validation fold."""
        return self.fit_s(n) + self.score_s(n, m)

    def fit_range(self, n: float) -> tuple[float, float]:
        """Lowest and highest fit seconds: the jackknife laws, and the law widened by its jackknife error."""
        nominal = self.fit_s(n)
        fits = [nominal * math.exp(-self.fit_error), nominal * math.exp(self.fit_error)]
        fits += [float(law.predict(n)) for law in self.fit_spread]
        return min(fits), max(fits)

    def score_range(self, n: float, m: float) -> tuple[float, float]:
        """Lowest and highest scoring seconds, as ``fit_range``."""
        if self.score_row is None or m <= 0:
            return 0.0, 0.0
        per_row = float(self.score_row.predict(n))
        rows = [per_row * math.exp(-self.score_error), per_row * math.exp(self.score_error)]
        rows += [float(law.predict(n)) for law in self.score_spread]
        return self.score_fixed_s + m * min(rows), self.score_fixed_s + m * max(rows)

    def fold_range(self, n: float, m: float) -> tuple[float, float]:
        """Lowest and highest ``fold_s`` (the projection's uncertainty)."""
        (fit_low, fit_high), (score_low, score_high) = self.fit_range(n), self.score_range(n, m)
        return fit_low + score_low, fit_high + score_high

    def to_dict(self) -> dict[str, Any]:
        return {"fit": self.fit.to_dict(), "score_row": self.score_row.to_dict() if self.score_row else None,
                "score_fixed_s": self.score_fixed_s, "fit_spread": [law.to_dict() for law in self.fit_spread],
                "score_spread": [law.to_dict() for law in self.score_spread], "measured_rows": self.measured_rows,
                "fit_error": self.fit_error, "score_error": self.score_error}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CostModel:
        return cls(PowerLaw(**d["fit"]), _law(d.get("score_row")), float(d.get("score_fixed_s", 0.0)),
                   tuple(PowerLaw(**x) for x in d.get("fit_spread", [])),
                   tuple(PowerLaw(**x) for x in d.get("score_spread", [])), int(d.get("measured_rows", 0)),
                   float(d.get("fit_error", 0.0)), float(d.get("score_error", 0.0)))
