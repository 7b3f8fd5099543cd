"""Generated tables with known answers for the leakage check (``benchmarks/bench_leakage.py``, tests).

Each table has honest columns that cause the target through a latent score (strong ones whose
single-column score is drawn in a set range, weak ones, noise, an honest category), two
identifier columns and, in leak tables, one column recorded *after* the outcome: it reflects the
outcome on a share ``agreement`` of the rows and is wrong on the others. Nothing here is tuned to
the detector: the ranges are the ones the detector must tell apart.

- Honest strong columns: single-column ROC AUC 0.70 to 0.85 (multi-class: one-vs-rest macro);
  for regression the same share of explained variance, R² 0.12 to 0.35 (a normal feature with
  ROC AUC a separates two balanced classes by d = sqrt(2) * Phi^-1(a), and explains d² / (d² + 4)
  of the class variance).
- Leak encodings: ``number`` (a value per outcome: minutes, an amount), ``category`` (a status
  code per outcome; regression: the outcome's decile band), ``missing`` (binary: recorded only
  for the positive class; multi-class: empty for one class, a value per class for the others;
  regression: an outcome that is zero on 45% of the rows and about 50 otherwise, the column empty
  when it is zero: a binary pattern can only leak a target that is mostly a yes/no).
- "Wrong" rows: classification shows another class; regression shows another row's outcome
  (``missing``: the other state).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

KINDS = ("binary", "multiclass", "regression")
ENCODINGS = ("number", "category", "missing")
TARGET = "target"
STRONG_AUC = (0.70, 0.85)
STRONG_R2 = (0.12, 0.35)
WEAK_RHO = (0.08, 0.2)  # weak columns and the honest category: small shares of the latent score
ZERO_SHARE = 0.45  # regression ``missing`` tables: share of rows whose outcome is zero (about 50 otherwise)


@dataclass(frozen=True)
class Case:
    """One generated table and its known answers."""

    name: str
    kind: str  # binary | multiclass | regression
    frame: pd.DataFrame  # features and the target column ``TARGET``
    leak: str | None  # the leaking column (None: an honest table)
    agreement: float | None  # share of rows on which the leak reflects the outcome
    encoding: str | None  # number | category | missing
    strong: tuple[str, ...]  # honest strong columns
    identifiers: tuple[str, ...]

    @property
    def problem_type(self) -> str:
        return "regression" if self.kind == "regression" else "classification"

    @property
    def X(self) -> pd.DataFrame:
        return self.frame.drop(columns=TARGET)

    @property
    def y(self) -> pd.Series:
        return self.frame[TARGET]


def _outcome(kind: str, z: np.ndarray, rng: np.random.Generator, zero_inflated: bool = False) -> np.ndarray:
    """The target from the latent score: a threshold (binary), quantile bands (multi-class), a scale."""
    if kind == "binary":
        return np.where(z > np.quantile(z, 1 - rng.uniform(0.25, 0.5)), "yes", "no").astype(object)
    if kind == "multiclass":
        return np.array(["low", "mid", "high"], dtype=object)[np.digitize(z, np.quantile(z, [1 / 3, 2 / 3]))]
    if zero_inflated:  # e.g. a refund: none on ZERO_SHARE of the rows, about the plan's price otherwise
        return np.where(z > np.quantile(z, ZERO_SHARE), 50 + 4 * (z - np.quantile(z, ZERO_SHARE)), 0.0)
    return 40 + 12 * z


@functools.cache
def _score_curve(kind: str, zero_inflated: bool) -> tuple[np.ndarray, np.ndarray]:
    """Population single-column score of an honest feature against its correlation with the latent score."""
    rng = np.random.default_rng(0)
    rhos = np.linspace(0.0, 0.95, 20)
    n = 20_000  # population scores to about +-0.005: finer than the ranges drawn from
    z_rest, x = rng.normal(size=n), rng.normal(size=n)
    scores = []
    for rho in rhos:
        z = rho * x + np.sqrt(1 - rho**2) * z_rest
        y = _outcome(kind, z, np.random.default_rng(1), zero_inflated)
        if kind == "regression":
            scores.append(np.corrcoef(x, y)[0, 1] ** 2)
        elif kind == "binary":
            scores.append(roc_auc_score(y == "yes", x))
        else:
            scores.append(np.mean([roc_auc_score(y == c, x if c != "low" else -x) if c != "mid"
                                   else roc_auc_score(y == c, -np.abs(x)) for c in ("low", "mid", "high")]))
    return rhos, np.maximum.accumulate(np.asarray(scores))


def rho_for(kind: str, score: float, zero_inflated: bool = False) -> float:
    """Correlation with the latent score that gives an honest column this population single score."""
    rhos, scores = _score_curve(kind, zero_inflated)
    return float(np.interp(score, scores, rhos))


def _wrong(kind: str, y: np.ndarray, agreement: float, rng: np.random.Generator) -> np.ndarray:
    """The outcome as the leak records it: right on ``agreement`` of the rows, wrong on the others."""
    n = len(y)
    wrong = rng.permutation(n)[: int(round((1 - agreement) * n))]
    seen = y.copy()
    if kind == "regression":
        seen[wrong] = y[rng.permutation(wrong)]  # another row's outcome
        return seen
    classes = np.unique(y)
    for i in wrong:
        seen[i] = rng.choice(classes[classes != y[i]])
    return seen


def _leak_column(kind: str, encoding: str, seen: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if kind == "regression":
        if encoding == "number":
            return np.round(0.8 * seen + 3 + rng.normal(0, 0.2, len(seen)), 2)
        if encoding == "category":
            bands = np.digitize(seen, np.quantile(y, np.linspace(0.1, 0.9, 9)))
            return np.array([f"band_{b}" for b in bands], dtype=object)
        return np.where(seen > 0, rng.normal(30, 5, len(seen)).round(1), np.nan)  # empty when nothing happened
    classes = np.unique(y)
    code = {c: i for i, c in enumerate(rng.permutation(classes))}
    index = np.array([code[c] for c in seen])
    if encoding == "number":
        return np.round(index * 12.0 + 4 + rng.gamma(2.0, 1.5, len(seen)), 1)
    if encoding == "category":
        labels = np.array([f"status_{chr(65 + i)}" for i in range(len(classes))], dtype=object)
        return labels[index]
    # missing: empty for one class (binary: the positive class); a value per class for the others
    empty_class = "yes" if kind == "binary" else classes[rng.integers(len(classes))]
    values = rng.normal(20, 6, len(seen)) if kind == "binary" else index * 12.0 + rng.gamma(2.0, 1.5, len(seen))
    return np.where(seen == empty_class, np.nan, np.round(values, 1))


def make_case(kind: str, *, encoding: str | None = None, agreement: float | None = None, n_rows: int = 2000,
              seed: int = 0, leak_name: str = "status_flag", strong: tuple[float, ...] | None = None) -> Case:
    """One table: honest columns (``strong`` single scores drawn in the honest range unless given),
    identifiers, and a leak when ``encoding`` is given."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}")
    rng = np.random.default_rng(seed)
    zero_inflated = kind == "regression" and encoding == "missing"
    lo, hi = STRONG_R2 if kind == "regression" else STRONG_AUC
    strong = strong if strong is not None else tuple(rng.uniform(lo, hi, rng.integers(1, 3)))
    weak = tuple(rng.uniform(*WEAK_RHO, 3))
    cat_rho = WEAK_RHO[1]
    rhos = [rho_for(kind, s, zero_inflated) for s in strong]
    while len(rhos) > 1 and sum(r**2 for r in rhos + list(weak)) + cat_rho**2 > 0.9:
        rhos, strong = rhos[:-1], strong[:-1]  # two strong multi-class columns can explain it all
    rhos += list(weak)
    rest = 1 - sum(r**2 for r in rhos) - cat_rho**2
    if rest <= 0.05:
        raise ValueError("the honest columns explain the latent score completely: choose weaker ones")
    columns = {f"strong_{i + 1}": rng.normal(size=n_rows) for i in range(len(strong))}
    columns |= {f"weak_{i + 1}": rng.normal(size=n_rows) for i in range(len(weak))}
    segment_latent = rng.normal(size=n_rows)
    z = sum(r * x for r, x in zip(rhos, columns.values(), strict=True)) + cat_rho * segment_latent
    z = z + np.sqrt(rest) * rng.normal(size=n_rows)
    y = _outcome(kind, z, rng, zero_inflated)
    frame = pd.DataFrame({k: np.round(v * 10 + 50, 2) for k, v in columns.items()})
    frame["segment"] = np.array(["seg_a", "seg_b", "seg_c", "seg_d"], dtype=object)[
        np.digitize(segment_latent, [-0.7, 0, 0.7])]
    frame["noise"] = rng.normal(size=n_rows).round(3)
    frame["region"] = rng.choice(np.array(["north", "south", "east", "west"], dtype=object), n_rows)
    frame["record_id"] = [f"R{100000 + i}" for i in rng.permutation(n_rows)]
    frame["row_number"] = np.arange(1, n_rows + 1)
    if encoding is not None:
        if encoding not in ENCODINGS or agreement is None:
            raise ValueError(f"a leak needs an encoding in {ENCODINGS} and an agreement")
        frame[leak_name] = _leak_column(kind, encoding, _wrong(kind, y, agreement, rng), y, rng)
    frame[TARGET] = y
    frame = frame.sample(frac=1.0, random_state=seed, axis=1)  # column order carries no hint
    name = f"{kind}-{encoding or 'honest'}-{agreement or 0:.2f}-s{seed}"
    return Case(name, kind, frame, leak_name if encoding else None, agreement, encoding,
                tuple(f"strong_{i + 1}" for i in range(len(strong))), ("record_id", "row_number"))


