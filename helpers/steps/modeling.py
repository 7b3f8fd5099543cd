"""Step 4: develop, train and optimise the model, then judge it once against the KPI contract.

Every candidate is a scikit-learn ``Pipeline`` with step 2's preprocessing inside, so
cross-validation fits the preprocessing on each fold's training part only (no leakage).
All candidates share one set of folds (step 1's fold scheme, with ``cv_folds`` folds) and
are scored in the units of every KPI of step 1's contract. The test side is opened once,
in ``final_evaluation``.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import confusion_matrix, precision_recall_curve
from sklearn.model_selection import (
    ParameterGrid,
    ParameterSampler,
    PredefinedSplit,
    cross_val_predict,
    cross_val_score,
    cross_validate,
    learning_curve,
)
from sklearn.pipeline import Pipeline
from sklearn.utils.parallel import Parallel, delayed
from threadpoolctl import threadpool_limits

from helpers.core import artifacts, exercises, modelio, sampling, sections, tables
from helpers.core import compute as compute_mod
from helpers.core import families as fam
from helpers.core import kpis as kpi_mod
from helpers.core.artifacts import Run, to_jsonable
from helpers.core.baselines import heuristic_pipeline, make_folds, trivial_split
from helpers.core.errors import PlaybookError
from helpers.core.exercises import Feedback
from helpers.core.features import with_model, with_threshold
from helpers.core.hashing import frame_sha256
from helpers.core.inspection import KpiScorer, MetricScorer, permutation_importance_table
from helpers.core.paths import STEP_NOTEBOOKS
from helpers.core.plan import DEFAULT_SELECTION_ROWS, IMPORTANCE_ROWS, Plan, rungs
from helpers.core.prepared import Prepared, load_prepared
from helpers.core.scaling import CostModel
from helpers.core.sections import Fact, Section
from helpers.core.workload import LARGE_SAMPLE_ROWS, folds_for, predict_modeling, surviving

STEP = STEP_NOTEBOOKS[3]
STEP1 = STEP_NOTEBOOKS[0]
STEP3 = STEP_NOTEBOOKS[2]
EXPLORER_ROWS = 400  # the explorer grid is precomputed on a subsample of this many training rows
CLUSTER_SAMPLE = 1500  # rows used to fit and score clusterings per fold (silhouette is quadratic)


# --- inputs --------------------------------------------------------------------------------------


@dataclass
class Inputs:
    """What step 4 works from: step 2's data, step 1's contract and heuristic, and the settings."""

    prepared: Prepared
    contract: kpi_mod.KpiContract
    heuristic: dict[str, Any] | None = None
    seed: int = 42
    folds: int = 5
    n_jobs: int = 1
    selection_rows: int | None = None  # the selection sample's cap (None: every training row)
    refit_rows: Mapping[str, int] = field(default_factory=dict)  # family -> rows of the final refit (absent: all)
    sample_gain: float = 0.002  # grow the selection sample while 4x more rows add at least this
    compute: str = compute_mod.LOCAL  # where the model-selection fits run (core.compute)

    @property
    def problem_type(self) -> str:
        return self.contract.problem_type

    @property
    def estimator_jobs(self) -> int:
        """Threads of one estimator: ``n_jobs`` here; one on a cluster, whose workers are one core each."""
        return 1 if compute_mod.is_cluster(self.compute) else self.n_jobs

    @property
    def X(self) -> pd.DataFrame:
        return self.prepared.X("train").reset_index(drop=True)

    @property
    def y(self) -> pd.Series | None:
        y = self.prepared.y("train")
        return None if y is None else y.reset_index(drop=True)

    @property
    def selection_metric(self) -> str:
        return selection_metric(self.contract)

    @property
    def metrics(self) -> list[str]:
        """The KPIs, plus the selection metric when the contract does not list it."""
        return list(dict.fromkeys([*self.contract.kpis, self.selection_metric]))


def selection_metric(contract: kpi_mod.KpiContract) -> str:
    """The metric that ranks models: threshold-free for binary problems, silhouette for clustering, else the first KPI."""
    if contract.problem_type == "clustering":
        return "silhouette"
    if contract.is_binary:
        for metric in ("roc_auc", "average_precision"):
            if metric in contract.kpis:
                return metric
        return "average_precision"  # precision/recall KPIs are met later by the threshold
    return next(iter(contract.kpis))


def load_inputs(run: Run, params: Mapping[str, Any]) -> Inputs:
    """Step 2's hand-over, step 1's contract and step 3's plan (clear errors naming the step to run).

    Sizes and jobs: a parameter that is set wins, else step 3's plan, else the fixed
    defaults of ``core.plan`` (selection on at most ``DEFAULT_SELECTION_ROWS``, refit on every row, one job).
    """
    prepared = load_prepared(run, needed_by=STEP)
    contract = kpi_mod.load_contract(run, needed_by=STEP)
    if contract.problem_type != prepared.problem_type:
        raise PlaybookError(f"Step 1 framed a {contract.problem_type} problem but step 2 prepared {prepared.problem_type} data.",
                            "re-run steps 1 and 2 with the same parameters in this run folder.")
    summary = run.read_summary(STEP1, needed_by=STEP)
    check_enough_rows(prepared, params["cv_folds"])
    plan = run_plan(run)
    n_train = len(prepared.train)
    selection = params["selection_rows"] or (plan.parameters.get("selection_rows") if plan else None) \
        or min(n_train, DEFAULT_SELECTION_ROWS)
    n_jobs = params["n_jobs"] if params["n_jobs"] is not None else int((plan.parameters if plan else {}).get("n_jobs", 1))
    if compute_mod.is_cluster(params["compute"]):
        n_jobs = -1  # every thread of the cluster; each fit on one of them
    names = [f.name for f in fam.families_for(prepared.problem_type)]
    refit = ({n: params["refit_rows"] for n in names} if params["refit_rows"] else dict(plan.refit_rows) if plan else {})
    return Inputs(prepared, contract, summary.get("heuristic"), params["seed"], params["cv_folds"], n_jobs,
                  int(selection), {n: min(int(r), n_train) for n, r in refit.items()}, params["sample_gain"],
                  params["compute"])


def run_plan(run: Run) -> Plan | None:
    """Step 3's plan for this step (None when step 3 did not run or planned nothing)."""
    stack_summary = run.optional_summary(STEP3) or {}
    return Plan.from_dict(stack_summary["plan"]) if stack_summary.get("plan") else None


def check_enough_rows(prepared: Prepared, folds: int) -> None:
    """Refuse a training side too small for the requested folds."""
    y = prepared.y("train")
    smallest = int(y.value_counts().min()) if prepared.problem_type == "classification" else len(prepared.train)
    if smallest < folds:
        raise PlaybookError(f"cv_folds is {folds} but the training side has only {smallest} rows "
                            f"{'in its smallest class' if prepared.problem_type == 'classification' else ''}.",
                            f"lower cv_folds to at most {max(2, smallest)}, or use more data.")


def cv_folds(inputs: Inputs, n_rows: int | None = None) -> PredefinedSplit:
    """Step 1's fold scheme (stratified for classification), fixed once so every candidate shares it."""
    y = inputs.y
    n = len(inputs.X) if n_rows is None else n_rows
    labels = make_folds(None if y is None else y[:n], n, inputs.problem_type, inputs.seed, n_splits=inputs.folds)
    return PredefinedSplit(labels)


# --- scoring in KPI units ---------------------------------------------------------------------------


def positive_proba(estimator, X: pd.DataFrame, contract: kpi_mod.KpiContract) -> np.ndarray:
    """Class probabilities: the positive column (binary) or all columns in the contract's class order."""
    return kpi_mod.contract_proba(estimator.predict_proba(X), estimator.classes_, contract)


def better(metric: str, a: float, b: float) -> bool:
    """Is ``a`` a better value of ``metric`` than ``b``?"""
    if not np.isfinite(a):
        return False
    if not np.isfinite(b):
        return True
    return a > b if kpi_mod.METRICS[metric].direction == "higher" else a < b


def sort_by(frame: pd.DataFrame, column: str, metric: str) -> pd.DataFrame:
    ascending = kpi_mod.METRICS[metric].direction == "lower"
    return frame.sort_values(column, ascending=ascending, na_position="last", kind="stable").reset_index(drop=True)


# --- candidates -------------------------------------------------------------------------------------


def family_pipeline(inputs: Inputs, family: fam.Family) -> Pipeline:
    """Step 2's preprocessing (scaled only when the family needs it) followed by the family's estimator."""
    return inputs.prepared.pipeline(family, inputs.seed, inputs.estimator_jobs)


def baseline_pipelines(inputs: Inputs) -> dict[str, Any]:
    """The dummy baseline and step 1's one-rule heuristic, recomputed on the cleaned data."""
    dummy = DummyClassifier(strategy="prior") if inputs.problem_type == "classification" else DummyRegressor()
    out: dict[str, Any] = {"dummy": with_model(inputs.prepared.make_preprocessor(scaler="none"), dummy)}
    column = (inputs.heuristic or {}).get("column")
    if column in inputs.prepared.features:
        out["heuristic"] = heuristic_pipeline(inputs.X, column, inputs.problem_type, inputs.seed)
    return out


def candidate_pipelines(inputs: Inputs) -> dict[str, Any]:
    """Baselines first, then every registry family for this problem type."""
    out = baseline_pipelines(inputs)
    for family in fam.families_for(inputs.problem_type):
        out[family.name] = family_pipeline(inputs, family)
    return out


# --- leaderboard (supervised) --------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet(threads: int = 1, compute: str = compute_mod.LOCAL) -> Iterator[None]:
    """The fits inside run where ``compute`` says, native threads limited to ``threads``,
    convergence and ill-defined-metric chatter silenced.

    OpenMP/BLAS use every core by default; next to joblib workers (or other jobs on a
    shared machine) that oversubscribes the CPU and made HistGradientBoosting 10x slower here.
    """
    with warnings.catch_warnings(), threadpool_limits(max(1, threads) if threads > 0 else None), \
            compute_mod.fits_on(compute):
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.filterwarnings("ignore", message=".*[Ss]ingle label.*|.*[Nn]o positive.*|.*ill-defined.*")
        yield


def evaluate(inputs: Inputs, pipeline, cv=None, train: bool = True) -> dict[str, Any]:
    """Cross-validate one pipeline: mean and spread of every metric, train scores (optional) and fit time."""
    return evaluate_all(inputs, [pipeline], cv, train)[0]


