"""Monitoring verdicts on a generated corpus with known answers: prints figures, asserts nothing.

    python benchmarks/bench_monitoring.py [--seeds 200] [--power-seeds 40] [--n-boot 200]

The corpus: 120,000 customers from the churn generator (``datasets.make_churn``, text fixed the
simple way), a logistic regression fitted once on 4,000 of them (the deployed model), and per
seed a fresh reference (4,000 rows: the training side the detector is fitted on) and held-out
set (1,000 rows) drawn from the others. Production batches are ``simulate_batches`` on the
held-out set (6 batches of 500 rows, the demo's sizes) and every check runs through the
helpers step 5 uses: ``DriftDetector``, ``track_batch``, ``control_false_alarms``,
``alerts_table`` (``batch_kpis`` inside ``track_batch``). The answers are known:

- false alarms: ``drift_magnitude`` 0, and the KPI targets are the model's values on the whole
  population (the worst case, a model exactly at its targets): every alert is false.
  Target: at most 5% of runs raise any alert.
- drift power: a covariate shift (the simulation's ramp) on one feature; its population PSI per
  batch is computed on the simulation's full weighted distribution, not the batch. Target: the
  feature alerts at most 2 batches after its population PSI first reaches 0.2.
- KPI power: new positives the model misses (labels of rows it scores negative flipped)
  lower recall by 0.15 from its population value in every batch. Target: the recall KPI
  fails within 3 batches.
- judged rows: how often a KPI exactly at its target is failed, by the rows it averages over
  (why batches with fewer than ``kpis.MIN_JUDGE_COUNT`` are "too few rows").
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from helpers.core import datasets, kpis
from helpers.steps.operations import monitoring as mon

NUMERIC = ["tenure_months", "monthly_charges", "total_charges", "support_calls"]
CATEGORICAL = ["has_partner", "contract", "internet_service", "payment_method", "region"]
FEATURES = NUMERIC + CATEGORICAL
N_BATCHES, RECALL_DROP = 6, 0.15


def population(n_rows: int = 120_000, seed: int = 11) -> pd.DataFrame:
    """The churn generator's table with numbers parsed and spellings unified (its other faults stay)."""
    raw = datasets.make_churn(n_rows=n_rows, seed=seed)
    frame = pd.DataFrame({c: pd.to_numeric(raw[c], errors="coerce") for c in NUMERIC})
    for c in CATEGORICAL:
        text = raw[c].astype(str).str.strip().str.lower().replace({"y": "yes", "n": "no",
                                                                   "month to month": "month-to-month"})
        frame[c] = text.astype(object).where(raw[c].notna())
    frame["churn"] = raw["churn"].to_numpy()
    return frame