LEAK_NAMES = ("status_flag", "account_code", "days_open", "cancel_reason", "refund_amount", "outcome_note")
HONEST_NAMES_LIKE_LEAKS = {"strong_1": "test_result_score"}  # a post-outcome word on an honest column


def corpus(seed: int = 0, n_rows: int = 2000, agreements: tuple[float, ...] = (0.80, 0.85, 0.90, 0.95, 0.99),
           honest_per_kind: int = 4) -> list[Case]:
    """Leak tables (every kind x encoding x agreement) and honest tables, each with its own seed.

    Leak names alternate between neutral ones and post-outcome words, so detection is measured
    both without and with a name hint; some honest tables give a strong honest column a
    post-outcome word ("result"), so a name alone is seen not to decide.
    """
    cases, i = [], 0
    for kind in KINDS:
        for encoding in ENCODINGS:
            for agreement in agreements:
                cases.append(make_case(kind, encoding=encoding, agreement=agreement, n_rows=n_rows, seed=seed + i,
                                       leak_name=LEAK_NAMES[i % len(LEAK_NAMES)]))
                i += 1
        for j in range(honest_per_kind):
            case = make_case(kind, n_rows=n_rows, seed=seed + i)
            i += 1
            if j % 2:
                case = rename(case, HONEST_NAMES_LIKE_LEAKS)
            cases.append(case)
    return cases


def rename(case: Case, names: dict[str, str]) -> Case:
    """The same table with columns renamed (its answers follow)."""
    return Case(case.name + "-renamed", case.kind, case.frame.rename(columns=names),
                names.get(case.leak, case.leak) if case.leak else None, case.agreement, case.encoding,
                tuple(names.get(c, c) for c in case.strong), case.identifiers)