def evaluate_all(inputs: Inputs, pipelines: Sequence[Any], cv=None, train: bool = True) -> list[dict[str, Any]]:
    """``evaluate`` for several pipelines at once: every (pipeline, fold) fit goes into ONE pool of jobs.

    One ``cross_validate`` per pipeline would leave a core idle at the end of each call whenever the
    folds do not divide among the jobs (3 folds on 2 cores: a quarter of the time). Each job is
    ``cross_validate`` on one fold, so the fits, scores and their order are those of the per-pipeline
    calls; only the idle time goes.
    """
    X, y = inputs.X, inputs.y
    folds = list((cv or cv_folds(inputs)).split(X, y))
    scoring = KpiScorer(inputs.contract, inputs.metrics)
    with _quiet(inputs.estimator_jobs, inputs.compute):
        # scikit-learn's Parallel: the fits in the workers see this process's scikit-learn configuration
        per_fold = Parallel(n_jobs=inputs.n_jobs)(
            delayed(cross_validate)(pipe, X, y, cv=[fold], scoring=scoring, return_train_score=train,
                                    error_score="raise")
            for pipe in pipelines for fold in folds)
    rows = []
    for at in range(0, len(per_fold), len(folds)):
        res = {k: np.concatenate([r[k] for r in per_fold[at:at + len(folds)]]) for k in per_fold[at]}
        row: dict[str, Any] = {}
        for m in inputs.metrics:
            row[f"{m}_mean"] = float(np.nanmean(res[f"test_{m}"]))
            row[f"{m}_std"] = float(np.nanstd(res[f"test_{m}"]))
            if train:
                row[f"{m}_train"] = float(np.nanmean(res[f"train_{m}"]))
        row["fit_time_s"] = float(np.mean(res["fit_time"]))
        rows.append(row)
    return rows


def is_bounded(metric: str) -> bool:
    """A metric with a finite range (scores, rates) is compared in its units; error metrics relatively."""
    return bool(np.isfinite(kpi_mod.METRICS[metric].high) and np.isfinite(kpi_mod.METRICS[metric].low))


def overfit_gap(metric: str, train: float, valid: float) -> float:
    """How much better the training score is than the validation score (positive = overfitting)."""
    return train - valid if kpi_mod.METRICS[metric].direction == "higher" else valid - train


def is_overfitting(metric: str, train: float, valid: float, spread: float) -> bool:
    """Gap above 0.05 (bounded metrics) or 10% of the validation score (error metrics), and above 2 spreads."""
    gap = overfit_gap(metric, train, valid)
    limit = 0.05 if is_bounded(metric) else 0.10 * max(abs(valid), 1e-12)
    return bool(gap > limit and gap > 2 * spread)


def leaderboard(inputs: Inputs, sweep: pd.DataFrame | None = None,
                families: Sequence[str] | None = None) -> pd.DataFrame:
    """Cross-validated scores of the baselines and every family (or only ``families``), best first
    (clustering: from the sweep)."""
    if inputs.problem_type == "clustering":
        return cluster_leaderboard(cluster_sweep(inputs) if sweep is None else sweep)
    cv = cv_folds(inputs)
    chosen = {name: pipe for name, pipe in candidate_pipelines(inputs).items()
              if name in ("dummy", "heuristic") or families is None or name in families}
    rows = []
    for name, scores in zip(chosen, evaluate_all(inputs, list(chosen.values()), cv), strict=True):
        kind = "baseline" if name in ("dummy", "heuristic") else "family"
        row = {"model": name, "kind": kind, **scores}
        m = inputs.selection_metric
        row["gap"] = overfit_gap(m, row[f"{m}_train"], row[f"{m}_mean"])
        row["overfitting"] = kind == "family" and is_overfitting(m, row[f"{m}_train"], row[f"{m}_mean"], row[f"{m}_std"])
        rows.append(row)
    board = sort_by(pd.DataFrame(rows), f"{inputs.selection_metric}_mean", inputs.selection_metric)
    board.insert(0, "rank", range(1, len(board) + 1))
    return board


@dataclass
class Selection:
    """The leaderboard on the sample it ended on, each rung it visited, and the sentence that says so."""

    inputs: Inputs  # the selection sample: tuning and the threshold work on it too
    board: pd.DataFrame
    rungs: pd.DataFrame  # rows, leader, score, gain
    text: str

    @property
    def rows(self) -> int:
        return len(self.inputs.prepared.train)


def score_gain(metric: str, before: float, after: float) -> float:
    """How much ``after`` improves on ``before``: in the metric's units when it is bounded, else relative."""
    gain = overfit_gap(metric, after, before)
    return float(gain if is_bounded(metric) else gain / max(abs(before), 1e-12))


def selection_samples(inputs: Inputs) -> list[Inputs]:
    """The rungs (``core.plan.rungs``) as nested, seeded samples: each smaller one is drawn from the next larger."""
    sizes = rungs(len(inputs.prepared.train), inputs.selection_rows)
    samples = [subsample(inputs, sizes[-1], folds=folds_for(sizes[-1], inputs.folds))]
    for rows in reversed(sizes[:-1]):
        samples.append(subsample(samples[-1], rows, folds=folds_for(rows, inputs.folds)))
    return samples[::-1]


def contenders(board: pd.DataFrame, metric: str, folds: int) -> list[str]:
    """The families a rung carries to the next: the better half (``workload.surviving``), and any other whose
    score the leader's cannot be told from (within two standard errors of their difference over folds)."""
    ranked = board[board["kind"] == "family"]
    keep = list(ranked["model"].iloc[:surviving(len(ranked))])
    leader = ranked.iloc[0]
    for _, row in ranked.iloc[len(keep):].iterrows():
        behind = abs(score_gain(metric, float(row[f"{metric}_mean"]), float(leader[f"{metric}_mean"])))
        noise = np.hypot(float(leader[f"{metric}_std"]), float(row[f"{metric}_std"])) / np.sqrt(folds)
        if behind <= 2 * abs(score_gain(metric, float(leader[f"{metric}_mean"]),
                                        float(leader[f"{metric}_mean"]) + noise)):
            keep.append(str(row["model"]))
    return keep


def select(inputs: Inputs, sweep: pd.DataFrame | None = None) -> Selection:
    """The leaderboard on a sample that grows 4x at a time while that still helps (supervised problems).

    Every family and baseline is cross-validated on the first rung; the next rung (4x the rows,
    up to ``selection_rows``) is visited only while the leader's score gained at least
    ``sample_gain`` from the last 4x, and only by the ``contenders`` (successive halving over
    families; the board lists the others last, with the rows they were scored on). Samples of
    ``LARGE_SAMPLE_ROWS`` rows or more use at most 3 folds (``workload.folds_for``). A decision
    on scores, not on clocks: the same seed and parameters give the same sample and champion on
    any machine.
    """
    n_train = len(inputs.prepared.train)
    if inputs.problem_type == "clustering":
        board = leaderboard(inputs, sweep)
        return Selection(inputs, board, pd.DataFrame(), f"Clustering sweep on {min(n_train, CLUSTER_SAMPLE):,} of "
                                                        f"{n_train:,} training rows (a fixed sample: silhouette is quadratic).")
    m = inputs.selection_metric
    history: list[dict[str, Any]] = []
    dropped: list[pd.DataFrame] = []  # families left behind on a smaller rung, with the rows they were scored on
    racing = None  # every family on the first rung
    samples = selection_samples(inputs)
    for sample in samples:
        board = leaderboard(sample, families=racing)
        board.insert(1, "rows", len(sample.prepared.train))
        families = board[board["kind"] == "family"]
        leader = families.iloc[0]
        score = float(leader[f"{m}_mean"])
        gain = score_gain(m, history[-1]["score"], score) if history else None
        # the gain is only trusted once the score is known to better than sample_gain (its standard error over
        # folds): on a few thousand rows the fold noise alone can hide or fake a gain of that size
        error = abs(score_gain(m, score, score + float(leader[f"{m}_std"]))) / np.sqrt(sample.folds)
        history.append({"rows": len(sample.prepared.train), "folds": sample.folds, "families": len(families),
                        "leader": leader["model"], "score": score, "gain": gain, "standard_error": error,
                        "dropped": ""})
        if sample is samples[-1] or (gain is not None and gain < inputs.sample_gain and error <= inputs.sample_gain):
            break
        racing = contenders(board, m, sample.folds)
        dropped.append(families[~families["model"].isin(racing)])
        history[-1]["dropped"] = ", ".join(dropped[-1]["model"])
    steps = pd.DataFrame(history)
    board = pd.concat([b.drop(columns="rank") for b in (board, *dropped[::-1])], ignore_index=True)
    board.insert(0, "rank", range(1, len(board) + 1))
    return Selection(sample, board, steps, selection_text(steps, n_train, m, inputs.sample_gain,
                                                          inputs.selection_rows))


def racing_families(steps: pd.DataFrame, families: Sequence[str]) -> list[list[str]]:
    """The families each rung of a selection cross-validated: all on the first, then without the ones left behind."""
    racing, out = list(families), []
    for dropped in steps["dropped"]:
        out.append(racing)
        racing = [f for f in racing if f not in str(dropped).split(", ")]
    return out


def selection_text(steps: pd.DataFrame, n_train: int, metric: str, min_gain: float, cap: int | None) -> str:
    """One sentence: how many rows the leaderboard used and why it stopped there."""
    last = steps.iloc[-1]
    rows = int(last["rows"])
    if rows >= n_train and len(steps) == 1:
        return f"Leaderboard on all {n_train:,} training rows."
    text = f"Leaderboard on {rows:,} of {n_train:,} training rows (a stratified, seeded sample)"
    if len(steps) > 1:
        before = steps.iloc[-2]
        text += (f"; {rows // int(before['rows'])}x more rows ({int(before['rows']):,} -> {rows:,}) added "
                 f"{last['gain']:+.4f} {metric} to the leader")
        if last["gain"] < min_gain and last["standard_error"] <= min_gain:
            return text + (f", less than sample_gain {min_gain:g} (its score is known to ±{last['standard_error']:.4f}): "
                           "the sample stopped growing.")
    left = [f"{r['dropped']} after {int(r['rows']):,} rows" for _, r in steps.iterrows() if r["dropped"]]
    if left:
        text += f"; left behind by the leaders on the way (successive halving): {'; '.join(left)}"
    if int(last["folds"]) < int(steps["folds"].iloc[0]):
        text += f"; {int(last['folds'])} folds from {LARGE_SAMPLE_ROWS:,} rows on"
    if rows >= n_train:
        return text + ": every training row."
    return text + f": selection_rows caps it at {cap:,} (step 3's plan or your setting)."


def leaders(board: pd.DataFrame, n: int = 2, deployable_only: bool = False, problem_type: str | None = None) -> list[str]:
    """The ``n`` best families of the leaderboard (baselines excluded)."""
    names = [m for m, k in zip(board["model"], board["kind"], strict=True) if k == "family"]
    if deployable_only and problem_type:
        names = [m for m in names if fam.get_family(problem_type, m).deployable]
    return names[:n]