class Corpus:
    """The population, the deployed model and its population KPIs (the known answers)."""

    def __init__(self) -> None:
        frame = population()
        rng = np.random.default_rng(0)
        order = rng.permutation(len(frame))
        train, self.pool = frame.iloc[order[:4000]], frame.iloc[order[4000:]].reset_index(drop=True)
        encode = ColumnTransformer([
            ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), NUMERIC),
            ("cat", make_pipeline(SimpleImputer(strategy="constant", fill_value="<missing>"),
                                  OneHotEncoder(handle_unknown="ignore")), CATEGORICAL)])
        self.model = make_pipeline(encode, LogisticRegression(max_iter=1000)).fit(train[FEATURES],
                                                                                  train["churn"] == "yes")
        # the decision threshold as step 4 picks it: the highest whose training recall reaches 0.7
        p_train = self.model.predict_proba(train[FEATURES])[:, 1]
        self.threshold = float(np.quantile(p_train[train["churn"] == "yes"], 0.3))
        labels, proba = self.predict(self.pool)
        y = self.pool["churn"].to_numpy(dtype=object)
        base = kpis.KpiContract("classification", {"recall": 0.5, "precision": 0.5, "roc_auc": 0.5}, "yes",
                                classes=["no", "yes"])
        self.truth = kpis.score_all(base, y, labels, proba)
        self.contract = kpis.KpiContract("classification", dict(self.truth), "yes", classes=["no", "yes"])

    def predict(self, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        proba = self.model.predict_proba(X[FEATURES])[:, 1]
        return np.where(proba >= self.threshold, "yes", "no").astype(object), proba

    def draw(self, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
        """A fresh reference (4,000 rows) and held-out set (1,000 rows) of the population."""
        idx = np.random.default_rng(1000 + seed).choice(len(self.pool), 5000, replace=False)
        return self.pool.iloc[idx[:4000]], self.pool.iloc[idx[4000:]].reset_index(drop=True)


def tracked(corpus: Corpus, batches, detector, reference_pred, *, seed: int, n_boot: int, labelled: bool = True):
    """``track_batch`` on every batch, then the run-level control: what step 5's ``track_all`` does."""
    level = kpis.simultaneous_level(len(corpus.contract.kpis) * len(batches))
    predictions = mon.prediction_detector(reference_pred, alpha=detector.alpha, seed=seed)
    results = [mon.track_batch(b, features=FEATURES, predictor=corpus.predict, detector=detector,
                               contract=corpus.contract, target="churn" if labelled else None,
                               reference_pred=reference_pred, n_boot=n_boot, seed=seed, level=level,
                               predictions=predictions)
               for b in batches]
    return mon.control_false_alarms(results, alpha=detector.alpha)


def false_alarms(corpus: Corpus, seeds: int, n_boot: int) -> None:
    z95 = stats.norm.ppf(0.975)
    rows = []
    for s in range(seeds):
        reference, held = corpus.draw(s)
        detector = mon.DriftDetector(NUMERIC, CATEGORICAL, seed=s).fit(reference)
        batches, _ = mon.simulate_batches(held, target="churn", problem_type="classification", n_batches=N_BATCHES,
                                          magnitude=0.0, feature="tenure_months", seed=s, positive_label="yes")
        results = tracked(corpus, batches, detector, corpus.predict(held)[1], seed=s, n_boot=n_boot)
        kpi, drift = mon.timeline(results)
        alerts = mon.alerts_table(kpi, drift)
        z = stats.norm.ppf(1 - (1 - kpi["level"]) / 2)
        high95 = kpi["achieved"] + (kpi["ci_high"] - kpi["achieved"]) * z95 / z  # the same SE at 95%
        rows.append({"any alert": len(alerts) > 0, "drift alert": (alerts["kind"] != "KPI breach").any(),
                     "KPI failure": (alerts["kind"] == "KPI breach").any(),
                     "KPI watch": (kpi["verdict"] == "watch").any(),
                     "old drift rule": ((drift["p_value"] < 0.01) | (drift["psi"] >= 0.25)).any(),
                     "old KPI rule": (kpi["achieved"] < kpi["target"]).any(),
                     "95% intervals, no control": (high95 < kpi["target"]).any()})
    table = pd.DataFrame(rows).mean()
    print(f"\nFalse alarms: {seeds} drift-free runs of {N_BATCHES} batches x 500 rows, KPI targets = the model's "
          f"population values ({', '.join(f'{k} {v:.3f}' for k, v in corpus.truth.items())})")
    print(f"  share of runs with any alert (drift, prediction drift or KPI failure): {table['any alert']:.1%} "
          f"(target <= 5%)")
    print(f"    with a drift alert {table['drift alert']:.1%} (design <= 1%), with a KPI failure "
          f"{table['KPI failure']:.1%} (design <= 2.5%); with a KPI on watch (shown, not counted) {table['KPI watch']:.1%}")
    print(f"  the rules before: each drift test at p < 0.01 or PSI >= 0.25 {table['old drift rule']:.1%}, "
          f"a KPI point below target {table['old KPI rule']:.1%}, "
          f"95% KPI intervals without control {table['95% intervals, no control']:.1%}")


def drift_power(corpus: Corpus, seeds: int, n_boot: int) -> None:
    print(f"\nDrift power: covariate shift (the simulation's ramp), {seeds} seeds per row; delay = batches from the "
          "first whose population PSI >= 0.2 to the feature's first alert (1 = that batch; target <= 2)")
    print(f"  {'feature':<16} {'magnitude':>9} {'PSI>=0.2 at batch':>18} {'median delay':>13} {'worst':>6} "
          f"{'within 2':>9}")
    for feature in ("tenure_months", "monthly_charges"):
        for magnitude in (0.5, 1.0, 2.0):
            delays, first = [], []
            for s in range(seeds):
                reference, held = corpus.draw(s)
                detector = mon.DriftDetector(NUMERIC, CATEGORICAL, seed=s).fit(reference)
                batches, schedule = mon.simulate_batches(held, target="churn", problem_type="classification",
                                                         n_batches=N_BATCHES, magnitude=magnitude, feature=feature,
                                                         seed=s, positive_label="yes")
                weights = mon.simulation_weights(held, schedule, target="churn", problem_type="classification",
                                                 feature=feature, positive_label="yes")
                edges = detector.edges_[feature]
                base = mon.numeric_shares(held[feature], edges)
                psi = [mon.psi_from_shares(base, mon.numeric_shares(held[feature], edges, w)) for w in weights]
                reached = next((b for b, v in enumerate(psi, start=1) if v >= 0.2), None)
                if reached is None:
                    continue
                results = tracked(corpus, batches, detector, corpus.predict(held)[1], seed=s, n_boot=n_boot,
                                  labelled=False)
                alerted = [b for b, r in enumerate(results, start=1)
                           if r["drift"].set_index("feature").loc[feature, "alert"]]
                first.append(reached)
                delays.append(max(alerted[0] - reached + 1, 1) if alerted else np.inf)
            if not delays:
                print(f"  {feature:<16} {magnitude:>9g}   population PSI never reaches 0.2 in {N_BATCHES} batches")
                continue
            d = np.array(delays)
            print(f"  {feature:<16} {magnitude:>9g} {np.median(first):>18g} {np.median(d):>13g} {d.max():>6g} "
                  f"{(d <= 2).mean():>9.0%}")


def kpi_power(corpus: Corpus, seeds: int, n_boot: int) -> None:
    r0 = corpus.truth["recall"]
    level = kpis.simultaneous_level(len(corpus.contract.kpis) * N_BATCHES)
    delays, any_kpi, achieved = [], [], []
    for s in range(seeds):
        _, held = corpus.draw(s)
        batches, _ = mon.simulate_batches(held, target="churn", problem_type="classification", n_batches=N_BATCHES,
                                          magnitude=0.0, feature=None, seed=s, positive_label="yes")
        rng = np.random.default_rng(s)
        first, first_any = np.inf, np.inf
        for b, batch in enumerate(batches, start=1):
            labels, proba = corpus.predict(batch)
            y = batch["churn"].to_numpy(dtype=object).copy()
            # new positives the model misses: recall TP / (P + k) falls to r0 - 0.15 on average
            k = int(round((y == "yes").sum() * (r0 / (r0 - RECALL_DROP) - 1)))
            y[rng.choice(np.flatnonzero((y == "no") & (labels == "no")), size=k, replace=False)] = "yes"
            table = kpis.batch_kpis(corpus.contract, y, labels, proba, n_boot=n_boot, seed=s, level=level)
            achieved.append(table.set_index("metric").loc["recall", "achieved"])
            if table.set_index("metric").loc["recall", "verdict"] == "fail":
                first = min(first, b)
            if (table["verdict"] == "fail").any():
                first_any = min(first_any, b)
        delays.append(first)
        any_kpi.append(first_any)
    d = np.array(delays)
    print(f"\nKPI power: recall {r0:.3f} -> {np.mean(achieved):.3f} (a drop of {RECALL_DROP}) from batch 1, "
          f"{seeds} seeds, intervals at {level:.2%}")
    print(f"  batches until the recall KPI fails: median {np.median(d):g}, 95th percentile "
          f"{np.quantile(d, 0.95):g}, within 3 batches {(d <= 3).mean():.0%} (target <= 3); "
          f"any KPI fails within 3 batches {(np.array(any_kpi) <= 3).mean():.0%}")


def judged_rows(n_boot: int, repeats: int) -> None:
    level = kpis.simultaneous_level(3 * N_BATCHES)
    contract = kpis.KpiContract("classification", {"recall": 0.5}, "yes", classes=["no", "yes"])
    print(f"\nJudged rows: recall exactly at its target 0.5, {repeats} batches per row, intervals at {level:.2%} "
          f"(nominal false-fail rate {(1 - level) / 2:.2%})")
    for n in (10, 20, 30, 40, 60, 150):
        rng = np.random.default_rng(n)
        y = np.array(["yes"] * n + ["no"] * n, dtype=object)
        fails = 0
        for r in range(repeats):
            pred = np.where(np.arange(2 * n) < n, np.where(rng.random(2 * n) < 0.5, "yes", "no"), "no").astype(object)
            table = kpis.batch_kpis(contract, y, pred, None, n_boot=n_boot, seed=r, level=level, min_count=1)
            fails += table["verdict"].iloc[0] == "fail"
        note = "  -> 'too few rows'" if n < kpis.MIN_JUDGE_COUNT else ""
        print(f"  {n:>4} positives: false-fail rate {fails / repeats:.2%}{note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=200, help="drift-free runs (false alarms)")
    parser.add_argument("--power-seeds", type=int, default=30, help="runs per power scenario")
    parser.add_argument("--n-boot", type=int, default=200, help="bootstrap resamples per batch KPI")
    parser.add_argument("--repeats", type=int, default=1000, help="batches per row of the judged-rows table")
    args = parser.parse_args()
    started = time.perf_counter()
    corpus = Corpus()
    print(f"corpus: {len(corpus.pool):,} population rows, threshold {corpus.threshold:.3f} "
          f"({time.perf_counter() - started:.1f} s)")
    for part in (lambda: false_alarms(corpus, args.seeds, args.n_boot),
                 lambda: drift_power(corpus, args.power_seeds, args.n_boot),
                 lambda: kpi_power(corpus, 2 * args.power_seeds, args.n_boot),
                 lambda: judged_rows(args.n_boot, args.repeats)):
        t = time.perf_counter()
        part()
        print(f"  ({time.perf_counter() - t:.0f} s)")


if __name__ == "__main__":
    main()