def overfitting_table(board: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Train vs validation score per family, the gap and the overfitting flag."""
    cols = ["model", f"{metric}_train", f"{metric}_mean", f"{metric}_std", "gap", "overfitting"]
    table = board[[c for c in cols if c in board.columns]].rename(columns={
        f"{metric}_train": "train", f"{metric}_mean": "validation", f"{metric}_std": "spread"})
    return table


# --- explorer grid: family x main hyperparameter, with learning curves, on a subsample -----------------


def explorer_grid(inputs: Inputs, families: Sequence[str], rows: int = EXPLORER_ROWS,
                  sizes: Sequence[float] = (0.4, 1.0)) -> pd.DataFrame:
    """Learning curves for the given families and each value of their main hyperparameter, on a subsample.

    Precomputed once so the explorer, the validation curve and the learning curves read a
    table instead of refitting. Columns: family, param, value, train_size, train, validation.
    """
    if inputs.problem_type == "clustering":
        raise PlaybookError("explorer_grid is for supervised problems.", "use cluster_sweep for clustering.")
    sub = subsample(inputs, rows)
    cv = cv_folds(sub, len(sub.X))
    scorer = MetricScorer(sub.contract, sub.selection_metric)
    out = []
    with _quiet(inputs.estimator_jobs, inputs.compute):
        for family in [fam.get_family(sub.problem_type, f) for f in families]:
            for value in family.main_values:
                pipe = family_pipeline(sub, family).set_params(**{f"model__{family.main_param}": value})
                n, train, valid = learning_curve(pipe, sub.X, sub.y, cv=cv, train_sizes=list(sizes), scoring=scorer,
                                                 n_jobs=sub.n_jobs, shuffle=False)
                for i, size in enumerate(n):
                    out.append({"family": family.name, "param": family.main_param, "value": _label(value),
                                "train_size": int(size), "train": float(np.nanmean(train[i])),
                                "validation": float(np.nanmean(valid[i])), "validation_std": float(np.nanstd(valid[i]))})
    return pd.DataFrame(out)


def _label(value: Any) -> str:
    return "None" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def subsample(inputs: Inputs, rows: int, folds: int | None = None) -> Inputs:
    """The same problem on at most ``rows`` training rows (stratified for classification, seeded).

    ``folds`` defaults to ``min(inputs.folds, 3)`` (the explorer grid and the cluster sweep).
    """
    prepared = inputs.prepared
    train, _ = sampling.subsample(prepared.train, prepared.y("train"), rows, inputs.seed,
                                  stratify=prepared.problem_type == "classification")
    small = Prepared(**{**prepared.__dict__, "train": train})
    folds = min(inputs.folds, 3) if folds is None else folds
    return replace(inputs, prepared=small, folds=folds)


def grid_point(grid: pd.DataFrame, family: str, value: str) -> pd.DataFrame:
    """The learning curve of one (family, main value) cell of the explorer grid."""
    return grid[(grid["family"] == family) & (grid["value"] == str(value))].sort_values("train_size")


def validation_curve_table(grid: pd.DataFrame, family: str) -> pd.DataFrame:
    """Train and validation score against the family's main hyperparameter (largest training size)."""
    part = grid[grid["family"] == family]
    full = part[part["train_size"] == part["train_size"].max()]
    return full[["param", "value", "train", "validation", "validation_std"]].reset_index(drop=True)


# --- tuning -------------------------------------------------------------------------------------------------


@dataclass
class Tuning:
    """Results of the hyperparameter search over the leading families."""

    results: pd.DataFrame  # one row per evaluated configuration
    best_family: str
    best_params: dict[str, Any]
    metric: str
    stopped_by_budget: bool = False
    elapsed_s: float = 0.0
    reason: str = ""
    warnings: list[str] = field(default_factory=list)


def default_params(family: fam.Family, seed: int = 0) -> dict[str, Any]:
    """The library defaults of the searched hyperparameters (always a candidate)."""
    est = family.build(seed, 1).get_params()
    return {k: est[k] for k in family.search_space}


def candidates(family: fam.Family, strategy: str, iterations: int, seed: int) -> list[dict[str, Any]]:
    """The configurations to try: the default first, then ``iterations`` from the space (deterministic)."""
    space = family.search_space
    found: list[dict[str, Any]] = [default_params(family, seed)]
    if strategy == "grid":
        grid = {k: (list(family.main_values) if k == family.main_param else _discrete(v, seed)) for k, v in space.items()}
        pool = list(ParameterGrid(grid))
        step = max(1, len(pool) // max(iterations, 1))
        pool = pool[::step][:iterations]  # evenly spread over the grid when it is larger than the budget
    else:
        pool = list(ParameterSampler(space, n_iter=iterations, random_state=seed))
    for cand in pool:
        cand = {k: _plain(v) for k, v in cand.items()}
        if cand not in found:
            found.append(cand)
    return found[: iterations + 1]


def _discrete(values: Any, seed: int) -> list:
    if hasattr(values, "rvs"):  # a distribution: three quantiles stand for it in a grid
        return [float(values.ppf(q)) for q in (0.1, 0.5, 0.9)]
    return list(values)


def _plain(v: Any) -> Any:
    if isinstance(v, np.generic):
        v = v.item()
    return round(v, 6) if isinstance(v, float) else v


def tune(inputs: Inputs, families: Sequence[str], strategy: str = "random", iterations: int = 8,
         budget_s: float = 120.0) -> Tuning:
    """Search each family's registry space; the iteration count decides, the budget only stops an overlong search.

    Candidates are evaluated one by one with ``cross_validate`` (instead of a
    ``*SearchCV``) so the time budget can stop between configurations; ``halving`` hands
    the same candidate list to scikit-learn's successive halving.
    """
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    stopped, notes = False, []
    cv = cv_folds(inputs)
    width = compute_mod.engine(inputs.compute, inputs.n_jobs).threads  # fits that run side by side
    for name in families:
        family = fam.get_family(inputs.problem_type, name)
        cands = candidates(family, strategy, iterations, inputs.seed)
        if strategy == "halving":
            rows += _halving(inputs, family, cands, cv)
        else:
            # the default alone, then as many configurations at once as fits run side by side (their folds
            # share one pool: evaluate_all); the budget is looked at between these groups
            at = 0
            for group in [cands[:1]] + [cands[i:i + width] for i in range(1, len(cands), width)]:
                if at > 0 and time.perf_counter() - started > budget_s:  # the default always runs
                    stopped = True
                    notes.append(f"tuning_budget_s={budget_s:g} reached: stopped {name} after {at} of {len(cands)} "
                                 "configurations (raise the budget for the full, reproducible search).")
                    break
                pipes = [family_pipeline(inputs, family).set_params(**{f"model__{k}": v for k, v in params.items()})
                         for params in group]
                for params, scores in zip(group, evaluate_all(inputs, pipes, cv, train=False), strict=True):
                    rows.append({"family": name, "default": at == 0, "params": params, **scores})
                    at += 1
        if stopped:
            break
    for note in notes:
        warnings.warn(note, stacklevel=2)
    return _tuning_result(inputs, rows, stopped, time.perf_counter() - started, notes)


def _halving(inputs: Inputs, family: fam.Family, cands: list[dict[str, Any]], cv) -> list[dict[str, Any]]:
    """Successive halving over an explicit candidate list (a grid of single points)."""
    from sklearn.experimental import enable_halving_search_cv  # noqa: F401
    from sklearn.model_selection import HalvingGridSearchCV

    grid = [{f"model__{k}": [v] for k, v in c.items()} for c in cands]
    search = HalvingGridSearchCV(family_pipeline(inputs, family), grid, cv=cv,
                                 scoring=MetricScorer(inputs.contract, inputs.selection_metric, signed=True),
                                 factor=2, random_state=inputs.seed, n_jobs=inputs.n_jobs, refit=False)
    with _quiet(inputs.estimator_jobs, inputs.compute):
        search.fit(inputs.X, inputs.y)
    res = pd.DataFrame(search.cv_results_)
    last = res[res["iter"] == res["iter"].max()]
    best_round = {int(i): row for i, row in res.iterrows()}
    sign = -1 if kpi_mod.METRICS[inputs.selection_metric].direction == "lower" else 1
    out = []
    for i, params in enumerate(cands):
        mine = [j for j, r in best_round.items() if {k[7:]: v for k, v in r["params"].items()} == params]
        j = max(mine)
        row = res.loc[j]
        m = inputs.selection_metric
        out.append({"family": family.name, "default": i == 0, "params": params, "n_resources": int(row["n_resources"]),
                    f"{m}_mean": sign * float(row["mean_test_score"]), f"{m}_std": float(row["std_test_score"]),
                    "survived": bool(j in last.index)})
    return out


def _tuning_result(inputs: Inputs, rows: list[dict[str, Any]], stopped: bool, elapsed: float, notes: list[str]) -> Tuning:
    m = inputs.selection_metric
    results = pd.DataFrame(rows)
    if results.empty:
        raise PlaybookError("The tuning budget ran out before any configuration was evaluated.",
                            "raise tuning_budget_s.")
    pool = results[results["survived"]] if "survived" in results else results
    best = sort_by(pool, f"{m}_mean", m).iloc[0]
    results = sort_by(results, f"{m}_mean", m)
    results.insert(0, "rank", range(1, len(results) + 1))
    default = results[(results["family"] == best["family"]) & results["default"]]
    reason = _reason(best, default.iloc[0] if len(default) else None, m)
    return Tuning(results, str(best["family"]), dict(best["params"]), m, stopped, elapsed, reason, notes)


def _reason(best: pd.Series, default: pd.Series | None, metric: str) -> str:
    params = ", ".join(f"{k}={_label(v)}" for k, v in best["params"].items())
    text = (f"{best['family']} with {params} has the best cross-validated {metric}: "
            f"{best[f'{metric}_mean']:.4f} (± {best[f'{metric}_std']:.4f} over folds)")
    if default is not None and not bool(best["default"]):
        diff = abs(best[f"{metric}_mean"] - default[f"{metric}_mean"])
        text += f"; the library default scores {default[f'{metric}_mean']:.4f} ({diff:.4f} worse)"
        if diff < best[f"{metric}_std"]:
            text += ", a difference smaller than the fold spread, so the gain is uncertain"
    elif bool(best["default"]):
        text += "; it is the library default, no sampled configuration beat it"
    return text + "."


def tuning_table(tuning: Tuning) -> pd.DataFrame:
    """The tuning results with one column per hyperparameter (for display and CSV)."""
    params = pd.DataFrame([{k: _label(v) for k, v in p.items()} for p in tuning.results["params"]])
    rest = tuning.results.drop(columns=["params"])
    return pd.concat([rest.iloc[:, :3], params, rest.iloc[:, 3:]], axis=1)


def best_pipeline(inputs: Inputs, tuning: Tuning) -> Pipeline:
    """The chosen configuration as an unfitted pipeline."""
    family = fam.get_family(inputs.problem_type, tuning.best_family)
    return family_pipeline(inputs, family).set_params(**{f"model__{k}": v for k, v in tuning.best_params.items()})


# --- decision threshold (binary) ---------------------------------------------------------------------------


@dataclass
class ThresholdChoice:
    """The decision threshold and how it was chosen, with the cached cross-validated probabilities."""

    threshold: float
    feasible: bool | None
    rule: str
    message: str
    y: np.ndarray = field(repr=False, default_factory=lambda: np.array([]))
    proba: np.ndarray = field(repr=False, default_factory=lambda: np.array([]))
    curve: pd.DataFrame = field(repr=False, default_factory=pd.DataFrame)


def cv_positive_proba(inputs: Inputs, pipeline) -> np.ndarray:
    """Out-of-fold positive-class probabilities with the shared folds."""
    with _quiet(inputs.estimator_jobs, inputs.compute):
        proba = cross_val_predict(pipeline, inputs.X, inputs.y, cv=cv_folds(inputs), method="predict_proba",
                                  n_jobs=inputs.n_jobs)
    # the columns follow classes_ of the fold estimators: natural order (2 before 10), not the text order
    return proba[:, kpi_mod.class_index(kpi_mod.class_order(inputs.y), inputs.contract.positive_label)]


def pr_table(y_true: np.ndarray, proba: np.ndarray, positive: Any) -> pd.DataFrame:
    """Precision and recall at every candidate threshold (``precision_recall_curve``)."""
    precision, recall, thresholds = precision_recall_curve(np.asarray(y_true).astype(str) == str(positive), proba)
    return pd.DataFrame({"threshold": thresholds, "precision": precision[:-1], "recall": recall[:-1]})


def select_threshold(curve: pd.DataFrame, kpis: Mapping[str, float]) -> tuple[float, bool | None, str, str]:
    """Maximise precision subject to recall >= target (or the reverse); report infeasibility.

    scikit-learn's ``TunedThresholdClassifierCV`` maximises one score but takes no
    constraint, so the constrained choice is made on the precision-recall curve.
    Returns (threshold, feasible, rule, message).
    """
    r_t, p_t = kpis.get("recall"), kpis.get("precision")
    if r_t is None and p_t is None:
        if "f1" in kpis:
            f1 = 2 * curve.precision * curve.recall / (curve.precision + curve.recall).replace(0, np.nan)
            i = int(f1.fillna(-1).to_numpy().argmax())
            return float(curve.threshold[i]), True, "maximise f1", f"threshold {curve.threshold[i]:.3f} maximises f1 ({f1[i]:.3f})."
        return 0.5, None, "default 0.5", "no precision/recall-type KPI constrains the threshold: the default 0.5 is kept."
    if r_t is not None:
        ok = curve[curve.recall >= r_t]
        best = ok.loc[ok.precision.idxmax()]  # recall >= target is always reachable (threshold 0)
        feasible = p_t is None or best.precision >= p_t
        rule = f"maximise precision subject to recall >= {r_t:g}"
        msg = f"threshold {best.threshold:.3f}: recall {best.recall:.3f}, precision {best.precision:.3f}"
        if not feasible:
            msg += f" < {p_t:g}: the precision and recall targets cannot both be met on cross-validated predictions"
        return float(best.threshold), bool(feasible), rule, msg + "."
    ok = curve[curve.precision >= p_t]
    rule = f"maximise recall subject to precision >= {p_t:g}"
    if ok.empty:
        best = curve.loc[curve.precision.idxmax()]
        return (float(best.threshold), False, rule,
                f"no threshold reaches precision {p_t:g} (best {best.precision:.3f}): infeasible; the most precise threshold is kept.")
    best = ok.loc[ok.recall.idxmax()]
    return float(best.threshold), True, rule, f"threshold {best.threshold:.3f}: precision {best.precision:.3f}, recall {best.recall:.3f}."


def choose_threshold(inputs: Inputs, pipeline) -> ThresholdChoice | None:
    """Binary problems: the threshold that meets the KPI constraints on cross-validated probabilities."""
    if not inputs.contract.is_binary:
        return None
    proba = cv_positive_proba(inputs, pipeline)
    y = inputs.y.to_numpy()
    curve = pr_table(y, proba, inputs.contract.positive_label)
    thr, feasible, rule, msg = select_threshold(curve, inputs.contract.kpis)
    return ThresholdChoice(thr, feasible, rule, msg, y, proba, curve)


def labels_at(proba: np.ndarray, threshold: float, contract: kpi_mod.KpiContract) -> np.ndarray:
    """Binary class labels from positive-class probabilities at ``threshold``."""
    negative = next(c for c in contract.classes if str(c) != str(contract.positive_label))
    return np.where(proba >= threshold, contract.positive_label, negative).astype(object)


def threshold_readout(choice: ThresholdChoice, contract: kpi_mod.KpiContract, threshold: float) -> tuple[str, np.ndarray, dict]:
    """Precision, recall, confusion matrix and KPI pass/fail at ``threshold`` from cached probabilities."""
    pred = labels_at(choice.proba, threshold, contract)
    scores = kpi_mod.score_all(contract, choice.y, pred, choice.proba)
    classes = [contract.positive_label] + [c for c in contract.classes if str(c) != str(contract.positive_label)]
    cm = confusion_matrix(choice.y.astype(str), pred.astype(str), labels=[str(c) for c in classes])
    parts = [f"{m} {v:.3f} ({'pass' if contract.passed(m, v) else 'FAIL'} vs {contract.kpis[m]:g})" for m, v in scores.items()]
    text = f"threshold {threshold:.2f}: " + "; ".join(parts)
    return text, cm, scores


# --- clustering -----------------------------------------------------------------------------------------------


def _cluster_labels(pipeline, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    labels = pipeline.fit_predict(X)
    return labels, pipeline[:-1].transform(X)


def _cluster_scores(contract: kpi_mod.KpiContract, Z: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    keep = labels != -1  # DBSCAN's noise rows belong to no cluster
    metrics = list(dict.fromkeys([*contract.kpis, "silhouette", "davies_bouldin"]))
    if len(np.unique(labels[keep])) < 2:
        return dict.fromkeys(metrics, float("nan"))
    return {m: kpi_mod.score(m, contract, None, X=Z[keep], labels=labels[keep]) for m in metrics}


def cluster_sweep(inputs: Inputs) -> pd.DataFrame:
    """Every clustering family over its main hyperparameter, scored on each fold's training part.

    Clusterings cannot predict held-out rows (only k-means can), so each fold is fitted and
    scored on its own training part; the spread over folds shows stability.
    """
    sub = subsample(inputs, CLUSTER_SAMPLE)
    X = sub.X
    cv = cv_folds(sub, len(X))
    rows = []
    with _quiet(inputs.estimator_jobs, inputs.compute):
        for family in fam.families_for("clustering"):
            for value in family.main_values:
                pipe = family_pipeline(sub, family).set_params(**{f"model__{family.main_param}": value})
                rows.append(_sweep_row(sub, family.name, family.main_param, value, pipe, X, cv))
        rows.append(_sweep_row(sub, "heuristic", "k", 3, None, X, cv))
    return pd.DataFrame(rows)


def _sweep_row(inputs: Inputs, name: str, param: str, value: Any, pipe, X: pd.DataFrame, cv) -> dict[str, Any]:
    scores, noise, times, counts = [], [], [], []
    for train_idx, _ in cv.split(X):
        part = X.iloc[train_idx]
        started = time.perf_counter()
        if pipe is None:  # step 1's heuristic: k groups by quantiles of the first principal component
            Z = inputs.prepared.make_preprocessor().fit_transform(part)
            labels = trivial_split(Z, int(value), inputs.seed)
        else:
            labels, Z = _cluster_labels(clone(pipe), part)
        times.append(time.perf_counter() - started)
        scores.append(_cluster_scores(inputs.contract, Z, labels))
        noise.append(float(np.mean(labels == -1)))
        counts.append(len(set(labels) - {-1}))
    frame = pd.DataFrame(scores)
    row = {"family": name, "param": param, "value": _label(value), "n_clusters": float(np.mean(counts)),
           "noise_share": float(np.mean(noise)), "fit_time_s": float(np.mean(times))}
    for m in frame.columns:
        row[f"{m}_mean"] = float(frame[m].mean())
        row[f"{m}_std"] = float(frame[m].std(ddof=0))
    return row


def cluster_leaderboard(sweep: pd.DataFrame) -> pd.DataFrame:
    """The best setting of each clustering family (by silhouette), best first.

    Settings that leave over a quarter of the rows as noise (DBSCAN) are passed over when the
    family has another: a high silhouette on a few dense rows describes little of the data.
    """
    mostly_assigned = sweep[sweep["noise_share"] <= 0.25]
    sweep = pd.concat([mostly_assigned, sweep[~sweep["family"].isin(mostly_assigned["family"])]])
    best = sweep.sort_values("silhouette_mean", ascending=False, na_position="last", kind="stable")
    best = best.groupby("family", sort=False).head(1).reset_index(drop=True)
    best.insert(0, "model", best.pop("family"))
    best.insert(1, "kind", np.where(best["model"] == "heuristic", "baseline", "family"))
    best.insert(0, "rank", range(1, len(best) + 1))
    return best


def cluster_tuning(inputs: Inputs, sweep: pd.DataFrame) -> Tuning:
    """k-means (the only deployable family) at the k with the best silhouette."""
    part = sweep[sweep["family"] == "k_means"].sort_values("silhouette_mean", ascending=False, kind="stable")
    best = part.iloc[0]
    k = int(best["value"])
    results = part.rename(columns={"value": "n_clusters_param"}).reset_index(drop=True)
    results["params"] = [{"n_clusters": int(v)} for v in results["n_clusters_param"]]
    reason = (f"k_means with n_clusters={k} has the best mean silhouette {best['silhouette_mean']:.3f} "
              f"(± {best['silhouette_std']:.3f} over folds); only k-means can place new rows (nearest centroid).")
    return Tuning(results, "k_means", {"n_clusters": k}, "silhouette", reason=reason)


# --- final evaluation (the test side is opened here, once) ------------------------------------------------------


@dataclass
class Final:
    """The refitted model and its one evaluation on the held-out test side."""

    model: Any  # the Pipeline; binary: in a FixedThresholdClassifier (features.with_threshold) that decides
    table: pd.DataFrame  # metric, target, direction, achieved, ci_low, ci_high, passed, verdict (kpis.kpi_verdict)
    heuristic: pd.DataFrame  # the heuristic's test scores and the model's margin over it
    y_test: np.ndarray | None
    y_pred: np.ndarray
    proba: np.ndarray | None = None
    Z_test: np.ndarray | None = None
    training_rows: int | None = None  # rows the model was refitted on


def refit_rows(inputs: Inputs, family: str) -> tuple[int, str]:
    """Rows the champion is refitted on (``refit_rows``: set, or step 3's plan; else all) and the sentence that says so."""
    n_train = len(inputs.prepared.train)
    rows = min(inputs.refit_rows.get(family, n_train), n_train)
    if rows >= n_train:
        return n_train, f"{family} refitted on all {n_train:,} training rows."
    return rows, (f"{family} refitted on {rows:,} of {n_train:,} training rows (a stratified, seeded sample): "
                  "refit_rows (step 3's plan or your setting) keeps the refit within the time budget and memory.")


def final_evaluation(inputs: Inputs, pipeline, threshold: ThresholdChoice | None = None, n_boot: int = 200,
                     rows: int | None = None) -> Final:
    """Refit on ``rows`` training rows (None: all), then score every KPI once on the whole test side
    with bootstrap 95% intervals."""
    prepared, contract = inputs.prepared, inputs.contract
    X_test = prepared.X("test")
    fit_on = inputs if rows is None or rows >= len(prepared.train) else subsample(inputs, rows, folds=inputs.folds)
    with _quiet(inputs.estimator_jobs, inputs.compute):
        if inputs.problem_type == "clustering":
            return _final_clustering(inputs, pipeline, X_test, n_boot)
        model = clone(pipeline)
        if contract.is_binary:  # the threshold goes into the model file: whoever loads it decides like step 5
            model = with_threshold(model, threshold.threshold if threshold else 0.5, positive_class(inputs))
        model.fit(fit_on.X, fit_on.y)
    y_test = prepared.y("test").to_numpy()
    proba = positive_proba(model, X_test, contract) if inputs.problem_type == "classification" else None
    y_pred = model.predict(X_test)
    table = kpi_mod.kpi_intervals(contract, y_test, y_pred, proba, n_boot=n_boot, seed=inputs.seed)
    with _quiet(inputs.estimator_jobs, inputs.compute):
        margin = heuristic_margin(inputs, table, X_test, y_test)
    return Final(model, table, margin, y_test, y_pred, proba, training_rows=len(fit_on.prepared.train))


PREDICTIONS_FILE = "test_predictions.parquet"


def test_predictions(inputs: Inputs, final: Final) -> pd.DataFrame:
    """Each test row's label, prediction and probabilities, indexed by its raw row number (``row``):
    `playbook compare` pairs two runs' KPIs on the same rows with them."""
    frame = pd.DataFrame({"predicted": final.y_pred}, index=inputs.prepared.test.index.rename("row"))
    if final.y_test is not None:
        frame.insert(0, "actual", final.y_test)
    if final.proba is not None:
        proba = np.asarray(final.proba, dtype=float)
        if proba.ndim == 1:  # binary: the positive class's probability
            frame["proba"] = proba
        else:  # multi-class: one column per class, in the contract's class order
            for i, label in enumerate(inputs.contract.classes):
                frame[f"proba:{label}"] = proba[:, i]
    return frame


def positive_class(inputs: Inputs) -> Any:
    """The contract's positive label as the target holds it (1, not "1"): what the model's classes_ holds."""
    classes = kpi_mod.class_order(inputs.y)
    return classes[kpi_mod.class_index(classes, inputs.contract.positive_label)]


def heuristic_margin(inputs: Inputs, table: pd.DataFrame, X_test: pd.DataFrame, y_test: np.ndarray) -> pd.DataFrame:
    """The heuristic refitted on the training side and scored on the test side; the model's margin over it."""
    pipes = baseline_pipelines(inputs)
    if "heuristic" not in pipes:
        return pd.DataFrame(columns=["metric", "model", "heuristic", "margin"])
    h = pipes["heuristic"].fit(inputs.X, inputs.y)
    proba = positive_proba(h, X_test, inputs.contract) if inputs.problem_type == "classification" else None
    scores = kpi_mod.score_all(inputs.contract, y_test, h.predict(X_test), proba)
    rows = []
    for rec in table.to_dict(orient="records"):
        m = rec["metric"]
        sign = 1 if kpi_mod.METRICS[m].direction == "higher" else -1
        rows.append({"metric": m, "model": rec["achieved"], "heuristic": scores[m],
                     "margin": sign * (rec["achieved"] - scores[m])})
    return pd.DataFrame(rows)


def _final_clustering(inputs: Inputs, pipeline, X_test: pd.DataFrame, n_boot: int) -> Final:
    model = clone(pipeline).fit(inputs.X)
    labels = model.predict(X_test)
    Z = model[:-1].transform(X_test)
    table = cluster_intervals(inputs.contract, Z, labels, n_boot=n_boot, seed=inputs.seed)
    h_Z = inputs.prepared.make_preprocessor().fit_transform(X_test)
    h_labels = trivial_split(h_Z, seed=inputs.seed)
    h_scores = _cluster_scores(inputs.contract, h_Z, h_labels)
    margin = pd.DataFrame([{"metric": r["metric"], "model": r["achieved"], "heuristic": h_scores[r["metric"]],
                            "margin": (1 if r["direction"] == "higher" else -1) * (r["achieved"] - h_scores[r["metric"]])}
                           for r in table.to_dict(orient="records")])
    return Final(model, table, margin, None, labels, None, Z)


def cluster_intervals(contract: kpi_mod.KpiContract, Z: np.ndarray, labels: np.ndarray, *, n_boot: int = 200,
                      seed: int = 0, max_rows: int = 500) -> pd.DataFrame:
    """Clustering KPIs on the test side with bootstrap intervals (rows resampled, at most ``max_rows``)."""
    rows = []
    for metric in contract.kpis:
        def fn(idx, metric=metric):
            idx = idx[:max_rows]
            return _cluster_scores(contract, Z[idx], labels[idx])[metric]
        value = fn(np.arange(len(labels)))
        lo, hi = kpi_mod.bootstrap_interval(fn, len(labels), n_boot=n_boot, seed=seed)
        verdict = kpi_mod.kpi_verdict(value, lo, hi, contract.kpis[metric], contract.direction(metric))
        rows.append({"metric": metric, "target": contract.kpis[metric], "direction": contract.direction(metric),
                     "achieved": value, "ci_low": lo, "ci_high": hi, "passed": kpi_mod.verdict_passed(verdict),
                     "verdict": verdict})
    return pd.DataFrame(rows)


def importance_table(inputs: Inputs, final: Final, n_repeats: int = 5,
                     max_rows: int = IMPORTANCE_ROWS) -> pd.DataFrame:
    """Permutation importance of each input column on (a seeded sample of at most ``max_rows``) test rows.

    The drop in the selection metric; ``attrs["text"]`` says which rows it used.
    """
    if inputs.problem_type == "clustering":
        return pd.DataFrame(columns=["feature", "importance", "std"])
    X_test, y_test = inputs.prepared.X("test"), pd.Series(final.y_test)
    X, y = sampling.subsample(X_test.reset_index(drop=True), y_test, max_rows, inputs.seed,
                              stratify=inputs.problem_type == "classification")
    with _quiet(inputs.estimator_jobs, inputs.compute):
        table = permutation_importance_table(final.model, X, y.to_numpy(), inputs.contract, inputs.selection_metric,
                                             n_repeats=n_repeats, seed=inputs.seed, n_jobs=inputs.n_jobs)
    table.attrs["text"] = (f"Permutation importance on all {len(X_test):,} test rows." if len(X) == len(X_test) else
                           f"Permutation importance on {len(X):,} of {len(X_test):,} test rows (a seeded sample).")
    return table


def group_metrics(inputs: Inputs, final: Final, min_rows: int = 10) -> pd.DataFrame:
    """Every KPI per group of each sensitive column on the test side (groups of at least ``min_rows``)."""
    test = inputs.prepared.test
    columns = [c for c in inputs.prepared.sensitive_columns if c in test.columns]
    if inputs.problem_type == "clustering" or not columns:
        return pd.DataFrame()
    long = kpi_mod.group_kpis(inputs.contract, test[columns], final.y_test, final.y_pred, final.proba,
                              min_rows=min_rows)
    # one row per group, one column per KPI (the notebook's table); groupby keeps the row order
    keys = ["column", "group", "rows"]
    return pd.DataFrame([{**dict(zip(keys, key, strict=True)), **dict(zip(part["metric"], part["value"], strict=True))}
                         for key, part in long.groupby(keys, sort=False)])


def cluster_profiles(inputs: Inputs, final: Final) -> pd.DataFrame:
    """Size and mean of each numeric feature per cluster on the test side (original units)."""
    X = inputs.prepared.X("test").reset_index(drop=True)
    numeric = X[inputs.prepared.numeric]
    profile = numeric.groupby(final.y_pred).mean()
    profile.insert(0, "rows", pd.Series(final.y_pred).value_counts().sort_index())
    profile.index.name = "cluster"
    return profile.reset_index()


# --- model file and metadata ----------------------------------------------------------------------------------------


def model_meta(inputs: Inputs, tuning: Tuning, final: Final, threshold: ThresholdChoice | None) -> dict[str, Any]:
    """Everything a model card and step 5 need about the saved model."""
    import datetime as dt

    p, c = inputs.prepared, inputs.contract
    return to_jsonable({
        "version": 1, "family": tuning.best_family, "params": tuning.best_params, "features": p.features,
        "numeric": p.numeric, "categorical": p.categorical, "target": p.target, "problem_type": p.problem_type,
        "classes": c.classes if p.problem_type == "classification" else None,
        "positive_label": c.positive_label if c.is_binary else None,
        "threshold": threshold.threshold if threshold else None,
        "selection_metric": tuning.metric, "kpis": final.table,
        "training_data_sha256": frame_sha256(p.train), "training_rows": final.training_rows or len(p.train),
        "schema_version": 1, "id_column": p.id_column, "sensitive_columns": p.sensitive_columns,
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    })


def save_model_files(run: Run, inputs: Inputs, tuning: Tuning, final: Final, threshold: ThresholdChoice | None) -> dict[str, Any]:
    """Save the model (skops) and ``model_meta.json`` in ``models/v1``; mark it champion; fill the scoreboard."""
    folder = run.models_dir(1)
    modelio.save_model(final.model, folder / "model.skops")
    meta = model_meta(inputs, tuning, final, threshold)
    artifacts.write_json(folder / "model_meta.json", meta)
    run.update_manifest(champion={"version": 1, "path": "models/v1/model.skops", "family": tuning.best_family})
    artifacts.record_kpis(run, final.table)
    return meta


@dataclass
class ModelingResult:
    """What step 4 computed: leaderboard, tuning, threshold, the held-out evaluation and its tables."""

    inputs: Inputs
    board: pd.DataFrame
    tuning: Tuning
    threshold: ThresholdChoice | None
    final: Final
    seconds: float
    importance: pd.DataFrame = field(default_factory=pd.DataFrame)
    groups: pd.DataFrame = field(default_factory=pd.DataFrame)
    grid: pd.DataFrame | None = None  # explorer grid (supervised)
    sweep: pd.DataFrame | None = None  # cluster sweep (clustering)
    figures: Mapping[str, Any] = field(default_factory=dict)
    cpu_seconds: float | None = None  # CPU time of the same span as ``seconds``
    duration: Mapping[str, Any] | None = None  # step 3's prediction next to the time taken (duration_record)
    selection: Selection | None = None  # the sample the leaderboard, tuning and threshold used
    refit_text: str = ""  # how many rows the champion was refitted on (refit_rows)
    pinned: Mapping[str, Any] = field(default_factory=dict)  # resolved sizes written to project.yaml (planned_values)


def duration_record(run: Run, result: ModelingResult, params: Mapping[str, Any]) -> dict[str, Any] | None:
    """Step 3's prediction of this step's duration (its measured costs, these parameters, the families
    tuned and explored here) next to the time it took; None without step 3's costs (or for clustering).

    The prediction is of CPU time (step 3 times on one core); ``ratio`` compares it with the CPU
    time taken, ``wall_ratio`` with the wall time, which other programs on the machine inflate.
    """
    stack_summary = run.optional_summary(STEP3) or {}
    costs = {name: CostModel.from_dict(c["cost"]) for name, c in stack_summary.get("curves", {}).items()
             if c.get("cost")}
    names = [f.name for f in fam.families_for(result.inputs.problem_type)]
    if result.inputs.problem_type == "clustering" or not set(names) <= set(costs) or result.grid is None:
        return None
    prepared = result.inputs.prepared
    visited = [int(r) for r in result.selection.rungs["rows"]] if result.selection is not None else None
    predicted = predict_modeling(
        {n: costs[n] for n in names}, problem_type=result.inputs.problem_type,
        n_train=visited[-1] if visited else len(prepared.train), rungs=visited, n_refit=result.final.training_rows,
        racing=racing_families(result.selection.rungs, names) if result.selection is not None else None,
        importance_rows=IMPORTANCE_ROWS,
        n_test=len(prepared.test), n_features=len(prepared.features), folds=result.inputs.folds,
        iterations=params["tuning_iterations"], strategy=params["tuning_strategy"],
        tuning_budget_s=params["tuning_budget_s"], tuned=str(result.tuning.results["family"].iloc[0]),
        explored=list(dict.fromkeys(result.grid["family"])), binary=result.inputs.contract.is_binary)
    actual = result.cpu_seconds if result.cpu_seconds is not None else result.seconds
    total = predicted["total_s"]
    return {**predicted, "actual_s": result.seconds, "actual_cpu_s": result.cpu_seconds,
            "ratio": actual / total if total else None, "wall_ratio": result.seconds / total if total else None}


def duration_text(duration: Mapping[str, Any] | None) -> str:
    """One sentence: predicted against actual duration of this step."""
    if not duration:
        return "No prediction of this step's duration: step 3's measured costs are missing (or clustering)."
    cpu = duration.get("actual_cpu_s")
    took = f"{cpu:.1f} s of CPU ({duration['actual_s']:.1f} s wall)" if cpu is not None else f"{duration['actual_s']:.1f} s"
    return (f"Step 3 predicted {duration['total_s']:.1f} s for this step ({duration['low_s']:.1f} to "
            f"{duration['high_s']:.1f} s, tuning {duration['tuned']}); it took {took}: "
            f"{duration['ratio']:.2f}x the prediction.")


def summary(result: ModelingResult) -> dict[str, Any]:
    """Step 4's machine-readable findings (``summary.json``)."""
    inputs, board, tuning, threshold, final = result.inputs, result.board, result.tuning, result.threshold, result.final
    verdicts = [v for v in final.table["verdict"] if v is not None]  # watch is not a pass
    flagged = board.loc[board.get("overfitting", pd.Series(False, index=board.index)).astype(bool), "model"].tolist()
    return to_jsonable({
        "problem_type": inputs.problem_type, "selection_metric": tuning.metric, "cv_folds": inputs.folds,
        "champion": {"family": tuning.best_family, "params": tuning.best_params, "version": 1,
                     "path": "models/v1/model.skops", "reason": tuning.reason},
        "leaderboard": board[["rank", "model", "kind"]].to_dict(orient="records"),
        "overfitting": flagged,
        "tuning": {"configurations": len(tuning.results), "stopped_by_budget": tuning.stopped_by_budget,
                   "elapsed_s": round(tuning.elapsed_s, 2), "warnings": tuning.warnings},
        "threshold": None if threshold is None else {"value": threshold.threshold, "feasible": threshold.feasible,
                                                      "rule": threshold.rule, "message": threshold.message},
        "kpis": final.table, "all_kpis_passed": bool(verdicts) and all(v == "pass" for v in verdicts),
        "margin_over_heuristic": final.heuristic, "seconds": round(result.seconds, 1),
        "cpu_seconds": None if result.cpu_seconds is None else round(result.cpu_seconds, 1),
        "duration": result.duration,
        "sampling": sampling_summary(result),
        "engine": compute_mod.engine(result.inputs.compute, result.inputs.n_jobs).record(),  # where the fits ran
    })


def sampling_summary(result: ModelingResult) -> dict[str, Any]:
    """Every sampled decision of this step: the rows each part used and the sentences that say so."""
    selection = result.selection
    statements = [t for t in (selection.text if selection else "", result.refit_text,
                              result.importance.attrs.get("text", "")) if t]
    return {"training_rows": len(result.inputs.prepared.train), "test_rows": len(result.inputs.prepared.test),
            "selection_rows": selection.rows if selection else len(result.inputs.prepared.train),
            "selection_folds": selection.inputs.folds if selection else result.inputs.folds,
            "rungs": [] if selection is None else selection.rungs.to_dict(orient="records"),
            "refit_rows": result.final.training_rows, "n_jobs": result.inputs.n_jobs, "statements": statements}


def planned_values(params: Mapping[str, Any], inputs: Inputs, final: Final) -> dict[str, Any]:
    """The sizes and jobs this step resolved for the parameters left unset: pinned so a re-run reproduces them."""
    resolved = {"selection_rows": inputs.selection_rows, "n_jobs": inputs.n_jobs, "refit_rows": final.training_rows}
    return {k: v for k, v in resolved.items() if params.get(k) is None and v is not None}


# --- report --------------------------------------------------------------------------------------------------------------


def save(run: Run, result: ModelingResult) -> dict[str, Any]:
    """Write the tables, figures and model files, then the summary (last); return the summary."""
    tables = {"leaderboard.csv": result.board, "tuning_results.csv": tuning_table(result.tuning),
              "test_kpis.csv": result.final.table, "margin_over_heuristic.csv": result.final.heuristic,
              "permutation_importance.csv": result.importance, "group_metrics.csv": result.groups,
              PREDICTIONS_FILE: test_predictions(result.inputs, result.final)}
    if result.threshold is not None:
        tables["threshold_curve.csv"] = result.threshold.curve
    if result.grid is not None:
        tables["explorer_grid.csv"] = result.grid
    elif result.sweep is not None:
        tables["cluster_sweep.csv"] = result.sweep
    for name, table in tables.items():
        run.write_table(STEP, name, table)
    for name, figure in result.figures.items():
        run.save_figure(STEP, name, figure)
    save_model_files(run, result.inputs, result.tuning, result.final, result.threshold)
    if result.pinned:
        run.pin_parameters(result.pinned)
    run.write_summary(STEP, summary(result))
    return run.read_summary(STEP)


def headline(run: Run) -> dict[str, Any]:
    """First-screen facts for the report: the champion family and the KPI scoreboard."""
    summary = run.read_summary(STEP)
    return {"champion": summary["champion"]["family"], "kpis": summary["kpis"],
            "all_kpis_passed": summary.get("all_kpis_passed")}


def report_section(run: Run) -> Section:
    """The report's step-4 section: champion, test KPIs, leaderboard figure; tables and diagnostics in details."""
    summary = run.read_summary(STEP)
    champ, rows = summary["champion"], summary["kpis"]
    verdicts = [kpi_mod.row_verdict(k) for k in rows]
    met = sum(v == "pass" for v in verdicts)
    tone = None if not rows else "pass" if met == len(rows) else "fail" if "fail" in verdicts else "watch"
    takeaway = (f"The champion is {champ['family']}: it meets {met} of {len(rows)} KPIs on the test set."
                if rows else f"The champion is {champ['family']}.")
    duration = summary.get("duration") or {}
    facts = [Fact("champion", str(champ["family"])), Fact("KPIs met on the test set", f"{met} of {len(rows)}", tone),
             Fact("step 4 took", tables.format_seconds(duration.get("actual_s")),
                  note=f"forecast {tables.format_seconds(duration.get('total_s'))}" if duration.get("total_s") else "")]
    body = [tables.table(tables.with_interval(rows), ["metric", "target", "direction", "achieved", "interval", "verdict"],
                         caption="The champion on the test set")] if rows else []
    body.append(sections.paragraph(champ.get("reason", ""), lead="Why this champion"))
    folder = run.step_dir(STEP)
    parts = [sections.paragraph(duration_text(summary.get("duration"))),
             *[sections.paragraph(t) for t in (summary.get("sampling") or {}).get("statements", [])]]
    if (folder / "leaderboard.csv").exists():
        parts.append(tables.table(pd.read_csv(folder / "leaderboard.csv"), caption="Leaderboard (cross-validated)"))
    if (folder / "tuning_results.csv").exists():
        parts.append(tables.table(pd.read_csv(folder / "tuning_results.csv"), caption="Tuning results", max_rows=10))
    figures = [("diagnostics.png", "diagnostics of the champion"), ("threshold.png", "the decision threshold"),
               ("importance.png", "permutation importance on the test set")]
    links = [("model file", "models/v1/model.skops"), ("model metadata", "models/v1/model_meta.json"),
             ("tuning results", run.relative(folder / "tuning_results.csv")), ("executed notebook", f"{STEP}.ipynb")]
    return Section("step-4", "4. Model development", takeaway, facts,
                   sections.images(folder, [("leaderboard.png", "the leaderboard of the candidate families")]), body,
                   [sections.Details("Leaderboard, tuning and sampling", parts),
                    sections.Details("Diagnostics, decision threshold and feature importance",
                                     sections.images(folder, figures))], links)


# --- exercises --------------------------------------------------------------------------------------------------------------
# Each checker returns a ``Feedback`` (helpers.core.exercises); the notebook's check cell displays it.

EXERCISE_ROWS = 1500  # exercise 4.1 cross-validates on a seeded sample of this many training rows
EXERCISE_FOLDS = 5
RAISED_RECALL = 0.1  # exercise 4.2: the recall target goes up by this much


def exercise_rows(inputs: Inputs, rows: int = EXERCISE_ROWS) -> tuple[pd.DataFrame, pd.Series | None]:
    """Model input and target of a seeded sample of at most ``rows`` training rows (stratified for classification)."""
    small = subsample(inputs, rows)
    return small.X, small.y


def exercise_model(inputs: Inputs):
    """The registry's first family for the problem type (a linear model, or k-means), unfitted, one thread."""
    return fam.families_for(inputs.problem_type)[0].build(inputs.seed, 1)


def exercise_scoring(inputs: Inputs) -> str | None:
    """A continuous score for exercise 4.1: log loss tells two nearly equal models apart, accuracy often does not."""
    return {"classification": "neg_log_loss", "regression": "r2"}.get(inputs.problem_type)


def leakage_scores(prepared: Prepared, X: pd.DataFrame, y: pd.Series | None, model, scoring: str | None,
                   folds: int = EXERCISE_FOLDS) -> tuple[float, float]:
    """Exercise 4.1's two scores: the preprocessing fitted inside each fold (a Pipeline), then on every row first."""
    with _quiet():
        inside = cross_val_score(with_model(prepared.make_preprocessor(), clone(model)), X, y, cv=folds,
                                 scoring=scoring).mean()
        outside = cross_val_score(clone(model), prepared.make_preprocessor().fit_transform(X), y, cv=folds,
                                  scoring=scoring).mean()
    return float(inside), float(outside)


def _same(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)


def check_exercise_1(answer: Any, inputs: Inputs, X: pd.DataFrame, y: pd.Series | None, model,
                     scoring: str | None) -> Feedback:
    """Exercise 4.1: (score with the preprocessing inside the Pipeline, score with it fitted on every row first)."""
    return leakage_feedback(answer, *leakage_scores(inputs.prepared, X, y, model, scoring))


def leakage_feedback(answer: Any, inside: float, outside: float) -> Feedback:
    """Exercise 4.1's verdict on ``answer`` given the two right scores (``leakage_scores``)."""
    giveaways = tuple(f"{v:.4f}" for v in (inside, outside))
    hint = (f"inside: cross_val_score(make_pipeline(inputs.prepared.make_preprocessor(), model), X, y, "
            f"cv={EXERCISE_FOLDS}, scoring=scoring).mean(); outside: fit_transform the preprocessor on X first, "
            "then cross-validate the model alone on the result.")
    if exercises.is_unanswered(answer):
        return exercises.unanswered("4.1", "Set `answer` to the pair (inside, outside) of mean cross-validated scores.",
                                    hint, giveaways=giveaways)
    pair = list(answer) if isinstance(answer, (tuple, list, np.ndarray)) else []
    values = [exercises.as_number(v) for v in pair]
    if len(values) != 2 or None in values:
        return exercises.wrong("4.1", f"{answer!r} is not a pair of numbers.",
                               "give two scores: answer = (inside, outside).", giveaways=giveaways)
    a, b = values
    if _same(a, inside) and _same(b, outside):
        gap = outside - inside
        size = ("small here (medians, means and category lists change little with a fifth more rows)"
                if abs(gap) < 0.005 else "what the leak is worth on these rows")
        return exercises.correct("4.1", f"inside the folds {inside:.4f}, fitted on every row first {outside:.4f} "
                                 f"(difference {gap:+.4f}). Fitted outside, the imputer, scaler and encoder have seen "
                                 f"each validation fold, so its score no longer measures unseen rows; the difference "
                                 f"is {size}. Steps that learn from the target (feature "
                                 "selection, target encoding) leak far more; inside a Pipeline nothing leaks.",
                                 giveaways=giveaways)
    if _same(a, outside) and _same(b, inside):
        return exercises.wrong("4.1", "the two scores are swapped.", "answer = (inside, outside).",
                               giveaways=giveaways)
    if _same(a, outside):
        return exercises.wrong("4.1", "your first score fits the preprocessing outside the folds (the scaler saw every "
                               "row).", "put the preprocessor inside the Pipeline, so each fold fits it on its training "
                               "part only. " + hint, giveaways=giveaways)
    if _same(b, inside):
        return exercises.wrong("4.1", "your second score is the Pipeline's again.",
                               "for the second, fit_transform the preprocessor on all of X first, then cross-validate "
                               "the model alone on the result. " + hint, giveaways=giveaways)
    if _same(a, inside):
        return exercises.wrong("4.1", "the first score is right; the second is not the one with the preprocessing "
                               "fitted on every row.", hint, giveaways=giveaways)
    return exercises.wrong("4.1", "neither score matches: use X, y, model and scoring as given, "
                           f"cv={EXERCISE_FOLDS} (no shuffling) and the mean over folds.", hint, giveaways=giveaways)


def exercise_recall_target(contract: kpi_mod.KpiContract) -> float | None:
    """Exercise 4.2's target: the contract's recall raised by ``RAISED_RECALL`` (capped at 0.99); None if not binary."""
    if not contract.is_binary:
        return None
    return round(min(0.99, contract.kpis.get("recall", 0.7) + RAISED_RECALL), 2)


def check_exercise_2(answer: Any, choice: ThresholdChoice | None, contract: kpi_mod.KpiContract,
                     target: float | None) -> Feedback:
    """Exercise 4.2: the threshold with the best precision whose cross-validated recall meets the raised target."""
    if choice is None or target is None:
        return exercises.correct("4.2", "this problem has no binary target, so no decision threshold: nothing to do.")
    best_threshold, *_ = select_threshold(choice.curve, {"recall": target})
    best = choice.curve.loc[choice.curve["threshold"] == best_threshold].iloc[0]
    hint = ("precision, recall, thresholds = precision_recall_curve(choice.y == positive, choice.proba); among the "
            "thresholds whose recall (recall[:-1]) is at least the target, take the one with the highest precision.")
    value = exercises.number_answer("4.2", answer, "a threshold between 0 and 1", hint, expected=best_threshold)
    if isinstance(value, Feedback):
        return value
    if not 0.0 <= value <= 1.0:
        return exercises.wrong("4.2", f"{answer!r} is not a threshold between 0 and 1.", hint, expected=best_threshold)
    labels = labels_at(choice.proba, value, contract)
    recall, precision = (kpi_mod.score(m, contract, choice.y, labels) for m in ("recall", "precision"))
    at = f"at {value:.3f} the cross-validated recall is {recall:.3f} and precision {precision:.3f}"
    if recall >= target and precision >= best["precision"] - 1e-9:
        return exercises.correct("4.2", f"{at}: recall meets {target:g} with the best precision available. "
                                 f"Step 4 keeps {choice.threshold:.3f} for the contract's target; a higher recall "
                                 "target lowers the threshold and costs precision. The model file keeps its threshold "
                                 "as scikit-learn's FixedThresholdClassifier(pipeline, threshold=...) (see Save).",
                                 expected=best_threshold)
    if "precision" in contract.kpis:
        p_threshold = select_threshold(choice.curve, {"precision": contract.kpis["precision"]})[0]
        if math.isclose(value, p_threshold, abs_tol=1e-6) and recall < target:
            return exercises.wrong("4.2", f"that threshold meets the precision target ({contract.kpis['precision']:g}), "
                                   f"not the recall target: {at}.", "the constraint is recall >= the raised target; "
                                   "precision is what you maximise under it.", expected=best_threshold)
    if math.isclose(value, choice.threshold, abs_tol=1e-6) and recall < target:
        return exercises.wrong("4.2", f"that is step 4's threshold for the contract's recall target, not for {target:g}: "
                               f"{at}.", "a higher recall target needs a lower threshold. " + hint,
                               expected=best_threshold)
    if recall < target:
        return exercises.wrong("4.2", f"{at}, below the target {target:g}.",
                               "lower the threshold to flag more rows. " + hint, expected=best_threshold)
    return exercises.wrong("4.2", f"{at}: recall is met, but a higher threshold also meets it with better precision.",
                           "among the thresholds that meet the recall target, take the most precise one. " + hint,
                           expected=best_threshold)


TEST_REUSE_ANSWERS = ("optimistic", "pessimistic", "unbiased")


def check_exercise_3(answer: Any) -> Feedback:
    """Exercise 4.3: the test score of the best of several models compared on the test side is optimistic."""
    giveaways = ("the test score becomes optimistic",)
    options = ", ".join(f'"{a}"' for a in TEST_REUSE_ANSWERS)
    if exercises.is_unanswered(answer):
        return exercises.unanswered("4.3", f"Set `answer` to one of {options}.", giveaways=giveaways)
    word = str(answer).strip().strip('"\'').lower()
    if word == "optimistic":
        return exercises.correct("4.3", "choosing by test score picks the model whose test rows happened to suit it: "
                                 "part of its margin is luck, which new data will not repeat. The test side then "
                                 "acts as a validation set, and only fresh data gives an unbiased estimate.",
                                 giveaways=giveaways)
    if word == "unbiased":
        return exercises.wrong("4.3", "each model's test score alone is unbiased, but the maximum of several noisy "
                               "scores is not.", "which way does picking the best of several noisy numbers push the "
                               "one you keep?", giveaways=giveaways)
    if word == "pessimistic":
        return exercises.wrong("4.3", "the selection favours the model that was lucky on these test rows, not unlucky.",
                               "picking the maximum of noisy scores tends to pick a lucky one.", giveaways=giveaways)
    return exercises.wrong("4.3", f"{answer!r} is none of {options}.", "choose one of the three words.",
                           giveaways=giveaways)


# --- figures -----------------------------------------------------------------------------------------------------------------


def _plt():
    import matplotlib.pyplot as plt  # imported lazily: no work at import time

    return plt


def plot_leaderboard(board: pd.DataFrame, metric: str, contract: kpi_mod.KpiContract):
    """Cross-validated score of every candidate (mean ± spread over folds), with the KPI target."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(board) + 1.2))
    colors = ["#999999" if k == "baseline" else "#1f77b4" for k in board["kind"]]
    labels = board["model"]
    if "rows" in board and board["rows"].nunique() > 1:  # families left behind on a smaller rung say where
        top = board["rows"].iloc[0]
        labels = [m if r == top else f"{m} ({r:,} rows)" for m, r in zip(board["model"], board["rows"], strict=True)]
    ax.barh(labels, board[f"{metric}_mean"], xerr=board[f"{metric}_std"], color=colors)
    if metric in contract.kpis:
        ax.axvline(contract.kpis[metric], color="red", ls="--", label=f"KPI target {contract.kpis[metric]:g}")
        ax.legend(loc="lower right")
    ax.invert_yaxis()
    ax.set_xlabel(f"cross-validated {metric} (grey: baselines)")
    ax.set_title("Leaderboard")
    fig.tight_layout()
    return fig


def _default_value(problem_type: str, family: str, seed: int) -> str:
    f = fam.get_family(problem_type, family)
    return _label(f.build(seed, 1).get_params()[f.main_param])


def plot_learning_curves(grid: pd.DataFrame, families: Sequence[str], metric: str, problem_type: str, seed: int = 0):
    """Train and validation score against training rows for the leading families (default main setting)."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(families), figsize=(4.5 * len(families), 3.4), squeeze=False)
    for ax, name in zip(axes[0], families, strict=True):
        part = grid[grid["family"] == name]
        value = _default_value(problem_type, name, seed)
        if value not in set(part["value"]):
            value = part.sort_values("validation", ascending=False)["value"].iloc[0]
        _learning_axes(ax, grid_point(grid, name, value), f"{name} ({part['param'].iloc[0]}={value})", metric)
    fig.tight_layout()
    return fig


def _learning_axes(ax, curve: pd.DataFrame, title: str, metric: str) -> None:
    ax.plot(curve["train_size"], curve["train"], "o-", label="train")
    ax.plot(curve["train_size"], curve["validation"], "o-", label="validation")
    ax.fill_between(curve["train_size"], curve["validation"] - curve["validation_std"],
                    curve["validation"] + curve["validation_std"], alpha=0.2, color="C1")
    ax.set_xlabel("training rows (subsample)")
    ax.set_ylabel(metric)
    ax.set_title(title, fontsize=10)
    ax.legend()


def plot_validation_curve(table: pd.DataFrame, family: str, metric: str):
    """Train and validation score against the main hyperparameter of one family."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.4))
    x = range(len(table))
    ax.plot(x, table["train"], "o-", label="train")
    ax.errorbar(x, table["validation"], yerr=table["validation_std"], fmt="o-", label="validation")
    ax.set_xticks(list(x), table["value"])
    ax.set_xlabel(str(table["param"].iloc[0]))
    ax.set_ylabel(metric)
    ax.set_title(f"Validation curve: {family}")
    ax.legend()
    fig.tight_layout()
    return fig


def plot_tuning(tuning: Tuning):
    """Cross-validated score against each searched hyperparameter (the default in red)."""
    plt = _plt()
    m = tuning.metric
    res = tuning.results[tuning.results["family"] == tuning.best_family]
    keys = list(res["params"].iloc[0])[:3]
    fig, axes = plt.subplots(1, max(len(keys), 1), figsize=(4 * max(len(keys), 1), 3.2), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=False):
        values = [p.get(key) for p in res["params"]]
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        x = values if numeric else [_label(v) for v in values]
        ax.scatter(x, res[f"{m}_mean"], c=["red" if d else "C0" for d in res["default"]])
        if numeric and key in ("C", "alpha", "learning_rate"):
            ax.set_xscale("log")
        ax.set_xlabel(key)
        ax.set_ylabel(f"cv {m}")
    fig.suptitle(f"Tuning {tuning.best_family} (red: library default)", fontsize=11)
    fig.tight_layout()
    return fig


def plot_threshold(choice: ThresholdChoice, contract: kpi_mod.KpiContract, threshold: float | None = None):
    """Precision and recall against the threshold (cross-validated), with KPI lines and the chosen threshold."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    ax.plot(choice.curve["threshold"], choice.curve["precision"], label="precision")
    ax.plot(choice.curve["threshold"], choice.curve["recall"], label="recall")
    for metric, color in (("precision", "C0"), ("recall", "C1")):
        if metric in contract.kpis:
            ax.axhline(contract.kpis[metric], color=color, ls=":", label=f"{metric} KPI {contract.kpis[metric]:g}")
    ax.axvline(choice.threshold if threshold is None else threshold, color="k", ls="--",
               label=f"threshold {choice.threshold if threshold is None else threshold:.2f}")
    ax.set_xlabel("decision threshold on P(positive)")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=8, loc="lower left")
    ax.set_title("Precision-recall trade-off (cross-validated)")
    fig.tight_layout()
    return fig


def plot_diagnostics(inputs: Inputs, final: Final):
    """Test-side diagnostics: classification curves, regression residuals or cluster sizes."""
    if inputs.problem_type == "classification":
        return _classification_diagnostics(inputs, final)
    if inputs.problem_type == "regression":
        return _regression_diagnostics(final)
    return _cluster_diagnostics(inputs, final)


def _classification_diagnostics(inputs: Inputs, final: Final):
    from sklearn.calibration import CalibrationDisplay
    from sklearn.metrics import ConfusionMatrixDisplay, PrecisionRecallDisplay, RocCurveDisplay

    plt = _plt()
    c = inputs.contract
    y = final.y_test.astype(str)
    if not c.is_binary:
        fig, ax = plt.subplots(figsize=(5, 4))
        ConfusionMatrixDisplay.from_predictions(y, final.y_pred.astype(str), ax=ax, colorbar=False)
        ax.set_title("Confusion matrix (test)")
        fig.tight_layout()
        return fig
    fig, axes = plt.subplots(1, 4, figsize=(17, 3.8))
    pos = str(c.positive_label)
    ConfusionMatrixDisplay.from_predictions(y, final.y_pred.astype(str), ax=axes[0], colorbar=False)
    axes[0].set_title("Confusion matrix (test)")
    RocCurveDisplay.from_predictions(y == pos, final.proba, ax=axes[1], name="model")
    axes[1].set_title("ROC curve")
    PrecisionRecallDisplay.from_predictions(y == pos, final.proba, ax=axes[2], name="model")
    axes[2].set_title("Precision-recall curve")
    CalibrationDisplay.from_predictions(y == pos, final.proba, n_bins=10, ax=axes[3], name="model")
    axes[3].set_title("Calibration")
    fig.tight_layout()
    return fig


def _regression_diagnostics(final: Final):
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    y, p = final.y_test.astype(float), final.y_pred.astype(float)
    axes[0].scatter(p, y - p, s=10, alpha=0.6)
    axes[0].axhline(0, color="k", lw=1)
    axes[0].set_xlabel("predicted")
    axes[0].set_ylabel("residual (actual - predicted)")
    axes[0].set_title("Residuals (test)")
    axes[1].scatter(y, p, s=10, alpha=0.6)
    lo, hi = float(min(y.min(), p.min())), float(max(y.max(), p.max()))
    axes[1].plot([lo, hi], [lo, hi], "k--", lw=1)
    axes[1].set_xlabel("actual")
    axes[1].set_ylabel("predicted")
    axes[1].set_title("Predicted vs actual (test)")
    fig.tight_layout()
    return fig


def _cluster_diagnostics(inputs: Inputs, final: Final):
    plt = _plt()
    profile = cluster_profiles(inputs, final)
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), gridspec_kw={"width_ratios": [1, 2.5]})
    axes[0].bar(profile["cluster"].astype(str), profile["rows"])
    axes[0].set_xlabel("cluster")
    axes[0].set_ylabel("test rows")
    axes[0].set_title("Cluster sizes")
    values = profile.drop(columns=["cluster", "rows"])
    z = (values - values.mean()) / values.std(ddof=0).replace(0, 1)
    im = axes[1].imshow(z.to_numpy(), aspect="auto", cmap="coolwarm", vmin=-2, vmax=2)
    axes[1].set_yticks(range(len(profile)), profile["cluster"].astype(str))
    axes[1].set_xticks(range(values.shape[1]), values.columns, rotation=60, ha="right", fontsize=8)
    axes[1].set_title("Cluster profiles (feature means, standardised)")
    fig.colorbar(im, ax=axes[1])
    fig.tight_layout()
    return fig


def plot_importance(table: pd.DataFrame, metric: str, top: int = 12):
    """Permutation importance on the test side (drop in the metric when a column is shuffled)."""
    plt = _plt()
    part = table.head(top)
    fig, ax = plt.subplots(figsize=(6, 0.35 * len(part) + 1.2))
    ax.barh(part["feature"], part["importance"], xerr=part["std"])
    ax.invert_yaxis()
    ax.set_xlabel(f"drop in {metric} when shuffled (test)")
    ax.set_title("Permutation importance")
    fig.tight_layout()
    return fig


def plot_cluster_sweep(sweep: pd.DataFrame):
    """Silhouette against each clustering family's main hyperparameter."""
    plt = _plt()
    names = [f for f in sweep["family"].unique() if f != "heuristic"]
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.2), squeeze=False)
    base = sweep[sweep["family"] == "heuristic"]["silhouette_mean"]
    for ax, name in zip(axes[0], names, strict=True):
        part = sweep[sweep["family"] == name]
        ax.errorbar(part["value"], part["silhouette_mean"], yerr=part["silhouette_std"], fmt="o-")
        if len(base):
            ax.axhline(float(base.iloc[0]), color="grey", ls=":", label="trivial split")
            ax.legend(fontsize=8)
        ax.set_xlabel(str(part["param"].iloc[0]))
        ax.set_ylabel("silhouette")
        ax.set_title(name)
    fig.tight_layout()
    return fig


# --- explorers (read cached results only) ----------------------------------------------------------------------------------


def model_explorer(grid: pd.DataFrame, metric: str):
    """Update function for the model explorer: (family, position of the main value) -> readout, learning curve."""

    def update(family: str, position: int):
        part = grid[grid["family"] == family]
        values = list(dict.fromkeys(part["value"]))
        value = values[min(max(int(position), 0), len(values) - 1)]
        curve = grid_point(grid, family, value)
        last = curve.iloc[-1]
        text = (f"{family}, {last['param']}={value}: validation {metric} {last['validation']:.3f} "
                f"(± {last['validation_std']:.3f}), train {last['train']:.3f}, gap {last['train'] - last['validation']:+.3f} "
                f"on {int(last['train_size'])} rows")
        plt = _plt()
        fig, ax = plt.subplots(figsize=(5, 3.2))
        _learning_axes(ax, curve, f"{family} ({last['param']}={value})", metric)
        fig.tight_layout()
        return text, fig

    return update


def model_explorer_controls(grid: pd.DataFrame):
    """The model explorer's widgets: a family drop-down and a slider over its main values."""
    import ipywidgets as w

    families = list(dict.fromkeys(grid["family"]))
    n = grid.groupby("family")["value"].nunique().max()
    return {"family": w.Dropdown(options=families, description="family"),
            "position": w.IntSlider(value=0, min=0, max=int(n) - 1, description="main value #")}


def threshold_explorer(choice: ThresholdChoice, contract: kpi_mod.KpiContract):
    """Update function for the threshold slider: KPIs and confusion matrix from cached CV probabilities."""

    def update(threshold: float):
        text, cm, _ = threshold_readout(choice, contract, threshold)
        plt = _plt()
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.2), gridspec_kw={"width_ratios": [2, 1]})
        axes[0].plot(choice.curve["threshold"], choice.curve["precision"], label="precision")
        axes[0].plot(choice.curve["threshold"], choice.curve["recall"], label="recall")
        axes[0].axvline(threshold, color="k", ls="--")
        axes[0].legend(fontsize=8)
        axes[0].set_xlabel("threshold")
        axes[1].imshow(cm, cmap="Blues")
        for (i, j), v in np.ndenumerate(cm):
            axes[1].text(j, i, str(v), ha="center", va="center")
        labels = [str(contract.positive_label), "other"]
        axes[1].set_xticks([0, 1], labels)
        axes[1].set_yticks([0, 1], labels)
        axes[1].set_xlabel("predicted")
        axes[1].set_ylabel("actual")
        fig.tight_layout()
        return text, fig

    return update


def threshold_controls(choice: ThresholdChoice):
    import ipywidgets as w

    return {"threshold": w.FloatSlider(value=round(choice.threshold, 2), min=0.02, max=0.98, step=0.01,
                                       description="threshold")}
